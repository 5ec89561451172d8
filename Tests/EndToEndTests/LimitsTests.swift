import CreditClient
import CreditProto
import CreditWire
import Foundation
import XCTest

/// Connection limit, in-flight limit and idle timeout on a daemon started with small limits.
final class LimitsTests: XCTestCase {
    nonisolated(unsafe) static var daemon: DaemonProcess!
    var socket: String { Self.daemon.socketPath }

    override class func setUp() {
        super.setUp()
        daemon = try! DaemonProcess.start(arguments: ["--max-connections", "3", "--max-in-flight", "2", "--idle-timeout", "1"])
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

    func testConnectionLimitClosesRightAfterAccept() throws {
        var busy: [RawTTRPCConnection] = []
        for _ in 0..<3 {
            let c = try connectWhenAdmitted()
            try openWatch(c, id: 3)
            busy.append(c)
        }
        let extra = try RawTTRPCConnection(path: socket)
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

    func testIdleConnectionIsClosed() throws {
        let idle = try connectWhenAdmitted()
        let busy = try connectWhenAdmitted()
        try openWatch(busy, id: 3)
        XCTAssertTrue(idle.waitForPeerClose(within: 15), "a connection without open streams is closed after the idle timeout")
        XCTAssertFalse(busy.waitForPeerClose(within: 2.5), "a connection with an open stream is not idle")
        XCTAssertEqual(try busy.healthCheck(id: 5), .serving)
    }
}
