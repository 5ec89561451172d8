#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

// The methods below share names with the C calls they wrap, hence these module-qualified shims.
#if canImport(Glibc)
private func systemOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { Glibc.open(path, flags, mode) }
private func systemClose(_ descriptor: Int32) -> Int32 { Glibc.close(descriptor) }
private func systemRename(_ from: String, _ to: String) -> Int32 { Glibc.rename(from, to) }
private func systemRead(_ descriptor: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    Glibc.read(descriptor, buffer, count)
}
private func systemDataSync(_ descriptor: Int32) -> Int32 { fdatasync(descriptor) }
#else
private func systemOpen(_ path: String, _ flags: Int32, _ mode: mode_t) -> Int32 { Darwin.open(path, flags, mode) }
private func systemClose(_ descriptor: Int32) -> Int32 { Darwin.close(descriptor) }
private func systemRename(_ from: String, _ to: String) -> Int32 { Darwin.rename(from, to) }
private func systemRead(_ descriptor: Int32, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
    Darwin.read(descriptor, buffer, count)
}
private func systemDataSync(_ descriptor: Int32) -> Int32 { fcntl(descriptor, F_FULLFSYNC) }
#endif

/// A failed system call, with the errno it returned and the file it concerned.
public struct FileOperationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var errno: Int32

    public init(operation: String, path: String, errno: Int32) {
        self.operation = operation
        self.path = path
        self.errno = errno
    }

    public var description: String {
        "\(operation) \(path): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// An open file descriptor and the path it was opened from (kept for messages and for
/// path-based fault injection).
public struct OpenFile: Sendable, Equatable {
    public var descriptor: Int32
    public var path: String

    public init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }
}

/// The file system calls the store makes. The real implementation is `POSIXFileOperations`;
/// tests swap in `FaultInjectingFileOperations` to make writes and syncs fail on demand.
/// All methods block, so the store calls them only on its own threads or while opening.
public protocol FileOperations: Sendable {
    func open(_ path: String, flags: Int32, mode: mode_t) throws(FileOperationError) -> OpenFile
    func close(_ file: OpenFile)
    /// Writes all of `bytes` at `offset`, retrying short writes and EINTR.
    func write(_ file: OpenFile, _ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(FileOperationError)
    /// fdatasync(2): the data and the metadata needed to read it back (file size).
    func syncData(_ file: OpenFile) throws(FileOperationError)
    /// fsync(2): data and all metadata; also used on directories after rename/unlink/create.
    func sync(_ file: OpenFile) throws(FileOperationError)
    func truncate(_ file: OpenFile, to length: Int64) throws(FileOperationError)
    func rename(_ from: String, to: String) throws(FileOperationError)
    func remove(_ path: String) throws(FileOperationError)
    func readFile(_ path: String) throws(FileOperationError) -> [UInt8]
    /// The whole file, read-only; mapped when large (`FileBytes`). By default `readFile`'s array.
    func mapFile(_ path: String) throws(FileOperationError) -> FileBytes
    func fileSize(_ path: String) throws(FileOperationError) -> Int64
    /// Names (not paths) of the entries of a directory, without "." and "..".
    func listDirectory(_ path: String) throws(FileOperationError) -> [String]
    func createDirectory(_ path: String, mode: mode_t) throws(FileOperationError)
    /// flock(2) without blocking; returns false when another open file description holds it.
    func tryLock(_ file: OpenFile, exclusive: Bool) throws(FileOperationError) -> Bool
}

extension FileOperations {
    public func mapFile(_ path: String) throws(FileOperationError) -> FileBytes {
        FileBytes(try readFile(path))
    }

    /// fsync of a directory, so that creates, renames and unlinks in it survive a crash.
    public func syncDirectory(_ path: String) throws(FileOperationError) {
        let directory = try open(path, flags: O_RDONLY | O_DIRECTORY, mode: 0)
        defer { close(directory) }
        try sync(directory)
    }

