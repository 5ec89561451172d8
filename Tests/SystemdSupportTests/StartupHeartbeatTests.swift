import Synchronization
import SystemdSupport
import XCTest

final class StartupHeartbeatTests: XCTestCase {
    /// EXTEND_TIMEOUT_USEC goes out at once and then every interval, each time with the
    /// progress line as STATUS=, until the task is cancelled; every `reportEvery` beats
    /// after the first, the report callback runs.
    func testExtendsTheTimeoutRepeatedlyUntilCancelled() async throws {
        let receiver = try DatagramReceiver.path()
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocketValue])
        let reports = Reports()
        let heartbeat = StartupHeartbeat(
            notifier: notifier, interval: .milliseconds(50), timeoutExtension: .seconds(30), reportEvery: 2,
            progress: { _ in "recovering state: 1.0 of 2.0 MiB read" },
            report: { _, status in reports.add(status) })
        let task = Task { await heartbeat.run() }
        for _ in 0..<4 {
            XCTAssertEqual(try receiver.receive(), "EXTEND_TIMEOUT_USEC=30000000\nSTATUS=recovering state: 1.0 of 2.0 MiB read")
        }
        task.cancel()
        await task.value
        XCTAssertGreaterThanOrEqual(reports.count, 1)
        XCTAssertEqual(reports.first, "recovering state: 1.0 of 2.0 MiB read")
    }

    /// A start that is over before the heartbeat's task first runs still sent one beat.
    func testCancelledBeforeItRanStillBeatsOnce() async throws {
        let receiver = try DatagramReceiver.path()
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocketValue])
        let heartbeat = StartupHeartbeat(notifier: notifier, progress: { _ in "recovering" }, report: { _, _ in })
        let task = Task { await heartbeat.run() }
        task.cancel()
        await task.value
        XCTAssertEqual(try receiver.receive(), "EXTEND_TIMEOUT_USEC=30000000\nSTATUS=recovering")
        XCTAssertNil(try receiver.receiveIfQueued())
    }
}

private final class Reports: Sendable {
    private let items = Mutex<[String]>([])
    func add(_ item: String) { items.withLock { $0.append(item) } }
    var count: Int { items.withLock { $0.count } }
    var first: String? { items.withLock { $0.first } }
}
