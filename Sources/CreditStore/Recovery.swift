/// One journal record handed to the caller for replay.
public struct JournalRecord: Sendable, Equatable {
    public var sequence: UInt64
    /// The record's bytes where recovery read them: a slice of its segment's bytes, not a
    /// copy. Copied out, a million records were a million allocations and ~130 MB of memory
    /// touched for the first time before the replay could start.
    public var payload: ArraySlice<UInt8>

    public init(sequence: UInt64, payload: ArraySlice<UInt8>) {
        self.sequence = sequence
        self.payload = payload
    }

    public init(sequence: UInt64, payload: [UInt8]) {
        self.init(sequence: sequence, payload: payload[...])
    }
}

/// The snapshot recovery starts from.
public struct RecoveredSnapshot: Sendable, Equatable {
    /// Last journal sequence number the snapshot includes.
    public var sequence: UInt64
    /// The payload as stored: the snapshot file mapped after its header (file store), or an
    /// array (PostgreSQL store).
    public var contents: FileBytes
    /// The payload, copied into an array.
    public var payload: [UInt8] { contents.array }
    /// Wall-clock time the snapshot was written, Unix milliseconds.
    public var unixMillis: Int64
    public var fileName: String

    public init(sequence: UInt64, contents: FileBytes, unixMillis: Int64, fileName: String) {
        self.sequence = sequence
        self.contents = contents
        self.unixMillis = unixMillis
        self.fileName = fileName
    }

    public init(sequence: UInt64, payload: [UInt8], unixMillis: Int64, fileName: String) {
        self.init(sequence: sequence, contents: FileBytes(payload), unixMillis: unixMillis, fileName: fileName)
    }
}

/// A damaged journal tail that recovery cut off.
public struct TailTruncation: Sendable, Equatable, CustomStringConvertible {
    public var segment: String
    /// Byte offset in the segment where the file now ends.
    public var offset: Int64
    public var removedBytes: Int64
    public var reason: String

    public var description: String {
        "truncated torn journal tail: \(segment) at byte \(offset) (\(removedBytes) bytes removed: \(reason))"
    }
}

/// How loudly a recovery finding should be logged.
public enum RecoverySeverity: Int, Sendable, Comparable, CustomStringConvertible {
    /// Routine (which snapshot was used).
    case info
    /// Cleanup of a crash's leftovers that loses nothing (temporary files, a segment torn while
    /// being created, so holding no record).
    case notice
    /// Recovery handled a problem on its own, without losing anything acknowledged, but an
    /// operator should know: a skipped corrupt snapshot, a truncated torn tail.
    case warning
    /// Repair discarded data: changes after the damage are gone.
    case error

    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.rawValue < rhs.rawValue }

    public var description: String {
        switch self {
        case .info: "info"
        case .notice: "notice"
        case .warning: "warning"
        case .error: "error"
        }
    }
}

/// One line of the recovery report, with the level to log it at.
public struct RecoveryEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        case snapshotUsed = "snapshot_used"
        /// No snapshot to start from: the state is the journal alone (a new state directory).
        case noSnapshot = "no_snapshot"
        case snapshotSkipped = "snapshot_skipped"
        case tailTruncated = "tail_truncated"
        case leftoverRemoved = "leftover_removed"
        case repair
        case warning
    }

    public var kind: Kind
    public var severity: RecoverySeverity
    public var message: String
}

/// What recovery found and did. Log `events`, each at its `severity` (`messages` is the same
/// text without levels).
public struct RecoveryReport: Sendable {
    /// File name of the snapshot used, if any.
    public var usedSnapshot: String?
    /// Snapshots that did not verify (newest first), with the reason; recovery fell back past them.
    public var skippedSnapshots: [String]
    /// Segments read for replay, oldest first.
    public var segmentsRead: [String]
    public var truncations: [TailTruncation]
    /// Actions of `repair: true` (copies made, truncations, segments moved aside, losses accepted).
    public var repairs: [String]
    /// Leftover files removed (temporary snapshot files, segments torn while being created).
    public var removedFiles: [String]
    public var warnings: [String]

