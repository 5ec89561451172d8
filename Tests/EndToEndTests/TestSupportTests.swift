import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// CreditTestSupport cleans up after tests: a temporary directory and a running daemon that a
/// test leaves behind are gone when its test process has finished.
final class TestSupportTests: XCTestCase {
    static let reportVariable = "CREDITD_TESTSUPPORT_REPORT"

    /// Runs `testChildLeavesThingsBehind` in a child test process, which makes a directory and
    /// starts a daemon and stops and removes neither; afterwards both are gone.
    func testWhatATestLeavesBehindIsRemoved() throws {
        let report = try makeTemporaryDirectory("report").appendingPathComponent("report").path
        let child = try OpsProcess.run([CommandLine.arguments[0], "EndToEndTests.TestSupportTests/testChildLeavesThingsBehind"],
                                       environment: [Self.reportVariable: report])
        XCTAssertEqual(child.status, 0, child.stdout + child.stderr)
        let lines = try String(contentsOfFile: report, encoding: .utf8).split(separator: "\n").map(String.init)
        guard lines.count == 3, let pid = pid_t(lines[2]) else { return XCTFail("report: \(lines)") }
        for path in lines.prefix(2) {
            XCTAssertTrue(path.hasPrefix("/tmp/creditd-"), path)
            XCTAssertFalse(FileManager.default.fileExists(atPath: path), "\(path) was left behind")
        }
        XCTAssertTrue(Self.waitUntilGone(pid), "the daemon (pid \(pid)) still runs")
    }

    /// The child's part: leaves a directory and a daemon behind on purpose.
    func testChildLeavesThingsBehind() throws {
        guard let report = ProcessInfo.processInfo.environment[Self.reportVariable] else {
            throw XCTSkip("runs only as a child process of testWhatATestLeavesBehindIsRemoved")
        }
        let directory = try DaemonProcess.makeTemporaryDirectory()
        let daemon = try DaemonProcess.start()
        let kept = Unmanaged.passRetained(daemon)  // never released: its deinit cannot clean up
        _ = kept
        try "\(directory.path)\n\(daemon.directory.path)\n\(daemon.pid)\n".write(toFile: report, atomically: true, encoding: .utf8)
    }

    /// True once `pid` is gone or a zombie (reparented, waiting for init to reap it).
    static func waitUntilGone(_ pid: pid_t, timeout: TimeInterval = 10) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return true }
            if stat[stat.index(after: close)...].split(separator: " ").first == "Z" { return true }
            usleep(20_000)
        }
        return false
    }
}