    public func write(_ file: OpenFile, _ bytes: [UInt8], at offset: Int64) throws(FileOperationError) {
        let failure = bytes.withUnsafeBytes { buffer -> FileOperationError? in
            do throws(FileOperationError) { try write(file, buffer, at: offset) } catch { return error }
            return nil
        }
        if let failure { throw failure }
    }
}

/// The real system calls.
public struct POSIXFileOperations: FileOperations {
    public init() {}

    public func open(_ path: String, flags: Int32, mode: mode_t) throws(FileOperationError) -> OpenFile {
        while true {
            let descriptor = systemOpen(path, flags | O_CLOEXEC, mode)
            if descriptor >= 0 { return OpenFile(descriptor: descriptor, path: path) }
            if errno != EINTR { throw FileOperationError(operation: "open", path: path, errno: errno) }
        }
    }

    public func close(_ file: OpenFile) {
        _ = systemClose(file.descriptor)
    }

    public func write(_ file: OpenFile, _ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(FileOperationError) {
        var done = 0
        while done < bytes.count {
            let written = pwrite(file.descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done))
            if written < 0 {
                if errno == EINTR { continue }
                throw FileOperationError(operation: "write", path: file.path, errno: errno)
            }
            if written == 0 { throw FileOperationError(operation: "write", path: file.path, errno: EIO) }
            done += written
        }
    }

    public func syncData(_ file: OpenFile) throws(FileOperationError) {
        // No retry on EINTR-like failures: after a failed sync the kernel may have dropped the
        // dirty pages, so a second success would not prove the data is on disk.
        if systemDataSync(file.descriptor) != 0 {
            throw FileOperationError(operation: "fdatasync", path: file.path, errno: errno)
        }
    }

    public func sync(_ file: OpenFile) throws(FileOperationError) {
        if fsync(file.descriptor) != 0 {
            throw FileOperationError(operation: "fsync", path: file.path, errno: errno)
        }
    }

    public func truncate(_ file: OpenFile, to length: Int64) throws(FileOperationError) {
        if ftruncate(file.descriptor, off_t(length)) != 0 {
            throw FileOperationError(operation: "ftruncate", path: file.path, errno: errno)
        }
    }

    public func rename(_ from: String, to: String) throws(FileOperationError) {
        if systemRename(from, to) != 0 {
            throw FileOperationError(operation: "rename to \(to)", path: from, errno: errno)
        }
    }

    public func remove(_ path: String) throws(FileOperationError) {
        if unlink(path) != 0 {
            throw FileOperationError(operation: "unlink", path: path, errno: errno)
        }
    }

    public func readFile(_ path: String) throws(FileOperationError) -> [UInt8] {
        let (file, size) = try openForReading(path)
        defer { close(file) }
        return try readAll(file, size: size, path: path)
    }

    public func mapFile(_ path: String) throws(FileOperationError) -> FileBytes {
        let (file, size) = try openForReading(path)
        defer { close(file) }
        guard size >= FileBytes.mappingThreshold else { return FileBytes(try readAll(file, size: size, path: path)) }
        // MAP_POPULATE maps every page now, in one pass, rather than one fault at a time.
        let address = mmap(nil, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, file.descriptor, 0)
        // A file system that cannot map files is still read.
        guard let address, address != MAP_FAILED else { return FileBytes(try readAll(file, size: size, path: path)) }
        return FileBytes(mapping: UnsafeRawPointer(address), length: size)
    }

    /// The file opened read-only, and its size as fstat gives it.
    private func openForReading(_ path: String) throws(FileOperationError) -> (OpenFile, Int) {
        let file = try open(path, flags: O_RDONLY, mode: 0)
        var info = stat()
        if fstat(file.descriptor, &info) != 0 {
            let error = FileOperationError(operation: "fstat", path: path, errno: errno)
            close(file)
            throw error
        }
        return (file, max(Int(info.st_size), 0))
    }

