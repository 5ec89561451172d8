import Foundation

// The local files of `import` and `export`. Their errors name the file and the system's reason
// (strerror) and exit with the sysexits codes of CtlExit: they are not usage errors (exit 2,
// with the usage text) and no call failed, so they carry no status code.

enum LocalFile {
    /// The whole file, or standard input for `-`.
    static func read(_ path: String) throws(CommandFailure) -> [UInt8] {
        let name = path == "-" ? "standard input" : path
        let descriptor = path == "-" ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .file(CtlExit.noInput, "cannot read", name, errno: errno) }
        defer { if descriptor != STDIN_FILENO { close(descriptor) } }
        var status = stat()
        // read(2) on a directory fails with EISDIR only once it is opened; say so up front.
        if fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFDIR {
            throw .file(CtlExit.noInput, "cannot read", name, errno: EISDIR)
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count == 0 { return bytes }
            if count < 0 {
                if errno == EINTR { continue }
                throw .file(CtlExit.ioError, "cannot read", name, errno: errno)
            }
            bytes.append(contentsOf: chunk[..<count])
        }
    }
}

/// Where `export -o FILE` writes, opened before creditctl connects: a path it cannot write
/// fails at once, not after the whole export ran.
///
/// A regular file (or a new one) is written to a temporary file beside it and renamed over it
/// once complete, so a failed export leaves the previous file as it was, never empty or cut
/// short. The rename replaces what it is given, so: a symlink is followed and its target
/// replaced (the temporary file goes next to the target, on its file system); the new file
/// gets the old one's mode (a 0600 file stays private) and, when creditctl may set it (root),
/// its owner; a FIFO or a device (/dev/stdout, a terminal) has no file to replace and is
/// written into, as a shell redirection would.
struct ExportOutput {
    /// The path as given, for messages.
    let name: String
    let descriptor: Int32
    /// Nil when writing straight into `target`.
    let temporary: String?
    /// `name` with its symlinks followed.
    let target: String

    static func open(_ path: String) throws(CommandFailure) -> ExportOutput {
        func failure(_ code: Int32) -> CommandFailure { .file(CtlExit.cannotCreate, "cannot write", path, errno: code) }
        let target = try resolve(path)
        var status = stat()
        let exists = stat(target, &status) == 0
        // ENOTDIR, EACCES on the way: the file can be neither found nor created.
        if !exists, errno != ENOENT { throw failure(errno) }
        if exists {
            switch status.st_mode & S_IFMT {
            case S_IFREG:
                // rename(2) needs only the directory's permission: refuse a file one may not
                // write, as `>` would, rather than replace it.
                guard access(target, W_OK) == 0 else { throw failure(errno) }
            case S_IFDIR:
                throw failure(EISDIR)
            default:
                let descriptor = Glibc.open(target, O_WRONLY | O_CLOEXEC)
                guard descriptor >= 0 else { throw failure(errno) }
                return ExportOutput(name: path, descriptor: descriptor, temporary: nil, target: target)
            }
        }
        let temporary = "\(target).creditctl-\(getpid()).tmp"
        // A leftover of an earlier run killed with the same pid; O_EXCL then creates a fresh
        // file rather than write through whatever is at that name.
        unlink(temporary)
        let descriptor = Glibc.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, exists ? 0o600 : 0o666)
        guard descriptor >= 0 else { throw failure(errno) }
        if exists {
            // Best effort: a file system without owners or modes (vfat) refuses, and the export
            // is still wanted. The owner first: chown clears set-id bits.
            if geteuid() == 0 { _ = fchown(descriptor, status.st_uid, status.st_gid) }
            _ = fchmod(descriptor, status.st_mode & 0o7777)
        }
        return ExportOutput(name: path, descriptor: descriptor, temporary: temporary, target: target)
    }

    /// `path` with its symlinks followed, relative ones from the link's directory. The target
    /// need not exist: a dangling link is where the file is created.
    static func resolve(_ path: String) throws(CommandFailure) -> String {
        var target = path
        for _ in 0..<40 {
            var status = stat()
            guard lstat(target, &status) == 0, status.st_mode & S_IFMT == S_IFLNK else { return target }
            var buffer = [UInt8](repeating: 0, count: Int(PATH_MAX))
            let count = buffer.withUnsafeMutableBytes { readlink(target, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
            guard count >= 0 else { throw .file(CtlExit.cannotCreate, "cannot write", path, errno: errno) }
            let link = String(decoding: buffer[..<count], as: UTF8.self)
            if link.hasPrefix("/") {
                target = link
            } else if let slash = target.lastIndex(of: "/") {
                target = target[...slash] + link
            } else {
                target = link
            }
        }
        throw .file(CtlExit.cannotCreate, "cannot write", path, errno: ELOOP)
    }

    /// Makes the export durable and puts it in place.
    func finish() throws(CommandFailure) {
        guard let temporary else {
            close(descriptor)
            return
        }
        // Delayed write errors (a full disk, NFS) show up here.
        guard fsync(descriptor) == 0 else { throw .file(CtlExit.ioError, "cannot write", name, errno: errno) }
        guard close(descriptor) == 0 else { throw .file(CtlExit.ioError, "cannot write", name, errno: errno) }
        guard rename(temporary, target) == 0 else { throw .file(CtlExit.ioError, "cannot replace", name, errno: errno) }
    }

    /// After a failure: the previous file stays as it was.
    func abandon() {
        close(descriptor)
        if let temporary { unlink(temporary) }
    }
}

/// Writing all of a buffer to a descriptor, the way every output of creditctl ends.
enum OutputWriter {
    /// Writes all of `bytes` to `descriptor` (`name`; nil for standard output). A failure is
    /// the local file's, not a call's: exit code 74 with the system's reason. When standard
    /// output's reader has gone (`creditctl events | head`), creditctl ends the way the tools
    /// around it do: silently, by SIGPIPE (status 141 in a shell). NIO sets SIGPIPE to ignored
    /// for the whole process, so such a write returns EPIPE; `FileHandle.write` then trapped
    /// with a backtrace, and an export said "cannot write to standard output: Broken pipe".
    static func write(_ bytes: UnsafeRawBufferPointer, to descriptor: Int32 = STDOUT_FILENO, named name: String? = nil) throws {
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                if errno == EPIPE, name == nil { readerGone() }
                throw CommandFailure.file(CtlExit.ioError, name == nil ? "cannot write to" : "cannot write",
                                          name ?? "standard output", errno: errno)
            }
            offset += written
        }
    }

    /// Writes `text` to standard output.
    static func write(_ text: String) throws {
        try Array(text.utf8).withUnsafeBytes { try write($0) }
    }

    /// Ends creditctl as the default SIGPIPE action would.
    static func readerGone() -> Never {
        signal(SIGPIPE, SIG_DFL)
        raise(SIGPIPE)
        exit(128 + SIGPIPE)  // not reached: the signal ends the process
    }
}
