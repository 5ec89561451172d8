/// CreateSubscription (O2). Fields mirror `CreateSubscriptionRequest` of the wire contract.
public struct CreateSubscriptionRequest: Sendable, Hashable {
    public var subscriptionId: String
    public var customer: String
    public var plan: String
    public var seats: Int64
    public var unitPriceMinor: Int64
    /// Upper-case ISO 4217 code from the table of M1.
    public var currency: String
    /// UNSPECIFIED → `invalid_request`.
    public var interval: EnumField<BillingInterval>
    /// IANA id (T1).
    public var timeZone: String
    /// UNSPECIFIED → `anytime`.
    public var refundPolicy: EnumField<RefundPolicy>
    /// `YYYY-MM-DD`, empty for none; must equal the start date when sent.
    public var startDate: String

    public init(subscriptionId: String, customer: String = "", plan: String = "", seats: Int64, unitPriceMinor: Int64,
                currency: String, interval: EnumField<BillingInterval>, timeZone: String,
                refundPolicy: EnumField<RefundPolicy> = .unspecified, startDate: String = "") {
        self.subscriptionId = subscriptionId
        self.customer = customer
        self.plan = plan
        self.seats = seats
        self.unitPriceMinor = unitPriceMinor
        self.currency = currency
        self.interval = interval
        self.timeZone = timeZone
        self.refundPolicy = refundPolicy
        self.startDate = startDate
    }
}

/// Cancel (C1–C8).
public struct CancelRequest: Sendable, Hashable {
    public var subscriptionId: String
    /// UNSPECIFIED → `immediate`.
    public var mode: EnumField<CancelMode>
    /// Empty means no key (I1).
    public var idempotencyKey: String

    public init(subscriptionId: String, mode: EnumField<CancelMode> = .unspecified, idempotencyKey: String = "") {
        self.subscriptionId = subscriptionId
        self.mode = mode
        self.idempotencyKey = idempotencyKey
    }
}

/// ResumeSubscription (C7).
public struct ResumeRequest: Sendable, Hashable {
    public var subscriptionId: String

    public init(subscriptionId: String) {
        self.subscriptionId = subscriptionId
    }
}

/// ChangeSeats (S1–S8).
public struct ChangeSeatsRequest: Sendable, Hashable {
    public var subscriptionId: String
    public var newSeats: Int64
    /// UNSPECIFIED → `now`.
    public var timing: EnumField<SeatChangeTiming>
    /// Empty means no key (I1).
    public var idempotencyKey: String

    public init(subscriptionId: String, newSeats: Int64, timing: EnumField<SeatChangeTiming> = .unspecified,
                idempotencyKey: String = "") {
        self.subscriptionId = subscriptionId
        self.newSeats = newSeats
        self.timing = timing
        self.idempotencyKey = idempotencyKey
    }
}

/// RecordRefundOutcome (L9).
public struct RecordRefundOutcomeRequest: Sendable, Hashable {
    public var subscriptionId: String
    public var creditId: String
    /// UNSPECIFIED → `invalid_request`.
    public var outcome: EnumField<RefundOutcome>

    public init(subscriptionId: String, creditId: String, outcome: EnumField<RefundOutcome>) {
        self.subscriptionId = subscriptionId
        self.creditId = creditId
        self.outcome = outcome
    }
}

/// Every writing operation. The daemon journals these and replays them after a crash.
public enum Command: Sendable, Hashable {
    case create(CreateSubscriptionRequest)
    case cancel(CancelRequest)
    case resume(ResumeRequest)
    case changeSeats(ChangeSeatsRequest)
    case recordRefundOutcome(RecordRefundOutcomeRequest)
    /// O5.
    case importSubscription(ImportSubscriptionRequest)

    /// The subscription the command touches.
    public var subscriptionId: String {
        switch self {
        case .create(let request): return request.subscriptionId
        case .cancel(let request): return request.subscriptionId
        case .resume(let request): return request.subscriptionId
        case .changeSeats(let request): return request.subscriptionId
        case .recordRefundOutcome(let request): return request.subscriptionId
        case .importSubscription(let request): return request.subscriptionId
        }
    }
}

// MARK: results

/// CreateSubscription's result.
public struct CreatedSubscription: Sendable, Hashable {
    public let subscription: Subscription
    public let purchaseInvoice: Invoice

    /// Every stored field as it is (also snapshot decoding, in LedgerEncoding).
    package init(subscription: Subscription, purchaseInvoice: Invoice) {
        self.subscription = subscription
        self.purchaseInvoice = purchaseInvoice
    }
}

