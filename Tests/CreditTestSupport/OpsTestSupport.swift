import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Helpers of the operations tests (systemd activation, probes, authorization): a real
/// sd_notify receiver, processes run to completion or in the background, tool lookup.
public enum OpsTools {
    public struct Missing: Error, CustomStringConvertible {
        public var description: String

        public init(description: String) {
            self.description = description
        }
    }

    /// The first executable named `name` in $PATH (and the usual system directories).
    public static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        var directories = path.split(separator: ":").map(String.init)
        directories += ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/lib/go/bin"]
        for directory in directories {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    /// A tool the tests cannot do without: scripts/install-deps.sh installs it, so its absence
    /// is a broken setup and fails the test rather than skipping it.
    public static func require(_ name: String, package: String) throws -> String {
        guard let found = find(name) else {
            throw Missing(description: "\(name) not found; install the Debian package \(package) (scripts/install-deps.sh)")
        }
        return found
    }

    public static var creditd: String { get throws { try DaemonProcess.binaryPath() } }
    public static var creditctl: String { get throws { try CreditctlProcess.binaryPath() } }

    /// `setpriv` arguments that run a command as `uid` with primary group `gid` and exactly
    /// the supplementary `groups`.
    public static func asUser(uid: UInt32, gid: UInt32, groups: [UInt32] = []) throws -> [String] {
        let setpriv = try require("setpriv", package: "util-linux")
        let groupFlag = groups.isEmpty ? "--clear-groups" : "--groups=\(groups.map(String.init).joined(separator: ","))"
        return [setpriv, "--reuid=\(uid)", "--regid=\(gid)", groupFlag, "--"]
    }

    /// CLOCK_MONOTONIC in microseconds, the clock of `MONOTONIC_USEC=`.
    public static func monotonicMicroseconds() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000 + UInt64(now.tv_nsec) / 1_000
    }

    /// `st_mode`, or nil when nothing is at `path` (lstat: a socket is not followed).
    public static func fileMode(_ path: String) -> mode_t? {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_mode : nil
    }
}

/// A finished process.
public struct OpsResult {
    public var status: Int32
    public var stdout: String
    public var stderr: String
    public var pid: Int32
}

/// Runs commands to completion. Output goes to files, not pipes, so a chatty stderr cannot
/// block a process whose stdout is not being read.
public enum OpsProcess {
    public struct TimedOut: Error, CustomStringConvertible {
        public var command: [String]
        public var description: String { "still running after the timeout: \(command.joined(separator: " "))" }
    }

    /// Runs `command` (an absolute path and its arguments) with the scrubbed environment
    /// (`TestEnvironment`) plus `environment`, waits up to `timeout` seconds (then SIGKILL and
    /// `TimedOut`) and returns its status and output.
    public static func run(_ command: [String], environment: [String: String] = [:], stdin: String? = nil,
                           currentDirectory: String? = nil, timeout: TimeInterval = 60) throws -> OpsResult {
        let scratch = try TemporaryDirectory.make("run")
        defer { TemporaryDirectory.remove(scratch) }
        let outPath = scratch.appendingPathComponent("stdout").path
        let errPath = scratch.appendingPathComponent("stderr").path
        let inPath = scratch.appendingPathComponent("stdin").path
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        _ = FileManager.default.createFile(atPath: inPath, contents: Data((stdin ?? "").utf8))

        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.environment = TestEnvironment.scrubbed(environment)
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        let input = try FileHandle(forReadingFrom: URL(fileURLWithPath: inPath))
        defer { try? out.close(); try? err.close(); try? input.close() }
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        let done = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in done.signal() }
        try process.run()
        if done.wait(timeout: .now() + timeout) == .timedOut {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw TimedOut(command: command)
        }
        process.waitUntilExit()
        return OpsResult(
            status: process.terminationStatus,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "",
            pid: process.processIdentifier)
    }

    /// Runs the built creditctl, optionally behind a prefix such as `OpsTools.asUser(...)`.
    public static func creditctl(_ arguments: [String], prefix: [String] = [], environment: [String: String] = [:]) throws -> OpsResult {
        try CreditctlProcess.run(arguments, prefix: prefix, environment: environment)
    }
}

/// A process left running in the background with stdout and stderr in one log file.
///
/// Spawned with posix_spawn and reaped with waitpid rather than with Foundation's Process:
/// Process learns of an exit when the child closes an inherited descriptor, and
/// systemd-socket-activate closes every descriptor it does not pass on, so Process would take
/// the live activator for dead and block its monitor thread in wait4 (hanging every later
/// Process in the test run).
public final class BackgroundProcess: @unchecked Sendable {
    public struct SpawnFailed: Error, CustomStringConvertible {
        public var command: [String]
        public var code: Int32
        public var description: String { "posix_spawn \(command.joined(separator: " ")): \(String(cString: strerror(code)))" }
    }

