import CreditStore
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import PostgresNIO
import Synchronization

/// How a PostgreSQL store keeps its lease and follows the journal.
public struct PostgresStoreOptions: Sendable {
    /// How long a lease lasts without renewal: a standby takes over this long after the active
    /// host last renewed (every append renews it, and a timer every third of it when idle).
    public var lease: Duration = .seconds(3)
    /// How often a standby looks for new records when no notification arrives.
    public var pollInterval: Duration = .milliseconds(100)
    /// The shortest time between two fetches of a standby: notifications that arrive sooner
    /// are taken together. Each fetch is two statements for the database and a published state
    /// for the standby, on the machine the active host may share; fetching on every commit
    /// (hundreds a second) took CPU from the writes for lag nobody needs below the 100 ms target.
    public var minimumFetchInterval: Duration = .milliseconds(10)
    /// Snapshots are stored in rows of at most this many bytes.
    public var snapshotChunkBytes = 1 << 20
    /// This process's name in the lease table: what standbys name as the active host.
    public var node: String = PostgresStoreOptions.uniqueNode()
    /// The event loops the database connections run on: the daemon passes its own, so that a
    /// batch made durable on a connection's loop answers the callers on that loop inline.
    public var eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton

    public init() {}

    /// `<hostname>:<pid>.<random>`, new for every store: two processes on one host are two
    /// nodes, and so are two containers that share a hostname and each run creditd as pid 1.
    /// The lease loop takes the lease again when the row names its own node (a renewal that came
    /// too late), so two processes with one name took the lease from each other in turn and
    /// neither could write; the random part (48 bits) keeps the names apart.
    public static func uniqueNode() -> String {
        let hex = String(UInt64.random(in: 0..<(1 << 48)), radix: 16)
        return "\(ProcessInfo.processInfo.hostName):\(getpid()).\(String(repeating: "0", count: 12 - hex.count) + hex)"
    }
}

/// The journal and snapshots in PostgreSQL tables, shared by several creditd hosts of which one
/// is active (holds the lease and appends) and the others standbys (replay and take over).
///
/// Fencing: every append is one statement, hence one transaction, that renews the lease row only
/// where it still names this node and epoch and has not expired, and inserts the batch only if
/// that update found the row (the function `creditd_append`, `Schema.migrations`). A takeover
/// bumps the epoch on the same row, so the row lock orders the two: once a standby has taken the
/// lease, no statement of the old epoch can insert anything, even from a process that was paused
/// holding an open connection.
///
/// Threads: `appendDurably` blocks the ledger writer's own thread on the append connection;
/// everything else (lease, standby replay, notifications, snapshots) runs in `run` and
/// `writeSnapshot` on NIO's event loops, and snapshot encoding on NIO's thread pool.
public final class PostgresJournalStore: ReplicatedJournalStore {
    private struct State {
        var role: ReplicationRole = .standby
        var epoch: UInt64 = 0
        var activeHolder = ""
        /// The last record delivered to the follower or appended by this process.
        var lastKnown: UInt64
        /// The lag of the newest record fetched, and the records of that catch-up; both 0 once
        /// a catch-up finds nothing new.
        var lagSeconds: Double = 0
        var lagRecords: UInt64 = 0
        /// When a standby last read the journal to its end. While reads fail (the database out
        /// of reach), the time since then is how stale its state may be.
        var caughtUpAt: ContinuousClock.Instant?
        /// When a standby last read the lease row. `activeHolder` is named only within a lease
        /// of that: later (the database out of reach, or a catch-up longer than a lease), the
        /// holder it saw may have lost the lease without this host knowing.
        var leaseReadAt: ContinuousClock.Instant?
        var lastSnapshotSequence: UInt64?
        var lastSnapshotUnixMillis: Int64?
        var snapshotsWritten = 0
        var commits = 0
        var recordsWritten = 0
        /// When the last successful append was sent: its statement renewed the lease, by the
        /// database's clock no earlier than this.
        var appendRenewedAt: ContinuousClock.Instant?
        var closed = false
        var lag = LagHistogram()
    }

