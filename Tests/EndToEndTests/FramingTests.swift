import CreditClient
import CreditProto
import CreditWire
import Foundation
import SwiftProtobuf
import XCTest

/// Framing and envelope rules of docs/wire-protocol.md §4-§5 against the real daemon on a real socket.
final class FramingTests: XCTestCase {
    nonisolated(unsafe) static var daemon: DaemonProcess!
    var socket: String { Self.daemon.socketPath }

    override class func setUp() {
        super.setUp()
        daemon = try! DaemonProcess.start(arguments: ["--clock", "manual", "--now", "2025-04-01T00:00:00Z", "--max-in-flight", "1000"])
    }

    override class func tearDown() {
        if let daemon { XCTAssertEqual(try? daemon.stop(), 0) }
        daemon = nil
        super.tearDown()
    }

    private func connect() throws -> RawTTRPCConnection { try RawTTRPCConnection(path: socket) }

    private func assertError(_ result: Result<[UInt8], RPCError>, _ code: StatusCode, _ message: String? = nil,
                             file: StaticString = #filePath, line: UInt = #line) {
        switch result {
        case .success: XCTFail("expected \(code.name), got success", file: file, line: line)
        case .failure(let error):
            XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
            if let message { XCTAssertEqual(error.message, message, file: file, line: line) }
        }
    }

    func testSpecExampleBytes() throws {
        let c = try connect()
        try c.send(RawTTRPCConnection.encodeFrame(id: 1, type: 1, data: [0x0A, 0x15] + Array("grpc.health.v1.Health".utf8) + [0x12, 0x05] + Array("Check".utf8)))
        let frame = try c.readFrame()
        XCTAssertEqual(frame, .init(streamID: 1, type: 2, flags: 0, data: [0x12, 0x02, 0x08, 0x01]))
        try c.send(RawTTRPCConnection.encodeFrame(id: 5, type: 1, data: [0x0A, 0x0F] + Array("creditd.v9.Nope".utf8)))
        let unimplemented = try c.readFrame()
        XCTAssertEqual(unimplemented.streamID, 5)
        XCTAssertEqual(unimplemented.data, [0x0A, 0x1B, 0x08, 0x0C, 0x12, 0x17] + Array("service creditd.v9.Nope".utf8))
    }

    func testOversizeFrameIsDiscardedAndConnectionKept() throws {
        let c = try connect()
        let payload = [UInt8](repeating: 0xAB, count: 5 << 20)
        try c.sendRequest(id: 1, service: "grpc.health.v1.Health", method: "Check", payload: payload)
        let (id, result) = try c.readResponse()
        XCTAssertEqual(id, 1)
        let envelope = RawTTRPCConnection.requestBytes(service: "grpc.health.v1.Health", method: "Check", payload: payload)
        assertError(result, .resourceExhausted, "message length \(envelope.count) exceed maximum message size of 4194304")
        XCTAssertEqual(try c.healthCheck(id: 3), .serving)
    }

    func testOversizeCheckComesBeforeOddCheck() throws {
        let c = try connect()
        let body = [UInt8](repeating: 0, count: (4 << 20) + 1)
        try c.send(RawTTRPCConnection.encodeFrame(id: 2, type: 1, data: body))
        let (id, result) = try c.readResponse()
        XCTAssertEqual(id, 2)
        assertError(result, .resourceExhausted, "message length 4194305 exceed maximum message size of 4194304")
        XCTAssertEqual(try c.healthCheck(id: 1), .serving)
    }

    func testExactLimitFrameIsAccepted() throws {
        let c = try connect()
        // A Request envelope of exactly 4 MiB: the payload fills the rest.
        let base = RawTTRPCConnection.requestBytes(service: "creditd.test.Debug", method: "Echo", payload: [1])
        var size = (4 << 20) - base.count
        var envelope = RawTTRPCConnection.requestBytes(service: "creditd.test.Debug", method: "Echo", payload: [UInt8](repeating: 1, count: size))
        size -= envelope.count - (4 << 20)
        envelope = RawTTRPCConnection.requestBytes(service: "creditd.test.Debug", method: "Echo", payload: [UInt8](repeating: 1, count: size))
        XCTAssertEqual(envelope.count, 4 << 20)
        try c.sendFrame(id: 1, type: 1, data: envelope)
        let (id, result) = try c.readResponse()
        XCTAssertEqual(id, 1)
        // The payload is not a BytesValue, but the frame was read and dispatched.
        assertError(result, .invalidArgument)
    }

