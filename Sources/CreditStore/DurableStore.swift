import CCreditSystem
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// How to open a state directory.
public struct StoreOptions: Sendable {
    /// A segment is rolled once appending would take it past this size (a single larger
    /// record still gets a segment of its own).
    public var segmentSize: Int = 64 << 20
    /// Zeros written ahead of the records of the segment being appended to, this many bytes at a
    /// time (segment format 3), up to `segmentSize`. An fdatasync after an append that grew the
    /// file must write the inode (its size) as well as the data; into space already written it
    /// writes the data alone. On the benchmark machine's disk that took an fdatasync of a small
    /// batch from 130-150 us to 90 us, and its kernel CPU from 55 to 39 us. 0 (the default):
    /// plain appends; creditd uses `recommendedZeroFillBytes`.
    public var zeroFillBytes: Int = 0
    public static let recommendedZeroFillBytes = 1 << 20
    /// Largest payload `append` accepts.
    public var maxRecordSize: Int = 16 << 20
    /// Truncate at the first damaged record (keeping a copy as `<segment>.corrupt-<ms>`) and move
    /// later segments aside, accept a missing newest segment (continuing where it began) or an
    /// unverifiable newest snapshot, instead of refusing to open. Loses the records after the
    /// damage; every action is reported as a `.error` recovery event.
    public var repair: Bool = false
    public var fileOperations: any FileOperations = POSIXFileOperations()
    /// Called once, on the journal thread, when the journal enters its fault state (e.g. to flip
    /// health to NOT_SERVING before the failed waiters are even resumed).
    public var onFault: (@Sendable (StoreFault) -> Void)?

    public init() {}
}

/// Counters for stats, metrics and health. Read with `DurableStore.stats`; never waits on I/O.
public struct StoreStats: Sendable, Equatable {
    /// Bytes of all journal segments (headers included).
    public var journalBytes: Int64
    public var segmentCount: Int
    /// Last sequence number assigned by `append` (0: none yet).
    public var lastSequence: UInt64
    /// Highest sequence number written and fdatasync'ed.
    public var lastDurableSequence: UInt64
    public var lastSnapshotSequence: UInt64?
    /// Wall-clock time of the last snapshot (recovered or written), Unix milliseconds.
    public var lastSnapshotUnixMillis: Int64?
    public var snapshotsWritten: Int
    /// Torn tails cut off at open (logged at warning).
    public var tornTailTruncations: Int
    /// Snapshots that did not verify and that recovery fell back past at open (logged at warning).
    public var skippedSnapshots: Int
    /// Actions `repair` took at open, each of which lost data (logged at error).
    public var repairs: Int
    /// Recovery events at warning level or above at open (`RecoveryReport.events`).
    public var recoveryWarnings: Int
    /// fdatasync calls on journal segments since open.
    public var fsyncCount: Int
    /// Records made durable since open.
    public var recordsWritten: Int
    /// Records appended but not yet durable.
    public var pendingRecords: Int
    public var fault: StoreFault?
    /// `fault?.description`, for status pages.
    public var faultDescription: String? { fault?.description }
}

/// A snapshot written by `writeSnapshot`.
public struct SnapshotInfo: Sendable, Equatable {
    public var sequence: UInt64
    public var fileName: String
    /// Header plus payload.
    public var bytes: Int64
    public var unixMillis: Int64
    /// Journal segments deleted because the retained fallback snapshot covers them.
    public var removedSegments: [String]
    /// Older snapshots deleted (only the new one and its predecessor are kept).
    public var removedSnapshots: [String]
}

/// The durable storage of creditd: an append-only, segmented journal with group commit, plus
/// snapshots, in one state directory that it locks exclusively.
///
/// Blocking I/O runs only on two dedicated threads (journal writer, snapshot writer) and during
/// `open`, never on the caller's executor: `append` only enqueues, and the async methods suspend.
public final class DurableStore: Sendable {
    private let core: StoreCore

    private init(core: StoreCore) {
        self.core = core
    }

    deinit {
        core.requestClose()
    }

    /// Locks `directory` (creating it with mode 0700 if missing), recovers it and starts the
    /// journal and snapshot threads. Blocks on I/O: call it before serving, off the event loops.
    /// Throws `StoreError` when the directory is locked, damaged in a way that is not a torn tail,
    /// or written by an unknown format version.
    public static func open(directory: String, options: StoreOptions = StoreOptions()) throws(StoreError) -> (DurableStore, Recovery) {
        let (core, recovery) = try StoreCore.open(directory: directory, options: options)
        core.startThreads()
        return (DurableStore(core: core), recovery)
    }

    /// Enqueues a record and returns its sequence number. Does not block on I/O. The record is
    /// not durable until `waitDurable(upTo:)` returns for it.
    /// Throws `.fault` once the journal has failed, `.closed`, or `.recordTooLarge`.
    public func append(_ payload: [UInt8]) throws(StoreError) -> UInt64 {
        try core.append(payload)
    }

    /// Returns once every record up to `sequence` is written and fdatasync'ed. Throws `.fault`
    /// if the journal failed before that (the record is then never acknowledged;
    /// `fault.outcome(of: sequence)` says whether it can reappear after a restart), or
    /// `.invalidSequence` for a number `append` has not returned. Not cancellable: durability
    /// is a fact to wait for, not a request.
    public func waitDurable(upTo sequence: UInt64) async throws(StoreError) {
        try await core.waitDurable(upTo: sequence)
    }