    /// Everything above, in that order, with severities: skipped snapshots, truncated tails and
    /// `warnings` are `.warning`, repairs `.error`, removed leftovers `.notice`.
    public var events: [RecoveryEvent] {
        var events: [RecoveryEvent] = []
        events.append(usedSnapshot.map {
            RecoveryEvent(kind: .snapshotUsed, severity: .info, message: "recovered from snapshot \($0)")
        } ?? RecoveryEvent(kind: .noSnapshot, severity: .info, message: "recovered without snapshot"))
        events += skippedSnapshots.map {
            RecoveryEvent(kind: .snapshotSkipped, severity: .warning, message: "skipped snapshot that does not verify: \($0)")
        }
        events += truncations.map { RecoveryEvent(kind: .tailTruncated, severity: .warning, message: $0.description) }
        events += repairs.map { RecoveryEvent(kind: .repair, severity: .error, message: "repair: \($0)") }
        events += removedFiles.map {
            RecoveryEvent(kind: .leftoverRemoved, severity: .notice, message: "removed leftover file \($0)")
        }
        events += warnings.map { RecoveryEvent(kind: .warning, severity: .warning, message: "warning: \($0)") }
        return events
    }

    /// The highest severity among `events`: `.warning` or `.error` means an operator should look.
    public var severity: RecoverySeverity { events.map(\.severity).max() ?? .info }

    public var messages: [String] { events.map(\.message) }
}

/// The outcome of opening a state directory: replay `snapshot` (if any), then `records` in
/// order, then append from `nextSequence` on.
public struct Recovery: Sendable {
    public var snapshot: RecoveredSnapshot?
    /// Records with sequence > snapshot sequence, in order, continuous.
    public var records: [JournalRecord]
    /// The sequence number the next append gets.
    public var nextSequence: UInt64
    public var report: RecoveryReport
}

// MARK: - Scanning (read-only)

enum SnapshotState {
    case valid(sequence: UInt64, unixMillis: Int64, payload: FileBytes)
    case corrupt(String)
    case unsupportedVersion(UInt32)
}

struct SnapshotScan {
    var name: String
    var nameSequence: UInt64
    var bytes: Int64
    var state: SnapshotState
}

/// A valid snapshot's payload is the file's bytes after the header, not a copy of a file that
/// may be hundreds of megabytes.
func scanSnapshot(_ file: FileBytes, name: String, nameSequence: UInt64) -> SnapshotScan {
    func result(_ state: SnapshotState) -> SnapshotScan {
        SnapshotScan(name: name, nameSequence: nameSequence, bytes: Int64(file.count), state: state)
    }
    let headerSize = StoreFormat.snapshotHeaderSize
    let header: Result<(sequence: UInt64, unixMillis: Int64), SnapshotHeaderProblem> = file.withUnsafeBufferPointer { bytes in
        guard bytes.count >= 12, Array(bytes[0..<8]) == StoreFormat.snapshotMagic else {
            return .failure(.corrupt("bad magic or file too short (\(bytes.count) bytes)"))
        }
        let version = bytes.readLittleEndian(UInt32.self, at: 8)
        guard version == StoreFormat.snapshotVersion else { return .failure(.unsupportedVersion(version)) }
        guard bytes.count >= headerSize else { return .failure(.corrupt("header truncated (\(bytes.count) bytes)")) }
        guard CRC32C.checksum(UnsafeBufferPointer(rebasing: bytes[0..<44])) == bytes.readLittleEndian(UInt32.self, at: 44) else {
            return .failure(.corrupt("header CRC mismatch"))
        }
        let sequence = bytes.readLittleEndian(UInt64.self, at: 16)
        let length = bytes.readLittleEndian(UInt64.self, at: 24)
        guard sequence == nameSequence else {
            return .failure(.corrupt("header says seq \(sequence) but the file name says \(nameSequence)"))
        }
        guard length == UInt64(bytes.count - headerSize) else {
            return .failure(.corrupt("payload length \(length) but file holds \(bytes.count - headerSize) payload bytes"))
        }
        guard CRC32C.checksum(UnsafeBufferPointer(rebasing: bytes[headerSize...])) == bytes.readLittleEndian(UInt32.self, at: 40) else {
            return .failure(.corrupt("payload CRC mismatch"))
        }
        return .success((sequence, Int64(bitPattern: bytes.readLittleEndian(UInt64.self, at: 32))))
    }
    switch header {
    case .success(let header):
        return result(.valid(sequence: header.sequence, unixMillis: header.unixMillis, payload: file.dropFirst(headerSize)))
    case .failure(.corrupt(let reason)):
        return result(.corrupt(reason))
    case .failure(.unsupportedVersion(let version)):
        return result(.unsupportedVersion(version))
    }
}

private enum SnapshotHeaderProblem: Error {
    case corrupt(String)
    case unsupportedVersion(UInt32)
}

enum SegmentHeaderState {
    case valid(firstSequence: UInt64)
    /// Shorter than or exactly a header and not valid: a crash while the segment was created.
    case torn(String)
    case corrupt(String)
    case unsupportedVersion(UInt32)
}