    public let info: PostgresConnectionInfo
    public let options: PostgresStoreOptions
    private let logger: Logger
    private let state: Mutex<State>
    private let appendConnection: BlockingConnection
    private let wake = Wakeup()

    private init(info: PostgresConnectionInfo, options: PostgresStoreOptions, logger: Logger,
                 appendConnection: BlockingConnection, recovered: UInt64, snapshot: RecoveredSnapshot?) {
        self.info = info
        self.options = options
        self.logger = logger
        self.appendConnection = appendConnection
        var initial = State(lastKnown: recovered)
        initial.lastSnapshotSequence = snapshot?.sequence
        initial.lastSnapshotUnixMillis = snapshot?.unixMillis
        state = Mutex(initial)
    }

    /// Connects, creates the tables on first use (refusing a newer schema), and reads the newest
    /// snapshot and the journal after it. Blocks: call it off the event loops. The store starts
    /// as standby; `run` takes the lease when it is free.
    public static func open(_ info: PostgresConnectionInfo, options: PostgresStoreOptions = PostgresStoreOptions(),
                            logger: Logger) throws -> (PostgresJournalStore, Recovery) {
        // A lock wait ends on the server within a lease, before creditd's own limit for the
        // step (one and a half leases) gives up on it. Nothing creditd does holds the lease
        // row longer than a statement, except a snapshot's FOR KEY SHARE, which only a
        // takeover waits for (and retries). A final snapshot behind a row someone else locked
        // gives up after a lease too, not after the snapshot's two minutes.
        var info = info
        info.lockTimeout = options.lease
        let connection = BlockingConnection(info: info, eventLoopGroup: options.eventLoopGroup, logger: logger)
        let recovery: Recovery
        do {
            let conn = try connection.get()
            let limit = snapshotStepLimit(lease: options.lease)
            try Schema.prepare(conn, within: limit, logger: logger)
            recovery = try Schema.recover(conn, within: limit, logger: logger)
        } catch {
            connection.close()
            throw PostgresStoreError.open(info.description, PostgresStoreError.describe(error))
        }
        let store = PostgresJournalStore(info: info, options: options, logger: logger, appendConnection: connection,
                                         recovered: recovery.nextSequence - 1, snapshot: recovery.snapshot)
        return (store, recovery)
    }

    public var location: String { info.description }
    public var fault: StoreFault? { nil }

    public var stats: StoreStats {
        state.withLock { state in
            StoreStats(lastSequence: state.lastKnown, lastDurableSequence: state.lastKnown,
                       lastSnapshotSequence: state.lastSnapshotSequence,
                       lastSnapshotUnixMillis: state.lastSnapshotUnixMillis, snapshotsWritten: state.snapshotsWritten,
                       commits: state.commits, recordsWritten: state.recordsWritten)
        }
    }

    public var replication: ReplicationStatus {
        state.withLock { state in
            // A standby that cannot read the journal does not know how far behind it is, only
            // that it may be as far as its last complete catch-up: it reports that, not the
            // lag of the last record it happened to fetch (0 while the active host wrote on).
            let stale = state.caughtUpAt.map { ContinuousClock.now - $0 } ?? .zero
            let staleSeconds = stale > options.pollInterval * 10 ? Double(stale.components.seconds)
                + Double(stale.components.attoseconds) / 1e18 : 0
            return ReplicationStatus(role: state.role, epoch: state.epoch, node: options.node,
                              activeHolder: knownHolder(state),
                              lagSeconds: state.role == .active ? 0 : max(state.lagSeconds, staleSeconds),
                              lagRecords: state.role == .active ? 0 : state.lagRecords, lag: state.lag)
        }
    }

    private var leaseMillis: Int64 { Self.millis(options.lease) }

