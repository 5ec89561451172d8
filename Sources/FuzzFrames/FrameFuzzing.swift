import CreditProto
import CreditWire
import NIOCore
import NIOEmbedded
import SwiftProtobuf

/// Frame parsing, envelope and status decoding on arbitrary bytes.
///
/// Input: byte 0 seeds how the stream is split into reads, byte 1 picks the size limit
/// (high bit: the real 4 MiB limit, else 0...63 bytes so that the oversize discard path is
/// reachable with small inputs); the rest is the byte stream a peer sends.
///
/// Besides "no crash", the same stream must decode to the same frames whether it arrives at
/// once, in pieces, or through the NIO decoder, and every frame must re-encode to the bytes it
/// came from.
enum FrameFuzzing {
    static func run(_ input: [UInt8]) {
        guard input.count >= 2 else { return }
        let seed = input[0]
        let limit = input[1] & 0x80 != 0 ? TTRPCLimits.maxMessageLength : Int(input[1] & 0x3F)
        let stream = Array(input[2...])

        let whole = parseWhole(stream, limit: limit)
        let pieces = parseInPieces(stream, limit: limit, seed: seed)
        check(whole.inbound == pieces, "split reads decode differently")
        let decoded = decodeThroughChannel(stream, limit: limit, seed: seed)
        check(whole.inbound == decoded, "TTRPCFrameDecoder disagrees with TTRPCFrameParser")
        check(whole.consumed <= stream.count, "parser consumed more than it was given")

        var offset = 0
        for inbound in whole.inbound {
            switch inbound {
            case .frame(let frame):
                check(frame.payload.readableBytes <= limit, "frame above the limit delivered")
                var encoded = ByteBufferAllocator().buffer(capacity: frame.encodedLength)
                frame.encode(into: &encoded)
                let original = stream[offset..<(offset + frame.encodedLength)]
                check(Array(encoded.readableBytesView) == Array(original), "frame does not re-encode to its bytes")
                offset += frame.encodedLength
                decodeEnvelopes(Array(frame.payload.readableBytesView))
            case .oversize(_, _, let length):
                check(Int(length) > limit, "oversize reported for a frame within the limit")
                offset += TTRPCLimits.headerLength + Int(length)
            }
        }
        // An oversize frame still being skipped at the end has consumed bytes it has not reported.
        check(whole.discarding ? offset < whole.consumed : offset == whole.consumed,
              "frames do not account for the consumed bytes")
        // The same bytes as bare envelopes, without framing.
        decodeEnvelopes(stream)
    }

    struct Parsed {
        var inbound: [TTRPCInbound] = []
        var consumed = 0
        var discarding = false
    }

    static func parseWhole(_ stream: [UInt8], limit: Int) -> Parsed {
        var parser = TTRPCFrameParser(maxMessageLength: limit)
        var buffer = ByteBufferAllocator().buffer(bytes: stream)
        var parsed = Parsed()
        while let inbound = parser.next(from: &buffer) { parsed.inbound.append(inbound) }
        parsed.consumed = buffer.readerIndex
        parsed.discarding = parser.isDiscarding
        return parsed
    }

    /// Read sizes from a small generator, so splits fall everywhere, including inside headers.
    struct Splitter {
        var state: UInt32
        let spread: UInt32
        init(seed: UInt8) {
            state = UInt32(seed) &* 2_654_435_761 | 1
            spread = UInt32(1) << UInt32(seed % 9)
        }
        mutating func next() -> Int {
            state ^= state << 13
            state ^= state >> 17
            state ^= state << 5
            return Int(state % spread) + 1
        }
    }

    static func parseInPieces(_ stream: [UInt8], limit: Int, seed: UInt8) -> [TTRPCInbound] {
        var parser = TTRPCFrameParser(maxMessageLength: limit)
        var splitter = Splitter(seed: seed)
        var buffer = ByteBufferAllocator().buffer(capacity: 0)
        var result: [TTRPCInbound] = []
        var position = 0
        while position < stream.count {
            let end = min(stream.count, position + splitter.next())
            buffer.writeBytes(stream[position..<end])
            position = end
            while let inbound = parser.next(from: &buffer) { result.append(inbound) }
            buffer.discardReadBytes()
        }
        return result
    }

