import NIOCore

/// Protocol constants of ttrpc framing (docs/wire-protocol.md §1).
public enum TTRPCLimits {
    /// Bytes in a frame header: length u32, stream id u32, type u8, flags u8.
    public static let headerLength = 10
    /// Largest valid data length of one frame (4 MiB, inclusive).
    public static let maxMessageLength = 4 * 1024 * 1024
}

/// A frame type. Unknown values are representable so that the decoder can pass them on
/// (the server ignores them, as the protocol requires).
public struct TTRPCFrameType: RawRepresentable, Sendable, Hashable, CustomStringConvertible {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let request = TTRPCFrameType(rawValue: 0x01)
    public static let response = TTRPCFrameType(rawValue: 0x02)
    public static let data = TTRPCFrameType(rawValue: 0x03)

    public var description: String {
        switch self {
        case .request: "request"
        case .response: "response"
        case .data: "data"
        default: "type(0x\(String(rawValue, radix: 16)))"
        }
    }
}

/// Frame flags. Their meaning depends on the frame type (docs/wire-protocol.md §1).
public struct TTRPCFrameFlags: OptionSet, Sendable, Hashable {
    public var rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// Request: non-unary, the client sends no Data. Data: the sender's last frame.
    public static let remoteClosed = TTRPCFrameFlags(rawValue: 0x01)
    /// Request: non-unary, the client will send Data.
    public static let remoteOpen = TTRPCFrameFlags(rawValue: 0x02)
    /// Data: the frame carries no message.
    public static let noData = TTRPCFrameFlags(rawValue: 0x04)
}

/// One ttrpc frame: header fields plus the data bytes.
public struct TTRPCFrame: Sendable, Hashable {
    public var streamID: UInt32
    public var type: TTRPCFrameType
    public var flags: TTRPCFrameFlags
    public var payload: ByteBuffer

    public init(streamID: UInt32, type: TTRPCFrameType, flags: TTRPCFrameFlags = [], payload: ByteBuffer) {
        self.streamID = streamID
        self.type = type
        self.flags = flags
        self.payload = payload
    }

    /// Total bytes on the wire (header + data).
    public var encodedLength: Int { TTRPCLimits.headerLength + payload.readableBytes }

    /// Appends the encoded frame. Does not check the size limit; callers that must never send
    /// an oversize frame check `payload.readableBytes` first.
    public func encode(into buffer: inout ByteBuffer) {
        buffer.reserveCapacity(minimumWritableBytes: encodedLength)
        Self.writeHeader(dataLength: payload.readableBytes, streamID: streamID, type: type, flags: flags, into: &buffer)
        var payload = payload
        buffer.writeBuffer(&payload)
    }

    /// Appends a frame header for `dataLength` bytes of data that the caller writes next (the
    /// server writes a Response's data straight after it, without a buffer of its own).
    public static func writeHeader(dataLength: Int, streamID: UInt32, type: TTRPCFrameType, flags: TTRPCFrameFlags,
                                   into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(dataLength), endianness: .big)
        buffer.writeInteger(streamID, endianness: .big)
        buffer.writeInteger(type.rawValue)
        buffer.writeInteger(flags.rawValue)
    }
}

/// What the decoder produces: a whole frame, or the notice that an oversize frame was
/// read and thrown away (the server answers it with RESOURCE_EXHAUSTED on that stream id).
public enum TTRPCInbound: Sendable, Hashable {
    case frame(TTRPCFrame)
    case oversize(streamID: UInt32, type: TTRPCFrameType, length: UInt32)
}

/// Errors of the wire layer.
public enum TTRPCWireError: Error, Sendable, Hashable {
    /// A frame to be sent has more than `TTRPCLimits.maxMessageLength` data bytes.
    case frameTooLarge(length: Int)
}

extension TTRPCWireError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .frameTooLarge(let length):
            "message length \(length) exceed maximum message size of \(TTRPCLimits.maxMessageLength)"
        }
    }
}
