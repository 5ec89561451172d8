import XCTest
import Logging
import Synchronization
import SystemdSupport
#if canImport(Glibc)
import Glibc
#endif

final class WatchdogTests: XCTestCase {
    func testConfigurationFromEnvironment() {
        let pid: pid_t = 4242
        let enabled = WatchdogConfiguration(environment: ["WATCHDOG_USEC": "30000000"], pid: pid)
        XCTAssertEqual(enabled?.timeoutMicroseconds, 30_000_000)
        XCTAssertEqual(enabled?.intervalMicroseconds, 15_000_000)
        XCTAssertEqual(enabled?.interval, .seconds(15))

        XCTAssertNotNil(WatchdogConfiguration(environment: ["WATCHDOG_USEC": "1000", "WATCHDOG_PID": "4242"], pid: pid))
        XCTAssertNil(WatchdogConfiguration(environment: ["WATCHDOG_USEC": "1000", "WATCHDOG_PID": "4243"], pid: pid))
        XCTAssertNil(WatchdogConfiguration(environment: ["WATCHDOG_USEC": "1000", "WATCHDOG_PID": "x"], pid: pid))
        XCTAssertNil(WatchdogConfiguration(environment: ["WATCHDOG_PID": "4242"], pid: pid))
        XCTAssertNil(WatchdogConfiguration(environment: ["WATCHDOG_USEC": "0"], pid: pid))
        XCTAssertNil(WatchdogConfiguration(environment: ["WATCHDOG_USEC": "-5"], pid: pid))
        XCTAssertNil(WatchdogConfiguration(environment: ["WATCHDOG_USEC": "30s"], pid: pid))
        XCTAssertNil(WatchdogConfiguration(environment: [:], pid: pid))
    }

    func testPingsOnlyAfterSuccessfulProbe() async throws {
        let receiver = try DatagramReceiver.path()
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocketValue])
        let healthy = Atomic<Bool>(true)
        let watchdog = Watchdog(
            configuration: WatchdogConfiguration(timeoutMicroseconds: 30_000_000),
            notifier: notifier,
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        ) {
            struct Wedged: Error {}
            if !healthy.load(ordering: .relaxed) { throw Wedged() }
        }

        let pinged = await watchdog.pingIfAlive()
        XCTAssertTrue(pinged)
        XCTAssertEqual(try receiver.receive(), "WATCHDOG=1")

        healthy.store(false, ordering: .relaxed)
        let pingedWhileWedged = await watchdog.pingIfAlive()
        XCTAssertFalse(pingedWhileWedged)
        // Datagrams on a Unix socket keep their order: if a ping had been sent it
        // would arrive before this marker.
        notifier.status("marker")
        XCTAssertEqual(try receiver.receive(), "STATUS=marker")
    }

    func testRunLoopPingsRepeatedlyAndReturnsOnCancellation() async throws {
        let receiver = try DatagramReceiver.path()
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocketValue])
        let probes = Atomic<Int>(0)
        let watchdog = Watchdog(
            configuration: WatchdogConfiguration(timeoutMicroseconds: 2_000),
            notifier: notifier,
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        ) {
            probes.add(1, ordering: .relaxed)
        }
        let task = Task { await watchdog.run() }
        for _ in 0..<3 {
            XCTAssertEqual(try receiver.receive(), "WATCHDOG=1")
        }
        task.cancel()
        await task.value
        XCTAssertGreaterThanOrEqual(probes.load(ordering: .relaxed), 3)
    }
}
