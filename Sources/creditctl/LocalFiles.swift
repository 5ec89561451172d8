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
