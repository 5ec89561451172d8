import CreditDomain
import CreditStore
import CreditWire
import Logging

/// The one writer of creditd's state, and the only place it lives.
///
/// Mutations are applied one at a time to the in-memory ledger, journaled,
/// and acknowledged only once their record is durable. While one fdatasync
/// runs, the actor is free (it is suspended in `waitDurable`), so further
/// mutations are applied and their records join the next batch: group commit
/// falls out of actor reentrancy.
///
/// Reads see only durable state: a read taken while records are in flight
/// waits for them before it answers. If a write or fsync fails, every change
/// not yet durable is rolled back from the undo log, nothing after the failure
/// is acknowledged, and the keeper refuses writes from then on (reads go on).
public actor LedgerKeeper {
    private var ledger: Ledger
    private let store: DurableStore
    public nonisolated let clock: DaemonClock
    private let logger: Logger

    /// The newest record handed to the journal.
    private var lastJournaled: UInt64
    /// How to undo each record that is not durable yet, oldest first.
    private var undoLog: [Undo] = []
    /// Set once the journal failed; writes are refused from then on.
    private var faultDescription: String?
    private var recordsSinceSnapshot = 0
    private var snapshotInProgress = false
    private var lastSnapshot: SnapshotInfo?

    struct Undo {
        let sequence: UInt64
        /// Subscriptions as they were before the record (nil: it did not exist).
        let preimages: [(id: String, subscription: Subscription?)]
        /// Idempotency keys the record added.
        let addedKeys: [KeyScope]
        /// Id counters before the record, so a rollback reissues the same ids.
        let counters: SerialCounters
    }

    struct KeyScope: Hashable {
        let callerUID: UInt32
        let operation: IdempotentOperation
        let key: String
    }

    init(ledger: Ledger, store: DurableStore, clock: DaemonClock, lastSequence: UInt64, logger: Logger) {
        self.ledger = ledger
        self.store = store
        self.clock = clock
        self.lastJournaled = lastSequence
        self.logger = logger
    }

    // MARK: writes

    /// Executes a command from a client. Returns the domain outcome (a domain
    /// error is a normal answer); throws `RPCError` UNAVAILABLE when the change
    /// could not be made durable.
    func execute(_ command: JournalEntry.WireCommand, callerUID: UInt32) async throws(RPCError) -> Executed {
        try refuseIfFaulted()
        let now = clock.now()
        let domainCommand = command.domain
        let id = domainCommand.subscriptionId
        let preimage = try? ledger.subscription(id: id)
        let counters = ledger.counters
        let result = ledger.execute(domainCommand, at: now, callerUID: callerUID, dryRun: command.dryRun)
        let subscription = try? ledger.subscription(id: id)
        var waitFor = lastJournaled
        if result.stateChanged {
            let entry = JournalEntry.command(command, at: now, callerUID: callerUID, maxSeats: ledger.maxSeats)
            let undo = { (sequence: UInt64) in
                Undo(sequence: sequence, preimages: [(id, preimage)],
                     addedKeys: Self.addedKey(domainCommand, result: result, callerUID: callerUID, dryRun: command.dryRun),
                     counters: counters)
            }
            waitFor = try journal(entry, undo: undo)
        }
        try await awaitDurable(waitFor)
        return Executed(outcome: result.outcome, subscription: subscription)
    }

    /// A command's outcome and its subscription as it stands after the command.
    struct Executed: Sendable {
        let outcome: Result<CommandResponse, DomainError>
        let subscription: Subscription?
    }

    /// Runs the time-driven transitions due now (renewals, credits reaching
    /// their dates). Returns how many ran.
    @discardableResult
    func tick() async throws(RPCError) -> Int {
        guard faultDescription == nil else { return 0 }
        let now = clock.now()
        guard let due = ledger.nextDueInstant(), due <= now else { return 0 }
        return try await advanceLedger(to: now, manualClock: false)
    }

    /// Moves the manual clock and runs what falls due. The new reading is
    /// journaled even when nothing falls due, so a restart resumes there.
    func advanceClock(to instant: Instant) async throws(RPCError) -> Int {
        try refuseIfFaulted()
        do {
            try clock.set(to: instant)
        } catch {
            switch error {
            case .notManual:
                throw RPCError.failedPrecondition("the daemon runs on the system clock; start it with --clock manual to move time")
            case .backwards(let current):
                throw RPCError.domain(.invalidArgument, reason: DomainError.Reason.invalidRequest.rawValue,
                                      "the clock cannot move backwards: it reads \(current.rfc3339)")
            }
        }
        return try await advanceLedger(to: instant, manualClock: true)
    }

    private func advanceLedger(to now: Instant, manualClock: Bool) async throws(RPCError) -> Int {
        // Preimages of every subscription a transition may touch.
        let due = ledger.subscriptions.filter { $0.nextDue.map { $0 <= now } ?? false }
        let counters = ledger.counters
        let transitions = ledger.advance(to: now)
        var waitFor = lastJournaled
        if transitions > 0 || manualClock {
            let preimages = due.map { (id: $0.id, subscription: Optional($0)) }
            waitFor = try journal(.tick(at: now, manualClock: manualClock)) { sequence in
                Undo(sequence: sequence, preimages: preimages, addedKeys: [], counters: counters)
            }
        }
        try await awaitDurable(waitFor)
        return transitions
    }

    /// Appends a record for a change already applied; on failure the change is rolled back.
    private func journal(_ entry: JournalEntry, undo: (UInt64) -> Undo) throws(RPCError) -> UInt64 {
        let bytes: [UInt8]
        do {
            bytes = try entry.encoded()
        } catch {
            // Cannot happen for well-formed messages; refuse rather than lose the change.
            enterFault("cannot encode a journal record: \(error)", firstLost: lastJournaled + 1, pending: [undo(lastJournaled + 1)])
            throw RPCError.internalError("cannot encode a journal record")
        }
        let sequence: UInt64
        do {
            sequence = try store.append(bytes)
        } catch {
            enterFault("\(error)", firstLost: lastJournaled + 1, pending: [undo(lastJournaled + 1)])
            throw Self.unavailable
        }
        undoLog.append(undo(sequence))
        lastJournaled = sequence
        recordsSinceSnapshot += 1
        return sequence
    }

    /// Waits until `sequence` is durable, then forgets the undo entries up to it.
    private func awaitDurable(_ sequence: UInt64) async throws(RPCError) {
        guard sequence > 0 else { return }
        if store.lastDurableSequence < sequence {
            do {
                try await store.waitDurable(upTo: sequence)
            } catch {
                if case .fault(let fault) = error {
                    enterFault(fault.description, firstLost: fault.firstUnacknowledgedSequence, pending: [])
                } else {
                    enterFault("\(error)", firstLost: store.lastDurableSequence + 1, pending: [])
                }
                throw Self.unavailable
            }
        }
        if let last = undoLog.lastIndex(where: { $0.sequence <= sequence }) {
            undoLog.removeSubrange(...last)
        }
    }

    static let unavailable = RPCError.unavailable(
        "persistence fault: creditd cannot make changes durable and refuses writes; reads still work (see the operator guide)")

    private func refuseIfFaulted() throws(RPCError) {
        if faultDescription != nil { throw Self.unavailable }
    }

    /// Rolls back every change from `firstLost` on and stops accepting writes.
    private func enterFault(_ description: String, firstLost: UInt64, pending: [Undo]) {
        if faultDescription == nil {
            faultDescription = description
            logger.critical("persistence fault: writes refused from now on", metadata: ["fault": "\(description)"])
        }
        let lost = undoLog.filter { $0.sequence >= firstLost } + pending
        undoLog.removeAll { $0.sequence >= firstLost }
        guard !lost.isEmpty else { return }
        // Newest first, so each subscription ends at its oldest preimage.
        var replaced: [String: Subscription?] = [:]
        var droppedKeys = Set<KeyScope>()
        for undo in lost.reversed() {
            for (id, subscription) in undo.preimages { replaced[id] = subscription }
            droppedKeys.formUnion(undo.addedKeys)
        }
        var subscriptions = ledger.subscriptions.compactMap { current -> Subscription? in
            guard let original = replaced[current.id] else { return current }
            return original
        }
        // A subscription created and then deleted cannot happen; one that only the
        // rolled-back records created has a nil preimage and is gone above.
        let present = Set(subscriptions.map(\.id))
        for case (let id, let original?) in replaced where !present.contains(id) { subscriptions.append(original) }
        let keys = ledger.idempotencyEntries.filter {
            !droppedKeys.contains(KeyScope(callerUID: $0.callerUID, operation: $0.operation, key: $0.key))
        }
        ledger = Ledger(maxSeats: ledger.maxSeats, counters: lost.min { $0.sequence < $1.sequence }?.counters ?? ledger.counters,
                        subscriptions: subscriptions, idempotencyEntries: keys)
        lastJournaled = min(lastJournaled, firstLost - 1)
        logger.error("rolled back changes that were never acknowledged", metadata: ["records": "\(lost.count)"])
    }

    private static func addedKey(_ command: Command, result: CommandResult, callerUID: UInt32, dryRun: Bool) -> [KeyScope] {
        guard !dryRun, !result.replayed, result.error?.reason != .invalidRequest else { return [] }
        switch command {
        case .cancel(let request) where !request.idempotencyKey.isEmpty:
            return [KeyScope(callerUID: callerUID, operation: .cancel, key: request.idempotencyKey)]
        case .changeSeats(let request) where !request.idempotencyKey.isEmpty:
            return [KeyScope(callerUID: callerUID, operation: .changeSeats, key: request.idempotencyKey)]
        default:
            return []
        }
    }

    // MARK: reads

    /// Runs `body` on the committed ledger as of now. Waits for records in
    /// flight, so the answer never shows a change a crash could still undo.
    func read<T: Sendable>(_ body: (Ledger, Instant) throws(DomainError) -> T) async throws(RPCError) -> Result<T, DomainError> {
        let now = clock.now()
        let result: Result<T, DomainError>
        do {
            result = .success(try body(ledger, now))
        } catch {
            result = .failure(error)
        }
        try await awaitDurable(lastJournaled)
        return result
    }

    /// A round trip through the actor, for the watchdog.
    public func ping() -> Bool { true }

    // MARK: snapshots and stats

    /// Writes a snapshot of the durable state. The ledger is captured as a
    /// value (copy-on-write) and encoded on the store's snapshot thread, so
    /// serving goes on meanwhile.
    func takeSnapshot() async throws -> SnapshotInfo {
        guard !snapshotInProgress else { throw RPCError(code: .aborted, message: "a snapshot is already being written") }
        try refuseIfFaulted()
        snapshotInProgress = true
        defer { snapshotInProgress = false }
        let captured = ledger
        let sequence = lastJournaled
        let clockReading = clock.now()
        try await awaitDurable(sequence)
        let recordsCovered = recordsSinceSnapshot
        let info = try await store.writeSnapshot(sequence: sequence) {
            try SnapshotCodec.encode(captured, clock: clockReading)
        }
        recordsSinceSnapshot -= min(recordsCovered, recordsSinceSnapshot)
        lastSnapshot = info
        return info
    }

    /// Records journaled since the last snapshot (drives size-based snapshots).
    var journalRecordsSinceSnapshot: Int { recordsSinceSnapshot }

    var persistenceFault: String? { faultDescription ?? store.fault?.description }

    func ledgerSummary(asOf now: Instant? = nil) -> LedgerSummary {
        LedgerSummary(ledger, asOf: now ?? clock.now())
    }

    var nextDueInstant: Instant? { ledger.nextDueInstant() }

    /// The seat limit for commands from now on (a configuration reload). Journaled
    /// commands carry the limit they ran under, so replay is unaffected.
    func setMaxSeats(_ maxSeats: Int64) { ledger.maxSeats = maxSeats }

    /// Subscriptions in the ledger (cheap, unlike `ledgerSummary`).
    var subscriptionCount: Int { ledger.subscriptionCount }
}

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

    init(_ ledger: Ledger, asOf now: Instant) {
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
