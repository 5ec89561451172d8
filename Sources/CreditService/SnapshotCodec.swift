import CreditDomain
import CreditProto
import CreditStore
import LedgerEncoding

/// The payload of a snapshot file: a small protobuf header (the clock
/// reading and the ledger encoding), then the whole ledger in the domain's
/// binary encoding.
public enum SnapshotCodec {
    /// Ledger encodings this creditd reads; the newest is written.
    enum LedgerEncoding: UInt32 {
        case ledgerCodec = 1
    }

    public struct DecodeError: Error, CustomStringConvertible {
        public let description: String
    }

    /// A snapshot payload as the store writes it: the header's length and bytes, then the
    /// ledger's pieces, made as the store reads them and never joined in memory.
    public struct Payload: SnapshotPayload {
        let prefix: [UInt8]
        let ledger: LedgerPieces

        public func forEachPiece<Failure: Error>(_ body: (UnsafeRawBufferPointer) throws(Failure) -> Void) throws(Failure) {
            try prefix.forEachPiece(body)
            try ledger.forEachPiece(body)
        }
    }

    public static func encode(_ ledger: Ledger, clock: Instant) throws -> [UInt8] {
        try encodePayload(ledger, clock: clock).joined()
    }

    public static func encodePayload(_ ledger: Ledger, clock: Instant) throws -> Payload {
        var header = Creditd_Journal_V1_Snapshot()
        header.clockUnixNanos = clock.nanosecondsSinceEpoch
        header.ledgerEncoding = LedgerEncoding.ledgerCodec.rawValue
        let headerBytes: [UInt8] = try header.serializedBytes()
        var prefix: [UInt8] = []
        prefix.reserveCapacity(4 + headerBytes.count)
        withUnsafeBytes(of: UInt32(headerBytes.count).littleEndian) { prefix.append(contentsOf: $0) }
        prefix.append(contentsOf: headerBytes)
        return Payload(prefix: prefix, ledger: LedgerCodec.encodePieces(ledger))
    }

    /// The header, and the offset at which the ledger starts.
    private static func header(_ payload: UnsafeBufferPointer<UInt8>) throws -> (header: Creditd_Journal_V1_Snapshot, ledgerOffset: Int) {
        guard payload.count >= 4 else { throw DecodeError(description: "snapshot payload of \(payload.count) bytes is too short") }
        let headerLength = Int(UInt32(payload[0]) | UInt32(payload[1]) << 8 | UInt32(payload[2]) << 16 | UInt32(payload[3]) << 24)
        guard headerLength <= payload.count - 4 else {
            throw DecodeError(description: "snapshot header length \(headerLength) exceeds the payload")
        }
        let header = try Creditd_Journal_V1_Snapshot(serializedBytes: Array(payload[4..<(4 + headerLength)]))
        return (header, 4 + headerLength)
    }

    /// The version of the ledger encoding inside `payload` (`LedgerCodec.formatVersion` of the
    /// release that wrote it), read from its header without decoding the ledger.
    public static func ledgerFormatVersion(of payload: UnsafeBufferPointer<UInt8>) throws -> UInt32 {
        let (header, offset) = try Self.header(payload)
        guard LedgerEncoding(rawValue: header.ledgerEncoding) != nil else {
            throw DecodeError(description: "snapshot ledger encoding \(header.ledgerEncoding) is unknown to this creditd")
        }
        do {
            return try LedgerCodec.formatVersion(of: payload, from: offset)
        } catch {
            throw DecodeError(description: "snapshot ledger: \(error)")
        }
    }

    /// The ledger encoding of `payload` in words, for `creditd verify-state`: its version, and
    /// whether this build reads it.
    public static func describeLedgerEncoding(of payload: UnsafeBufferPointer<UInt8>) -> String {
        let version: UInt32
        do {
            version = try ledgerFormatVersion(of: payload)
        } catch {
            return "ledger encoding unreadable (\(error))"
        }
        let kind = version >= 3 ? "tagged" : "positional"
        if version == LedgerCodec.formatVersion { return "ledger encoding version \(version) (\(kind))" }
        if LedgerCodec.readableVersions.contains(version) {
            return "ledger encoding version \(version) (\(kind); read, and written as version \(LedgerCodec.formatVersion) at the next snapshot)"
        }
        return "ledger encoding version \(version) (not read by this build, which reads \(LedgerCodec.readableVersions.lowerBound)"
            + " to \(LedgerCodec.readableVersions.upperBound))"
    }

    /// The ledger and clock of a snapshot; `archive` reads the event chunks it names there.
    public static func decode(_ payload: [UInt8], archive: (any EventArchive)? = nil) throws -> (ledger: Ledger, clock: Instant) {
        try payload.withUnsafeBufferPointer { try decode($0, archive: archive) }
    }

    /// `decode` of the payload a store recovered, read where it lies (a snapshot file is mapped).
    public static func decode(_ snapshot: RecoveredSnapshot, archive: (any EventArchive)? = nil) throws -> (ledger: Ledger, clock: Instant) {
        try snapshot.contents.withUnsafeBufferPointer { try decode($0, archive: archive) }
    }

    public static func decode(_ payload: UnsafeBufferPointer<UInt8>, archive: (any EventArchive)? = nil) throws -> (ledger: Ledger, clock: Instant) {
        let (header, offset) = try header(payload)
        guard let encoding = LedgerEncoding(rawValue: header.ledgerEncoding) else {
            throw DecodeError(description: "snapshot ledger encoding \(header.ledgerEncoding) is unknown to this creditd")
        }
        switch encoding {
        case .ledgerCodec:
            let ledger: Ledger
            do {
                ledger = try LedgerCodec.decode(UnsafeBufferPointer(rebasing: payload[offset...]), archive: archive)
            } catch {
                throw DecodeError(description: "snapshot ledger: \(error)")
            }
            return (ledger, Instant(nanosecondsSinceEpoch: header.clockUnixNanos))
        }
    }
}
