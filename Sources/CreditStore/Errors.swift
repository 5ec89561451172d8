#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why the journal stopped accepting writes. Sticky: once set, nothing after
/// `firstUnacknowledgedSequence` is ever acknowledged, and the store refuses appends until it is
/// reopened (which re-reads what actually reached the disk).
public struct StoreFault: Sendable, Equatable, CustomStringConvertible {
    /// The failed call: "write", "fdatasync", "open", ...
    public var operation: String
    public var path: String
    public var errno: Int32
    /// The first sequence number that was not made durable; it and every later record fail.
    public var firstUnacknowledgedSequence: UInt64

    public init(operation: String, path: String, errno: Int32, firstUnacknowledgedSequence: UInt64) {
        self.operation = operation
        self.path = path
        self.errno = errno
        self.firstUnacknowledgedSequence = firstUnacknowledgedSequence
    }

    public var description: String {
        "journal \(operation) failed on \(path): \(String(cString: strerror(errno))) (errno \(errno)); "
            + "records from seq \(firstUnacknowledgedSequence) on are not durable and were not acknowledged; "
            + "the journal refuses writes until the daemon restarts and recovers"
    }
}

public enum StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Another process (or another open store in this process) holds the directory's LOCK.
    case locked(directory: String)
    /// The journal is in its sticky fault state.
    case fault(StoreFault)
    /// The store was closed.
    case closed
    /// A record that is not the journal's tail is damaged (bad CRC, bad length, bad header).
    case corruptJournal(segment: String, offset: Int64, reason: String)
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
            return "journal corrupt in \(segment) at byte \(offset): \(reason); valid data follows, so this is not a torn tail; "
                + "refusing to start (open with repair to truncate here, keeping a copy)"
        case .sequenceGap(let segment, let expected, let found):
            return "journal sequence gap in \(segment): expected seq \(expected), found \(found); refusing to start "
                + "(open with repair to truncate here, keeping a copy)"
        case .journalMissingAfterSnapshot(let snapshotSequence, let first):
            return "journal records after snapshot seq \(snapshotSequence) are missing: the journal resumes at seq \(first); refusing to start"
        case .missingSnapshot(let first, let reason):
            return "no readable snapshot covers seq 1...\(first == 0 ? 0 : first - 1) but the journal starts at seq \(first) (\(reason)); refusing to start"
        case .acknowledgedStateLost(let snapshotSequence, let journalEnd):
            return "snapshot seq \(snapshotSequence) exists but does not verify, and the journal ends at seq \(journalEnd): "
                + "recovering would lose acknowledged changes; refusing to start (repair accepts the loss)"
        case .unsupportedVersion(let file, let version, let supported):
            return "\(file) has format version \(version); this build reads version \(supported) only; refusing to start"
        case .invalidSnapshotSequence(let requested, let reason):
            return "cannot write snapshot at seq \(requested): \(reason)"
        case .invalidSequence(let sequence):
            return "seq \(sequence) was never assigned"
        case .recordTooLarge(let size, let limit):
            return "journal record of \(size) bytes exceeds the limit of \(limit) bytes"
        case .io(let error):
            return error.description
        }
    }
}