    /// Everything from `file`'s current offset to its end; `size` is what fstat said.
    private func readAll(_ file: OpenFile, size: Int, path: String) throws(FileOperationError) -> [UInt8] {
        // One allocation of the file's size, read into directly: growing an array by appends
        // copied a 300 MB snapshot several times over and made the kernel clear twice its
        // size in fresh pages, a third of a large recovery's time.
        var readError: Int32 = 0
        var result = [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            count = 0
            while count < size {
                let got = systemRead(file.descriptor, buffer.baseAddress! + count, size - count)
                if got < 0 {
                    if errno == EINTR { continue }
                    readError = errno
                    return
                }
                if got == 0 { return }  // shorter than fstat said: it shrank meanwhile
                count += got
            }
        }
        // Whatever was appended since fstat.
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while readError == 0 {
            let got = chunk.withUnsafeMutableBytes { systemRead(file.descriptor, $0.baseAddress!, $0.count) }
            if got < 0 {
                if errno == EINTR { continue }
                readError = errno
            } else if got == 0 {
                return result
            } else {
                result.append(contentsOf: chunk[0..<got])
            }
        }
        throw FileOperationError(operation: "read", path: path, errno: readError)
    }

    public func fileSize(_ path: String) throws(FileOperationError) -> Int64 {
        var info = stat()
        if stat(path, &info) != 0 {
            throw FileOperationError(operation: "stat", path: path, errno: errno)
        }
        return Int64(info.st_size)
    }

