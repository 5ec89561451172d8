import Foundation

/// How creditctl was invoked: installed as `check_creditd`, it behaves as
/// `creditctl check`; `health` and `check` have their own exit-code sets.
enum Invocation {
    enum Probe { case health, check }

    static func normalizedArguments(_ argv: [String]) -> [String] {
        let program = (argv.first ?? "creditctl").split(separator: "/").last.map(String.init) ?? ""
        let rest = Array(argv.dropFirst())
        if program == "check_creditd" { return acceptNegativeNumbers(["check"] + rest) }
        return acceptNegativeNumbers(commonOptionsAfterSubcommand(rest))
    }

    /// The options every subcommand shares, which users of systemctl, ctr or redis-cli put
    /// before the subcommand: `creditctl -s SOCK create ...`.
    static let commonOptions: Set<String> = ["-s", "--socket", "-o", "--output", "--timeout"]

    /// Options that take no value (so a number after one is a positional argument).
    static let flags: Set<String> = ["--dry-run", "--at-renewal", "-v", "--verbose", "-V", "--version", "-h", "--help",
                                     "--overdue", "--refund-overdue", "--all", "-f", "--follow", "--watch"]

    /// Moves common options given before the subcommand to just after it, where the
    /// subcommand's parser reads them.
    static func commonOptionsAfterSubcommand(_ arguments: [String]) -> [String] {
        var leading: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            let name = String(argument.split(separator: "=", maxSplits: 1).first ?? "")
            guard commonOptions.contains(name) else { break }
            leading.append(argument)
            if !argument.contains("="), index + 1 < arguments.count {
                leading.append(arguments[index + 1])
                index += 1
            }
            index += 1
        }
        guard !leading.isEmpty, index < arguments.count else { return arguments }
        // `export`'s own -o/--output is the file to write. Moved after it, a format given
        // before the subcommand (`creditctl -o json export`) silently wrote a file named
        // "json"; it goes to an option that `export` refuses with a usage error instead.
        if arguments[index] == "export" {
            leading = leading.map { argument in
                let name = argument.split(separator: "=", maxSplits: 1).first.map(String.init) ?? argument
                guard name == "-o" || name == "--output" else { return argument }
                return Export.outputBeforeSubcommand + argument.dropFirst(name.count)
            }
        }
        // Another option before the subcommand (`creditctl -s SOCK -t 5 health`): the parser
        // would blame the first argument it cannot place, `-s`, which is valid; put the
        // common options last so that it names the one it does not know (or acts on --help).
        if arguments[index].hasPrefix("-") { return Array(arguments[index...]) + leading }
        return [arguments[index]] + leading + arguments[(index + 1)...]
    }

    /// The long names of the short options that take a value, so that a negative value after
    /// one can be attached (`-w -1:5` becomes `--warning=-1:5`).
    static let longNames: [String: String] = ["-s": "--socket", "-o": "--output", "-t": "--timeout",
                                              "-w": "--warning", "-c": "--critical", "-S": "--service"]

    /// ArgumentParser reads `-5` as an option. A negative number after an option that takes a
    /// value becomes `--option=-5`; a negative positional (`seats ID -1`) and the positionals
    /// after it move behind `--`. The server's validation then answers (S1, O2). A Nagios range
    /// that starts below zero (`-w -1:5`, `--overdue-warning -10:10`) is such a value too.
    static func acceptNegativeNumbers(_ arguments: [String]) -> [String] {
        func isNegativeNumber(_ text: String) -> Bool {
            let rest = text.dropFirst()
            // No option name starts with a digit, so `-` and a digit begins a value: a number,
            // or a range (`-1:5`, `-10:`).
            return text.hasPrefix("-") && rest.first?.isASCII == true && rest.first?.isNumber == true
                && rest.allSatisfy { ($0.isASCII && $0.isNumber) || $0 == "." || $0 == ":" || $0 == "~" || $0 == "-" }
        }
        guard arguments.contains(where: isNegativeNumber), !arguments.contains("--") else { return arguments }
        var result: [String] = []
        var positionals: [String] = []
        var movingPositionals = false
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if index == 0 || !argument.hasPrefix("-") {
                // The subcommand, or a positional.
                if movingPositionals { positionals.append(argument) } else { result.append(argument) }
            } else if isNegativeNumber(argument) {
                movingPositionals = true
                positionals.append(argument)
            } else if argument.contains("=") || flags.contains(argument) || Self.isRepeatedVerbose(argument) {
                result.append(argument)
            } else {
                // An option with its value.
                let value = index + 1 < arguments.count ? arguments[index + 1] : nil
                if let value, isNegativeNumber(value), let long = argument.hasPrefix("--") ? argument : longNames[argument] {
                    result.append("\(long)=\(value)")
                } else {
                    result.append(argument)
                    if let value { result.append(value) }
                }
                index += 1
            }
            index += 1
        }
        return positionals.isEmpty ? result : result + ["--"] + positionals
    }

    /// `-vv`, `-vvv`: the verbosity flag repeated in one argument (Monitoring Plugins style).
    static func isRepeatedVerbose(_ argument: String) -> Bool {
        argument.count > 2 && argument.hasPrefix("-v") && argument.dropFirst().allSatisfy { $0 == "v" }
    }

    static func probeKind(_ arguments: [String]) -> Probe? {
        // After normalization the subcommand comes first.
        switch arguments.first {
        case "health": return .health
        case "check": return .check
        default: return nil
        }
    }
}

/// Exit codes of creditctl's ordinary commands (docs/operations.md §7).
enum CtlExit {
    static let ok: Int32 = 0
    static let rpcFailed: Int32 = 1
    static let usage: Int32 = 2
    /// `import`: a line of the file is bad or would be refused (sysexits EX_DATAERR); nothing was written.
    static let dataError: Int32 = 65
    /// `import`: the file cannot be opened or read (EX_NOINPUT).
    static let noInput: Int32 = 66
    static let unavailable: Int32 = 69
    /// `export -o`: the output file cannot be created (EX_CANTCREAT).
    static let cannotCreate: Int32 = 73
    /// `import`, `export`: reading or writing a local file failed part way, a full disk say (EX_IOERR).
    static let ioError: Int32 = 74
    static let timeout: Int32 = 75
    static let permissionDenied: Int32 = 77
}

/// grpc_health_probe's exit codes (docs/operations.md §2).
enum HealthExit {
    static let serving: Int32 = 0
    static let invalidArguments: Int32 = 1
    static let connectionFailed: Int32 = 2
    static let rpcFailed: Int32 = 3
    static let notServing: Int32 = 4
}

/// Nagios plugin exit codes (docs/operations.md §3).
enum NagiosExit {
    static let ok: Int32 = 0
    static let warning: Int32 = 1
    static let critical: Int32 = 2
    static let unknown: Int32 = 3
}
