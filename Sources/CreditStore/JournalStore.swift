/// What the ledger writer needs of a store: make a batch of records durable, write snapshots,
/// report counters, close. `DurableStore` (files in the state directory, one host) is the
/// default; a store shared by several hosts (PostgreSQL) adds a writer lease and standby replay
/// through `ReplicatedJournalStore`.
///
/// Opening a store recovers it: the opener returns the store and a `Recovery` (newest good
/// snapshot plus the records after it), which the service replays before it serves.
public protocol JournalStore: AnyObject, Sendable {
    /// Makes `payloads` durable as the next records, blocking the calling thread (the writer's
    /// own, never an event loop), and returns the sequence number of the last one. Nothing of the
    /// batch may be acknowledged if this throws. `StoreError.fault` is sticky (writes stop until a
    /// restart); a replicated store throws `AppendRefusal` instead, which it recovers from itself.
    /// `after` is the caller's last record: the batch continues from it (a store that numbers
    /// records itself, as the file store does, has the same number and may ignore it).
    ///
    /// `whenDurable` runs once, with that last sequence number, as soon as the batch is durable
    /// and before this returns, on whichever thread learns it first: the calling thread (the
    /// file store, after its fdatasync) or the store's I/O thread (PostgreSQL, when the commit's
    /// reply arrives on the connection's event loop). The caller stays blocked in this call
    /// while it runs, so it may use the caller's own state. It lets the writer publish the state
    /// and answer the batch's callers without first waking its own thread. It does not run
    /// when this throws.
    func appendDurably(_ payloads: [[UInt8]], after lastSequence: UInt64,
                       whenDurable: @escaping @Sendable (UInt64) -> Void) throws -> UInt64

    /// Writes a snapshot of the state after record `sequence` (durable already); `encode` runs
    /// off the caller's executor and may return its bytes in pieces (`SnapshotPayload`).
    func writeSnapshot(sequence: UInt64, encode: @escaping @Sendable () throws -> any SnapshotPayload) async throws -> SnapshotInfo

    /// Counters for stats, metrics and health; never waits on I/O.
    var stats: StoreStats { get }
    /// The sticky fault that stopped appends, if any.
    var fault: StoreFault? { get }
    /// Where the records live, for logs and status lines (a directory, a database).
    var location: String { get }

    /// Stops accepting records and releases what the store holds (lock, lease, connections).
    func close() async
}

extension DurableStore: JournalStore {
    public var location: String { directory }

    public func appendDurably(_ payloads: [[UInt8]], after lastSequence: UInt64,
                              whenDurable: @escaping @Sendable (UInt64) -> Void) throws -> UInt64 {
        let last = try appendDurably(payloads)
        whenDurable(last)
        return last
    }
}

// MARK: several hosts, one writer

/// Which part this process plays for a store shared by several hosts.
public enum ReplicationRole: String, Sendable, Equatable {
    /// The only writer of a store of its own (the file store): always writes.
    case standalone
    /// Holds the writer lease: appends, fenced by its epoch.
    case active
    /// Replays what the active host commits, serves reads, refuses writes.
    case standby
}

/// The replication state as status pages, metrics and STATUS= show it.
public struct ReplicationStatus: Sendable, Equatable {
    public var role: ReplicationRole
    /// The lease epoch this process writes under (active) or last saw (standby); 0: none.
    public var epoch: UInt64
    /// This process's name in the lease table.
    public var node: String
    /// The lease holder as last seen: the host writes go to ("" when none holds it).
    public var activeHolder: String
    /// How far behind the newest committed record the replayed state was when last fetched:
    /// seconds by the database's clock, and records. 0 while active.
    public var lagSeconds: Double
    public var lagRecords: UInt64
    /// The lag of every record replayed here as standby since start.
    public var lag: LagHistogram

    public init(role: ReplicationRole, epoch: UInt64 = 0, node: String = "", activeHolder: String = "",
                lagSeconds: Double = 0, lagRecords: UInt64 = 0, lag: LagHistogram = LagHistogram()) {
        self.role = role
        self.epoch = epoch
        self.node = node
        self.activeHolder = activeHolder
        self.lagSeconds = lagSeconds
        self.lagRecords = lagRecords
        self.lag = lag
    }

    public static let standalone = ReplicationStatus(role: .standalone)
}

/// Why a replicated store did not make a batch durable. Unlike `StoreError.fault` this is not
/// sticky: the store steps down to standby, replays what was committed and, if it can take the
/// lease again, becomes active again by itself.
public enum AppendRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    /// The lease is held by another host (or expired): nothing of the batch was applied, and this
    /// process may never append under its old epoch again. `activeHolder` as last seen ("" unknown).
    case fenced(activeHolder: String)
    /// The database could not be reached or failed mid-commit; `outcome` says whether the batch
    /// may have been committed (`.unknown`: read it back once the service resumes).
    case unavailable(String, outcome: WriteOutcome)

    public var description: String {
        switch self {
        case .fenced(let holder):
            "the writer lease is lost" + (holder.isEmpty ? "" : " (held by \(holder))") + "; stepped down to standby"
        case .unavailable(let text, let outcome):
            "the database is unavailable (\(outcome)): \(text)"
        }
    }
}

