import ArgumentParser
import Foundation

/// Where creditd listens and how long a call may take (docs/operations.md §7).
struct ConnectionOptions: ParsableArguments {
    @Option(name: [.customShort("s"), .customLong("socket")],
            help: "Socket: PATH, unix:PATH or unix:///PATH (default: $CREDITD_SOCKET, then /run/creditd/creditd.sock).")
    var socket: String?

    @Option(name: .customLong("timeout"), help: "Seconds the call may take; sets the call's deadline.")
    var timeout: Double = 5

    func socketPath() throws -> String {
        try SocketAddress.path(flag: socket)
    }

    func validate() throws {
        try CallTimeout.check(timeout, flag: "--timeout")
        _ = try socketPath()
    }

    var timeoutDuration: Duration { CallTimeout.duration(timeout) }
}

/// A call's time limit in seconds, from a flag: positive, and at most `maxSeconds`, so that
/// its milliseconds fit the deadline (a larger value trapped converting to Int64).
enum CallTimeout {
    static let maxSeconds = 1_000_000.0

    static func check(_ seconds: Double, flag: String) throws {
        guard seconds > 0, seconds <= maxSeconds else {
            throw ValidationError("\(flag) must be a positive number of seconds, at most \(Int(maxSeconds))")
        }
    }

    static func duration(_ seconds: Double) -> Duration {
        .milliseconds(Int64((min(seconds, maxSeconds) * 1000).rounded(.up)))
    }
}

enum SocketAddress {
    static let defaultPath = "/run/creditd/creditd.sock"

    /// The socket `-s`/`--socket` names, else `$CREDITD_SOCKET`, else the default. An empty
    /// flag is a usage error (`-s "$UNSET_VARIABLE"` would otherwise probe the default
    /// socket, and a monitoring check report on a daemon it was not pointed at); an empty
    /// variable counts as unset, as for most variables.
    static func path(flag: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        if let flag {
            guard !flag.isEmpty else { throw ValidationError("-s/--socket needs a path, got an empty one") }
            return try path(from: flag)
        }
        return try path(from: environment["CREDITD_SOCKET"])
    }

    /// Accepts a bare path, `unix:PATH` or `unix:///PATH`. Abstract sockets
    /// carry no permissions, so creditd never serves on one.
    static func path(from spec: String?) throws -> String {
        guard let spec, !spec.isEmpty else { return defaultPath }
        if spec.hasPrefix("unix-abstract:") {
            throw ValidationError("abstract sockets are not supported: \(spec)")
        }
        if !spec.hasPrefix("unix:"), let scheme = spec.firstRange(of: "://").map({ spec[..<$0.lowerBound] }),
           !scheme.isEmpty, scheme.allSatisfy({ $0.isLetter || $0.isNumber || "+.-".contains($0) }) {
            throw ValidationError("""
                creditd listens on a Unix socket, not \(scheme): give a path, unix:PATH or unix:///PATH (got \(spec))
                """)
        }
        var path = spec
        if path.hasPrefix("unix://") {
            path = String(path.dropFirst("unix://".count))
        } else if path.hasPrefix("unix:") {
            path = String(path.dropFirst("unix:".count))
        }
        guard !path.isEmpty else { throw ValidationError("empty socket path in \(spec)") }
        guard path.utf8.count < 104 else { throw ValidationError("socket path longer than 103 bytes: \(path)") }
        return path
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

struct OutputOptions: ParsableArguments {
    @Option(name: [.customShort("o"), .customLong("output")], help: "Output format: table or json.")
    var output: OutputFormat = .table
}
