import NIOCore

/// Incremental ttrpc frame parser over a byte buffer, independent of any channel.
///
/// Oversize frames (data length above the limit) are skipped as their bytes arrive: the parser
/// only ever moves the reader index past them, so it never needs `length` bytes of memory. Once
/// the last byte of such a frame is skipped it reports `.oversize` with the frame's stream id.
public struct TTRPCFrameParser: Sendable {
    private struct Discard: Sendable {
        var streamID: UInt32
        var type: TTRPCFrameType
        var length: UInt32
        var remaining: Int
    }

    public let maxMessageLength: Int
    private var discard: Discard?

    public init(maxMessageLength: Int = TTRPCLimits.maxMessageLength) {
        self.maxMessageLength = maxMessageLength
    }

    /// True while the parser is skipping the data of an oversize frame.
    public var isDiscarding: Bool { discard != nil }

    /// Consumes at most one frame (or one piece of an oversize frame) from `buffer`.
    /// Returns nil when more bytes are needed; the unread rest of a partial frame stays in `buffer`.
    public mutating func next(from buffer: inout ByteBuffer) -> TTRPCInbound? {
        if var pending = discard {
            let skipped = min(buffer.readableBytes, pending.remaining)
            buffer.moveReaderIndex(forwardBy: skipped)
            pending.remaining -= skipped
            if pending.remaining > 0 {
                discard = pending
                return nil
            }
            discard = nil
            return .oversize(streamID: pending.streamID, type: pending.type, length: pending.length)
        }
        guard buffer.readableBytes >= TTRPCLimits.headerLength,
              let length = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self),
              let streamID = buffer.getInteger(at: buffer.readerIndex + 4, endianness: .big, as: UInt32.self),
              let type = buffer.getInteger(at: buffer.readerIndex + 8, as: UInt8.self),
              let flags = buffer.getInteger(at: buffer.readerIndex + 9, as: UInt8.self)
        else { return nil }

        if Int(length) > maxMessageLength {
            buffer.moveReaderIndex(forwardBy: TTRPCLimits.headerLength)
            discard = Discard(streamID: streamID, type: TTRPCFrameType(rawValue: type), length: length, remaining: Int(length))
            // Skip whatever part of the data is already here.
            return next(from: &buffer)
        }
        guard buffer.readableBytes >= TTRPCLimits.headerLength + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: TTRPCLimits.headerLength)
        let payload = buffer.readSlice(length: Int(length))!
        return .frame(TTRPCFrame(
            streamID: streamID,
            type: TTRPCFrameType(rawValue: type),
            flags: TTRPCFrameFlags(rawValue: flags),
            payload: payload
        ))
    }
}

extension TTRPCFrameParser {
    /// Visits the frames complete at the start of `bytes`, at most `limit`, without consuming
    /// them (a parser's state is not involved): `body` gets each frame's type and data. Stops at
    /// the first frame that is incomplete or longer than `TTRPCLimits.maxMessageLength`, which
    /// `next(from:)` then handles as usual. Returns how many frames it visited. For looking ahead
    /// at what a read brought before the frames are parsed one by one.
    public static func scanCompleteFrames(in bytes: UnsafeRawBufferPointer, limit: Int,
                                          _ body: (TTRPCFrameType, UnsafeRawBufferPointer) -> Void) -> Int {
        let header = TTRPCLimits.headerLength
        var offset = 0, frames = 0
        while frames < limit, bytes.count - offset >= header {
            let length = Int(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
            guard length <= TTRPCLimits.maxMessageLength, bytes.count - offset - header >= length else { break }
            body(TTRPCFrameType(rawValue: bytes[offset + 8]),
                 UnsafeRawBufferPointer(rebasing: bytes[(offset + header)..<(offset + header + length)]))
            offset += header + length
            frames += 1
        }
        return frames
    }
}

/// `ByteToMessageDecoder` for ttrpc frames; emits `TTRPCInbound` values.
public struct TTRPCFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = TTRPCInbound

    private var parser: TTRPCFrameParser

    public init(maxMessageLength: Int = TTRPCLimits.maxMessageLength) {
        parser = TTRPCFrameParser(maxMessageLength: maxMessageLength)
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let inbound = parser.next(from: &buffer) else {
            // Either a partial frame or an oversize frame whose skipped part used up the buffer.
            return .needMoreData
        }
        context.fireChannelRead(Self.wrapInboundOut(inbound))
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        while case .continue = try decode(context: context, buffer: &buffer) {}
        // A frame cut short by the peer going away is dropped silently: it can never complete.
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}

/// `MessageToByteEncoder` for ttrpc frames. Refuses frames above the size limit, so an
/// oversize frame can never leave through it.
public struct TTRPCFrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = TTRPCFrame

    public let maxMessageLength: Int

    public init(maxMessageLength: Int = TTRPCLimits.maxMessageLength) {
        self.maxMessageLength = maxMessageLength
    }

    public func encode(data: TTRPCFrame, out: inout ByteBuffer) throws {
        guard data.payload.readableBytes <= maxMessageLength else {
            throw TTRPCWireError.frameTooLarge(length: data.payload.readableBytes)
        }
        data.encode(into: &out)
    }
}