/// Receives what a replicated store's standby loop learns, in order. Implemented by the ledger
/// writer; every call only enqueues.
public protocol ReplicationFollower: AnyObject, Sendable {
    /// Records committed by the active host, each after the ones delivered before. Returns
    /// once the follower has room for more: it bounds what it holds and has not yet applied,
    /// so a standby far behind fetches no faster than it replays.
    func replicate(_ records: [JournalRecord]) async
    /// The journal no longer reaches back to the follower's position (the active host's
    /// snapshots pruned it): start over from this snapshot; records after it follow.
    func restore(_ snapshot: RecoveredSnapshot)
    /// This process holds the lease under `epoch` and has been given every committed record.
    func promote(epoch: UInt64)
    /// The lease is lost (found on renewal rather than on an append).
    func demote(activeHolder: String)
}

/// A store that several hosts share: it starts as standby, and `run` keeps the lease (active)
/// or follows the journal and takes over when the lease expires (standby).
public protocol ReplicatedJournalStore: JournalStore {
    var replication: ReplicationStatus { get }
    /// Runs the lease and standby loop until cancelled, telling `follower` what happens. The
    /// follower's state must include every record up to `sequence` when this starts.
    func run(after sequence: UInt64, follower: any ReplicationFollower) async
    /// The follower is at `sequence` (it rolled back, or saw a gap): hand records over again from
    /// there. Called on the follower's thread; only enqueues.
    func resynchronize(after sequence: UInt64)
}

// MARK: values other stores build

extension StoreStats {
    /// Counters of a store that has no segments or recovery findings of its own.
    public init(lastSequence: UInt64, lastDurableSequence: UInt64, lastSnapshotSequence: UInt64?,
                lastSnapshotUnixMillis: Int64?, snapshotsWritten: Int, commits: Int, recordsWritten: Int,
                journalBytes: Int64 = 0, fault: StoreFault? = nil) {
        self.init(journalBytes: journalBytes, segmentCount: 0, lastSequence: lastSequence,
                  lastDurableSequence: lastDurableSequence, lastSnapshotSequence: lastSnapshotSequence,
                  lastSnapshotUnixMillis: lastSnapshotUnixMillis, snapshotsWritten: snapshotsWritten,
                  tornTailTruncations: 0, skippedSnapshots: 0, repairs: 0, recoveryWarnings: 0,
                  fsyncCount: commits, recordsWritten: recordsWritten, pendingRecords: 0, fault: fault)
    }
}

extension SnapshotInfo {
    public init(sequence: UInt64, name: String, bytes: Int64, unixMillis: Int64) {
        self.init(sequence: sequence, fileName: name, bytes: bytes, unixMillis: unixMillis,
                  removedSegments: [], removedSnapshots: [])
    }
}

extension RecoveredSnapshot {
    public init(sequence: UInt64, payload: [UInt8], unixMillis: Int64, name: String) {
        self.init(sequence: sequence, payload: payload, unixMillis: unixMillis, fileName: name)
    }
}

extension Recovery {
    /// A recovery with nothing to report beyond the snapshot used.
    public init(snapshot: RecoveredSnapshot?, records: [JournalRecord], nextSequence: UInt64) {
        self.init(snapshot: snapshot, records: records, nextSequence: nextSequence,
                  report: RecoveryReport(usedSnapshot: snapshot?.fileName, skippedSnapshots: [], segmentsRead: [],
                                         truncations: [], repairs: [], removedFiles: [], warnings: []))
    }
}

/// Replication lag samples in fixed buckets (seconds), for metrics and the benchmark's p99.
public struct LagHistogram: Sendable, Equatable {
    public static let bounds: [Double] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10]
    /// Counts per bucket of `bounds`, plus one for larger values (not cumulative).
    public private(set) var counts = [UInt64](repeating: 0, count: LagHistogram.bounds.count + 1)
    public private(set) var sum: Double = 0

    public init() {}

    public mutating func record(_ seconds: Double) {
        let index = Self.bounds.firstIndex { seconds <= $0 } ?? Self.bounds.count
        counts[index] += 1
        sum += seconds
    }

    public var count: UInt64 { counts.reduce(0, +) }

    /// The upper bound of the bucket holding the `quantile`th sample (nil without samples;
    /// +infinity beyond the last bound).
    public func upperBound(quantile: Double) -> Double? {
        let total = count
        guard total > 0 else { return nil }
        let rank = UInt64((Double(total) * quantile).rounded(.up))
        var seen: UInt64 = 0
        for (index, bucket) in counts.enumerated() {
            seen += bucket
            if seen >= rank { return index < Self.bounds.count ? Self.bounds[index] : .infinity }
        }
        return .infinity
    }
}
