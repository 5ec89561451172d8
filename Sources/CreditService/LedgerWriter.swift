import CreditDomain
import CreditServer
import CreditStore
import Foundation
import Logging
import Synchronization

/// The committed state as readers see it: the ledger after the last durable batch, and the
/// journal sequence number it includes. Immutable; replaced whole after every batch.
public final class CommittedState: Sendable {
    /// A `Ledger.readerCopy()`: reads only.
    public let ledger: Ledger
    /// The last journal record this state includes (0: none yet).
    public let sequence: UInt64

    init(ledger: Ledger, sequence: UInt64) {
        self.ledger = ledger
        self.sequence = sequence
    }
}

/// Why a write was not done. Mapped to a wire status at the service edge.
public enum WriteFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The journal failed: writes are refused until restart; reads go on. `outcome` says
    /// whether this write is certainly not applied (it will not come back after a restart) or
    /// its fate is unknown (the fdatasync of its batch failed: it may or may not be on disk).
    case persistenceFault(String, outcome: WriteOutcome)
    /// The deadline passed while the command waited for the writer; nothing was applied.
    case deadlineExceeded
    /// The writer is closed (shutting down).
    case closed
    /// The command cannot be journaled (cannot happen for a request that decoded).
    case unencodable(String)
    /// AdvanceClock on the system clock.
    case notManualClock
    /// AdvanceClock to an instant before the clock's reading.
    case clockBackwards(current: Instant)
    /// A snapshot is being written already.
    case snapshotInProgress
    /// A snapshot asked for after a persistence fault: none is taken until a restart (the
    /// journal holds every acknowledged change; the state in memory may hold refused ones).
    case snapshotAfterFault(String)
    /// This process is a standby of a shared store: writes go to `activeHolder` ("" while no
    /// host holds the lease, e.g. during a takeover). Nothing was applied.
    case notActive(activeHolder: String)
    /// The shared store's database failed while making this write's batch durable; the writer
    /// replays what was committed and resumes by itself. `outcome` as for a persistence fault.
    case storeUnavailable(String, outcome: WriteOutcome)

    /// A refusal of the request as such (this host is a standby, a snapshot is already being
    /// written), not a failure of creditd.
    public var isRefusalOfTheRequest: Bool {
        switch self {
        case .notActive, .snapshotInProgress: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .persistenceFault(let text, let outcome): "persistence fault (\(outcome)): \(text)"
        case .deadlineExceeded: "deadline exceeded before the write was applied"
        case .closed: "the writer is closed"
        case .unencodable(let text): "cannot encode a journal record: \(text)"
        case .notManualClock: "the daemon runs on the system clock"
        case .clockBackwards(let current): "the clock cannot move backwards: it reads \(current.rfc3339)"
        case .snapshotInProgress: "a snapshot is already being written"
        case .snapshotAfterFault(let text): "no snapshot after a persistence fault: \(text)"
        case .notActive(let holder): "this host is a standby" + (holder.isEmpty ? "; it knows of no host that holds the writer lease now" : "; writes go to \(holder)")
        case .storeUnavailable(let text, let outcome): "the store is unavailable (\(outcome)): \(text)"
        }
    }
}

/// A command's outcome and its subscription as it stands after the command.
public struct Executed: Sendable {
    public let outcome: Result<CommandResponse, DomainError>
    public let subscription: Subscription?
}

/// A ledger captured at a durable point, for a snapshot.
public struct SnapshotCapture: Sendable {
    public let ledger: Ledger
    public let sequence: UInt64
    public let clock: Instant
}

