/// Part of a `window_72h` decrease taken from one seat block (L7).
public struct SeatBlockPortion: Sendable, Hashable {
    public let seats: Int64
    public let startDate: CivilDate
    /// `days(startDate, periodEnd)`.
    public let unusedDays: Int32

    public init(seats: Int64, startDate: CivilDate, unusedDays: Int32) {
        self.seats = seats
        self.startDate = startDate
        self.unusedDays = unusedDays
    }
}

/// Why a ledger line has its amount (L7), stored compactly: every rational is rebuilt from the
/// period's charge `C`, its seats `S`, its days `P` and the running numerator of `A_n`, all of
/// which share the denominator `S × P` (P4).
public struct LineExplanation: Sendable, Hashable {
    /// `C` of the period.
    public let chargedMinor: Int64
    // A_n's numerator over S × P, split so the struct keeps 8-byte alignment.
    package let cumulativeHigh: Int64
    package let cumulativeLow: UInt64
    /// `window_72h` decreases only: the blocks seats were taken from, newest first.
    public let blocks: [SeatBlockPortion]
    // Seat counts fit 32 bits (the seat maximum is capped there) and day counts 16 bits.
    package let storedChargedSeats: Int32
    package let storedSeatsDelta: Int32
    package let storedPeriodDays: Int16
    /// `days(e, periodEnd)`; for `window_72h` decreases the blocks' common value, −1 when they differ.
    package let storedUnusedDays: Int16

    init(chargedMinor: Int64, chargedSeats: Int64, seatsDelta: Int64, periodDays: Int32,
         unusedDays: Int32, cumulativeNumerator: Int128, blocks: [SeatBlockPortion]) {
        self.chargedMinor = chargedMinor
        self.storedChargedSeats = Int32(chargedSeats)
        self.storedSeatsDelta = Int32(seatsDelta)
        self.storedPeriodDays = Int16(periodDays)
        if blocks.isEmpty {
            self.storedUnusedDays = Int16(unusedDays)
        } else {
            let first = blocks[0].unusedDays
            self.storedUnusedDays = blocks.allSatisfy { $0.unusedDays == first } ? Int16(first) : -1
        }
        self.cumulativeHigh = Int64(truncatingIfNeeded: cumulativeNumerator >> 64)
        self.cumulativeLow = UInt64(truncatingIfNeeded: cumulativeNumerator)
        self.blocks = blocks
    }

    /// `S` of the period.
    public var chargedSeats: Int64 { Int64(storedChargedSeats) }
    /// `newSeats − previousSeats` (negative for a decrease; a cancel removes all seats).
    public var seatsDelta: Int64 { Int64(storedSeatsDelta) }
    /// `P`.
    public var periodDays: Int32 { Int32(storedPeriodDays) }

    /// The common denominator `S × P` of every term of the period (P4).
    public var denominator: Int128 { Int128(chargedSeats) * Int128(periodDays) }

    /// `p = C / S` (M5).
    public var unitPrice: Rational { Rational(Int128(chargedMinor), Int128(chargedSeats)) }

    /// Unused days of this change; nil when `window_72h` blocks differ (`unused_days_differ`).
    public var unusedDays: Int32? { storedUnusedDays >= 0 ? Int32(storedUnusedDays) : nil }

    /// The numerator of `A_n` over `S × P`.
    public var cumulativeNumerator: Int128 { (Int128(cumulativeHigh) << 64) | Int128(cumulativeLow) }

    /// The numerator of this change's exact amount over `S × P`.
    public var exactNumerator: Int128 {
        if blocks.isEmpty {
            return Int128(chargedMinor) * Int128(storedSeatsDelta) * Int128(storedUnusedDays)
        }
        let seatDays = blocks.reduce(Int128(0)) { $0 + Int128($1.seats) * Int128($1.unusedDays) }
        return -Int128(chargedMinor) * seatDays
    }

    /// This change's exact amount.
    public var exact: Rational { Rational(exactNumerator, denominator) }
    /// `A_n`, the period's running exact total.
    public var cumulativeExact: Rational { Rational(cumulativeNumerator, denominator) }

    /// The signed line `R(A_n) − R(A_{n−1})`.
    public var rounded: Int64 {
        let current = roundHalfUp(cumulativeNumerator, over: denominator) ?? 0
        let previous = roundHalfUp(cumulativeNumerator - exactNumerator, over: denominator) ?? 0
        return Int64(truncatingIfNeeded: current - previous)
    }

    /// `R(A_n) − A_n`.
    public var carry: Rational {
        let d = denominator
        let current = roundHalfUp(cumulativeNumerator, over: d) ?? 0
        return Rational(current * d - cumulativeNumerator, d)
    }
}

/// One signed ledger line (charge +, credit −) with its explanation (L7).
public struct LedgerLine: Sendable, Hashable {
    public let amountMinor: Int64
    public let effectiveDate: CivilDate
    /// Unique per subscription (I7); increases in the order lines are recorded.
    public let eventSeq: UInt64
    public let explanation: LineExplanation

    /// Every stored field as it is (also snapshot decoding, in LedgerEncoding).
    package init(amountMinor: Int64, effectiveDate: CivilDate, eventSeq: UInt64, explanation: LineExplanation) {
        self.amountMinor = amountMinor
        self.effectiveDate = effectiveDate
        self.eventSeq = eventSeq
        self.explanation = explanation
    }
}