    public let command: [String]
    public let logPath: String
    public let pid: pid_t
    private let lock = NSLock()
    private var exitStatus: Int32?

    /// - Parameter environment: the complete environment (nothing is inherited).
    public init(_ command: [String], environment: [String: String], logPath: String) throws {
        self.command = command
        self.logPath = logPath
        if !FileManager.default.fileExists(atPath: logPath) {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_APPEND, 0)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        let argv = command.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let code = posix_spawn(&child, command[0], &actions, nil, argv, envp)
        guard code == 0 else { throw SpawnFailed(command: command, code: code) }
        pid = child
        TestCleanup.register(process: child)
    }

    deinit {
        if isRunning {
            kill(pid, SIGKILL)
            _ = waitForExit(timeout: 10)
        }
    }

    /// Reaps the child if it has exited; returns its status if known.
    private func poll() -> Int32? {
        lock.withLock {
            if let exitStatus { return exitStatus }
            var status: Int32 = 0
            guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
            // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import.
            let signal = status & 0x7f
            exitStatus = signal == 0 ? (status >> 8) & 0xff : 128 + signal
            TestCleanup.forget(process: pid)
            return exitStatus
        }
    }

    public var isRunning: Bool { poll() == nil }
    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// What the process is executing now (`/proc/PID/exe`): changes on exec, pid stays.
    public var executable: String? { try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/exe") }

    public func signal(_ number: Int32) {
        if isRunning { kill(pid, number) }
    }

    /// The exit status (128 + the signal number after a death by signal); nil if the process
    /// is still running after `timeout`.
    public func waitForExit(timeout: TimeInterval = 20) -> Int32? {
        let end = Date().addingTimeInterval(timeout)
        while true {
            if let status = poll() { return status }
            if Date() >= end { return nil }
            usleep(5_000)
        }
    }

    /// Polls the log until it contains `text`.
    public func waitForLog(_ text: String, timeout: TimeInterval = 20) -> Bool {
        let end = Date().addingTimeInterval(timeout)
        while Date() < end {
            if log.contains(text) { return true }
            if !isRunning { return log.contains(text) }
            usleep(10_000)
        }
        return false
    }
}

/// The service manager's end of sd_notify(3): an `AF_UNIX SOCK_DGRAM` socket bound at a path.
/// Every datagram is kept, in order; `next(where:)` consumes them from a cursor, so a test can
/// assert that one message follows another.
public final class NotifyReceiver {
    public typealias Message = [String: String]

    public let path: String
    private let fd: Int32
    /// Every message received so far, parsed into `KEY=VALUE` fields.
    public private(set) var received: [Message] = []
    private var cursor = 0

    public init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        guard UnixSocketAddress(path).bind(fd) == 0 else {
            let code = errno
            close(fd)
            throw POSIXError(POSIXErrorCode(rawValue: code) ?? .EIO)
        }
    }

    deinit { close(fd) }

    public static func parse(_ payload: String) -> Message {
        var fields: Message = [:]
        for line in payload.split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return fields
    }

    /// Reads one datagram if one arrives within `timeout` seconds.
    private func receive(timeout: TimeInterval) -> Bool {
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&poller, 1, Int32(max(0, timeout * 1000))) > 0 else { return false }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
        guard count > 0 else { return false }
        received.append(Self.parse(String(decoding: buffer[..<count], as: UTF8.self)))
        return true
    }

    /// The first message after the cursor that satisfies `predicate`, waiting up to `timeout`
    /// seconds for it; the cursor moves past it. Nil (cursor unchanged) if none came.
    public func next(timeout: TimeInterval = 20, where predicate: (Message) -> Bool) -> Message? {
        let end = Date().addingTimeInterval(timeout)
        var index = cursor
        while true {
            while index < received.count {
                if predicate(received[index]) {
                    cursor = index + 1
                    return received[index]
                }
                index += 1
            }
            // With no time left, still take what is already queued.
            let left = end.timeIntervalSinceNow
            if !receive(timeout: max(0, left)), left <= 0 { return nil }
        }
    }

    /// Collects whatever arrives within `seconds` (to show that something did not happen).
    public func collect(for seconds: TimeInterval) -> [Message] {
        let start = received.count
        let end = Date().addingTimeInterval(seconds)
        while end.timeIntervalSinceNow > 0 { _ = receive(timeout: end.timeIntervalSinceNow) }
        return Array(received[start...])
    }

    /// Messages received after the cursor, without waiting.
    public var pending: [Message] {
        while receive(timeout: 0) {}
        return Array(received[cursor...])
    }
}

