/// Bounds-checked reads from a byte buffer; every read that would pass the end throws.
struct ByteReader {
    private let base: UnsafePointer<UInt8>?
    private var end: Int
    /// Absolute, from the start of the whole input.
    var offset: Int

    /// Reads `range` of `buffer` (all of it when nil); offsets stay those of the whole buffer.
    init(_ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>? = nil) {
        self.base = buffer.baseAddress
        self.offset = range?.lowerBound ?? 0
        self.end = range?.upperBound ?? buffer.count
    }

    var remaining: Int { end - offset }

    /// The same input restricted to `range` (inside this reader's), standing at its start.
    func within(_ range: Range<Int>) -> ByteReader {
        var copy = self
        copy.offset = range.lowerBound
        copy.end = range.upperBound
        return copy
    }

    /// Moves past `count` bytes.
    mutating func advance(_ count: Int, _ field: StaticString) throws(LedgerCodecError) {
        guard remaining >= count else { throw failure(.truncated, field) }
        offset += count
    }

    /// The byte at an absolute position already known to be inside the input.
    func byte(at position: Int) throws(LedgerCodecError) -> UInt8 {
        guard position < end, let base else { throw failure(.truncated, "byte", at: position) }
        return base[position]
    }

    func failure(_ kind: LedgerCodecError.Kind, _ field: StaticString, at position: Int? = nil) -> LedgerCodecError {
        LedgerCodecError(kind, offset: position ?? offset, field: field.description)
    }

    @inline(__always)
    mutating func byte(_ field: StaticString) throws(LedgerCodecError) -> UInt8 {
        guard offset < end, let base else { throw failure(.truncated, field) }
        let value = base[offset]
        offset += 1
        return value
    }

    mutating func uint32LE(_ field: StaticString) throws(LedgerCodecError) -> UInt32 {
        guard remaining >= 4, let base else { throw failure(.truncated, field) }
        var value: UInt32 = 0
        for index in 0..<4 {
            value |= UInt32(base[offset + index]) << UInt32(8 * index)
        }
        offset += 4
        return value
    }

    @inline(__always)
    mutating func varint(_ field: StaticString) throws(LedgerCodecError) -> UInt64 {
        guard let base else { throw failure(.truncated, field) }
        let start = offset
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard offset < end else { throw failure(.truncated, field, at: start) }
            let byte = base[offset]
            offset += 1
            // The tenth byte holds the top bit only.
            if shift == 63, byte > 1 { throw failure(.invalidValue, field, at: start) }
            result |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return result }
            shift += 7
        }
    }

    @inline(__always)
    mutating func signed(_ field: StaticString) throws(LedgerCodecError) -> Int64 {
        let raw = try varint(field)
        return Int64(bitPattern: (raw >> 1) ^ (0 &- (raw & 1)))
    }

    mutating func signed128(_ field: StaticString) throws(LedgerCodecError) -> Int128 {
        guard let base else { throw failure(.truncated, field) }
        let start = offset
        var result: UInt128 = 0
        var shift: UInt128 = 0
        while true {
            guard offset < end else { throw failure(.truncated, field, at: start) }
            let byte = base[offset]
            offset += 1
            // The nineteenth byte holds the top two bits only.
            if shift == 126, byte > 3 { throw failure(.invalidValue, field, at: start) }
            result |= UInt128(byte & 0x7F) << shift
            if byte < 0x80 { break }
            shift += 7
        }
        return Int128(bitPattern: (result >> 1) ^ (0 &- (result & 1)))
    }

    mutating func int32(_ field: StaticString) throws(LedgerCodecError) -> Int32 {
        let start = offset
        guard let value = Int32(exactly: try signed(field)) else { throw failure(.invalidValue, field, at: start) }
        return value
    }

    mutating func int16(_ field: StaticString) throws(LedgerCodecError) -> Int16 {
        let start = offset
        guard let value = Int16(exactly: try signed(field)) else { throw failure(.invalidValue, field, at: start) }
        return value
    }

    mutating func uint32(_ field: StaticString) throws(LedgerCodecError) -> UInt32 {
        let start = offset
        guard let value = UInt32(exactly: try varint(field)) else { throw failure(.invalidValue, field, at: start) }
        return value
    }

    mutating func bool(_ field: StaticString) throws(LedgerCodecError) -> Bool {
        let start = offset
        switch try byte(field) {
        case 0: return false
        case 1: return true
        default: throw failure(.invalidValue, field, at: start)
        }
    }

    /// A count of items that each take at least `minimumBytes`, so a corrupt count cannot
    /// make the caller reserve more than the input could describe.
    @inline(__always)
    mutating func count(_ field: StaticString, minimumBytes: Int) throws(LedgerCodecError) -> Int {
        let start = offset
        let value = try varint(field)
        guard value <= UInt64(remaining / minimumBytes) else { throw failure(.badCount, field, at: start) }
        return Int(value)
    }

    /// An index into a table of `tableCount` entries.
    mutating func index(_ field: StaticString, below tableCount: Int) throws(LedgerCodecError) -> Int {
        let start = offset
        let value = try varint(field)
        guard value < UInt64(tableCount) else { throw failure(.invalidValue, field, at: start) }
        return Int(value)
    }

    mutating func string(_ field: StaticString) throws(LedgerCodecError) -> String {
        let start = offset
        let length = try varint(field)
        guard length <= UInt64(remaining) else { throw failure(.truncated, field, at: start) }
        guard length > 0 else { return "" }
        let bytes = UnsafeBufferPointer(start: base! + offset, count: Int(length))
        // Ids and names are mostly ASCII, which is valid UTF-8 as is; the general validation
        // is much slower per call.
        var ascii = true
        for byte in bytes where byte >= 0x80 {
            ascii = false
            break
        }
        let value: String
        if ascii {
            value = String(unsafeUninitializedCapacity: bytes.count) { target in
                _ = target.initialize(fromContentsOf: bytes)
                return bytes.count
            }
        } else {
            guard let valid = String(validating: bytes, as: UTF8.self) else { throw failure(.invalidUTF8, field, at: start) }
            value = valid
        }
        offset += Int(length)
        return value
    }
}

