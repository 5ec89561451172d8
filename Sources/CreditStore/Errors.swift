#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What became of the records a failed journal write or sync was about to make durable.
/// The raw values are meant for the service's error reasons (`persistence_not_applied`,
/// `persistence_outcome_unknown`).
public enum WriteOutcome: String, Sendable, Equatable, CustomStringConvertible {
    /// The records are not on disk and will never be replayed: the write failed, and the segment
    /// was truncated back to its last durable length and that length fsynced (or the records were
    /// never written at all).
    case notApplied = "not_applied"
    /// The records may or may not be replayed after a restart: fdatasync failed (the kernel may
    /// have written some of the data), or cutting a failed write back off did not succeed.
    case unknown = "outcome_unknown"

    public var description: String { rawValue }
}

/// Why the journal stopped accepting writes. Sticky: once set, nothing after
/// `firstUnacknowledgedSequence` is ever acknowledged, and the store refuses appends until it is
/// reopened (which re-reads what actually reached the disk).
///
/// Records `firstUnacknowledgedSequence ... lastAttemptedSequence` were in the failed write and
/// have outcome `outcome`; records after `lastAttemptedSequence` (queued behind the failure, or
/// appended later) were never written: `.notApplied`. Records before
/// `firstUnacknowledgedSequence` are durable, but their caller need not have heard so: an
/// `appendDurably` batch split by a segment roll syncs its first part and then fails as a whole.
/// Use `outcome(of:)`.
public struct StoreFault: Sendable, Equatable, CustomStringConvertible {
    /// The failed call: "write", "fdatasync", "open", ...
    public var operation: String
    public var path: String
    public var errno: Int32
    /// The first sequence number that was not made durable; it and every later record fail.
    /// (The name is the journal's view: `append`'s callers hear of every durable record, but an
    /// `appendDurably` caller hears of none of a failed batch's, see `outcome(of:)`.)
    public var firstUnacknowledgedSequence: UInt64
    /// The outcome of the records of the failed write (`firstUnacknowledgedSequence ...
    /// lastAttemptedSequence`).
    public var outcome: WriteOutcome
    /// The last sequence number whose bytes the failed write may have put in a segment
    /// (`firstUnacknowledgedSequence - 1` when nothing was written).
    public var lastAttemptedSequence: UInt64
    /// What was done about the failed write's bytes (truncation and its result), for the log.
    public var cleanup: String
    /// The first record of the failed `appendDurably` batch, whose caller hears of the batch as
    /// a whole. A segment roll can sync the batch's first part into the old segment before the
    /// new one fails: those records (`firstRefusedSequence ..< firstUnacknowledgedSequence`)
    /// were refused, yet are on disk and come back after a restart. Equal to
    /// `firstUnacknowledgedSequence` when no refused record was made durable.
    public var firstRefusedSequence: UInt64

    public init(
        operation: String, path: String, errno: Int32, firstUnacknowledgedSequence: UInt64,
        outcome: WriteOutcome = .unknown, lastAttemptedSequence: UInt64? = nil, cleanup: String = "",
        firstRefusedSequence: UInt64? = nil
    ) {
        self.operation = operation
        self.path = path
        self.errno = errno
        self.firstUnacknowledgedSequence = firstUnacknowledgedSequence
        self.outcome = outcome
        self.lastAttemptedSequence = lastAttemptedSequence ?? firstUnacknowledgedSequence
        self.cleanup = cleanup
        self.firstRefusedSequence = min(firstRefusedSequence ?? firstUnacknowledgedSequence, firstUnacknowledgedSequence)
    }

    /// The outcome of record `sequence`, for a caller that was not told it is durable:
    /// `outcome` for the records of the failed write, `.notApplied` for every later one, and
    /// `.unknown` for an earlier one. That one is on disk and comes back after a restart; a
    /// refusal can say no more than "unknown", and must not say "not applied", which invites a
    /// retry that would apply it twice.
    public func outcome(of sequence: UInt64) -> WriteOutcome {
        if sequence < firstUnacknowledgedSequence { return .unknown }
        return sequence <= lastAttemptedSequence ? outcome : .notApplied
    }

    public var description: String {
        let effect: String
        switch outcome {
        case .notApplied:
            effect = "records from seq \(firstUnacknowledgedSequence) on were not acknowledged and are not on disk (not applied)"
        case .unknown:
            effect = "records from seq \(firstUnacknowledgedSequence) on were not acknowledged; "
                + (lastAttemptedSequence >= firstUnacknowledgedSequence
                    ? "seq \(firstUnacknowledgedSequence)...\(lastAttemptedSequence) may or may not reappear after a restart (outcome unknown), later ones are not applied"
                    : "their outcome is unknown")
        }
        // Said first: a reader who sees "not applied" below must not take it for these too.
        let refusedButDurable = firstRefusedSequence < firstUnacknowledgedSequence
            ? "seq \(firstRefusedSequence)...\(firstUnacknowledgedSequence - 1) were refused (outcome unknown) but had "
                + "been made durable before the failure: they appear after a restart; "
            : ""
        return "journal \(operation) failed on \(path): \(String(cString: strerror(errno))) (errno \(errno)); "
            + refusedButDurable + effect + (cleanup.isEmpty ? "" : " (\(cleanup))")
            + "; the journal refuses writes until the daemon restarts and recovers"
    }
}

