import CreditClient
import CreditProto
import CreditWire
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Start-up, socket ownership, shutdown and the clock flag, each on its own daemon.
final class DaemonLifecycleTests: XCTestCase {
    func testSecondDaemonOnSameSocketRefusesToStart() throws {
        let first = try DaemonProcess.start()
        let (status, stderr) = try DaemonProcess.runToExit(arguments: ["--socket", first.socketPath])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(stderr.contains("another creditd is serving \(first.socketPath)"), stderr)
        // The first one is untouched and still serving.
        let c = try RawTTRPCConnection(path: first.socketPath)
        XCTAssertEqual(try c.healthCheck(id: 1), .serving)
        XCTAssertEqual(try first.stop(), 0)
    }

    func testStaleSocketFromKilledDaemonIsReplaced() async throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let first = try DaemonProcess.start(directory: directory)
        first.kill()
        XCTAssertTrue(FileManager.default.fileExists(atPath: first.socketPath), "SIGKILL leaves the socket file behind")

        // A client sees the stale socket as ECONNREFUSED.
        do {
            _ = try await CreditClient.connect(socketPath: first.socketPath, timeout: .seconds(2))
            XCTFail("connect to a stale socket must fail")
        } catch ClientError.connectFailed(_, let code) {
            XCTAssertEqual(code, ECONNREFUSED)
        }

