/// One entry of a credit's history (L7). The civil date is `timeZone.civilDate(of: at)`.
public struct CreditStateChange: Sendable, Hashable {
    public let state: CreditState
    public let at: Instant

    public init(state: CreditState, at: Instant) {
        self.state = state
        self.at = at
    }
}

/// A credit's history after its first entry (`pending` at `createdAt`). Most credits take at
/// most three more steps (applied, refund_pending, refunded), so those live inline; longer
/// histories (refund_failed loops) spill into an array.
package struct CreditHistory: Sendable, Hashable {
    package var instants: (Int64, Int64, Int64) = (0, 0, 0)
    package var overflow: [CreditStateChange] = []
    package var count: UInt8 = 0
    package var states: (UInt8, UInt8, UInt8) = (0, 0, 0)

    package init() {}

    package mutating func append(_ state: CreditState, at instant: Instant) {
        let raw = UInt8(state.rawValue)
        switch count {
        case 0: states.0 = raw; instants.0 = instant.nanosecondsSinceEpoch
        case 1: states.1 = raw; instants.1 = instant.nanosecondsSinceEpoch
        case 2: states.2 = raw; instants.2 = instant.nanosecondsSinceEpoch
        default: overflow.append(CreditStateChange(state: state, at: instant))
        }
        if count < 3 { count += 1 }
    }

    var entries: [CreditStateChange] {
        var result: [CreditStateChange] = []
        result.reserveCapacity(Int(count) + overflow.count)
        forEach { result.append($0) }
        return result
    }

    /// Visits the entries in order without building an array.
    func forEach(_ body: (CreditStateChange) -> Void) {
        func entry(_ state: UInt8, _ instant: Int64) -> CreditStateChange {
            CreditStateChange(state: CreditState(rawValue: Int32(state)) ?? .pending, at: Instant(nanosecondsSinceEpoch: instant))
        }
        if count > 0 { body(entry(states.0, instants.0)) }
        if count > 1 { body(entry(states.1, instants.1)) }
        if count > 2 { body(entry(states.2, instants.2)) }
        overflow.forEach(body)
    }

    package static func == (lhs: CreditHistory, rhs: CreditHistory) -> Bool { lhs.entries == rhs.entries }
    package func hash(into hasher: inout Hasher) { hasher.combine(entries) }
}

/// One credit: the record that tracks a negative ledger line through the lifecycle of §8 (L7).
/// Amounts are positive magnitudes; `remaining + consumed + refunded = amount`.
public struct Credit: Sendable, Hashable {
    /// Unique within the ledger; the credit id is `cr_<serial>`.
    public let serial: UInt64
    public let createdAt: Instant
    public let amountMinor: Int64
    public private(set) var remainingMinor: Int64
    public private(set) var consumedMinor: Int64
    // Declaration order packs the small fields into the tail of the larger ones: at five
    // million credits every byte here is about 5 MB of resident memory.
    public let explanation: LineExplanation
    package let storedEventSeq: UInt32
    package var laterHistory: CreditHistory
    /// `e`.
    public let effectiveDate: CivilDate
    package let dueDateOffset: UInt16
    /// `refundExpectedBy − appliedDate` (1–31), 0 before the first application.
    package var refundExpectedByOffset: UInt8
    public let source: CreditSource
    public private(set) var state: CreditState
    /// The credit went through `refund_failed` at least once (L6 `refundOverdue`).
    public private(set) var hadRefundFailure: Bool

    init(serial: UInt64, source: CreditSource, effectiveDate: CivilDate, dueDate: CivilDate,
         createdAt: Instant, eventSeq: UInt64, amountMinor: Int64, explanation: LineExplanation) {
        self.serial = serial
        self.createdAt = createdAt
        self.amountMinor = amountMinor
        self.remainingMinor = amountMinor
        self.consumedMinor = 0
        self.explanation = explanation
        self.storedEventSeq = UInt32(truncatingIfNeeded: eventSeq)
        self.laterHistory = CreditHistory()
        self.effectiveDate = effectiveDate
        self.dueDateOffset = UInt16(clamping: effectiveDate.days(to: dueDate))
        self.refundExpectedByOffset = 0
        self.source = source
        self.state = .pending
        self.hadRefundFailure = false
    }

    /// Every stored field as given (snapshot decoding).
    package init(serial: UInt64, createdAt: Instant, amountMinor: Int64, remainingMinor: Int64, consumedMinor: Int64,
         explanation: LineExplanation, storedEventSeq: UInt32, laterHistory: CreditHistory, effectiveDate: CivilDate,
         dueDateOffset: UInt16, refundExpectedByOffset: UInt8, source: CreditSource, state: CreditState,
         hadRefundFailure: Bool) {
        self.serial = serial
        self.createdAt = createdAt
        self.amountMinor = amountMinor
        self.remainingMinor = remainingMinor
        self.consumedMinor = consumedMinor
        self.explanation = explanation
        self.storedEventSeq = storedEventSeq
        self.laterHistory = laterHistory
        self.effectiveDate = effectiveDate
        self.dueDateOffset = dueDateOffset
        self.refundExpectedByOffset = refundExpectedByOffset
        self.source = source
        self.state = state
        self.hadRefundFailure = hadRefundFailure
    }

    /// The opaque credit id, `cr_<serial>`.
    public var id: String { Credit.id(forSerial: serial) }

