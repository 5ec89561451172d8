@_exported import CreditTestSupport
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real AF_UNIX datagram socket that plays the service manager's notify socket.
final class DatagramReceiver {
    let fd: Int32
    /// The value to put in NOTIFY_SOCKET.
    let notifySocketValue: String
    private let cleanupPath: String?

    /// Binds a path socket inside a fresh temporary directory.
    static func path() throws -> DatagramReceiver {
        let directory = try TemporaryDirectory.makePath("systemd")
        let path = directory + "/notify.sock"
        let fd = try makeDatagramSocket()
        try bindOrThrow(fd, UnixSocketAddress(path))
        return DatagramReceiver(fd: fd, value: path, cleanupPath: directory)
    }

    /// Binds an abstract-namespace socket with no trailing NUL in its name, exactly
    /// as systemd does; a sender that added a NUL would address another name.
    static func abstract() throws -> DatagramReceiver {
        let name = "creditd-test-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let fd = try makeDatagramSocket()
        try bindOrThrow(fd, UnixSocketAddress("@" + name))
        return DatagramReceiver(fd: fd, value: "@" + name, cleanupPath: nil)
    }

    private init(fd: Int32, value: String, cleanupPath: String?) {
        self.fd = fd
        self.notifySocketValue = value
        self.cleanupPath = cleanupPath
    }

    deinit {
        close(fd)
        if let cleanupPath { TemporaryDirectory.remove(atPath: cleanupPath) }
    }

    /// Blocks for the next datagram. SO_RCVTIMEO only keeps a broken test from
    /// hanging forever; it is not a timing assertion.
    func receive() throws -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard count >= 0 else { throw POSIXError(errno: errno, "recv") }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }

    /// A datagram if one is already queued, nil otherwise.
    func receiveIfQueued() throws -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
        if count < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK { return nil }
            throw POSIXError(errno: errno, "recv")
        }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }

    private static func makeDatagramSocket() throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(errno: errno, "socket") }
        var timeout = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    private static func bindOrThrow(_ fd: Int32, _ address: UnixSocketAddress) throws {
        guard address.bind(fd) == 0 else {
            let code = errno
            close(fd)
            throw POSIXError(errno: code, "bind")
        }
    }
}

struct POSIXError: Error, CustomStringConvertible {
    let code: Int32
    let call: String
    init(errno code: Int32, _ call: String) {
        self.code = code
        self.call = call
    }
    var description: String { "\(call): \(String(cString: strerror(code)))" }
}

/// Binds a Unix stream socket at a temporary path; listens if asked.
func makeUnixStreamSocket(listening: Bool) throws -> (fd: Int32, directory: String) {
    let directory = try TemporaryDirectory.makePath("systemd")
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(errno: errno, "socket") }
    guard UnixSocketAddress(directory + "/s.sock").bind(fd) == 0 else { throw POSIXError(errno: errno, "bind") }
    if listening {
        guard listen(fd, 16) == 0 else { throw POSIXError(errno: errno, "listen") }
    }
    return (fd, directory)
}
