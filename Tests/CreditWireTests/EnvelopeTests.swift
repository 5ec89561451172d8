import CreditProto
import CreditWire
import NIOCore
import SwiftProtobuf
import XCTest

final class EnvelopeTests: XCTestCase {
    private let allocator = ByteBufferAllocator()

    func testZeroLengthRequestDecodesAsEmpty() throws {
        let request = try TTRPCEnvelope.decodeRequest(ByteBuffer())
        XCTAssertEqual(request, Ttrpc_Request())
        XCTAssertEqual(request.service, "")
        XCTAssertEqual(request.timeoutNano, 0)
    }

    func testGarbageRequestFailsToDecode() {
        XCTAssertThrowsError(try TTRPCEnvelope.decodeRequest(ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF])))
    }

    func testRequestRoundTrip() throws {
        let request = Ttrpc_Request(service: "creditd.v1.Admin", method: "GetClock", payload: [1, 2],
                                    timeoutNano: -5, metadata: [("k", "v"), ("k", "w")])
        let frame = try TTRPCEnvelope.requestFrame(streamID: 3, request: request, allocator: allocator)
        XCTAssertEqual(try TTRPCEnvelope.decodeRequest(frame.payload), request)
    }

    /// Names read without validation when every byte is ASCII, and through the full UTF-8
    /// check otherwise: both paths give SwiftProtobuf's answer.
    func testStringFieldsASCIIAndUTF8() throws {
        let valid: [[UInt8]] = [
            Array("creditd.v1.Credits".utf8), [0x7F, 0x41], [], Array("réseau".utf8), [0xF0, 0x9F, 0x92, 0xB3],
        ]
        // A lone continuation byte, a cut sequence, 0xFF, an encoded surrogate.
        let invalid: [[UInt8]] = [[0x41, 0x80], [0xC3], [0xFF, 0x41], [0xED, 0xA0, 0x80]]
        for name in valid + invalid {
            let bytes: [UInt8] = [0x0A, UInt8(name.count)] + name + [0x12, 0x01, 0x4D]
            let reference = try? Ttrpc_Request(serializedBytes: bytes)
            let fast = try? RequestEnvelope(decoding: ByteBuffer(bytes: bytes))
            XCTAssertEqual(fast?.service, reference?.service, "\(name)")
            XCTAssertEqual(fast == nil, invalid.contains(name), "\(name)")
            XCTAssertEqual(reference == nil, invalid.contains(name), "\(name)")
        }
    }

    /// The server's hand-written reader against SwiftProtobuf's, on valid and damaged input.
    func testRequestEnvelopeMatchesSwiftProtobuf() throws {
        var generator = SystemRandomNumberGenerator()
        for round in 0..<2_000 {
            let request = Ttrpc_Request(
                service: round % 7 == 0 ? "" : "creditd.v1.Credits", method: String(repeating: "é", count: round % 5),
                payload: (0..<(round % 300)).map { _ in UInt8.random(in: 0...255, using: &generator) },
                timeoutNano: round % 3 == 0 ? -Int64(round) : Int64(round) << 20,
                metadata: (0..<(round % 4)).map { ("k\($0)", "v\(round)") })
            var bytes: [UInt8] = try request.serializedBytes()
            if round % 2 == 1, !bytes.isEmpty {
                // Damage it: flip, cut or extend.
                switch round % 6 {
                case 1: bytes[Int.random(in: 0..<bytes.count, using: &generator)] ^= UInt8.random(in: 1...255, using: &generator)
                case 3: bytes.removeLast(Int.random(in: 1...bytes.count, using: &generator))
                default: bytes += [0x28, 0x01, 0xFA, 0x01, 0x02, 0xC3, 0x28]
                }
            }
            let reference = try? Ttrpc_Request(serializedBytes: bytes)
            let fast = try? RequestEnvelope(decoding: ByteBuffer(bytes: bytes))
            XCTAssertEqual(fast == nil, reference == nil, "\(bytes)")
            if let fast, let reference { XCTAssertEqual(fast, RequestEnvelope(reference), "\(bytes)") }
        }
    }

    /// Found by the frame fuzzer: unknown fields in the deprecated group encoding (wire types
    /// 3 and 4) are skipped to their matching end, as SwiftProtobuf does.
    func testUnknownGroupsAreSkippedLikeSwiftProtobuf() throws {
        let cases: [[UInt8]] = [
            [99, 114, 101, 100, 105, 116, 100, 46, 118, 49, 46, 105, 111, 110, 115, 26, 2, 8, 10, 32, 128, 228, 151, 208, 18,
             42, 116, 121, 112, 101, 46, 103, 111, 111, 103, 108, 101, 97, 112, 105, 115, 46, 99, 111, 109, 47, 99, 114, 101,
             100, 105, 116, 100, 46, 118, 49, 46, 69, 114, 114, 111, 114, 82, 101, 97, 115, 111, 110, 18, 10, 12, 88, 45, 82,
             101, 113, 117, 101, 115, 116, 45, 73, 100, 18, 2, 97, 49, 42, 89, 10, 12, 120, 45, 114, 101, 113, 117, 101, 115,
             116, 89, 10, 12, 120, 45, 114, 101, 113, 117, 101, 115, 116, 45, 105, 100, 18, 2, 97, 50],
            [0x33, 0x08, 0x01, 0x34, 0x0A, 0x01, 0x41],        // group 6 { varint }, then service "A"
            [0x33, 0x08, 0x01],                                  // a group that never ends
            [0x33, 0x3C],                                        // a group closed by another field's end
            [0x34],                                              // an end without a start
        ] + (97...101).flatMap { depth in
            // Groups nested to SwiftProtobuf's depth limit (100, counting the Request itself
            // and a metadata entry), at the top and inside an entry.
            let nested = [UInt8](repeating: 0x33, count: depth) + [UInt8](repeating: 0x34, count: depth)
            return [nested, [0x2A, UInt8(nested.count & 0x7F | 0x80), UInt8(nested.count >> 7)] + nested]
        }
        for bytes in cases {
            let reference = try? Ttrpc_Request(serializedBytes: bytes)
            let fast = try? RequestEnvelope(decoding: ByteBuffer(bytes: bytes))
            XCTAssertEqual(fast == nil, reference == nil, "\(bytes)")
            if let fast, let reference { XCTAssertEqual(fast, RequestEnvelope(reference), "\(bytes)") }
        }
    }

    /// Found by the frame fuzzer: a ten-byte varint whose last byte carries bits past the 64th
    /// is accepted with those bits dropped, and an eleven-byte one is refused, as SwiftProtobuf
    /// does; in known fields and in skipped ones alike.
    func testOverlongVarintsReadLikeSwiftProtobuf() throws {
        let ten: [UInt8] = [0xF6] + [UInt8](repeating: 0xFF, count: 8) + [0x18]
        let eleven: [UInt8] = [0xF6] + [UInt8](repeating: 0xFF, count: 9) + [0x01]
        let cases: [[UInt8]] = [
            [40, 18, 32, 128, 24, 24, 128, 116, 24, 246, 255, 255, 255, 255, 255, 255, 255, 255, 24, 24, 24, 24, 24, 24, 24,
             24, 24, 24, 24, 24, 24, 24, 24],
            [0x20] + ten,                  // timeout_nano
            [0x20] + eleven,
            [0x48] + ten,                  // unknown field 9, skipped
            [0x48] + eleven,
            [0x12] + ten,                  // a length
            [0x0A, 0x01, 0x41, 0x20] + ten + [0x12, 0x01, 0x42],
        ]
        for bytes in cases {
            let reference = try? Ttrpc_Request(serializedBytes: bytes)
            let fast = try? RequestEnvelope(decoding: ByteBuffer(bytes: bytes))
            XCTAssertEqual(fast == nil, reference == nil, "\(bytes)")
            if let fast, let reference { XCTAssertEqual(fast, RequestEnvelope(reference), "\(bytes)") }
        }
        XCTAssertNotNil(try? RequestEnvelope(decoding: ByteBuffer(bytes: [0x20] + ten)))
        XCTAssertNil(try? RequestEnvelope(decoding: ByteBuffer(bytes: [0x20] + eleven)))
    }

    /// Past `maxMetadataEntries` entries are counted, not kept (the server refuses the request).
    func testMetadataPastTheLimitIsCountedNotKept() throws {
        var request = Ttrpc_Request()
        request.service = "s"
        request.metadata = (0..<100).map { index in
            var entry = Ttrpc_KeyValue()
            entry.key = "k\(index)"
            entry.value = "v"
            return entry
        }
        let bytes = try request.serializedBytes() as [UInt8]
        let fast = try RequestEnvelope(decoding: ByteBuffer(bytes: bytes))
        XCTAssertEqual(fast.metadataCount, 100)
        XCTAssertEqual(fast.metadata.map(\.key), (0..<RequestEnvelope.maxMetadataEntries).map { "k\($0)" })
        XCTAssertEqual(fast, RequestEnvelope(request))
    }

    /// Found by the frame fuzzer: SwiftProtobuf reads a field's tag in at most five bytes
    /// (the fifth at most 15) but a tag inside a skipped group as any varint below 2^32.
    func testPaddedFieldTagsReadLikeSwiftProtobuf() throws {
        let cases: [[UInt8]] = [
            [128, 185, 128, 185, 128, 0, 0],                      // six-byte tag of field 14943120
            [0x88, 0x80, 0x80, 0x80, 0x00, 0x01],                 // field 1 wire 0 padded to five bytes
            [0x88, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01],           // ... to six
            [0x88, 0x80, 0x80, 0x80, 0x10, 0x01],                 // fifth byte 16: past 32 bits
            [0x88, 0x80, 0x80, 0x80, 0x0F, 0x01],                 // fifth byte 15
            [0x8A, 0x80, 0x80],                                   // truncated tag
            [0x2A, 0x06, 0x8A, 0x80, 0x80, 0x80, 0x80, 0x00],     // a metadata entry's padded tag
            [0x33, 0x88, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01, 0x34], // a padded tag inside a group
            [0x33, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x34],           // key 2^32 - 1 inside a group
            [0x33, 0x8C, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00, 0x34], // padded end of a group
        ]
        for bytes in cases {
            let reference = try? Ttrpc_Request(serializedBytes: bytes)
            let fast = try? RequestEnvelope(decoding: ByteBuffer(bytes: bytes))
            XCTAssertEqual(fast == nil, reference == nil, "\(bytes)")
            if let fast, let reference { XCTAssertEqual(fast, RequestEnvelope(reference), "\(bytes)") }
        }
        XCTAssertNil(try? RequestEnvelope(decoding: ByteBuffer(bytes: [128, 185, 128, 185, 128, 0, 0])))
    }

    func testSuccessResponseBufferMatchesSwiftProtobuf() throws {
        for size in [0, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let payload = [UInt8](repeating: 7, count: size)
            let fast = RequestEnvelope.successResponse(payload: payload, allocator: allocator)
            XCTAssertEqual(RequestEnvelope.successResponseLength(payloadCount: payload.count), fast.readableBytes)
            let reference = try TTRPCEnvelope.encode(TTRPCEnvelope.successResponse(payload: payload), allocator: allocator)
            XCTAssertEqual(fast, reference)
        }
    }

    func testSuccessOmitsStatus() throws {
        let response = TTRPCEnvelope.successResponse(payload: [0x08, 0x01])
        XCTAssertFalse(response.hasStatus)
        let encoded = try TTRPCEnvelope.encode(response, allocator: allocator)
        XCTAssertEqual(Array(encoded.readableBytesView), [0x12, 0x02, 0x08, 0x01])

        let empty = try TTRPCEnvelope.encode(TTRPCEnvelope.successResponse(payload: []), allocator: allocator)
        XCTAssertEqual(empty.readableBytes, 0, "an empty success is zero bytes: no status, no payload")
        XCTAssertEqual(TTRPCEnvelope.result(of: try TTRPCEnvelope.decodeResponse(empty)), .success([]))
    }

    func testExplicitOKStatusReadsAsSuccess() {
        var response = Ttrpc_Response()
        response.status = Google_Rpc_Status()
        response.payload = Data([7])
        XCTAssertEqual(TTRPCEnvelope.result(of: response), .success([7]))
    }

    func testErrorResponseMatchesSpecBytes() throws {
        let error = RPCError.unimplemented("service creditd.v9.Nope")
        let encoded = try TTRPCEnvelope.encode(TTRPCEnvelope.errorResponse(error), allocator: allocator)
        XCTAssertEqual(Array(encoded.readableBytesView), [0x0A, 0x1B, 0x08, 0x0C, 0x12, 0x17] + Array("service creditd.v9.Nope".utf8))
        XCTAssertEqual(TTRPCEnvelope.result(of: try TTRPCEnvelope.decodeResponse(encoded)), .failure(error))
    }

    func testDomainErrorCarriesReasonTwice() throws {
        let error = RPCError.domain(.notFound, reason: "subscription_not_found", "no subscription s-1", metadata: ["id": "s-1"])
        XCTAssertEqual(error.message, "subscription_not_found: no subscription s-1")
        XCTAssertEqual(error.details.count, 1)
        XCTAssertEqual(error.details[0].typeURL, "type.googleapis.com/creditd.v1.ErrorReason")
        let decoded = try Creditd_V1_ErrorReason(serializedBytes: [UInt8](error.details[0].value))
        XCTAssertEqual(decoded.reason, "subscription_not_found")
        XCTAssertEqual(decoded.metadata, ["id": "s-1"])

        // Through the wire and back: details preserved.
        let wire = try TTRPCEnvelope.encode(TTRPCEnvelope.errorResponse(error), allocator: allocator)
        guard case .failure(let back) = TTRPCEnvelope.result(of: try TTRPCEnvelope.decodeResponse(wire)) else {
            return XCTFail("expected an error")
        }
        XCTAssertEqual(back.code, .notFound)
        XCTAssertEqual(back.reason, "subscription_not_found")
        XCTAssertEqual(back.errorReason?.metadata, ["id": "s-1"])
    }

    func testReasonFromMessagePrefix() {
        XCTAssertEqual(RPCError(code: .invalidArgument, message: "seats_must_be_positive: use Cancel").reason, "seats_must_be_positive")
        XCTAssertEqual(RPCError(code: .invalidArgument, message: "invalid_request").reason, "invalid_request")
        XCTAssertNil(RPCError(code: .unimplemented, message: "service creditd.v9.Nope").reason)
        XCTAssertNil(RPCError(code: .invalidArgument, message: "StreamID must be odd for client initiated streams").reason)
        XCTAssertNil(RPCError(code: .internal, message: "a:b").reason)
    }

    func testStatusCodes() {
        XCTAssertEqual(StatusCode.allCases.count, 17)
        XCTAssertEqual(StatusCode.invalidArgument.rawValue, 3)
        XCTAssertEqual(StatusCode.invalidArgument.name, "INVALID_ARGUMENT")
        XCTAssertEqual(StatusCode.unauthenticated.rawValue, 16)
        XCTAssertEqual(StatusCode(name: "RESOURCE_EXHAUSTED"), .resourceExhausted)
        XCTAssertEqual(StatusCode(wireValue: 99), .unknown)
        for code in StatusCode.allCases {
            XCTAssertEqual(StatusCode(name: code.name), code)
        }
    }
}
