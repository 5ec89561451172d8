/// One signed invoice line (charge +, credit −), L11.
public struct InvoiceLine: Sendable, Hashable {
    public let kind: InvoiceLineKind
    public let amountMinor: Int64
    /// The credit a credit line refers to, 0 for charge lines.
    public let creditSerial: UInt64
    public let effectiveDate: CivilDate
    /// Seats charged by a period charge line, 0 otherwise.
    public let seats: Int64

    package init(kind: InvoiceLineKind, amountMinor: Int64, creditSerial: UInt64 = 0, effectiveDate: CivilDate, seats: Int64 = 0) {
        self.kind = kind
        self.amountMinor = amountMinor
        self.creditSerial = creditSerial
        self.effectiveDate = effectiveDate
        self.seats = seats
    }

    public var creditID: String? { creditSerial == 0 ? nil : Credit.id(forSerial: creditSerial) }

    /// A short human text for the line.
    public var description: String {
        switch kind {
        case .periodCharge: return "period charge for \(seats) seat\(seats == 1 ? "" : "s")"
        case .proratedCharge: return "prorated charge for added seats from \(effectiveDate)"
        case .seatChangeCredit: return "credit \(creditID ?? "") for removed seats from \(effectiveDate)"
        case .cancelCredit: return "cancellation credit \(creditID ?? "") from \(effectiveDate)"
        case .appliedCredit: return "applied credit \(creditID ?? "")"
        }
    }
}

/// An invoice (L11): purchase (O2), renewal (L4), final (C5) or closing (C6).
public struct Invoice: Sendable, Hashable {
    /// Unique within the ledger; the invoice id is `inv_<serial>`.
    public let serial: UInt64
    public let kind: InvoiceKind
    public let issuedAt: Instant
    public let issuedDate: CivilDate
    public let periodStart: CivilDate
    public let periodEnd: CivilDate
    public let lines: [InvoiceLine]
    /// Final and closing invoices: the settlement date.
    public let settlesOn: CivilDate?
    public internal(set) var settled: Bool

    public var id: String { "inv_\(serial)" }

    /// The sum of the lines. Requests are checked (M2), so the sum stays inside `Int64`.
    public var totalMinor: Int64 {
        lines.reduce(Int64(0)) { $0 &+ $1.amountMinor }
    }

    /// Every stored field as it is (also snapshot decoding, in LedgerEncoding).
    package init(serial: UInt64, kind: InvoiceKind, issuedAt: Instant, issuedDate: CivilDate, periodStart: CivilDate, periodEnd: CivilDate, lines: [InvoiceLine], settlesOn: CivilDate?, settled: Bool) {
        self.serial = serial
        self.kind = kind
        self.issuedAt = issuedAt
        self.issuedDate = issuedDate
        self.periodStart = periodStart
        self.periodEnd = periodEnd
        self.lines = lines
        self.settlesOn = settlesOn
        self.settled = settled
    }
}

/// A billing period `[start, end)` with what was charged at its start (O3).
public struct BillingPeriod: Sendable, Hashable {
    public let start: CivilDate
    public let end: CivilDate
    /// `C`.
    public let chargedMinor: Int64
    /// `S`.
    public let chargedSeats: Int64

    /// `P = days(start, end)` (T2).
    public var days: Int32 { Int32(start.days(to: end)) }

    /// Every stored field as it is (also snapshot decoding, in LedgerEncoding).
    package init(start: CivilDate, end: CivilDate, chargedMinor: Int64, chargedSeats: Int64) {
        self.start = start
        self.end = end
        self.chargedMinor = chargedMinor
        self.chargedSeats = chargedSeats
    }
}

/// Seats that share a refund window (W1).
public struct SeatBlock: Sendable, Hashable {
    public internal(set) var seats: Int64
    public let windowStart: Instant
    public let startDate: CivilDate

    /// Every stored field as it is (also snapshot decoding, in LedgerEncoding).
    package init(seats: Int64, windowStart: Instant, startDate: CivilDate) {
        self.seats = seats
        self.windowStart = windowStart
        self.startDate = startDate
    }
}

/// The Cancel result (C8).
public struct CancellationRecord: Sendable, Hashable {
    public let mode: CancelMode
    /// `e`, or `periodEnd` for `end_of_period`.
    public let effectiveDate: CivilDate
    public let requestedAt: Instant
    /// 00:00 local on `effectiveDate`.
    public let entitlementEndsAt: Instant
    /// Immediate only.
    public let line: LedgerLine?
    /// Immediate, when the line is negative.
    public let credit: Credit?
    /// Immediate only.
    public let finalInvoice: Invoice?
    public internal(set) var alreadyCancelled: Bool

    /// Every stored field as it is (also snapshot decoding, in LedgerEncoding).
    package init(mode: CancelMode, effectiveDate: CivilDate, requestedAt: Instant, entitlementEndsAt: Instant, line: LedgerLine?, credit: Credit?, finalInvoice: Invoice?, alreadyCancelled: Bool) {
        self.mode = mode
        self.effectiveDate = effectiveDate
        self.requestedAt = requestedAt
        self.entitlementEndsAt = entitlementEndsAt
        self.line = line
        self.credit = credit
        self.finalInvoice = finalInvoice
        self.alreadyCancelled = alreadyCancelled
    }
}

/// Keeps the rarely present cancellation record out of line so every subscription stays small.
package enum CancellationSlot: Sendable, Hashable {
    case none
    indirect case recorded(CancellationRecord)

    var record: CancellationRecord? {
        if case .recorded(let record) = self { return record }
        return nil
    }
}
