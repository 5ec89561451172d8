import CreditWire
#if canImport(Glibc)
import Glibc
#endif

/// Failures that happen before or instead of a server status.
public enum ClientError: Error, Sendable, Hashable, CustomStringConvertible {
    /// connect() failed; `errno` tells ENOENT (no socket), ECONNREFUSED (nobody listening)
    /// and EACCES (no permission on the socket or its directory) apart.
    case connectFailed(path: String, errno: Int32)
    /// connect() did not finish in time.
    case connectTimedOut(path: String)
    /// The call's deadline passed before its response arrived (enforced locally).
    case timedOut
    /// The connection closed before the response arrived, or was already closed.
    case connectionClosed
    /// The encoded request would exceed the 4 MiB frame limit; nothing was sent.
    case requestTooLarge(length: Int)
    /// The server's Response or payload could not be decoded.
    case invalidResponse(String)
    /// Stream ids of this connection are used up (after 2^31 calls); open a new connection.
    case streamIDsExhausted

    public var description: String {
        switch self {
        case .connectFailed(let path, let code):
            "cannot connect to \(path): \(String(cString: strerror(code)))"
        case .connectTimedOut(let path):
            "timed out connecting to \(path)"
        case .timedOut:
            "call timed out"
        case .connectionClosed:
            "connection closed"
        case .requestTooLarge(let length):
            "request message length \(length) exceeds maximum message size of \(TTRPCLimits.maxMessageLength)"
        case .invalidResponse(let reason):
            "invalid response: \(reason)"
        case .streamIDsExhausted:
            "stream ids exhausted on this connection"
        }
    }
}
