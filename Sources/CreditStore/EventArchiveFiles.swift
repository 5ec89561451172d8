import Foundation
import Synchronization

/// The event archive's files: sealed chunks of the event feed, moved out of memory, as blocks
/// in append-only files of the state directory (format in Overview.swift). The blocks are
/// opaque here; the service encodes and decodes the events in them.
///
/// Nothing here is acknowledged to a client: every archived event is also in the journal or
/// the snapshot until a snapshot refers to its block, and `sync` makes the blocks durable
/// before that snapshot is written. So a crash can lose only blocks no snapshot refers to:
/// recovery keeps those that read back whole and follow on in order (`unreferencedBlocks`), for
/// its replay to take instead of archiving the same events again, and removes the rest
/// (`discardUnreferenced`; the replay rebuilds their events from the journal).
public final class EventArchiveFiles: Sendable {
    /// Where one block is.
    public struct Block: Sendable, Hashable {
        /// The file, named after the first seq it holds.
        public let file: UInt64
        public let offset: UInt64
        /// Header and payload.
        public let length: UInt64

        public init(file: UInt64, offset: UInt64, length: UInt64) {
            self.file = file
            self.offset = offset
            self.length = length
        }
    }

    public struct ReadError: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// A block the recovered snapshot names is not in the archive.
    public struct MissingBlocks: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    static let fileMagic: [UInt8] = Array("CREDEVTS".utf8)
    static let fileVersion: UInt32 = 1
    static let fileHeaderSize = 32
    static let blockHeaderSize = 24
    /// A file is closed for appends past this size, and the next block starts a new one.
    static let rollSize: UInt64 = 64 << 20

    public let directory: String
    private let operations: any FileOperations

    private struct Appending {
        var file: OpenFile
        var name: UInt64
        var length: UInt64
    }
    private struct State {
        var appending: Appending?
        /// Files written since the last `sync`, and whether the directory gained entries.
        var unsynced: Set<UInt64> = []
        var directoryChanged = false
        /// The first failed sync; every later `sync` fails with it (see `sync`).
        var syncFailure: FileOperationError?
    }
    private let state: Mutex<State>

    /// The file holding the events from `firstSeq` (20 digits, like the journal's segments).
    public static func fileName(_ firstSeq: UInt64) -> String {
        let digits = String(firstSeq)
        return "events-" + String(repeating: "0", count: max(0, 20 - digits.count)) + digits + ".arch"
    }

    /// The first seq in an archive file's name, nil for any other name.
    public static func firstSeq(ofFileNamed name: String) -> UInt64? {
        guard name.hasPrefix("events-"), name.hasSuffix(".arch") else { return nil }
        let digits = name.dropFirst(7).dropLast(5)
        guard digits.count == 20, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { return nil }
        return UInt64(digits)
    }

    /// The archive of `directory`; nothing is read or written until it is used.
    public init(directory: String, operations: any FileOperations = POSIXFileOperations()) {
        self.directory = directory
        self.operations = operations
        state = Mutex(State())
    }

    /// Before the first append, for the state a snapshot recovered: `referenced` are the blocks
    /// that snapshot names, with those recovery keeps after them (`unreferencedBlocks`). Files
    /// after the last of them hold events the snapshot does not name (archived after it, or by
    /// a run whose snapshot was lost): they are cut back to that block's end or removed, so the
    /// journal's replay archives them again. Files before it stay until a later snapshot no
    /// longer needs them (`removeFiles`).
    ///
    /// Throws `MissingBlocks` when a referenced block is not there (a deleted or cut file).
    public func discardUnreferenced(keeping referenced: [Block]) throws {
        var ends: [UInt64: UInt64] = [:]
        for block in referenced { ends[block.file] = max(ends[block.file] ?? 0, block.offset + block.length) }
        for (file, end) in ends.sorted(by: { $0.key < $1.key }) {
            let path = directory + "/" + Self.fileName(file)
            let size: Int64
            do {
                size = try operations.fileSize(path)
            } catch {
                throw MissingBlocks(description: "the snapshot's archived events are missing: \(error)")
            }
            guard UInt64(size) >= end else {
                throw MissingBlocks(description: "the snapshot's archived events are cut short: \(path) has \(size) bytes, "
                                        + "the snapshot names \(end)")
            }
        }
        let last = Self.newest(referenced)
        var changed = false
        for name in try operations.listDirectory(directory) {
            guard let file = Self.firstSeq(ofFileNamed: name) else {
                if name.hasPrefix("events-"), name.hasSuffix(".arch.tmp") {
                    try operations.remove(directory + "/" + name)
                    changed = true
                }
                continue
            }
            let path = directory + "/" + name
            if let last, file == last.file {
                let end = Int64(last.offset + last.length)
                if try operations.fileSize(path) > end {
                    let handle = try operations.open(path, flags: O_WRONLY | O_CLOEXEC, mode: 0)
                    defer { operations.close(handle) }
                    try operations.truncate(handle, to: end)
                    try operations.syncData(handle)
                }
            } else if last == nil || file > last!.file {
                try operations.remove(path)
                changed = true
            }
        }
        if changed { try operations.syncDirectory(directory) }
    }

