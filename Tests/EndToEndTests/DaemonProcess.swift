import CreditProto
import CreditWire
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A real `creditd` process for end-to-end tests: the binary built next to the test bundle,
/// a private temporary socket and state directory, stderr captured to a file.
///
/// ```swift
/// let daemon = try DaemonProcess.start(arguments: ["--clock", "manual"])
/// let client = try await CreditClient.connect(socketPath: daemon.socketPath)
/// ...
/// let status = try daemon.stop()           // SIGTERM, waits, returns the exit status
/// ```
final class DaemonProcess: @unchecked Sendable {
    enum Failure: Error, CustomStringConvertible {
        case binaryNotFound([String])
        case exitedEarly(status: Int32, stderr: String)
        case notServing(timeout: TimeInterval, stderr: String)
        case stillRunning(pid: Int32)

        var description: String {
            switch self {
            case .binaryNotFound(let tried): "creditd binary not found; tried \(tried.joined(separator: ", ")); set CREDITD_BINARY"
            case .exitedEarly(let status, let stderr): "creditd exited with \(status) before serving:\n\(stderr)"
            case .notServing(let timeout, let stderr): "creditd did not serve within \(timeout)s:\n\(stderr)"
            case .stillRunning(let pid): "creditd (pid \(pid)) did not exit"
            }
        }
    }

    /// Private directory holding the socket, the state directory and the stderr log.
    let directory: URL
    let socketPath: String
    let stateDirectory: String
    let stderrPath: String
    let arguments: [String]
    private let process: Process
    private let exited = DispatchSemaphore(value: 0)

    /// Users of each directory the harness created; it is removed when the last one goes, so a
    /// daemon restarted in `daemon.directory` keeps it even after the first object is released.
    private static let directoryUsers = NSLock()
    nonisolated(unsafe) private static var usersByDirectory: [String: Int] = [:]

    private static func retainDirectory(_ path: String, created: Bool) {
        directoryUsers.withLock {
            if created {
                usersByDirectory[path] = 1
            } else if let count = usersByDirectory[path] {
                usersByDirectory[path] = count + 1
            }
        }
    }

    /// True when the caller was the last user of a directory the harness created.
    private static func releaseDirectory(_ path: String) -> Bool {
        directoryUsers.withLock {
            guard let count = usersByDirectory[path] else { return false }
            if count > 1 {
                usersByDirectory[path] = count - 1
                return false
            }
            usersByDirectory.removeValue(forKey: path)
            return true
        }
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    /// Everything the daemon wrote to stderr so far.
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// The built `creditd`: $CREDITD_BINARY, else next to the test bundle in the build products.
    static func binaryPath() throws -> String {
        var candidates: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["CREDITD_BINARY"] { candidates.append(explicit) }
        let argv0 = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL
        candidates.append(argv0.deletingLastPathComponent().appendingPathComponent("creditd").path)
        for bundle in [Bundle.main, Bundle(for: DaemonProcess.self)] {
            candidates.append(bundle.bundleURL.deletingLastPathComponent().appendingPathComponent("creditd").path)
            candidates.append(bundle.bundleURL.appendingPathComponent("creditd").path)
        }
        if let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) {
            return found
        }
        throw Failure.binaryNotFound(candidates)
    }

