import CCreditSystem
import CreditDomain
import CreditServer
import CreditStore
import CreditWire
import Logging
import Synchronization

/// What the application layer needs to know from the configuration.
public struct ApplicationConfiguration: Sendable {
    public var stateDirectory: String
    public var clockMode: DaemonClock.Mode
    /// The manual clock's starting instant (default: where the journal left it, else now).
    public var manualStart: Instant?
    public var maxSeats: Int64
    /// Take a snapshot when the last one is this old (and something changed)...
    public var snapshotInterval: Duration
    /// ...or when this many records were journaled since.
    public var snapshotEveryRecords: Int
    /// Truncate a damaged journal at its first bad record (after keeping a copy).
    public var repair: Bool
    public var storeOptions: StoreOptions
    /// Event feed retention (E5); the daemon refuses less than the spec's minimum.
    public var eventRetention: EventRetention = .specMinimum
    /// Told how long each snapshot took (metrics).
    public var snapshotObserver: (@Sendable (Duration) -> Void)?
    /// Opens (and recovers) another store than the file store in `stateDirectory`, e.g. one
    /// shared by several hosts. Runs on the recovery thread; may block.
    public var openStore: (@Sendable () throws -> (any JournalStore, Recovery))?

    public init(stateDirectory: String, clockMode: DaemonClock.Mode = .system, manualStart: Instant? = nil,
                maxSeats: Int64 = Ledger.defaultMaxSeats, snapshotInterval: Duration = .seconds(600),
                snapshotEveryRecords: Int = 100_000, repair: Bool = false, storeOptions: StoreOptions = StoreOptions()) {
        self.stateDirectory = stateDirectory
        self.clockMode = clockMode
        self.manualStart = manualStart
        self.maxSeats = maxSeats
        self.snapshotInterval = snapshotInterval
        self.snapshotEveryRecords = snapshotEveryRecords
        self.repair = repair
        self.storeOptions = storeOptions
    }
}

/// creditd's state and the services over it: recovery at start, the ledger
/// writer (which also runs time-driven transitions), and snapshots.
public final class CreditApplication: Sendable {
    public static let version = "0.1.0"

    public let writer: LedgerWriter
    public let store: any JournalStore
    public let stateDirectory: String
    public let recoveryReport: RecoveryReport
    public let subscriptionsRecovered: Int
    /// Sealed event chunks recovery took from the archive as an earlier run left them, rather
    /// than building and archiving their events again (`EventArchiver.adoptableBlocks`).
    public let adoptedEventChunks: Int
    let startedAt = ContinuousClock.now
    /// WatchEvents streams being served (`creditd_event_streams`).
    let eventStreams = Atomic<Int>(0)
    /// ListEvents calls waiting for an event (`creditd_event_long_polls`).
    let eventLongPolls = Atomic<Int>(0)
    /// Snapshots that could not be written since the start, and the last one's reason: a
    /// full disk stops snapshots while writes go on (into space written ahead), and the
    /// journal and the next start's replay grow. GetStats and the metrics show it, not only
    /// the log.
    let snapshotFailures = Mutex<(count: UInt64, lastError: String)>((0, ""))
    private let configuration: ApplicationConfiguration
    private let logger: Logger
    /// The writer's sequence when it started (the replication loop continues after it).
    private let recoveredSequence: UInt64
    /// The file store's event archive (nil on a shared store, whose snapshots carry every event).
    let archiver: EventArchiver?
    /// The archive blocks named by each snapshot the store keeps (the newest and the one it
    /// falls back to), by sequence: what the archive must keep.
    private let snapshotBlocks = Mutex<[(sequence: UInt64, blocks: [EventArchiveFiles.Block])]>([])

    public enum StartError: Error, CustomStringConvertible {
        case store(StoreError)
        case otherStore(String)
        case snapshot(String)
        case journal(sequence: UInt64, String)

        public var description: String {
            switch self {
            case .store(let error): "cannot open the state directory: \(error)"
            case .otherStore(let text): "cannot open the store: \(text)"
            case .snapshot(let text): "cannot read the snapshot: \(text)"
            case .journal(let sequence, let text): "cannot replay journal record \(sequence): \(text)"
            }
        }
    }