/// The one writer of creditd's state: a dedicated thread that applies commands to its working
/// ledger and makes them durable, in batches.
///
/// A write crosses two threads: the connection's event loop hands the command over (`submit`),
/// and the completion hops back to that event loop. In between, this thread takes every command
/// waiting, applies each to the working ledger, encodes the journal records (the request as
/// received), and makes the whole batch durable with one write and one fdatasync
/// (`DurableStore.appendDurably`): group commit without further hand-offs. Commands arriving
/// during the fdatasync form the next batch.
///
/// After each durable batch the writer publishes the working ledger as a `CommittedState`
/// (a copy-on-write value without the writer's own bookkeeping). Reads run on the event loops
/// against the latest one: they never wait for the writer or an fsync, and never see a change
/// that is not durable.
///
/// Time-driven transitions (renewals, credits reaching their dates) are commands too: on the
/// system clock the thread sleeps until the next due instant and runs them as a `tick` record.
///
/// If the journal fails, nothing of the batch is acknowledged, the working ledger is abandoned
/// (readers keep the last committed state) and every later write is refused until restart.
///
/// On a store shared by several hosts (`ReplicatedJournalStore`) the writer is either active
/// (appends) or standby (applies the records the store's standby loop hands over, refuses
/// writes with `notActive`). A refused append there (`AppendRefusal`: the lease is lost, or the
/// database failed) is not sticky: the writer drops the batch, rolls the working ledger back to
/// its last durable point and becomes standby; the store replays what was committed and promotes
/// it again once it holds the lease.
public final class LedgerWriter: @unchecked Sendable {
    // Lock discipline: `condition` guards `inbox`, `closing`, `threadExited`, `exitWaiters`,
    // `standbyBacklog` and `backlogWaiters`.
    // Everything under "writer thread only" is touched by the writer thread alone (and by
    // `init` before it starts).
    private let condition = NSCondition()
    private var inbox: [Job] = []
    private var closing = false
    private var threadExited = false
    private var exitWaiters: [CheckedContinuation<Void, Never>] = []
    /// Replicated records in the inbox, and the standby loop's `replicate` calls waiting for
    /// them to drain below `standbyBacklogLimit`.
    private var standbyBacklog = 0
    private var backlogWaiters: [CheckedContinuation<Void, Never>] = []
    /// A standby far behind fetches pages faster than it replays them; without a bound, the
    /// records waiting in the inbox grew with the distance (a standby a million records behind
    /// held them all at once).
    static let standbyBacklogLimit = 8_192

    // Writer thread only.
    private var working: Ledger
    private var lastSequence: UInt64
    private var fault: String?
    private var recordsSinceSnapshot = 0
    private var lastSnapshotAt = ContinuousClock.now
    private var snapshotRunning = false
    /// `snapshotRunning` is for a capture yielded to `periodicSnapshots` that its consumer has
    /// not finished: one it may never take (see `stopPeriodicSnapshots`).
    private var periodicCaptureOutstanding = false
    private var periodicSnapshotsStopped = false
    private var role: Role
    /// Where a replicated store's writer goes back to when an append is refused: the working
    /// ledger at an earlier durable point, plus the records made durable since, which are
    /// replayed onto it (as recovery replays the journal). Taking the point only every
    /// `rollbackRefreshRecords` records, not before every batch, matters: a copy of the ledger
    /// shares its storage, so the batch after it copied the writer's whole due-transition queue
    /// and key table on their first change (a third of the writer's CPU at 16 in flight).
    private var rollbackPoint: Ledger?
    private var rollbackRecords: [[UInt8]] = []
    /// The most client writes a recent batch held, and how long the last append took (`gatherMore`).
    private var lastBatchWrites = 0
    private var lastAppendDuration: Duration = .zero
    /// While the writer gathers, the number of waiting jobs that ends the wait (under `condition`).
    private var gatherTarget = 0
    /// The committed state the last publish replaced (`publish(through:)`).
    private var retiredState: CommittedState?
    static let rollbackRefreshRecords = 8_192

    private let committedBox: Mutex<CommittedState>
    /// Signalled after each durable batch (long polls and event streams wait on it).
    public let commits: CommitSignal
    private let faultBox = Mutex<String?>(nil)
    private let store: any JournalStore
    private let replicated: Bool
    public let clock: DaemonClock
    private let logger: Logger
    private var snapshotPolicy: SnapshotPolicy  // writer thread only
    private let snapshotSink: AsyncStream<SnapshotCapture>.Continuation
    /// Captures the writer takes on its own (size or age of the journal since the last snapshot).
    public let periodicSnapshots: AsyncStream<SnapshotCapture>

    /// When the writer captures the state for a snapshot on its own.
    public struct SnapshotPolicy: Sendable {
        public var everyRecords: Int
        public var interval: Duration

        public init(everyRecords: Int, interval: Duration) {
            self.everyRecords = everyRecords
            self.interval = interval
        }
    }

    /// Whether this process may append (writer thread only).
    enum Role: Equatable {
        case active
        case standby(activeHolder: String)
    }

    enum Job {
        case command(WriteCommand)
        /// Committed records from the active host (standby replay).
        case replicate([JournalRecord])
        /// A snapshot to start replay over from (the journal was pruned past this standby).
        case restore(RecoveredSnapshot)
        case promote(epoch: UInt64)
        case demote(activeHolder: String)
        case advanceClock(Instant, @Sendable (Result<Int, WriteFailure>) -> Void)
        case capture(@Sendable (Result<SnapshotCapture, WriteFailure>) -> Void)
        case snapshotFinished
        case stopPeriodicSnapshots
        case setMaxSeats(Int64)
        case setSnapshotPolicy(SnapshotPolicy)
        case setEventRetention(EventRetention)
        case ping(@Sendable () -> Void)
    }