    static func decodeThroughChannel(_ stream: [UInt8], limit: Int, seed: UInt8) -> [TTRPCInbound] {
        let channel = EmbeddedChannel()
        do {
            try channel.pipeline.syncOperations.addHandler(
                ByteToMessageHandler(TTRPCFrameDecoder(maxMessageLength: limit)))
            var splitter = Splitter(seed: seed)
            var position = 0
            var result: [TTRPCInbound] = []
            while position < stream.count {
                let end = min(stream.count, position + splitter.next())
                try channel.writeInbound(channel.allocator.buffer(bytes: stream[position..<end]))
                position = end
                while let inbound = try channel.readInbound(as: TTRPCInbound.self) { result.append(inbound) }
            }
            _ = try channel.finish(acceptAlreadyClosed: true)
            while let inbound = try channel.readInbound(as: TTRPCInbound.self) { result.append(inbound) }
            return result
        } catch {
            fail("the NIO decoder threw: \(error)")
        }
    }

    /// Frame data as the server and the clients read it. Decoding may fail; it must not crash,
    /// and whatever decodes must survive a round trip.
    static func decodeEnvelopes(_ data: [UInt8]) {
        let buffer = ByteBufferAllocator().buffer(bytes: data)
        let reference = try? TTRPCEnvelope.decodeRequest(bytes: data)
        if let request = reference {
            check(roundTrips(request), "Request does not round-trip")
            _ = request.metadata.map { $0.key.lowercased() }
        }
        // The server's own envelope reader accepts exactly what SwiftProtobuf accepts, with
        // the same result (a differential check).
        let fast = try? RequestEnvelope(decoding: buffer)
        check((fast == nil) == (reference == nil), "RequestEnvelope and Ttrpc_Request disagree on \(data)")
        if let fast, let reference {
            check(fast == RequestEnvelope(reference), "RequestEnvelope decodes \(data) differently")
        }
        // The look-ahead's scan may give up where a decoder reads on, but whatever it finds in
        // a request that decodes is what the decoder read.
        data.withUnsafeBytes { raw in
            guard let peeked = FieldPeek.request(raw), let reference else { return }
            check(Array(peeked.service) == Array(reference.service.utf8)
                  && Array(peeked.method) == Array(reference.method.utf8)
                  && Array(peeked.payload) == Array(reference.payload), "FieldPeek reads \(data) differently")
            _ = FieldPeek.bytesField(1, in: peeked.payload)
        }
        if let response = try? TTRPCEnvelope.decodeResponse(buffer) {
            check(roundTrips(response), "Response does not round-trip")
            switch TTRPCEnvelope.result(of: response) {
            case .success:
                check(!response.hasStatus || response.status.code == 0, "an error status read as success")
            case .failure(let error):
                check(error.code != .ok, "a failure with code OK")
                check(RPCError(status: error.status) == error, "RPCError does not round-trip through its status")
                _ = error.description
                _ = error.reason
                _ = error.errorReason
                _ = StatusCode(name: error.code.name)
            }
        }
        if let status = try? Google_Rpc_Status(serializedBytes: data) {
            let error = RPCError(status: status)
            _ = error.reason
            check(StatusCode(name: error.code.name) == error.code, "status name does not parse back")
        }
        if let prefix = RPCError.reasonPrefix(of: String(decoding: data, as: UTF8.self)) {
            check(!prefix.isEmpty && RPCError.reasonPrefix(of: prefix) == prefix, "reason prefix is not stable")
        }
    }

    static func roundTrips<M: Message & Equatable>(_ message: M) -> Bool {
        guard let bytes: [UInt8] = try? message.serializedBytes(),
              let again = try? M(serializedBytes: bytes)
        else { return false }
        return again == message
    }

    static func check(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { fail(message()) }
    }

    static func fail(_ message: String) -> Never {
        fatalError("FuzzFrames: \(message)")
    }
}