    /// Writes `payloads` as the next records and fdatasyncs them on the calling thread, which
    /// blocks: for a dedicated writer thread, never an event loop. Records queued earlier with
    /// `append` go first. Returns the sequence number of the last of `payloads` (`lastSequence`
    /// when empty). Throws `.fault` when the write or sync failed (nothing of the batch is
    /// acknowledged; `fault.outcome(of:)` per record: `.notApplied` when the failed write was cut
    /// back off the segment, `.unknown` after a failed fdatasync, and `.unknown` for a first part
    /// that a segment roll split off and synced before the failure: it is on disk),
    /// `.closed`, or `.recordTooLarge` (then nothing was written).
    ///
    /// This is group commit without a hand-off: the caller applies commands while nothing is
    /// in flight, then makes the whole batch durable with one write and one fdatasync.
    public func appendDurably(_ payloads: [[UInt8]]) throws(StoreError) -> UInt64 {
        try core.appendDurably(payloads)
    }

    /// `append` then `waitDurable`; returns the record's sequence number.
    public func appendAndWait(_ payload: [UInt8]) async throws(StoreError) -> UInt64 {
        let sequence = try core.append(payload)
        try await core.waitDurable(upTo: sequence)
        return sequence
    }

    /// Writes a snapshot of the state after record `sequence`, which must be durable already.
    /// `encode` runs on the snapshot thread, so the caller can hand over a copy-on-write value and
    /// encode it off its own executor while appends continue. Afterwards keeps this snapshot and
    /// the previous good one, and deletes journal segments the previous one fully covers (so that
    /// the fallback can still replay to the present).
    public func writeSnapshot(
        sequence: UInt64, encode: @escaping @Sendable () throws -> any SnapshotPayload
    ) async throws -> SnapshotInfo {
        try await core.writeSnapshot(sequence: sequence, encode: encode)
    }

    /// `writeSnapshot` with an already encoded payload.
    public func writeSnapshot(sequence: UInt64, payload: [UInt8]) async throws -> SnapshotInfo {
        try await core.writeSnapshot(sequence: sequence, encode: { payload })
    }

    public var stats: StoreStats { core.stats }
    public var fault: StoreFault? { core.currentFault }
    public var lastDurableSequence: UInt64 { core.stats.lastDurableSequence }
    public var directory: String { core.directory }

    /// Writes and syncs what is queued, stops the threads and releases the directory lock.
    /// Later appends throw `.closed`. Queued snapshots still run.
    public func close() async {
        await core.close()
    }
}

// MARK: - Shared state

/// The directory containing `path` ("." for a bare name).
func parentDirectory(of path: String) -> String {
    var trimmed = Substring(path)
    while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
    guard let slash = trimmed.lastIndex(of: "/") else { return "." }
    return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
}

/// Sets the kernel's name of the calling thread (shown by top -H, gdb, /proc), at most 15 bytes.
/// Through /proc because Glibc's module does not export pthread_setname_np and prctl is variadic.
/// The daemon's own threads (journal, snapshots, the ledger writer) use it.
public func nameCurrentThread(_ name: String) {
    #if os(Linux)
    let descriptor = Glibc.open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return }
    _ = Array(name.utf8.prefix(15)).withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
    _ = Glibc.close(descriptor)
    #endif
}

private struct Waiter {
    var sequence: UInt64
    var continuation: CheckedContinuation<Void, any Error>
}

private struct SnapshotJob {
    var sequence: UInt64
    var encode: @Sendable () throws -> any SnapshotPayload
    var continuation: CheckedContinuation<SnapshotInfo, any Error>
}

/// What recovery found at open, for `StoreStats`.
struct RecoveryCounts {
    var truncations: Int
    var skippedSnapshots: Int
    var repairs: Int
    var warnings: Int

    init(_ report: RecoveryReport) {
        truncations = report.truncations.count
        skippedSnapshots = report.skippedSnapshots.count
        repairs = report.repairs.count
        warnings = report.events.filter { $0.severity >= .warning }.count
    }
}

struct SegmentEntry {
    var name: String
    var firstSequence: UInt64
    var bytes: Int64
}

/// State shared by callers, the journal thread and the snapshot thread. Every field is guarded
/// by `condition` (an NSCondition rather than an actor, because the two threads must block in
/// `wait()` while idle and callers of `append` must not suspend). I/O never runs under the lock.
final class StoreCore: @unchecked Sendable {
    let directory: String
    let options: StoreOptions
    let operations: any FileOperations
    private let condition = NSCondition()
    /// Wakes the snapshot thread (one signal per job or close), so that appends signal only the
    /// journal thread, the sole waiter on `condition`.
    private let snapshotWakeup = DispatchSemaphore(value: 0)

    // Guarded by `condition`.
    private var nextSequence: UInt64
    private var pendingStart: UInt64
    private var pending: [[UInt8]] = []
    private var durableSequence: UInt64
    private var fault: StoreFault?
    private var closing = false
    private var waiters: [Waiter] = []
    private var segments: [SegmentEntry]
    private var snapshotJobs: [SnapshotJob] = []
    /// Snapshots on disk that retention keeps, ascending: those written since the start, the
    /// recovered one, and the fallback before it (on disk, not read by the start).
    private var snapshotSequences: [UInt64]
    private var lastSnapshotSequence: UInt64?
    private var lastSnapshotUnixMillis: Int64?
    private var snapshotsWritten = 0
    private let recoveryCounts: RecoveryCounts
    private var fsyncCount = 0
    private var recordsWritten = 0
    private var runningThreads = 0
    private var threadsStarted = false
    private var exitWaiters: [CheckedContinuation<Void, Never>] = []
    private var lockFile: OpenFile?

