#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One snapshot file as `verifyStateDirectory` found it.
public struct SnapshotCheck: Sendable, Equatable {
    public var fileName: String
    public var sequence: UInt64
    public var bytes: Int64
    public var unixMillis: Int64?
    public var verified: Bool
    public var problem: String?
    /// What the caller's `describePayload` said about a verified snapshot's payload (the store
    /// does not read payloads; creditd names the ledger encoding inside).
    public var payload: String?
}

/// One journal segment as `verifyStateDirectory` found it.
public struct SegmentCheck: Sendable, Equatable {
    public var fileName: String
    public var firstSequence: UInt64
    /// Last valid record's sequence number (nil: no valid records).
    public var lastSequence: UInt64?
    public var records: Int
    public var bytes: Int64
    /// Bytes that hold valid header and records.
    public var validBytes: Int64
    /// Zeros after the records, written ahead of them (format 3): not damage.
    public var zeroFilledBytes: Int64 = 0
    public var problem: String?
    /// Segment format version from the header (nil when the header is not valid).
    public var formatVersion: UInt32?
    /// The segment is sealed (format 2) and names its successor's first sequence number.
    public var sealedNextSequence: UInt64?
    /// What kind of damage `problem` is, if any.
    public var damage: SegmentDamage?
    /// Damage recovery reads past, because the newest snapshot covers every record it held:
    /// `records` leaves those sequences out, `validBytes` counts their bytes.
    public var coveredDamage: [CoveredDamage] = []
}

/// How recovery classifies damage in a segment.
public enum SegmentDamage: String, Sendable, Equatable {
    /// A write cut short by a crash (short or zero-filled): truncated at open if it is the tail.
    case torn
    /// Anything a crash cannot explain: refused at open; `--repair` cuts there.
    case corrupt
    /// A format version this build does not read.
    case unsupportedVersion = "unsupported_version"
}

/// The result of a read-only check of a state directory (`creditd verify-state DIR`).
public struct VerificationReport: Sendable, Equatable, CustomStringConvertible {
    public var directory: String
    public var snapshots: [SnapshotCheck]  // newest first
    public var segments: [SegmentCheck]  // oldest first
    /// The event archive's files, oldest first.
    public var archiveFiles: [EventArchiveFiles.FileCheck] = []
    /// Valid records in all segments.
    public var recordCount: Int
    public var firstSequence: UInt64?
    public var lastSequence: UInt64?
    /// The snapshot a normal open would recover from.
    public var usableSnapshot: String?
    /// The sequence number a normal open would continue with (nil when it would refuse).
    public var nextSequence: UInt64?
    /// Reasons a normal open would refuse to start.
    public var problems: [String]
    /// Findings a normal open handles on its own (torn tail it would truncate, snapshots it would
    /// skip, leftover temporary files), or damage in segments the snapshot already covers. The
    /// daemon logs the same findings at warning (leftover files at notice).
    public var warnings: [String]
    /// Another process holds the directory's LOCK: the tail may be changing while it is read.
    public var inUse: Bool
    /// When a normal open would refuse: what `--repair` would do, each line losing data.
    public var repairActions: [String] = []
    /// When even `--repair` would refuse: why.
    public var repairRefusal: String?
    /// Files recovery ignores (kept copies of `--repair`, files someone else put here).
    public var otherFiles: [String] = []

    /// A normal open would succeed.
    public var recoverable: Bool { problems.isEmpty }
    /// Nothing at all to report.
    public var isClean: Bool { problems.isEmpty && warnings.isEmpty }

