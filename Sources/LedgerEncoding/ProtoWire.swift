// Protocol buffer wire format, as the tagged ledger encoding (format version 3) uses it: every
// value is a field number and wire type followed by the value, so a reader skips the fields it
// does not know. Hand-written over raw buffers: a million subscriptions must take seconds.

/// Protobuf wire types (https://protobuf.dev/programming-guides/encoding/).
enum WireType: UInt8 {
    case varint = 0
    case fixed64 = 1
    case lengthDelimited = 2
    case fixed32 = 5
}

extension ByteWriter {
    @inline(__always)
    mutating func tag(_ field: UInt32, _ wire: WireType) {
        varint(UInt64(field) << 3 | UInt64(wire.rawValue))
    }

    /// A varint field; zero is the default and is not written.
    @inline(__always)
    mutating func uintField(_ field: UInt32, _ value: UInt64) {
        guard value != 0 else { return }
        tag(field, .varint)
        varint(value)
    }

    /// A zigzag (sint64) field; zero is not written.
    @inline(__always)
    mutating func sintField(_ field: UInt32, _ value: Int64) {
        guard value != 0 else { return }
        tag(field, .varint)
        signed(value)
    }

    @inline(__always)
    mutating func boolField(_ field: UInt32, _ value: Bool) {
        uintField(field, value ? 1 : 0)
    }

    /// An enum's raw value; zero is not written.
    @inline(__always)
    mutating func enumField<Value: RawRepresentable>(_ field: UInt32, _ value: Value) where Value.RawValue == Int32 {
        uintField(field, UInt64(UInt32(bitPattern: value.rawValue)))
    }

    /// A string field; the empty string is not written.
    @inline(__always)
    mutating func stringField(_ field: UInt32, _ value: String) {
        guard !value.isEmpty else { return }
        tag(field, .lengthDelimited)
        string(value)
    }

    /// A signed 128-bit value as two varint fields: the low and high halves of its zigzag form,
    /// so that small magnitudes of either sign take one small field.
    @inline(__always)
    mutating func int128Fields(low: UInt32, high: UInt32, _ value: Int128) {
        let zigzag = UInt128(truncatingIfNeeded: (value << 1) ^ (value >> 127))
        uintField(low, UInt64(truncatingIfNeeded: zigzag))
        uintField(high, UInt64(truncatingIfNeeded: zigzag >> 64))
    }

    /// Opens a length-delimited field whose length is known only once its content is written:
    /// room for a `reserved`-byte length now, moved when `endMessage` finds it needs other.
    @inline(__always)
    mutating func beginMessage(_ field: UInt32, reserve reserved: Int = 1) -> MessageMark {
        tag(field, .lengthDelimited)
        let position = reservePlaceholder(reserved)
        return MessageMark(lengthPosition: position, reserved: reserved)
    }

    /// Writes the length of the message opened at `mark`, moving its content if the length
    /// takes more or fewer bytes than were reserved.
    @inline(__always)
    mutating func endMessage(_ mark: MessageMark) {
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
struct MessageMark {
    let lengthPosition: Int
    let reserved: Int
}

extension ByteReader {
    /// The next field's number and wire type, or nil at the end of the message.
    @inline(__always)
    mutating func field() throws(LedgerCodecError) -> (number: UInt32, wire: UInt8)? {
        guard remaining > 0 else { return nil }
        let start = offset
        let key = try varint("field tag")
        let number = key >> 3
        guard number != 0, number <= 0x1FFF_FFFF else { throw failure(.invalidValue, "field number", at: start) }
        return (UInt32(number), UInt8(truncatingIfNeeded: key & 7))
    }

    /// Skips a field this version does not know (a later release's addition).
    mutating func skip(_ wire: UInt8) throws(LedgerCodecError) {
        let start = offset
        switch wire {
        case WireType.varint.rawValue: _ = try varint("unknown varint field")
        case WireType.fixed64.rawValue: try advance(8, "unknown fixed64 field")
        case WireType.lengthDelimited.rawValue: _ = try lengthDelimited("unknown length-delimited field", wire)
        case WireType.fixed32.rawValue: try advance(4, "unknown fixed32 field")
        default: throw failure(.invalidValue, "wire type", at: start)
        }
    }

    @inline(__always)
    func expect(_ wire: UInt8, _ expected: WireType, _ field: StaticString) throws(LedgerCodecError) {
        guard wire == expected.rawValue else { throw failure(.invalidValue, field) }
    }

    /// A varint field's value.
    @inline(__always)
    mutating func uintValue(_ wire: UInt8, _ field: StaticString) throws(LedgerCodecError) -> UInt64 {
        try expect(wire, .varint, field)
        return try varint(field)
    }

    @inline(__always)
    mutating func sintValue(_ wire: UInt8, _ field: StaticString) throws(LedgerCodecError) -> Int64 {
        try expect(wire, .varint, field)
        return try signed(field)
    }

    mutating func int32Value(_ wire: UInt8, _ field: StaticString) throws(LedgerCodecError) -> Int32 {
        try expect(wire, .varint, field)
        return try int32(field)
    }

    mutating func uint32Value(_ wire: UInt8, _ field: StaticString) throws(LedgerCodecError) -> UInt32 {
        try expect(wire, .varint, field)
        return try uint32(field)
    }

    mutating func boolValue(_ wire: UInt8, _ field: StaticString) throws(LedgerCodecError) -> Bool {
        let start = offset
        switch try uintValue(wire, field) {
        case 0: return false
        case 1: return true
        default: throw failure(.invalidValue, field, at: start)
        }
    }

    @inline(__always)
    mutating func stringValue(_ wire: UInt8, _ field: StaticString) throws(LedgerCodecError) -> String {
        try expect(wire, .lengthDelimited, field)
        return try string(field)
    }

    /// A length-delimited field's range; the reader moves past it.
    @inline(__always)
    mutating func lengthDelimited(_ field: StaticString, _ wire: UInt8) throws(LedgerCodecError) -> Range<Int> {
        try expect(wire, .lengthDelimited, field)
        let start = offset
        let length = try varint(field)
        guard length <= UInt64(remaining) else { throw failure(.truncated, field, at: start) }
        let range = offset..<(offset + Int(length))
        offset = range.upperBound
        return range
    }

    /// A little-endian 64-bit value.
    mutating func fixed64(_ field: StaticString) throws(LedgerCodecError) -> UInt64 {
        let start = offset
        try advance(8, field)
        var value: UInt64 = 0
        for index in 0..<8 { value |= UInt64(try byte(at: start + index)) << UInt64(8 * index) }
        return value
    }
}

/// Reassembles a signed 128-bit value written by `ByteWriter.int128Fields`.
@inline(__always)
func int128(zigzagLow low: UInt64, high: UInt64) -> Int128 {
    let zigzag = UInt128(high) << 64 | UInt128(low)
    return Int128(bitPattern: (zigzag >> 1) ^ (0 &- (zigzag & 1)))
}
