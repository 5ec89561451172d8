import CreditProto
import CreditWire
import Foundation
import SwiftProtobuf
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Issue 13: a misbehaving local client cannot starve the daemon or exhaust its memory. Each
/// test is one attack from the issue's table, against the real daemon on a real socket, bounded
/// to a few seconds; each failed before the limits existed.
final class AbuseTests: XCTestCase {
    static let clientsGID: UInt32 = 4343
    static let otherUID: UInt32 = 4002
    static let strangerUID: UInt32 = 4003

    // MARK: helpers

    /// Resident set size of `pid` in bytes (VmRSS).
    static func rss(_ pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return 0 }
        let kib = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
        return kib * 1024
    }

    static func setSendTimeout(_ c: RawTTRPCConnection, _ seconds: Double) {
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        setsockopt(c.fd, SOL_SOCKET, SO_SNDTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Sends until everything is sent or a send blocks for the send timeout; returns bytes sent.
    @discardableResult
    static func sendUntilBlocked(_ c: RawTTRPCConnection, _ bytes: [UInt8]) -> Int {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent < 0 {
                if errno == EINTR { continue }
                return offset
            }
            offset += sent
        }
        return offset
    }

    /// True when the server closed `c` (EOF or reset); reads and drops what is pending.
    static func isClosedByPeer(_ c: RawTTRPCConnection) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let got = buffer.withUnsafeMutableBytes { Glibc.recv(c.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if got == 0 { return true }
            if got < 0 { return errno == ECONNRESET || errno == EPIPE }
        }
    }

    /// Seconds for a fresh connection's Health/Check; fails the test if it is not answered.
    static func probe(_ socket: String, id: UInt32 = 1, file: StaticString = #filePath, line: UInt = #line) -> Double {
        let start = Date()
        do {
            let c = try RawTTRPCConnection(path: socket, receiveTimeout: 3)
            defer { c.close() }
            XCTAssertEqual(try c.healthCheck(id: id), .serving, file: file, line: line)
        } catch {
            XCTFail("probe not answered: \(error)", file: file, line: line)
            return .infinity
        }
        return Date().timeIntervalSince(start)
    }

    /// A valid CreateSubscription of one seat.
    static func createRequest(_ id: String) -> Creditd_V1_CreateSubscriptionRequest {
        var create = Creditd_V1_CreateSubscriptionRequest()
        create.subscriptionID = id
        create.seats = 1
        create.unitPriceMinor = 100
        create.currency = "USD"
        create.interval = .monthly
        create.timeZone = "UTC"
        return create
    }

    static func request(_ id: UInt32, service: String, method: String, payload: [UInt8] = []) -> [UInt8] {
        RawTTRPCConnection.encodeFrame(id: id, type: 1, data: RawTTRPCConnection.requestBytes(
            service: service, method: method, payload: payload))
    }

    /// A daemon whose socket other uids may use (directory 0711/0750, socket group "clients").
    static func startSharedDaemon(_ arguments: [String], standardError: FileHandle? = nil) throws -> DaemonProcess {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        chmod(directory.path, 0o711)
        let run = directory.appendingPathComponent("run")
        try FileManager.default.createDirectory(at: run, withIntermediateDirectories: true)
        chown(run.path, 0, clientsGID)
        chmod(run.path, 0o750)
        let socket = run.appendingPathComponent("creditd.sock").path
        let daemon = try DaemonProcess.start(arguments: arguments, directory: directory, socketPath: socket,
                                             standardError: standardError)
        chown(socket, 0, clientsGID)
        return daemon
    }

    // MARK: attacks

    /// Row 1: one connection pipelines calls with large answers and never reads them. Before:
    /// every answer was buffered (GBs). Now the connection is not read once 1 MiB is unwritten.
    func testNeverReadingClientWithLargeResponsesStallsOnlyItself() throws {
        try neverReadingClient(responseBytes: 256 << 10, calls: 2_000, sendsBlock: false)
    }

    /// A request that waits unread behind answers its client does not read still has its
    /// deadline counted from receipt (wire spec §5): a write whose deadline passed meanwhile is
    /// answered DEADLINE_EXCEEDED and changes nothing, however late its turn comes.
    func testARequestHeldBehindUnreadAnswersKeepsItsDeadlineFromReceipt() throws {
        let daemon = try DaemonProcess.start()
        defer { daemon.kill() }
        let c = try RawTTRPCConnection(path: daemon.socketPath, receiveTimeout: 10)
        var size = Google_Protobuf_UInt64Value()
        size.value = 900 << 10
        let create = Self.createRequest("late")
        // Two answers over the connection's 1 MiB of unwritten bytes, then the write, in one send.
        let big = try size.serializedBytes() as [UInt8]
        try c.send(Self.request(1, service: "creditd.test.Debug", method: "Big", payload: big)
            + Self.request(3, service: "creditd.test.Debug", method: "Big", payload: big)
            + RawTTRPCConnection.encodeFrame(id: 5, type: 1, data: RawTTRPCConnection.requestBytes(
                service: MethodTable.Credits.serviceName, method: MethodTable.Credits.createSubscription.method,
                payload: try create.serializedBytes(), timeoutNano: 200_000_000)))
        Thread.sleep(forTimeInterval: 1.5)  // not reading: the write waits its turn meanwhile
        var results: [UInt32: Result<[UInt8], RPCError>] = [:]
        while results.count < 3 {
            let response = try c.readResponse()
            results[response.streamID] = response.result
        }
        guard case .failure(let error)? = results[5] else {
            return XCTFail("the late write was answered \(String(describing: results[5]))")
        }
        XCTAssertEqual(error.code, .deadlineExceeded, "\(error)")
        var get = Creditd_V1_GetSubscriptionRequest()
        get.subscriptionID = "late"
        let read = try c.call(id: 7, service: MethodTable.Credits.serviceName, method: MethodTable.Credits.getSubscription.method,
                              payload: try get.serializedBytes())
        guard case .failure(let missing) = read else { return XCTFail("the late write was applied") }
        XCTAssertEqual(missing.code, .notFound, "\(missing)")
    }

    /// A Data frame on a write call ends its stream at once (INVALID_ARGUMENT), but the
    /// command may still wait at the writer: it stays counted against the connection's 32
    /// queued writes until the writer is done with it. Before, 20,000 creates each followed by
    /// a Data frame were all answered while over 7,000 of them still waited at the writer.
    func testWritesEndedByADataFrameStillCountAgainstTheQueuedWriteLimit() throws {
        let daemon = try DaemonProcess.start()
        defer { daemon.kill() }
        let c = try RawTTRPCConnection(path: daemon.socketPath, receiveTimeout: 30)
        let calls = 20_000
        var burst: [UInt8] = []
        for index in 0..<calls {
            let create = Self.createRequest("d\(index)")
            let id = UInt32(2 * index + 1)
            burst += RawTTRPCConnection.encodeFrame(id: id, type: 1, data: RawTTRPCConnection.requestBytes(
                service: MethodTable.Credits.serviceName, method: MethodTable.Credits.createSubscription.method,
                payload: try create.serializedBytes()))
            burst += RawTTRPCConnection.encodeFrame(id: id, type: 3, data: [0x01])
        }
        nonisolated(unsafe) let connection = c
        let bytes = burst
        Thread.detachNewThread { try? connection.send(bytes) }  // while this thread reads
        // Each call is answered INVALID_ARGUMENT, or, if its write completed before the Data
        // frame was read, OK and then "StreamID is no longer active" for the frame.
        var answered = Set<UInt32>()
        while answered.count < calls {
            answered.insert(try c.readResponse().streamID)
        }
        // Every call is answered: at most the limit's worth of their writes may still wait.
        let stats = try RawTTRPCConnection(path: daemon.socketPath).call(
            id: 1, service: MethodTable.Admin.getStats.service, method: MethodTable.Admin.getStats.method)
        let committed = try Creditd_V1_GetStatsResponse(serializedBytes: try stats.get()).subscriptions
        XCTAssertGreaterThanOrEqual(committed, UInt64(calls - 100), "writes still queued once all were answered: \(calls - Int(committed))")
    }

    /// Row 2: the same with small answers (GetSubscription-sized), many more of them.
    func testNeverReadingClientWithSmallResponsesStallsOnlyItself() throws {
        try neverReadingClient(responseBytes: 8 << 10, calls: 20_000, sendsBlock: true)
    }

    private func neverReadingClient(responseBytes: UInt64, calls: Int, sendsBlock: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        let daemon = try DaemonProcess.start()
        let socket = daemon.socketPath
        XCTAssertLessThan(Self.probe(socket), 1)
        let before = Self.rss(daemon.pid)

        let attacker = try RawTTRPCConnection(path: socket)
        Self.setSendTimeout(attacker, 0.5)
        var size = Google_Protobuf_UInt64Value()
        size.value = responseBytes
        let payload = try size.serializedBytes() as [UInt8]
        var burst: [UInt8] = []
        for index in 0..<calls {
            burst += Self.request(UInt32(2 * index + 1), service: "creditd.test.Debug", method: "Big", payload: payload)
        }
        let sent = Self.sendUntilBlocked(attacker, burst)

        // Meanwhile, another client is served at its normal pace.
        let other = try RawTTRPCConnection(path: socket, receiveTimeout: 2)
        let start = Date()
        var answered = 0
        var id: UInt32 = 1
        while Date().timeIntervalSince(start) < 1.5 {
            XCTAssertEqual(try other.healthCheck(id: id), .serving, file: file, line: line)
            answered += 1
            id += 2
        }
        XCTAssertGreaterThan(answered, 100, "others keep being answered", file: file, line: line)
        let growth = Self.rss(daemon.pid) - before
        XCTAssertLessThan(growth, 64 << 20, "RSS grew by \(growth >> 20) MiB (attacker sent \(sent) bytes)", file: file, line: line)
        if sendsBlock {
            XCTAssertLessThan(sent, burst.count, "the attacker is no longer read: its sends block", file: file, line: line)
        }
        attacker.close()
        XCTAssertLessThan(Self.probe(socket), 1, file: file, line: line)
    }

    /// Row 3: 2,000 idle connections from one uid (more than --max-connections). Before: every
    /// new connection, root's and the probe's included, was closed at once. Now that uid's oldest
    /// idle connections make room, and other uids have their own budget.
    func testTwoThousandIdleConnectionsFromOneUID() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to run clients as other users") }
        let daemon = try Self.startSharedDaemon([])
        let socket = daemon.socketPath
        var idle: [RawTTRPCConnection] = []
        for _ in 0..<2_000 {
            idle.append(try RawTTRPCConnection(path: socket))
        }
        XCTAssertLessThan(Self.probe(socket), 1, "root is answered within normal latency")
        let check = try OpsProcess.creditctl(["check", "-s", socket])
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
        let other = try OpsProcess.creditctl(
            ["check", "-s", socket],
            prefix: try OpsTools.asUser(uid: Self.otherUID, gid: Self.otherUID, groups: [Self.clientsGID]))
        XCTAssertEqual(other.status, 0, "another uid connects: " + other.stdout + other.stderr)
        let stillOpen = idle.filter { !Self.isClosedByPeer($0) }.count
        XCTAssertLessThanOrEqual(stillOpen, 64, "at most the per-uid limit (a quarter of 256) stays open")
        for c in idle { c.close() }
    }

    /// Row 4: 200 connections each sending 1 MiB of a 4 MiB garbage frame and stopping there.
    /// Before: every partial frame was held (hundreds of MB) for as long as the client liked.
    /// Now only max_partial_frame_bytes are held, a new large frame is refused
    /// RESOURCE_EXHAUSTED, and every partial frame is cut off at the frame read timeout.
    func testLargeGarbageFramesAreBoundedAndTimedOut() throws {
        let daemon = try DaemonProcess.start(arguments: [
            "--max-partial-frame-bytes", "\(16 << 20)", "--frame-read-timeout", "2",
            "--max-connections", "300", "--max-connections-per-uid", "300",
        ])
        let socket = daemon.socketPath
        let quiet = (0..<5).map { _ in Self.probe(socket) }.max() ?? 0
        let before = Self.rss(daemon.pid)
        let length = 4 << 20
        let header = RawTTRPCConnection.encodeFrame(id: 1, type: 1, data: [], declaredLength: UInt32(length))
        let garbage = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
        var dripping: [RawTTRPCConnection] = []
        for _ in 0..<200 {
            let c = try RawTTRPCConnection(path: socket)
            Self.setSendTimeout(c, 1)
            Self.sendUntilBlocked(c, header + garbage)
            dripping.append(c)
        }
        // A whole large frame now: the budget is held by the partial frames.
        let whole = try RawTTRPCConnection(path: socket)
        try whole.send(header + garbage + [UInt8](repeating: 0xFF, count: length - garbage.count))
        let (_, result) = try whole.readResponse()
        guard case .failure(let error) = result else { return XCTFail("expected RESOURCE_EXHAUSTED") }
        XCTAssertEqual(error.code, .resourceExhausted)
        XCTAssertTrue(error.message.contains("partial frames"), error.message)

        let loaded = (0..<5).map { _ in Self.probe(socket) }.max() ?? .infinity
        XCTAssertLessThan(loaded, max(0.5, 5 * quiet), "others are answered (quiet \(quiet)s)")
        let growth = Self.rss(daemon.pid) - before
        XCTAssertLessThan(growth, 64 << 20, "RSS grew by \(growth >> 20) MiB")

        Thread.sleep(forTimeInterval: 3.5)
        let open = dripping.filter { !Self.isClosedByPeer($0) }.count
        XCTAssertEqual(open, 0, "partial frames are cut off at the frame read timeout")
        for c in dripping { c.close() }
        // With the budget free again, a whole large frame is read (and its garbage rejected).
        let after = try RawTTRPCConnection(path: socket)
        try after.send(header + [UInt8](repeating: 0xFF, count: length))
        let (_, second) = try after.readResponse()
        guard case .failure(let rejected) = second else { return XCTFail("garbage is not a request") }
        XCTAssertEqual(rejected.code, .invalidArgument, rejected.message)
    }

    /// Row 5: a connect/close loop against a full server. Before: one "connection limit reached"
    /// line per connection (212,581 in 15 s). Now one line per uid per second, with the count
    /// suppressed.
    func testRefusedConnectionLoopIsLoggedRateLimited() throws {
        let daemon = try DaemonProcess.start(arguments: ["--max-connections", "8", "--max-connections-per-uid", "8"])
        let socket = daemon.socketPath
        var busy: [RawTTRPCConnection] = []
        for _ in 0..<8 {
            let c = try RawTTRPCConnection(path: socket)
            try c.sendRequest(id: 1, service: "grpc.health.v1.Health", method: "Watch", flags: 0x01)
            _ = try c.readFrame()
            busy.append(c)
        }
        let start = Date()
        var attempts = 0
        while Date().timeIntervalSince(start) < 2.5 {
            if let c = try? RawTTRPCConnection(path: socket) { c.close() }
            attempts += 1
        }
        XCTAssertGreaterThan(attempts, 100)
        usleep(300_000)
        let lines = daemon.stderr.split(separator: "\n")
        let refused = lines.filter { $0.contains("connection refused") || $0.contains("connection limit reached") }
        XCTAssertGreaterThan(refused.count, 0, "refusals are logged, naming the uid")
        XCTAssertLessThanOrEqual(refused.count, 5, "\(attempts) refusals logged \(refused.count) times")
        XCTAssertTrue(refused.contains { $0.contains("uid=0") })
        XCTAssertTrue(refused.contains { $0.contains("suppressed=") }, "\(refused)")
        busy.removeFirst().close()
        usleep(100_000)

        // The metrics count what the log leaves out.
        let metrics = try OpsProcess.creditctl(["metrics", "-s", socket])
        XCTAssertEqual(metrics.status, 0, metrics.stderr)
        func value(_ sample: String) -> Double {
            metrics.stdout.split(separator: "\n").first { $0.hasPrefix(sample + " ") }
                .flatMap { Double($0.split(separator: " ").last!) } ?? -1
        }
        XCTAssertGreaterThan(value(#"creditd_connections_refused_total{reason="per_uid"}"#), 100, metrics.stdout)
        XCTAssertGreaterThan(value("creditd_log_lines_suppressed_total"), 100)
        XCTAssertEqual(value(#"creditd_connections_by_uid{uid="0"}"#), 8, "7 watchers and the metrics call")
        XCTAssertEqual(value("creditd_log_lines_dropped_total"), 0)
        XCTAssertEqual(value("creditd_buffered_response_bytes"), 0)
        for c in busy { c.close() }
    }

    /// Row 6: an unprivileged uid floods permission-denied writes while nobody reads the
    /// daemon's stderr. Before: one warning per call, written on the event loop, which blocked
    /// once the pipe was full (new connections waited seconds). Now denials are rate-limited
    /// per uid and log lines are written by a writer thread from a bounded queue.
    func testPermissionDeniedFloodWithStalledLogDoesNotStallServing() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to run clients as other users") }
        // The system interpreter: one under /root (pyenv) is not reachable for another uid.
        let python = "/usr/bin/python3"
        guard FileManager.default.isExecutableFile(atPath: python) else { throw XCTSkip("needs /usr/bin/python3") }
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        let readEnd = FileHandle(fileDescriptor: fds[0], closeOnDealloc: true)
        let writeEnd = FileHandle(fileDescriptor: fds[1], closeOnDealloc: true)
        let daemon = try Self.startSharedDaemon([], standardError: writeEnd)
        let socket = daemon.socketPath
        let calls = 20_000
        let request = RawTTRPCConnection.requestBytes(service: "creditd.v1.Credits", method: "CancelSubscription")
        let script = """
            import socket, struct, sys, threading
            path, n, req = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
            s = socket.socket(socket.AF_UNIX); s.settimeout(15); s.connect(path)
            frames = b"".join(struct.pack(">IIBB", len(req), 2 * i + 1, 1, 0) + req for i in range(n))
            got = [0]
            def read():
                data = b""
                while got[0] < n:
                    try: chunk = s.recv(1 << 16)
                    except OSError: break
                    if not chunk: break
                    data += chunk
                    offset = 0
                    while len(data) - offset >= 10:
                        length = struct.unpack(">I", data[offset:offset + 4])[0]
                        if len(data) - offset < 10 + length: break
                        offset += 10 + length; got[0] += 1
                    data = data[offset:]
            t = threading.Thread(target=read, daemon=True); t.start()
            try: s.sendall(frames)
            except OSError: pass
            t.join(15)
            print(got[0])
            """
        let flood = Process()
        flood.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        flood.arguments = try OpsTools.asUser(uid: Self.strangerUID, gid: Self.strangerUID, groups: [Self.clientsGID])
            + [python, "-c", script, socket, "\(calls)", request.map { String(format: "%02x", $0) }.joined()]
        let output = Pipe()
        let errors = Pipe()
        flood.standardOutput = output
        flood.standardError = errors
        let exited = DispatchSemaphore(value: 0)
        flood.terminationHandler = { _ in exited.signal() }
        try flood.run()

        var worst = 0.0
        for index in 0..<8 {
            worst = max(worst, Self.probe(socket, id: UInt32(2 * index + 1)))
            usleep(100_000)
        }
        XCTAssertLessThan(worst, 1, "new connections are answered while the log is stalled")
        if exited.wait(timeout: .now() + 40) == .timedOut {
            kill(flood.processIdentifier, SIGKILL)
            flood.waitUntilExit()
        }
        let answered = Int(String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        XCTAssertEqual(answered, calls, "every denied call is answered: "
                       + String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))

        _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
        var logged = Data()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let got = read(fds[0], &buffer, buffer.count)
            if got <= 0 { break }
            logged.append(contentsOf: buffer[0..<got])
        }
        let denials = String(decoding: logged, as: UTF8.self).split(separator: "\n").filter { $0.contains("permission denied") }
        XCTAssertGreaterThan(denials.count, 0)
        XCTAssertLessThanOrEqual(denials.count, 10, "denials are rate-limited per uid")
        _ = readEnd
        daemon.kill()
    }

    /// Row 7: a silent Health/Watch on each of 256 connections. Before: open streams disarmed
    /// the idle timeout, so they held their slots forever. Now silence closes them.
    func testSilentWatchStreamsAreClosedAtTheIdleTimeout() throws {
        let daemon = try DaemonProcess.start(arguments: [
            "--idle-timeout", "1", "--max-connections", "300", "--max-connections-per-uid", "300",
        ])
        let socket = daemon.socketPath
        var watching: [RawTTRPCConnection] = []
        for _ in 0..<256 {
            let c = try RawTTRPCConnection(path: socket)
            try c.sendRequest(id: 1, service: "grpc.health.v1.Health", method: "Watch", flags: 0x01)
            XCTAssertEqual(try c.readFrame().type, 3)
            watching.append(c)
        }
        Thread.sleep(forTimeInterval: 3)
        // Each stream gets its final frame (wire spec §6) before the close: UNAVAILABLE.
        for c in watching.prefix(8) {
            let last = try c.readResponse()
            XCTAssertEqual(last.streamID, 1)
            guard case .failure(let error) = last.result else { return XCTFail("\(last.result)") }
            XCTAssertEqual(error.code, .unavailable, "\(error)")
        }
        let open = watching.filter { !Self.isClosedByPeer($0) }.count
        XCTAssertEqual(open, 0, "silent streams are closed at the idle timeout")
        XCTAssertLessThan(Self.probe(socket), 1)
        for c in watching { c.close() }
    }

    /// Row 8 (held before; now also bounded in time): a frame dripped a byte at a time is cut
    /// off at the frame read timeout, and others are served meanwhile.
    func testSlowDripFrameIsCutOffAtTheFrameReadTimeout() throws {
        let daemon = try DaemonProcess.start(arguments: ["--frame-read-timeout", "1"])
        let socket = daemon.socketPath
        let drip = try RawTTRPCConnection(path: socket)
        let frame = Self.request(1, service: "grpc.health.v1.Health", method: "Check")
        let start = Date()
        var closed = false
        for byte in frame.dropLast() {
            if (try? drip.send([byte])) == nil || Self.isClosedByPeer(drip) {
                closed = true
                break
            }
            XCTAssertLessThan(Self.probe(socket), 1)
            usleep(100_000)
            if Date().timeIntervalSince(start) > 4 { break }
        }
        XCTAssertTrue(closed || drip.waitForPeerClose(within: 2), "the dripping connection is closed")
        XCTAssertLessThan(Date().timeIntervalSince(start), 4)
    }

    /// Row 8 (held before, kept): random bytes on 100 connections leave others served and
    /// memory flat. (All connections here are root's: the per-uid limit, 64 by default, would
    /// refuse the probe, so it is raised; another uid has its own budget.)
    func testRandomBytesOnManyConnections() throws {
        let daemon = try DaemonProcess.start(arguments: ["--max-connections-per-uid", "200"])
        let socket = daemon.socketPath
        let before = Self.rss(daemon.pid)
        var noisy: [RawTTRPCConnection] = []
        for index in 0..<100 {
            let c = try RawTTRPCConnection(path: socket)
            Self.setSendTimeout(c, 0.2)
            let bytes = (0..<(64 << 10)).map { UInt8(truncatingIfNeeded: ($0 &+ index) &* 2_654_435_761 >> 7) }
            Self.sendUntilBlocked(c, bytes)
            noisy.append(c)
        }
        XCTAssertLessThan(Self.probe(socket), 1)
        XCTAssertLessThan(Self.rss(daemon.pid) - before, 64 << 20)
        for c in noisy { c.close() }
    }
}
