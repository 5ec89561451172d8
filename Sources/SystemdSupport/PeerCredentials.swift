#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CCreditSystem

/// A failed system call, with its errno.
public struct SystemCallError: Error, Equatable, CustomStringConvertible {
    public let call: String
    public let errno: Int32

    public init(call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call) failed: \(String(cString: strerror(errno)))" }
}

/// Peer identity of a connected Unix socket, and user/group name lookups used to
/// turn configured names into ids for authorization.
public enum PeerCredentials {
    /// SO_PEERCRED: pid, uid and primary gid the kernel recorded at `connect()`.
    public static func credentials(ofSocket fd: Int32) throws(SystemCallError) -> credit_ucred {
        var value = credit_ucred()
        var length = socklen_t(MemoryLayout<credit_ucred>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &value, &length) == 0 else {
            throw SystemCallError(call: "getsockopt(SO_PEERCRED)", errno: errno)
        }
        return value
    }

    /// SO_PEERGROUPS (Linux ≥ 4.13): the peer's supplementary gids at `connect()`.
    /// The primary gid comes from SO_PEERCRED and may or may not be in this list.
    public static func supplementaryGroups(ofSocket fd: Int32) throws(SystemCallError) -> [gid_t] {
        var capacity = 64
        while true {
            var groups = [gid_t](repeating: 0, count: capacity)
            var length = socklen_t(capacity * MemoryLayout<gid_t>.stride)
            let result = groups.withUnsafeMutableBytes { buffer in
                getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, buffer.baseAddress, &length)
            }
            if result == 0 {
                return Array(groups.prefix(Int(length) / MemoryLayout<gid_t>.stride))
            }
            // ERANGE reports the needed size in `length`.
            guard errno == ERANGE, Int(length) > capacity * MemoryLayout<gid_t>.stride else {
                throw SystemCallError(call: "getsockopt(SO_PEERGROUPS)", errno: errno)
            }
            capacity = Int(length) / MemoryLayout<gid_t>.stride
        }
    }

    /// The gid of group `name` (getgrnam_r), or nil if there is no such group.
    public static func groupID(named name: String) throws(SystemCallError) -> gid_t? {
        var entry = group()
        var found: UnsafeMutablePointer<group>? = nil
        var size = 1024
        while true {
            var buffer = [CChar](repeating: 0, count: size)
            let code = getgrnam_r(name, &entry, &buffer, size, &found)
            if code == ERANGE, size < 1 << 20 {
                size *= 4
                continue
            }
            guard code == 0 else { throw SystemCallError(call: "getgrnam_r(\(name))", errno: code) }
            return found == nil ? nil : entry.gr_gid
        }
    }

    /// The uid of user `name` (getpwnam_r), or nil if there is no such user.
    public static func userID(named name: String) throws(SystemCallError) -> uid_t? {
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>? = nil
        var size = 1024
        while true {
            var buffer = [CChar](repeating: 0, count: size)
            let code = getpwnam_r(name, &entry, &buffer, size, &found)
            if code == ERANGE, size < 1 << 20 {
                size *= 4
                continue
            }
            guard code == 0 else { throw SystemCallError(call: "getpwnam_r(\(name))", errno: code) }
            return found == nil ? nil : entry.pw_uid
        }
    }
}
