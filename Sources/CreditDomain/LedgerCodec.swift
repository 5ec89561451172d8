import Dispatch

/// A compact, versioned binary form of the whole `Ledger`, for snapshots.
///
/// Pure: bytes in, bytes out. Every stored field of the billing state is written; the derived
/// indexes (sorted ids, due queue, zone cache) are rebuilt on decode, so the decoded ledger is
/// `==` to the original and behaves identically afterwards.
///
/// Layout of format version 1 (integers are LEB128 varints unless noted; signed values are
/// zigzag-encoded; `str` is a varint byte count followed by UTF-8):
///
///     magic          4 bytes "CRDL"
///     version        UInt32 little-endian (`formatVersion`)
///     maxSeats       signed
///     counters       nextCreditSerial, nextInvoiceSerial
///     subscriptions  total count
///     parts          count P, then per part: its subscription count and byte length
///     id order       byte length
///     keys           byte length
///     events         byte length (version 2 and later)
///     part × P       section of subscriptions, in creation order
///     id order       per position in id order, the slot as a signed delta from the previous + 1
///     keys           section of idempotency entries: count, then entries in order of first use
///     events         section of the event feed (version 2): first kept seq, count, then each
///                    event (see `SectionEncoder.encodeEvents`)
///
/// A section starts with the offset of its tables (a five-byte varint, from the section start)
/// and ends with them: zone ids, then currency codes, each a count and `str`s, referred to by
/// index. Sections are independent so that two cores can write and read them at once.
///
/// Inside a subscription, civil dates are days from its `startDate` and instants are relative
/// to its `createdAt` rounded down to the minute, in the coarsest exact unit (see
/// `SectionEncoder.instant`). The input must end exactly after the keys section.
public enum LedgerCodec {
    /// The version this build writes. Version 2 added the event feed (E3); this build also
    /// reads version 1, whose ledgers have an empty feed.
    public static let formatVersion: UInt32 = 2
    /// Every version this build reads.
    public static let readableVersions: ClosedRange<UInt32> = 1...2

    static let magic: (UInt8, UInt8, UInt8, UInt8) = (0x43, 0x52, 0x44, 0x4C)   // "CRDL"

    /// Small ledgers are one part; large ones are split so two cores share the work.
    static func partCount(subscriptions: Int) -> Int {
        subscriptions < 16_384 ? 1 : 4
    }

    /// The ledger as snapshot bytes.
    public static func encode(_ ledger: Ledger) -> [UInt8] {
        encode(ledger, parts: partCount(subscriptions: ledger.subscriptionCount))
    }

    /// The ledger as snapshot bytes with its subscriptions in `parts` sections (at least one).
    static func encode(_ ledger: Ledger, parts: Int) -> [UInt8] {
        let slots = ledger.subscriptions
        let parts = max(parts, 1)
        let sections = Unchecked(UnsafeMutableBufferPointer<UnsafeMutableBufferPointer<UInt8>>.allocate(capacity: parts + 3))
        defer {
            for section in sections.value { section.deallocate() }
            sections.value.deallocate()
        }
        runConcurrently(parts + 3) { index in
            let section: UnsafeMutableBufferPointer<UInt8>
            if index < parts {
                let range = (slots.count * index / parts)..<(slots.count * (index + 1) / parts)
                // Generous: unused capacity is never touched, so it costs no memory.
                var encoder = SectionEncoder(capacity: 256 + range.count * 1_024)
                encoder.encodeSubscriptions(slots[range])
                section = encoder.finish()
            } else if index == parts {
                var writer = ByteWriter(capacity: 16 + slots.count * 5)
                var previous = -1
                for slot in ledger.slotsInIDOrder {
                    writer.signed(Int64(slot) - Int64(previous) - 1)
                    previous = Int(slot)
                }
                section = writer.take()
            } else if index == parts + 1 {
                var encoder = SectionEncoder(capacity: 256 + ledger.idempotencyEntryCount * 512)
                encoder.encodeKeys(ledger)
                section = encoder.finish()
            } else {
                var encoder = SectionEncoder(capacity: 256 + ledger.eventCount * 256)
                encoder.encodeEvents(ledger.feed)
                section = encoder.finish()
            }
            sections.value.initializeElement(at: index, to: section)
        }
        var head = ByteWriter(capacity: 256)
        head.byte(magic.0)
        head.byte(magic.1)
        head.byte(magic.2)
        head.byte(magic.3)
        head.uint32LE(formatVersion)
        head.signed(ledger.maxSeats)
        head.varint(ledger.counters.nextCreditSerial)
        head.varint(ledger.counters.nextInvoiceSerial)
        head.varint(slots.count)
        head.varint(parts)
        for index in 0..<parts {
            head.varint(slots.count * (index + 1) / parts - slots.count * index / parts)
            head.varint(sections.value[index].count)
        }
        head.varint(sections.value[parts].count)
        head.varint(sections.value[parts + 1].count)
        head.varint(sections.value[parts + 2].count)
        let headBytes = head.take()
        defer { headBytes.deallocate() }
        let total = sections.value.reduce(headBytes.count) { $0 + $1.count }
        return [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            var position = buffer.baseAddress!
            for piece in [headBytes] + Array(sections.value) where piece.count > 0 {
                position.update(from: piece.baseAddress!, count: piece.count)
                position += piece.count
            }
            initialized = total
        }
    }