    func testEvenStreamIDs() throws {
        let c = try connect()
        try c.sendRequest(id: 2, service: "grpc.health.v1.Health", method: "Check")
        var (id, result) = try c.readResponse()
        XCTAssertEqual(id, 2)
        assertError(result, .invalidArgument, "StreamID must be odd for client initiated streams")
        // Any frame type, even an unknown one.
        try c.sendFrame(id: 4, type: 0x7F, data: [1, 2, 3])
        (id, result) = try c.readResponse()
        XCTAssertEqual(id, 4)
        assertError(result, .invalidArgument, "StreamID must be odd for client initiated streams")
        XCTAssertEqual(try c.healthCheck(id: 1), .serving, "even ids do not consume the odd sequence")
    }

    func testStreamIDReuseAndDecrease() throws {
        let c = try connect()
        XCTAssertEqual(try c.healthCheck(id: 5), .serving)
        assertError(try c.call(id: 5, service: "grpc.health.v1.Health", method: "Check"), .invalidArgument,
                    "StreamID cannot be re-used and must increment")
        assertError(try c.call(id: 3, service: "grpc.health.v1.Health", method: "Check"), .invalidArgument,
                    "StreamID cannot be re-used and must increment")
        XCTAssertEqual(try c.healthCheck(id: 7), .serving)
    }

