// Raw values mirror the wire enums of proto/creditd/v1/credits.proto (0 is UNSPECIFIED there).

public enum SubscriptionStatus: Int32, Sendable, Hashable, CaseIterable {
    case active = 1
    /// An `end_of_period` cancel is pending (C1).
    case cancelPending = 2
    /// An immediate cancel took effect (final).
    case cancelled = 3
    /// An `end_of_period` cancel took effect at `periodEnd` (final, C6).
    case ended = 4

    /// `cancelled` or `ended` (O3).
    public var isEffectivelyCancelled: Bool { self == .cancelled || self == .ended }
}

/// §6. Only eligibility and amount differ between policies (W4).
public enum RefundPolicy: Int32, Sendable, Hashable, CaseIterable {
    case anytime = 1
    case window7d = 2
    case window72h = 3

    /// The refund window length in nanoseconds (W2), nil for `anytime`.
    public var windowNanoseconds: Int64? {
        switch self {
        case .anytime: return nil
        case .window7d: return 168 * Instant.nanosecondsPerHour
        case .window72h: return 72 * Instant.nanosecondsPerHour
        }
    }
}

public enum CancelMode: Int32, Sendable, Hashable, CaseIterable {
    case immediate = 1
    case endOfPeriod = 2
}

public enum SeatChangeTiming: Int32, Sendable, Hashable, CaseIterable {
    case now = 1
    case atRenewal = 2
}

public enum SeatChangeOutcome: Int32, Sendable, Hashable, CaseIterable {
    case credit = 1
    case charge = 2
    case zeroLine = 3
    case noChange = 4
    case scheduled = 5
}

public enum CreditState: Int32, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case pending = 1
    case applied = 2
    case consumed = 3
    case refundPending = 4
    case refunded = 5
    /// Only ever seen in a history (L1).
    case refundFailed = 6
    /// Reserved; no operation leads here (O4).
    case voided = 7

    /// The snake_case name of docs/billing-rules.md (`refund_pending`).
    public var name: String {
        switch self {
        case .pending: return "pending"
        case .applied: return "applied"
        case .consumed: return "consumed"
        case .refundPending: return "refund_pending"
        case .refunded: return "refunded"
        case .refundFailed: return "refund_failed"
        case .voided: return "voided"
        }
    }

    public var description: String { name }
}

public enum CreditSource: Int32, Sendable, Hashable, CaseIterable {
    case cancel = 1
    case seatChange = 2
}

public enum RefundOutcome: Int32, Sendable, Hashable, CaseIterable {
    case succeeded = 1
    case failed = 2
}

public enum InvoiceKind: Int32, Sendable, Hashable, CaseIterable {
    case purchase = 1
    case renewal = 2
    case final = 3
    case closing = 4
    /// O5: the one invoice of an import, settled at issue.
    case opening = 5
}

public enum InvoiceLineKind: Int32, Sendable, Hashable, CaseIterable {
    /// Unit price × seats for a period.
    case periodCharge = 1
    /// An unbilled seat increase (P3).
    case proratedCharge = 2
    /// A seat decrease credit.
    case seatChangeCredit = 3
    /// The cancellation credit.
    case cancelCredit = 4
    /// An applied credit offsetting charges.
    case appliedCredit = 5
}

/// A wire enum field as received: UNSPECIFIED (0), a known value, or a number this version
/// does not know. The domain maps UNSPECIFIED to the billing rules' default where one exists and
/// refuses unknown numbers with `invalid_request`.
public enum EnumField<Value: RawRepresentable & Sendable & Hashable>: Sendable, Hashable
where Value.RawValue == Int32 {
    case unspecified
    case known(Value)
    case unrecognized(Int32)

    // Inlinable, so that callers in other modules specialize it: unspecialized, each call
    // looked up the generic type's metadata (a lock and a hash lookup in the runtime).
    @inlinable
    public init(wireValue: Int32) {
        if wireValue == 0 {
            self = .unspecified
        } else if let value = Value(rawValue: wireValue) {
            self = .known(value)
        } else {
            self = .unrecognized(wireValue)
        }
    }

    @inlinable
    public var wireValue: Int32 {
        switch self {
        case .unspecified: return 0
        case .known(let value): return value.rawValue
        case .unrecognized(let raw): return raw
        }
    }

    /// The value, with UNSPECIFIED meaning `defaultValue`; nil for an unknown number.
    func resolved(default defaultValue: Value?) -> Value? {
        switch self {
        case .unspecified: return defaultValue
        case .known(let value): return value
        case .unrecognized: return nil
        }
    }
}
