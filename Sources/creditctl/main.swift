// creditctl: the operators' CLI for creditd, and its monitoring probe.
//
// The entry point is written out (rather than `@main`) so that usage errors
// exit with the codes of docs/operations.md §7 instead of ArgumentParser's 64:
// 2 in general, 1 for `health` (grpc_health_probe) and 3 for `check` (Nagios).
import ArgumentParser
import Foundation

// libdispatch gives the worker threads of its higher-priority queues nice -4, which a user
// without RLIMIT_NICE (every ordinary user on Debian) may not set, and then writes "Failed to
// set thread priority for worker thread" to syslog: one line per run, thousands a day from a
// probe or a metrics timer. The thread runs on at its default priority, so the line says
// nothing to act on. Off before any thread starts (libdispatch reads it at its first log
// line); a value the user set is kept.
setenv("LIBDISPATCH_LOG", "NO", 0)

let arguments = Invocation.normalizedArguments(CommandLine.arguments)
let probe = Invocation.probeKind(arguments)

if arguments.isEmpty {
    // No subcommand: the usage, on stderr, and the usage exit code.
    FileHandle.standardError.write(Data((CreditCtl.helpMessage() + "\n").utf8))
    Foundation.exit(CtlExit.usage)
}

do {
    var command = try CreditCtl.parseAsRoot(arguments)
    if var asyncCommand = command as? any AsyncParsableCommand {
        try await runAsync(&asyncCommand)
    } else {
        try command.run()
    }
} catch let exit as ExitCode {
    Foundation.exit(exit.rawValue)
} catch let failure as CommandFailure {
    failure.report()
    Foundation.exit(failure.exitCode)
} catch {
    let code = CreditCtl.exitCode(for: error)
    let message = CreditCtl.fullMessage(for: error)
    if code == .success {
        // --help and --version: stdout; Nagios plugins exit UNKNOWN for them.
        print(message)
        Foundation.exit(probe == .check ? NagiosExit.unknown : 0)
    }
    // Usage errors carry the prefix of every other error: `creditctl: error: usage: ...`.
    let prefixed = message.hasPrefix("Error: ") ? "creditctl: error: usage: " + message.dropFirst("Error: ".count) : message
    // A plugin writes to stdout only (operations.md §3): `check` says it in its plugin line.
    if probe != .check { FileHandle.standardError.write(Data((prefixed + "\n").utf8)) }
    switch probe {
    case .check:
        // Nagios reads stdout: the plugin line must be there too.
        // swift-argument-parser starts its messages with "Error: "; the plugin line says UNKNOWN.
        let firstLine = message.split(separator: "\n").first.map(String.init) ?? "invalid arguments"
        print("CREDITD UNKNOWN - \(firstLine.hasPrefix("Error: ") ? String(firstLine.dropFirst("Error: ".count)) : firstLine)")
        Foundation.exit(NagiosExit.unknown)
    case .health: Foundation.exit(HealthExit.invalidArguments)
    case .none: Foundation.exit(CtlExit.usage)
    }
}

/// Calls the async `run()`; on an existential the synchronous default
/// (which prints help) would win overload resolution.
func runAsync<Command: AsyncParsableCommand>(_ command: inout Command) async throws {
    try await command.run()
}
