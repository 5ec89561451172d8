import CCreditClient
import CreditProto
import Foundation
import SwiftProtobuf
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A real `creditd` process on the manual test clock, with a private
/// temporary socket and state directory; its output goes to a log file.
/// Readiness is probed with the C library itself (Health/Check), so this
/// target needs no other test harness.
final class DaemonUnderTest {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The instant every daemon of these tests starts at, so that two
    /// daemons driven by the same script give the same answers.
    static let startInstant = "2025-04-01T09:00:00Z"

    let directory: String
    let socketPath: String
    let logPath: String
    private let process = Process()
    private let exited = DispatchSemaphore(value: 0)

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    var isRunning: Bool { process.isRunning }

    /// The built `creditd`: $CREDITD_BINARY, else next to the test bundle in
    /// the build products (`swift build` puts both in .build/debug).
    static func binaryPath() throws -> String {
        var candidates: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["CREDITD_BINARY"] { candidates.append(explicit) }
        let argv0 = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        candidates.append(argv0.deletingLastPathComponent().appendingPathComponent("creditd").path)
        for bundle in [Bundle.main, Bundle(for: DaemonUnderTest.self)] {
            candidates.append(bundle.bundleURL.deletingLastPathComponent().appendingPathComponent("creditd").path)
            candidates.append(bundle.bundleURL.appendingPathComponent("creditd").path)
        }
        if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            return found
        }
        throw Failure(description: "creditd binary not found; tried \(candidates.joined(separator: ", ")); "
                      + "build it (swift build) or set CREDITD_BINARY")
    }

    /// Starts creditd and waits until Health/Check answers SERVING.
    init(timeout: TimeInterval = 20) throws {
        let binary = try Self.binaryPath()
        // A short path: sun_path holds 108 bytes.
        var template = Array("/tmp/creditd-c-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw Failure(description: "mkdtemp: \(String(cString: strerror(errno)))")
        }
        directory = String(cString: made)
        socketPath = directory + "/creditd.sock"
        logPath = directory + "/creditd.log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)

        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--clock", "manual", "--now", Self.startInstant,
                             "--socket", socketPath, "--state-dir", directory + "/state"]
        var environment = ProcessInfo.processInfo.environment
        // An inherited systemd environment would change where it listens and logs.
        for key in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC",
                    "WATCHDOG_PID", "RUNTIME_DIRECTORY", "STATE_DIRECTORY", "JOURNAL_STREAM"] {
            environment.removeValue(forKey: key)
        }
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle(forWritingAtPath: logPath)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        let exited = self.exited
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        do {
            try waitUntilServing(timeout: timeout)
        } catch {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw error
        }
    }

    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func waitUntilServing(timeout: TimeInterval) throws {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if !process.isRunning {
                process.waitUntilExit()
                throw Failure(description: "creditd exited with \(process.terminationStatus) before serving:\n\(log)")
            }
            if let client = try? CClient(socketPath: socketPath, timeoutMilliseconds: 1000),
               case .success(let bytes) = client.callBytes(service: "grpc.health.v1.Health", method: "Check",
                                                           request: [], timeoutMilliseconds: 1000),
               let reply = try? Grpc_Health_V1_HealthCheckResponse(serializedBytes: bytes),
               reply.status == .serving {
                return
            }
            usleep(20_000)
        }
        throw Failure(description: "creditd did not serve within \(timeout)s:\n\(log)")
    }

    /// SIGTERM, then waits for the exit; returns the exit status.
    func stop(timeout: TimeInterval = 20) throws -> Int32 {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            guard exited.wait(timeout: .now() + timeout) == .success else {
                throw Failure(description: "creditd (pid \(process.processIdentifier)) did not exit after SIGTERM")
            }
        }
        process.waitUntilExit()
        return process.terminationStatus
    }
}