    /// What every credit id starts with; the serial in decimal follows.
    public static let idPrefix = "cr_"

    public static func id(forSerial serial: UInt64) -> String { idPrefix + String(serial) }

    /// The serial of a well-formed credit id, or nil.
    public static func serial(fromID id: String) -> UInt64? {
        guard id.hasPrefix("cr_") else { return nil }
        let digits = id.dropFirst(3)
        guard !digits.isEmpty, digits.first != "0" || digits.count == 1,
              digits.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else { return nil }
        return UInt64(digits)
    }

    public var eventSeq: UInt64 { UInt64(storedEventSeq) }
    public var refundedMinor: Int64 { amountMinor - remainingMinor - consumedMinor }
    /// `e + 30 days` (L2).
    public var deadline: CivilDate { effectiveDate.adding(days: 30) }
    /// `min(dueDate, deadline)` (L2).
    public var expectedBy: CivilDate { Self.expectedBy(effectiveDate: effectiveDate, dueDateOffset: dueDateOffset) }

    /// `min(dueDate, deadline)` from the two stored fields it depends on (CreditList reads
    /// them from a packed record without decoding it).
    static func expectedBy(effectiveDate: CivilDate, dueDateOffset: UInt16) -> CivilDate {
        effectiveDate.adding(days: min(Int(dueDateOffset), 30))
    }
    /// `periodEnd` of the period containing `e` (L2).
    public var dueDate: CivilDate { effectiveDate.adding(days: Int(dueDateOffset)) }
    /// The date the credit first became `applied`: always `expectedBy` (L3, T6).
    public var appliedDate: CivilDate? { refundExpectedByOffset == 0 ? nil : expectedBy }
    /// Set once, at the first application (L5).
    public var refundExpectedBy: CivilDate? {
        Self.refundExpectedBy(expectedBy: expectedBy, refundExpectedByOffset: refundExpectedByOffset)
    }

    /// `refundExpectedBy` from the fields it depends on (as `expectedBy(effectiveDate:dueDateOffset:)`).
    static func refundExpectedBy(expectedBy: CivilDate, refundExpectedByOffset: UInt8) -> CivilDate? {
        refundExpectedByOffset == 0 ? nil : expectedBy.adding(days: Int(refundExpectedByOffset))
    }

    /// The full history, starting with `pending` at `createdAt` (L7).
    public var history: [CreditStateChange] {
        var entries: [CreditStateChange] = []
        forEachHistoryEntry { entries.append($0) }
        return entries
    }

    /// The history in order, without building an array (the response encoders).
    public func forEachHistoryEntry(_ body: (CreditStateChange) -> Void) {
        body(CreditStateChange(state: .pending, at: createdAt))
        laterHistory.forEach(body)
    }

    /// The signed ledger line of this credit.
    public var line: LedgerLine {
        LedgerLine(amountMinor: -amountMinor, effectiveDate: effectiveDate, eventSeq: eventSeq, explanation: explanation)
    }

    /// L6: past `expectedBy` and still `pending` (the transition was not recorded).
    public func isOverdue(asOf date: CivilDate) -> Bool {
        state == .pending && date > expectedBy
    }

    /// L6: past `refundExpectedBy` while `refund_pending`, or `applied` after a `refund_failed`.
    public func isRefundOverdue(asOf date: CivilDate) -> Bool {
        guard let due = refundExpectedBy, date > due else { return false }
        return state == .refundPending || (state == .applied && hadRefundFailure)
    }

    // MARK: transitions (§8)

    /// L3: a pending credit becomes `applied` at 00:00 local on `expectedBy`.
    mutating func apply(at instant: Instant, schedule: BillingSchedule) {
        state = .applied
        laterHistory.append(.applied, at: instant)
        if refundExpectedByOffset == 0 {
            // L5: the billing date after B, capped at 31 days after the application.
            let applied = expectedBy
            let billingDate = schedule.billingDate(onOrAfter: applied)
            let following = schedule.billingDate(after: billingDate)
            refundExpectedByOffset = UInt8(applied.days(to: min(following, applied.adding(days: 31))))
        }
    }

    /// Absorbs up to `charges` of the balance; returns what was absorbed (L4).
    mutating func absorb(upTo charges: Int64, at instant: Instant) -> Int64 {
        let absorbed = min(max(charges, 0), remainingMinor)
        remainingMinor -= absorbed
        consumedMinor += absorbed
        if remainingMinor == 0 {
            state = .consumed
            laterHistory.append(.consumed, at: instant)
        }
        return absorbed
    }

    /// What remains after a bill, or at an effective cancel, awaits a refund.
    mutating func awaitRefund(at instant: Instant) {
        guard remainingMinor > 0 else { return }
        state = .refundPending
        laterHistory.append(.refundPending, at: instant)
    }

    mutating func recordRefundSucceeded(at instant: Instant) {
        state = .refunded
        remainingMinor = 0
        laterHistory.append(.refunded, at: instant)
    }

    /// `refund_failed → applied` at once (L1); `refundExpectedBy` is kept (L5).
    mutating func recordRefundFailed(at instant: Instant) {
        hadRefundFailure = true
        laterHistory.append(.refundFailed, at: instant)
        state = .applied
        laterHistory.append(.applied, at: instant)
    }
}