    public var description: String {
        var lines = ["state directory \(directory)\(inUse ? " (in use by a running daemon)" : "")"]
        for snapshot in snapshots {
            lines.append("  snapshot \(snapshot.fileName): seq \(snapshot.sequence), \(snapshot.bytes) bytes, "
                + (snapshot.verified ? "ok" : "BAD: \(snapshot.problem ?? "unknown")")
                + (snapshot.payload.map { ", \($0)" } ?? ""))
        }
        for segment in segments {
            let range = segment.lastSequence.map { "seq \(segment.firstSequence)...\($0)" } ?? "no records"
            lines.append("  segment \(segment.fileName): \(range), \(segment.records) records, \(segment.bytes) bytes"
                + (segment.formatVersion.map { ", format \($0)" } ?? "")
                + (segment.sealedNextSequence.map { ", sealed (next segment starts at seq \($0))" } ?? "")
                + (segment.zeroFilledBytes > 0 ? ", \(segment.zeroFilledBytes) bytes zero-filled ahead" : "")
                + segment.coveredDamage.map { damage in
                    let sequences = "seq \(damage.sequences.lowerBound)...\(damage.sequences.upperBound)"
                    return damage.bytes.isEmpty
                        ? ", \(sequences) missing at byte \(damage.bytes.lowerBound) (covered by the snapshot)"
                        : ", damaged bytes \(damage.bytes.lowerBound)..<\(damage.bytes.upperBound) read past "
                            + "(\(sequences), covered by the snapshot)"
                }.joined()
                + (segment.problem.map { ", BAD: \($0)" } ?? ""))
        }
        for file in archiveFiles {
            let range = file.firstSeq.map { first in ", events from seq \(first) (last block from \(file.lastBlockSeq ?? first))" } ?? ""
            lines.append("  event archive \(file.fileName): \(file.blocks) blocks\(range), \(file.bytes) bytes"
                + (file.problem.map { ", BAD: \($0)" } ?? ""))
        }
        if !otherFiles.isEmpty {
            lines.append("  other files (recovery ignores them): " + otherFiles.joined(separator: ", "))
        }
        let range = firstSequence.map { first in "seq \(first)...\(lastSequence ?? first)" } ?? "no records"
        lines.append("  journal: \(recordCount) records, \(range)")
        lines.append("  recovery would use: \(usableSnapshot ?? "no snapshot")"
            + (nextSequence.map { ", continue at seq \($0)" } ?? ""))
        lines += warnings.map { "  warning: \($0)" }
        lines += problems.map { "  PROBLEM: \($0)" }
        lines += repairActions.map { "  --repair would: \($0)" }
        if let repairRefusal { lines.append("  --repair cannot fix this: \(repairRefusal)") }
        lines.append(recoverable ? (isClean ? "  result: OK" : "  result: recoverable") : "  result: NOT RECOVERABLE without intervention")
        return lines.joined(separator: "\n")
    }
}

func segmentDamage(_ scan: SegmentScan) -> SegmentDamage? {
    switch scan.header {
    case .unsupportedVersion: return .unsupportedVersion
    case .torn: return .torn
    case .corrupt: return .corrupt
    case .valid:
        guard let bad = scan.bad else { return nil }
        return bad.torn && !bad.validDataFollows ? .torn : .corrupt
    }
}

