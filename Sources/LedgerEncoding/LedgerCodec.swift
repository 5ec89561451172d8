import CreditDomain

/// A compact, versioned binary form of the whole `Ledger`, for snapshots.
///
/// Pure: bytes in, bytes out. Every stored field of the billing state is written; the derived
/// indexes (sorted ids, due queue, zone cache) are rebuilt on decode, so the decoded ledger is
/// `==` to the original and behaves identically afterwards.
///
/// Every version starts with the magic "CRDL" and a little-endian UInt32 version. This build
/// writes version 4, tagged (protobuf wire format, one length-delimited record per subscription,
/// key and event, in parts: see Overview.swift), so that a later release can add a field without
/// breaking older files; version 4 also names the event chunks kept in the event archive. It also reads the positional versions 1 and 2 (`PositionalDecoder`),
/// whose layout is fixed by the order of their fields.
public enum LedgerCodec {
    /// The version this build writes. Version 2 added the event feed (E3); version 3 made the
    /// encoding tagged; version 4 names archived event chunks instead of carrying them.
    public static let formatVersion: UInt32 = 4
    /// Every version this build reads.
    public static let readableVersions: ClosedRange<UInt32> = 1...4

    static let magic: (UInt8, UInt8, UInt8, UInt8) = (0x43, 0x52, 0x44, 0x4C)   // "CRDL"

    /// The ledger as snapshot bytes.
    public static func encode(_ ledger: Ledger) -> [UInt8] {
        encodePieces(ledger).joined()
    }

    /// The ledger as snapshot bytes, in pieces made as they are read (a snapshot file is
    /// written from them, a few sections in memory at a time).
    public static func encodePieces(_ ledger: Ledger) -> LedgerPieces {
        LedgerPieces(ledger, subscriptionSections: TaggedLedger.subscriptionSections(ledger.subscriptionCount))
    }

    /// The ledger as snapshot bytes with its subscriptions in `parts` sections (at least one).
    static func encode(_ ledger: Ledger, parts: Int) -> [UInt8] {
        LedgerPieces(ledger, subscriptionSections: parts).joined()
    }

    /// The format version of the ledger that starts at `offset` in `bytes`, from its first eight
    /// bytes (whether this build reads it or not).
    public static func formatVersion(of bytes: UnsafeBufferPointer<UInt8>, from offset: Int = 0) throws(LedgerCodecError) -> UInt32 {
        guard offset >= 0, bytes.count - offset >= 8 else { throw LedgerCodecError(.truncated, offset: bytes.count, field: "format version") }
        guard bytes[offset] == magic.0, bytes[offset + 1] == magic.1, bytes[offset + 2] == magic.2, bytes[offset + 3] == magic.3 else {
            throw LedgerCodecError(.badMagic, offset: offset, field: "magic")
        }
        return (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[offset + 4 + $1]) << UInt32(8 * $1) }
    }

    /// The ledger in `bytes`, or an error that says what is wrong and at which byte offset.
    /// Malformed input throws; it never traps and never allocates more than a small multiple
    /// of its own size.
    /// Decodes the ledger that starts at `offset` and runs to the end of `bytes`
    /// (a snapshot payload carries a header first; no copy is made of the rest).
    public static func decode(_ bytes: [UInt8], from offset: Int = 0,
                              archive: (any EventArchive)? = nil) throws(LedgerCodecError) -> Ledger {
        let result: Result<Ledger, LedgerCodecError> = bytes.withUnsafeBufferPointer { whole in
            do throws(LedgerCodecError) {
                return .success(try decode(UnsafeBufferPointer(rebasing: whole[min(max(offset, 0), whole.count)...]),
                                           archive: archive))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// The ledger in `buffer` (which it does not keep).
    public static func decode(_ buffer: UnsafeBufferPointer<UInt8>,
                              archive: (any EventArchive)? = nil) throws(LedgerCodecError) -> Ledger {
        try decodeLedger(buffer, archive: archive)
    }
}

extension LedgerCodec {
    /// Reads the version, then the ledger in that version's encoding.
    static func decodeLedger(_ buffer: UnsafeBufferPointer<UInt8>,
                             archive: (any EventArchive)? = nil) throws(LedgerCodecError) -> Ledger {
        var reader = ByteReader(buffer)
        for expected in [magic.0, magic.1, magic.2, magic.3] {
            let start = reader.offset
            guard try reader.byte("magic") == expected else { throw reader.failure(.badMagic, "magic", at: start) }
        }
        let version = try reader.uint32LE("format version")
        guard readableVersions.contains(version) else { throw reader.failure(.unsupportedVersion(version), "format version", at: 4) }
        if version <= 2 { return try PositionalDecoder.decodeLedger(buffer, version: version) }
        return try TaggedLedger.decode(buffer, version: version, archive: archive)
    }
}

/// Why bytes could not be decoded, and where.
public struct LedgerCodecError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The input does not start with the snapshot magic.
        case badMagic
        /// A format version this build does not read.
        case unsupportedVersion(UInt32)
        /// The input ends inside a value.
        case truncated
        /// A value out of its range: an unknown enum raw value or tag, an over-long varint,
        /// a number that does not fit its field, an unknown currency.
        case invalidValue
        /// A count larger than the remaining bytes could hold.
        case badCount
        /// A string that is not valid UTF-8.
        case invalidUTF8
        /// A time zone id this system does not know.
        case unknownTimeZone
        /// Bytes left over after the last entry.
        case trailingBytes
    }

    public let kind: Kind
    /// The byte offset at which the problem was found.
    public let offset: Int
    /// The field being read, with the enclosing item (e.g. `subscription 12: credit count`).
    public let field: String

    public init(_ kind: Kind, offset: Int, field: String) {
        self.kind = kind
        self.offset = offset
        self.field = field
    }

    /// The same error, placed inside `item`.
    func within(_ item: @autoclosure () -> String) -> LedgerCodecError {
        LedgerCodecError(kind, offset: offset, field: "\(item()): \(field)")
    }

    public var description: String {
        let what: String
        switch kind {
        case .badMagic: what = "not a ledger snapshot (bad magic)"
        case .unsupportedVersion(let version):
            what = "unsupported snapshot format version \(version) (this build reads \(LedgerCodec.readableVersions))"
        case .truncated: what = "truncated"
        case .invalidValue: what = "invalid value"
        case .badCount: what = "count exceeds the remaining bytes"
        case .invalidUTF8: what = "invalid UTF-8"
        case .unknownTimeZone: what = "unknown time zone"
        case .trailingBytes: what = "trailing bytes after the ledger"
        }
        return "ledger snapshot: \(what) at byte \(offset) (\(field))"
    }
}

