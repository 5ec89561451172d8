#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Monotonic nanoseconds; cheaper than `ContinuousClock.now` on the hot path of the client.
@inline(__always)
func monotonicNanos() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

func sleepSeconds(_ seconds: Double) {
    guard seconds > 0 else { return }
    usleep(UInt32(seconds * 1_000_000))
}

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// CPU time and memory of processes, read from /proc.
enum ProcFS {
    /// Clock ticks per second of /proc times.
    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    /// utime + stime of a process (all its threads), in ticks.
    static func cpuTicks(pid: Int32) -> UInt64 {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return 0 }
        // Fields after "(comm)": state is field 3; utime and stime are fields 14 and 15.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return 0 }
        return user + system
    }

    /// The machine's CPU ticks: (all, busy) summed over every CPU, from the "cpu" line of /proc/stat.
    static func machineTicks() -> (total: UInt64, busy: UInt64) {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return (0, 0) }
        let values = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        let counted = Array(values.prefix(8))
        let total = counted.reduce(0, +)
        let idle = (counted.count > 3 ? counted[3] : 0) + (counted.count > 4 ? counted[4] : 0)
        return (total, total - idle)
    }

    /// A field of /proc/PID/status in KiB (VmRSS, VmHWM).
    static func statusKiB(pid: Int32, field: String) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
        }
        return 0
    }

    static func cpuModel() -> String {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "?" }
        for line in text.split(separator: "\n") where line.hasPrefix("model name") {
            return line.split(separator: ":", maxSplits: 1).last.map { $0.trimmingCharacters(in: .whitespaces) } ?? "?"
        }
        return "?"
    }

    static func memTotalGiB() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") }),
              let kib = Double(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kib / 1_048_576
    }

    /// "device fstype" of the mount holding `path` (longest mount point prefix).
    static func filesystem(of path: String) -> String {
        guard let text = try? String(contentsOfFile: "/proc/mounts", encoding: .utf8) else { return "?" }
        var best = ("", "?")
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count >= 3 else { continue }
            let mount = String(parts[1])
            let covers = path == mount || path.hasPrefix(mount == "/" ? "/" : mount + "/")
            if covers && mount.count >= best.0.count { best = (mount, "\(parts[0]) \(parts[2]) on \(mount)") }
        }
        return best.1
    }
}

/// CPU accounting over one measured interval: the server, this process, and everything else.
struct CPUWindow {
    let serverPID: Int32
    let serverStart: UInt64
    let clientStart: UInt64
    let machineStart: (total: UInt64, busy: UInt64)

    init(serverPID: Int32) {
        self.serverPID = serverPID
        serverStart = ProcFS.cpuTicks(pid: serverPID)
        clientStart = ProcFS.cpuTicks(pid: getpid())
        machineStart = ProcFS.machineTicks()
    }

    struct Usage {
        /// CPU seconds of the server and of the client in the interval.
        var serverSeconds: Double
        var clientSeconds: Double
        /// Share of the whole machine's CPU (all cores) used by other processes, 0...1.
        var othersShare: Double
    }

    func finish() -> Usage {
        let server = ProcFS.cpuTicks(pid: serverPID) &- serverStart
        // When this process is the measured one (the fdatasync loop) it is not also the client.
        let client = serverPID == getpid() ? 0 : ProcFS.cpuTicks(pid: getpid()) &- clientStart
        let machine = ProcFS.machineTicks()
        let total = machine.total &- machineStart.total
        let busy = machine.busy &- machineStart.busy
        let others = busy > server + client ? busy - server - client : 0
        return Usage(
            serverSeconds: Double(server) / ProcFS.ticksPerSecond,
            clientSeconds: Double(client) / ProcFS.ticksPerSecond,
            othersShare: total > 0 ? Double(others) / Double(total) : 0
        )
    }
}

/// A child process with stdout and stderr in a log file.
final class ChildProcess {
    let process: Process
    let logPath: String

    init(executable: String, arguments: [String], logPath: String, environment: [String: String] = [:]) throws {
        self.logPath = logPath
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for key in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
                    "RUNTIME_DIRECTORY", "STATE_DIRECTORY"] {
            env.removeValue(forKey: key)
        }
        env.merge(environment) { _, new in new }
        process.environment = env
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle(forWritingAtPath: logPath)
        process.standardError = FileHandle(forWritingAtPath: logPath)
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Sends `signal` and waits up to `timeout` seconds, then SIGKILL.
    func stop(signal: Int32 = SIGTERM, timeout: Double = 20) {
        guard process.isRunning else { return }
        kill(pid, signal)
        let end = monotonicNanos() + UInt64(timeout * 1e9)
        while process.isRunning && monotonicNanos() < end { usleep(5_000) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
    }

    deinit {
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
        }
    }
}

func makeTemporaryDirectory(prefix: String) throws -> String {
    var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
    guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        throw BenchError("mkdtemp failed: errno \(errno)")
    }
    return String(cString: made)
}

/// Bytes used by the files of a directory (not recursive).
func directoryBytes(_ path: String) -> Int64 {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
    return names.reduce(Int64(0)) { sum, name in
        let attributes = try? FileManager.default.attributesOfItem(atPath: path + "/" + name)
        return sum + ((attributes?[.size] as? NSNumber)?.int64Value ?? 0)
    }
}
