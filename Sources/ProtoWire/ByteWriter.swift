/// A growable byte buffer with LEB128 writers. It owns raw memory rather than an `[UInt8]`
/// so the hot path is a capacity check and a store, without uniqueness checks per byte.
///
/// Public and inlinable: the snapshot encoder and the response encoders write millions of
/// fields through it, and a call across modules per byte would cost more than the store.
@frozen
public struct ByteWriter: ~Copyable {
    @usableFromInline var base: UnsafeMutablePointer<UInt8>
    @usableFromInline var written = 0
    @usableFromInline var capacity: Int

    @inlinable
    public init(capacity: Int) {
        self.capacity = max(capacity, 64)
        self.base = UnsafeMutablePointer<UInt8>.allocate(capacity: self.capacity)
    }

    /// Writes into `storage` (allocated with `allocate`), which it takes over: it frees it as
    /// it would its own, or hands it back with `takeStorage`. Memory written once is cheap to
    /// write again; fresh memory costs a page fault and the page's clearing.
    @inlinable
    public init(reusing storage: UnsafeMutableBufferPointer<UInt8>) {
        precondition(storage.count >= 64, "a reused ByteWriter buffer needs 64 bytes")
        self.capacity = storage.count
        self.base = storage.baseAddress!
    }

    @inlinable
    deinit {
        base.deallocate()
    }

    /// Bytes written so far.
    @inlinable public var count: Int { written }

    @inlinable @inline(__always)
    mutating func reserve(_ extra: Int) {
        if capacity - written < extra { grow(extra) }
    }

    @usableFromInline @inline(never)
    mutating func grow(_ extra: Int) {
        let newCapacity = max(capacity * 2, written + extra)
        let newBase = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        newBase.update(from: base, count: written)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    @inlinable @inline(__always)
    public mutating func byte(_ value: UInt8) {
        reserve(1)
        base[written] = value
        written += 1
    }

    @inlinable @inline(__always)
    public mutating func bool(_ value: Bool) {
        byte(value ? 1 : 0)
    }

    @inlinable @inline(__always)
    public mutating func uint32LE(_ value: UInt32) {
        reserve(4)
        for shift in stride(from: 0, to: 32, by: 8) {
            base[written] = UInt8(truncatingIfNeeded: value >> UInt32(shift))
            written += 1
        }
    }

    @inlinable
    public mutating func uint64LE(_ value: UInt64) {
        reserve(8)
        for shift in stride(from: 0, to: 64, by: 8) {
            base[written] = UInt8(truncatingIfNeeded: value >> UInt64(shift))
            written += 1
        }
    }

    @inlinable @inline(__always)
    public mutating func varint(_ value: UInt64) {
        reserve(10)
        var rest = value
        while rest >= 0x80 {
            base[written] = UInt8(truncatingIfNeeded: rest) | 0x80
            written += 1
            rest >>= 7
        }
        base[written] = UInt8(truncatingIfNeeded: rest)
        written += 1
    }

    @inlinable @inline(__always)
    public mutating func varint(_ value: Int) {
        varint(UInt64(truncatingIfNeeded: value))
    }

    /// Zigzag: small magnitudes of either sign take few bytes.
    @inlinable @inline(__always)
    public mutating func signed(_ value: Int64) {
        varint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    @inlinable
    public mutating func signed128(_ value: Int128) {
        var rest = UInt128(truncatingIfNeeded: (value << 1) ^ (value >> 127))
        // Most numerators fit 64 bits; take the cheap path then.
        if rest <= UInt128(UInt64.max) {
            varint(UInt64(truncatingIfNeeded: rest))
            return
        }
        reserve(19)
        while rest >= 0x80 {
            base[written] = UInt8(truncatingIfNeeded: rest) | 0x80
            written += 1
            rest >>= 7
        }
        base[written] = UInt8(truncatingIfNeeded: rest)
        written += 1
    }

    /// Room for `size` bytes written later (`storeByte`); returns where they are.
    @inlinable @inline(__always)
    public mutating func reservePlaceholder(_ size: Int) -> Int {
        reserve(size)
        let position = written
        written += size
        return position
    }

    @inlinable @inline(__always)
    public mutating func storeByte(at position: Int, _ value: UInt8) {
        base[position] = value
    }

    /// Moves the bytes from `start` to the end by `distance` (either way), for a length that
    /// turned out longer or shorter than the room left for it.
    @inlinable
    public mutating func shift(from start: Int, by distance: Int) {
        if distance > 0 { reserve(distance) }
        (base + start + distance).update(from: base + start, count: written - start)
        written += distance
    }

    @inlinable
    public mutating func bytes(_ source: UnsafeBufferPointer<UInt8>) {
        reserve(source.count)
        if let address = source.baseAddress, source.count > 0 {
            (base + written).update(from: address, count: source.count)
        }
        written += source.count
    }

    /// The UTF-8 bytes of `value`, without a length.
    @inlinable
    public mutating func utf8(_ value: String) {
        var value = value
        value.withUTF8 { bytes($0) }
    }

    /// A length-prefixed string (protobuf's `string`).
    @inlinable
    public mutating func string(_ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            varint(utf8.count)
            bytes(utf8)
        }
    }

    /// The bytes written, handed over to the caller, who deallocates them.
    @inlinable
    public consuming func take() -> UnsafeMutableBufferPointer<UInt8> {
        let result = UnsafeMutableBufferPointer(start: base, count: written)
        discard self
        return result
    }

    /// The whole buffer (every byte of its capacity) and how many of its bytes were written,
    /// handed over to the caller, who deallocates the buffer or writes into it again.
    @inlinable
    public consuming func takeStorage() -> (storage: UnsafeMutableBufferPointer<UInt8>, written: Int) {
        let result = (UnsafeMutableBufferPointer(start: base, count: capacity), written)
        discard self
        return result
    }

    /// A copy of the bytes written, as an array.
    @inlinable
    public func array() -> [UInt8] {
        Array(UnsafeBufferPointer(start: base, count: written))
    }

    @inlinable
    public func copy(to target: UnsafeMutablePointer<UInt8>) {
        target.update(from: base, count: written)
    }
}
