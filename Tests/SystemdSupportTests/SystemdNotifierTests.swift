import XCTest
import SystemdSupport
#if canImport(Glibc)
import Glibc
#endif

final class SystemdNotifierTests: XCTestCase {
    func testPathSocketReceivesEachMessage() throws {
        let receiver = try DatagramReceiver.path()
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocketValue])
        XCTAssertEqual(notifier.address, .path(receiver.notifySocketValue))
        XCTAssertTrue(notifier.isEnabled)

        XCTAssertTrue(notifier.ready(status: "SERVING, 0 connections"))
        XCTAssertEqual(try receiver.receive(), "READY=1\nSTATUS=SERVING, 0 connections")

        XCTAssertTrue(notifier.ready())
        XCTAssertEqual(try receiver.receive(), "READY=1")

        XCTAssertTrue(notifier.status("recovering\njournal"))
        XCTAssertEqual(try receiver.receive(), "STATUS=recovering journal")

        XCTAssertTrue(notifier.stopping())
        XCTAssertEqual(try receiver.receive(), "STOPPING=1")

        XCTAssertTrue(notifier.watchdog())
        XCTAssertEqual(try receiver.receive(), "WATCHDOG=1")

        XCTAssertTrue(notifier.extendTimeout(usec: 30_000_000))
        XCTAssertEqual(try receiver.receive(), "EXTEND_TIMEOUT_USEC=30000000")
    }

    func testReloadingCarriesMonotonicMicroseconds() throws {
        let receiver = try DatagramReceiver.path()
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocketValue])
        let before = SystemdNotifier.monotonicMicroseconds()
        XCTAssertTrue(notifier.reloading())
        let after = SystemdNotifier.monotonicMicroseconds()

        let lines = try receiver.receive().split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 2)
        XCTAssertEqual(lines.first, "RELOADING=1")
        let stamp = try XCTUnwrap(lines.last.flatMap { $0.hasPrefix("MONOTONIC_USEC=") ? UInt64($0.dropFirst(15)) : nil })
        XCTAssertGreaterThanOrEqual(stamp, before)
        XCTAssertLessThanOrEqual(stamp, after)
    }

    func testAbstractSocketIsAddressedWithoutTrailingNUL() throws {
        let receiver = try DatagramReceiver.abstract()
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocketValue])
        guard case .abstract(let name)? = notifier.address else {
            return XCTFail("expected an abstract address, got \(String(describing: notifier.address))")
        }
        XCTAssertEqual("@" + name, receiver.notifySocketValue)
        XCTAssertTrue(notifier.ready(status: "abstract"))
        XCTAssertEqual(try receiver.receive(), "READY=1\nSTATUS=abstract")
    }

    func testWithoutNotifySocketNothingIsSent() {
        let notifier = SystemdNotifier(environment: [:])
        XCTAssertFalse(notifier.isEnabled)
        XCTAssertNil(notifier.address)
        XCTAssertFalse(notifier.ready())
        XCTAssertFalse(notifier.watchdog())
    }

    func testUnusableValuesDisableTheNotifier() {
        let tooLongPath = "/" + String(repeating: "a", count: 107)   // 108 bytes + NUL > sun_path
        let longestPath = "/" + String(repeating: "a", count: 106)   // 107 bytes + NUL fits
        let tooLongAbstract = "@" + String(repeating: "a", count: 108)
        for value in ["", "relative/path", "@", "/", "vsock:2:1234", tooLongPath, tooLongAbstract] {
            XCTAssertNil(SystemdNotifier(environment: ["NOTIFY_SOCKET": value]).address, value)
        }
        XCTAssertEqual(SystemdNotifier(environment: ["NOTIFY_SOCKET": longestPath]).address, .path(longestPath))
    }

    func testSendFailureIsIgnored() throws {
        let directory = try TemporaryDirectory.makePath("notify")
        defer { TemporaryDirectory.remove(atPath: directory) }
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": directory + "/nobody-listens"])
        XCTAssertTrue(notifier.isEnabled)
        XCTAssertFalse(notifier.ready())
    }
}