    /// The format version of the ledger that starts at `offset` in `bytes`, from its first eight
    /// bytes (whether this build reads it or not).
    public static func formatVersion(of bytes: [UInt8], from offset: Int = 0) throws(LedgerCodecError) -> UInt32 {
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
    public static func decode(_ bytes: [UInt8], from offset: Int = 0) throws(LedgerCodecError) -> Ledger {
        let result: Result<Ledger, LedgerCodecError> = bytes.withUnsafeBufferPointer { whole in
            do throws(LedgerCodecError) {
                let buffer = UnsafeBufferPointer(rebasing: whole[min(max(offset, 0), whole.count)...])
                return .success(try LedgerDecoder.decodeLedger(buffer))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}

/// A value shared by concurrent tasks that touch disjoint parts of it (or only read it).
struct Unchecked<Value>: @unchecked Sendable {
    let value: Value

    init(_ value: Value) {
        self.value = value
    }
}

/// Runs `count` independent tasks on the cores (snapshots of a million subscriptions must be
/// written and read within seconds on two cores). Returns when all are done.
func runConcurrently(_ count: Int, _ task: @Sendable (Int) -> Void) {
    if count == 1 {
        task(0)
    } else {
        DispatchQueue.concurrentPerform(iterations: count, execute: task)
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

/// Tags of the enums with payloads.
enum CodecTag {
    static let fingerprintCancel: UInt8 = 1
    static let fingerprintChangeSeats: UInt8 = 2
    static let outcomeResponse: UInt8 = 1
    static let outcomeError: UInt8 = 2
    static let responseCreated: UInt8 = 1
    static let responseCancelled: UInt8 = 2
    static let responseResumed: UInt8 = 3
    static let responseSeatsChanged: UInt8 = 4
    static let responseRefundOutcomeRecorded: UInt8 = 5
    static let responseImported: UInt8 = 6
    static let payloadSubscription: UInt8 = 1
    static let payloadSeatChange: UInt8 = 2
    static let payloadCancel: UInt8 = 3
    static let payloadInvoice: UInt8 = 4
    static let payloadCreditState: UInt8 = 5
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

// Value initializers with every stored field, for decoding. They live here because the types'
// own initializers derive fields (and would trap on out-of-range input).

extension LineExplanation {
    init(chargedMinor: Int64, cumulativeNumerator: Int128, blocks: [SeatBlockPortion], storedChargedSeats: Int32,
         storedSeatsDelta: Int32, storedPeriodDays: Int16, storedUnusedDays: Int16) {
        self.chargedMinor = chargedMinor
        self.cumulativeHigh = Int64(truncatingIfNeeded: cumulativeNumerator >> 64)
        self.cumulativeLow = UInt64(truncatingIfNeeded: cumulativeNumerator)
        self.blocks = blocks
        self.storedChargedSeats = storedChargedSeats
        self.storedSeatsDelta = storedSeatsDelta
        self.storedPeriodDays = storedPeriodDays
        self.storedUnusedDays = storedUnusedDays
    }
}

extension BillingSchedule {
    init(interval: BillingInterval, storedAnchorMonth: Int8, storedAnchorDay: Int8) {
        self.interval = interval
        self.anchorMonth = storedAnchorMonth
        self.anchorDay = storedAnchorDay
    }
}

extension CreditStatus {
    init(credit: Credit, overdue: Bool, refundOverdue: Bool) {
        self.credit = credit
        self.overdue = overdue
        self.refundOverdue = refundOverdue
    }
}