    /// The block of `blocks` that was written last (nil for none).
    private static func newest(_ blocks: [Block]) -> Block? {
        blocks.max { ($0.file, $0.offset) < ($1.file, $1.offset) }
    }

    /// The blocks after the newest of those the recovered snapshot names (`referenced`) that
    /// hold the chunks from `firstSeq` on, `seqsPerBlock` seqs apart, in order: what a run
    /// archived after that snapshot and before it stopped. Each is read and checked (both
    /// checksums, its first seq) and the list ends at the first block that is missing, damaged
    /// or out of sequence, or at a file that cannot be read. Recovery's replay takes these
    /// blocks as they are instead of archiving the same events again; it then calls
    /// `discardUnreferenced` with the ones it took, before any append. Read-only.
    public func unreferencedBlocks(after referenced: [Block], from firstSeq: UInt64,
                                   seqsPerBlock: UInt64) -> [(firstSeq: UInt64, block: Block)] {
        let last = Self.newest(referenced)
        guard let names = try? operations.listDirectory(directory) else { return [] }
        let files = names.compactMap(Self.firstSeq(ofFileNamed:)).sorted()
        var found: [(firstSeq: UInt64, block: Block)] = []
        var expected = firstSeq
        // From the file of the last named block on; with none, from the file of the first chunk.
        for file in files where file >= last?.file ?? firstSeq {
            // A file after that holds the next block first: it is named after it.
            let continuesLast = file == last?.file
            let path = directory + "/" + Self.fileName(file)
            // Most starts find nothing after the last named block: no need to map its file.
            if let last, continuesLast, let size = try? operations.fileSize(path), UInt64(size) <= last.offset + last.length {
                continue
            }
            guard continuesLast || file == expected, let bytes = try? operations.mapFile(path) else { break }
            let complete = bytes.withUnsafeBufferPointer { buffer -> Bool in
                var offset: Int
                if continuesLast {
                    offset = Int(clamping: last!.offset + last!.length)
                } else {
                    guard Self.headerProblem(buffer, fileSeq: file) == nil else { return false }
                    offset = Self.fileHeaderSize
                }
                while offset < buffer.count {
                    guard case .success(let parsed) = Self.parseBlock(buffer, at: offset), parsed.firstSeq == expected else {
                        return false
                    }
                    found.append((expected, Block(file: file, offset: UInt64(offset), length: UInt64(parsed.payload.upperBound - offset))))
                    expected += seqsPerBlock
                    offset = parsed.payload.upperBound
                }
                return offset == buffer.count
            }
            if !complete { break }
        }
        return found
    }

    /// Blocks an earlier run wrote that this one keeps (`unreferencedBlocks`): they may not be
    /// durable yet, so the next `sync` syncs their files and the directory as if they had been
    /// appended now.
    public func adopt(_ blocks: [Block]) {
        guard !blocks.isEmpty else { return }
        state.withLock { state in
            state.unsynced.formUnion(blocks.map(\.file))
            state.directoryChanged = true
        }
    }