    /// The host writes go to, as far as this one knows: itself while active; as standby, the
    /// holder of the lease it last read, if it read it within a lease. Past that (the database
    /// out of reach from here), the host it saw may have lost the lease since, or be cut off
    /// too: it names none rather than send clients to a host that may refuse them as well.
    private func knownHolder(_ state: State) -> String {
        if state.role == .active { return state.activeHolder }
        guard let read = state.leaseReadAt, ContinuousClock.now - read < options.lease else { return "" }
        return state.activeHolder == options.node ? "" : state.activeHolder
    }

    static func millis(_ duration: Duration) -> Int64 {
        let parts = duration.components
        return parts.seconds * 1000 + parts.attoseconds / 1_000_000_000_000_000
    }

    // MARK: appends (the writer's thread)

    public func appendDurably(_ payloads: [[UInt8]], after lastSequence: UInt64,
                              whenDurable: @escaping @Sendable (UInt64) -> Void) throws -> UInt64 {
        let first = lastSequence + 1
        let epoch = try state.withLock { state throws(AppendRefusal) -> UInt64 in
            guard !state.closed else { throw .unavailable("the store is closed", outcome: .notApplied) }
            guard state.role == .active else { throw .fenced(activeHolder: knownHolder(state)) }
            return state.epoch
        }
        guard !payloads.isEmpty else {
            whenDurable(lastSequence)
            return lastSequence
        }
        let connection: PostgresConnection
        do {
            connection = try appendConnection.get(within: .milliseconds(leaseMillis))
        } catch {
            throw stepDown(.unavailable(PostgresStoreError.describe(error), outcome: .notApplied), epoch: epoch)
        }
        var sequences: [Int64] = []
        var buffers: [ByteBuffer] = []
        sequences.reserveCapacity(payloads.count)
        buffers.reserveCapacity(payloads.count)
        for (offset, payload) in payloads.enumerated() {
            sequences.append(Int64(first) + Int64(offset))
            buffers.append(ByteBuffer(bytes: payload))
        }
        let query = Schema.append(node: options.node, epoch: epoch, leaseMillis: leaseMillis,
                                  sequences: sequences, payloads: buffers)
        let last = first + UInt64(payloads.count) - 1
        let expected = payloads.count
        let sentAt = ContinuousClock.now
        let inserted: Int
        // The writer thread waits for this reply and nothing else bounds that wait. If no reply
        // comes within a lease (a lock held in the database, a connection left half-open by a
        // database crash), the wait ends with the statement's outcome unknown (below) and the
        // connection is closed; by then the lease may have passed to another host anyway. The
        // timer ends the wait itself: closing the connection alone left the statement's future
        // pending once, with the writer blocked on it.
        let reply = BoundedWait<Int>(on: connection.eventLoop)
        let lease = leaseMillis
        do {
            // The check and `whenDurable` run on the connection's event loop as the commit's
            // reply arrives: the writer's answers go out from there, one thread wake-up earlier
            // than if this thread were woken to send them. A reply after the timer is ignored:
            // that append was already refused as "outcome unknown".
            connection.query(query, logger: logger).flatMapThrowing { result -> Int in
                try result.rows.first.map { Int(try $0.decode(Int64.self)) } ?? -1
            }.whenComplete { result in
                reply.settle(result) {
                    if case .success(let inserted) = result, inserted == expected { whenDurable(last) }
                }
            }
            inserted = try reply.wait("appending", atMost: .milliseconds(lease),
                                      whenTimerFires: { let _: EventLoopFuture<Void> = connection.close() })
        } catch let error as PSQLError where error.code == .server {
            // The statement failed as a whole (one statement is one transaction): not applied.
            // A duplicate sequence means another writer got there: this one is no longer active.
            // The connection is not reused: a server shutting down answers with an error and
            // then closes it.
            appendConnection.reset()
            let fenced = error.serverInfo?[.sqlState] == "23505"
            throw stepDown(fenced ? .fenced(activeHolder: "")
                                  : .unavailable(PostgresStoreError.describe(error), outcome: .notApplied), epoch: epoch)
        } catch {
            // The connection broke with the statement sent: it may or may not have committed.
            appendConnection.reset()
            throw stepDown(.unavailable(PostgresStoreError.describe(error), outcome: .unknown), epoch: epoch)
        }
        guard inserted == expected else {
            if inserted == 0 { throw stepDown(.fenced(activeHolder: ""), epoch: epoch) }
            throw stepDown(.unavailable("the append inserted \(inserted) of \(payloads.count) records", outcome: .unknown), epoch: epoch)
        }
        state.withLock { state in
            state.lastKnown = max(state.lastKnown, last)
            state.commits += 1
            state.recordsWritten += payloads.count
            state.appendRenewedAt = sentAt
            // Its own append: the state is current as of now (a demotion later counts its lag
            // from here, not from its last catch-up as a standby, before it was active).
            state.caughtUpAt = sentAt
        }
        return last
    }