    /// A fresh private directory with a short path (sun_path holds 108 bytes).
    static func makeTemporaryDirectory() throws -> URL {
        var template = Array("/tmp/creditd-e2e-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        return URL(fileURLWithPath: String(cString: made))
    }

    /// Starts creditd and, unless `waitUntilServing` is false, waits until Health/Check on its
    /// socket answers SERVING.
    /// - Parameters:
    ///   - arguments: extra flags; `--socket` and `--state-dir` are added unless given.
    ///   - directory: reuse a directory (e.g. to restart on the same socket); default: a new one.
    ///   - testService: mount `creditd.test.Debug` (CREDITD_TEST_SERVICE=1).
    static func start(
        arguments: [String] = [],
        directory: URL? = nil,
        socketPath: String? = nil,
        environment: [String: String] = [:],
        testService: Bool = true,
        waitUntilServing: Bool = true,
        timeout: TimeInterval = 20,
        standardError: FileHandle? = nil
    ) throws -> DaemonProcess {
        let daemon = try DaemonProcess(
            arguments: arguments, directory: directory, socketPath: socketPath,
            environment: environment, testService: testService, standardError: standardError
        )
        if waitUntilServing {
            do {
                try daemon.waitUntilServing(timeout: timeout)
            } catch {
                daemon.kill()
                throw error
            }
        }
        return daemon
    }

    /// - Parameter standardError: where stdout and stderr go instead of the log file (e.g. a
    ///   pipe nobody reads); `stderr` is then empty.
    private init(arguments: [String], directory: URL?, socketPath: String?, environment: [String: String], testService: Bool,
                 standardError: FileHandle? = nil) throws {
        let binary = try Self.binaryPath()
        self.directory = try directory ?? Self.makeTemporaryDirectory()
        Self.retainDirectory(self.directory.path, created: directory == nil)
        self.socketPath = socketPath ?? self.directory.appendingPathComponent("creditd.sock").path
        stateDirectory = self.directory.appendingPathComponent("state").path
        let logName = "stderr-\(UInt32.random(in: 0...UInt32.max)).log"
        stderrPath = self.directory.appendingPathComponent(logName).path
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)

        var args = arguments
        if !args.contains("--socket") && !args.contains("-s") { args += ["--socket", self.socketPath] }
        if !args.contains("--state-dir") { args += ["--state-dir", stateDirectory] }
        self.arguments = args

        process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = args
        var env = ProcessInfo.processInfo.environment
        for key in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                    "RUNTIME_DIRECTORY", "STATE_DIRECTORY", "JOURNAL_STREAM"] {
            env.removeValue(forKey: key)
        }
        if testService { env["CREDITD_TEST_SERVICE"] = "1" }
        env.merge(environment) { _, new in new }
        process.environment = env
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = standardError ?? FileHandle(forWritingAtPath: stderrPath)
        process.standardError = standardError ?? FileHandle(forWritingAtPath: stderrPath)
        let exited = self.exited
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
    }

    deinit {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        if Self.releaseDirectory(directory.path) {
            try? FileManager.default.removeItem(at: directory)
        }
    }

    /// Polls Health/Check (raw ttrpc) until SERVING.
    func waitUntilServing(timeout: TimeInterval = 20) throws {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if !process.isRunning {
                process.waitUntilExit()
                throw Failure.exitedEarly(status: process.terminationStatus, stderr: stderr)
            }
            if let connection = try? RawTTRPCConnection(path: socketPath, receiveTimeout: 1) {
                defer { connection.close() }
                if case .success(let bytes)? = try? connection.call(id: 1, service: "grpc.health.v1.Health", method: "Check"),
                   let response = try? Grpc_Health_V1_HealthCheckResponse(serializedBytes: bytes),
                   response.status == .serving {
                    return
                }
            }
            usleep(20_000)
        }
        throw Failure.notServing(timeout: timeout, stderr: stderr)
    }

    /// Sends `signal` and waits for the exit; returns the exit status (or the signal number
    /// for a death by signal, as Foundation reports it).
    @discardableResult
    func stop(signal: Int32 = SIGTERM, timeout: TimeInterval = 20) throws -> Int32 {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, signal)
        }
        return try waitForExit(timeout: timeout)
    }

    /// SIGKILL, as a crash would: nothing is cleaned up.
    func kill() {
        _ = try? stop(signal: SIGKILL, timeout: 10)
    }

    /// Waits for the process to end by itself; returns its exit status.
    func waitForExit(timeout: TimeInterval = 20) throws -> Int32 {
        if process.isRunning {
            guard exited.wait(timeout: .now() + timeout) == .success else {
                throw Failure.stillRunning(pid: pid)
            }
            exited.signal()  // later waits return at once
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    var terminationReason: Process.TerminationReason { process.terminationReason }

    /// Runs creditd to completion (for start-up failures); returns exit status and stderr.
    static func runToExit(arguments: [String], directory: URL? = nil, timeout: TimeInterval = 20) throws -> (status: Int32, stderr: String) {
        let daemon = try start(arguments: arguments, directory: directory, waitUntilServing: false)
        let status = try daemon.waitForExit(timeout: timeout)
        return (status, daemon.stderr)
    }
}
