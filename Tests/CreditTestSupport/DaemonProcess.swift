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
public final class DaemonProcess: @unchecked Sendable {
    public enum Failure: Error, CustomStringConvertible {
        case binaryNotFound([String])
        case exitedEarly(status: Int32, stderr: String)
        case notServing(timeout: TimeInterval, stderr: String)
        case stillRunning(pid: Int32)

        public var description: String {
            switch self {
            case .binaryNotFound(let tried): "creditd binary not found; tried \(tried.joined(separator: ", ")); set CREDITD_BINARY"
            case .exitedEarly(let status, let stderr): "creditd exited with \(status) before serving:\n\(stderr)"
            case .notServing(let timeout, let stderr): "creditd did not serve within \(timeout)s:\n\(stderr)"
            case .stillRunning(let pid): "creditd (pid \(pid)) did not exit"
            }
        }
    }

    /// Private directory holding the socket, the state directory and the stderr log.
    public let directory: URL
    public let socketPath: String
    public let stateDirectory: String
    public let stderrPath: String
    public let arguments: [String]
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

    public var pid: Int32 { process.processIdentifier }
    public var isRunning: Bool { process.isRunning }

    /// Everything the daemon wrote to stderr so far.
    public var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// The built `creditd`: $CREDITD_BINARY, else next to the test bundle in the build products.
    public static func binaryPath() throws -> String {
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

    /// A fresh private directory with a short path (sun_path holds 108 bytes), removed at the
    /// latest when the test process exits (`TemporaryDirectory`).
    public static func makeTemporaryDirectory() throws -> URL {
        try TemporaryDirectory.make("e2e")
    }

    /// Starts creditd and, unless `waitUntilServing` is false, waits until Health/Check on its
    /// socket answers SERVING.
    /// - Parameters:
    ///   - arguments: extra flags; `--socket` and `--state-dir` are added unless given.
    ///   - directory: reuse a directory (e.g. to restart on the same socket); default: a new one.
    ///   - environment: added to the scrubbed environment (`TestEnvironment`).
    ///   - testService: mount `creditd.test.Debug` (CREDITD_TEST_SERVICE=1).
    ///   - stderrPath: the file stdout and stderr go to (created if missing); default: a new
    ///     file in `directory`.
    public static func start(
        arguments: [String] = [],
        directory: URL? = nil,
        socketPath: String? = nil,
        environment: [String: String] = [:],
        testService: Bool = true,
        waitUntilServing: Bool = true,
        timeout: TimeInterval = 20,
        stderrPath: String? = nil,
        standardError: FileHandle? = nil
    ) throws -> DaemonProcess {
        let daemon = try DaemonProcess(
            arguments: arguments, directory: directory, socketPath: socketPath,
            environment: environment, testService: testService, stderrPath: stderrPath, standardError: standardError
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
                 stderrPath: String?, standardError: FileHandle? = nil) throws {
        let binary = try Self.binaryPath()
        self.directory = try directory ?? Self.makeTemporaryDirectory()
        Self.retainDirectory(self.directory.path, created: directory == nil)
        self.socketPath = socketPath ?? self.directory.appendingPathComponent("creditd.sock").path
        stateDirectory = self.directory.appendingPathComponent("state").path
        let logName = "stderr-\(UInt32.random(in: 0...UInt32.max)).log"
        self.stderrPath = stderrPath ?? self.directory.appendingPathComponent(logName).path
        if !FileManager.default.fileExists(atPath: self.stderrPath) {
            _ = FileManager.default.createFile(atPath: self.stderrPath, contents: nil)
        }

        var args = arguments
        if !args.contains("--socket") && !args.contains("-s") { args += ["--socket", self.socketPath] }
        if !args.contains("--state-dir") { args += ["--state-dir", stateDirectory] }
        self.arguments = args

        process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = args
        process.environment = TestEnvironment.scrubbed(
            (testService ? ["CREDITD_TEST_SERVICE": "1"] : [:]).merging(environment) { _, new in new })
        process.standardInput = FileHandle.nullDevice
        if let standardError {
            process.standardOutput = standardError
            process.standardError = standardError
        } else {
            // One open file for both, so the two streams do not overwrite each other.
            let log = FileHandle(forWritingAtPath: self.stderrPath)
            log?.seekToEndOfFile()
            process.standardOutput = log
            process.standardError = log
        }
        let exited = self.exited
        process.terminationHandler = { process in
            TestCleanup.forget(process: process.processIdentifier)
            exited.signal()
        }
        try process.run()
        TestCleanup.register(process: process.processIdentifier)
    }

    deinit {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        TestCleanup.forget(process: process.processIdentifier)
        if Self.releaseDirectory(directory.path) {
            TemporaryDirectory.remove(directory)
        }
    }

    /// Polls Health/Check (raw ttrpc) until SERVING.
    public func waitUntilServing(timeout: TimeInterval = 20) throws {
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
    public func stop(signal: Int32 = SIGTERM, timeout: TimeInterval = 20) throws -> Int32 {
        if process.isRunning {
            Glibc.kill(process.processIdentifier, signal)
        }
        return try waitForExit(timeout: timeout)
    }

    /// SIGKILL, as a crash would: nothing is cleaned up.
    public func kill() {
        _ = try? stop(signal: SIGKILL, timeout: 10)
    }

    /// Waits for the process to end by itself; returns its exit status.
    public func waitForExit(timeout: TimeInterval = 20) throws -> Int32 {
        if process.isRunning {
            guard exited.wait(timeout: .now() + timeout) == .success else {
                throw Failure.stillRunning(pid: pid)
            }
            exited.signal()  // later waits return at once
        }
        process.waitUntilExit()
        TestCleanup.forget(process: process.processIdentifier)
        return process.terminationStatus
    }

    public var terminationReason: Process.TerminationReason { process.terminationReason }

    /// Runs creditd to completion (for start-up failures); returns exit status and stderr.
    public static func runToExit(arguments: [String], directory: URL? = nil, timeout: TimeInterval = 20) throws -> (status: Int32, stderr: String) {
        let daemon = try start(arguments: arguments, directory: directory, waitUntilServing: false)
        let status = try daemon.waitForExit(timeout: timeout)
        return (status, daemon.stderr)
    }
}