/// Stable wire numbers of the error reasons: part of the format, independent of declaration
/// order and of the reason strings.
extension DomainError.Reason {
    var codecNumber: UInt8 {
        switch self {
        case .invalidRequest: return 1
        case .subscriptionNotFound: return 2
        case .subscriptionExists: return 3
        case .creditNotFound: return 4
        case .subscriptionCancelled: return 5
        case .seatsMustBePositive: return 6
        case .outsideCancellationWindow: return 7
        case .amountOverflow: return 8
        case .idempotencyKeyReused: return 9
        case .eventsPruned: return 10
        }
    }

    init?(codecNumber: UInt8) {
        switch codecNumber {
        case 1: self = .invalidRequest
        case 2: self = .subscriptionNotFound
        case 3: self = .subscriptionExists
        case 4: self = .creditNotFound
        case 5: self = .subscriptionCancelled
        case 6: self = .seatsMustBePositive
        case 7: self = .outsideCancellationWindow
        case 8: self = .amountOverflow
        case 9: self = .idempotencyKeyReused
        case 10: self = .eventsPruned
        default: return nil
        }
    }
}

/// The reference points of relative instants and dates: a subscription's `createdAt` and
/// `startDate` inside it, zero for values stored on their own (idempotency outcomes).
struct CodecBase {
    static let nanosecondsPerMinute: Int64 = 60 * Instant.nanosecondsPerSecond

    /// A whole minute, so that whole-minute instants stay whole-minute deltas.
    let instant: Int64
    let day: Int32

    static let zero = CodecBase(instant: 0, day: 0)

    private init(instant: Int64, day: Int32) {
        self.instant = instant
        self.day = day
    }

    /// The base of a subscription: its creation instant rounded down to the minute, and its
    /// start date.
    init(_ createdAt: Instant, _ startDate: CivilDate) {
        let nanoseconds = createdAt.nanosecondsSinceEpoch
        let remainder = nanoseconds % CodecBase.nanosecondsPerMinute
        // Wrapping: both sides compute the same base even at the ends of the range.
        self.instant = remainder >= 0 ? nanoseconds &- remainder : nanoseconds &- remainder &- CodecBase.nanosecondsPerMinute
        self.day = startDate.epochDay
    }
}
