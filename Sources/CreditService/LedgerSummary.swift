import CreditDomain

/// Counts over the whole ledger for stats, health and metrics.
public struct LedgerSummary: Sendable {
    public var subscriptions = 0
    public var subscriptionsByStatus: [SubscriptionStatus: Int] = [:]
    public var creditsByState: [CreditState: Int] = [:]
    public var amountByStateAndCurrency: [StateAndCurrency: Int64] = [:]

    public struct StateAndCurrency: Hashable, Sendable {
        public let state: CreditState
        public let currency: Currency
    }
    public var creditsOverdue = 0
    public var refundsOverdue = 0

    public init(_ ledger: Ledger, asOf now: Instant) {
        for subscription in ledger.subscriptions {
            subscriptions += 1
            subscriptionsByStatus[subscription.status, default: 0] += 1
            guard !subscription.credits.isEmpty else { continue }
            let date = subscription.timeZone.civilDate(of: now)
            for credit in subscription.credits {
                creditsByState[credit.state, default: 0] += 1
                let amount: Int64 = switch credit.state {
                case .consumed: credit.consumedMinor
                case .refunded: credit.refundedMinor
                default: credit.remainingMinor
                }
                amountByStateAndCurrency[StateAndCurrency(state: credit.state, currency: subscription.currency), default: 0] &+= amount
                let status = CreditStatus(credit: credit, asOf: date)
                if status.overdue { creditsOverdue += 1 }
                if status.refundOverdue { refundsOverdue += 1 }
            }
        }
    }
}