struct BadRecord {
    var offset: Int
    var reason: String
    /// The damage looks like a write cut short by a crash (etcd's rule): a record shorter than
    /// its header or its length, or one whose bytes are zero from a sector boundary to the end
    /// of the file. A full-length record with non-zero bytes whose CRC fails is corruption.
    var torn: Bool = false
    /// A valid record (or a continuity error on a valid record) lies at or after the damage,
    /// so the damage is not a torn tail.
    var validDataFollows: Bool
    var gap: (expected: UInt64, found: UInt64)?
    /// The sequence the damaged record should have had. A record that fails its checks, or one
    /// out of sequence, may be stepped over when everything it could hold is covered by the
    /// snapshot (`resumedPastCoveredDamage`); damage around a seal may not. nil for the latter.
    var expected: UInt64?
}

struct SegmentScan {
    var name: String
    var nameSequence: UInt64
    var fileSize: Int
    var header: SegmentHeaderState
    /// Valid, continuous records: sequence and payload range in `bytes`.
    var records: [(sequence: UInt64, range: Range<Int>)] = []
    var validLength: Int = 0
    var bad: BadRecord?
    var bytes: [UInt8]
    /// Format version from the header (0 when the header is not valid).
    var version: UInt32 = 0
    /// A version-2 segment that ends with a seal: the first sequence number of its successor.
    var sealedNext: UInt64?
    /// Zero bytes after the last record (or the seal) to the end of the file: space a
    /// version-3 writer wrote ahead of its records. Not damage; `validLength` ends before it.
    var zeroFilledBytes: Int = 0
    /// Damaged bytes read past because the snapshot covers the records they held
    /// (`resumedPastCoveredDamage`); `records` skips those sequences and `validLength` counts
    /// the bytes.
    var coveredDamage: [CoveredDamage] = []

    var firstSequence: UInt64? {
        if case .valid(let first) = header { return first }
        return nil
    }

    /// The sequence a record appended to this segment would get.
    var endSequence: UInt64? {
        // From the last record, not the count: records may skip damage the snapshot covers.
        if let last = records.last { return last.sequence + 1 }
        return firstSequence
    }
}

/// Bytes of a segment that recovery reads past: damaged, and holding only records the newest
/// snapshot covers.
public struct CoveredDamage: Sendable, Equatable {
    public var bytes: Range<Int>
    public var sequences: ClosedRange<UInt64>
}

func scanSegment(_ bytes: [UInt8], name: String, nameSequence: UInt64) -> SegmentScan {
    var scan = SegmentScan(name: name, nameSequence: nameSequence, fileSize: bytes.count, header: .torn(""), bytes: bytes)
    let headerSize = StoreFormat.segmentHeaderSize
    let magicMatches = bytes.count >= 8 && Array(bytes[0..<8]) == StoreFormat.segmentMagic
    if magicMatches && bytes.count >= 12 {
        let version = bytes.readLittleEndian(UInt32.self, at: 8)
        if !StoreFormat.readableSegmentVersions.contains(version) {
            scan.header = .unsupportedVersion(version)
            return scan
        }
    }
    let headerProblem: String?
    if !magicMatches {
        headerProblem = "bad magic"
    } else if bytes.count < headerSize {
        headerProblem = "header truncated (\(bytes.count) bytes)"
    } else if CRC32C.checksum(bytes[0..<24]) != bytes.readLittleEndian(UInt32.self, at: 24) {
        headerProblem = "header CRC mismatch"
    } else {
        headerProblem = nil
    }
    if let headerProblem {
        scan.header = bytes.count <= headerSize ? .torn(headerProblem) : .corrupt(headerProblem)
        return scan
    }
    let firstSequence = bytes.readLittleEndian(UInt64.self, at: 16)
    guard firstSequence == nameSequence else {
        scan.header = .corrupt("header says first seq \(firstSequence) but the file name says \(nameSequence)")
        return scan
    }
    scan.header = .valid(firstSequence: firstSequence)
    scan.version = bytes.readLittleEndian(UInt32.self, at: 8)
    scanRecords(&scan, from: headerSize, expected: firstSequence)
    return scan
}

