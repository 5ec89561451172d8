import CCRC32C

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum iSCSI (RFC 3720) and
/// ext4 use. Slicing-by-8: eight 256-entry tables let the loop consume eight bytes per step.
public enum CRC32C {
    /// Table `k` (entries `256*k ..< 256*(k+1)`) gives the CRC of a byte followed by `k` zero bytes.
    static let tables: [UInt32] = {
        var tables = [UInt32](repeating: 0, count: 8 * 256)
        for byte in 0..<256 {
            var crc = UInt32(byte)
            for _ in 0..<8 {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1
            }
            tables[byte] = crc
        }
        for byte in 0..<256 {
            var crc = tables[byte]
            for slice in 1..<8 {
                crc = tables[Int(crc & 0xFF)] ^ (crc >> 8)
                tables[slice * 256 + byte] = crc
            }
        }
        return tables
    }()

    /// The checksum of `bytes`.
    public static func checksum(_ bytes: some Sequence<UInt8>) -> UInt32 {
        update(0, bytes)
    }

    /// Extends a finished checksum `crc` with more bytes, so that
    /// `update(checksum(a), b) == checksum(a + b)`.
    public static func update(_ crc: UInt32, _ bytes: some Sequence<UInt8>) -> UInt32 {
        if let result = bytes.withContiguousStorageIfAvailable({ update(crc, UnsafeRawBufferPointer($0)) }) {
            return result
        }
        return Array(bytes).withUnsafeBytes { update(crc, $0) }
    }

    /// Whether this CPU has a crc32 instruction (checked once).
    static let hardware = credit_crc32c_hardware() == 1

    /// Extends a finished checksum `crc` with the bytes of `buffer`.
    public static func update(_ crc: UInt32, _ buffer: UnsafeRawBufferPointer) -> UInt32 {
        let count = buffer.count
        guard count > 0, let base = buffer.baseAddress else { return crc }
        if hardware { return ~credit_crc32c_hardware_update(~crc, base, count) }
        return softwareUpdate(crc, buffer)
    }

    /// `update` with the tables (CPUs without the instruction; tests compare the two).
    static func softwareUpdate(_ crc: UInt32, _ buffer: UnsafeRawBufferPointer) -> UInt32 {
        var state = ~crc
        let count = buffer.count
        guard count > 0, let base = buffer.baseAddress else { return crc }
        tables.withUnsafeBufferPointer { table in
            let t0 = table.baseAddress!, t1 = t0 + 256, t2 = t0 + 512, t3 = t0 + 768
            let t4 = t0 + 1024, t5 = t0 + 1280, t6 = t0 + 1536, t7 = t0 + 1792
            var index = 0
            while count - index >= 8 {
                let low = state ^ (UInt32(base.load(fromByteOffset: index, as: UInt8.self))
                    | UInt32(base.load(fromByteOffset: index + 1, as: UInt8.self)) << 8
                    | UInt32(base.load(fromByteOffset: index + 2, as: UInt8.self)) << 16
                    | UInt32(base.load(fromByteOffset: index + 3, as: UInt8.self)) << 24)
                let high = UInt32(base.load(fromByteOffset: index + 4, as: UInt8.self))
                    | UInt32(base.load(fromByteOffset: index + 5, as: UInt8.self)) << 8
                    | UInt32(base.load(fromByteOffset: index + 6, as: UInt8.self)) << 16
                    | UInt32(base.load(fromByteOffset: index + 7, as: UInt8.self)) << 24
                state = t7[Int(low & 0xFF)] ^ t6[Int((low >> 8) & 0xFF)]
                    ^ t5[Int((low >> 16) & 0xFF)] ^ t4[Int(low >> 24)]
                    ^ t3[Int(high & 0xFF)] ^ t2[Int((high >> 8) & 0xFF)]
                    ^ t1[Int((high >> 16) & 0xFF)] ^ t0[Int(high >> 24)]
                index += 8
            }
            while index < count {
                let byte = base.load(fromByteOffset: index, as: UInt8.self)
                state = t0[Int((state ^ UInt32(byte)) & 0xFF)] ^ (state >> 8)
                index += 1
            }
        }
        return ~state
    }
}