    /// Appends one block holding `payload`, the events from `firstSeq`. Not durable until `sync`.
    public func append(firstSeq: UInt64, payload: [UInt8]) throws(FileOperationError) -> Block {
        try state.withLock { state throws(FileOperationError) -> Block in
            if let appending = state.appending, appending.length >= Self.rollSize {
                // Its blocks are synced with the rest at the next `sync`; only appends stop.
                operations.close(appending.file)
                state.appending = nil
            }
            if state.appending == nil {
                let path = directory + "/" + Self.fileName(firstSeq)
                // A leftover of the same name holds no block any snapshot names (`init`).
                let file = try operations.open(path, flags: O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
                var header = [UInt8](repeating: 0, count: Self.fileHeaderSize)
                header.replaceSubrange(0..<8, with: Self.fileMagic)
                Self.store(Self.fileVersion, in: &header, at: 8)
                Self.store(firstSeq, in: &header, at: 16)
                Self.store(CRC32C.checksum(header[0..<24]), in: &header, at: 24)
                do throws(FileOperationError) {
                    try operations.write(file, header, at: 0)
                } catch {
                    // A full disk: leave no file that holds less than its header.
                    operations.close(file)
                    try? operations.remove(path)
                    throw error
                }
                state.appending = Appending(file: file, name: firstSeq, length: UInt64(Self.fileHeaderSize))
                state.directoryChanged = true
            }
            var appending = state.appending!
            var block = [UInt8](repeating: 0, count: Self.blockHeaderSize)
            Self.store(UInt32(payload.count), in: &block, at: 0)
            Self.store(CRC32C.checksum(payload[...]), in: &block, at: 4)
            Self.store(firstSeq, in: &block, at: 8)
            Self.store(CRC32C.checksum(block[0..<16]), in: &block, at: 16)
            block += payload
            do throws(FileOperationError) {
                try operations.write(appending.file, block, at: Int64(appending.length))
            } catch {
                // A write cut short by a full disk kept the space its part took; give it back
                // (the next append writes at the same offset anyway).
                try? operations.truncate(appending.file, to: Int64(appending.length))
                throw error
            }
            let written = Block(file: appending.name, offset: appending.length, length: UInt64(block.count))
            appending.length += UInt64(block.count)
            state.appending = appending
            state.unsynced.insert(appending.name)
            return written
        }
    }

    /// Makes every block appended so far durable (and the files' directory entries), before a
    /// snapshot that names them is written.
    ///
    /// A failed fdatasync is final for this process: every later call fails with it, so no
    /// snapshot names a block again until a restart. After a failed fdatasync the kernel may
    /// have dropped the dirty pages and marked them clean, so a second one could succeed with
    /// the blocks never written (the journal refuses to retry for the same reason). The journal
    /// still holds the events such blocks carried; a restart discards the blocks no snapshot
    /// names and archives their events again.
    public func sync() throws(FileOperationError) {
        try state.withLock { state throws(FileOperationError) in
            if let failure = state.syncFailure { throw failure }
            func syncData(_ file: OpenFile) throws(FileOperationError) {
                do throws(FileOperationError) {
                    try operations.syncData(file)
                } catch {
                    state.syncFailure = error
                    throw error
                }
            }
            for name in state.unsynced.sorted() {
                if let appending = state.appending, appending.name == name {
                    try syncData(appending.file)
                } else {
                    let file = try operations.open(directory + "/" + Self.fileName(name), flags: O_RDONLY | O_CLOEXEC, mode: 0)
                    defer { operations.close(file) }
                    try syncData(file)
                }
            }
            state.unsynced = []
            if state.directoryChanged {
                try operations.syncDirectory(directory)
                state.directoryChanged = false
            }
        }
    }

    /// The payload of `block`, checked against its header: the events from `firstSeq`.
    public func read(_ block: Block, firstSeq: UInt64) throws -> [UInt8] {
        let path = directory + "/" + Self.fileName(block.file)
        guard block.length >= UInt64(Self.blockHeaderSize), block.length <= UInt64(Int32.max) else {
            throw ReadError(description: "\(path): event block at \(block.offset) has an impossible length \(block.length)")
        }
        let descriptor = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw ReadError(description: "\(path): \(String(cString: strerror(errno))) (events from seq \(firstSeq))")
        }
        defer { Glibc.close(descriptor) }
        var bytes = [UInt8](repeating: 0, count: Int(block.length))
        var done = 0
        while done < bytes.count {
            let count = bytes.withUnsafeMutableBytes { buffer in
                pread(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(block.offset) + off_t(done))
            }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else {
                throw ReadError(description: "\(path): event block at \(block.offset) is cut short (events from seq \(firstSeq))")
            }
            done += count
        }
        guard case .success(let parsed) = bytes.withUnsafeBufferPointer({ Self.parseBlock($0, at: 0) }),
              parsed.firstSeq == firstSeq, parsed.payload.upperBound == bytes.count else {
            throw ReadError(description: "\(path): event block at \(block.offset) is damaged (events from seq \(firstSeq))")
        }
        return Array(bytes[parsed.payload])
    }

    /// What `check` found in one archive file.
    public struct FileCheck: Sendable, Equatable {
        public var fileName: String
        public var bytes: Int64
        public var blocks: Int
        /// The first seq of the first and of the last readable block.
        public var firstSeq: UInt64?
        public var lastBlockSeq: UInt64?
        /// The first damage, with its byte offset; blocks after it are not checked.
        public var problem: String?
    }

    /// Reads every archive file of `directory` and checks its header and every block (lengths,
    /// both checksums, seqs rising), for `verify-state`. Read-only.
    public static func check(directory: String, operations: any FileOperations) throws(FileOperationError) -> [FileCheck] {
        var checks: [FileCheck] = []
        for name in try operations.listDirectory(directory).sorted() {
            guard let fileSeq = firstSeq(ofFileNamed: name) else { continue }
            let bytes = try operations.readFile(directory + "/" + name)
            checks.append(check(bytes, name: name, fileSeq: fileSeq))
        }
        return checks
    }