/// Reads records from `start` on, the first expected to carry `first`, until the end, a seal,
/// or the first bad record; sets `validLength` where it stopped.
func scanRecords(_ scan: inout SegmentScan, from start: Int, expected first: UInt64) {
    let bytes = scan.bytes
    var offset = start
    var expected = first
    let mayEndInZeros = scan.version >= StoreFormat.firstZeroFilledSegmentVersion
    while offset < bytes.count {
        // A record header is never all zeros (its CRC covers the length and the seq), so zeros
        // here are either space written ahead (zeros to the end of the file) or damage.
        if mayEndInZeros, isZeroHeader(bytes, at: offset), isZero(bytes, from: offset) {
            scan.zeroFilledBytes = bytes.count - offset
            break
        }
        switch checkRecord(bytes, at: offset) {
        case .failure(let reason, let recordEnd):
            let follows = validRecordExists(in: bytes, after: offset, minimumSequence: expected)
            let torn = recordEnd.map { isZeroFilledTail(bytes, recordStart: offset, recordEnd: $0) } ?? true
            let detail: String
            if follows {
                detail = "\(reason); valid records follow"
            } else if torn {
                detail = recordEnd == nil ? reason : "\(reason) in a zero-filled record (a torn write)"
            } else {
                detail = "\(reason) in a full-length record with non-zero bytes (corruption, not a torn write)"
            }
            scan.bad = BadRecord(offset: offset, reason: detail, torn: torn, validDataFollows: follows, expected: expected)
        case .success(let (sequence, range)):
            if sequence == 0, scan.version >= 2, let next = StoreFormat.sealNextSequence(bytes[range]) {
                if next != expected {
                    scan.bad = BadRecord(
                        offset: offset, reason: "seal names seq \(next) as the next segment's first, but this segment ends before seq \(expected)",
                        validDataFollows: true)
                } else {
                    scan.sealedNext = next
                    offset = range.upperBound
                    if mayEndInZeros, isZero(bytes, from: offset) {
                        // Written ahead before the seal; the roll cuts it off, unless a crash
                        // came first.
                        scan.zeroFilledBytes = bytes.count - offset
                    } else if offset < bytes.count {
                        scan.bad = BadRecord(
                            offset: offset, reason: "\(bytes.count - offset) bytes after the segment's seal", validDataFollows: true)
                    }
                }
            } else if sequence != expected {
                scan.bad = BadRecord(
                    offset: offset, reason: "record has seq \(sequence), expected \(expected)",
                    validDataFollows: true, gap: (expected, sequence), expected: expected)
            } else {
                scan.records.append((sequence, range))
                expected += 1
                offset = range.upperBound
            }
        }
        if scan.bad != nil || scan.sealedNext != nil { break }
    }
    scan.validLength = offset
}

enum RecordCheck {
    case success((UInt64, Range<Int>))
    /// `recordEnd` is nil when the record is short (the file ends inside it).
    case failure(String, recordEnd: Int?)
}

func checkRecord(_ bytes: [UInt8], at offset: Int) -> RecordCheck {
    let remaining = bytes.count - offset
    guard remaining >= StoreFormat.recordHeaderSize else {
        return .failure("partial record header (\(remaining) bytes)", recordEnd: nil)
    }
    let length = Int(bytes.readLittleEndian(UInt32.self, at: offset))
    guard length <= remaining - StoreFormat.recordHeaderSize else {
        return .failure("record of \(length) payload bytes extends past the end of the file", recordEnd: nil)
    }
    let storedCRC = bytes.readLittleEndian(UInt32.self, at: offset + 4)
    let sequence = bytes.readLittleEndian(UInt64.self, at: offset + 8)
    let payloadStart = offset + StoreFormat.recordHeaderSize
    var crc = CRC32C.checksum(bytes[offset..<(offset + 4)])
    crc = CRC32C.update(crc, bytes[(offset + 8)..<(payloadStart + length)])
    guard crc == storedCRC else { return .failure("CRC mismatch", recordEnd: payloadStart + length) }
    return .success((sequence, payloadStart..<(payloadStart + length)))
}

/// True when the record header at `offset` (or what is left of the file, if shorter) is zeros.
func isZeroHeader(_ bytes: [UInt8], at offset: Int) -> Bool {
    let end = min(bytes.count, offset + StoreFormat.recordHeaderSize)
    return bytes[offset..<end].allSatisfy { $0 == 0 }
}

/// True when every byte from `offset` to the end of the file is zero.
func isZero(_ bytes: [UInt8], from offset: Int) -> Bool {
    trailingZerosStart(bytes, notBefore: offset) == offset
}

/// Where the run of zeros that ends the file begins, looking no further back than `start`.
func trailingZerosStart(_ bytes: [UInt8], notBefore start: Int) -> Int {
    var zeroStart = bytes.count
    while zeroStart > start && bytes[zeroStart - 1] == 0 { zeroStart -= 1 }
    return zeroStart
}

/// Sector size for telling a torn write from corruption: a crash can leave a file extended with
/// sectors that were never written and read back as zeros.
let tornWriteSectorSize = 512