    /// Serializes journal I/O between the journal thread and `appendDurably` callers.
    private let ioLock = NSLock()
    // Guarded by `ioLock` (and touched by `open` before any thread starts).
    /// The segment records go to. `size` is where its records end; `zeroedEnd` where the zeros
    /// written ahead of them end (the file's size; `size` when there are none).
    private var activeSegment: (file: OpenFile, firstSequence: UInt64, size: Int64, records: Int, zeroedEnd: Int64)?

    private init(
        directory: String, options: StoreOptions, lockFile: OpenFile, nextSequence: UInt64,
        segments: [SegmentEntry], snapshotSequences: [UInt64], lastSnapshotUnixMillis: Int64?,
        recoveryCounts: RecoveryCounts
    ) {
        self.directory = directory
        self.options = options
        self.operations = options.fileOperations
        self.lockFile = lockFile
        self.nextSequence = nextSequence
        self.pendingStart = nextSequence
        self.durableSequence = nextSequence - 1
        self.segments = segments
        self.snapshotSequences = snapshotSequences
        self.lastSnapshotSequence = snapshotSequences.last
        self.lastSnapshotUnixMillis = lastSnapshotUnixMillis
        self.recoveryCounts = recoveryCounts
    }

    private func path(_ name: String) -> String { directory + "/" + name }

    // MARK: Open and recovery

    static func open(directory: String, options: StoreOptions) throws(StoreError) -> (StoreCore, Recovery) {
        let operations = options.fileOperations
        let lockFile: OpenFile
        do {
            try operations.createDirectory(directory, mode: 0o700)
            // The directory's own entry must be durable before anything in it is acknowledged.
            // A parent this user may not open (mode 0711) is skipped: its entry predates us.
            do throws(FileOperationError) {
                try operations.syncDirectory(parentDirectory(of: directory))
            } catch where error.errno == EACCES || error.errno == EPERM {}
            lockFile = try operations.open(directory + "/" + StoreFormat.lockName, flags: O_RDWR | O_CREAT, mode: 0o600)
        } catch {
            throw .io(error)
        }
        do {
            guard try operations.tryLock(lockFile, exclusive: true) else { throw StoreError.locked(directory: directory) }
            return try recover(directory: directory, options: options, lockFile: lockFile)
        } catch let error as StoreError {
            operations.close(lockFile)
            throw error
        } catch let error as FileOperationError {
            operations.close(lockFile)
            throw .io(error)
        } catch {
            operations.close(lockFile)
            throw .io(FileOperationError(operation: "recover", path: directory, errno: EIO))
        }
    }

    private static func recover(directory: String, options: StoreOptions, lockFile: OpenFile) throws -> (StoreCore, Recovery) {
        let operations = options.fileOperations
        var analysis = try analyzeStateDirectory(
            directory, operations: operations, repair: options.repair, readCoveredSegments: false)
        if let fatal = analysis.fatal { throw fatal }

        var report = RecoveryReport(
            usedSnapshot: analysis.chosenSnapshot?.name, skippedSnapshots: analysis.skippedSnapshots,
            segmentsRead: analysis.keptSegments.map { analysis.segments[$0].name }, truncations: [],
            repairs: analysis.repairNotes, removedFiles: [], warnings: analysis.warnings)
        let stamp = StoreFormat.currentUnixMillis()
        var directoryChanged = false
        var movedAside = Set<String>()
        var removed = Set<String>()
        for action in analysis.actions {
            switch action {
            case .removeFile(let name, let reason):
                try operations.remove(directory + "/" + name)
                report.removedFiles.append("\(name) (\(reason))")
                removed.insert(name)
                directoryChanged = true
            case .truncateTail(let truncation):
                try truncate(directory + "/" + truncation.segment, to: truncation.offset, operations: operations)
                report.truncations.append(truncation)
            case .repairTruncate(let segment, let offset, let reason):
                let copy = "\(segment).corrupt-\(stamp)"
                try copyFile(from: directory + "/" + segment, to: directory + "/" + copy, operations: operations)
                // The copy's directory entry must survive a crash before the original is cut.
                try operations.syncDirectory(directory)
                try truncate(directory + "/" + segment, to: offset, operations: operations)
                report.repairs.append("\(segment): \(reason) at byte \(offset); copied to \(copy) and truncated at byte \(offset)")
                directoryChanged = true
            case .moveAside(let file, let reason):
                let aside = "\(file).corrupt-\(stamp)"
                try operations.rename(directory + "/" + file, to: directory + "/" + aside)
                report.repairs.append("\(file): \(reason); moved to \(aside)")
                movedAside.insert(file)
                directoryChanged = true
            }
        }
        if directoryChanged { try operations.syncDirectory(directory) }

        var records: [JournalRecord] = []
        records.reserveCapacity(analysis.replay.count)
        for (segmentIndex, recordIndex) in analysis.replay {
            let scan = analysis.segments[segmentIndex]
            let record = scan.records[recordIndex]
            records.append(JournalRecord(sequence: record.sequence, payload: scan.bytes[record.range]))
        }

        // Segments that remain on disk, for stats and pruning; covered ones are only sized.
        var entries: [SegmentEntry] = []
        for name in analysis.coveredSegmentNames {
            if let first = StoreFormat.sequence(inName: name, prefix: StoreFormat.segmentPrefix, suffix: StoreFormat.segmentSuffix) {
                entries.append(SegmentEntry(name: name, firstSequence: first, bytes: try operations.fileSize(directory + "/" + name)))
            }
        }
        for index in analysis.keptSegments {
            let scan = analysis.segments[index]
            guard !movedAside.contains(scan.name), !removed.contains(scan.name) else { continue }
            entries.append(SegmentEntry(name: scan.name, firstSequence: scan.nameSequence, bytes: Int64(scan.validLength)))
        }

        var snapshotSequences: [UInt64] = []
        var snapshotMillis: Int64?
        var recoveredSnapshot: RecoveredSnapshot?
        if let chosen = analysis.chosenSnapshot, case .valid(let sequence, let millis, let payload) = chosen.state {
            recoveredSnapshot = RecoveredSnapshot(sequence: sequence, contents: payload, unixMillis: millis, fileName: chosen.name)
            // The fallback too: a snapshot at the same seq (a stop with nothing written since
            // the start) replaces the recovered file, and retention then kept only that one,
            // deleting the fallback the directory had held.
            snapshotSequences = (analysis.fallbackSnapshotSequence.map { [$0] } ?? []) + [sequence]
            snapshotMillis = millis
        }
        let core = StoreCore(
            directory: directory, options: options, lockFile: lockFile, nextSequence: analysis.nextSequence,
            segments: entries, snapshotSequences: snapshotSequences, lastSnapshotUnixMillis: snapshotMillis,
            recoveryCounts: RecoveryCounts(report))
        if let index = analysis.reusableSegment {
            let scan = analysis.segments[index]
            let file = try operations.open(directory + "/" + scan.name, flags: O_WRONLY, mode: 0)
            core.activeSegment = (file, scan.nameSequence, Int64(scan.validLength), scan.records.count,
                                  Int64(scan.validLength + scan.zeroFilledBytes))
        }
        if analysis.startsNewSegment { try core.startSegment(firstSequence: analysis.nextSequence) }
        analysis.segments = []  // release file contents before replay
        let recovery = Recovery(
            snapshot: recoveredSnapshot, records: records, nextSequence: analysis.nextSequence, report: report)
        return (core, recovery)
    }