public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Another process (or another open store in this process) holds the directory's LOCK.
    case locked(directory: String)
    /// The journal is in its sticky fault state.
    case fault(StoreFault)
    /// The store was closed.
    case closed
    /// A journal record is damaged in a way a crash cannot explain: a full-length record with
    /// non-zero bytes whose CRC fails, damage followed by valid records, or a bad segment header
    /// that is not the newest segment's. (A torn tail, short or zero-filled, is truncated instead.)
    case corruptJournal(segment: String, offset: Int64, reason: String)
    /// The newest segment is sealed, i.e. names a successor starting at `expectedFirstSequence`,
    /// but no such segment exists: the newest journal segment was lost or deleted.
    case missingSegment(sealedSegment: String, expectedFirstSequence: UInt64)
    /// Sequence numbers are not continuous inside or between segments.
    case sequenceGap(segment: String, expected: UInt64, found: UInt64)
    /// The journal does not reach back to the record after the snapshot that recovery uses.
    case journalMissingAfterSnapshot(snapshotSequence: UInt64, firstJournalSequence: UInt64)
    /// The journal starts after seq 1 but no snapshot covers the records before it.
    case missingSnapshot(firstJournalSequence: UInt64, reason: String)
    /// Recovery would return a state older than a snapshot that exists (but does not verify),
    /// i.e. acknowledged changes would be lost.
    case acknowledgedStateLost(snapshotSequence: UInt64, journalEnd: UInt64)
    /// A snapshot or segment written by another format version.
    case unsupportedVersion(file: String, version: UInt32, supported: UInt32)
    /// writeSnapshot with a sequence that is not durable yet or older than the newest snapshot.
    case invalidSnapshotSequence(requested: UInt64, reason: String)
    /// waitDurable for a sequence number that was never assigned.
    case invalidSequence(UInt64)
    case recordTooLarge(size: Int, limit: Int)
    /// An I/O error while opening, recovering or writing a snapshot.
    case io(FileOperationError)

    public var description: String {
        switch self {
        case .locked(let directory):
            return "state directory \(directory) is locked by another creditd (LOCK held)"
        case .fault(let fault):
            return fault.description
        case .closed:
            return "the store is closed"
        case .corruptJournal(let segment, let offset, let reason):
            return "journal corrupt in \(segment) at byte \(offset): \(reason); refusing to start. "
                + "Restore the state directory from a backup, or start creditd with --repair to cut the journal off "
                + "at this record (a copy of the segment is kept; this and every later change are lost)"
        case .sequenceGap(let segment, let expected, let found):
            return "journal sequence gap in \(segment): expected seq \(expected), found \(found); refusing to start. "
                + "Restore the state directory from a backup, or start creditd with --repair to cut the journal off "
                + "before the gap (copies are kept; the changes after it are lost)"
        case .missingSegment(let sealed, let next):
            return "journal segment \(StoreFormat.segmentName(firstSequence: next)) is missing: \(sealed) is sealed and "
                + "names it as its successor, so changes from seq \(next) on were written and are gone; refusing to start. "
                + "Restore the missing segment from a backup, or start creditd with --repair to accept the loss and "
                + "continue at seq \(next)"
        case .journalMissingAfterSnapshot(let snapshotSequence, let first):
            return "journal records after snapshot seq \(snapshotSequence) are missing: the journal resumes at seq \(first); refusing to start"
        case .missingSnapshot(let first, let reason):
            return "no readable snapshot covers seq 1...\(first == 0 ? 0 : first - 1) but the journal starts at seq \(first) (\(reason)); refusing to start"
        case .acknowledgedStateLost(let snapshotSequence, let journalEnd):
            return "snapshot seq \(snapshotSequence) exists but does not verify, and the journal ends at seq \(journalEnd): "
                + "recovering would lose acknowledged changes; refusing to start (repair accepts the loss)"
        case .unsupportedVersion(let file, let version, let supported):
            return "\(file) has format version \(version); this build reads versions up to \(supported); refusing to start"
        case .invalidSnapshotSequence(let requested, let reason):
            return "cannot write snapshot at seq \(requested): \(reason)"
        case .invalidSequence(let sequence):
            return "seq \(sequence) was never assigned"
        case .recordTooLarge(let size, let limit):
            return "journal record of \(size) bytes exceeds the limit of \(limit) bytes"
        case .io(let error):
            // A state directory restored or created by root, under a unit that runs as creditd.
            if error.errno == EACCES || error.errno == EPERM {
                return error.description + "; the state directory and its files must belong to the user creditd runs as, "
                    + "who must be able to read and write them (check their owner and mode)"
            }
            return error.description
        }
    }
}