    /// Becomes standby after a refused append under `epoch`; the loop replays what committed
    /// and takes the lease again if it can. If the loop has meanwhile taken the lease again (a
    /// newer epoch), that role stands: the append's refusal is about the epoch it was sent
    /// under, and demoting the new one would leave the store standby under a writer it has
    /// just promoted.
    private func stepDown(_ refusal: AppendRefusal, epoch: UInt64) -> AppendRefusal {
        let (refusal, current) = state.withLock { state -> (AppendRefusal, Bool) in
            let current = state.epoch == epoch
            if current {
                state.role = .standby
                // This node no longer holds the lease, whatever it last saw: never name it as active.
                if state.activeHolder == options.node { state.activeHolder = "" }
            }
            if case .fenced = refusal { return (.fenced(activeHolder: knownHolder(state)), current) }
            return (refusal, current)
        }
        if current {
            logger.warning("append refused; standing by", metadata: ["reason": "\(refusal)"])
            wake.signal()
        } else {
            logger.notice("append under an earlier lease refused; the new lease stands",
                          metadata: ["reason": "\(refusal)", "epoch": "\(epoch)"])
        }
        return refusal
    }

    public func resynchronize(after sequence: UInt64) {
        let changed = state.withLock { state -> Bool in
            // While active the writer's own appends carry its position; only a standby is told.
            guard state.role == .standby, state.lastKnown != sequence else { return false }
            state.lastKnown = sequence
            return true
        }
        if changed { wake.signal() }
    }

    // MARK: snapshots

    public func writeSnapshot(sequence: UInt64, encode: @escaping @Sendable () throws -> any SnapshotPayload) async throws -> SnapshotInfo {
        // Encoded on a niced thread of its own, as the file store does, not on NIO's shared
        // pool: seconds of encoding at 1M must yield to the threads serving calls. The rows
        // take the payload in arrays of one chunk each, filled as it is encoded.
        let chunkBytes = options.snapshotChunkBytes
        let chunks = try await SnapshotPriority.run(threadName: "creditd-snap") { try encode().chunked(into: chunkBytes) }
        let payloadBytes = chunks.reduce(0) { $0 + $1.count }
        let epoch = try state.withLock { state throws(AppendRefusal) -> UInt64 in
            guard state.role == .active else { throw .fenced(activeHolder: knownHolder(state)) }
            return state.epoch
        }
        let connection = try await connect(id: 3, within: options.lease)
        defer { closeInBackground(connection) }
        let unixMillis = Int64(Date().timeIntervalSince1970 * 1000)
        let node = options.node
        let logger = self.logger
        let leaseMillis = self.leaseMillis
        let snapshotLimitMillis = Self.millis(snapshotStepLimit)
        // Bounded as the lease loop's steps are: a transaction whose reply never comes (its
        // ROLLBACK dropped with a database crash) would hold every later snapshot and the
        // shutdown that waits for this one.
        try await boundedStep("writing a snapshot", within: snapshotStepLimit, closing: connection) {
            try await connection.withTransaction(logger: logger) { connection in
                try await Schema.limitIdleInTransaction(connection, millis: leaseMillis, logger: logger)
                guard try await Schema.holdsLease(connection, node: node, epoch: epoch, logger: logger) else {
                    throw AppendRefusal.fenced(activeHolder: "")
                }
                // The lease row's lock waited at most a lease (the session's lock_timeout); the
                // snapshot's own tables may wait as long as the whole snapshot may take.
                try await Schema.limitLockWaits(connection, millis: snapshotLimitMillis, logger: logger)
                try await Schema.insertSnapshot(connection, sequence: sequence, epoch: epoch, chunks: chunks,
                                                bytes: payloadBytes, logger: logger)
            }
        }
        state.withLock { state in
            state.lastSnapshotSequence = sequence
            state.lastSnapshotUnixMillis = unixMillis
            state.snapshotsWritten += 1
        }
        return SnapshotInfo(sequence: sequence, name: "snapshot \(sequence) in \(info.description)",
                            bytes: Int64(payloadBytes), unixMillis: unixMillis)
    }

