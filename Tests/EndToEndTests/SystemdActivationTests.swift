import CreditClient
import CreditProto
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// creditd under systemd's protocols, run for real: socket activation by Debian's
/// `systemd-socket-activate`, sd_notify to a datagram socket the test owns, the watchdog,
/// reload, journald-style logging, and the offline checks of the unit files.
final class SystemdActivationTests: XCTestCase {
    static let echoPayload: [UInt8] = [0x0A, 0x01, 0x07]  // BytesValue{value: [7]}

    static func snapshotFiles(in directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix("snapshot-") && $0.hasSuffix(".snap") }.sorted()
    }

    /// Activation on the first connect, READY=1 after recovery, watchdog pings, and a SIGTERM
    /// that drains a call in flight, writes the final snapshot, exits 0 and leaves the socket;
    /// a second activation reports the recovered subscriptions in STATUS=.
    func testActivationReadyWatchdogAndGracefulStop() async throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let daemon = try ActivatedDaemon(directory: directory)
        try daemon.waitUntilListening()

        // Until a client connects, only the activator runs: no creditd, no state, no notification.
        XCTAssertEqual(daemon.process.executable.map { URL(fileURLWithPath: $0).lastPathComponent }, "systemd-socket-activate")
        XCTAssertEqual(daemon.notify.collect(for: 0.3).count, 0, "nothing may notify before the first connect")
        XCTAssertFalse(FileManager.default.fileExists(atPath: daemon.stateDirectory), daemon.log)
        XCTAssertEqual(daemon.process.executable.map { URL(fileURLWithPath: $0).lastPathComponent }, "systemd-socket-activate")

        // The first connect starts creditd in the activator's process (same pid, now creditd).
        let connection = try RawTTRPCConnection(path: daemon.socketPath)
        defer { connection.close() }
        let ready = try daemon.waitUntilReady()
        XCTAssertEqual(ready["STATUS"], "SERVING: 0 subscriptions, last snapshot none")
        XCTAssertEqual(daemon.process.executable.map { URL(fileURLWithPath: $0).lastPathComponent }, "creditd")
        XCTAssertTrue(daemon.log.contains("listening on inherited socket fd=3"), daemon.log)
        // Recovery announced itself before READY=1, with more start-up time asked for.
        let beforeReady = daemon.notify.received.prefix { $0["READY"] == nil }
        XCTAssertTrue(beforeReady.contains { $0["STATUS"]?.hasPrefix("recovering state from \(daemon.stateDirectory)") == true },
                      "\(daemon.notify.received)")
        XCTAssertTrue(beforeReady.contains { $0["EXTEND_TIMEOUT_USEC"] != nil }, "\(daemon.notify.received)")
        // The connection accepted before creditd existed is served.
        XCTAssertEqual(try connection.healthCheck(id: 1), .serving)

        // WATCHDOG_USEC=200000 and WATCHDOG_PID=our pid: a ping every 100 ms.
        for ping in 1...3 {
            XCTAssertNotNil(daemon.notify.next { $0["WATCHDOG"] == "1" }, "watchdog ping \(ping) missing; log:\n\(daemon.log)")
        }

        let client = try await CreditClient.connect(socketPath: daemon.socketPath)
        _ = try await client.createSubscription(PersistenceFaultTests.create("act-1"))
        _ = try await client.createSubscription(PersistenceFaultTests.create("act-2"))
        let lastSequence = try await client.getStats().persistence.lastSequence
        await client.close()
        XCTAssertEqual(Self.snapshotFiles(in: daemon.stateDirectory), [], "no snapshot before the stop")

        // A call in flight when SIGTERM arrives (the health answer proves it was dispatched).
        try connection.sendRequest(id: 3, service: "creditd.test.Debug", method: "Echo", payload: Self.echoPayload,
                                   metadata: [("sleep-ms", "1000")])
        XCTAssertEqual(try connection.healthCheck(id: 5), .serving)
        kill(daemon.pid, SIGTERM)
        XCTAssertNotNil(daemon.notify.next { $0["STOPPING"] == "1" }, "no STOPPING=1; log:\n\(daemon.log)")
        let (id, result) = try connection.readResponse()
        XCTAssertEqual(id, 3)
        XCTAssertEqual(try result.get(), Self.echoPayload, "the call in flight completes during the drain")
        XCTAssertEqual(daemon.process.waitForExit(), 0, daemon.log)
        // The watchdog kept pinging while the server drained (it stops last).
        XCTAssertTrue(daemon.notify.pending.contains { $0["WATCHDOG"] == "1" }, "\(daemon.notify.received)")

        XCTAssertEqual(Self.snapshotFiles(in: daemon.stateDirectory), [String(format: "snapshot-%020llu.snap", lastSequence)],
                       daemon.log)
        XCTAssertTrue(daemon.log.contains("final snapshot written"), daemon.log)
        let mode = try XCTUnwrap(OpsTools.fileMode(daemon.socketPath), "an activated socket is never unlinked")
        XCTAssertEqual(mode & S_IFMT, S_IFSOCK)

        // Activated again (as systemd does on the next connect): STATUS= counts what was recovered.
        let again = try ActivatedDaemon(directory: directory)
        try again.waitUntilListening()
        let second = try RawTTRPCConnection(path: again.socketPath)
        defer { second.close() }
        let status = try XCTUnwrap(try again.waitUntilReady()["STATUS"])
        XCTAssertTrue(status.hasPrefix("SERVING: 2 subscriptions, last snapshot 20"), status)
        XCTAssertEqual(try second.healthCheck(id: 1), .serving)
        XCTAssertEqual(again.stop(), 0, again.log)
    }

    /// `creditctl reload` (ExecReload=) and SIGHUP each send RELOADING=1 with MONOTONIC_USEC=,
    /// then READY=1; the RPC returns only after READY=1 was sent. A reload that fails keeps the
    /// running configuration and still ends with READY=1, so systemd does not stay "reloading".
    /// A second ListenStream= (a drop-in) passes two sockets; creditd serves the rpc one, and
    /// says that it ignores the other rather than leave its clients queued without a word.
    func testAnExtraActivatedSocketIsNamedAsIgnored() throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let daemon = try ActivatedDaemon(directory: directory, extraSockets: ["second.sock"])
        try daemon.waitUntilListening()
        let connection = try RawTTRPCConnection(path: daemon.socketPath)
        defer { connection.close() }
        _ = try daemon.waitUntilReady()
        XCTAssertEqual(try connection.healthCheck(id: 1), .serving)
        XCTAssertTrue(daemon.log.contains("systemd passed more sockets than creditd serves; only one is served"), daemon.log)
        XCTAssertTrue(daemon.log.contains("fd 4 (extra)"), daemon.log)
    }

    func testReloadByCreditctlAndSIGHUPNotifiesReloadingThenReady() throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("creditd.json")
        try Data(#"{"max_in_flight": 8}"#.utf8).write(to: config)
        let daemon = try ActivatedDaemon(arguments: ["--config", config.path], watchdogUSec: nil, directory: directory)
        try daemon.waitUntilListening()
        let connection = try RawTTRPCConnection(path: daemon.socketPath)
        defer { connection.close() }
        try daemon.waitUntilReady()

        func expectReload(after start: UInt64, wait: TimeInterval, _ what: String) {
            guard let reloading = daemon.notify.next(timeout: wait, where: { $0["RELOADING"] == "1" }) else {
                return XCTFail("\(what): no RELOADING=1 in \(daemon.notify.received); log:\n\(daemon.log)")
            }
            let stamp = reloading["MONOTONIC_USEC"].flatMap(UInt64.init)
            XCTAssertNotNil(stamp, "\(what): MONOTONIC_USEC= missing in \(reloading)")
            if let stamp {
                XCTAssertGreaterThanOrEqual(stamp, start, "\(what): MONOTONIC_USEC is CLOCK_MONOTONIC")
                XCTAssertLessThanOrEqual(stamp, OpsTools.monotonicMicroseconds(), what)
            }
            let ready = daemon.notify.next(timeout: wait) { $0["READY"] == "1" }
            XCTAssertNotNil(ready, "\(what): no READY=1 after RELOADING=1 in \(daemon.notify.received)")
        }

        // ExecReload=/usr/bin/creditctl reload: when it exits, both messages are already queued.
        var start = OpsTools.monotonicMicroseconds()
        let reload = try OpsProcess.creditctl(["reload", "-s", daemon.socketPath])
        XCTAssertEqual(reload.status, 0, reload.stderr)
        XCTAssertEqual(reload.stdout, "configuration reloaded from \(config.path); nothing changed\n")
        expectReload(after: start, wait: 0, "creditctl reload")

        start = OpsTools.monotonicMicroseconds()
        kill(daemon.pid, SIGHUP)
        expectReload(after: start, wait: 20, "SIGHUP")

        try Data("{not json".utf8).write(to: config)
        start = OpsTools.monotonicMicroseconds()
        let failed = try OpsProcess.creditctl(["reload", "-s", daemon.socketPath])
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertTrue(failed.stderr.hasPrefix("creditctl: error: "), failed.stderr)
        expectReload(after: start, wait: 0, "failed reload")
        XCTAssertEqual(try connection.healthCheck(id: 1), .serving, "a failed reload keeps serving")

        XCTAssertEqual(daemon.stop(), 0, daemon.log)
        XCTAssertTrue(daemon.notify.pending.contains { $0["STOPPING"] == "1" })
    }

    /// WATCHDOG_PID names another process (a child that inherited the variables): no pings.
    func testWatchdogMeantForAnotherProcessSendsNoPings() throws {
        let daemon = try ActivatedDaemon(watchdogUSec: 100_000, watchdogPID: "1")
        try daemon.waitUntilListening()
        let connection = try RawTTRPCConnection(path: daemon.socketPath)
        defer { connection.close() }
        try daemon.waitUntilReady()
        // Ten ping intervals (50 ms each, were the watchdog on).
        let later = daemon.notify.collect(for: 0.5)
        XCTAssertFalse(daemon.notify.received.contains { $0["WATCHDOG"] != nil }, "\(later)")
        XCTAssertEqual(try connection.healthCheck(id: 1), .serving)
        XCTAssertEqual(daemon.stop(), 0, daemon.log)
    }

    /// With stderr connected to "the journal" ($JOURNAL_STREAM = its dev:inode) every line is
    /// `<N>[creditd] ...`: a syslog priority and no timestamp. Another file's dev:inode in the
    /// variable (a redirected child) gives timestamped plain lines.
    func testJournalStreamGivesPriorityPrefixesWithoutTimestamps() throws {
        let directory = try makeTemporaryDirectory("journal")

        func run(journalStreamOf target: String, log: String) throws -> [String] {
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            var info = stat()
            XCTAssertEqual(stat(target, &info), 0)
            let daemon = try DaemonProcess.start(directory: directory, environment: ["JOURNAL_STREAM": "\(info.st_dev):\(info.st_ino)"],
                                                 stderrPath: log)
            XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)
            return daemon.stderr.split(separator: "\n").map(String.init)
        }

        let journalLog = directory.appendingPathComponent("journal.log").path
        let lines = try run(journalStreamOf: journalLog, log: journalLog)
        XCTAssertFalse(lines.isEmpty)
        let prefixed = try Regex(#"^<[0-7]>\[creditd\] "#)
        for line in lines {
            XCTAssertNotNil(line.firstMatch(of: prefixed), "not a journal line: \(line)")
        }
        XCTAssertTrue(lines.contains { $0.hasPrefix("<6>[creditd] serving") }, "\(lines)")       // info
        XCTAssertTrue(lines.contains { $0.hasPrefix("<4>[creditd] test service") }, "\(lines)")  // warning
        XCTAssertTrue(lines.contains { $0.hasPrefix("<5>[creditd] shutting down") }, "\(lines)") // notice

        let plainLog = directory.appendingPathComponent("plain.log").path
        let plain = try run(journalStreamOf: journalLog, log: plainLog)
        // The same priority prefix, then a timestamp and the level's name.
        let stamped = try Regex(#"^<[0-7]>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z (trace|debug|info|notice|warning|error|critical) \[creditd\] "#)
        XCTAssertFalse(plain.isEmpty)
        for line in plain {
            XCTAssertNotNil(line.firstMatch(of: stamped), "not a plain timestamped line: \(line)")
        }
    }

    // MARK: Unit files

    static var repository: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    /// scripts/check-systemd-units.sh against the real binaries and `units` (default: systemd/).
    func checkUnits(_ units: URL? = nil) throws -> OpsResult {
        _ = try OpsTools.require("systemd-analyze", package: "systemd")
        let script = Self.repository.appendingPathComponent("scripts/check-systemd-units.sh").path
        let build = URL(fileURLWithPath: try OpsTools.creditd).deletingLastPathComponent().path
        return try OpsProcess.run(["/bin/bash", script, build] + (units.map { [$0.path] } ?? []))
    }

    /// A copy of systemd/ with `edit` applied to creditd.service.
    func brokenUnits(_ edit: (String) -> String) throws -> URL {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        let copy = directory.appendingPathComponent("systemd")
        // Resolved first: copying a symlinked systemd/ would copy the link, and the edit below
        // would land in the real unit file.
        let original = Self.repository.appendingPathComponent("systemd").resolvingSymlinksInPath()
        try FileManager.default.copyItem(at: original, to: copy)
        var info = stat()
        guard lstat(copy.path, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            throw OpsTools.Missing(description: "\(copy.path) is not a real directory copy")
        }
        let service = copy.appendingPathComponent("creditd.service")
        try Data(edit(try String(contentsOf: service, encoding: .utf8)).utf8).write(to: service)
        return copy
    }

    /// `systemd-analyze verify --man=no` prints nothing and `security --offline=true` scores
    /// <= 1.0, with the built creditd and creditctl staged as /usr/bin (the CI step, as a test).
    func testUnitFilesVerifyCleanAndScoreSafe() throws {
        let result = try checkUnits()
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertTrue(result.stdout.contains("verify creditd.service creditd.socket: exit 0, no output"), result.stdout)
        let score = try XCTUnwrap(result.stdout.firstMatch(of: try Regex(#"Overall exposure level for creditd\.service: (\d+\.\d)"#)),
                                  result.stdout)
        let exposure = try XCTUnwrap(Double(String(score.output[1].substring ?? "")))
        XCTAssertLessThanOrEqual(exposure, 1.0)
        XCTAssertTrue(result.stdout.contains("all checks passed"), result.stdout)
    }

    /// The check is not vacuous: a misspelled key (verify only warns, exit 0) and a unit that
    /// scores above 1.0 both fail it.
    func testUnitChecksFailOnWarningsAndWeakHardening() throws {
        let misspelled = try brokenUnits { $0.replacingOccurrences(of: "ProtectHome=yes", with: "ProtectHomes=yes") }
        defer { try? FileManager.default.removeItem(at: misspelled.deletingLastPathComponent()) }
        let warned = try checkUnits(misspelled)
        XCTAssertEqual(warned.status, 1, warned.stdout)
        XCTAssertTrue(warned.stderr.contains("Unknown key") && warned.stderr.contains("ProtectHomes"), warned.stderr)
        XCTAssertTrue(warned.stderr.contains("FAIL: systemd-analyze verify"), warned.stderr)

        let weak = try brokenUnits { text in
            text.split(separator: "\n", omittingEmptySubsequences: false)
                .filter { !$0.hasPrefix("SystemCallFilter=") && !$0.hasPrefix("PrivateNetwork=") && !$0.hasPrefix("CapabilityBoundingSet=") }
                .joined(separator: "\n")
        }
        defer { try? FileManager.default.removeItem(at: weak.deletingLastPathComponent()) }
        let exposed = try checkUnits(weak)
        XCTAssertEqual(exposed.status, 1, exposed.stdout)
        XCTAssertTrue(exposed.stderr.contains("FAIL: systemd-analyze security above threshold"), exposed.stderr)
    }
}