    /// Opens the state directory, loads the newest good snapshot and replays
    /// the journal after it. Blocking I/O: call it before serving, off the
    /// event loops.
    public init(configuration: ApplicationConfiguration, logger: Logger) throws(StartError) {
        var options = configuration.storeOptions
        options.repair = configuration.repair
        // Each phase's length goes into the "state recovered" line: a slow start-up says
        // whether the disk, the snapshot or the journal's replay took the time.
        let recoveryStarted = ContinuousClock.now
        let store: any JournalStore
        let recovery: Recovery
        if let openStore = configuration.openStore {
            do {
                (store, recovery) = try openStore()
            } catch {
                throw .otherStore("\(error)")
            }
        } else {
            do {
                (store, recovery) = try DurableStore.open(directory: configuration.stateDirectory, options: options)
            } catch {
                throw .store(error)
            }
        }
        let storeOpened = ContinuousClock.now
        // Anything recovery handled or lost is logged at its level, so `journalctl -p warning`
        // shows skipped snapshots, truncated tails and repairs.
        for event in recovery.report.events {
            let level: Logger.Level = switch event.severity {
            case .info: .info
            case .notice: .notice
            case .warning: .warning
            case .error: .error
            }
            logger.log(level: level, "\(event.message)", metadata: ["recovery": "\(event.kind.rawValue)"])
        }

        // The file store keeps old events in its archive; a shared store's snapshots carry them.
        let archiver = configuration.openStore == nil
            ? EventArchiver(files: EventArchiveFiles(directory: configuration.stateDirectory,
                                                     operations: options.fileOperations))
            : nil
        var ledger = Ledger(maxSeats: configuration.maxSeats)
        ledger.eventRetention = configuration.eventRetention
        var lastInstant: Instant?
        if let snapshot = recovery.snapshot {
            do {
                let decoded = try SnapshotCodec.decode(snapshot, archive: archiver)
                ledger = decoded.ledger
                ledger.eventRetention = configuration.eventRetention
                lastInstant = decoded.clock
            } catch {
                throw .snapshot("\(snapshot.fileName): \(error)")
            }
        }
        let snapshotLoaded = ContinuousClock.now
        let recoveredBlocks = EventArchiver.blocks(of: ledger)
        // Blocks a run archived after the snapshot and before it stopped: the replay takes them
        // rather than archiving the same events again.
        var adoption: ReplayAdoption
        do {
            adoption = try ReplayAdoption(archiver: archiver, referenced: recoveredBlocks, ledger: &ledger,
                                          records: recovery.records.count)
        } catch {
            throw .snapshot("\(recovery.snapshot?.fileName ?? "no snapshot"): \(error)")
        }
        let replayArchiving = archiver.flatMap { archiver in
            recovery.records.count >= ReplayArchiving.offerEveryRecords
                ? ReplayArchiving(archiver: archiver, threshold: Self.archiveThreshold, logger: logger) : nil
        }
        defer { replayArchiving?.finish() }
        let decoding = ReplayDecoding(records: recovery.records)
        defer { decoding.finish() }
        let replayStarted = ContinuousClock.now
        var replayed = 0
        while var batch = decoding.next() {
            for group in stride(from: 0, to: batch.entries.count, by: Ledger.prefetchGroup) {
                let entries = batch.entries[group..<min(group + Ledger.prefetchGroup, batch.entries.count)]
                ledger.prefetchSubscriptions(count: entries.count) { entries[entries.startIndex + $0].subscriptionID }
                for entry in entries {
                    Self.replay(entry, into: &ledger)
                    lastInstant = max(lastInstant ?? entry.instant, entry.instant)
                    replayed += 1
                    do { try adoption.finishIfOver(&ledger) } catch { throw .snapshot("archived events: \(error)") }
                    if replayed % ReplayArchiving.offerEveryRecords == 0 {
                        replayArchiving?.offer(ledger)
                    }
                }
            }
            if let (sequence, reason) = batch.failure {
                throw .journal(sequence: sequence, reason)
            }
            decoding.recycle(&batch)
        }
        do { try adoption.finish(&ledger) } catch { throw .snapshot("archived events: \(error)") }
        decoding.finish()
        replayArchiving?.finish()
        let replayEnded = ContinuousClock.now
        ledger.maxSeats = configuration.maxSeats
        // The snapshot bytes and decoding buffers are gone; give their pages back
        // rather than carry the start-up peak for the life of the process.
        _ = credit_malloc_trim()

        let clock: DaemonClock
        switch configuration.clockMode {
        case .system:
            clock = DaemonClock(mode: .system)
            if let lastInstant { clock.notBefore(lastInstant) }
        case .manual:
            // A restart resumes where the journal left off (`advance-clock` records its instant),
            // whatever `--now` says: a later `--now` would move the clock without running the
            // transitions it passes (a credit due in between stayed pending, and late, until the
            // next advance), and an earlier one would move it back. `--now` starts a new state.
            let start = lastInstant ?? configuration.manualStart ?? DaemonClock.wallClock()
            clock = DaemonClock(mode: .manual, start: start)
        }
        self.store = store
        self.stateDirectory = configuration.stateDirectory
        self.recoveryReport = recovery.report
        self.subscriptionsRecovered = ledger.subscriptionCount
        self.adoptedEventChunks = adoption.adoptedChunks
        self.configuration = configuration
        self.logger = logger
        self.recoveredSequence = recovery.nextSequence - 1
        self.archiver = archiver
        snapshotBlocks.withLock { $0 = [(recovery.snapshot?.sequence ?? 0, recoveredBlocks)] }
        // A shared store's host starts as standby; its replication loop promotes it.
        self.writer = LedgerWriter(ledger: ledger, store: store, clock: clock,
                                   lastSequence: recovery.nextSequence - 1,
                                   snapshotPolicy: .init(everyRecords: configuration.snapshotEveryRecords,
                                                         interval: configuration.snapshotInterval),
                                   logger: logger, startsActive: !(store is any ReplicatedJournalStore))
        writer.start()
        logger.info("state recovered", metadata: [
            "subscriptions": "\(ledger.subscriptionCount)",
            "snapshot": "\(recovery.snapshot?.fileName ?? "none")",
            "journal_records": "\(recovery.records.count)",
            "clock": "\(clock.mode.rawValue) \(clock.now().rfc3339)",
            "read_seconds": "\(Self.seconds(storeOpened - recoveryStarted))",
            "snapshot_seconds": "\(Self.seconds(snapshotLoaded - storeOpened))",
            "replay_seconds": "\(Self.seconds(replayEnded - replayStarted))",
            "adopted_event_chunks": "\(adoption.adoptedChunks)",
        ])
    }