/// Checks a state directory without changing it: every snapshot and segment is read and verified.
/// Throws only when the directory cannot be listed or read.
public func verifyStateDirectory(
    _ path: String, fileOperations: any FileOperations = POSIXFileOperations(),
    describePayload: ((UnsafeBufferPointer<UInt8>) -> String)? = nil
) throws(StoreError) -> VerificationReport {
    let analysis: DirectoryAnalysis
    var inUse = false
    do {
        if let lock = try? fileOperations.open(path + "/" + StoreFormat.lockName, flags: O_RDONLY, mode: 0) {
            inUse = !((try? fileOperations.tryLock(lock, exclusive: false)) ?? true)
            fileOperations.close(lock)
        }
        analysis = try analyzeStateDirectory(path, operations: fileOperations, repair: false, readCoveredSegments: true)
    } catch {
        throw .io(error)
    }
    var report = VerificationReport(
        directory: path, snapshots: [], segments: [], recordCount: 0, firstSequence: nil, lastSequence: nil,
        usableSnapshot: analysis.chosenSnapshot?.name, nextSequence: nil, problems: [], warnings: [], inUse: inUse)
    report.otherFiles = analysis.otherFiles
    for scan in analysis.snapshots {
        var check = SnapshotCheck(
            fileName: scan.name, sequence: scan.nameSequence, bytes: scan.bytes, unixMillis: nil, verified: false, problem: nil)
        switch scan.state {
        case .valid(_, let millis, let payload):
            check.verified = true
            check.unixMillis = millis
            // Read where it lies: a large snapshot is mapped, and a copy would cost its size.
            check.payload = describePayload.map { describe in payload.withUnsafeBufferPointer { describe($0) } }
        case .corrupt(let reason):
            check.problem = reason
        case .unsupportedVersion(let version):
            check.problem = "format version \(version) (supported: \(StoreFormat.snapshotVersion))"
        }
        report.snapshots.append(check)
    }
    for scan in analysis.segments {
        report.segments.append(SegmentCheck(
            fileName: scan.name, firstSequence: scan.nameSequence, lastSequence: scan.records.last?.sequence,
            records: scan.records.count, bytes: Int64(scan.fileSize), validBytes: Int64(scan.validLength),
            problem: segmentProblem(scan), formatVersion: scan.firstSequence == nil ? nil : scan.version,
            sealedNextSequence: scan.sealedNext, damage: segmentDamage(scan)))
        report.segments[report.segments.count - 1].zeroFilledBytes = Int64(scan.zeroFilledBytes)
        report.segments[report.segments.count - 1].coveredDamage = scan.coveredDamage
        report.recordCount += scan.records.count
        if let first = scan.records.first?.sequence, report.firstSequence == nil { report.firstSequence = first }
        if let last = scan.records.last?.sequence { report.lastSequence = last }
    }
    if let fatal = analysis.fatal {
        report.problems.append(fatal.description)
        // What --repair would do: the same analysis with repair on, still read-only.
        if let repaired = try? analyzeStateDirectory(path, operations: fileOperations, repair: true, readCoveredSegments: false) {
            if let refusal = repaired.fatal {
                report.repairRefusal = refusal.description
            } else {
                report.repairActions = repaired.actions.compactMap { action in
                    switch action {
                    case .removeFile(let name, let reason): return "remove \(name) (\(reason))"
                    case .truncateTail(let truncation):
                        return "truncate the torn tail of \(truncation.segment) at byte \(truncation.offset) (\(truncation.reason))"
                    case .repairTruncate(let segment, let offset, let reason):
                        return "copy \(segment) to \(segment).corrupt-<time>, then truncate it at byte \(offset) (\(reason)); later records are lost"
                    case .moveAside(let file, let reason):
                        return "move \(file) aside to \(file).corrupt-<time> (\(reason))"
                            + (file.hasPrefix(StoreFormat.segmentPrefix) ? "; its records are lost" : "")
                    }
                } + repaired.repairNotes + ["continue at seq \(repaired.nextSequence)"]
            }
        }
    } else {
        report.nextSequence = analysis.nextSequence
    }
    do {
        report.archiveFiles = try EventArchiveFiles.check(directory: path, operations: fileOperations)
    } catch {
        throw .io(error)
    }
    // A damaged block does not stop a start (only missing blocks do): the events in it answer
    // DATA_LOSS when read, or, if no snapshot names the block, the start discards it and replays
    // them from the journal.
    for file in report.archiveFiles {
        if let problem = file.problem {
            // Reads find a block by the offset the snapshot recorded, so the blocks after a
            // damaged one still read; the check stops at the first damage, though.
            report.warnings.append("event archive \(file.fileName): \(problem); the events in that block cannot be "
                + "read unless the journal still holds them (reads answer DATA_LOSS); blocks after it in the file "
                + "were not checked")
        }
    }
    report.warnings += analysis.skippedSnapshots.map { "snapshot \($0) (recovery falls back past it)" }
    report.warnings += analysis.problemsInCoveredSegments
    report.warnings += analysis.warnings
    if analysis.fatal == nil {
        for action in analysis.actions {
            switch action {
            case .removeFile(let name, let reason): report.warnings.append("\(name): \(reason); open removes it")
            case .truncateTail(let truncation): report.warnings.append("torn tail in \(truncation.segment) at byte \(truncation.offset) (\(truncation.reason)); open truncates \(truncation.removedBytes) bytes")
            case .repairTruncate, .moveAside: break  // repair is off here
            }
        }
    }
    return report
}