        let second = try DaemonProcess.start(directory: directory)
        XCTAssertTrue(second.stderr.contains("replacing stale socket file"), second.stderr)
        let client = try await CreditClient.connect(socketPath: second.socketPath)
        let status = try await client.healthCheck()
        XCTAssertEqual(status, .serving)
        await client.close()
        XCTAssertEqual(try second.stop(), 0)
    }

    func testSocketModeAndRemovalOnSIGTERM() throws {
        let daemon = try DaemonProcess.start()
        var info = stat()
        XCTAssertEqual(lstat(daemon.socketPath, &info), 0)
        XCTAssertEqual(info.st_mode & S_IFMT, S_IFSOCK)
        XCTAssertEqual(info.st_mode & 0o7777, 0o660)
        XCTAssertEqual(try daemon.stop(signal: SIGTERM), 0, daemon.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: daemon.socketPath), "the daemon removes its socket on exit")
        XCTAssertTrue(daemon.stderr.contains("stopped"), daemon.stderr)
    }

    func testSIGINTAlsoExitsZero() throws {
        let daemon = try DaemonProcess.start()
        XCTAssertEqual(try daemon.stop(signal: SIGINT), 0, daemon.stderr)
    }

    func testRegularFileAtSocketPathIsNotReplaced() throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("creditd.sock").path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data("keep".utf8)))
        let (status, stderr) = try DaemonProcess.runToExit(arguments: [], directory: directory)
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(stderr.contains("is not a socket"), stderr)
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "keep")
    }

    /// Start-up errors say what is wrong in the system's words, not Foundation's or NIO's.
    func testStartupErrorsNameThePathAndTheSystemsReason() throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("plain-file").path
        XCTAssertTrue(FileManager.default.createFile(atPath: file, contents: Data()))
        let state = try DaemonProcess.runToExit(arguments: ["--state-dir", file + "/state"], directory: directory)
        XCTAssertNotEqual(state.status, 0)
        XCTAssertTrue(state.stderr.contains("cannot create the state directory \(file)/state"), state.stderr)
        XCTAssertTrue(state.stderr.contains("Not a directory"), state.stderr)
        XCTAssertFalse(state.stderr.contains("NSCocoaErrorDomain"), state.stderr)

        // 104 bytes: what sun_path would hold on Linux, more than NIO binds and creditctl
        // connects to. Refused at once, with the limit, not as "unixDomainSocketPathTooLong".
        let long = directory.path + "/" + String(repeating: "s", count: max(1, 104 - directory.path.utf8.count - 6)) + ".sock"
        XCTAssertEqual(long.utf8.count, 104)
        let socket = try DaemonProcess.runToExit(arguments: ["--socket", long], directory: directory)
        XCTAssertNotEqual(socket.status, 0)
        XCTAssertTrue(socket.stderr.contains("socket path is longer than 103 bytes (104)"), socket.stderr)

        // A negative number is a value, judged as one, not a missing one.
        let negative = try DaemonProcess.runToExit(arguments: ["--max-connections", "-1"], directory: directory)
        XCTAssertNotEqual(negative.status, 0)
        XCTAssertTrue(negative.stderr.contains("max connections must be > 0"), negative.stderr)
    }

    func testClientConnectErrorsAreDistinguishable() async throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        do {
            _ = try await CreditClient.connect(socketPath: directory.appendingPathComponent("missing.sock").path)
            XCTFail("expected ENOENT")
        } catch ClientError.connectFailed(_, let code) {
            XCTAssertEqual(code, ENOENT)
        }

        // A server whose listen backlog is full (it never accepts): connect refuses with
        // EAGAIN. The client waits for room until its deadline, as for a queued connection.
        let path = directory.appendingPathComponent("busy.sock").path
        let server = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(server) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
        }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(server, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(bound, 0)
        XCTAssertEqual(listen(server, 0), 0)
        // Non-blocking connects fill the backlog (a blocking one would wait for room).
        var queued: [Int32] = []
        defer { queued.forEach { close($0) } }
        while queued.count < 64 {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
            }
            queued.append(fd)
            if connected != 0 { break }  // EAGAIN: the backlog is full
        }
        let started = ContinuousClock.now
        do {
            _ = try await CreditClient.connect(socketPath: path, timeout: .milliseconds(600))
            XCTFail("connected to a server that never accepts")
        } catch ClientError.connectTimedOut {
            XCTAssertGreaterThan(ContinuousClock.now - started, .milliseconds(500), "it waited for room")
        }
    }

    func testShutdownEndsWatchWithNotServingThenUnavailable() throws {
        let daemon = try DaemonProcess.start()
        let c = try RawTTRPCConnection(path: daemon.socketPath)
        try c.sendRequest(id: 1, service: "grpc.health.v1.Health", method: "Watch", flags: 0x01)
        XCTAssertEqual(try c.readFrame(), .init(streamID: 1, type: 3, flags: 0, data: [0x08, 0x01]))
        kill(daemon.pid, SIGTERM)
        XCTAssertEqual(try c.readFrame(), .init(streamID: 1, type: 3, flags: 0, data: [0x08, 0x02]))
        let (id, result) = try c.readResponse()
        XCTAssertEqual(id, 1)
        guard case .failure(let error) = result else { return XCTFail("expected UNAVAILABLE") }
        XCTAssertEqual(error.code, .unavailable)
        XCTAssertTrue(c.waitForPeerClose(within: 10))
        XCTAssertEqual(try daemon.waitForExit(), 0, daemon.stderr)
    }

    /// A call parked while creditd recovers is answered UNAVAILABLE the moment recovery fails,
    /// and creditd exits at once. Before, nothing released it: the shutdown drained it for the
    /// whole shutdown grace (10 s), the client got EOF instead of an answer, and creditd logged
    /// why it could not start only after that. The journal here is a FIFO, so recovery waits
    /// on it until the test writes bytes that are no segment.
    func testCallsParkedDuringAFailedRecoveryAreAnsweredUnavailable() throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let state = directory.appendingPathComponent("state").path
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        let fifo = state + "/journal-00000000000000000001.log"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        let daemon = try DaemonProcess.start(directory: directory, waitUntilServing: false)
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: daemon.socketPath), Date() < deadline { usleep(20_000) }
        let connection = try RawTTRPCConnection(path: daemon.socketPath, receiveTimeout: 20)
        defer { connection.close() }
        var request = Creditd_V1_GetSubscriptionRequest()
        request.subscriptionID = "s1"
        try connection.sendRequest(id: 1, service: MethodTable.Credits.serviceName, method: MethodTable.Credits.getSubscription.method,
                                   payload: try request.serializedBytes())
        // Health is answered during recovery; behind it on the same connection, the call is parked.
        XCTAssertEqual(try connection.healthCheck(id: 3), .notServing)

        var writer: Int32 = -1
        while writer < 0, Date() < deadline {
            writer = open(fifo, O_WRONLY | O_NONBLOCK)  // ENXIO until recovery opens it to read
            if writer < 0 { usleep(20_000) }
        }
        XCTAssertGreaterThanOrEqual(writer, 0, "recovery never opened the journal")
        let garbage = [UInt8](repeating: 0x5A, count: 200)
        _ = garbage.withUnsafeBytes { write(writer, $0.baseAddress, $0.count) }
        close(writer)

        let failed = Date()
        let (id, result) = try connection.readResponse()
        XCTAssertEqual(id, 1)
        guard case .failure(let error) = result else { return XCTFail("the parked call succeeded") }
        XCTAssertEqual(error.code, .unavailable)
        XCTAssertEqual(error.message, "creditd could not recover its state and is stopping; its log says why")
        XCTAssertEqual(try daemon.waitForExit(timeout: 20), 1, daemon.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(failed), 5, "no drain of the shutdown grace (10 s)")
        XCTAssertTrue(daemon.stderr.contains("cannot run"), daemon.stderr)
    }

    func testInFlightCallFinishesDuringGracefulShutdown() throws {
        let daemon = try DaemonProcess.start()
        let c = try RawTTRPCConnection(path: daemon.socketPath)
        try c.sendRequest(id: 1, service: "creditd.test.Debug", method: "Echo", payload: [0x0A, 0x01, 0x07], metadata: [("sleep-ms", "500")])
        // Make sure the call is running before the signal.
        XCTAssertEqual(try c.healthCheck(id: 3), .serving)
        kill(daemon.pid, SIGTERM)
        let (id, result) = try c.readResponse()
        XCTAssertEqual(id, 1)
        XCTAssertEqual(try result.get(), [0x0A, 0x01, 0x07])
        XCTAssertEqual(try daemon.waitForExit(), 0, daemon.stderr)
    }

    /// Calls still running when the shutdown grace ends are answered, not cut off: a write as
    /// UNAVAILABLE `persistence_outcome_unknown`, a read as UNAVAILABLE; creditd then exits 0.
    func testCallsStillRunningWhenTheGraceEndsAreAnswered() throws {
        let daemon = try DaemonProcess.start(arguments: ["--shutdown-grace", "1"])
        let c = try RawTTRPCConnection(path: daemon.socketPath)
        try c.sendRequest(id: 1, service: "creditd.test.Debug", method: "EchoWrite", payload: [0x0A, 0x01, 0x07],
                          metadata: [("sleep-ms", "30000")])
        try c.sendRequest(id: 3, service: "creditd.test.Debug", method: "Echo", payload: [0x0A, 0x01, 0x07],
                          metadata: [("sleep-ms", "30000")])
        XCTAssertEqual(try c.healthCheck(id: 5), .serving)
        let stopped = Date()
        kill(daemon.pid, SIGTERM)
        var answers: [UInt32: RPCError] = [:]
        for _ in 0..<2 {
            let (id, result) = try c.readResponse()
            guard case .failure(let error) = result else { return XCTFail("call \(id) succeeded") }
            answers[id] = error
        }
        XCTAssertLessThan(Date().timeIntervalSince(stopped), 10, "answered at the grace's end, not the calls' end")
        XCTAssertEqual(answers[1]?.code, .unavailable)
        XCTAssertEqual(answers[1]?.reason, "persistence_outcome_unknown")
        XCTAssertEqual(answers[3]?.code, .unavailable)
        XCTAssertEqual(answers[3]?.message, "server is shutting down (its shutdown grace of 1 s ended before this call finished)")
        XCTAssertTrue(c.waitForPeerClose(within: 10))
        XCTAssertEqual(try daemon.waitForExit(), 0, daemon.stderr)
    }

    func testManualClock() async throws {
        let daemon = try DaemonProcess.start(arguments: ["--clock", "manual", "--now", "2025-04-01T10:00:00+02:00"])
        let client = try await CreditClient.connect(socketPath: daemon.socketPath)
        var clock = try await client.getClock()
        XCTAssertTrue(clock.manual)
        XCTAssertEqual(clock.now, "2025-04-01T08:00:00Z")
        XCTAssertEqual(clock.nowUnixNanos, 1_743_494_400_000_000_000)

        var advance = Creditd_V1_AdvanceClockRequest()
        advance.byNanos = 86_400 * 1_000_000_000
        let advanced = try await client.advanceClock(advance)
        XCTAssertEqual(advanced.now, "2025-04-02T08:00:00Z")
        clock = try await client.getClock()
        XCTAssertEqual(clock.nowUnixNanos, advanced.nowUnixNanos)

        advance = Creditd_V1_AdvanceClockRequest()
        advance.toUnixNanos = 1_743_494_400_000_000_000  // backwards
        do {
            _ = try await client.advanceClock(advance)
            XCTFail("moving backwards must fail")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .invalidArgument)
            XCTAssertEqual(error.reason, "invalid_request")
            XCTAssertEqual(error.errorReason?.reason, "invalid_request")
        }
        await client.close()
        XCTAssertEqual(try daemon.stop(), 0)
    }

    func testSystemClockRefusesAdvance() async throws {
        let daemon = try DaemonProcess.start(arguments: ["--clock", "system"])
        let client = try await CreditClient.connect(socketPath: daemon.socketPath)
        let clock = try await client.getClock()
        XCTAssertFalse(clock.manual)
        XCTAssertGreaterThan(clock.nowUnixNanos, 1_700_000_000_000_000_000)
        var advance = Creditd_V1_AdvanceClockRequest()
        advance.byNanos = 1_000_000_000
        do {
            _ = try await client.advanceClock(advance)
            XCTFail("the system clock cannot be advanced")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .failedPrecondition)
        }
        let stats = try await client.getStats()
        XCTAssertFalse(stats.manualClock)
        await client.close()
        XCTAssertEqual(try daemon.stop(), 0)
    }

    func testConfigFileAndFlagPrecedence() async throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("creditd.json")
        try Data(#"{"clock": "manual", "now": "2030-01-01T00:00:00Z", "max_in_flight": 7}"#.utf8).write(to: config)
        let daemon = try DaemonProcess.start(arguments: ["--config", config.path, "--now", "2031-06-01T12:00:00Z"], directory: directory)
        let client = try await CreditClient.connect(socketPath: daemon.socketPath)
        let clock = try await client.getClock()
        XCTAssertTrue(clock.manual, "from the file")
        XCTAssertEqual(clock.now, "2031-06-01T12:00:00Z", "the flag overrides the file")
        await client.close()
        XCTAssertEqual(try daemon.stop(), 0)

        try Data(#"{"clock": "manual", "bogus_key": 1}"#.utf8).write(to: config)
        let (status, stderr) = try DaemonProcess.runToExit(arguments: ["--config", config.path], directory: directory)
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(stderr.contains("unknown key \"bogus_key\""), stderr)
    }

    func testClientTimeoutIsEnforcedLocally() async throws {
        let daemon = try DaemonProcess.start()
        let client = try await CreditClient.connect(socketPath: daemon.socketPath)
        do {
            _ = try await client.callRaw(service: "creditd.test.Debug", method: "EchoWrite", payload: [],
                                         timeout: .milliseconds(100), metadata: [("sleep-ms", "3000")])
            XCTFail("expected a timeout")
        } catch ClientError.timedOut {
        }
        // The connection stays usable, and the late Response is dropped.
        let status = try await client.healthCheck()
        XCTAssertEqual(status, .serving)
        await client.close()
        XCTAssertEqual(try daemon.stop(), 0)
    }

    func testReloadChangesLimitsWithoutDroppingConnections() async throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("creditd.json")
        try Data(#"{"max_in_flight": 1}"#.utf8).write(to: config)
        let daemon = try DaemonProcess.start(arguments: ["--config", config.path], directory: directory)
        let c = try RawTTRPCConnection(path: daemon.socketPath)
        try c.sendRequest(id: 1, service: "grpc.health.v1.Health", method: "Watch", flags: 0x01)
        XCTAssertEqual(try c.readFrame().data, [0x08, 0x01])
        guard case .failure(let limited) = try c.call(id: 3, service: "grpc.health.v1.Health", method: "Check") else {
            return XCTFail("expected RESOURCE_EXHAUSTED at max_in_flight 1")
        }
        XCTAssertEqual(limited.code, .resourceExhausted)

        // Admin/Reload re-reads the file; the open connection (and its Watch) stays.
        try Data(#"{"max_in_flight": 4}"#.utf8).write(to: config)
        let client = try await CreditClient.connect(socketPath: daemon.socketPath)
        let reloaded = try await client.reload()
        XCTAssertEqual(reloaded.message, "configuration reloaded from \(config.path); applied: max_in_flight 1 -> 4")
        XCTAssertEqual(try c.healthCheck(id: 5), .serving)

        // SIGHUP does the same.
        try Data(#"{"max_in_flight": 1}"#.utf8).write(to: config)
        kill(daemon.pid, SIGHUP)
        var limitedAgain = false
        var id: UInt32 = 7
        for _ in 0..<250 where !limitedAgain {
            if case .failure(let error) = try c.call(id: id, service: "grpc.health.v1.Health", method: "Check") {
                limitedAgain = error.code == .resourceExhausted
            }
            id += 2
            usleep(20_000)
        }
        XCTAssertTrue(limitedAgain, daemon.stderr)
        await client.close()
        XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)
    }
}