    /// `duration` in seconds with three decimals, as the start-up log lines give it.
    public static func seconds(_ duration: Duration) -> String {
        let millis = duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        return "\(millis / 1000).\(String(format: "%03d", Int(millis % 1000)))"
    }

    /// Applies one journal record exactly as it was applied when written.
    public static func replay(_ entry: JournalEntry, into ledger: inout Ledger) {
        switch entry {
        case .command(let command, let at, let uid, let maxSeats):
            let configured = ledger.maxSeats
            if maxSeats > 0 { ledger.maxSeats = maxSeats }
            _ = ledger.execute(command.domain, at: at, callerUID: uid, dryRun: command.dryRun)
            ledger.maxSeats = configured
        case .tick(let at, _):
            ledger.advance(to: at)
        }
    }

    /// The Credits and Admin services, answering from whatever application
    /// `gate` holds (the server parks calls until it holds one).
    public static func services(gate: ApplicationGate, hooks: AdminHooks) -> [RPCService] {
        [CreditsService.make(gate: gate), AdminService.make(gate: gate, hooks: hooks)]
    }

    /// What the server shows each read burst's requests before dispatching them.
    public static func lookAhead(gate: ApplicationGate) -> any RequestLookAhead {
        ReadLookAhead(gate: gate)
    }

    /// Writes the snapshots the writer asks for (by journal size or age), until the writer
    /// closes or the task is cancelled. Time-driven transitions need no task: the writer
    /// thread sleeps until the next one falls due.
    public func runScheduler() async {
        guard let replicated = store as? any ReplicatedJournalStore else {
            await withDiscardingTaskGroup { group in
                if let archiver {
                    group.addTask { await self.archiveInBackground(archiver) }
                }
                await writeRequestedSnapshots()
                // The writer is closed: streams and the archiving loop end.
                writer.commits.close()
            }
            return
        }
        // A shared store: its lease and standby loop runs beside the snapshots, until cancelled.
        await withDiscardingTaskGroup { group in
            group.addTask { [writer, recoveredSequence] in
                await replicated.run(after: recoveredSequence, follower: writer)
            }
            await writeRequestedSnapshots()
            group.cancelAll()
        }
    }

    /// The replication state of this process (`standalone` on the file store).
    public var replication: ReplicationStatus {
        (store as? any ReplicatedJournalStore)?.replication ?? .standalone
    }

