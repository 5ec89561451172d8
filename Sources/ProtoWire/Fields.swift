// Protocol buffer wire format (https://protobuf.dev/programming-guides/encoding/): every value
// is a field number and wire type followed by the value, so a reader skips the fields it does
// not know. As in proto3, zero, false and the empty string are not written.

/// Protobuf wire types.
public enum WireType: UInt8, Sendable {
    case varint = 0
    case fixed64 = 1
    case lengthDelimited = 2
    case fixed32 = 5
}

extension ByteWriter {
    @inlinable @inline(__always)
    public mutating func tag(_ field: UInt32, _ wire: WireType) {
        varint(UInt64(field) << 3 | UInt64(wire.rawValue))
    }

    /// A varint field (`uint64`, `uint32`); zero is not written.
    @inlinable @inline(__always)
    public mutating func uintField(_ field: UInt32, _ value: UInt64) {
        guard value != 0 else { return }
        tag(field, .varint)
        varint(value)
    }

    /// An `int64`, `int32` or enum field: two's complement, so a negative value takes ten
    /// bytes, as protobuf's own encoders write it; zero is not written.
    @inlinable @inline(__always)
    public mutating func intField(_ field: UInt32, _ value: Int64) {
        uintField(field, UInt64(bitPattern: value))
    }

    /// A zigzag (`sint64`) field; zero is not written.
    @inlinable @inline(__always)
    public mutating func sintField(_ field: UInt32, _ value: Int64) {
        guard value != 0 else { return }
        tag(field, .varint)
        signed(value)
    }

    @inlinable @inline(__always)
    public mutating func boolField(_ field: UInt32, _ value: Bool) {
        uintField(field, value ? 1 : 0)
    }

    /// A string field; the empty string is not written.
    @inlinable @inline(__always)
    public mutating func stringField(_ field: UInt32, _ value: String) {
        guard !value.isEmpty else { return }
        tag(field, .lengthDelimited)
        string(value)
    }

    /// Opens a length-delimited field whose length is known only once its content is written:
    /// room for a `reserved`-byte length now, moved when `endMessage` finds it needs other.
    @inlinable @inline(__always)
    public mutating func beginMessage(_ field: UInt32, reserve reserved: Int = 1) -> MessageMark {
        tag(field, .lengthDelimited)
        let position = reservePlaceholder(reserved)
        return MessageMark(lengthPosition: position, reserved: reserved)
    }

    /// Writes the length of the message opened at `mark`, moving its content if the length
    /// takes more or fewer bytes than were reserved.
    @inlinable @inline(__always)
    public mutating func endMessage(_ mark: MessageMark) {
        let contentStart = mark.lengthPosition + mark.reserved
        let length = count - contentStart
        var needed = 1
        while length >> (7 * needed) != 0 { needed += 1 }
        if needed != mark.reserved { shift(from: contentStart, by: needed - mark.reserved) }
        var rest = UInt64(length)
        for index in 0..<needed {
            storeByte(at: mark.lengthPosition + index, UInt8(truncatingIfNeeded: rest & 0x7F) | (index < needed - 1 ? 0x80 : 0))
            rest >>= 7
        }
    }
}

/// Where a length-delimited field's length goes (see `ByteWriter.beginMessage`).
@frozen
public struct MessageMark {
    public let lengthPosition: Int
    public let reserved: Int

    @inlinable
    public init(lengthPosition: Int, reserved: Int) {
        self.lengthPosition = lengthPosition
        self.reserved = reserved
    }
}
