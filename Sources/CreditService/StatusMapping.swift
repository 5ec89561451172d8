import CreditDomain
import CreditStore
import CreditWire

// The one place where domain and writer errors become wire statuses (docs/billing-rules.md §10,
// docs/wire-protocol.md §3): a status code plus a stable reason in the message and in an
// ErrorReason detail.

extension DomainError.Reason {
    /// The status code of each reason (§10).
    var statusCode: StatusCode {
        switch self {
        case .invalidRequest, .seatsMustBePositive: .invalidArgument
        case .subscriptionNotFound, .creditNotFound: .notFound
        case .subscriptionExists, .idempotencyKeyReused: .alreadyExists
        case .subscriptionCancelled, .outsideCancellationWindow: .failedPrecondition
        case .amountOverflow, .eventsPruned: .outOfRange
        }
    }
}

extension DomainError: RPCErrorConvertible {
    /// The status, with the oldest kept seq in the metadata of `events_pruned` (E5).
    public var rpcError: RPCError {
        var metadata: [String: String] = [:]
        if let oldestSeq { metadata["oldest_seq"] = String(oldestSeq) }
        return RPCError.domain(reason.statusCode, reason: code, message, metadata: metadata)
    }
}

extension WriteFailure: RPCErrorConvertible {
    public var rpcError: RPCError {
        switch self {
        case .persistenceFault(_, .notApplied):
            RPCError.domain(.unavailable, reason: "persistence_not_applied",
                            "persistence fault: this change was not applied and will not appear after a restart; "
                                + "creditd refuses writes until restarted, reads still work (README: Durability and recovery)")
        case .persistenceFault(_, .unknown):
            RPCError.domain(.unavailable, reason: "persistence_outcome_unknown",
                            "persistence fault: the disk failed while making this change durable; it may or may not "
                                + "appear after a restart (read it back then); creditd refuses writes until restarted "
                                + "(README: Durability and recovery)")
        case .snapshotAfterFault:
            // Not "this change was not applied": a snapshot is no change. Written from a state
            // that may hold refused writes, it would bring them back; the journal has every
            // acknowledged one.
            RPCError.domain(.unavailable, reason: "persistence_fault",
                            "persistence fault: no snapshot is taken until creditd is restarted (the journal holds "
                                + "every acknowledged change; README: Durability and recovery)")
        case .deadlineExceeded:
            RPCError.deadlineExceeded("deadline exceeded before the write was applied")
        case .closed:
            RPCError.unavailable("server is shutting down")
        case .unencodable(let text):
            RPCError.internalError("cannot encode a journal record: \(text)")
        case .notManualClock:
            RPCError.failedPrecondition("the daemon runs on the system clock; start it with --clock manual to move time")
        case .clockBackwards(let current):
            RPCError.domain(.invalidArgument, reason: DomainError.Reason.invalidRequest.rawValue,
                            "the clock cannot move backwards: it reads \(current.rfc3339)")
        case .snapshotInProgress:
            RPCError(code: .aborted, message: "a snapshot is already being written")
        case .notActive(let holder):
            // The host to send writes to goes in the metadata ("active"), empty during a takeover.
            RPCError.domain(.unavailable, reason: "not_active",
                            holder.isEmpty
                                ? "this host is a standby and knows of no host that holds the writer lease now (a takeover, or the database out of reach); retry shortly"
                                : "this host is a standby; writes go to the active host \(holder)",
                            metadata: ["active": holder])
        case .storeUnavailable(let text, .notApplied):
            RPCError.domain(.unavailable, reason: "persistence_not_applied",
                            "the database is unavailable: this change was not applied; creditd resumes by itself "
                                + "once it is back (\(text))")
        case .storeUnavailable(let text, .unknown):
            RPCError.domain(.unavailable, reason: "persistence_outcome_unknown",
                            "the database failed while committing this change; it may or may not have been applied "
                                + "(read it back once creditd resumes, which it does by itself) (\(text))")
        }
    }
}
