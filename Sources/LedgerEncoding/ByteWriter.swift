/// A growable byte buffer with LEB128 writers. It owns raw memory rather than an `[UInt8]`
/// so the hot path is a capacity check and a store, without uniqueness checks per byte.
struct ByteWriter: ~Copyable {
    private(set) var base: UnsafeMutablePointer<UInt8>
    private(set) var count = 0
    private var capacity: Int

    init(capacity: Int) {
        self.capacity = max(capacity, 64)
        self.base = UnsafeMutablePointer<UInt8>.allocate(capacity: self.capacity)
    }

    deinit {
        base.deallocate()
    }

    @inline(__always)
    private mutating func reserve(_ extra: Int) {
        if capacity - count < extra { grow(extra) }
    }

    @inline(never)
    private mutating func grow(_ extra: Int) {
        let newCapacity = max(capacity * 2, count + extra)
        let newBase = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        newBase.update(from: base, count: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    @inline(__always)
    mutating func byte(_ value: UInt8) {
        reserve(1)
        base[count] = value
        count += 1
    }

    @inline(__always)
    mutating func bool(_ value: Bool) {
        byte(value ? 1 : 0)
    }

    @inline(__always)
    mutating func uint32LE(_ value: UInt32) {
        reserve(4)
        for shift in stride(from: 0, to: 32, by: 8) {
            base[count] = UInt8(truncatingIfNeeded: value >> UInt32(shift))
            count += 1
        }
    }

    @inline(__always)
    mutating func varint(_ value: UInt64) {
        reserve(10)
        var rest = value
        while rest >= 0x80 {
            base[count] = UInt8(truncatingIfNeeded: rest) | 0x80
            count += 1
            rest >>= 7
        }
        base[count] = UInt8(truncatingIfNeeded: rest)
        count += 1
    }

    @inline(__always)
    mutating func varint(_ value: Int) {
        varint(UInt64(truncatingIfNeeded: value))
    }

    /// Zigzag: small magnitudes of either sign take few bytes.
    @inline(__always)
    mutating func signed(_ value: Int64) {
        varint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    mutating func signed128(_ value: Int128) {
        var rest = UInt128(truncatingIfNeeded: (value << 1) ^ (value >> 127))
        // Most numerators fit 64 bits; take the cheap path then.
        if rest <= UInt128(UInt64.max) {
            varint(UInt64(truncatingIfNeeded: rest))
            return
        }
        reserve(19)
        while rest >= 0x80 {
            base[count] = UInt8(truncatingIfNeeded: rest) | 0x80
            count += 1
            rest >>= 7
        }
        base[count] = UInt8(truncatingIfNeeded: rest)
        count += 1
    }

    mutating func uint64LE(_ value: UInt64) {
        reserve(8)
        for shift in stride(from: 0, to: 64, by: 8) {
            base[count] = UInt8(truncatingIfNeeded: value >> UInt64(shift))
            count += 1
        }
    }

    /// Room for `size` bytes written later (`storeByte`); returns where they are.
    @inline(__always)
    mutating func reservePlaceholder(_ size: Int) -> Int {
        reserve(size)
        let position = count
        count += size
        return position
    }

    @inline(__always)
    mutating func storeByte(at position: Int, _ value: UInt8) {
        base[position] = value
    }

    /// Moves the bytes from `start` to the end by `distance` (either way), for a length that
    /// turned out longer or shorter than the room left for it.
    mutating func shift(from start: Int, by distance: Int) {
        if distance > 0 { reserve(distance) }
        (base + start + distance).update(from: base + start, count: count - start)
        count += distance
    }

    mutating func bytes(_ source: UnsafeBufferPointer<UInt8>) {
        reserve(source.count)
        if let address = source.baseAddress, source.count > 0 {
            (base + count).update(from: address, count: source.count)
        }
        count += source.count
    }

    /// The bytes written, handed over to the caller, who deallocates them.
    consuming func take() -> UnsafeMutableBufferPointer<UInt8> {
        let result = UnsafeMutableBufferPointer(start: base, count: count)
        discard self
        return result
    }

    func copy(to target: UnsafeMutablePointer<UInt8>) {
        target.update(from: base, count: count)
    }

    mutating func string(_ value: String) {
        let written: Void? = value.utf8.withContiguousStorageIfAvailable { utf8 in
            varint(utf8.count)
            bytes(utf8)
        }
        if written == nil {
            let utf8 = Array(value.utf8)
            varint(utf8.count)
            utf8.withUnsafeBufferPointer { bytes($0) }
        }
    }
}
