#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Writes a `.prom` file for node_exporter's textfile collector atomically: the
/// text goes to a temporary file in the same directory (so `rename(2)` stays on
/// one filesystem), is flushed, made readable, and renamed over the target. The
/// collector therefore never reads a half-written file. The temporary name does
/// not end in `.prom`, so the collector ignores it.
public enum PrometheusTextfile {
    public struct WriteError: Error, Equatable, CustomStringConvertible {
        public let operation: String
        public let path: String
        public let errno: Int32

        public var description: String {
            "\(operation) \(path): \(String(cString: strerror(errno)))"
        }
    }

    /// - Parameters:
    ///   - text: the exposition (must not carry timestamps: the collector skips such files).
    ///   - path: the target, e.g. `/var/lib/prometheus/node-exporter/creditd.prom`.
    ///   - mode: permissions of the result; it must be readable by `prometheus`.
    public static func write(_ text: String, to path: String, mode: mode_t = 0o644) throws(WriteError) {
        let temporary = "\(path).\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode)
        guard fd >= 0 else { throw WriteError(operation: "open", path: temporary, errno: errno) }
        var failure: WriteError?
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count, failure == nil {
            let written = bytes.withUnsafeBytes { buffer in
                Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written < 0 {
                if errno != EINTR { failure = WriteError(operation: "write", path: temporary, errno: errno) }
            } else {
                offset += written
            }
        }
        // The umask may have narrowed `mode`; the collector needs it as asked.
        if failure == nil, fchmod(fd, mode) != 0 {
            failure = WriteError(operation: "fchmod", path: temporary, errno: errno)
        }
        if failure == nil, fsync(fd) != 0 {
            failure = WriteError(operation: "fsync", path: temporary, errno: errno)
        }
        if close(fd) != 0, failure == nil {
            failure = WriteError(operation: "close", path: temporary, errno: errno)
        }
        if failure == nil, rename(temporary, path) != 0 {
            failure = WriteError(operation: "rename", path: path, errno: errno)
        }
        if let failure {
            unlink(temporary)
            throw failure
        }
    }
}
