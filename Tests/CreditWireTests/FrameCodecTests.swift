import CreditProto
import CreditWire
import NIOCore
import XCTest

final class FrameCodecTests: XCTestCase {
    private let allocator = ByteBufferAllocator()

    private func bytes(_ frames: [TTRPCFrame]) -> [UInt8] {
        var buffer = allocator.buffer(capacity: 64)
        for frame in frames { frame.encode(into: &buffer) }
        return Array(buffer.readableBytesView)
    }

    private func frame(_ id: UInt32, _ type: TTRPCFrameType, _ flags: TTRPCFrameFlags = [], _ data: [UInt8]) -> TTRPCFrame {
        TTRPCFrame(streamID: id, type: type, flags: flags, payload: ByteBuffer(bytes: data))
    }

    /// Feeds `input` in pieces and collects everything the parser emits.
    private func parse(_ input: [UInt8], pieces: [Int]) -> (events: [TTRPCInbound], leftover: Int) {
        var parser = TTRPCFrameParser()
        var buffer = allocator.buffer(capacity: 0)
        var events: [TTRPCInbound] = []
        var offset = 0
        for size in pieces + [input.count] {
            let end = min(input.count, offset + size)
            buffer.writeBytes(input[offset..<end])
            offset = end
            while let event = parser.next(from: &buffer) { events.append(event) }
            buffer.discardReadBytes()
            if offset == input.count { break }
        }
        return (events, buffer.readableBytes)
    }

    /// The scan sees the complete frames a buffer starts with, in order, with their types and
    /// data, up to its limit, and stops at a partial frame or an oversize header; a parser then
    /// reads the same frames from the same bytes.
    func testScanVisitsTheCompleteFramesWithoutConsumingThem() {
        let frames = [frame(1, .request, [], [0x0A, 0x01]), frame(3, .data, [], []),
                      frame(5, .request, [], Array(repeating: 7, count: 300)), frame(7, TTRPCFrameType(rawValue: 0x7F), [], [1])]
        let encoded = bytes(frames)
        func scan(_ input: [UInt8], limit: Int = 16) -> [(TTRPCFrameType, [UInt8])] {
            var seen: [(TTRPCFrameType, [UInt8])] = []
            let count = input.withUnsafeBytes { raw in
                TTRPCFrameParser.scanCompleteFrames(in: raw, limit: limit) { seen.append(($0, Array($1))) }
            }
            XCTAssertEqual(count, seen.count)
            return seen
        }
        let all = scan(encoded)
        XCTAssertEqual(all.map(\.0), frames.map(\.type))
        XCTAssertEqual(all.map(\.1), frames.map { Array($0.payload.readableBytesView) })
        XCTAssertEqual(scan(encoded, limit: 2).map(\.0), [.request, .data])
        // Cut inside the third frame's header, then inside its data: the first two only.
        XCTAssertEqual(scan(Array(encoded.prefix(12 + 10 + 5))).count, 2)
        XCTAssertEqual(scan(Array(encoded.prefix(12 + 10 + 10 + 299))).count, 2)
        XCTAssertEqual(scan([]).count, 0)
        // An oversize header ends the scan; the parser reports it.
        var oversize: [UInt8] = []
        withUnsafeBytes(of: UInt32(TTRPCLimits.maxMessageLength + 1).bigEndian) { oversize += $0 }
        oversize += [0, 0, 0, 9, 0x01, 0]
        XCTAssertEqual(scan(bytes([frames[0]]) + oversize).count, 1)
        // Nothing was consumed: the parser reads the same frames.
        let parsed = parse(encoded, pieces: [encoded.count]).events
        XCTAssertEqual(parsed.count, frames.count)
    }

    func testHeaderIsTenBytesBigEndian() {
        let encoded = bytes([frame(0x0102_0304, .request, [.remoteClosed], [0xAA, 0xBB])])
        XCTAssertEqual(encoded, [0, 0, 0, 2, 1, 2, 3, 4, 0x01, 0x01, 0xAA, 0xBB])
    }

    func testSpecExampleHealthCheck() throws {
        let request = Ttrpc_Request(service: "grpc.health.v1.Health", method: "Check")
        let frame = try TTRPCEnvelope.requestFrame(streamID: 1, request: request, allocator: allocator)
        let hex = bytes([frame]).map { String(format: "%02x", $0) }.joined()
        XCTAssertEqual(hex, "0000001e0000000101000a15" + Array("grpc.health.v1.Health".utf8).map { String(format: "%02x", $0) }.joined()
            + "1205" + Array("Check".utf8).map { String(format: "%02x", $0) }.joined())

        var serving = Grpc_Health_V1_HealthCheckResponse()
        serving.status = .serving
        let response = TTRPCEnvelope.successResponse(payload: try serving.serializedBytes())
        let out = try TTRPCEnvelope.responseFrame(streamID: 1, response: response, allocator: allocator)
        XCTAssertEqual(bytes([out]), [0, 0, 0, 4, 0, 0, 0, 1, 2, 0, 0x12, 0x02, 0x08, 0x01])
    }

    func testSplitAtEveryOffset() {
        let frames = [
            frame(1, .request, [], Array(repeating: 7, count: 37)),
            frame(3, .data, [.remoteClosed, .noData], []),
            frame(5, .response, [], [1, 2, 3]),
        ]
        let input = bytes(frames)
        for split in 0...input.count {
            let (events, leftover) = parse(input, pieces: [split])
            XCTAssertEqual(events, frames.map { .frame($0) }, "split at \(split)")
            XCTAssertEqual(leftover, 0)
        }
        // One byte at a time, like the slowest writer.
        let (events, _) = parse(input, pieces: Array(repeating: 1, count: input.count))
        XCTAssertEqual(events, frames.map { .frame($0) })
    }

