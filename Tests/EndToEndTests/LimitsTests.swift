import CreditClient
import CreditProto
import CreditWire
import Foundation
import XCTest

/// Connection limit, in-flight limit and idle timeout on a daemon started with small limits
/// (every connection here is root's: the per-uid limit is raised to the total).
final class LimitsTests: XCTestCase {
    nonisolated(unsafe) static var daemon: DaemonProcess!
    var socket: String { Self.daemon.socketPath }

    override class func setUp() {
        super.setUp()
        daemon = try! DaemonProcess.start(arguments: ["--max-connections", "3", "--max-connections-per-uid", "3", "--max-in-flight", "2", "--idle-timeout", "2"])
    }

    override class func tearDown() {
        if let daemon { XCTAssertEqual(try? daemon.stop(), 0) }
        daemon = nil
        super.tearDown()
    }

    /// Opens a Watch on `id` and reads its first message, which keeps the connection busy.
    private func openWatch(_ c: RawTTRPCConnection, id: UInt32) throws {
        try c.sendRequest(id: id, service: "grpc.health.v1.Health", method: "Watch", flags: 0x01)
        XCTAssertEqual(try c.readFrame(), .init(streamID: id, type: 3, flags: 0, data: [0x08, 0x01]))
    }

    /// Retries until the server has released closed connections (their close is asynchronous).
    private func connectWhenAdmitted() throws -> RawTTRPCConnection {
        for _ in 0..<250 {
            if let c = try? RawTTRPCConnection(path: socket, receiveTimeout: 2), (try? c.healthCheck(id: 1)) == .serving {
                return c
            }
            usleep(20_000)
        }
        throw RawTTRPCConnection.Failure.timedOut
    }

    /// Over the limit, with every open connection busy, a new connection's first request is
    /// answered RESOURCE_EXHAUSTED naming the limit, and the connection is closed.
    func testConnectionOverLimitGetsResourceExhausted() throws {
        var busy: [RawTTRPCConnection] = []
        for _ in 0..<3 {
            let c = try connectWhenAdmitted()
            try openWatch(c, id: 3)
            busy.append(c)
        }
        let extra = try RawTTRPCConnection(path: socket)
        let refused = try extra.call(id: 1, service: "grpc.health.v1.Health", method: "Check")
        guard case .failure(let error) = refused else { return XCTFail("expected RESOURCE_EXHAUSTED") }
        XCTAssertEqual(error.code, .resourceExhausted)
        XCTAssertTrue(error.message.contains("limit"), error.message)
        XCTAssertTrue(extra.waitForPeerClose(within: 10), "the connection over the limit is closed")
        busy.removeLast().close()
        let admitted = try connectWhenAdmitted()
        XCTAssertEqual(try admitted.healthCheck(id: 3), .serving)
        for c in busy { c.close() }
    }

    func testInFlightLimitPerConnection() throws {
        let c = try connectWhenAdmitted()
        try openWatch(c, id: 3)
        try openWatch(c, id: 5)
        let result = try c.call(id: 7, service: "grpc.health.v1.Health", method: "Check")
        guard case .failure(let error) = result else { return XCTFail("expected RESOURCE_EXHAUSTED") }
        XCTAssertEqual(error.code, .resourceExhausted)
        // Another connection has its own budget.
        let other = try connectWhenAdmitted()
        XCTAssertEqual(try other.healthCheck(id: 3), .serving)
    }

    func testBurstBeyondInFlightLimit() throws {
        let c = try connectWhenAdmitted()
        var burst: [UInt8] = []
        for id in stride(from: UInt32(3), through: 21, by: 2) {
            burst += RawTTRPCConnection.encodeFrame(id: id, type: 1, data: RawTTRPCConnection.requestBytes(
                service: "creditd.test.Debug", method: "Echo", metadata: [("sleep-ms", "300")]
            ))
        }
        try c.send(burst)
        var codes: [UInt32: StatusCode] = [:]
        for _ in 0..<10 {
            let (id, result) = try c.readResponse()
            switch result {
            case .success: codes[id] = .ok
            case .failure(let error): codes[id] = error.code
            }
        }
        XCTAssertEqual(codes.count, 10)
        XCTAssertEqual(codes.values.filter { $0 == .ok }.count, 2, "\(codes)")
        XCTAssertEqual(codes.values.filter { $0 == .resourceExhausted }.count, 8, "\(codes)")
        XCTAssertEqual(codes[3], .ok)
        XCTAssertEqual(codes[5], .ok)
    }

    /// Silence closes a connection, whether or not it holds an open stream (issue 13: a silent
    /// Health/Watch no longer keeps a slot forever); one that keeps calling stays open.
    func testIdleConnectionIsClosed() throws {
        let idle = try connectWhenAdmitted()
        let watching = try connectWhenAdmitted()
        try openWatch(watching, id: 3)
        let active = try connectWhenAdmitted()
        let start = Date()
        var id: UInt32 = 3
        while Date().timeIntervalSince(start) < 3.5 {
            XCTAssertEqual(try active.healthCheck(id: id), .serving, "a connection that keeps calling is not idle")
            id += 2
            usleep(300_000)
        }
        XCTAssertTrue(idle.waitForPeerClose(within: 15), "a connection without open streams is closed after the idle timeout")
        XCTAssertTrue(watching.waitForPeerClose(within: 15), "a connection whose only stream is silent is closed too")
    }
}
