import CreditClient
import CreditWire
import Foundation

/// What went wrong with a call, in the terms every probe maps to exit codes.
enum Failure {
    /// The server answered with a status.
    case rpc(StatusCode, String)
    /// No server to talk to: socket missing or refused, connect timeout, connection lost.
    case unavailable(String)
    /// The socket or the call is not allowed for this user.
    case permissionDenied(String)
    /// Connected, but the answer did not come in time.
    case timedOut(String)
    case other(String)

    static func classify(_ error: any Error, socketPath: String) -> Failure {
        switch error {
        case let error as RPCError:
            return .rpc(error.code, error.message)
        case let error as ClientError:
            switch error {
            case .connectFailed(_, let code) where code == EACCES || code == EPERM:
                return .permissionDenied(error.description)
            case .connectFailed, .connectTimedOut, .connectionClosed:
                return .unavailable(error.description)
            case .timedOut:
                return .timedOut("no answer from \(socketPath) in time")
            default:
                return .other(error.description)
            }
        default:
            return .other(String(describing: error))
        }
    }
}
