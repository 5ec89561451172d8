import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A `sockaddr_un` for binding or connecting test sockets: a path, or `@name` for Linux's
/// abstract namespace (no trailing NUL in the name, as systemd uses it).
public struct UnixSocketAddress {
    public private(set) var storage = sockaddr_un()
    /// The length to pass to bind(2)/connect(2).
    public let length: socklen_t

    public init(_ path: String) {
        storage.sun_family = sa_family_t(AF_UNIX)
        let abstract = path.hasPrefix("@")
        let bytes = abstract ? [0] + Array(path.utf8.dropFirst()) : Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: storage.sun_path)
        precondition(bytes.count < capacity, "socket path longer than sun_path: \(path)")
        withUnsafeMutableBytes(of: &storage.sun_path) { $0.copyBytes(from: bytes) }
        let offset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)!
        length = socklen_t(offset + bytes.count + (abstract ? 0 : 1))
    }

    /// bind(2); returns its result (errno is set on -1).
    public func bind(_ fd: Int32) -> Int32 {
        withUnsafePointer(to: storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
        }
    }

    /// connect(2); returns its result (errno is set on -1).
    public func connect(_ fd: Int32) -> Int32 {
        withUnsafePointer(to: storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, length) }
        }
    }
}
