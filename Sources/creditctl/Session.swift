import ArgumentParser
import CreditClient
import CreditProto
import CreditWire
import Foundation
import SwiftProtobuf

/// One connection to creditd for the length of one command.
struct Session {
    let client: CreditClient
    let timeout: Duration

    /// Calls a method of the generated method table.
    func call<Request, Response>(_ method: TypedMethod<Request, Response>, _ request: Request) async throws -> Response {
        try await client.call(method, request, timeout: timeout)
    }
}

/// A change whose answer never came. creditd commits a write whether or not its caller still
/// waits, so after creditctl's own timeout or a connection lost mid-call the change may have been
/// made; a person who retries at once (say with another seat count) would make a second one.
/// (A DEADLINE_EXCEEDED from creditd itself is different: it refuses a write whose deadline has
/// passed before applying it, so nothing was changed.)
struct UnansweredChange {
    /// The request's idempotency key (I1), empty when none was given.
    let idempotencyKey: String
    /// The read that shows whether the change was made.
    let lookup: String

    var advice: String {
        idempotencyKey.isEmpty
            ? "the change may have been made; look with `\(lookup)` before repeating it (with -k KEY a repeat is safe)"
            : "the change may have been made; repeat the command with the same -k \(idempotencyKey): it answers as the first did and changes nothing twice"
    }

    static func applies(to error: any Error) -> Bool {
        switch error as? ClientError {
        case .timedOut?, .connectionClosed?: true
        default: false
        }
    }
}

/// Opens a session, runs `body` and turns every failure into the exit code
/// and stderr line of docs/operations.md §7. `change` describes a write, for the advice a
/// failure without an answer needs (`UnansweredChange`).
func withSession<T>(
    _ options: ConnectionOptions, change: UnansweredChange? = nil, _ body: (Session) async throws -> T
) async throws -> T {
    let path = try options.socketPath()
    let client: CreditClient
    do {
        client = try await CreditClient.connect(socketPath: path, timeout: options.timeoutDuration)
    } catch {
        throw CommandFailure(error, socketPath: path)
    }
    do {
        let result = try await body(Session(client: client, timeout: options.timeoutDuration))
        await client.close()
        return result
    } catch {
        await client.close()
        // Already reported, or an exit code chosen by the command.
        if error is CommandFailure || error is ExitCode { throw error }
        let failure = CommandFailure(error, socketPath: path)
        if let change, UnansweredChange.applies(to: error) {
            throw CommandFailure(exitCode: failure.exitCode, codeName: failure.codeName,
                                 message: failure.message + "; " + change.advice)
        }
        throw failure
    }
}

/// A failed command: what goes to stderr and the exit code.
struct CommandFailure: Error {
    let exitCode: Int32
    /// The call's status; nil for a failure of creditctl's own, such as a file it cannot write.
    let codeName: String?
    let message: String

    init(exitCode: Int32, codeName: String?, message: String) {
        self.exitCode = exitCode
        self.codeName = codeName
        self.message = message
    }

    /// A local file that cannot be read or written: the file and the system's reason
    /// (strerror), and no status code, since no call failed.
    static func file(_ exitCode: Int32, _ action: String, _ path: String, errno code: Int32) -> CommandFailure {
        CommandFailure(exitCode: exitCode, codeName: nil, message: "\(action) \(path): \(String(cString: strerror(code)))")
    }

    init(_ error: any Error, socketPath: String) {
        switch Failure.classify(error, socketPath: socketPath) {
        case .rpc(let code, let message):
            self.init(exitCode: CommandFailure.exitCode(for: code), codeName: code.name, message: message)
        case .unavailable(let message):
            self.init(exitCode: CtlExit.unavailable, codeName: "UNAVAILABLE", message: message)
        case .permissionDenied(let message):
            self.init(exitCode: CtlExit.permissionDenied, codeName: "PERMISSION_DENIED", message: message)
        case .timedOut(let message):
            self.init(exitCode: CtlExit.timeout, codeName: "DEADLINE_EXCEEDED", message: message)
        case .other(let message):
            self.init(exitCode: CtlExit.rpcFailed, codeName: "UNKNOWN", message: message)
        }
    }

    static func exitCode(for code: StatusCode) -> Int32 {
        switch code {
        case .ok: return CtlExit.ok
        case .unavailable: return CtlExit.unavailable
        case .deadlineExceeded: return CtlExit.timeout
        case .permissionDenied, .unauthenticated: return CtlExit.permissionDenied
        default: return CtlExit.rpcFailed
        }
    }

    /// `creditctl: error: CODE: message`, or `creditctl: error: message` without a status.
    /// The message is escaped: creditd's messages quote what the client sent.
    var line: String { "creditctl: error: " + (codeName.map { "\($0): " } ?? "") + terminalSafe(message) }

    func report() {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