    func testGarbageRequestBytes() throws {
        let c = try connect()
        try c.sendFrame(id: 1, type: 1, data: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
        let (id, result) = try c.readResponse()
        XCTAssertEqual(id, 1)
        assertError(result, .invalidArgument)
        if case .failure(let error) = result { XCTAssertTrue(error.message.hasPrefix("unmarshal request error: "), error.message) }
        XCTAssertEqual(try c.healthCheck(id: 3), .serving)
    }

    func testGarbagePayloadBytes() throws {
        let c = try connect()
        assertError(try c.call(id: 1, service: "grpc.health.v1.Health", method: "Check", payload: [0xFF, 0xFF, 0xFF]), .invalidArgument)
        XCTAssertEqual(try c.healthCheck(id: 3), .serving)
    }

    func testUnknownServiceAndMethod() throws {
        let c = try connect()
        assertError(try c.call(id: 1, service: "creditd.v9.Nope", method: "Check"), .unimplemented, "service creditd.v9.Nope")
        assertError(try c.call(id: 3, service: "creditd.v1.Admin", method: "Nope"), .unimplemented, "method Nope")
        // A known method with an empty payload is served (and refused by the domain's validation).
        assertError(try c.call(id: 5, service: "creditd.v1.Credits", method: "CreateSubscription"), .invalidArgument)
    }

    func testZeroLengthRequest() throws {
        let c = try connect()
        try c.sendFrame(id: 1, type: 1, data: [])
        let (id, result) = try c.readResponse()
        XCTAssertEqual(id, 1)
        assertError(result, .unimplemented, "service ")
    }

    func testUnknownFrameTypeAndClientResponseAreIgnored() throws {
        let c = try connect()
        try c.sendFrame(id: 1, type: 0x09, data: [1, 2, 3, 4])
        try c.sendFrame(id: 3, type: 0x02, data: [0x12, 0x00])
        try c.sendFrame(id: 5, type: 0x00, data: [])
        // The next answer is for the next request: nothing was sent for the ignored frames.
        XCTAssertEqual(try c.healthCheck(id: 7), .serving)
    }

    func testDataFrameRules() throws {
        let c = try connect()
        // Data on a stream that was never opened.
        try c.sendFrame(id: 1, type: 3, data: [0x08, 0x01])
        var (id, result) = try c.readResponse()
        XCTAssertEqual(id, 1)
        assertError(result, .invalidArgument, "StreamID is no longer active")
        // Data on a finished stream.
        XCTAssertEqual(try c.healthCheck(id: 3), .serving)
        try c.sendFrame(id: 3, type: 3, flags: 0x05, data: [])
        (id, result) = try c.readResponse()
        XCTAssertEqual(id, 3)
        assertError(result, .invalidArgument, "StreamID is no longer active")
        // Data on a running unary stream ends it with INVALID_ARGUMENT.
        try c.sendRequest(id: 5, service: "creditd.test.Debug", method: "Echo", metadata: [("sleep-ms", "2000")])
        try c.sendFrame(id: 5, type: 3, data: [0x0A, 0x00])
        (id, result) = try c.readResponse()
        XCTAssertEqual(id, 5)
        assertError(result, .invalidArgument)
        XCTAssertEqual(try c.healthCheck(id: 7), .serving)
    }

    func testWatchStreamsAndEmptyCloseIsIgnored() throws {
        let c = try connect()
        var request = Grpc_Health_V1_HealthCheckRequest()
        request.service = ""
        try c.sendRequest(id: 1, service: "grpc.health.v1.Health", method: "Watch", payload: try request.serializedBytes(), flags: 0x01)
        let first = try c.readFrame()
        XCTAssertEqual(first, .init(streamID: 1, type: 3, flags: 0, data: [0x08, 0x01]))
        // The client closing its send side changes nothing.
        try c.sendFrame(id: 1, type: 3, flags: 0x05, data: [])
        // Unknown names are reported and the stream stays open.
        request.service = "creditd.v9.Nope"
        try c.sendRequest(id: 3, service: "grpc.health.v1.Health", method: "Watch", payload: try request.serializedBytes(), flags: 0x01)
        XCTAssertEqual(try c.readFrame(), .init(streamID: 3, type: 3, flags: 0, data: [0x08, 0x03]))
        XCTAssertEqual(try c.healthCheck(id: 5), .serving)
        // Data carrying a message on a server-streaming stream ends it.
        try c.sendFrame(id: 1, type: 3, flags: 0, data: [0x0A, 0x00])
        let (id, result) = try c.readResponse()
        XCTAssertEqual(id, 1)
        assertError(result, .invalidArgument)
    }

    func testExpiredTimeoutIsDeadlineExceeded() throws {
        let c = try connect()
        var advance = Creditd_V1_AdvanceClockRequest()
        advance.byNanos = 3_600_000_000_000
        assertError(try c.call(id: 1, service: "creditd.v1.Admin", method: "AdvanceClock", payload: try advance.serializedBytes(), timeoutNano: -1),
                    .deadlineExceeded)
        // No side effect: the clock did not move.
        let clock = try Creditd_V1_GetClockResponse(serializedBytes: try c.call(id: 3, service: "creditd.v1.Admin", method: "GetClock").get())
        XCTAssertEqual(clock.now, "2025-04-01T00:00:00Z")
    }

    func testRunningReadIsAbandonedAtDeadline() throws {
        let c = try connect()
        var echo = Google_Protobuf_BytesValue()
        echo.value = Data([1, 2, 3])
        // A read that would take 5 s with a 200 ms deadline, then a 1 s read without one: the
        // abandoned read is answered first, so it did not run to its end.
        try c.sendRequest(id: 1, service: "creditd.test.Debug", method: "Echo", payload: try echo.serializedBytes(),
                          timeoutNano: 200_000_000, metadata: [("sleep-ms", "5000")])
        try c.sendRequest(id: 3, service: "creditd.test.Debug", method: "Echo", payload: try echo.serializedBytes(),
                          metadata: [("sleep-ms", "1000")])
        let first = try c.readResponse()
        XCTAssertEqual(first.streamID, 1)
        assertError(first.result, .deadlineExceeded)
        XCTAssertEqual(try c.readResponse().streamID, 3)
        // A write is not cut off: it returns its real result even when late.
        let late = try c.call(id: 5, service: "creditd.test.Debug", method: "EchoWrite", payload: try echo.serializedBytes(),
                              timeoutNano: 50_000_000, metadata: [("sleep-ms", "300")])
        XCTAssertEqual(try Google_Protobuf_BytesValue(serializedBytes: try late.get()).value, Data([1, 2, 3]))
    }

    func testHalfWrittenFrameThenDisconnect() throws {
        for cut in [3, 10, 25] {
            let c = try connect()
            let frame = RawTTRPCConnection.encodeFrame(id: 1, type: 1, data: RawTTRPCConnection.requestBytes(service: "grpc.health.v1.Health", method: "Check"))
            try c.send(Array(frame.prefix(cut)))
            c.close()
        }
        // A header announcing 4 MiB with only a few bytes of data, then gone.
        let c = try connect()
        try c.send(RawTTRPCConnection.encodeFrame(id: 1, type: 1, data: [1, 2, 3], declaredLength: 4 << 20))
        c.close()
        let again = try connect()
        XCTAssertEqual(try again.healthCheck(id: 1), .serving)
    }

    func testReplyOverLimitIsResourceExhausted() throws {
        let c = try connect()
        var size = Google_Protobuf_UInt64Value()
        size.value = UInt64(4 << 20)
        assertError(try c.call(id: 1, service: "creditd.test.Debug", method: "Big", payload: try size.serializedBytes()), .resourceExhausted)
        size.value = 1000
        let ok = try c.call(id: 3, service: "creditd.test.Debug", method: "Big", payload: try size.serializedBytes())
        XCTAssertEqual(try Google_Protobuf_BytesValue(serializedBytes: try ok.get()).value.count, 1000)
    }

    /// Metadata entries cost memory for as long as the call: a 4 MiB frame of empty entries
    /// once held 64 MiB per open Watch. More than 64 are refused; 64 are served.
    func testRequestWithTooManyMetadataEntriesIsResourceExhausted() throws {
        let c = try connect()
        let many = (0..<65).map { ("k", "\($0)") }
        assertError(try c.call(id: 1, service: "grpc.health.v1.Health", method: "Check", metadata: many),
                    .resourceExhausted, "request metadata has 65 entries, at most 64")
        let millionEmptyEntries = Array([[UInt8]](repeating: [0x2A, 0x00], count: 1_000_000).joined())
        try c.send(RawTTRPCConnection.encodeFrame(id: 3, type: 1, flags: 0x01, data: RawTTRPCConnection.requestBytes(
            service: "grpc.health.v1.Health", method: "Watch", payload: []) + millionEmptyEntries))
        let refused = try c.readResponse()
        XCTAssertEqual(refused.streamID, 3)
        assertError(refused.result, .resourceExhausted, "request metadata has 1000000 entries, at most 64")
        let ok = try c.call(id: 5, service: "grpc.health.v1.Health", method: "Check", metadata: Array(many.prefix(64)))
        XCTAssertNoThrow(try ok.get())
    }

    func testMetadataKeysAreLowercasedAndRepeatsKept() async throws {
        let client = try await CreditClient.connect(socketPath: socket)
        defer { Task { await client.close() } }
        let raw = try RawTTRPCConnection(path: socket)
        let result = try raw.call(id: 1, service: "creditd.test.Debug", method: "Metadata",
                                  metadata: [("X-Trace", "a"), ("x-trace", "b"), ("Other-Key", "C")])
        let lines = try Google_Protobuf_StringValue(serializedBytes: try result.get()).value
        XCTAssertEqual(lines, "x-trace=a\nx-trace=b\nother-key=C")

        let viaClient: Google_Protobuf_StringValue = try await client.call(
            service: "creditd.test.Debug", method: "Metadata", request: Google_Protobuf_Empty(), metadata: [("K", "v1"), ("k", "v2")]
        )
        XCTAssertEqual(viaClient.value, "k=v1\nk=v2")
    }

    func testResponsesInCompletionOrder() throws {
        let c = try connect()
        var echo = Google_Protobuf_BytesValue()
        echo.value = Data([9])
        try c.sendRequest(id: 1, service: "creditd.test.Debug", method: "Echo", payload: try echo.serializedBytes(), metadata: [("sleep-ms", "400")])
        try c.sendRequest(id: 3, service: "creditd.test.Debug", method: "Echo", payload: try echo.serializedBytes(), metadata: [("sleep-ms", "0")])
        XCTAssertEqual(try c.readResponse().streamID, 3)
        XCTAssertEqual(try c.readResponse().streamID, 1)
    }

    func testThousandConcurrentCallsOverEightConnections() async throws {
        var clients: [CreditClient] = []
        for _ in 0..<8 { clients.append(try await CreditClient.connect(socketPath: socket)) }
        let all = clients
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<1000 {
                let client = all[index % all.count]
                group.addTask {
                    var request = Google_Protobuf_BytesValue()
                    request.value = Data("call-\(index)".utf8)
                    let response: Google_Protobuf_BytesValue = try await client.call(
                        service: "creditd.test.Debug", method: "Echo", request: request,
                        timeout: .seconds(30), metadata: [("sleep-ms", "\(index % 7 * 3)")]
                    )
                    XCTAssertEqual(String(decoding: response.value, as: UTF8.self), "call-\(index)")
                }
            }
            try await group.waitForAll()
        }
        for client in all { await client.close() }
    }

    func testManyInFlightOnOneRawConnectionMatchIDs() throws {
        let c = try connect()
        var burst: [UInt8] = []
        for index in 0..<200 {
            var echo = Google_Protobuf_BytesValue()
            echo.value = Data("\(2 * index + 1)".utf8)
            burst += RawTTRPCConnection.encodeFrame(id: UInt32(2 * index + 1), type: 1, data: RawTTRPCConnection.requestBytes(
                service: "creditd.test.Debug", method: "Echo", payload: try echo.serializedBytes(), metadata: [("sleep-ms", "\(index % 5)")]
            ))
        }
        try c.send(burst)
        var seen = Set<UInt32>()
        for _ in 0..<200 {
            let (id, result) = try c.readResponse()
            let value = try Google_Protobuf_BytesValue(serializedBytes: try result.get()).value
            XCTAssertEqual(String(decoding: value, as: UTF8.self), "\(id)")
            XCTAssertTrue(seen.insert(id).inserted)
        }
        XCTAssertEqual(seen.count, 200)
    }
}