    private static func truncate(_ path: String, to length: Int64, operations: any FileOperations) throws(FileOperationError) {
        let file = try operations.open(path, flags: O_WRONLY, mode: 0)
        defer { operations.close(file) }
        try operations.truncate(file, to: length)
        try operations.sync(file)
    }

    /// A copy that could not be written whole (a full disk) is removed: the repair stops with
    /// the reason and the segment untouched, and leaves no empty or partial `.corrupt-` file that
    /// looks like a kept copy.
    private static func copyFile(from source: String, to target: String, operations: any FileOperations) throws(FileOperationError) {
        let bytes = try operations.readFile(source)
        let file = try operations.open(target, flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        do throws(FileOperationError) {
            defer { operations.close(file) }
            try operations.write(file, bytes, at: 0)
            try operations.sync(file)
        } catch {
            try? operations.remove(target)
            throw error
        }
    }

    // MARK: Threads

    func startThreads() {
        condition.withLock {
            runningThreads = 2
            threadsStarted = true
        }
        Thread { [self] in
            nameCurrentThread("creditd-journal")
            runJournalWriter()
        }.start()
        Thread { [self] in
            nameCurrentThread("creditd-snap")
            SnapshotPriority.lowerCurrentThread()
            runSnapshotWriter()
        }.start()
    }

    func requestClose() {
        condition.withLock {
            closing = true
            condition.signal()
        }
        snapshotWakeup.signal()
    }

    func close() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            condition.lock()
            closing = true
            condition.signal()
            snapshotWakeup.signal()
            if runningThreads == 0 {
                condition.unlock()
                continuation.resume()
            } else {
                exitWaiters.append(continuation)
                condition.unlock()
            }
        }
    }

    /// Called by each thread as it exits; the last one releases the directory lock.
    private func threadExited() {
        condition.lock()
        runningThreads -= 1
        guard runningThreads == 0 else {
            condition.unlock()
            return
        }
        let file = lockFile
        lockFile = nil
        let waiting = exitWaiters
        exitWaiters = []
        condition.unlock()
        if let file { operations.close(file) }
        for waiter in waiting { waiter.resume() }
    }

    // MARK: Appending

    func append(_ payload: [UInt8]) throws(StoreError) -> UInt64 {
        guard payload.count <= options.maxRecordSize, payload.count <= Int(UInt32.max) else {
            throw .recordTooLarge(size: payload.count, limit: options.maxRecordSize)
        }
        condition.lock()
        defer { condition.unlock() }
        if let fault { throw .fault(fault) }
        if closing { throw .closed }
        let sequence = nextSequence
        nextSequence += 1
        pending.append(payload)
        condition.signal()
        return sequence
    }

    func appendDurably(_ payloads: [[UInt8]]) throws(StoreError) -> UInt64 {
        for payload in payloads where payload.count > options.maxRecordSize || payload.count > Int(UInt32.max) {
            throw .recordTooLarge(size: payload.count, limit: options.maxRecordSize)
        }
        ioLock.lock()
        defer { ioLock.unlock() }
        condition.lock()
        if let fault {
            condition.unlock()
            throw .fault(fault)
        }
        if closing {
            condition.unlock()
            throw .closed
        }
        let batch = pending + payloads
        let start = pendingStart
        pending = []
        nextSequence += UInt64(payloads.count)
        pendingStart = nextSequence
        let last = nextSequence - 1
        condition.unlock()
        // `payloads` start after the queued records (whose callers hear of each one as it
        // becomes durable); their caller hears of them as a whole.
        if !batch.isEmpty { writeBatch(batch, startingAt: start, refusedWholeFrom: start + UInt64(batch.count - payloads.count)) }
        if let fault = currentFault { throw .fault(fault) }
        return last
    }

    private enum DurableCheck {
        case durable
        case failed(StoreError)
        case pending
    }

    private func checkDurable(_ sequence: UInt64) -> DurableCheck {
        condition.withLock {
            if sequence <= durableSequence { return .durable }
            if let fault { return .failed(.fault(fault)) }
            if sequence >= nextSequence { return .failed(.invalidSequence(sequence)) }
            return .pending
        }
    }

    /// Registers the waiter unless the answer is already known (the journal thread may have
    /// finished the batch since the fast-path check).
    private func register(_ sequence: UInt64, _ continuation: CheckedContinuation<Void, any Error>) {
        let check: DurableCheck = condition.withLock {
            if sequence <= durableSequence { return .durable }
            if let fault { return .failed(.fault(fault)) }
            waiters.append(Waiter(sequence: sequence, continuation: continuation))
            return .pending
        }
        switch check {
        case .durable: continuation.resume()
        case .failed(let error): continuation.resume(throwing: error)
        case .pending: break
        }
    }

    func waitDurable(upTo sequence: UInt64) async throws(StoreError) {
        switch checkDurable(sequence) {
        case .durable: return
        case .failed(let error): throw error
        case .pending: break
        }
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                register(sequence, continuation)
            }
        } catch let error as StoreError {
            throw error
        } catch {
            throw .closed
        }
    }

    var currentFault: StoreFault? { condition.withLock { fault } }

    var stats: StoreStats {
        condition.withLock {
            // After a fault the refused records have seqs but are not in the journal, and never
            // will be: the newest record is the last durable one.
            let last = fault == nil ? nextSequence - 1 : durableSequence
            return StoreStats(
                journalBytes: segments.reduce(0) { $0 + $1.bytes }, segmentCount: segments.count,
                lastSequence: last, lastDurableSequence: durableSequence,
                lastSnapshotSequence: lastSnapshotSequence, lastSnapshotUnixMillis: lastSnapshotUnixMillis,
                snapshotsWritten: snapshotsWritten, tornTailTruncations: recoveryCounts.truncations,
                skippedSnapshots: recoveryCounts.skippedSnapshots, repairs: recoveryCounts.repairs,
                recoveryWarnings: recoveryCounts.warnings,
                fsyncCount: fsyncCount, recordsWritten: recordsWritten,
                pendingRecords: Int(last - durableSequence), fault: fault)
        }
    }

    // MARK: Journal thread

    private func runJournalWriter() {
        while true {
            condition.lock()
            while pending.isEmpty && !closing { condition.wait() }
            if pending.isEmpty || fault != nil {
                // Closing with nothing queued, or faulted (appends are refused, queue is empty).
                if closing {
                    condition.unlock()
                    break
                }
                condition.unlock()
                continue
            }
            condition.unlock()
            // Lock order: ioLock, then condition. The queue is taken only under both, so
            // whoever writes (this thread or `appendDurably`) writes everything queued before
            // it, in sequence order.
            ioLock.lock()
            condition.lock()
            let batch = pending
            let start = pendingStart
            pending = []
            pendingStart += UInt64(batch.count)
            condition.unlock()
            if !batch.isEmpty { writeBatch(batch, startingAt: start) }
            ioLock.unlock()
        }
        ioLock.withLock {
            if let active = activeSegment {
                operations.close(active.file)
                activeSegment = nil
            }
        }
        threadExited()
    }

    /// Why a batch failed, and what that means for its records.
    private struct WriteFailure: Error {
        var error: FileOperationError
        var outcome: WriteOutcome
        /// Last sequence number whose bytes may be in a segment.
        var lastAttempted: UInt64
        var cleanup: String
    }

    /// One write and one fdatasync for the whole batch, unless a segment roll splits it.
    /// On failure the journal enters its fault state; bytes of the failed write are cut back off
    /// (see `cutBack`), so that a refused record is either not applied or reported as unknown.
    /// Writes and syncs `batch` (seqs from `start`). Records from `refusedWholeFrom` on belong
    /// to an `appendDurably` caller, who is refused all of them if any fails.
    private func writeBatch(_ batch: [[UInt8]], startingAt start: UInt64, refusedWholeFrom: UInt64? = nil) {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(batch.reduce(0) { $0 + StoreFormat.recordSize(payloadCount: $1.count) })
        var bufferedRecords = 0
        var sequence = start
        do throws(WriteFailure) {
            for payload in batch {
                let size = Int64(StoreFormat.recordSize(payloadCount: payload.count))
                if let active = activeSegment {
                    let used = active.size + Int64(buffer.count)
                    if active.records + bufferedRecords > 0
                        && used + size + Int64(StoreFormat.sealRecordSize) > Int64(options.segmentSize) {
                        try flush(&buffer, records: &bufferedRecords, through: sequence - 1)
                        try rollSegment(firstSequence: sequence)
                    }
                } else {
                    try rollSegment(firstSequence: sequence)
                }
                StoreFormat.appendRecord(sequence: sequence, payload: payload, to: &buffer)
                bufferedRecords += 1
                sequence += 1
            }
            try flush(&buffer, records: &bufferedRecords, through: sequence - 1)
        } catch {
            enterFault(error, refusedWholeFrom: refusedWholeFrom)
        }
    }

    private func flush(_ buffer: inout [UInt8], records: inout Int, through sequence: UInt64) throws(WriteFailure) {
        guard records > 0, var active = activeSegment else { return }
        let durableLength = active.size
        let recordBytes = buffer.count
        let recordsEnd = active.size + Int64(recordBytes)
        // Past the zeros written so far, the same write carries the next stretch of zeros, so
        // the fdatasync after it is the only one in a stretch that writes the inode.
        var zeroFill = 0
        if recordsEnd > active.zeroedEnd {
            zeroFill = max(0, min(options.zeroFillBytes, options.segmentSize - Int(recordsEnd)))
            buffer.append(contentsOf: repeatElement(0, count: zeroFill))
        }
        do throws(FileOperationError) {
            defer { buffer.removeLast(zeroFill) }   // the caller's buffer holds records only
            do throws(FileOperationError) {
                try operations.write(active.file, buffer, at: active.size)
            } catch where zeroFill > 0 && (error.errno == ENOSPC || error.errno == EDQUOT) {
                // The zeros are only an optimization: a disk too full for them may still hold
                // the records (over blocks the failed write allocated, if it got that far).
                buffer.removeLast(zeroFill)
                zeroFill = 0
                try operations.write(active.file, buffer, at: active.size)
            }
        } catch {
            // Part of the batch (whole records, even) may be in the file: cut it back off.
            throw cutBack(after: error, syncFailed: false, to: durableLength, lastAttempted: sequence)
        }
        active.size = recordsEnd
        active.zeroedEnd = max(active.zeroedEnd, recordsEnd + Int64(zeroFill))
        active.records += records
        activeSegment = active
        setSegmentSize(active.size, name: active.file.path)
        do throws(FileOperationError) {
            try operations.syncData(active.file)
        } catch {
            throw cutBack(after: error, syncFailed: true, to: durableLength, lastAttempted: sequence)
        }
        let written = records
        buffer.removeAll(keepingCapacity: true)
        records = 0
        markDurable(through: sequence, records: written)
    }

    /// After a failed write or fdatasync of the active segment: truncates it back to
    /// `durableLength` (its length after the last successful fdatasync) and fsyncs that, so that
    /// the refused records cannot be replayed after a restart. The outcome is `.notApplied` only
    /// when the failure was the write and the truncation and its fsync succeeded; after a failed
    /// fdatasync the kernel may already have written (and then dropped) some of the pages, and
    /// nothing proves where the file ends on disk, so it is `.unknown` even if truncation works.
    private func cutBack(
        after error: FileOperationError, syncFailed: Bool, to durableLength: Int64, lastAttempted: UInt64
    ) -> WriteFailure {
        guard let active = activeSegment else {
            return WriteFailure(error: error, outcome: .unknown, lastAttempted: lastAttempted, cleanup: "")
        }
        let name = StoreFormat.baseName(active.file.path)
        do throws(FileOperationError) {
            try operations.truncate(active.file, to: durableLength)
            try operations.sync(active.file)
        } catch let cleanupError {
            return WriteFailure(
                error: error, outcome: .unknown, lastAttempted: lastAttempted,
                cleanup: "cutting \(name) back to its last durable length of \(durableLength) bytes failed: \(cleanupError)")
        }
        activeSegment?.size = durableLength
        activeSegment?.zeroedEnd = durableLength
        setSegmentSize(durableLength, name: active.file.path)
        return WriteFailure(
            error: error, outcome: syncFailed ? .unknown : .notApplied, lastAttempted: lastAttempted,
            cleanup: "\(name) was truncated back to its last durable length of \(durableLength) bytes and fsynced")
    }

    private func setSegmentSize(_ size: Int64, name path: String) {
        condition.withLock {
            if let index = segments.lastIndex(where: { self.path($0.name) == path }) { segments[index].bytes = size }
        }
    }

    /// Starts segment `firstSequence` and seals the one before it. Order matters for recovery:
    /// the new segment (header fdatasync'ed, directory fsync'ed) exists before the old one names
    /// it in its seal, and records go to the new segment only once the seal is durable. So a
    /// sealed last segment always means a lost successor, and a torn seal can only be followed by
    /// an empty segment. Nothing of the batch being written is in either file when this fails:
    /// the outcome is `.notApplied`.
    /// Makes the segment that continues the journal now rather than at the first append: after
    /// a repair that accepted a lost successor segment, so that the repair holds even if the
    /// daemon stops before its first write (the next start would otherwise meet the same loss).
    func startSegment(firstSequence: UInt64) throws(FileOperationError) {
        do throws(WriteFailure) {
            try rollSegment(firstSequence: firstSequence)
        } catch {
            throw error.error
        }
    }

    private func rollSegment(firstSequence: UInt64) throws(WriteFailure) {
        let name = StoreFormat.segmentName(firstSequence: firstSequence)
        func failure(_ error: FileOperationError, _ cleanup: String) -> WriteFailure {
            WriteFailure(error: error, outcome: .notApplied, lastAttempted: firstSequence - 1, cleanup: cleanup)
        }
        // O_EXCL: a segment with this first sequence must not exist; never overwrite records.
        let file: OpenFile
        do throws(FileOperationError) {
            file = try operations.open(path(name), flags: O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        } catch {
            throw failure(error, "")
        }
        let header = StoreFormat.segmentHeader(firstSequence: firstSequence)
        do throws(FileOperationError) {
            try operations.write(file, header, at: 0)
            try operations.syncData(file)
            condition.withLock { fsyncCount += 1 }
            try operations.syncDirectory(directory)
        } catch {
            operations.close(file)
            // Best effort: recovery also removes a segment torn while being created.
            let removed = (try? operations.remove(path(name))) != nil && (try? operations.syncDirectory(directory)) != nil
            throw failure(error, removed ? "removed the new segment \(name)" : "could not remove the new segment \(name)")
        }
        condition.withLock {
            segments.append(SegmentEntry(name: name, firstSequence: firstSequence, bytes: Int64(header.count)))
        }
        if let previous = activeSegment {
            let seal = StoreFormat.sealRecord(nextSequence: firstSequence)
            do throws(FileOperationError) {
                try operations.write(previous.file, seal, at: previous.size)
                // A full segment keeps no zeros after its seal (recovery accepts them if a crash
                // comes before this is durable).
                if previous.zeroedEnd > previous.size + Int64(seal.count) {
                    try operations.truncate(previous.file, to: previous.size + Int64(seal.count))
                }
                try operations.syncData(previous.file)
                condition.withLock { fsyncCount += 1 }
            } catch {
                // A torn or missing seal before an empty successor is harmless; still cut it off.
                let cutBack = (try? operations.truncate(previous.file, to: previous.size)) != nil
                    && (try? operations.sync(previous.file)) != nil
                operations.close(previous.file)
                activeSegment = nil
                operations.close(file)
                throw failure(error, "sealing \(StoreFormat.baseName(previous.file.path)) failed"
                    + (cutBack ? "; cut its seal back off" : "; could not cut its seal back off"))
            }
            setSegmentSize(previous.size + Int64(seal.count), name: previous.file.path)
            operations.close(previous.file)
        }
        activeSegment = (file, firstSequence, Int64(header.count), 0, Int64(header.count))
    }

    private func markDurable(through sequence: UInt64, records: Int) {
        condition.lock()
        durableSequence = sequence
        fsyncCount += 1
        recordsWritten += records
        var ready: [CheckedContinuation<Void, any Error>] = []
        waiters.removeAll { waiter in
            guard waiter.sequence <= sequence else { return false }
            ready.append(waiter.continuation)
            return true
        }
        condition.unlock()
        for continuation in ready { continuation.resume() }
    }

    private func enterFault(_ failure: WriteFailure, refusedWholeFrom: UInt64?) {
        condition.lock()
        let error = failure.error
        let newFault = StoreFault(
            operation: error.operation, path: error.path, errno: error.errno,
            firstUnacknowledgedSequence: durableSequence + 1, outcome: failure.outcome,
            lastAttemptedSequence: max(failure.lastAttempted, durableSequence), cleanup: failure.cleanup,
            firstRefusedSequence: refusedWholeFrom)
        fault = newFault
        // Nothing queued behind the failed batch may be written either: it would reach the disk
        // after a hole, and its callers must learn it failed.
        pendingStart += UInt64(pending.count)
        pending = []
        let failed = waiters
        waiters = []
        condition.unlock()
        options.onFault?(newFault)
        for waiter in failed { waiter.continuation.resume(throwing: StoreError.fault(newFault)) }
    }

    // MARK: Snapshot thread

    func writeSnapshot(sequence: UInt64, encode: @escaping @Sendable () throws -> any SnapshotPayload) async throws -> SnapshotInfo {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<SnapshotInfo, any Error>) in
            condition.lock()
            // Refused once closing: the snapshot thread may already have decided to exit.
            if closing || !threadsStarted {
                condition.unlock()
                continuation.resume(throwing: StoreError.closed)
                return
            }
            snapshotJobs.append(SnapshotJob(sequence: sequence, encode: encode, continuation: continuation))
            condition.unlock()
            snapshotWakeup.signal()
        }
    }

    private func runSnapshotWriter() {
        while true {
            condition.lock()
            if snapshotJobs.isEmpty {
                let exit = closing
                condition.unlock()
                if exit { break }
                snapshotWakeup.wait()
                continue
            }
            let job = snapshotJobs.removeFirst()
            condition.unlock()
            do {
                job.continuation.resume(returning: try performSnapshot(sequence: job.sequence, encode: job.encode))
            } catch {
                job.continuation.resume(throwing: error)
            }
        }
        threadExited()
    }

    /// Writes and fsyncs a new snapshot file. With O_DIRECT where the file system has it: a
    /// snapshot is hundreds of MB written once and read only at the next start, and copying it
    /// into the page cache took up to a second at 1M subscriptions (whenever the cache had to
    /// grow for it) against a quarter of that straight to the disk; it also kept that much
    /// cache charged to the daemon. Elsewhere (tmpfs refuses O_DIRECT) a plain write.
    ///
    /// The payload goes in after room for the header, which is written last: the payload's
    /// length and checksum are known only once every piece has been made (`SnapshotPayload`).
    /// The file is a temporary one until the caller renames it, so no reader sees it half
    /// written. Returns the file's length.
    private func writeSnapshotFile(_ path: String, sequence: UInt64, unixMillis: Int64,
                                   payload: some SnapshotPayload) throws(FileOperationError) -> Int {
        let file: OpenFile
        let direct: Bool
        do {
            file = try operations.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC | credit_o_direct(), mode: 0o600)
            direct = true
        } catch where error.errno == EINVAL {
            file = try operations.open(path, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
            direct = false
        }
        defer { operations.close(file) }
        let headerSize = StoreFormat.snapshotHeaderSize
        func header(_ length: Int, _ checksum: UInt32) -> [UInt8] {
            StoreFormat.snapshotHeader(sequence: sequence, payloadLength: length, payloadChecksum: checksum, unixMillis: unixMillis)
        }
        let length: Int
        if direct {
            length = try Self.writeAligned(file, headerSize: headerSize, payload: payload, operations: operations, header: header)
        } else {
            var offset = headerSize
            var checksum: UInt32 = 0
            try payload.forEachPiece { (piece) throws(FileOperationError) in
                try operations.write(file, piece, at: Int64(offset))
                checksum = CRC32C.update(checksum, piece)
                offset += piece.count
            }
            length = offset - headerSize
            try operations.write(file, header(length, checksum), at: 0)
        }
        try operations.sync(file)
        return headerSize + length
    }

    /// O_DIRECT wants the buffer, offset and length aligned to the device's blocks: the bytes go
    /// through a 4096-aligned staging buffer, filled first with `headerSize` zero bytes (the
    /// header's room) and then from each piece of the payload in turn, the last piece
    /// zero-padded to a whole block. The first block is kept; once the payload is written, the
    /// header (`header(length, checksum)`) goes into it and it is written again. The file is
    /// then cut to its exact length. Returns the payload's length.
    static func writeAligned(_ file: OpenFile, headerSize: Int, payload: some SnapshotPayload, operations: any FileOperations,
                             header: (Int, UInt32) -> [UInt8]) throws(FileOperationError) -> Int {
        let block = 4_096
        let staging = UnsafeMutableRawBufferPointer.allocate(byteCount: 8 << 20, alignment: block)
        defer { staging.deallocate() }
        let firstBlock = UnsafeMutableRawBufferPointer.allocate(byteCount: block, alignment: block)
        defer { firstBlock.deallocate() }
        var filled = headerSize
        staging.baseAddress!.initializeMemory(as: UInt8.self, repeating: 0, count: headerSize)
        var stagingOffset: Int64 = 0
        var length = 0
        var checksum: UInt32 = 0
        func flush(_ count: Int) throws(FileOperationError) {
            if stagingOffset == 0 {
                firstBlock.copyMemory(from: UnsafeRawBufferPointer(rebasing: staging[0..<block]))
            }
            try operations.write(file, UnsafeRawBufferPointer(rebasing: staging[0..<count]), at: stagingOffset)
            stagingOffset += Int64(count)
        }
        try payload.forEachPiece { (piece) throws(FileOperationError) in
            checksum = CRC32C.update(checksum, piece)
            length += piece.count
            var rest = piece
            while !rest.isEmpty {
                let part = min(staging.count - filled, rest.count)
                (staging.baseAddress! + filled).copyMemory(from: rest.baseAddress!, byteCount: part)
                filled += part
                rest = UnsafeRawBufferPointer(rebasing: rest[part...])
                if filled == staging.count {
                    try flush(filled)
                    filled = 0
                }
            }
        }
        if filled > 0 || stagingOffset == 0 {
            let padded = max((filled + block - 1) / block * block, block)
            if padded > filled { (staging.baseAddress! + filled).initializeMemory(as: UInt8.self, repeating: 0, count: padded - filled) }
            try flush(padded)
        }
        let headerBytes = header(length, checksum)
        precondition(headerBytes.count == headerSize, "snapshot header of \(headerBytes.count) bytes, \(headerSize) announced")
        headerBytes.withUnsafeBytes { firstBlock.copyMemory(from: $0) }
        try operations.write(file, UnsafeRawBufferPointer(firstBlock), at: 0)
        try operations.truncate(file, to: Int64(headerSize + length))
        return length
    }

    private func performSnapshot(sequence: UInt64, encode: @Sendable () throws -> any SnapshotPayload) throws -> SnapshotInfo {
        let previous: UInt64? = try condition.withLock { () throws(StoreError) -> UInt64? in
            guard sequence <= durableSequence else {
                throw .invalidSnapshotSequence(requested: sequence, reason: "only seq \(durableSequence) is durable")
            }
            if let newest = snapshotSequences.last, sequence < newest {
                throw .invalidSnapshotSequence(requested: sequence, reason: "snapshot seq \(newest) is newer")
            }
            return snapshotSequences.last { $0 < sequence }
        }
        let payload = try encode()
        let unixMillis = StoreFormat.currentUnixMillis()
        let name = StoreFormat.snapshotName(sequence: sequence)
        let temporary = path(name + StoreFormat.temporarySuffix)
        let fileBytes: Int
        do throws(FileOperationError) {
            fileBytes = try writeSnapshotFile(temporary, sequence: sequence, unixMillis: unixMillis, payload: payload)
            try operations.rename(temporary, to: path(name))
            try operations.syncDirectory(directory)
        } catch {
            try? operations.remove(temporary)
            throw StoreError.io(error)
        }

        // Retention: keep this snapshot and the previous good one; the journal must still reach
        // back to the previous one so that it stays a usable fallback.
        let keep: Set<UInt64> = previous.map { [sequence, $0] } ?? [sequence]
        var removedSnapshots: [String] = []
        for entry in (try? operations.listDirectory(directory)) ?? [] {
            guard let other = StoreFormat.sequence(inName: entry, prefix: StoreFormat.snapshotPrefix, suffix: StoreFormat.snapshotSuffix),
                  !keep.contains(other) else { continue }
            if (try? operations.remove(path(entry))) != nil { removedSnapshots.append(entry) }
        }
        let doomed: [SegmentEntry] = condition.withLock {
            snapshotSequences = keep.sorted()
            lastSnapshotSequence = sequence
            lastSnapshotUnixMillis = unixMillis
            snapshotsWritten += 1
            guard let previous else { return [] }
            var doomed: [SegmentEntry] = []
            // A segment is covered when the next one starts at or before previous + 1; the last
            // segment (the one being appended to) is never removed.
            while segments.count >= 2 && segments[1].firstSequence <= previous + 1 {
                doomed.append(segments.removeFirst())
            }
            return doomed
        }
        var removedSegments: [String] = []
        for segment in doomed {
            do {
                try operations.remove(path(segment.name))
                removedSegments.append(segment.name)
            } catch {
                // Harmless: recovery skips covered segments; the next snapshot retries.
                condition.withLock { segments.insert(segment, at: 0) }
            }
        }
        // Best effort: a deletion that a crash undoes brings back a covered segment or an older
        // snapshot, both of which recovery skips; nothing acknowledged depends on it.
        if !removedSnapshots.isEmpty || !removedSegments.isEmpty { try? operations.syncDirectory(directory) }
        return SnapshotInfo(
            sequence: sequence, fileName: name, bytes: Int64(fileBytes), unixMillis: unixMillis,
            removedSegments: removedSegments, removedSnapshots: removedSnapshots)
    }
}
