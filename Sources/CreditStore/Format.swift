#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// On-disk layout; `Overview.swift` explains it in full. All integers are little-endian.
///
/// Journal segment `journal-<firstSeq, 20 digits>.log`:
///   header (32 bytes): magic "CREDJRNL", version u32, reserved u32, firstSeq u64,
///                      CRC32C of the preceding 24 bytes u32, reserved u32
///   records: length u32 (payload bytes), CRC32C u32 (over length, seq, payload), seq u64, payload
///   version 2 on: a full segment ends with a seal, a record with seq 0 and the 16-byte payload
///                 "CREDSEAL", next segment's firstSeq u64
///   version 3 on: zeros may follow the last record (or the seal) to the end of the file: space
///                 written ahead, so that an fdatasync writes data without the inode
///
/// Snapshot `snapshot-<lastSeq, 20 digits>.snap`:
///   header (48 bytes): magic "CREDSNAP", version u32, reserved u32, lastSeq u64,
///                      payload length u64, wall time (Unix ms) i64, payload CRC32C u32,
///                      CRC32C of the preceding 44 bytes u32
///   payload
enum StoreFormat {
    static let segmentMagic: [UInt8] = Array("CREDJRNL".utf8)
    static let snapshotMagic: [UInt8] = Array("CREDSNAP".utf8)
    /// Version written to new segments. 3 added zeros written ahead of the records, 2 the seal;
    /// 1 and 2 are still read.
    static let segmentVersion: UInt32 = 3
    static let readableSegmentVersions: ClosedRange<UInt32> = 1...3
    /// The first version whose segments may end with zeros after their records.
    static let firstZeroFilledSegmentVersion: UInt32 = 3
    static let sealMagic: [UInt8] = Array("CREDSEAL".utf8)
    static let sealPayloadSize = 16
    static let sealRecordSize = 16 + 16
    static let snapshotVersion: UInt32 = 1
    static let segmentHeaderSize = 32
    static let recordHeaderSize = 16
    static let snapshotHeaderSize = 48

    static let segmentPrefix = "journal-"
    static let segmentSuffix = ".log"
    static let snapshotPrefix = "snapshot-"
    static let snapshotSuffix = ".snap"
    static let temporarySuffix = ".tmp"
    static let lockName = "LOCK"

    static func segmentName(firstSequence: UInt64) -> String {
        segmentPrefix + padded(firstSequence) + segmentSuffix
    }

    static func snapshotName(sequence: UInt64) -> String {
        snapshotPrefix + padded(sequence) + snapshotSuffix
    }

    static func padded(_ value: UInt64) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    /// The sequence number in a file name of the given prefix and suffix, if it has that form.
    static func sequence(inName name: String, prefix: String, suffix: String) -> UInt64? {
        guard name.hasPrefix(prefix), name.hasSuffix(suffix) else { return nil }
        let digits = name.dropFirst(prefix.count).dropLast(suffix.count)
        guard digits.count == 20, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return UInt64(digits)
    }

    static func segmentHeader(firstSequence: UInt64) -> [UInt8] {
        var bytes = segmentMagic
        bytes.appendLittleEndian(segmentVersion)
        bytes.appendLittleEndian(UInt32(0))
        bytes.appendLittleEndian(firstSequence)
        bytes.appendLittleEndian(CRC32C.checksum(bytes))
        bytes.appendLittleEndian(UInt32(0))
        return bytes
    }

    static func appendRecord(sequence: UInt64, payload: [UInt8], to buffer: inout [UInt8]) {
        var covered: [UInt8] = []
        covered.reserveCapacity(12)
        covered.appendLittleEndian(UInt32(payload.count))
        covered.appendLittleEndian(sequence)
        let crc = CRC32C.update(CRC32C.checksum(covered), payload)
        buffer.appendLittleEndian(UInt32(payload.count))
        buffer.appendLittleEndian(crc)
        buffer.appendLittleEndian(sequence)
        buffer.append(contentsOf: payload)
    }

    static func recordSize(payloadCount: Int) -> Int { recordHeaderSize + payloadCount }

    /// The record that closes a full segment and names its successor's first sequence number.
    static func sealRecord(nextSequence: UInt64) -> [UInt8] {
        var payload = sealMagic
        payload.appendLittleEndian(nextSequence)
        var record: [UInt8] = []
        appendRecord(sequence: 0, payload: payload, to: &record)
        return record
    }

    /// The successor's first sequence number if `payload` (of a seq 0 record) is a seal.
    static func sealNextSequence(_ payload: ArraySlice<UInt8>) -> UInt64? {
        guard payload.count == sealPayloadSize, payload.prefix(8).elementsEqual(sealMagic) else { return nil }
        return Array(payload).readLittleEndian(UInt64.self, at: 8)
    }

    static func baseName(_ path: String) -> String {
        path.split(separator: "/").last.map(String.init) ?? path
    }

    /// The header of a snapshot whose payload is `payloadLength` bytes with CRC-32C
    /// `payloadChecksum`; `snapshotHeaderSize` bytes.
    static func snapshotHeader(sequence: UInt64, payloadLength: Int, payloadChecksum: UInt32, unixMillis: Int64) -> [UInt8] {
        var bytes = snapshotMagic
        bytes.appendLittleEndian(snapshotVersion)
        bytes.appendLittleEndian(UInt32(0))
        bytes.appendLittleEndian(sequence)
        bytes.appendLittleEndian(UInt64(payloadLength))
        bytes.appendLittleEndian(UInt64(bitPattern: unixMillis))
        bytes.appendLittleEndian(payloadChecksum)
        bytes.appendLittleEndian(CRC32C.checksum(bytes))
        assert(bytes.count == snapshotHeaderSize)
        return bytes
    }

    static func currentUnixMillis() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
    }
}

extension Array where Element == UInt8 {
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

}

extension RandomAccessCollection where Element == UInt8, Index == Int {
    /// The integer stored little-endian `offset` bytes from the start.
    func readLittleEndian<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value: T = 0
        for index in (0..<MemoryLayout<T>.size).reversed() {
            value = value << 8 | T(self[startIndex + offset + index])
        }
        return value
    }
}