    public func listDirectory(_ path: String) throws(FileOperationError) -> [String] {
        guard let directory = opendir(path) else {
            throw FileOperationError(operation: "opendir", path: path, errno: errno)
        }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    public func createDirectory(_ path: String, mode: mode_t) throws(FileOperationError) {
        if mkdir(path, mode) != 0 && errno != EEXIST {
            throw FileOperationError(operation: "mkdir", path: path, errno: errno)
        }
    }

    public func tryLock(_ file: OpenFile, exclusive: Bool) throws(FileOperationError) -> Bool {
        while true {
            if flock(file.descriptor, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0 { return true }
            if errno == EINTR { continue }
            if errno == EWOULDBLOCK { return false }
            throw FileOperationError(operation: "flock", path: file.path, errno: errno)
        }
    }
}

/// Real file operations that fail `write` and/or `fdatasync`/`fsync` on demand, for tests of
/// the fault path. Faults apply to files whose name ends with `pathSuffix` (default: journal
/// segments), so directory syncs and snapshots can be targeted separately.
public final class FaultInjectingFileOperations: FileOperations, @unchecked Sendable {
    // Plain NSLock: the counters are touched from the writer thread and from test code.
    private let lock = NSLock()
    private let base = POSIXFileOperations()
    private var writeErrno: Int32?
    private var syncErrno: Int32?
    private var faultSuffix: String
    private var syncHook: (@Sendable (OpenFile) -> Void)?
    private var dataSyncs = 0
    private var writes = 0
    private var writeBudget: (bytes: Int, errno: Int32)?

    public init(pathSuffix: String = ".log") {
        faultSuffix = pathSuffix
    }

    /// From now on, writes to matching files fail with `errno` (nil: stop failing).
    public func failWrites(errno: Int32?) { lock.withLock { writeErrno = errno } }
    /// From now on, matching files accept `bytes` more bytes in all; the write that would go past
    /// that writes what still fits (like a short write on a full disk) and fails with `errno`,
    /// and so does every later write (nil: no limit).
    public func failWrites(afterBytes bytes: Int?, errno: Int32 = ENOSPC) {
        lock.withLock { writeBudget = bytes.map { ($0, errno) } }
    }
    /// From now on, fdatasync/fsync of matching files fail with `errno` (nil: stop failing).
    public func failSyncs(errno: Int32?) { lock.withLock { syncErrno = errno } }
    /// Which files faults apply to, by name suffix.
    public func setPathSuffix(_ suffix: String) { lock.withLock { faultSuffix = suffix } }
    /// Runs before every fdatasync of a matching file (on the calling thread); lets a test hold
    /// a sync open to observe batching deterministically.
    public func onDataSync(_ hook: (@Sendable (OpenFile) -> Void)?) { lock.withLock { syncHook = hook } }
    /// Successful fdatasync calls on matching files.
    public var dataSyncCount: Int { lock.withLock { dataSyncs } }
    /// Successful write calls on matching files.
    public var writeCount: Int { lock.withLock { writes } }

    private func matches(_ path: String) -> Bool { lock.withLock { path.hasSuffix(faultSuffix) } }

    public func open(_ path: String, flags: Int32, mode: mode_t) throws(FileOperationError) -> OpenFile {
        try base.open(path, flags: flags, mode: mode)
    }

    public func close(_ file: OpenFile) { base.close(file) }

    public func write(_ file: OpenFile, _ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(FileOperationError) {
        if matches(file.path) {
            if let code = lock.withLock({ writeErrno }) {
                throw FileOperationError(operation: "write", path: file.path, errno: code)
            }
            let budget: (fits: Int, errno: Int32)? = lock.withLock {
                guard let budget = writeBudget else { return nil }
                let fits = min(budget.bytes, bytes.count)
                writeBudget = (budget.bytes - fits, budget.errno)
                return fits < bytes.count ? (fits, budget.errno) : nil
            }
            if let budget {
                if budget.fits > 0 { try base.write(file, UnsafeRawBufferPointer(rebasing: bytes[0..<budget.fits]), at: offset) }
                throw FileOperationError(operation: "write", path: file.path, errno: budget.errno)
            }
            try base.write(file, bytes, at: offset)
            lock.withLock { writes += 1 }
            return
        }
        try base.write(file, bytes, at: offset)
    }

    public func syncData(_ file: OpenFile) throws(FileOperationError) {
        guard matches(file.path) else { return try base.syncData(file) }
        if let hook = lock.withLock({ syncHook }) { hook(file) }
        if let code = lock.withLock({ syncErrno }) {
            throw FileOperationError(operation: "fdatasync", path: file.path, errno: code)
        }
        try base.syncData(file)
        lock.withLock { dataSyncs += 1 }
    }

    public func sync(_ file: OpenFile) throws(FileOperationError) {
        if matches(file.path), let code = lock.withLock({ syncErrno }) {
            throw FileOperationError(operation: "fsync", path: file.path, errno: code)
        }
        try base.sync(file)
    }

    public func truncate(_ file: OpenFile, to length: Int64) throws(FileOperationError) {
        try base.truncate(file, to: length)
    }

    public func rename(_ from: String, to: String) throws(FileOperationError) { try base.rename(from, to: to) }
    public func remove(_ path: String) throws(FileOperationError) { try base.remove(path) }
    public func readFile(_ path: String) throws(FileOperationError) -> [UInt8] { try base.readFile(path) }
    public func fileSize(_ path: String) throws(FileOperationError) -> Int64 { try base.fileSize(path) }
    public func listDirectory(_ path: String) throws(FileOperationError) -> [String] { try base.listDirectory(path) }
    public func createDirectory(_ path: String, mode: mode_t) throws(FileOperationError) {
        try base.createDirectory(path, mode: mode)
    }
    public func tryLock(_ file: OpenFile, exclusive: Bool) throws(FileOperationError) -> Bool {
        try base.tryLock(file, exclusive: exclusive)
    }
}

/// File operations that remember what a power loss would keep of one directory, to test that
/// everything acknowledged survives it. Wraps another implementation (the real calls, or
/// `FaultInjectingFileOperations`).
///
/// The model, per file in `directory`: its content survives as of its last fsync/fdatasync (an
/// unsynced write is lost entirely); its name survives only as of the last fsync of the
/// directory (a create, rename or unlink that the directory was not fsynced after is undone:
/// a new file disappears even if its data was synced, a renamed file is back under its old name,
/// a deleted one comes back). Files present when the layer is made count as durable.
///
/// `powerLoss()` makes every later call fail with EIO (the machine is off); once the store is
/// closed, `restoreDurableState()` rewrites the directory to what the disk would hold.
public final class PowerLossFileOperations: FileOperations, @unchecked Sendable {
    private let lock = NSLock()
    private let base: any FileOperations
    private let directory: String
    private var nextIdentity = 0
    /// Name → file identity, as the directory is now and as its last fsync left it.
    private var liveEntries: [String: Int] = [:]
    private var durableEntries: [String: Int] = [:]
    /// File identity → content as of its last sync (absent: never synced, so empty).
    private var durableContent: [Int: [UInt8]] = [:]
    private var poweredOff = false
    private var writesUntilPowerLoss: Int?
    private var directorySyncs = 0

    public init(directory: String, base: any FileOperations = POSIXFileOperations()) throws(FileOperationError) {
        self.base = base
        self.directory = directory
        var names: [String] = []
        do throws(FileOperationError) { names = try base.listDirectory(directory) } catch where error.errno == ENOENT {}
        for name in names {
            let identity = nextIdentity
            nextIdentity += 1
            liveEntries[name] = identity
            durableEntries[name] = identity
            durableContent[identity] = try base.readFile(directory + "/" + name)
        }
    }

    /// From now on every call fails with EIO.
    public func powerLoss() { lock.withLock { poweredOff = true } }

    /// Power goes off right after the `writes`-th next successful write (so before the sync that
    /// would have covered it): the way to leave unsynced data behind.
    public func powerLoss(afterWrites writes: Int) { lock.withLock { writesUntilPowerLoss = writes } }

    /// fsyncs of `directory` so far.
    public var directorySyncCount: Int { lock.withLock { directorySyncs } }

    /// How much of the data written after a file's last sync a power loss keeps.
    public enum UnsyncedData: Sendable {
        /// None: every file is back to its last synced content (the strictest model).
        case dropped
        /// A random prefix of it, as when the disk wrote some sectors before power went.
        case tornPrefix
        /// A prefix ending on a 512-byte sector boundary (or at the synced length), then zeros
        /// up to a random length within what was written, as when the file's size reached the
        /// disk but some of its sectors did not.
        case tornPrefixThenZeros
    }

    /// Replaces the directory's files by what survived the power loss (call after the store is
    /// closed; the lock file is left alone) and lets calls through again. With a torn model, a
    /// file whose current content extends its synced content keeps part of the extension.
    public func restoreDurableState(unsynced: UnsyncedData = .dropped) throws(FileOperationError) {
        let (entries, live, contents) = lock.withLock { (durableEntries, liveEntries, durableContent) }
        var survivors: [String: [UInt8]] = [:]
        for (name, identity) in entries where name != StoreFormat.lockName {
            var content = contents[identity] ?? []
            if unsynced != .dropped, let current = live.first(where: { $0.value == identity })?.key,
               let now = try? base.readFile(directory + "/" + current),
               now.count > content.count, now.starts(with: content) {
                let synced = content.count
                var end = Int.random(in: synced...now.count)
                if unsynced == .tornPrefixThenZeros {
                    // Sectors land whole: the data that arrived ends at the synced length or on a
                    // 512-byte boundary, and the rest of the new length reads as zeros.
                    end = max(synced, end / 512 * 512)
                    content += now[synced..<end]
                    content += [UInt8](repeating: 0, count: Int.random(in: 0...(now.count - end)))
                } else {
                    content += now[synced..<end]
                }
            }
            survivors[name] = content
        }
        for name in try base.listDirectory(directory) where name != StoreFormat.lockName {
            try base.remove(directory + "/" + name)
        }
        for (name, content) in survivors {
            let file = try base.open(directory + "/" + name, flags: O_WRONLY | O_CREAT | O_TRUNC, mode: 0o600)
            defer { base.close(file) }
            if !content.isEmpty { try base.write(file, content, at: 0) }
        }
        lock.withLock {
            liveEntries = entries
            poweredOff = false
            writesUntilPowerLoss = nil
        }
    }

    /// The entry name when `path` is directly inside `directory`.
    private func entryName(_ path: String) -> String? {
        guard path.hasPrefix(directory + "/") else { return nil }
        let name = String(path.dropFirst(directory.count + 1))
        return name.contains("/") || name.isEmpty ? nil : name
    }

    private func checkPower(_ operation: String, _ path: String) throws(FileOperationError) {
        if lock.withLock({ poweredOff }) { throw FileOperationError(operation: operation, path: path, errno: EIO) }
    }

    public func open(_ path: String, flags: Int32, mode: mode_t) throws(FileOperationError) -> OpenFile {
        try checkPower("open", path)
        let name = entryName(path)
        let existed = name.map { name in lock.withLock { liveEntries[name] != nil } } ?? true
        let file = try base.open(path, flags: flags, mode: mode)
        if let name, !existed, flags & O_CREAT != 0 {
            lock.withLock {
                liveEntries[name] = nextIdentity
                nextIdentity += 1
            }
        }
        return file
    }

    public func close(_ file: OpenFile) { base.close(file) }

    public func write(_ file: OpenFile, _ bytes: UnsafeRawBufferPointer, at offset: Int64) throws(FileOperationError) {
        try checkPower("write", file.path)
        try base.write(file, bytes, at: offset)
        lock.withLock {
            guard let remaining = writesUntilPowerLoss else { return }
            writesUntilPowerLoss = remaining - 1
            if remaining <= 1 { poweredOff = true }
        }
    }

    public func syncData(_ file: OpenFile) throws(FileOperationError) {
        try checkPower("fdatasync", file.path)
        try base.syncData(file)
        try recordSync(file)
    }

    public func sync(_ file: OpenFile) throws(FileOperationError) {
        try checkPower("fsync", file.path)
        try base.sync(file)
        try recordSync(file)
    }

    private func recordSync(_ file: OpenFile) throws(FileOperationError) {
        if file.path == directory {
            lock.withLock {
                durableEntries = liveEntries
                directorySyncs += 1
            }
        } else if let name = entryName(file.path), let identity = lock.withLock({ liveEntries[name] }) {
            let content = try base.readFile(file.path)
            lock.withLock { durableContent[identity] = content }
        }
    }

    public func truncate(_ file: OpenFile, to length: Int64) throws(FileOperationError) {
        try checkPower("ftruncate", file.path)
        try base.truncate(file, to: length)
    }

    public func rename(_ from: String, to: String) throws(FileOperationError) {
        try checkPower("rename", from)
        try base.rename(from, to: to)
        lock.withLock {
            guard let source = entryName(from) else { return }
            let identity = liveEntries.removeValue(forKey: source)
            if let target = entryName(to) { liveEntries[target] = identity }
        }
    }

    public func remove(_ path: String) throws(FileOperationError) {
        try checkPower("unlink", path)
        try base.remove(path)
        if let name = entryName(path) { lock.withLock { _ = liveEntries.removeValue(forKey: name) } }
    }

    public func readFile(_ path: String) throws(FileOperationError) -> [UInt8] {
        try checkPower("read", path)
        return try base.readFile(path)
    }

    public func fileSize(_ path: String) throws(FileOperationError) -> Int64 {
        try checkPower("stat", path)
        return try base.fileSize(path)
    }

    public func listDirectory(_ path: String) throws(FileOperationError) -> [String] {
        try checkPower("opendir", path)
        return try base.listDirectory(path)
    }

    public func createDirectory(_ path: String, mode: mode_t) throws(FileOperationError) {
        try checkPower("mkdir", path)
        try base.createDirectory(path, mode: mode)
    }

    public func tryLock(_ file: OpenFile, exclusive: Bool) throws(FileOperationError) -> Bool {
        try base.tryLock(file, exclusive: exclusive)
    }
}