/// creditd started the way systemd starts it from creditd.socket, with Debian's
/// `systemd-socket-activate`: it binds the socket, waits for the first connection, then execs
/// creditd with `LISTEN_FDS`/`LISTEN_PID`/`LISTEN_FDNAMES=rpc`, keeping its pid. The daemon gets
/// a real `NOTIFY_SOCKET` and, as from a unit with `WatchdogSec=`, `WATCHDOG_USEC` and
/// `WATCHDOG_PID` (set to that pid by the shell that execs the activator).
public final class ActivatedDaemon {
    public let directory: URL
    public let socketPath: String
    public let stateDirectory: String
    public let notify: NotifyReceiver
    public let process: BackgroundProcess
    private let ownsDirectory: Bool

    /// - Parameters:
    ///   - watchdogUSec: `WATCHDOG_USEC`, nil for no watchdog.
    ///   - watchdogPID: `WATCHDOG_PID`; nil means the daemon's own pid (what systemd sets).
    ///   - directory: reuse a directory (its state) from an earlier run.
    ///   - extraSockets: file names of more sockets to pass (named `extra`), as a second
    ///     `ListenStream=` would.
    public init(arguments: [String] = [], watchdogUSec: UInt64? = 200_000, watchdogPID: String? = nil,
         extraEnvironment: [String: String] = [:], directory: URL? = nil, extraSockets: [String] = []) throws {
        let activator = try OpsTools.require("systemd-socket-activate", package: "systemd")
        let creditd = try OpsTools.creditd
        self.directory = try directory ?? TemporaryDirectory.make("activated")
        ownsDirectory = directory == nil
        socketPath = self.directory.appendingPathComponent("creditd.sock").path
        stateDirectory = self.directory.appendingPathComponent("state").path
        let notifyPath = self.directory.appendingPathComponent("notify-\(UInt32.random(in: 0...UInt32.max)).sock").path
        notify = try NotifyReceiver(path: notifyPath)

        var variables = ["NOTIFY_SOCKET=\(notifyPath)", "CREDITD_TEST_SERVICE=1"]
        if let watchdogUSec {
            variables.append("WATCHDOG_USEC=\(watchdogUSec)")
            // Without `=`, the activator copies the value from its own environment.
            variables.append(watchdogPID.map { "WATCHDOG_PID=\($0)" } ?? "WATCHDOG_PID")
        }
        variables += extraEnvironment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let base = self.directory
        let extraPaths = extraSockets.map { base.appendingPathComponent($0).path }
        let names = (["rpc"] + extraSockets.map { _ in "extra" }).joined(separator: ":")
        let activate = [activator, "--listen=\(socketPath)"] + extraPaths.map { "--listen=\($0)" } + ["--fdname=\(names)"]
            + variables.flatMap { ["-E", $0] }
        let daemon = [creditd, "--state-dir", stateDirectory] + arguments
        // The shell execs the activator, which execs creditd: $$ is the daemon's pid to be.
        let command = ["/bin/sh", "-c", "export WATCHDOG_PID=$$; exec \"$@\"", "sh"] + activate + daemon

        // The activator's own environment carries no NOTIFY_SOCKET: it would send READY=1 itself.
        process = try BackgroundProcess(command, environment: TestEnvironment.scrubbed(),
                                        logPath: self.directory.appendingPathComponent("daemon-\(UInt32.random(in: 0...UInt32.max)).log").path)
    }

    deinit {
        process.signal(SIGKILL)
        _ = process.waitForExit(timeout: 10)
        if ownsDirectory { TemporaryDirectory.remove(directory) }
    }

    public var pid: Int32 { process.pid }
    public var log: String { process.log }

    /// Waits until the activator listens (it logs "Listening on PATH as 3.").
    public func waitUntilListening(timeout: TimeInterval = 20) throws {
        guard process.waitForLog("Listening on \(socketPath)", timeout: timeout) else {
            throw OpsTools.Missing(description: "systemd-socket-activate did not listen on \(socketPath):\n\(log)")
        }
    }

    /// Waits for `READY=1` (consuming messages up to it).
    @discardableResult
    public func waitUntilReady(timeout: TimeInterval = 20) throws -> NotifyReceiver.Message {
        guard let ready = notify.next(timeout: timeout, where: { $0["READY"] == "1" }) else {
            throw OpsTools.Missing(description: "no READY=1 within \(timeout)s; log:\n\(log)")
        }
        return ready
    }

    /// SIGTERM (by default) and the exit status.
    public func stop(signal: Int32 = SIGTERM, timeout: TimeInterval = 20) -> Int32? {
        process.signal(signal)
        return process.waitForExit(timeout: timeout)
    }
}
