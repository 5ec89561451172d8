// Protocol buffer wire format, as the tagged ledger encoding (format versions 3 and 4) uses it: the
// writers are ProtoWire's; the ledger's own field shapes and the reader are here.

import ProtoWire

extension ByteWriter {
    /// An enum's raw value; zero is not written. (As written since version 3: a negative raw
    /// value, which no domain enum has, would take five bytes, not protobuf's ten.)
    @inline(__always)
    mutating func enumField<Value: RawRepresentable>(_ field: UInt32, _ value: Value) where Value.RawValue == Int32 {
        uintField(field, UInt64(UInt32(bitPattern: value.rawValue)))
    }

    /// A signed 128-bit value as two varint fields: the low and high halves of its zigzag form,
    /// so that small magnitudes of either sign take one small field.
    @inline(__always)
    mutating func int128Fields(low: UInt32, high: UInt32, _ value: Int128) {
        let zigzag = UInt128(truncatingIfNeeded: (value << 1) ^ (value >> 127))
        uintField(low, UInt64(truncatingIfNeeded: zigzag))
        uintField(high, UInt64(truncatingIfNeeded: zigzag >> 64))
    }
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
