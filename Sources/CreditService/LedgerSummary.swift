import CreditDomain

/// Counts over the whole book for stats, health and metrics, from the counts the ledger keeps
/// up to date with every change (Ledger.bookStats) and the due-ordered overdue walk: no scan
/// of the subscriptions, so GetStats and a metrics scrape stay cheap at a million subscriptions.
public struct LedgerSummary: Sendable {
    public var subscriptions = 0
    public var subscriptionsByStatus: [SubscriptionStatus: Int] = [:]
    public var creditsByState: [CreditState: Int] = [:]
    /// Per state and currency: the remaining amount of pending, applied and refund-pending
    /// credits, and the consumed and refunded totals.
    public var amountByStateAndCurrency: [StateAndCurrency: Int64] = [:]

    public struct StateAndCurrency: Hashable, Sendable {
        public let state: CreditState
        public let currency: Currency
    }
    public var creditsOverdue = 0
    public var refundsOverdue = 0
    /// Per currency, the remaining amount of credits whose refund is overdue (L6).
    public var refundOverdueAmountByCurrency: [Currency: Int64] = [:]
    /// The newest event's seq (E1), 0 before the first.
    public var lastEventSeq: UInt64 = 0

    public init(_ ledger: Ledger, asOf now: Instant) {
        let stats = ledger.bookStats
        subscriptions = ledger.subscriptionCount
        subscriptionsByStatus = stats.subscriptionsByStatus
        creditsByState = stats.creditsByState
        for (currency, totals) in stats.totalsByCurrency {
            let amounts: [(CreditState, Int64)] = [
                (.pending, totals.pendingMinor), (.applied, totals.appliedMinor), (.refundPending, totals.refundPendingMinor),
                (.consumed, totals.consumedMinor), (.refunded, totals.refundedMinor),
            ]
            for (state, amount) in amounts {
                amountByStateAndCurrency[StateAndCurrency(state: state, currency: currency)] = amount
            }
        }
        let overdue = ledger.overdueTotals(asOf: now)
        creditsOverdue = overdue.overdue.values.reduce(0) { $0 + $1.count }
        refundsOverdue = overdue.refundOverdue.values.reduce(0) { $0 + $1.count }
        for (currency, amount) in overdue.refundOverdue {
            refundOverdueAmountByCurrency[currency] = amount.remainingMinor
        }
        lastEventSeq = ledger.lastEventSeq
    }
}
