#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why inherited sockets could not be used.
public enum ListenFDsError: Error, Equatable, CustomStringConvertible {
    /// `LISTEN_FDS` is not a positive decimal number.
    case invalidCount(String)
    /// `LISTEN_FDNAMES` has a different number of names than `LISTEN_FDS`.
    case nameCountMismatch(names: Int, fds: Int)
    /// No inherited fd is named as requested (and there is not exactly one unnamed fd).
    case missingName(String, available: [String])
    /// `fcntl` or `getsockopt` failed on the fd.
    case systemCall(fd: Int32, call: String, errno: Int32)
    /// `SO_DOMAIN` is not `AF_UNIX`.
    case notUnixDomain(fd: Int32, domain: Int32)
    /// `SO_TYPE` is not `SOCK_STREAM`.
    case notStream(fd: Int32, type: Int32)
    /// `SO_ACCEPTCONN` is 0: the socket is not listening.
    case notListening(fd: Int32)

    public var description: String {
        switch self {
        case .invalidCount(let text):
            return "LISTEN_FDS=\(text) is not a positive number"
        case .nameCountMismatch(let names, let fds):
            return "LISTEN_FDNAMES has \(names) names for \(fds) LISTEN_FDS"
        case .missingName(let name, let available):
            return "no inherited socket is named \"\(name)\" (have: \(available.joined(separator: ", ")))"
        case .systemCall(let fd, let call, let code):
            return "\(call) on inherited fd \(fd) failed: \(String(cString: strerror(code)))"
        case .notUnixDomain(let fd, let domain):
            return "inherited fd \(fd) is not an AF_UNIX socket (domain \(domain)); creditd serves only Unix sockets"
        case .notStream(let fd, let type):
            return "inherited fd \(fd) is not SOCK_STREAM (type \(type)); use ListenStream= in the socket unit"
        case .notListening(let fd):
            return "inherited fd \(fd) is not a listening socket (SO_ACCEPTCONN=0); use Accept=no in the socket unit"
        }
    }
}

/// Sockets passed by systemd socket activation (sd_listen_fds(3)).
///
/// They start at fd 3 (`SD_LISTEN_FDS_START`). They are used only if `LISTEN_PID`
/// equals our pid, so a child that inherited the variables does not take them.
public struct ListenFDs: Sendable, Equatable {
    /// The first inherited fd.
    public static let firstDescriptor: Int32 = 3
    /// The name the socket unit gives creditd's RPC socket (`FileDescriptorName=rpc`).
    public static let rpcName = "rpc"

    public struct Descriptor: Sendable, Equatable {
        public let fd: Int32
        /// From `LISTEN_FDNAMES`; `"unknown"` when names were not passed (as libsystemd does).
        public let name: String

        public init(fd: Int32, name: String) {
            self.fd = fd
            self.name = name
        }
    }

    /// Empty when the process was not socket-activated.
    public let descriptors: [Descriptor]

    public var isActivated: Bool { !descriptors.isEmpty }

    /// Parses the variables without touching fds or the environment.
    /// Returns no descriptors unless `LISTEN_PID` equals `pid`.
    public init(environment: [String: String], pid: pid_t) throws(ListenFDsError) {
        guard let pidText = environment["LISTEN_PID"], let listenPID = parseDecimal(pidText),
              listenPID == UInt64(pid)
        else {
            self.descriptors = []
            return
        }
        let countText = environment["LISTEN_FDS"] ?? ""
        guard let count = parseDecimal(countText), count > 0, count <= 4096 else {
            throw .invalidCount(countText)
        }
        let names: [String]
        if let nameText = environment["LISTEN_FDNAMES"] {
            names = nameText.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard names.count == Int(count) else {
                throw .nameCountMismatch(names: names.count, fds: Int(count))
            }
        } else {
            names = Array(repeating: "unknown", count: Int(count))
        }
        self.descriptors = names.enumerated().map { index, name in
            Descriptor(fd: Self.firstDescriptor + Int32(index), name: name)
        }
    }

    /// Takes the activated sockets of this process: parses `LISTEN_PID`,
    /// `LISTEN_FDS` and `LISTEN_FDNAMES`, sets `FD_CLOEXEC` on each fd, and unsets the
    /// three variables (always, so no child sees them).
    ///
    /// Call at the very top of `main`, before any thread starts: `unsetenv` is not
    /// thread-safe.
    public static func takeFromProcessEnvironment() throws(ListenFDsError) -> ListenFDs {
        let keys = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"]
        let environment = ProcessEnvironment.values(for: keys)
        for key in keys { unsetenv(key) }
        let result = try ListenFDs(environment: environment, pid: getpid())
        for descriptor in result.descriptors {
            let flags = fcntl(descriptor.fd, F_GETFD)
            guard flags >= 0, fcntl(descriptor.fd, F_SETFD, flags | FD_CLOEXEC) >= 0 else {
                throw .systemCall(fd: descriptor.fd, call: "fcntl(FD_CLOEXEC)", errno: errno)
            }
        }
        return result
    }

    /// The fd named `name`; failing that, the only fd if exactly one was passed
    /// without names (`LISTEN_FDNAMES` unset).
    public func descriptor(named name: String) throws(ListenFDsError) -> Int32 {
        if let match = descriptors.first(where: { $0.name == name }) {
            return match.fd
        }
        if descriptors.count == 1, descriptors[0].name == "unknown" {
            return descriptors[0].fd
        }
        throw .missingName(name, available: descriptors.map(\.name))
    }

    /// The RPC socket (`rpc`, or the single unnamed fd 3), checked with
    /// `validateListeningUnixStream`. Hand it to NIO's
    /// `ServerBootstrap.bind(_ socket:childChannelInitializer:)`; never unlink it.
    public func rpcSocket() throws(ListenFDsError) -> Int32 {
        let fd = try descriptor(named: Self.rpcName)
        try Self.validateListeningUnixStream(fd)
        return fd
    }

    /// Checks `SO_DOMAIN == AF_UNIX`, `SO_TYPE == SOCK_STREAM` and `SO_ACCEPTCONN == 1`.
    public static func validateListeningUnixStream(_ fd: Int32) throws(ListenFDsError) {
        let domain = try intOption(fd, SO_DOMAIN, "getsockopt(SO_DOMAIN)")
        guard domain == AF_UNIX else { throw .notUnixDomain(fd: fd, domain: domain) }
        let type = try intOption(fd, SO_TYPE, "getsockopt(SO_TYPE)")
        guard type == Int32(SOCK_STREAM.rawValue) else { throw .notStream(fd: fd, type: type) }
        let accepting = try intOption(fd, SO_ACCEPTCONN, "getsockopt(SO_ACCEPTCONN)")
        guard accepting == 1 else { throw .notListening(fd: fd) }
    }

    private static func intOption(_ fd: Int32, _ name: Int32, _ call: String) throws(ListenFDsError) -> Int32 {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, name, &value, &length) == 0 else {
            throw .systemCall(fd: fd, call: call, errno: errno)
        }
        return value
    }
}