    func testExactLimitFrameIsValid() {
        let data = [UInt8](repeating: 0x5A, count: TTRPCLimits.maxMessageLength)
        let input = bytes([frame(9, .request, [], data)])
        let (events, leftover) = parse(input, pieces: [1 << 20, 1 << 20, 1 << 20, 1 << 20])
        XCTAssertEqual(events.count, 1)
        guard case .frame(let decoded) = events.first else { return XCTFail("expected a frame") }
        XCTAssertEqual(decoded.streamID, 9)
        XCTAssertEqual(decoded.payload.readableBytes, TTRPCLimits.maxMessageLength)
        XCTAssertEqual(leftover, 0)
    }

    func testOversizeIsDiscardedWithoutBufferingAndReported() {
        let length = TTRPCLimits.maxMessageLength + 1
        var header = allocator.buffer(capacity: 10)
        header.writeInteger(UInt32(length), endianness: .big)
        header.writeInteger(UInt32(4), endianness: .big)  // even id: oversize still wins
        header.writeInteger(UInt8(1))
        header.writeInteger(UInt8(0))

        var parser = TTRPCFrameParser()
        var buffer = allocator.buffer(capacity: 0)
        buffer.writeBuffer(&header)
        XCTAssertNil(parser.next(from: &buffer))
        XCTAssertTrue(parser.isDiscarding)
        XCTAssertEqual(buffer.readableBytes, 0)

        // Feed the data in 64 KiB chunks: each is consumed at once, nothing accumulates.
        let chunk = [UInt8](repeating: 0xEE, count: 64 * 1024)
        var fed = 0
        var event: TTRPCInbound?
        while fed < length {
            let size = min(chunk.count, length - fed)
            buffer.clear()
            buffer.writeBytes(chunk[0..<size])
            fed += size
            event = parser.next(from: &buffer)
            XCTAssertEqual(buffer.readableBytes, 0, "skipped bytes are consumed immediately")
            XCTAssertLessThanOrEqual(buffer.capacity, 128 * 1024, "the parser never holds the oversize frame")
            if fed < length { XCTAssertNil(event) }
        }
        XCTAssertEqual(event, .oversize(streamID: 4, type: .request, length: UInt32(length)))
        XCTAssertFalse(parser.isDiscarding)

        // The next frame decodes normally.
        buffer.clear()
        frame(5, .request, [], [1]).encode(into: &buffer)
        XCTAssertEqual(parser.next(from: &buffer), .frame(frame(5, .request, [], [1])))
    }

    func testOversizeFollowedByFrameInSameBuffer() {
        let length = TTRPCLimits.maxMessageLength + 100
        var input = [UInt8]()
        input += [UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF)]
        input += [0, 0, 0, 7, 1, 0]
        input += [UInt8](repeating: 0, count: length)
        input += bytes([frame(9, .request, [], [0x0A])])
        for pieces in [[input.count], [3, 11, 1 << 20], [4_194_310, 7]] {
            let (events, leftover) = parse(input, pieces: pieces)
            XCTAssertEqual(events, [.oversize(streamID: 7, type: .request, length: UInt32(length)), .frame(frame(9, .request, [], [0x0A]))])
            XCTAssertEqual(leftover, 0)
        }
    }

    func testFirstByteNonZeroMeansOversize() {
        var parser = TTRPCFrameParser()
        var buffer = ByteBuffer(bytes: [0x01, 0, 0, 0, 0, 0, 0, 3, 1, 0])
        XCTAssertNil(parser.next(from: &buffer))
        XCTAssertTrue(parser.isDiscarding)
    }

    func testUnknownTypesAndFlagsPassThrough() {
        let unknown = frame(11, TTRPCFrameType(rawValue: 0x7F), TTRPCFrameFlags(rawValue: 0xF0), [9, 9])
        let (events, _) = parse(bytes([unknown]), pieces: [5])
        XCTAssertEqual(events, [.frame(unknown)])
        XCTAssertEqual(unknown.type.description, "type(0x7f)")
    }

    func testPartialFrameStaysBuffered() {
        let input = bytes([frame(1, .request, [], [1, 2, 3, 4])])
        let (events, leftover) = parse(Array(input.prefix(12)), pieces: [12])
        XCTAssertTrue(events.isEmpty)
        XCTAssertEqual(leftover, 12)
    }

    func testEncoderRefusesOversize() throws {
        let encoder = TTRPCFrameEncoder()
        var out = allocator.buffer(capacity: 0)
        let big = frame(1, .response, [], [UInt8](repeating: 0, count: TTRPCLimits.maxMessageLength + 1))
        XCTAssertThrowsError(try encoder.encode(data: big, out: &out)) { error in
            XCTAssertEqual(error as? TTRPCWireError, .frameTooLarge(length: TTRPCLimits.maxMessageLength + 1))
        }
        let exact = frame(1, .response, [], [UInt8](repeating: 0, count: TTRPCLimits.maxMessageLength))
        XCTAssertNoThrow(try encoder.encode(data: exact, out: &out))
        XCTAssertEqual(out.readableBytes, TTRPCLimits.maxMessageLength + 10)
    }
}
