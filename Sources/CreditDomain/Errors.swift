/// A stable domain error (§10): a reason code and a human text. The domain knows no transport:
/// the status code of each reason is chosen at the service edge (CreditService,
/// `DomainError: RPCErrorConvertible`). On the wire the status message is
/// `"<reason>: <message>"` (X1).
public struct DomainError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Reason: String, Sendable, Hashable, CaseIterable {
        case invalidRequest = "invalid_request"
        case subscriptionNotFound = "subscription_not_found"
        case subscriptionExists = "subscription_exists"
        case creditNotFound = "credit_not_found"
        case subscriptionCancelled = "subscription_cancelled"
        case seatsMustBePositive = "seats_must_be_positive"
        case outsideCancellationWindow = "outside_cancellation_window"
        case amountOverflow = "amount_overflow"
        case idempotencyKeyReused = "idempotency_key_reused"
        /// E5: `afterSeq` is below `oldestSeq − 1`; `DomainError.oldestSeq` carries the oldest kept seq.
        case eventsPruned = "events_pruned"


        /// X2 precedence: lower ranks win (the key check of I4 comes before all of them).
        var precedence: Int {
            switch self {
            case .idempotencyKeyReused: return 0
            case .invalidRequest: return 1
            case .subscriptionNotFound, .subscriptionExists: return 2
            case .creditNotFound: return 3
            case .subscriptionCancelled: return 4
            case .seatsMustBePositive: return 5
            case .outsideCancellationWindow: return 6
            case .amountOverflow: return 7
            case .eventsPruned: return 8
            }
        }
    }

    public var reason: Reason
    public var message: String
    /// `events_pruned` only: the oldest kept seq (E5), for the error's metadata.
    public var oldestSeq: UInt64?

    public init(_ reason: Reason, _ message: String) {
        self.reason = reason
        self.message = message
    }

    /// The stable reason code, e.g. `seats_must_be_positive`.
    public var code: String { reason.rawValue }
    /// The status message sent on the wire (X1).
    public var wireMessage: String { "\(reason.rawValue): \(message)" }
    public var description: String { wireMessage }

    static func invalid(_ message: String) -> DomainError { DomainError(.invalidRequest, message) }
    static let amountOverflow = DomainError(.amountOverflow, "an amount would leave the 64-bit range")
    static let subscriptionCancelled = DomainError(.subscriptionCancelled, "the subscription is cancelled")
    static let outsideWindow = DomainError(.outsideCancellationWindow, "the refund window of the seats has closed")
    static let seatsMustBePositive = DomainError(.seatsMustBePositive, "use Cancel to remove all seats")
    static let subscriptionNotFound = DomainError(.subscriptionNotFound, "no subscription with this id")
    static let subscriptionExists = DomainError(.subscriptionExists, "a subscription with this id already exists")
    static let creditNotFound = DomainError(.creditNotFound, "the subscription has no credit with this id")
    static func eventsPruned(oldestSeq: UInt64) -> DomainError {
        var error = DomainError(.eventsPruned, "events up to seq \(oldestSeq - 1) were pruned; re-read the book and go on from last_seq")
        error.oldestSeq = oldestSeq
        return error
    }
    static let keyReused = DomainError(.idempotencyKeyReused, "the idempotency key was used with a different request")
}