    /// A client's write: the request as received, who sent it, and where the answer goes.
    public struct WriteCommand: Sendable {
        public var command: JournalEntry.WireCommand
        /// The request message's bytes as received; journaled as they are.
        public var requestBytes: [UInt8]?
        public var callerUID: UInt32
        public var deadline: ContinuousClock.Instant?
        /// Called once on the writer thread (hop to the caller's event loop in it).
        public var completion: @Sendable (Result<Executed, WriteFailure>) -> Void

        public init(command: JournalEntry.WireCommand, requestBytes: [UInt8]? = nil, callerUID: UInt32,
                    deadline: ContinuousClock.Instant? = nil,
                    completion: @escaping @Sendable (Result<Executed, WriteFailure>) -> Void) {
            self.command = command
            self.requestBytes = requestBytes
            self.callerUID = callerUID
            self.deadline = deadline
            self.completion = completion
        }
    }

    /// `startsActive` false: a standby until the store promotes it (a replicated store).
    init(ledger: Ledger, store: any JournalStore, clock: DaemonClock, lastSequence: UInt64,
         snapshotPolicy: SnapshotPolicy, logger: Logger, startsActive: Bool = true) {
        working = ledger
        role = startsActive ? .active : .standby(activeHolder: "")
        activeBox = Mutex(startsActive)
        replicated = store is any ReplicatedJournalStore
        self.lastSequence = lastSequence
        self.store = store
        self.clock = clock
        self.logger = logger
        self.snapshotPolicy = snapshotPolicy
        committedBox = Mutex(CommittedState(ledger: ledger.readerCopy(), sequence: lastSequence))
        commits = CommitSignal(sequence: lastSequence)
        (periodicSnapshots, snapshotSink) = AsyncStream.makeStream(bufferingPolicy: .bufferingNewest(1))
    }

    /// Starts the writer thread.
    func start() {
        let thread = Thread { [self] in
            nameCurrentThread("creditd-writer")
            run()
        }
        thread.start()
    }

    // MARK: the public face

    /// The latest committed state. Never waits for the writer.
    public var committed: CommittedState { committedBox.withLock { $0 } }

    /// The journal fault that stopped writes, if any.
    public var persistenceFault: String? { faultBox.withLock { $0 } }

    /// Hands a client's write to the writer. Its completion runs on the writer thread.
    public func submit(_ command: WriteCommand) {
        enqueue(.command(command)) { command.completion(.failure(.closed)) }
    }