/// True when the record at `recordStart..<recordEnd` holds only zeros from a sector boundary
/// (or its own start) on, and so does the rest of the file: data that never reached the disk.
func isZeroFilledTail(_ bytes: [UInt8], recordStart: Int, recordEnd: Int) -> Bool {
    let zeroStart = trailingZerosStart(bytes, notBefore: recordStart)
    if zeroStart == recordStart { return true }
    let sector = (zeroStart + tornWriteSectorSize - 1) / tornWriteSectorSize * tornWriteSectorSize
    return sector < recordEnd
}

/// Looks for any valid record starting after `offset` whose sequence number is plausible
/// (at least `minimumSequence`, at most one per 16 remaining bytes beyond it). A hit means the
/// damage at `offset` is followed by real data, so it is not a torn tail.
func validRecordExists(in bytes: [UInt8], after offset: Int, minimumSequence: UInt64) -> Bool {
    nextValidRecord(in: bytes, after: offset, minimumSequence: minimumSequence) != nil
}

/// The first such record: where it starts, and its sequence.
func nextValidRecord(in bytes: [UInt8], after offset: Int, minimumSequence: UInt64) -> (offset: Int, sequence: UInt64)? {
    var position = offset + 1
    while position + StoreFormat.recordHeaderSize <= bytes.count {
        let sequence = bytes.readLittleEndian(UInt64.self, at: position + 8)
        let plausibleMaximum = minimumSequence &+ UInt64((bytes.count - position) / StoreFormat.recordHeaderSize)
        if sequence >= minimumSequence && sequence <= plausibleMaximum,
           case .success = checkRecord(bytes, at: position) {
            return (position, sequence)
        }
        position += 1
    }
    return nil
}

/// A segment read past damage that the snapshot covers, with what was stepped over; nil when
/// the damage may hold a record the snapshot does not (or is not a damaged record at all).
///
/// A record that fails its checks (or is out of sequence) in the segment that holds the
/// snapshot's point is followed by valid records. When the first of them carries a sequence
/// above the damaged record's and at most `base + 1`, every record the damage could have held
/// is at most `base`: in the snapshot, and never replayed. Refusing to start there (and
/// `--repair` cutting the segment at the damage, with every acknowledged change after it) lost
/// nothing the damage held, and everything after it.
///
/// Two guards keep bytes inside a damaged record from passing for the records after it (free
/// text may hold any bytes, a well-formed record among them):
/// - the first record found must carry a sequence above the damaged one's: the real next
///   record does, since damage changes bytes in place and the damaged record's own sequence is
///   the one expected there;
/// - reading on from it must reach the segment's end, its seal or a torn tail, past further
///   covered damage if need be: a record found inside a damaged one is followed by the real
///   records, whose sequences do not continue its own.
/// Otherwise the damage is handled as before (refused; `--repair` cuts at it).
func resumedPastCoveredDamage(_ scan: SegmentScan, coveredThrough base: UInt64) -> (scan: SegmentScan, notes: [String])? {
    guard let bad = scan.bad, let expected = bad.expected, bad.validDataFollows else { return nil }
    let next: (offset: Int, sequence: UInt64)?
    if let gap = bad.gap {
        next = (bad.offset, gap.found)
    } else {
        next = nextValidRecord(in: scan.bytes, after: bad.offset, minimumSequence: expected + 1)
    }
    guard let next, next.sequence > expected, next.sequence <= base + 1 else { return nil }
    var resumed = scan
    resumed.bad = nil
    resumed.coveredDamage.append(CoveredDamage(bytes: bad.offset..<next.offset, sequences: expected...(next.sequence - 1)))
    scanRecords(&resumed, from: next.offset, expected: next.sequence)
    // A gap (a valid record whose sequence skips ahead) has no damaged bytes: the records are missing.
    let note = next.offset == bad.offset
        ? "\(scan.name): seq \(expected)...\(next.sequence - 1) missing at byte \(bad.offset) (\(bad.reason)), "
            + "all covered by the snapshot at seq \(base): read past them"
        : "\(scan.name): damaged bytes \(bad.offset)..<\(next.offset) (\(bad.reason)), holding seq "
            + "\(expected)...\(next.sequence - 1), all covered by the snapshot at seq \(base): read past them"
    guard let later = resumed.bad else { return (resumed, [note]) }
    if later.torn && !later.validDataFollows { return (resumed, [note]) }  // a torn tail, truncated as usual
    guard let further = resumedPastCoveredDamage(resumed, coveredThrough: base) else { return nil }
    return (further.scan, [note] + further.notes)
}

// MARK: - Analysis

/// What recovery must change on disk before the journal is consistent.
enum RecoveryAction {
    case removeFile(name: String, reason: String)
    case truncateTail(TailTruncation)
    /// repair: copy the segment aside, then truncate it at `offset`.
    case repairTruncate(segment: String, offset: Int64, reason: String)
    /// repair: rename a file aside: a segment whose records come after damage and cannot be
    /// replayed, or a snapshot newer than the journal that does not verify.
    case moveAside(file: String, reason: String)
}

