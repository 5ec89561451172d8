import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Per-method authorization from SO_PEERCRED with real processes under other uids: creditctl
/// run through `setpriv`, against a socket laid out as in production (directory 0750 and socket
/// 0660, both group "creditd-clients"). GoInteropTests covers writer gids (primary and
/// supplementary); these cover uid lists, unknown uids, reload, and the probes' exit codes.
final class AuthorizationTests: XCTestCase {
    /// Stand-ins for accounts; setpriv needs no passwd entries for numeric ids.
    static let clientsGID: UInt32 = 4343  // creditd-clients
    static let writerUID: UInt32 = 4001
    static let readerUID: UInt32 = 4002
    static let strangerUID: UInt32 = 4003  // in no list

    override func setUpWithError() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to run clients as other users") }
    }

    /// A daemon whose socket directory and socket carry the clients group, as tmpfiles.d and
    /// `SocketGroup=creditd-clients` arrange under systemd.
    func startDaemon(_ arguments: [String], directory: URL? = nil, environment: [String: String] = [:]) throws -> DaemonProcess {
        let directory = try directory ?? DaemonProcess.makeTemporaryDirectory()
        XCTAssertEqual(chmod(directory.path, 0o711), 0)
        let run = directory.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        XCTAssertEqual(chown(run.path, 0, Self.clientsGID), 0)
        XCTAssertEqual(chmod(run.path, 0o750), 0)
        let socket = run.appendingPathComponent("creditd.sock").path
        let daemon = try DaemonProcess.start(arguments: arguments, directory: directory, socketPath: socket,
                                             environment: environment)
        XCTAssertEqual(chown(socket, 0, Self.clientsGID), 0)
        XCTAssertEqual((OpsTools.fileMode(socket) ?? 0) & 0o7777, 0o660)
        return daemon
    }

    /// creditctl as `uid` (primary gid = uid) in the clients group.
    func ctl(_ uid: UInt32, _ arguments: [String], socket: String, inClientsGroup: Bool = true) throws -> OpsResult {
        let prefix = try OpsTools.asUser(uid: uid, gid: uid, groups: inClientsGroup ? [Self.clientsGID] : [])
        return try OpsProcess.creditctl(arguments + ["-s", socket], prefix: prefix)
    }

    func create(_ id: String) -> [String] {
        ["create", id, "--customer", "acme", "--seats", "2", "--price", "700", "--currency", "USD"]
    }

    /// The denial is logged once with the caller's pid, uid and gid and the method.
    func assertDenialLogged(_ daemon: DaemonProcess, _ result: OpsResult, uid: UInt32, method: String,
                            file: StaticString = #filePath, line: UInt = #line) {
        // creditd's log lines go through a queue that a thread of their own writes out
        // (docs/operations.md §6): the line may come a moment after the answer.
        func denials() -> [Substring] { daemon.stderr.split(separator: "\n").filter { $0.contains("pid=\(result.pid) ") } }
        let patience = Date().addingTimeInterval(5)
        while denials().isEmpty, Date() < patience { Thread.sleep(forTimeInterval: 0.05) }
        let lines = denials()
        XCTAssertEqual(lines.filter { $0.contains("permission denied") }.count, 1, "\(lines)", file: file, line: line)
        guard let entry = lines.first(where: { $0.contains("permission denied") }) else { return }
        for field in ["uid=\(uid)", "gid=\(uid)", "method=\(method)"] {
            XCTAssertTrue(entry.contains(field), "\(field) missing in: \(entry)", file: file, line: line)
        }
    }

    /// Writer and reader lists on the command line: the reader may read but a write is
    /// PERMISSION_DENIED (exit 77, logged); the writer may write; with a reader list, a uid in
    /// neither list is refused even reads.
    func testReaderDeniedWriteWriterAllowedStrangerRefusedWithReaderList() throws {
        let daemon = try startDaemon(["--writer-uid", "\(Self.writerUID)", "--reader-uid", "\(Self.readerUID)"])
        let socket = daemon.socketPath

        let written = try ctl(Self.writerUID, create("auth-1"), socket: socket)
        XCTAssertEqual(written.status, 0, written.stderr)

        let read = try ctl(Self.readerUID, ["get", "auth-1"], socket: socket)
        XCTAssertEqual(read.status, 0, read.stderr)
        XCTAssertTrue(read.stdout.contains("auth-1"), read.stdout)
        let denied = try ctl(Self.readerUID, ["seats", "auth-1", "5"], socket: socket)
        XCTAssertEqual(denied.status, 77, denied.stderr)
        XCTAssertTrue(denied.stderr.hasPrefix("creditctl: error: PERMISSION_DENIED: "), denied.stderr)
        assertDenialLogged(daemon, denied, uid: Self.readerUID, method: "creditd.v1.Credits/ChangeSeats")
        // Nothing changed.
        let after = try ctl(Self.writerUID, ["get", "auth-1", "-o", "json"], socket: socket)
        XCTAssertEqual(after.status, 0, after.stderr)
        let subscription = (try JSONSerialization.jsonObject(with: Data(after.stdout.utf8)) as? [String: Any])?["subscription"] as? [String: Any]
        XCTAssertEqual("\(subscription?["seats"] ?? "")", "2", after.stdout)

        let strangerRead = try ctl(Self.strangerUID, ["get", "auth-1"], socket: socket)
        XCTAssertEqual(strangerRead.status, 77, strangerRead.stderr)
        assertDenialLogged(daemon, strangerRead, uid: Self.strangerUID, method: "creditd.v1.Credits/GetSubscription")
        let strangerWrite = try ctl(Self.strangerUID, create("auth-2"), socket: socket)
        XCTAssertEqual(strangerWrite.status, 77, strangerWrite.stderr)
        // The probes: health's RPC failed (3), check is UNKNOWN (a setup error, not an outage).
        XCTAssertEqual(try ctl(Self.strangerUID, ["health"], socket: socket).status, 3)
        let check = try ctl(Self.strangerUID, ["check"], socket: socket)
        XCTAssertEqual(check.status, 3, check.stdout)
        XCTAssertTrue(check.stdout.hasPrefix("CREDITD UNKNOWN - permission denied"), check.stdout)
        XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)
    }

    /// From the JSON configuration: without a reader list any connected peer reads, and a uid
    /// in no list may not write; after the file names it a writer, `creditctl reload` (as root)
    /// lets it write without a restart.
    func testStrangerReadsWithoutReaderListAndReloadGrantsWrite() throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("creditd.json")
        try Data(#"{"writer_uids": [4001]}"#.utf8).write(to: config)
        let daemon = try startDaemon(["--config", config.path], directory: directory)
        let socket = daemon.socketPath

        XCTAssertEqual(try ctl(Self.writerUID, create("cfg-1"), socket: socket).status, 0)
        let read = try ctl(Self.strangerUID, ["list"], socket: socket)
        XCTAssertEqual(read.status, 0, read.stderr)
        XCTAssertTrue(read.stdout.contains("cfg-1"), read.stdout)
        XCTAssertEqual(try ctl(Self.strangerUID, ["health"], socket: socket).status, 0)
        XCTAssertEqual(try ctl(Self.strangerUID, ["check"], socket: socket).status, 0)
        let denied = try ctl(Self.strangerUID, ["cancel", "cfg-1"], socket: socket)
        XCTAssertEqual(denied.status, 77, denied.stderr)
        assertDenialLogged(daemon, denied, uid: Self.strangerUID, method: "creditd.v1.Credits/CancelSubscription")
        // Reload itself is a write.
        let reloadDenied = try ctl(Self.strangerUID, ["reload"], socket: socket)
        XCTAssertEqual(reloadDenied.status, 77, reloadDenied.stderr)

        try Data(#"{"writer_uids": [4001, 4003]}"#.utf8).write(to: config)
        let reload = try OpsProcess.creditctl(["reload", "-s", socket])
        XCTAssertEqual(reload.status, 0, reload.stderr)
        let allowed = try ctl(Self.strangerUID, ["cancel", "cfg-1"], socket: socket)
        XCTAssertEqual(allowed.status, 0, allowed.stderr)
        XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)
    }

    /// The unit starts creditd without --config: it reads creditd.json from
    /// $CONFIGURATION_DIRECTORY (the unit sets it to /etc/creditd) if the file
    /// exists, at start and on every reload.
    func testConfigurationDirectoryFileGovernsAuthorization() throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let etc = directory.appendingPathComponent("etc")
        try FileManager.default.createDirectory(at: etc, withIntermediateDirectories: true)
        let environment = ["CONFIGURATION_DIRECTORY": etc.path]
        let daemon = try startDaemon([], directory: directory, environment: environment)

        let before = try ctl(Self.strangerUID, create("etc-1"), socket: daemon.socketPath)
        XCTAssertEqual(before.status, 77, "no file yet: built-in defaults; \(before.stderr)")
        try Data(#"{"writer_uids": [4003]}"#.utf8).write(to: etc.appendingPathComponent("creditd.json"))
        let reload = try OpsProcess.creditctl(["reload", "-s", daemon.socketPath])
        XCTAssertEqual(reload.status, 0, reload.stderr)
        let after = try ctl(Self.strangerUID, create("etc-1"), socket: daemon.socketPath)
        XCTAssertEqual(after.status, 0, after.stderr)
        XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)

        let restarted = try startDaemon([], directory: directory, environment: environment)
        let atStart = try ctl(Self.strangerUID, create("etc-2"), socket: restarted.socketPath)
        XCTAssertEqual(atStart.status, 0, "read at start too: \(atStart.stderr)")
        XCTAssertEqual(try restarted.stop(), 0, restarted.stderr)
    }

    /// Outside the clients group the socket cannot even be opened (EACCES from connect):
    /// 77 for commands, 2 for health, UNKNOWN for check; the daemon never sees the peer.
    func testPeerOutsideClientsGroupCannotConnect() throws {
        let daemon = try startDaemon([])
        let socket = daemon.socketPath
        let get = try ctl(Self.strangerUID, ["list"], socket: socket, inClientsGroup: false)
        XCTAssertEqual(get.status, 77, get.stderr)
        XCTAssertTrue(get.stderr.hasPrefix("creditctl: error: PERMISSION_DENIED: "), get.stderr)
        XCTAssertEqual(try ctl(Self.strangerUID, ["health"], socket: socket, inClientsGroup: false).status, 2)
        let check = try ctl(Self.strangerUID, ["check"], socket: socket, inClientsGroup: false)
        XCTAssertEqual(check.status, 3, check.stdout)
        XCTAssertTrue(check.stdout.hasPrefix("CREDITD UNKNOWN - permission denied"), check.stdout)
        XCTAssertFalse(daemon.stderr.contains("uid=\(Self.strangerUID)"), daemon.stderr)
        XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)
    }
}
