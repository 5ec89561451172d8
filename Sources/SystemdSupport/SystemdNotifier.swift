#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Sends sd_notify(3) messages to the service manager without libsystemd.
///
/// `$NOTIFY_SOCKET` is read once, when the notifier is created. Without it every
/// call does nothing. Each message is one `AF_UNIX` datagram of `KEY=VALUE` lines;
/// failures are ignored, as the protocol intends (the manager may be gone).
public struct SystemdNotifier: Sendable {
    /// Where notifications go: a filesystem path or an abstract-namespace name.
    public enum Address: Sendable, Equatable {
        /// `/path`: sent with `addrlen = offsetof(sun_path) + len + 1` (trailing NUL).
        case path(String)
        /// `@name`: the `@` becomes a NUL byte and `addrlen = offsetof(sun_path) + len`
        /// (no trailing NUL). The associated value is the name without the `@`.
        case abstract(String)
    }

    /// The parsed destination, or nil when notifications are disabled.
    public let address: Address?

    /// Whether messages are actually sent.
    public var isEnabled: Bool { address != nil }

    /// Reads `NOTIFY_SOCKET` from the process environment.
    public init() {
        self.init(environment: ProcessEnvironment.values(for: ["NOTIFY_SOCKET"]))
    }

    /// Reads `NOTIFY_SOCKET` from `environment`. Values that are neither `/path` nor
    /// `@name`, or that do not fit in `sun_path`, disable the notifier.
    public init(environment: [String: String]) {
        self.address = environment["NOTIFY_SOCKET"].flatMap(Self.parseAddress)
    }

    static func parseAddress(_ value: String) -> Address? {
        let bytes = Array(value.utf8)
        // sun_path is 108 bytes on Linux; a path needs room for its NUL.
        let capacity = MemoryLayout.size(ofValue: sockaddr_un().sun_path)
        guard bytes.count >= 2, !bytes.contains(0) else { return nil }
        switch bytes[0] {
        case UInt8(ascii: "/"):
            return bytes.count + 1 <= capacity ? .path(value) : nil
        case UInt8(ascii: "@"):
            return bytes.count <= capacity ? .abstract(String(value.dropFirst())) : nil
        default:
            return nil
        }
    }

    // MARK: Messages

    /// `READY=1`, with an optional one-line `STATUS=`. Send once SERVING, and again
    /// after a reload finishes.
    @discardableResult
    public func ready(status: String? = nil) -> Bool {
        var fields = [("READY", "1")]
        if let status { fields.append(("STATUS", Self.oneLine(status))) }
        return send(fields)
    }

    /// `STATUS=` with a single line of free text.
    @discardableResult
    public func status(_ text: String) -> Bool {
        send([("STATUS", Self.oneLine(text))])
    }

    /// `STOPPING=1`, optionally with a `STATUS=`.
    @discardableResult
    public func stopping(status: String? = nil) -> Bool {
        var fields = [("STOPPING", "1")]
        if let status { fields.append(("STATUS", Self.oneLine(status))) }
        return send(fields)
    }

    /// `RELOADING=1` plus `MONOTONIC_USEC=` (CLOCK_MONOTONIC in µs, as
    /// `Type=notify-reload` requires). Follow with `ready()` when the reload is done.
    @discardableResult
    public func reloading(status: String? = nil) -> Bool {
        var fields = [("RELOADING", "1"), ("MONOTONIC_USEC", String(Self.monotonicMicroseconds()))]
        if let status { fields.append(("STATUS", Self.oneLine(status))) }
        return send(fields)
    }

    /// `WATCHDOG=1`.
    @discardableResult
    public func watchdog() -> Bool {
        send([("WATCHDOG", "1")])
    }

    /// `EXTEND_TIMEOUT_USEC=`: asks for `usec` more microseconds from now, during a
    /// long start (recovery) or stop.
    @discardableResult
    public func extendTimeout(usec: UInt64) -> Bool {
        send([("EXTEND_TIMEOUT_USEC", String(usec))])
    }

    /// Sends `KEY=VALUE` lines in one datagram.
    @discardableResult
    public func send(_ fields: [(String, String)]) -> Bool {
        send(payload: fields.map { "\($0.0)=\($0.1)" }.joined(separator: "\n"))
    }

    /// Sends a raw payload (already `KEY=VALUE` lines). Returns whether the kernel
    /// accepted the datagram; callers normally ignore it.
    @discardableResult
    public func send(payload: String) -> Bool {
        guard let address else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }

        var storage = sockaddr_un()
        storage.sun_family = sa_family_t(AF_UNIX)
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \sockaddr_un.sun_path)!
        let addressLength: Int
        switch address {
        case .path(let path):
            let bytes = Array(path.utf8)
            Self.copy(bytes, into: &storage)
            addressLength = pathOffset + bytes.count + 1
        case .abstract(let name):
            let bytes = [0] + Array(name.utf8)
            Self.copy(bytes, into: &storage)
            addressLength = pathOffset + bytes.count
        }

        let message = Array(payload.utf8)
        let sent = message.withUnsafeBytes { body in
            withUnsafePointer(to: &storage) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                    sendto(fd, body.baseAddress, body.count, Int32(MSG_NOSIGNAL), socketAddress, socklen_t(addressLength))
                }
            }
        }
        return sent == message.count
    }

    // MARK: Helpers

    private static func copy(_ bytes: [UInt8], into storage: inout sockaddr_un) {
        withUnsafeMutableBytes(of: &storage.sun_path) { path in
            path.copyBytes(from: bytes)
        }
    }

    /// STATUS= is a single line; anything after a newline would be read as another key.
    static func oneLine(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }

    /// CLOCK_MONOTONIC in microseconds, the clock systemd compares reload stamps against.
    public static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
    }
}