/// The read-only result of examining a state directory.
struct DirectoryAnalysis {
    var snapshots: [SnapshotScan] = []  // newest first
    var chosenSnapshot: SnapshotScan?
    /// The newest snapshot file older than the chosen one, not read: the fallback that
    /// retention keeps (a start does not verify it).
    var fallbackSnapshotSequence: UInt64?
    var segments: [SegmentScan] = []  // oldest first; covered segments only when read
    var coveredSegmentNames: [String] = []
    var temporaryFiles: [String] = []
    var fatal: StoreError?
    var actions: [RecoveryAction] = []
    var warnings: [String] = []
    /// Losses that repair accepts instead of refusing to start.
    var repairNotes: [String] = []
    var skippedSnapshots: [String] = []
    /// Records after the chosen snapshot, as (segment index, record index).
    var replay: [(segment: Int, record: Int)] = []
    var nextSequence: UInt64 = 1
    /// Index into `segments` of the segment the writer may keep appending to.
    var reusableSegment: Int?
    /// repair: the segment at `nextSequence` must be made at once, not at the first append
    /// (the last kept segment is sealed and its successor is gone).
    var startsNewSegment = false
    var keptSegments: [Int] = []
    var problemsInCoveredSegments: [String] = []
    /// Files recovery neither reads nor removes: `--repair`'s kept copies, and anything an
    /// operator or another program put there (verify-state lists them).
    var otherFiles: [String] = []
}

