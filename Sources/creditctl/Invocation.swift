import Foundation

/// How creditctl was invoked: installed as `check_creditd`, it behaves as
/// `creditctl check`; `health` and `check` have their own exit-code sets.
enum Invocation {
    enum Probe { case health, check }

    static func normalizedArguments(_ argv: [String]) -> [String] {
        let program = (argv.first ?? "creditctl").split(separator: "/").last.map(String.init) ?? ""
        let rest = Array(argv.dropFirst())
        return program == "check_creditd" ? ["check"] + rest : rest
    }

    static func probeKind(_ arguments: [String]) -> Probe? {
        // The subcommand is the first argument that is not an option or an
        // option's value; global options come before it only as --flag=value.
        guard let first = arguments.first(where: { !$0.hasPrefix("-") }) else { return nil }
        switch first {
        case "health": return .health
        case "check": return .check
        default: return nil
        }
    }
}

/// Exit codes of creditctl's ordinary commands (operations spec §7).
enum CtlExit {
    static let ok: Int32 = 0
    static let rpcFailed: Int32 = 1
    static let usage: Int32 = 2
    static let unavailable: Int32 = 69
    static let timeout: Int32 = 75
    static let permissionDenied: Int32 = 77
}

/// grpc_health_probe's exit codes (operations spec §2).
enum HealthExit {
    static let serving: Int32 = 0
    static let invalidArguments: Int32 = 1
    static let connectionFailed: Int32 = 2
    static let rpcFailed: Int32 = 3
    static let notServing: Int32 = 4
}

/// Nagios plugin exit codes (operations spec §3).
enum NagiosExit {
    static let ok: Int32 = 0
    static let warning: Int32 = 1
    static let critical: Int32 = 2
    static let unknown: Int32 = 3
}