    /// Moves the manual clock and runs what falls due; the new reading is journaled even when
    /// nothing falls due, so a restart resumes there. Returns the transitions that ran.
    public func advanceClock(to instant: Instant) async throws(WriteFailure) -> Int {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Int, WriteFailure>, Never>) in
            enqueue(.advanceClock(instant, { continuation.resume(returning: $0) })) {
                continuation.resume(returning: .failure(.closed))
            }
        }
        return try result.get()
    }

    /// The working ledger at a durable point, for a snapshot. Call `snapshotFinished` after
    /// writing it (or failing to), so the next one can start.
    public func captureForSnapshot() async throws(WriteFailure) -> SnapshotCapture {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<SnapshotCapture, WriteFailure>, Never>) in
            enqueue(.capture({ continuation.resume(returning: $0) })) {
                continuation.resume(returning: .failure(.closed))
            }
        }
        return try result.get()
    }

    public func snapshotFinished() {
        enqueue(.snapshotFinished) {}
    }

    /// Called by the consumer of `periodicSnapshots` when it stops (at shutdown): no periodic
    /// capture is made after this, and one yielded that it never took is given up. Such a
    /// capture was dropped with the stream's buffer when the consumer's task was cancelled, and
    /// held `snapshotRunning` for good: the final snapshot was then refused as "a snapshot is
    /// already being written", and the next start replayed everything since the last one.
    public func stopPeriodicSnapshots() {
        enqueue(.stopPeriodicSnapshots) {}
    }

    /// Changes when the writer captures the state for a snapshot on its own.
    public func setSnapshotPolicy(_ policy: SnapshotPolicy) {
        enqueue(.setSnapshotPolicy(policy)) {}
    }

    /// Changes the event feed's retention (E5) from the next command on.
    public func setEventRetention(_ retention: EventRetention) {
        enqueue(.setEventRetention(retention)) {}
    }

    /// Changes the seat maximum (S1) for commands from now on.
    public func setMaxSeats(_ maxSeats: Int64) {
        enqueue(.setMaxSeats(maxSeats)) {}
    }

    /// A round trip through the writer thread, for the watchdog: returns once the thread has
    /// taken a job since the call.
    public func ping() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            enqueue(.ping({ continuation.resume() })) { continuation.resume() }
        }
    }

    /// Whether writes are taken here now (false on a standby). Read on the writer thread's
    /// behalf by status pages: a hint, not a promise.
    public var isActive: Bool { activeBox.withLock { $0 } }
    private let activeBox: Mutex<Bool>

    /// `submit` as an async call (tests, tools).
    public func execute(_ command: JournalEntry.WireCommand, callerUID: UInt32) async throws(WriteFailure) -> Executed {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Executed, WriteFailure>, Never>) in
            submit(WriteCommand(command: command, callerUID: callerUID) { continuation.resume(returning: $0) })
        }
        return try result.get()
    }

    /// Stops the thread after the jobs already queued; later jobs are refused as closed.
    public func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            closing = true
            if threadExited {
                condition.unlock()
                continuation.resume()
                return
            }
            exitWaiters.append(continuation)
            condition.signal()
            condition.unlock()
        }
    }

    fileprivate func enqueueReplication(_ job: Job) {
        enqueue(job) {}
    }

    /// Queues replicated records, and reports whether more than `standbyBacklogLimit` wait.
    fileprivate func enqueueReplicated(_ records: [JournalRecord]) -> Bool {
        enqueue(.replicate(records), replicatedRecords: records.count) {}
    }

    /// Returns once at most `standbyBacklogLimit` replicated records wait, or the writer has exited.
    fileprivate func waitForStandbyBacklog() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            if standbyBacklog <= Self.standbyBacklogLimit || threadExited {
                condition.unlock()
                continuation.resume()
                return
            }
            backlogWaiters.append(continuation)
            condition.unlock()
        }
    }

    /// The replicated records of `jobs` leave the inbox: the waiting `replicate` calls may go on
    /// once the backlog is below the limit. Called with `condition` held; returns who to resume.
    private func takeBacklog(of jobs: [Job]) -> [CheckedContinuation<Void, Never>] {
        for case .replicate(let records) in jobs { standbyBacklog -= records.count }
        guard standbyBacklog <= Self.standbyBacklogLimit, !backlogWaiters.isEmpty else { return [] }
        defer { backlogWaiters = [] }
        return backlogWaiters
    }

    /// Returns whether the standby backlog is over its limit (`replicatedRecords` counted in it).
    @discardableResult
    private func enqueue(_ job: Job, replicatedRecords: Int = 0, refused: () -> Void) -> Bool {
        condition.lock()
        guard !closing else {
            condition.unlock()
            refused()
            return false
        }
        inbox.append(job)
        standbyBacklog += replicatedRecords
        // While the thread waits for a whole batch (`gatherTarget` set) only the last one wakes it.
        if gatherTarget > 0 ? inbox.count == gatherTarget : inbox.count == 1 { condition.signal() }
        let full = standbyBacklog > Self.standbyBacklogLimit
        condition.unlock()
        return full
    }

    // MARK: the writer thread

    private func run() {
        while true {
            condition.lock()
            if !awaitExpectedBatch() {
                while inbox.isEmpty && !closing {
                    if let wake = nextWake() {
                        _ = condition.wait(until: wake)
                        if inbox.isEmpty { break }  // timed out: transitions may be due
                    } else {
                        condition.wait()
                    }
                }
                gatherMore()
            }
            let jobs = inbox
            inbox = []
            let exit = closing && jobs.isEmpty
            let drained = standbyBacklog > 0 ? takeBacklog(of: jobs) : []
            condition.unlock()
            for waiter in drained { waiter.resume() }
            if exit { break }
            runBatches(jobs)
        }
        condition.lock()
        threadExited = true
        let waiters = exitWaiters + backlogWaiters
        exitWaiters = []
        backlogWaiters = []
        // Anything queued after the last batch (close raced with submit) is refused.
        let refused = inbox
        inbox = []
        condition.unlock()
        for job in refused { refuse(job, .closed) }
        snapshotSink.finish()
        for waiter in waiters { waiter.resume() }
    }

    /// A batch started with the first few writes of the next wave leaves the rest to wait a
    /// whole append (PostgreSQL: a round trip of about a millisecond; the file store: an
    /// fdatasync), and splits the writers into two waves that alternate, each paying for its own
    /// append. So when fewer writes are waiting than recent batches held, the writer waits a
    /// little (half the last append, at most 1 ms) for them. On the file store at 16 writes in
    /// flight this took the CPU per write from 35-40 us to 29-32 us (BENCHMARKS.md); a lone
    /// writer never waits (it is the whole of the last batch). Called with `condition` held.
    private func gatherMore() {
        guard role == .active, lastAppendDuration > .zero, !inbox.isEmpty, inbox.count < lastBatchWrites,
              !closing else { return }
        waitForInbox(toHold: lastBatchWrites, until: Self.date(after: min(lastAppendDuration / 2, .milliseconds(1))))
    }

    /// Under a steady load the next batch is as large as the last ones: the callers answered a
    /// moment ago send their next writes together. Waking for the first of them and again for
    /// the rest (`gatherMore`) costs a wake-up per batch (a futex wake on the event loop, a
    /// context switch here), which at 16 writes in flight is a visible share of each write's
    /// CPU. So, with a batch of that size expected, the thread sleeps until it is complete, for
    /// at most one last append (never over 1 ms, nor past a due transition). Returns whether
    /// the wait is over: jobs are waiting or the thread is closing. If nothing arrived in that
    /// time the load has gone, and the caller waits for the first job as usual. Called with
    /// `condition` held.
    private func awaitExpectedBatch() -> Bool {
        guard role == .active, lastAppendDuration > .zero, lastBatchWrites > 1, inbox.count < lastBatchWrites,
              !closing else { return !inbox.isEmpty || closing }
        var until = Self.date(after: min(lastAppendDuration, .milliseconds(1)))
        if let wake = nextWake() { until = min(until, wake) }
        waitForInbox(toHold: lastBatchWrites, until: until)
        return !inbox.isEmpty || closing
    }

    /// Sleeps until `target` jobs wait (only the job that completes them signals, see
    /// `enqueue`), the thread is closing, or `until` passes. Called with `condition` held.
    private func waitForInbox(toHold target: Int, until: Date) {
        gatherTarget = target
        while inbox.count < gatherTarget, !closing {
            if !condition.wait(until: until) { break }
        }
        gatherTarget = 0
    }

    /// The wall-clock instant `duration` from now, for `NSCondition.wait(until:)`.
    private static func date(after duration: Duration) -> Date {
        Date(timeIntervalSinceNow: Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
    }

    /// When the thread must wake without a job: the next due transition on the system clock.
    private func nextWake() -> Date? {
        guard clock.mode == .system, fault == nil, role == .active, let due = working.nextDueInstant() else { return nil }
        let seconds = Double(due.nanosecondsSinceEpoch) / 1e9
        // Capped, so a wall clock that jumps forward is noticed within a minute.
        return min(Date(timeIntervalSince1970: seconds), Date(timeIntervalSinceNow: 60))
    }

    /// Runs the jobs taken together as one batch, except that replication jobs (a shared store's
    /// standby replay, promotion, demotion) each run between batches, so that no batch mixes
    /// commands applied as active with records replayed as standby.
    private func runBatches(_ jobs: [Job]) {
        guard replicated else { return runBatch(jobs) }
        var batch: [Job] = []
        for job in jobs {
            switch job {
            case .replicate, .restore, .promote, .demote:
                if !batch.isEmpty { runBatch(batch) }
                batch = []
                runBatch([job])
            default:
                batch.append(job)
            }
        }
        if !batch.isEmpty { runBatch(batch) }
    }

    private func runBatch(_ jobs: [Job]) {
        var records: [[UInt8]] = []
        var replies: [Reply] = []
        var snapshotCaptures: [@Sendable (Result<SnapshotCapture, WriteFailure>) -> Void] = []
        if replicated, rollbackPoint == nil { rollbackPoint = working }

        // Transitions due now run first, as their own record, so replay meets them in order.
        // Only the active host runs them: a standby replays the active host's ticks.
        if clock.mode == .system, fault == nil, role == .active {
            let now = clock.now()
            if let due = working.nextDueInstant(), due <= now, working.advance(to: now) > 0 {
                appendRecord(.tick(at: now, manualClock: false), bytes: nil, to: &records)
            }
        }
        for (index, job) in jobs.enumerated() {
            if index % Ledger.prefetchGroup == 0 {
                // The id lookups and subscriptions of the next few commands miss the cache;
                // asked for together, the misses overlap instead of stalling one by one.
                working.prefetchSubscriptions(count: min(Ledger.prefetchGroup, jobs.count - index)) { item in
                    if case .command(let write) = jobs[index + item] { write.command.subscriptionID } else { nil }
                }
            }
            switch job {
            case .command(let write):
                if let deadline = write.deadline, ContinuousClock.now >= deadline {
                    replies.append(.write(write.completion, .failure(.deadlineExceeded)))
                    continue
                }
                if let fault {
                    replies.append(.write(write.completion, .failure(.persistenceFault(fault, outcome: .notApplied))))
                    continue
                }
                if case .standby(let holder) = role {
                    replies.append(.write(write.completion, .failure(.notActive(activeHolder: activeHolder(remembered: holder)))))
                    continue
                }
                let now = clock.now()
                let executed: Executed
                let entry: JournalEntry?
                (executed, entry) = Self.apply(write.command, to: &working, at: now, callerUID: write.callerUID)
                if let entry {
                    appendRecord(entry, bytes: write.requestBytes, to: &records)
                }
                replies.append(.write(write.completion, .success(executed)))
            case .advanceClock(let instant, let completion):
                if let fault {
                    replies.append(.other { completion(.failure(.persistenceFault(fault, outcome: .notApplied))) })
                    continue
                }
                if case .standby(let holder) = role {
                    let named = activeHolder(remembered: holder)
                    replies.append(.other { completion(.failure(.notActive(activeHolder: named))) })
                    continue
                }
                do {
                    try clock.set(to: instant)
                } catch {
                    let failure: WriteFailure = switch error {
                    case .notManual: .notManualClock
                    case .backwards(let current): .clockBackwards(current: current)
                    }
                    replies.append(.other { completion(.failure(failure)) })
                    continue
                }
                let transitions = working.advance(to: instant)
                appendRecord(.tick(at: instant, manualClock: true), bytes: nil, to: &records)
                replies.append(.other { completion(.success(transitions)) })
            case .capture(let completion):
                snapshotCaptures.append(completion)
            case .snapshotFinished:
                snapshotRunning = false
                periodicCaptureOutstanding = false
            case .stopPeriodicSnapshots:
                // In the inbox after the consumer's last `snapshotFinished`: an outstanding
                // capture now is one it never took.
                periodicSnapshotsStopped = true
                if periodicCaptureOutstanding {
                    periodicCaptureOutstanding = false
                    snapshotRunning = false
                }
            case .setMaxSeats(let maxSeats):
                working.maxSeats = maxSeats
            case .setSnapshotPolicy(let policy):
                snapshotPolicy = policy
            case .setEventRetention(let retention):
                working.eventRetention = retention
            case .ping(let completion):
                replies.append(.other(completion))
            case .replicate(let replicatedRecords):
                applyReplicated(replicatedRecords)
            case .restore(let snapshot):
                startReplayOver(from: snapshot)
            case .promote(let epoch):
                if fault == nil {
                    role = .active
                    activeBox.withLock { $0 = true }
                    logger.notice("active: this host holds the writer lease", metadata: [
                        "epoch": "\(epoch)", "sequence": "\(lastSequence)"])
                }
            case .demote(let holder):
                if role == .active {
                    logger.warning("standby: the writer lease is lost", metadata: ["active": "\(holder)"])
                }
                role = .standby(activeHolder: holder)
                activeBox.withLock { $0 = false }
            }
        }

        if !records.isEmpty && fault == nil {
            do {
                let expected = lastSequence + UInt64(records.count)
                let appendStarted = ContinuousClock.now
                let acknowledgements = replies
                lastSequence = try store.appendDurably(records, after: lastSequence) { [self] last in
                    // On the thread that learned the batch is durable; this thread is blocked in
                    // `appendDurably` meanwhile, so the working ledger holds still.
                    publish(through: last)
                    ReplyBatch.collecting { for reply in acknowledgements { reply.deliver() } }
                }
                replies = []
                lastAppendDuration = ContinuousClock.now - appendStarted
                // The most writes a recent batch held: it decays by one a batch, so that the wait
                // follows the load down as well as up.
                let writes = jobs.count { if case .command = $0 { true } else { false } }
                lastBatchWrites = max(writes, lastBatchWrites - 1)
                if lastSequence != expected {
                    // The store numbered the batch differently from the writer's count: the
                    // working ledger no longer matches the journal. Stop writing.
                    enterFault("the store gave the batch sequence numbers up to \(lastSequence), expected \(expected)")
                }
                recordsSinceSnapshot += records.count
                if replicated { advanceRollbackPoint(records) }
            } catch let refusal as AppendRefusal {
                // Not sticky: drop the batch, go back to the last durable point, and follow the
                // store as standby; it replays whatever did commit and promotes again when it can.
                rollBack()
                let holder: String
                let failure: WriteFailure
                switch refusal {
                case .fenced(let activeHolder):
                    holder = activeHolder
                    failure = .notActive(activeHolder: activeHolder)
                case .unavailable(let text, let outcome):
                    holder = ""
                    failure = .storeUnavailable(text, outcome: outcome)
                }
                role = .standby(activeHolder: holder)
                activeBox.withLock { $0 = false }
                (store as? any ReplicatedJournalStore)?.resynchronize(after: lastSequence)
                logger.warning("append refused; standing by until the store promotes this host again",
                               metadata: ["reason": "\(refusal)", "sequence": "\(lastSequence)"])
                replies = jobs.map { job in .other { self.refuse(job, failure) } }
                snapshotCaptures = []
            } catch {
                enterFault("\(error)")
                // Nothing of this batch is acknowledged. Whether it may still come back after a
                // restart depends on what failed: a write (truncated away: not applied) or the
                // fdatasync (unknown). Commands of the batch that journaled nothing share the
                // batch's fate, since they may have read its changes.
                let outcome: WriteOutcome = if case .fault(let storeFault)? = error as? StoreError {
                    storeFault.outcome(of: lastSequence + 1)
                } else {
                    .notApplied
                }
                let fault = self.fault ?? "\(error)"
                replies = jobs.map { job in .other { self.refuse(job, .persistenceFault(fault, outcome: outcome)) } }
                snapshotCaptures = []
            }
        } else if !records.isEmpty, let fault {
            replies = jobs.map { job in .other { self.refuse(job, .persistenceFault(fault, outcome: .notApplied)) } }
            snapshotCaptures = []
        }
        ReplyBatch.collecting { for reply in replies { reply.deliver() } }
        retiredState = nil

        // Captures are taken here, at a durable point: everything applied is in the journal.
        for completion in snapshotCaptures {
            if let fault {
                completion(.failure(.snapshotAfterFault(fault)))
            } else if case .standby(let holder) = role {
                completion(.failure(.notActive(activeHolder: activeHolder(remembered: holder))))
            } else if snapshotRunning {
                completion(.failure(.snapshotInProgress))
            } else {
                snapshotRunning = true
                completion(.success(capture()))
            }
        }
        if fault == nil, role == .active, !snapshotRunning, !periodicSnapshotsStopped, recordsSinceSnapshot > 0,
           recordsSinceSnapshot >= snapshotPolicy.everyRecords
            || ContinuousClock.now - lastSnapshotAt >= snapshotPolicy.interval {
            snapshotRunning = true
            periodicCaptureOutstanding = true
            snapshotSink.yield(capture())
        }
    }

    /// Applies records the active host committed, publishing each batch as committed state.
    /// Records this writer has already (its own appends, seen again) are skipped; after a gap
    /// (records handed over for a position the writer has since rolled back from) the store is
    /// asked to hand over again from the writer's own position.
    private func applyReplicated(_ replicatedRecords: [JournalRecord]) {
        guard fault == nil else { return }
        var durable: [[UInt8]] = []
        for record in replicatedRecords where record.sequence > lastSequence {
            guard role != .active else {
                enterFault("replication out of order: record \(record.sequence) after \(lastSequence) while active")
                return
            }
            guard record.sequence == lastSequence + 1 else {
                logger.notice("replication gap; replaying again from the last applied record",
                              metadata: ["next": "\(record.sequence)", "applied": "\(lastSequence)"])
                (store as? any ReplicatedJournalStore)?.resynchronize(after: lastSequence)
                break
            }
            do {
                let entry = try JournalEntry(decoding: record.payload)
                CreditApplication.replay(entry, into: &working)
                durable.append(Array(record.payload))
                clock.notBefore(entry.instant)
            } catch {
                enterFault("cannot replay replicated record \(record.sequence): \(error)")
                return
            }
            lastSequence = record.sequence
        }
        guard !durable.isEmpty else { return }
        recordsSinceSnapshot += durable.count
        if replicated { advanceRollbackPoint(durable) }
        publish(through: lastSequence)
        retiredState = nil
    }

    /// Replaces the working ledger with a snapshot the active host wrote, when the journal no
    /// longer reaches back to this standby's position.
    private func startReplayOver(from snapshot: RecoveredSnapshot) {
        guard fault == nil, snapshot.sequence > lastSequence else { return }
        guard role != .active else {
            enterFault("asked to restore snapshot \(snapshot.sequence) while active")
            return
        }
        do {
            let decoded = try SnapshotCodec.decode(snapshot)
            var ledger = decoded.ledger
            ledger.eventRetention = working.eventRetention
            ledger.maxSeats = working.maxSeats
            working = ledger
            clock.notBefore(decoded.clock)
        } catch {
            enterFault("cannot decode the active host's snapshot \(snapshot.sequence): \(error)")
            return
        }
        logger.notice("standby replay starts over from the active host's snapshot",
                      metadata: ["snapshot": "\(snapshot.sequence)", "applied": "\(lastSequence)"])
        lastSequence = snapshot.sequence
        rollbackPoint = working
        rollbackRecords = []
        publish(through: lastSequence)
        retiredState = nil
    }

    /// Publishes the working ledger as the committed state through `sequence`. The state it
    /// replaces is kept in `retiredState` until the batch's callers are answered: dropping what
    /// may be the last reference to a large ledger takes a while, and must happen neither under
    /// the lock readers take nor before the answers go out.
    private func publish(through sequence: UInt64) {
        let state = CommittedState(ledger: working.readerCopy(), sequence: sequence)
        retiredState = committedBox.withLock { current in
            defer { current = state }
            return current
        }
        commits.published(sequence)
    }

    /// `records` are durable now (the working ledger is at that point): keep them for a roll
    /// back, and move the point itself forward once enough have gathered.
    private func advanceRollbackPoint(_ records: [[UInt8]]) {
        rollbackRecords.append(contentsOf: records)
        if rollbackPoint == nil || rollbackRecords.count >= Self.rollbackRefreshRecords {
            rollbackPoint = working
            rollbackRecords = []
        }
    }

    /// Back to the last durable point after a refused append: the rollback point with the
    /// records durable since replayed onto it.
    private func rollBack() {
        guard var ledger = rollbackPoint else { return }
        // Settings are not journaled: keep the ones in force now.
        ledger.maxSeats = working.maxSeats
        ledger.eventRetention = working.eventRetention
        for payload in rollbackRecords {
            do {
                CreditApplication.replay(try JournalEntry(decoding: payload), into: &ledger)
            } catch {
                enterFault("cannot replay a durable record while rolling back: \(error)")
                return
            }
        }
        working = ledger
    }

    private func capture() -> SnapshotCapture {
        recordsSinceSnapshot = 0
        lastSnapshotAt = ContinuousClock.now
        return SnapshotCapture(ledger: working, sequence: lastSequence, clock: clock.now())
    }

    private func appendRecord(_ entry: JournalEntry, bytes: [UInt8]?, to records: inout [[UInt8]]) {
        do {
            records.append(try entry.encoded(requestBytes: bytes))
        } catch {
            enterFault("cannot encode a journal record: \(error)")
        }
    }

    /// Applies one client command to `ledger`: the step the writer takes for each command, and
    /// the one the dispatch fuzzer drives. Returns the outcome and, when the state changed, the
    /// journal entry that replays it.
    public static func apply(_ command: JournalEntry.WireCommand, to ledger: inout Ledger, at now: Instant,
                             callerUID: UInt32) -> (Executed, JournalEntry?) {
        let domainCommand = command.domain
        let result = ledger.execute(domainCommand, at: now, callerUID: callerUID, dryRun: command.dryRun)
        let subscription = try? ledger.subscription(id: domainCommand.subscriptionId)
        let entry: JournalEntry? = result.stateChanged
            ? .command(command, at: now, callerUID: callerUID, maxSeats: ledger.maxSeats)
            : nil
        return (Executed(outcome: result.outcome, subscription: subscription), entry)
    }

    private func enterFault(_ description: String) {
        guard fault == nil else { return }
        fault = description
        faultBox.withLock { $0 = description }
        logger.critical("persistence fault: writes refused until restart; reads serve the last committed state",
                        metadata: ["fault": "\(description)"])
    }

    /// An answer the batch owes, given once the batch is durable (or has failed). A write's is
    /// its completion and its result side by side: a closure capturing both cost an allocation
    /// per write, and retained the whole command until the batch was answered.
    private enum Reply: Sendable {
        case write(@Sendable (Result<Executed, WriteFailure>) -> Void, Result<Executed, WriteFailure>)
        case other(@Sendable () -> Void)

        func deliver() {
            switch self {
            case .write(let completion, let result): completion(result)
            case .other(let reply): reply()
            }
        }
    }

    private func refuse(_ job: Job, _ failure: WriteFailure) {
        switch job {
        case .command(let write): write.completion(.failure(failure))
        case .advanceClock(_, let completion): completion(.failure(failure))
        case .capture(let completion):
            // A snapshot asked for in a batch whose append failed is refused as a snapshot,
            // not with a write's "this change was not applied".
            if case .persistenceFault(let text, _) = failure {
                completion(.failure(.snapshotAfterFault(text)))
            } else {
                completion(.failure(failure))
            }
        case .ping(let completion): completion()
        case .snapshotFinished, .stopPeriodicSnapshots, .setMaxSeats, .setSnapshotPolicy, .setEventRetention,
             .replicate, .restore, .promote, .demote: break
        }
    }
}

/// The store's standby loop talks to the writer through its inbox, in order with the writes.
extension LedgerWriter: ReplicationFollower {
    public func replicate(_ records: [JournalRecord]) async {
        if enqueueReplicated(records) { await waitForStandbyBacklog() }
    }
    public func restore(_ snapshot: RecoveredSnapshot) { enqueueReplication(.restore(snapshot)) }
    public func promote(epoch: UInt64) { enqueueReplication(.promote(epoch: epoch)) }
    /// The host a standby's refusal names: the store's live view of the lease (its loop reads
    /// the lease at every poll; none once it has not for a lease). What the last demotion said
    /// counts only without a shared store's status. A host that started as a standby was never
    /// demoted, and named no host at all while another held the lease.
    private func activeHolder(remembered: String) -> String {
        // The store's view is the current one: the holder this writer was told of when it
        // stood down may have lost the lease since, or the database be out of reach (the store
        // then names none, and so does the answer).
        guard let status = (store as? any ReplicatedJournalStore)?.replication else { return remembered }
        return status.activeHolder == status.node ? "" : status.activeHolder
    }

    public func demote(activeHolder: String) { enqueueReplication(.demote(activeHolder: activeHolder)) }
}