    private func writeRequestedSnapshots() async {
        // Whichever way the loop ends, the final snapshot must not find a periodic capture
        // held that nobody will write.
        defer { writer.stopPeriodicSnapshots() }
        for await capture in writer.periodicSnapshots {
            if Task.isCancelled {
                writer.snapshotFinished()  // taken, and not written
                break
            }
            do {
                let info = try await write(capture)
                logger.info("snapshot written", metadata: ["file": "\(info.fileName)", "bytes": "\(info.bytes)"])
            } catch {
                logger.error("periodic snapshot failed", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Applies the settings a configuration reload may change while running: the seat limit
    /// of new commands and the periodic snapshot triggers.
    public func applyReloadedSettings(maxSeats: Int64, snapshotInterval: Duration, snapshotEveryRecords: Int,
                                      eventRetention: EventRetention? = nil) async {
        writer.setMaxSeats(maxSeats)
        if let eventRetention { writer.setEventRetention(eventRetention) }
        writer.setSnapshotPolicy(.init(everyRecords: snapshotEveryRecords, interval: snapshotInterval))
        await writer.ping()  // returns once the writer has taken both
    }

    /// Subscriptions in the committed ledger now (the daemon's STATUS line).
    public func currentSubscriptionCount() -> Int {
        writer.committed.ledger.subscriptionCount
    }

    /// Sealed event chunks in memory before the background pass archives them (8,192 events).
    static let archiveThreshold = 8
    /// The background pass looks again after this many more records.
    static let archiveCheckRecords: UInt64 = 256

    /// Moves sealed event chunks of the committed state into the archive as they accumulate,
    /// on a niced thread of its own, until the writer closes. Snapshots archive the rest.
    private func archiveInBackground(_ archiver: EventArchiver) async {
        var after = writer.committed.sequence
        repeat {
            let committed = writer.committed
            after = committed.sequence + Self.archiveCheckRecords
            guard EventArchiver.residentChunks(of: committed.ledger) >= Self.archiveThreshold else { continue }
            do {
                let moved = try await SnapshotPriority.run(threadName: "creditd-archive") {
                    let moved = try archiver.archive(committed.ledger, sync: false)
                    // A large pass (the backlog after a long replay) gives its pages back.
                    if moved >= 256 { _ = credit_malloc_trim() }
                    return moved
                }
                logger.debug("events archived", metadata: ["chunks": "\(moved)"])
            } catch {
                // The events stay in memory; the next snapshot tries again and reports a failure.
                logger.error("archiving events failed", metadata: ["error": "\(error)"])
            }
        } while await writer.commits.next(after: after)
    }

    /// Encodes a captured ledger on the store's snapshot thread and writes it durably. On the
    /// file store, the feed's sealed chunks are archived and synced first, and the snapshot
    /// names their blocks instead of carrying them.
    private func write(_ capture: SnapshotCapture) async throws -> SnapshotInfo {
        defer { writer.snapshotFinished() }
        let started = ContinuousClock.now
        let archiver = self.archiver
        let info: SnapshotInfo
        do {
            info = try await store.writeSnapshot(sequence: capture.sequence) {
                try archiver?.archive(capture.ledger, sync: true)
                return try SnapshotCodec.encodePayload(capture.ledger, clock: capture.clock)
            }
        } catch {
            // A snapshot given up because its caller went away (a TakeSnapshot client's
            // deadline, shutdown) did not fail.
            if !(error is CancellationError) {
                snapshotFailures.withLock { $0 = ($0.count + 1, "\(error)") }
            }
            throw error
        }
        if let archiver {
            // The store now keeps this snapshot and the newest one before its sequence: the
            // archive keeps what either names. (Not "the snapshot written last": a second
            // snapshot at the same sequence replaces the first, and the store falls back past
            // both, to one whose blocks must still be there.)
            let written = (sequence: capture.sequence, blocks: EventArchiver.blocks(of: capture.ledger))
            let kept = snapshotBlocks.withLock { saved in
                saved = EventArchiver.snapshotsKept(saved, after: written)
                return saved.flatMap(\.blocks)
            }
            do {
                try archiver.files.removeFiles(before: kept)
            } catch {
                logger.warning("removing old event archive files failed", metadata: ["error": "\(error)"])
            }
        }
        configuration.snapshotObserver?(ContinuousClock.now - started)
        return info
    }

    /// Writes a snapshot now and returns when it is durable.
    public func takeSnapshot() async throws -> SnapshotInfo {
        try await write(try await writer.captureForSnapshot())
    }

    /// A snapshot an operator asked for (`Admin/TakeSnapshot`), logged as the periodic ones are:
    /// a failure (a full disk) is in the journal, not only in the answer of a call someone
    /// may not have watched.
    public func takeRequestedSnapshot() async throws -> SnapshotInfo {
        do {
            let info = try await takeSnapshot()
            logger.info("snapshot written on request", metadata: ["file": "\(info.fileName)", "bytes": "\(info.bytes)"])
            return info
        } catch let refusal as WriteFailure where refusal.isRefusalOfTheRequest {
            // Asked of a standby, or while one is being written: the caller's answer says so,
            // and nothing failed.
            logger.notice("requested snapshot refused", metadata: ["reason": "\(refusal)"])
            throw refusal
        } catch {
            logger.error("requested snapshot failed", metadata: ["error": "\(error)"])
            throw error
        }
    }

    /// The final snapshot at shutdown, then closes the journal.
    public func shutdown() async {
        // Only the active host writes snapshots (a standby's would be refused by the fence).
        if writer.persistenceFault == nil, writer.isActive {
            do {
                let info = try await takeSnapshot()
                logger.info("final snapshot written", metadata: ["file": "\(info.fileName)"])
            } catch {
                logger.error("final snapshot failed; the journal still holds every change", metadata: ["error": "\(error)"])
            }
        }
        await writer.close()
        await store.close()
        archiver?.files.close()
    }
}