/// The ChangeSeats result (S8).
public struct SeatChangeResult: Sendable, Hashable {
    public let outcome: SeatChangeOutcome
    public let previousSeats: Int64
    public let newSeats: Int64
    /// The count in force after the request.
    public let seats: Int64
    /// `e`, or `periodEnd` for `at_renewal`.
    public let effectiveDate: CivilDate
    /// For `credit`, `charge` and `zero_line`.
    public let line: LedgerLine?
    /// For `credit`.
    public let credit: Credit?

    /// Every stored field as it is (also snapshot decoding, in LedgerEncoding).
    package init(outcome: SeatChangeOutcome, previousSeats: Int64, newSeats: Int64, seats: Int64, effectiveDate: CivilDate, line: LedgerLine?, credit: Credit?) {
        self.outcome = outcome
        self.previousSeats = previousSeats
        self.newSeats = newSeats
        self.seats = seats
        self.effectiveDate = effectiveDate
        self.line = line
        self.credit = credit
    }
}

/// A credit with the L6 flags computed against an as-of date.
public struct CreditStatus: Sendable, Hashable {
    public let credit: Credit
    public let overdue: Bool
    public let refundOverdue: Bool

    public init(credit: Credit, asOf date: CivilDate) {
        self.credit = credit
        self.overdue = credit.isOverdue(asOf: date)
        self.refundOverdue = credit.isRefundOverdue(asOf: date)
    }
}

/// The RecordRefundOutcome result (L9).
public struct RefundOutcomeResult: Sendable, Hashable {
    /// The credit was not `refund_pending`; nothing changed.
    public let ignored: Bool
    public let credit: CreditStatus

    public var state: CreditState { credit.credit.state }
    public var remainingMinor: Int64 { credit.credit.remainingMinor }
    public var refundedMinor: Int64 { credit.credit.refundedMinor }

    /// Every stored field as it is (also snapshot decoding, in LedgerEncoding).
    package init(ignored: Bool, credit: CreditStatus) {
        self.ignored = ignored
        self.credit = credit
    }
}

/// L8 totals; the five add up to the sum of `amountMinor`.
public struct CreditTotals: Sendable, Hashable {
    public var pendingMinor: Int64 = 0
    public var appliedMinor: Int64 = 0
    public var consumedMinor: Int64 = 0
    public var refundPendingMinor: Int64 = 0
    public var refundedMinor: Int64 = 0

    public init() {}

    /// Totals over `credits`.
    public init<S: Sequence>(_ credits: S) where S.Element == Credit {
        for credit in credits {
            switch credit.state {
            case .pending: pendingMinor &+= credit.remainingMinor
            case .applied: appliedMinor &+= credit.remainingMinor
            case .refundPending: refundPendingMinor &+= credit.remainingMinor
            default: break
            }
            consumedMinor &+= credit.consumedMinor
            refundedMinor &+= credit.refundedMinor
        }
    }
}

/// The GetRefundStatus result (L10).
public struct RefundStatus: Sendable, Hashable {
    public let subscriptionId: String
    public let asOf: Instant
    public let asOfDate: CivilDate
    public let currency: Currency
    /// In creation order, or only the named one.
    public let credits: [CreditStatus]
    /// Always over all the subscription's credits.
    public let totals: CreditTotals
}

/// One page of ListSubscriptions.
public struct SubscriptionPage: Sendable, Hashable {
    public let subscriptions: [Subscription]
    /// Empty on the last page.
    public let nextPageToken: String
}

/// A command's response value.
public enum CommandResponse: Sendable, Hashable {
    case created(CreatedSubscription)
    case cancelled(CancellationRecord)
    case resumed(Subscription)
    case seatsChanged(SeatChangeResult)
    case refundOutcomeRecorded(RefundOutcomeResult)
    case imported(ImportedSubscription)
}

/// What `Ledger.execute` returns.
public struct CommandResult: Sendable, Equatable {
    /// The response, or the error to send (X1).
    public let outcome: Result<CommandResponse, DomainError>
    /// Whether the ledger changed (the command, a recorded idempotency key, or time-driven
    /// transitions); the caller journals the command exactly when this is true.
    public let stateChanged: Bool
    /// Time-driven transitions that ran before the request was handled (T6).
    public let transitions: Int
    /// The outcome was replayed from the idempotency table (I3).
    public let replayed: Bool

    public var response: CommandResponse? { try? outcome.get() }
    public var error: DomainError? {
        if case .failure(let error) = outcome { return error }
        return nil
    }
}