    // MARK: lease and standby loop

    public func run(after sequence: UInt64, follower: any ReplicationFollower) async {
        state.withLock { $0.lastKnown = max($0.lastKnown, sequence) }
        await withDiscardingTaskGroup { group in
            group.addTask { await self.listenForCommits() }
            await self.followAndLead(follower)
            group.cancelAll()
        }
    }

    /// Wakes the loop on every commit notification (the journal's statement trigger) while
    /// standby, so that it replays at once rather than at the next poll.
    private func listenForCommits() async {
        while !Task.isCancelled {
            do {
                // Bounded: the group that runs this loop waits for it at shutdown.
                let connection = try await connect(id: 2, within: options.lease)
                defer { closeInBackground(connection) }
                try await connection.listen(on: Schema.channel) { notifications in
                    wake.signal()  // listening now: look once for what came before
                    // The active host's own commits need no wake: only a standby replays.
                    for try await _ in notifications where state.withLock({ $0.role }) != .active { wake.signal() }
                }
            } catch {
                if Task.isCancelled { return }
                logger.debug("journal notifications unavailable; polling", metadata: ["error": "\(PostgresStoreError.describe(error))"])
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    private func followAndLead(_ follower: any ReplicationFollower) async {
        // Every database step is bounded (`boundedStep`, `statementLimit`).
        let limit = statementLimit
        let node = options.node
        let leaseMillis = self.leaseMillis
        let logger = self.logger
        var connection: PostgresConnection?
        var renewedAt = ContinuousClock.now
        var lastFetch: ContinuousClock.Instant?
        var lastError = ""
        defer { if let connection { closeInBackground(connection) } }
        while !Task.isCancelled {
            let role = state.withLock { $0.role }
            do {
                if connection == nil || connection?.isClosed == true {
                    let fresh = try await connect(id: 1, within: limit)
                    connection = fresh
                    try await boundedStep("configuring the connection", within: limit, closing: fresh) {
                        try await Schema.limitIdleInTransaction(fresh, millis: leaseMillis, wholeSession: true, logger: logger)
                    }
                }
                guard let connection else { continue }
                if role == .active {
                    // Appends renew the lease in their own statement; the timer renews it only
                    // when no append has for a third of it. (Renewing on every commit
                    // notification, as this loop once did, updated the lease row right after
                    // each append: the next append's fence waited for that row lock and a second
                    // WAL flush, and writes at 16 in flight ran at a quarter of pgbench's rate.)
                    let (epoch, appended) = state.withLock { ($0.epoch, $0.appendRenewedAt) }
                    if let appended, appended > renewedAt { renewedAt = appended }
                    if ContinuousClock.now - renewedAt >= options.lease / 3 {
                        let sentAt = ContinuousClock.now
                        if try await boundedStep("renewing the lease", within: limit, closing: connection, {
                            try await Schema.renewLease(connection, node: node, epoch: epoch, leaseMillis: leaseMillis, logger: logger)
                        }) {
                            renewedAt = sentAt
                            // Holding the lease, no one else wrote: the state is current (an idle
                            // host that then loses the database counts its lag from here).
                            state.withLock { $0.caughtUpAt = sentAt }
                        } else {
                            let leader = try await boundedStep("reading the lease", within: limit, closing: connection) {
                                try await Schema.leader(connection, logger: logger)
                            }
                            demote(follower, holder: leader.live ? leader.holder : "", epoch: leader.epoch,
                                   reason: "the lease was taken or expired")
                            continue
                        }
                    }
                    // Commit notifications wake this loop too; while active they only matter if
                    // an append was refused (the role changed), so sleep on until the next renewal.
                    let due = renewedAt + options.lease / 3
                    while !Task.isCancelled, state.withLock({ $0.role }) == .active, ContinuousClock.now < due {
                        await waitForWake(timeout: due - ContinuousClock.now)
                    }
                } else {
                    if let last = lastFetch, case let since = ContinuousClock.now - last, since < options.minimumFetchInterval {
                        try? await Task.sleep(for: options.minimumFetchInterval - since)
                    }
                    lastFetch = .now
                    try await catchUp(connection, follower)
                    let leader = try await boundedStep("reading the lease", within: limit, closing: connection) {
                        try await Schema.leader(connection, logger: logger)
                    }
                    state.withLock { state in
                        state.activeHolder = leader.live ? leader.holder : ""
                        state.epoch = max(state.epoch, leader.epoch)
                        state.leaseReadAt = .now
                    }
                    if !leader.live || leader.holder == options.node,
                       let epoch = try await boundedStep("taking the lease", within: limit, closing: connection, {
                           try await Schema.takeLease(connection, node: node, leaseMillis: leaseMillis, logger: logger)
                       }) {
                        // The epoch is ours: no statement of an older one can commit from here
                        // on. Replay everything committed before it, then write.
                        try await catchUp(connection, follower)
                        renewedAt = .now
                        state.withLock { state in
                            state.role = .active
                            state.epoch = epoch
                            state.activeHolder = options.node
                            state.lagSeconds = 0
                            state.lagRecords = 0
                            state.caughtUpAt = .now   // it has just read the journal to its end
                        }
                        logger.notice("took the writer lease", metadata: ["epoch": "\(epoch)", "node": "\(options.node)"])
                        follower.promote(epoch: epoch)
                        continue
                    }
                    await waitForWake(timeout: options.pollInterval)
                }
                lastError = ""
            } catch {
                if Task.isCancelled { break }
                let text = PostgresStoreError.describe(error)
                if text != lastError {
                    logger.warning("database unavailable; retrying", metadata: ["error": "\(text)"])
                    lastError = text
                }
                if let old = connection { closeInBackground(old) }
                connection = nil
                // An active host that cannot renew stops appending once the lease may have run
                // out (the database would refuse it anyway), and waits to take it again.
                if role == .active, ContinuousClock.now - renewedAt >= options.lease {
                    demote(follower, holder: "", epoch: 0, reason: "the lease could not be renewed")
                }
                try? await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    /// How long one statement of the lease and standby loop may take: one and a half leases. A
    /// renewal later than a lease is of no use, and the server ends a transaction left idle on
    /// the lease row after a lease, so a statement queued behind one gets through within that.
    private var statementLimit: Duration { options.lease * 3 / 2 }

    /// How long writing or reading a whole snapshot may take (300 MB at 1M subscriptions).
    private var snapshotStepLimit: Duration { Self.snapshotStepLimit(lease: options.lease) }

    private static func snapshotStepLimit(lease: Duration) -> Duration { max(lease * 20, .seconds(120)) }

    /// A new connection, within `limit`: a handshake with a database going down or coming up
    /// can hang with no timeout of its own. A connection made too late is closed.
    private func connect(id: Int, within limit: Duration) async throws -> PostgresConnection {
        try await BoundedWait.connecting(info, on: options.eventLoopGroup.next(), id: id, logger: logger)
            .value("connecting", atMost: limit)
    }

    private func demote(_ follower: any ReplicationFollower, holder: String, epoch: UInt64, reason: String) {
        state.withLock { state in
            state.role = .standby
            state.activeHolder = holder
            state.epoch = max(state.epoch, epoch)
            if !holder.isEmpty { state.leaseReadAt = .now }   // just read
        }
        logger.warning("lost the writer lease; standing by", metadata: ["reason": "\(reason)", "active": "\(holder)"])
        follower.demote(activeHolder: holder)
    }

    /// Hands every record after the last known one to the follower, in pages.
    private func catchUp(_ connection: PostgresConnection, _ follower: any ReplicationFollower) async throws {
        var delivered: UInt64 = 0
        while true {
            let after = state.withLock { $0.lastKnown }
            let logger = self.logger
            let page = try await boundedStep("reading the journal", within: statementLimit, closing: connection) {
                try await Schema.records(connection, after: after, limit: 2000, logger: logger)
            }
            guard !page.isEmpty else { break }
            if page[0].record.sequence > after + 1 {
                // The active host's snapshots pruned the journal past this position: start over
                // from the newest snapshot, then go on with the records after it.
                guard let snapshot = try await boundedStep("reading the newest snapshot", within: snapshotStepLimit, closing: connection, {
                    try await Schema.newestSnapshot(connection, logger: logger)
                }),
                      snapshot.sequence + 1 >= page[0].record.sequence else {
                    throw PostgresStoreError.recovery("journal record \(after + 1) is gone and no snapshot covers it")
                }
                state.withLock { $0.lastKnown = max($0.lastKnown, snapshot.sequence) }
                follower.restore(snapshot)
                continue
            }
            let records = page.map(\.record)
            state.withLock { state in
                state.lastKnown = max(state.lastKnown, records[records.count - 1].sequence)
                state.lagSeconds = page[page.count - 1].lagSeconds
                for row in page { state.lag.record(row.lagSeconds) }
            }
            delivered += UInt64(records.count)
            await follower.replicate(records)
            if page.count < 2000 { break }
        }
        // Read to the end: the replayed state is current. A catch-up that finds nothing new
        // clears the lag; it used to stand at the last catch-up's (20 s after a standby
        // rejoined, say) until the active host's next record, however long that took.
        state.withLock { state in
            state.caughtUpAt = .now
            if delivered > 0 {
                state.lagRecords = delivered
            } else {
                state.lagSeconds = 0
                state.lagRecords = 0
            }
        }
    }

    /// Returns after `timeout`, or earlier when a notification (or a refused append) arrives.
    private func waitForWake(timeout: Duration) async {
        await wake.wait(timeout: timeout)
    }

    // MARK: closing

    /// Gives the lease up at once (so a standby need not wait for it to expire) and disconnects.
    public func close() async {
        let (role, epoch) = state.withLock { state -> (ReplicationRole, UInt64) in
            state.closed = true
            let result = (state.role, state.epoch)
            state.role = .standby
            return result
        }
        // Bounded by a lease: after that the lease has run out by itself anyway.
        if role == .active, let connection = try? await connect(id: 4, within: options.lease) {
            let (node, logger) = (options.node, logger)
            _ = try? await boundedStep("releasing the lease", within: options.lease, closing: connection) {
                try await Schema.releaseLease(connection, node: node, epoch: epoch, logger: logger)
            }
            try? await connection.close()
        }
        appendConnection.close()
    }
}

public enum PostgresStoreError: Error, CustomStringConvertible {
    case open(String, String)
    case schema(String)
    case recovery(String)

    public var description: String {
        switch self {
        case .open(let location, let text): "cannot open \(location): \(text)"
        case .schema(let text): "unusable schema: \(text)"
        case .recovery(let text): "cannot recover: \(text)"
        }
    }

    /// postgres-nio keeps server messages out of `description`; logs need them.
    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] {
                let state = error.serverInfo?[.sqlState].map { " (SQLSTATE \($0))" } ?? ""
                return message + state
            }
            // An underlying PSQLError's own description is postgres-nio's placeholder ("Generic
            // description to prevent accidental leakage..."): describe it the same way.
            if let underlying = error.underlying { return "\(error.code): \(describe(underlying))" }
            return "\(error.code)"
        }
        if let error = error as? NIOSSLExtraError, error == .failedToValidateHostname {
            return "TLS: the server's certificate does not name the host connected to (sslmode=verify-full): \(error)"
        }
        if error is NIOSSLError, "\(error)".contains("CERTIFICATE_VERIFY_FAILED") {
            return "TLS: the server's certificate did not verify against sslrootcert (another authority, "
                + "or out of its validity period): \(error)"
        }
        if let error = error as? PostgresTransactionError {
            if let inner = error.closureError { return describe(inner) }
            if let inner = error.commitError { return "commit failed: " + describe(inner) }
            if let inner = error.beginError { return describe(inner) }
        }
        let text = "\(error)"
        // The shipped unit allows Unix sockets only (RestrictAddressFamilies=AF_UNIX: EAFNOSUPPORT;
        // IPAddressDeny=any: EPERM). The errno alone sent operators looking at the network.
        if text.contains("(errno: \(EAFNOSUPPORT))") || text.contains("(errno: \(EPERM))") {
            return text + " (a sandbox forbids this connection: creditd.service allows Unix sockets only; a database "
                + "over TCP needs the drop-in in README, \"Running on more than one host\")"
        }
        return text
    }
}

/// Closes a connection without waiting (from `defer`, which cannot await). The completion
/// keeps the connection alive until it is closed: postgres-nio asserts that none is released open.
func closeInBackground(_ connection: PostgresConnection) {
    connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
}

/// One connection used from a single blocking thread (the writer's), connected on first use and
/// again after `reset`.
final class BlockingConnection: Sendable {
    private let info: PostgresConnectionInfo
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let connection = Mutex<PostgresConnection?>(nil)

    init(info: PostgresConnectionInfo, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.info = info
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    /// The connection, connecting first if there is none, within `timeout` (nil: as long as
    /// the connection's own timeouts allow, for the start's first connection): the writer's thread
    /// waits here, and a connection whose handshake never ends (a database going down or coming
    /// up as it connected) held it past the lease with nothing refused, as a held append does
    /// without its watchdog. A connection made too late is closed.
    func get(within timeout: Duration? = nil) throws -> PostgresConnection {
        if let existing = connection.withLock({ $0 }), !existing.isClosed { return existing }
        let fresh = try BoundedWait.connecting(info, on: eventLoopGroup.next(), id: 0, logger: logger)
            .wait("connecting", atMost: timeout)
        connection.withLock { $0 = fresh }
        return fresh
    }

    func reset() {
        if let old = connection.withLock({ value -> PostgresConnection? in
            defer { value = nil }
            return value
        }) {
            closeInBackground(old)
        }
    }

    func close() { reset() }
}

/// A wake-up signal that survives being waited for with a timeout: a signal while nobody waits is
/// kept for the next wait. (An AsyncStream would do until the first timed-out wait: cancelling
/// its `next()` ends the stream, and every later wait would return at once.)
final class Wakeup: Sendable {
    private struct State {
        var pending = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    func signal() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.pending = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns after `timeout`, or at once if signalled since the last return, or at the next signal.
    func wait(timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: timeout) }
            group.addTask { await self.waitForSignal() }
            await group.next()
            group.cancelAll()
        }
    }

    private func waitForSignal() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                // Checked under the lock: a cancellation either sees the stored waiter or is seen here.
                let now = state.withLock { state -> Bool in
                    if state.pending || Task.isCancelled {
                        state.pending = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }
}