    static func check(_ bytes: [UInt8], name: String, fileSeq: UInt64) -> FileCheck {
        var result = FileCheck(fileName: name, bytes: Int64(bytes.count), blocks: 0)
        if let problem = headerProblem(bytes, fileSeq: fileSeq) {
            result.problem = problem
            return result
        }
        var offset = fileHeaderSize
        while offset < bytes.count {
            let seq: UInt64
            switch bytes.withUnsafeBufferPointer({ parseBlock($0, at: offset) }) {
            case .failure(.cutShort):
                result.problem = "block at \(offset) is cut short"
                return result
            case .failure(.headerDamaged):
                result.problem = "block header at \(offset) is damaged"
                return result
            case .failure(.payloadDamaged(let firstSeq)):
                result.problem = "block at \(offset) (events from seq \(firstSeq)) is damaged"
                return result
            case .success(let parsed):
                seq = parsed.firstSeq
                offset = parsed.payload.upperBound
            }
            guard result.lastBlockSeq.map({ seq > $0 }) ?? (seq == fileSeq) else {
                result.problem = "block starting at seq \(seq) is out of order"
                return result
            }
            result.blocks += 1
            if result.firstSeq == nil { result.firstSeq = seq }
            result.lastBlockSeq = seq
        }
        return result
    }

    /// Why `bytes` does not start with the header of the archive file named after `fileSeq`;
    /// nil when it does.
    static func headerProblem<Bytes: RandomAccessCollection<UInt8>>(_ bytes: Bytes, fileSeq: UInt64) -> String?
        where Bytes.Index == Int {
        guard bytes.count >= fileHeaderSize, bytes.prefix(8).elementsEqual(fileMagic),
              bytes.readLittleEndian(UInt32.self, at: 24) == CRC32C.checksum(bytes.prefix(24)) else {
            return "bad file header"
        }
        guard bytes.readLittleEndian(UInt32.self, at: 8) == fileVersion else {
            return "format version \(bytes.readLittleEndian(UInt32.self, at: 8)) (supported: \(fileVersion))"
        }
        guard bytes.readLittleEndian(UInt64.self, at: 16) == fileSeq else {
            return "header says seq \(bytes.readLittleEndian(UInt64.self, at: 16)) but the file name says \(fileSeq)"
        }
        return nil
    }

    enum BlockDamage: Error {
        case cutShort
        case headerDamaged
        case payloadDamaged(firstSeq: UInt64)
    }

    /// The block that starts at `offset` of `bytes`: its events' first seq and its payload's
    /// range, each checked against the block header's checksums. The one reader of blocks, for
    /// `read`, `check` and `unreferencedBlocks`.
    static func parseBlock(_ bytes: UnsafeBufferPointer<UInt8>, at offset: Int)
        -> Result<(firstSeq: UInt64, payload: Range<Int>), BlockDamage> {
        guard bytes.count - offset >= blockHeaderSize else { return .failure(.cutShort) }
        let header = UnsafeBufferPointer(rebasing: bytes[offset..<(offset + blockHeaderSize)])
        guard header.readLittleEndian(UInt32.self, at: 16) == CRC32C.checksum(header[0..<16]) else {
            return .failure(.headerDamaged)
        }
        let length = Int(header.readLittleEndian(UInt32.self, at: 0))
        let firstSeq = header.readLittleEndian(UInt64.self, at: 8)
        guard bytes.count - offset - blockHeaderSize >= length else { return .failure(.cutShort) }
        let payload = (offset + blockHeaderSize)..<(offset + blockHeaderSize + length)
        guard header.readLittleEndian(UInt32.self, at: 4) == CRC32C.checksum(UnsafeBufferPointer(rebasing: bytes[payload])) else {
            return .failure(.payloadDamaged(firstSeq: firstSeq))
        }
        return .success((firstSeq, payload))
    }

    /// Removes the archive files no snapshot kept on disk needs: those before the oldest file in
    /// `needed` (the blocks of the newest snapshot and of the one before it).
    public func removeFiles(before needed: [Block]) throws(FileOperationError) {
        guard let oldest = needed.map(\.file).min() else { return }
        var removed = false
        for name in try operations.listDirectory(directory) {
            guard let file = Self.firstSeq(ofFileNamed: name), file < oldest else { continue }
            try operations.remove(directory + "/" + name)
            removed = true
        }
        if removed { try operations.syncDirectory(directory) }
    }

    /// Closes the file being appended to.
    public func close() {
        state.withLock { state in
            if let appending = state.appending { operations.close(appending.file) }
            state.appending = nil
        }
    }

    private static func store<T: FixedWidthInteger>(_ value: T, in bytes: inout [UInt8], at offset: Int) {
        withUnsafeBytes(of: value.littleEndian) { raw in
            for index in 0..<raw.count { bytes[offset + index] = raw[index] }
        }
    }
}
