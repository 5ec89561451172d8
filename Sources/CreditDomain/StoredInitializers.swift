// Value initializers with every stored field, for snapshot decoding (LedgerEncoding). The types'
// own initializers derive fields (and would trap on out-of-range input).

extension LineExplanation {
    package init(chargedMinor: Int64, cumulativeNumerator: Int128, blocks: [SeatBlockPortion], storedChargedSeats: Int32,
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
    package init(interval: BillingInterval, storedAnchorMonth: Int8, storedAnchorDay: Int8) {
        self.interval = interval
        self.anchorMonth = storedAnchorMonth
        self.anchorDay = storedAnchorDay
    }
}

extension CreditStatus {
    package init(credit: Credit, overdue: Bool, refundOverdue: Bool) {
        self.credit = credit
        self.overdue = overdue
        self.refundOverdue = refundOverdue
    }
}
