#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Histogram

/// The bare C echo server of Benchmarks/echo_server.c, compiled with cc into the run's
/// temporary directory: the RPC limit of this machine for the same framing and sizes.
struct EchoServerBuild {
    let binary: String

    init(source: String, into directory: String) throws {
        binary = directory + "/echo_server"
        let compiler = try ChildProcess(executable: "/usr/bin/env", arguments: ["cc", "-O2", "-o", binary, source],
                                        logPath: directory + "/cc.log")
        compiler.process.waitUntilExit()
        guard compiler.process.terminationStatus == 0 else { throw BenchError("cc failed:\n\(compiler.log)") }
    }

    /// Benchmarks/echo_server.c: given, or found above the executable or the working directory.
    static func findSource(explicit: String?) throws -> String {
        if let explicit { return explicit }
        var candidates: [String] = []
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<6 {
            candidates.append(directory.appendingPathComponent("Benchmarks/echo_server.c").path)
            directory.deleteLastPathComponent()
        }
        candidates.append(FileManager.default.currentDirectoryPath + "/Benchmarks/echo_server.c")
        if let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) { return found }
        throw BenchError("Benchmarks/echo_server.c not found (tried \(candidates.joined(separator: ", "))); pass --echo-source")
    }

    /// Starts an echo server answering every Request with `responseBytes` of Response data.
    func start(socketPath: String, responseBytes: Int, logDirectory: String) throws -> ChildProcess {
        let child = try ChildProcess(executable: binary, arguments: [socketPath, String(responseBytes)],
                                     logPath: logDirectory + "/echo-\(responseBytes).log")
        let end = monotonicNanos() + 5_000_000_000
        while monotonicNanos() < end {
            if (try? UnixSocket(path: socketPath)) != nil { return child }
            usleep(2_000)
        }
        throw BenchError("the echo server did not start:\n\(child.log)")
    }
}

/// The durable-write limit: a closed loop of `inFlight` writers whose records are batched into
/// one pwrite + fdatasync, in a file of the state directory, with no RPC and no ledger. With
/// `inFlight` writers that resubmit at once, every batch holds `inFlight` records, which is the
/// most any group commit can batch at that concurrency. Each record's latency is its batch's.
func runGroupCommitLimit(directory: String, recordBytes: Int, inFlight: Int, warmup: Double, duration: Double) throws -> PhaseResult {
    let path = directory + "/groupcommit-baseline.tmp"
    let descriptor = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0o600)
    guard descriptor >= 0 else { throw BenchError("open \(path): errno \(errno)") }
    defer {
        close(descriptor)
        unlink(path)
    }
    let batch = [UInt8](repeating: 0x5A, count: recordBytes * inFlight)
    var histogram = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
    var offset: off_t = 0
    var calls = 0
    let measureStart = monotonicNanos() + UInt64(warmup * 1e9)
    let measureEnd = measureStart + UInt64(duration * 1e9)
    var window: CPUWindow?
    while true {
        let start = monotonicNanos()
        if start >= measureEnd { break }
        if window == nil && start >= measureStart { window = CPUWindow(serverPID: getpid()) }
        let written = batch.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, offset) }
        guard written == batch.count else { throw BenchError("pwrite: errno \(errno)") }
        guard fdatasync(descriptor) == 0 else { throw BenchError("fdatasync: errno \(errno)") }
        offset += off_t(written)
        let end = monotonicNanos()
        if start >= measureStart {
            calls += inFlight
            _ = histogram.record(end - start, count: UInt64(inFlight))
        }
        // Bounded file: start over now and then (a journal segment is 64 MiB).
        if offset > 64 << 20 {
            offset = 0
            ftruncate(descriptor, 0)
        }
    }
    // One process: its CPU is the "server" side; there is no client.
    let usage = (window ?? CPUWindow(serverPID: getpid())).finish()
    return PhaseResult(system: "fdatasync", method: "group-commit", connections: 1, inFlight: inFlight,
                       seconds: duration, histogram: histogram, calls: calls, errors: 0,
                       responseBytes: recordBytes * calls, usage: usage, firstError: nil)
}

/// The Go echo server of Benchmarks/go-echo, built on containerd's own ttrpc library
/// (Debian's golang-github-containerd-ttrpc-dev) in GOPATH mode: "the per-call cost of
/// containerd's ttrpc" that the targets compare with.
struct GoEchoServerBuild {
    let binary: String

    init(source: String, into directory: String) throws {
        binary = directory + "/go-echo"
        let cache = directory + "/gocache"
        let build = try ChildProcess(
            // Go 1.19 (Debian 12) has no `go build -C`: build from the source directory.
            executable: "/bin/sh",
            arguments: ["-c", "cd \"$0\" && GOPATH=/usr/share/gocode GO111MODULE=off GOFLAGS= GOPROXY=off GOCACHE=\"$1\" go build -o \"$2\" .",
                        source, cache, binary],
            logPath: directory + "/go-build.log")
        build.process.waitUntilExit()
        guard build.process.terminationStatus == 0 else {
            throw BenchError("go build of Benchmarks/go-echo failed (apt-get install golang-go golang-github-containerd-ttrpc-dev):\n\(build.log)")
        }
    }

    /// Benchmarks/go-echo, next to echo_server.c.
    static func findSource(echoSource: String) -> String {
        URL(fileURLWithPath: echoSource).deletingLastPathComponent().appendingPathComponent("go-echo").path
    }

    /// Starts the server answering `methods` with `responseBytes` of response data.
    func start(socketPath: String, responseBytes: Int, methods: [String], logDirectory: String) throws -> ChildProcess {
        let child = try ChildProcess(executable: binary, arguments: [socketPath, String(responseBytes)] + methods,
                                     logPath: logDirectory + "/go-echo-\(responseBytes).log")
        let end = monotonicNanos() + 5_000_000_000
        while monotonicNanos() < end {
            if (try? UnixSocket(path: socketPath)) != nil { return child }
            usleep(2_000)
        }
        throw BenchError("the Go echo server did not start:\n\(child.log)")
    }
}