func analyzeStateDirectory(
    _ directory: String, operations: any FileOperations, repair: Bool, readCoveredSegments: Bool
) throws(FileOperationError) -> DirectoryAnalysis {
    var analysis = DirectoryAnalysis()
    let names = try operations.listDirectory(directory).sorted()
    var segmentNames: [(String, UInt64)] = []
    var snapshotNames: [(String, UInt64)] = []
    for name in names {
        if let sequence = StoreFormat.sequence(inName: name, prefix: StoreFormat.segmentPrefix, suffix: StoreFormat.segmentSuffix) {
            segmentNames.append((name, sequence))
        } else if let sequence = StoreFormat.sequence(inName: name, prefix: StoreFormat.snapshotPrefix, suffix: StoreFormat.snapshotSuffix) {
            snapshotNames.append((name, sequence))
        } else if name.hasSuffix(StoreFormat.temporarySuffix) {
            analysis.temporaryFiles.append(name)
        } else if name != StoreFormat.lockName, EventArchiveFiles.firstSeq(ofFileNamed: name) == nil {
            analysis.otherFiles.append(name)
        }
    }
    segmentNames.sort { $0.1 < $1.1 }
    snapshotNames.sort { $0.1 > $1.1 }

    // Snapshots: newest that verifies wins; an unknown version stops everything, because a newer
    // build wrote it and falling back past it could resurrect older state.
    for (name, sequence) in snapshotNames {
        if let chosen = analysis.chosenSnapshot, analysis.fallbackSnapshotSequence == nil, sequence < chosen.nameSequence {
            analysis.fallbackSnapshotSequence = sequence
        }
        // Older snapshots than the chosen one matter only to a full check (verify-state): a
        // daemon starting does not read hundreds of megabytes it will not use.
        if analysis.chosenSnapshot != nil && !readCoveredSegments { break }
        let scan = scanSnapshot(try operations.mapFile(directory + "/" + name), name: name, nameSequence: sequence)
        analysis.snapshots.append(scan)
        if analysis.chosenSnapshot != nil || analysis.fatal != nil { continue }
        switch scan.state {
        case .valid:
            analysis.chosenSnapshot = scan
        case .corrupt(let reason):
            analysis.skippedSnapshots.append("\(name): \(reason)")
        case .unsupportedVersion(let version):
            analysis.fatal = .unsupportedVersion(file: name, version: version, supported: StoreFormat.snapshotVersion)
        }
    }
    if let fatal = analysis.fatal {
        analysis.fatal = fatal
        return analysis
    }
    let base = analysis.chosenSnapshot?.nameSequence ?? 0
    for name in analysis.temporaryFiles {
        analysis.actions.append(.removeFile(name: name, reason: "temporary file left by an interrupted snapshot"))
    }

    // Segments wholly at or below the snapshot are not needed: the next one starts at or before base + 1.
    var firstRelevant = 0
    while firstRelevant + 1 < segmentNames.count && segmentNames[firstRelevant + 1].1 <= base + 1 {
        firstRelevant += 1
    }
    for index in 0..<segmentNames.count {
        let (name, sequence) = segmentNames[index]
        if index < firstRelevant {
            analysis.coveredSegmentNames.append(name)
            guard readCoveredSegments else { continue }
        }
        let bytes = try operations.readFile(directory + "/" + name)
        analysis.segments.append(scanSegment(bytes, name: name, nameSequence: sequence))
    }
    let relevantStart = readCoveredSegments ? firstRelevant : 0
    if readCoveredSegments {
        for scan in analysis.segments[0..<relevantStart] {
            if let problem = segmentProblem(scan) {
                analysis.problemsInCoveredSegments.append("\(scan.name) (covered by the snapshot): \(problem)")
            }
        }
    }

    let relevant = Array(relevantStart..<analysis.segments.count)
    var expected: UInt64? = nil
    var journalEnd: UInt64? = nil
    analysis.nextSequence = base + 1
    if let firstIndex = relevant.first, analysis.segments[firstIndex].nameSequence > base + 1 {
        let first = analysis.segments[firstIndex].nameSequence
        if analysis.chosenSnapshot == nil {
            // Each snapshot with why it was passed over: "no snapshot verifies" alone sent the
            // operator to verify-state to learn which files those were.
            let reason = analysis.snapshots.isEmpty ? "no snapshot files"
                : "no snapshot verifies (" + analysis.skippedSnapshots.joined(separator: "; ") + ")"
            analysis.fatal = .missingSnapshot(firstJournalSequence: first, reason: reason)
        } else {
            analysis.fatal = .journalMissingAfterSnapshot(snapshotSequence: base, firstJournalSequence: first)
        }
        return analysis
    }

    var stopped = false
    for (position, index) in relevant.enumerated() {
        var scan = analysis.segments[index]
        let isLast = position == relevant.count - 1
        if stopped {
            analysis.actions.append(.moveAside(file: scan.name, reason: "follows damaged journal data"))
            continue
        }
        // Damage at the start of this segment: everything from here on is unusable.
        func damage(_ error: StoreError, reason: String) {
            if repair {
                analysis.actions.append(.moveAside(file: scan.name, reason: reason))
                stopped = true
            } else {
                analysis.fatal = error
            }
        }
        switch scan.header {
        case .unsupportedVersion(let version):
            analysis.fatal = .unsupportedVersion(file: scan.name, version: version, supported: StoreFormat.segmentVersion)
            return analysis
        case .torn(let reason):
            if isLast {
                analysis.actions.append(.removeFile(name: scan.name, reason: "segment torn while being created (\(reason))"))
            } else {
                damage(.corruptJournal(segment: scan.name, offset: 0, reason: "segment header: \(reason)"), reason: reason)
            }
            continue
        case .corrupt(let reason):
            damage(.corruptJournal(segment: scan.name, offset: 0, reason: "segment header: \(reason)"), reason: reason)
            if analysis.fatal != nil { return analysis }
            continue
        case .valid(let firstSequence):
            if let expected, firstSequence != expected, analysis.chosenSnapshot != nil, expected <= base + 1 {
                // Records right after the snapshot are gone; repair cannot bridge that.
                analysis.fatal = .journalMissingAfterSnapshot(snapshotSequence: base, firstJournalSequence: firstSequence)
                return analysis
            }
            if let expected, firstSequence != expected {
                damage(.sequenceGap(segment: scan.name, expected: expected, found: firstSequence),
                       reason: "sequence gap: expected \(expected), found \(firstSequence)")
                if analysis.fatal != nil { return analysis }
                continue
            }
        }
        if analysis.chosenSnapshot != nil {
            if let (resumed, notes) = resumedPastCoveredDamage(scan, coveredThrough: base) {
                scan = resumed
                analysis.segments[index] = resumed
                analysis.warnings += notes
            }
        }
        analysis.keptSegments.append(index)
        for (recordIndex, record) in scan.records.enumerated() where record.sequence > base {
            analysis.replay.append((index, recordIndex))
        }
        if let last = scan.records.last { journalEnd = last.sequence }
        if let bad = scan.bad {
            let removed = Int64(scan.fileSize - bad.offset)
            // A crash while sealing this segment: its successor exists but holds no record yet
            // (records go there only once the seal is durable).
            // (No closure inside the `&&` here: that shape crashes the -O compiler's ownership
            // verifier in Swift 6.3.1.)
            var tornSeal = false
            if position == relevant.count - 2 && scan.version >= 2 {
                let nextIndex = relevant[position + 1]
                let nextHeader = analysis.segments[nextIndex].header
                var nextFirst: UInt64?
                if case .valid(let first) = nextHeader { nextFirst = first }
                tornSeal = analysis.segments[nextIndex].records.isEmpty && nextFirst != nil
                    && nextFirst == scan.endSequence && analysis.segments[nextIndex].bad == nil
            }
            if (isLast || tornSeal) && bad.torn && !bad.validDataFollows {
                analysis.actions.append(.truncateTail(TailTruncation(
                    segment: scan.name, offset: Int64(bad.offset), removedBytes: removed, reason: bad.reason)))
            } else if repair {
                analysis.actions.append(.repairTruncate(segment: scan.name, offset: Int64(bad.offset), reason: bad.reason))
                stopped = true
            } else if let gap = bad.gap {
                analysis.fatal = .sequenceGap(segment: scan.name, expected: gap.expected, found: gap.found)
                return analysis
            } else {
                analysis.fatal = .corruptJournal(segment: scan.name, offset: Int64(bad.offset), reason: bad.reason)
                return analysis
            }
        }
        expected = scan.endSequence
    }
    let lastSequence = max(base, journalEnd ?? 0)
    analysis.nextSequence = lastSequence + 1

    // A snapshot newer than the journal's end exists but did not verify: its changes were
    // acknowledged and cannot be rebuilt.
    if let newest = analysis.snapshots.first, newest.nameSequence > lastSequence {
        if repair {
            analysis.repairNotes.append("snapshot \(newest.name) does not verify and the journal ends at seq \(lastSequence): changes up to seq \(newest.nameSequence) are lost")
            // Moved aside, or the next start without repair would refuse again over the same
            // file, acknowledged writes since the repair or not. (Every snapshot past the
            // journal's end failed to verify: a valid one would have been chosen.)
            for snapshot in analysis.snapshots where snapshot.nameSequence > lastSequence {
                analysis.actions.append(.moveAside(file: snapshot.name, reason: "does not verify and is newer than the journal"))
            }
        } else {
            analysis.fatal = .acknowledgedStateLost(snapshotSequence: newest.nameSequence, journalEnd: lastSequence)
            return analysis
        }
    }
    if let chosen = analysis.chosenSnapshot, let journalEnd, journalEnd < base {
        analysis.warnings.append("journal ends at seq \(journalEnd), before snapshot \(chosen.name); continuing from the snapshot")
    }

    // A sealed last segment names a successor that is gone: its records (acknowledged ones,
    // possibly) are missing, which nothing else in the directory can reveal.
    if stopped, let last = analysis.keptSegments.last, analysis.segments[last].sealedNext != nil {
        // Repair moved the successor aside (a gap, a bad header) and its note says what is
        // lost. The new segment is made now: left to the first append, the next start without
        // repair refused over the same sealed segment, written to in between or not.
        analysis.startsNewSegment = true
    } else if !stopped, let last = analysis.keptSegments.last, let next = analysis.segments[last].sealedNext {
        let name = analysis.segments[last].name
        if repair {
            analysis.repairNotes.append("\(name) is sealed but the segment after it, \(StoreFormat.segmentName(firstSequence: next)), is missing: every change from seq \(next) on that it held is lost; continuing at seq \(next) in a new segment")
            analysis.startsNewSegment = true
        } else {
            analysis.fatal = .missingSegment(sealedSegment: name, expectedFirstSequence: next)
            return analysis
        }
    }

    // The writer may continue the last kept segment only if its next record is exactly nextSequence,
    // it is in the current format and not sealed.
    if let last = analysis.keptSegments.last {
        let scan = analysis.segments[last]
        let truncatedAway = analysis.actions.contains {
            if case .moveAside(let name, _) = $0 { return name == scan.name }
            return false
        }
        if !truncatedAway, scan.endSequence == analysis.nextSequence, scan.sealedNext == nil,
           scan.version == StoreFormat.segmentVersion {
            analysis.reusableSegment = last
        } else if !truncatedAway, scan.records.isEmpty {
            analysis.actions.append(.removeFile(name: scan.name, reason: "empty segment that does not continue the journal"))
            analysis.keptSegments.removeLast()
        }
    }
    return analysis
}

func segmentProblem(_ scan: SegmentScan) -> String? {
    switch scan.header {
    case .unsupportedVersion(let version):
        return "format version \(version) (supported: \(StoreFormat.readableSegmentVersions.lowerBound)...\(StoreFormat.segmentVersion))"
    case .torn(let reason), .corrupt(let reason): return "bad header: \(reason)"
    case .valid:
        if let bad = scan.bad {
            return (bad.torn && !bad.validDataFollows ? "torn write at byte \(bad.offset): " : "corrupt record at byte \(bad.offset): ")
                + bad.reason
        }
        return nil
    }
}
