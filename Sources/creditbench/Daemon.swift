#if canImport(Glibc)
import Glibc
#endif
import CreditProto
import CreditWire
import Foundation
import SwiftProtobuf

/// The release creditd, started on a private socket and state directory.
final class Daemon {
    let child: ChildProcess
    let socketPath: String
    let stateDirectory: String
    /// Monotonic instant just before the process was spawned.
    let startedAt: UInt64

    init(binary: String, workDirectory: String, stateDirectory: String, extraArguments: [String] = []) throws {
        socketPath = workDirectory + "/creditd.sock"
        self.stateDirectory = stateDirectory
        let arguments = [
            "--socket", socketPath, "--state-dir", stateDirectory,
            // A manual clock resumes at the journal's last instant: no renewals fall due mid-run.
            "--clock", "manual", "--log-level", "warning",
            // No periodic snapshot may land inside a measured phase.
            "--snapshot-every-records", "1000000000", "--snapshot-interval", "86400",
            "--default-deadline", "0", "--idle-timeout", "0",
        ] + extraArguments
        startedAt = monotonicNanos()
        child = try ChildProcess(executable: binary, arguments: arguments,
                                 logPath: workDirectory + "/creditd-\(UInt32.random(in: 0...UInt32.max)).log")
    }

    var pid: Int32 { child.pid }

    /// Polls Health/Check until SERVING; returns the seconds since the process was spawned.
    @discardableResult
    func waitUntilServing(timeout: Double) throws -> Double {
        let end = startedAt + UInt64(timeout * 1e9)
        while monotonicNanos() < end {
            guard child.process.isRunning else { throw BenchError("creditd exited before serving:\n\(child.log)") }
            if let socket = try? UnixSocket(path: socketPath, receiveTimeoutSeconds: 2),
               case .success(let bytes)? = try? socket.call(streamID: 1, service: MethodTable.Health.check.service,
                                           method: MethodTable.Health.check.method, payload: []),
               let response = try? Grpc_Health_V1_HealthCheckResponse(serializedBytes: bytes),
               response.status == .serving {
                return Double(monotonicNanos() - startedAt) / 1e9
            }
            usleep(2_000)
        }
        throw BenchError("creditd did not serve within \(timeout) s:\n\(child.log)")
    }

    /// One call on a fresh connection; throws on an RPC error.
    func call<Request, Response>(_ method: TypedMethod<Request, Response>, _ request: Request,
                                 timeoutSeconds: Int = 30) throws -> Response {
        let socket = try UnixSocket(path: socketPath, receiveTimeoutSeconds: timeoutSeconds)
        switch try socket.call(streamID: 1, service: method.service, method: method.method, payload: try request.serializedBytes()) {
        case .success(let bytes): return try Response(serializedBytes: bytes)
        case .failure(let error): throw BenchError("\(method.descriptor): \(error)")
        }
    }

    /// `count` calls one after another on one connection: each response, and each call's
    /// time as the client saw it, in microseconds.
    func timedCalls<Request, Response>(_ method: TypedMethod<Request, Response>, _ request: Request,
                                       count: Int) throws -> (responses: [Response], micros: [Double]) {
        let socket = try UnixSocket(path: socketPath, receiveTimeoutSeconds: 30)
        let payload: [UInt8] = try request.serializedBytes()
        var responses: [Response] = [], micros: [Double] = []
        for index in 0..<count {
            let start = monotonicNanos()
            let result = try socket.call(streamID: UInt32(2 * index + 1), service: method.service,
                                         method: method.method, payload: payload)
            micros.append(Double(monotonicNanos() - start) / 1e3)
            switch result {
            case .success(let bytes): responses.append(try Response(serializedBytes: bytes))
            case .failure(let error): throw BenchError("\(method.descriptor): \(error)")
            }
        }
        return (responses, micros)
    }

    /// TakeSnapshot: (seconds seen by the client, seconds the daemon reports, snapshot bytes).
    func takeSnapshot() throws -> (clientSeconds: Double, serverSeconds: Double, bytes: UInt64) {
        let start = monotonicNanos()
        let response = try call(MethodTable.Admin.takeSnapshot, Creditd_V1_TakeSnapshotRequest(), timeoutSeconds: 900)
        return (Double(monotonicNanos() - start) / 1e9, response.durationSeconds, response.bytes)
    }

    var rssMiB: Double { Double(ProcFS.statusKiB(pid: pid, field: "VmRSS")) / 1024 }
    var peakRSSMiB: Double { Double(ProcFS.statusKiB(pid: pid, field: "VmHWM")) / 1024 }

    /// SIGKILL: no final snapshot, so the state directory stays as the measurement left it.
    func kill() { child.stop(signal: SIGKILL) }

    func stop() { child.stop(signal: SIGTERM) }
}
