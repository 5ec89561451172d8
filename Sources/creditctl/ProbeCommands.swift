import ArgumentParser
import CreditClient
import CreditMonitoring
import CreditProto
import CreditWire
import Foundation

/// `creditctl health`: grpc_health_probe's contract for exec probes.
struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Health check with grpc_health_probe's exit codes.",
        discussion: """
            Exit codes: 0 SERVING, 1 invalid arguments, 2 connection failed or timed out connecting, \
            3 RPC failed (DEADLINE_EXCEEDED included: connected but no answer in time), 4 not SERVING.
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Option(name: [.customShort("S"), .customLong("service")], help: "Service name; empty for the whole server.") var service: String = ""
    @Flag(name: .customLong("watch"), help: """
        Keep printing the status, at once and at each change (Health/Watch), until the daemon \
        ends the stream; -o json prints JSON Lines. Exits by the last status.
        """) var watch = false

    /// NOT_SERVING may mean only that creditd is still recovering its state, for instance
    /// because this very probe started it through socket activation. Calls that need the state
    /// wait for recovery (the daemon parks them), so one such call, then health again, tells
    /// a starting daemon from a failing one within the caller's timeout. Returns the settled
    /// status, and the stats when they were read.
    static func settled(_ client: CreditClient, service: String, first: Grpc_Health_V1_HealthCheckResponse.ServingStatus,
                        remaining: () -> Duration) async -> (status: Grpc_Health_V1_HealthCheckResponse.ServingStatus,
                                                             stats: Creditd_V1_GetStatsResponse?) {
        guard first == .notServing, remaining() > .milliseconds(1),
              let stats = try? await client.getStats(timeout: remaining()) else { return (first, nil) }
        guard stats.persistence.fault.isEmpty, remaining() > .milliseconds(1),
              let again = try? await client.healthCheck(service: service, timeout: remaining()) else { return (first, stats) }
        return (again, stats)
    }

    func run() async throws {
        let path = try connection.socketPath()
        if watch { return try await runWatch(path) }
        let status: Grpc_Health_V1_HealthCheckResponse.ServingStatus
        do {
            let client = try await CreditClient.connect(socketPath: path, timeout: connection.timeoutDuration)
            defer { Task { await client.close() } }
            let clock = ContinuousClock()
            let started = clock.now
            let first = try await client.healthCheck(service: service, timeout: connection.timeoutDuration)
            status = await Health.settled(client, service: service, first: first,
                                          remaining: { connection.timeoutDuration - (clock.now - started) }).status
        } catch {
            throw Health.failure(error, socketPath: path)
        }
        var response = Grpc_Health_V1_HealthCheckResponse()
        response.status = status
        try emit(response, output.output) { "status: \(Health.name(status))\n" }
        if status != .serving { throw ExitCode(HealthExit.notServing) }
    }

    /// Reports `error` on stderr and returns the exit code it means.
    static func failure(_ error: any Error, socketPath path: String) -> ExitCode {
        let code: Int32
        switch Failure.classify(error, socketPath: path) {
        // grpc_health_probe's split (docs/operations.md §2): a connect that fails or times out
        // is 2; a call that connected but got no answer in time is an RPC that failed
        // (DEADLINE_EXCEEDED), 3, as is any status.
        case .unavailable, .permissionDenied: code = HealthExit.connectionFailed
        case .timedOut, .rpc, .other: code = HealthExit.rpcFailed
        }
        let failure = CommandFailure(error, socketPath: path)
        failure.report()
        return ExitCode(code)
    }

    /// `health --watch`: one line per status (JSON Lines with `-o json`), written as it comes.
    /// `--timeout` bounds the connect; the stream itself has no deadline. It ends when the
    /// daemon ends the stream (at shutdown, NOT_SERVING then UNAVAILABLE: exit 4), when the
    /// connection is lost (2), or with another status (3).
    ///
    /// A `Health/Check` every `keepAlive` keeps the connection from counting as idle: creditd
    /// closes a connection whose streams said nothing for its idle timeout (docs/operations.md
    /// §1), and a status that never changes says nothing.
    private func runWatch(_ path: String) async throws {
        let service = self.service, format = output.output, timeout = connection.timeoutDuration
        let keepAlive = Duration.seconds(10)
        let (statuses, continuation) = AsyncStream.makeStream(of: Grpc_Health_V1_HealthCheckResponse.ServingStatus.self)
        var last: Grpc_Health_V1_HealthCheckResponse.ServingStatus?
        do {
            let client = try await CreditClient.connect(socketPath: path, timeout: connection.timeoutDuration)
            defer { Task { await client.close() } }
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    defer { continuation.finish() }
                    try await client.healthWatch(service: service) { continuation.yield($0) }
                }
                group.addTask {
                    while true {
                        do {
                            try await Task.sleep(for: keepAlive)
                            _ = try await client.healthCheck(timeout: timeout)
                        } catch is CancellationError {
                            return
                        } catch {
                            continuation.finish()  // a daemon that stopped answering ends the watch
                            throw error
                        }
                    }
                }
                for await status in statuses {
                    last = status
                    var response = Grpc_Health_V1_HealthCheckResponse()
                    response.status = status
                    let line = format == .json ? try JSONOutput.render(response, pretty: false) : "status: \(Health.name(status))"
                    try OutputWriter.write(line + "\n")
                }
                group.cancelAll()  // the stream ended: stop the keep-alive
                try await group.waitForAll()
            }
        } catch {
            let exit = Health.failure(error, socketPath: path)
            // A daemon shutting down says NOT_SERVING, then ends the stream UNAVAILABLE: the
            // watch ends as a probe would then, "answered, but not SERVING".
            if case .rpc(.unavailable, _) = Failure.classify(error, socketPath: path), last == .notServing {
                throw ExitCode(HealthExit.notServing)
            }
            throw exit
        }
        if last != .serving { throw ExitCode(HealthExit.notServing) }
    }

    static func name(_ status: Grpc_Health_V1_HealthCheckResponse.ServingStatus) -> String {
        switch status {
        case .serving: return "SERVING"
        case .notServing: return "NOT_SERVING"
        case .serviceUnknown: return "SERVICE_UNKNOWN"
        case .unknown: return "UNKNOWN"
        case .UNRECOGNIZED(let value): return "UNRECOGNIZED(\(value))"
        }
    }
}

/// `creditctl check` (also installed as `check_creditd`): a Nagios plugin.
///
/// `-w`/`-c` apply to the response time, as the Monitoring Plugins
/// guidelines and docs/operations.md §3 define; the named thresholds
/// cover snapshot age, overdue credits and journal size.
struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Nagios / Monitoring Plugins check: OK, WARNING, CRITICAL or UNKNOWN with perfdata.",
        discussion: """
            Ranges use the standard syntax [@]start:end (10, 10:, ~:10, @10:20). \
            Exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
            """,
        version: "0.1.0")

    @Option(name: [.customShort("s"), .customLong("socket")], help: "Socket path (default: $CREDITD_SOCKET, then /run/creditd/creditd.sock).")
    var socket: String?
    @Option(name: [.customShort("t"), .customLong("timeout")], help: "Seconds before the check is CRITICAL.") var timeout: Double = 10
    @Option(name: [.customShort("w"), .customLong("warning")], help: "Response time range (seconds) for WARNING.") var warning: String?
    @Option(name: [.customShort("c"), .customLong("critical")], help: "Response time range (seconds) for CRITICAL.") var critical: String?
    @Option(name: [.customShort("S"), .customLong("service")], help: "Health service name (default: the whole server).") var service: String = ""
    @Option(name: .customLong("snapshot-age-warning"), help: "Range (seconds) of last snapshot age for WARNING.") var snapshotAgeWarning: String?
    @Option(name: .customLong("snapshot-age-critical"), help: "Range (seconds) of last snapshot age for CRITICAL.") var snapshotAgeCritical: String?
    @Option(name: .customLong("overdue-warning"), help: "Range of overdue credits + refunds for WARNING.") var overdueWarning: String?
    @Option(name: .customLong("overdue-critical"), help: "Range of overdue credits + refunds for CRITICAL.") var overdueCritical: String?
    @Option(name: .customLong("journal-warning"), help: "Range (bytes) of journal size for WARNING.") var journalWarning: String?
    @Option(name: .customLong("journal-critical"), help: "Range (bytes) of journal size for CRITICAL.") var journalCritical: String?
    @Option(name: .customLong("refund-overdue-warning"), help: "Range of refund-overdue credits for WARNING.") var refundOverdueWarning: String?
    @Option(name: .customLong("refund-overdue-critical"), help: "Range of refund-overdue credits for CRITICAL.") var refundOverdueCritical: String?
    @Option(name: .customLong("refund-overdue-amount-warning"), help: "Range (minor units, per currency) of refund-overdue amounts for WARNING.") var refundOverdueAmountWarning: String?
    @Option(name: .customLong("refund-overdue-amount-critical"), help: "Range (minor units, per currency) of refund-overdue amounts for CRITICAL.") var refundOverdueAmountCritical: String?
    @Flag(name: [.customShort("v"), .customLong("verbose")], help: "More detail (may repeat up to 3 times).") var verbosity: Int
    @Flag(name: .customShort("V"), help: "Print the version; exits UNKNOWN, as plugins do.") var showVersion = false

    struct Thresholds {
        var rtt: (NagiosRange?, NagiosRange?)
        var snapshotAge: (NagiosRange?, NagiosRange?)
        var overdue: (NagiosRange?, NagiosRange?)
        var journal: (NagiosRange?, NagiosRange?)
        var refundOverdue: (NagiosRange?, NagiosRange?) = (nil, nil)
        var refundOverdueAmount: (NagiosRange?, NagiosRange?) = (nil, nil)
        /// The amount ranges need a ListCredits walk over the refund-overdue credits.
        var wantsAmounts: Bool { refundOverdueAmount.0 != nil || refundOverdueAmount.1 != nil }
    }

    // Bad ranges, -t and -s are reported by `evaluate()` rather than `validate()`, so that
    // they print a `CREDITD UNKNOWN - ...` line on stdout (the only stream Nagios reads).

    func thresholds() throws -> Thresholds {
        func range(_ text: String?, _ flag: String) throws -> NagiosRange? {
            guard let text else { return nil }
            do { return try NagiosRange(parsing: text) } catch { throw ValidationError("\(flag): \(error)") }
        }
        return Thresholds(
            rtt: (try range(warning, "-w"), try range(critical, "-c")),
            snapshotAge: (try range(snapshotAgeWarning, "--snapshot-age-warning"), try range(snapshotAgeCritical, "--snapshot-age-critical")),
            overdue: (try range(overdueWarning, "--overdue-warning"), try range(overdueCritical, "--overdue-critical")),
            journal: (try range(journalWarning, "--journal-warning"), try range(journalCritical, "--journal-critical")),
            refundOverdue: (try range(refundOverdueWarning, "--refund-overdue-warning"), try range(refundOverdueCritical, "--refund-overdue-critical")),
            refundOverdueAmount: (try range(refundOverdueAmountWarning, "--refund-overdue-amount-warning"),
                                  try range(refundOverdueAmountCritical, "--refund-overdue-amount-critical")))
    }

    func run() async throws {
        if showVersion {
            print(Check.configuration.version)
            throw ExitCode(PluginState.unknown.exitCode)
        }
        let result = await evaluate()
        print(result.rendered(), terminator: "")
        throw ExitCode(result.exitCode)
    }

    func evaluate() async -> PluginResult {
        let limits: Thresholds
        let path: String
        do {
            try CallTimeout.check(timeout, flag: "-t")
            limits = try thresholds()
            path = try SocketAddress.path(flag: socket)
        } catch {
            return PluginResult(state: .unknown, text: "\(error)")
        }
        let deadline = CallTimeout.duration(timeout)
        let clock = ContinuousClock()
        let started = clock.now
        do {
            let client = try await CreditClient.connect(socketPath: path, timeout: deadline)
            defer { Task { await client.close() } }
            let first = try await client.healthCheck(service: service, timeout: deadline - (clock.now - started))
            let (status, recoveredStats) = await Health.settled(client, service: service, first: first,
                                                                remaining: { deadline - (clock.now - started) })
            let rtt = clock.now - started
            let seconds = Double(rtt.components.seconds) + Double(rtt.components.attoseconds) / 1e18
            guard status == .serving else {
                // Name the cause when the daemon can still say it (a persistence fault).
                var text = Health.name(status)
                var long: [String] = []
                let remaining = deadline - (clock.now - started)
                var stats = recoveredStats
                if stats == nil, service.isEmpty, remaining > .zero { stats = try? await client.getStats(timeout: remaining) }
                if service.isEmpty, let stats, !stats.persistence.fault.isEmpty {
                    // The first line stays short (operations.md §3: about 80 characters); the
                    // fault's whole text, with its path and what to do, is the next line.
                    text += ", persistence fault"
                    long.append("persistence fault: \(stats.persistence.fault)")
                }
                return PluginResult(state: .critical, text: text,
                                    perfData: [PerfData(label: "rtt", seconds, unit: .seconds, warning: limits.rtt.0, critical: limits.rtt.1, minimum: 0)],
                                    longText: long)
            }
            let stats = try await client.getStats(timeout: max(deadline - (clock.now - started), .milliseconds(1)))
            var amounts: [String: Int64]? = nil
            if limits.wantsAmounts {
                // Q1: the refund-overdue credits, every page; what is still owed is their remaining amount.
                var sums: [String: Int64] = [:]
                var request = Creditd_V1_ListCreditsRequest()
                request.refundOverdueOnly = true
                request.pageSize = 1000
                request.view = .summary
                repeat {
                    let page = try await client.listCredits(request, timeout: max(deadline - (clock.now - started), .milliseconds(1)))
                    for credit in page.credits { sums[credit.currency, default: 0] += credit.remainingMinor }
                    request.pageToken = page.nextPageToken
                } while !request.pageToken.isEmpty
                amounts = sums
            }
            return Check.judge(stats: stats, rttSeconds: seconds, limits: limits, verbosity: verbosity, refundOverdueAmounts: amounts)
        } catch {
            switch Failure.classify(error, socketPath: path) {
            case .permissionDenied(let message):
                return PluginResult(state: .unknown, text: "permission denied: \(message)")
            case .rpc(.permissionDenied, let message), .rpc(.unauthenticated, let message):
                // Who may ask is a configuration matter, not the daemon's health (operations: 77).
                return PluginResult(state: .unknown, text: "permission denied: \(message)")
            case .rpc(.notFound, let message) where !service.isEmpty:
                return PluginResult(state: .unknown, text: "NOT_FOUND: \(message)")
            case .timedOut:
                return PluginResult(state: .critical, text: "no answer within \(timeout)s")
            case .rpc(let code, let message):
                // DEADLINE_EXCEEDED too: an answer, not silence (creditd or a proxy gave up in time).
                return PluginResult(state: .critical, text: "\(code.name): \(message)")
            case .unavailable(let message):
                return PluginResult(state: .critical, text: message)
            case .other(let message):
                return PluginResult(state: .critical, text: message)
            }
        }
    }

    static func judge(stats: Creditd_V1_GetStatsResponse, rttSeconds: Double, limits: Thresholds, verbosity: Int,
                      refundOverdueAmounts: [String: Int64]? = nil) -> PluginResult {
        let persistence = stats.persistence
        let overdue = Double(stats.creditsOverdue + stats.refundsOverdue)
        let journal = Double(persistence.journalBytes)
        let snapshotAge: Double? = persistence.lastSnapshotAtUnixNanos == 0 ? nil : persistence.lastSnapshotAgeSeconds

        var states: [(PluginState, String)] = []
        func judge(_ value: Double?, _ pair: (NagiosRange?, NagiosRange?), _ what: String) {
            guard let value else { return }
            let state = PluginState.evaluate(value, warning: pair.0, critical: pair.1)
            if state != .ok { states.append((state, what)) }
        }
        judge(rttSeconds, limits.rtt, String(format: "response time %.3fs", rttSeconds))
        judge(overdue, limits.overdue, "\(Int64(overdue)) overdue")
        judge(journal, limits.journal, "journal \(persistence.journalBytes) bytes")
        judge(Double(stats.refundsOverdue), limits.refundOverdue, "\(stats.refundsOverdue) refunds overdue")
        let amounts = (refundOverdueAmounts ?? [:]).sorted { $0.key < $1.key }
        for (currency, minor) in amounts {
            judge(Double(minor), limits.refundOverdueAmount, "refunds overdue \(Money.format(minor, currency))")
        }
        if let snapshotAge {
            judge(snapshotAge, limits.snapshotAge, String(format: "snapshot %.0fs old", snapshotAge))
        } else if limits.snapshotAge.0 != nil || limits.snapshotAge.1 != nil {
            states.append((.warning, "no snapshot yet"))
        }
        if !persistence.fault.isEmpty { states.append((.critical, "persistence fault")) }

        let worst = states.map(\.0).max { $0.rawValue < $1.rawValue } ?? .ok
        var text = "SERVING, \(stats.connections) connections"
        // With a shared store: which part this host plays (README: Running on more than one host).
        let replication = stats.replication
        let shared = !replication.role.isEmpty && replication.role != "standalone"
        if shared {
            text += replication.role == "standby"
                ? String(format: ", standby (epoch %llu, lag %.3fs)", replication.epoch, replication.lagSeconds)
                : ", active (epoch \(replication.epoch))"
        }
        let problems = states.filter { $0.0 == worst }.map(\.1)
        if !problems.isEmpty { text += ", " + problems.joined(separator: ", ") }
        let perf: [PerfData] = [
            PerfData(label: "rtt", rttSeconds, unit: .seconds, warning: limits.rtt.0, critical: limits.rtt.1, minimum: 0),
            PerfData(label: "connections", Double(stats.connections), minimum: 0),
            PerfData(label: "credits_overdue", Double(stats.creditsOverdue), minimum: 0),
            PerfData(label: "refunds_overdue", Double(stats.refundsOverdue), minimum: 0),
            // The value the --overdue-* ranges judge, so its thresholds sit next to it.
            PerfData(label: "overdue", overdue, warning: limits.overdue.0, critical: limits.overdue.1, minimum: 0),
            PerfData(label: "snapshot_age", value: snapshotAge.map { .number($0) } ?? .unknown, unit: .seconds,
                     warning: limits.snapshotAge.0, critical: limits.snapshotAge.1, minimum: 0),
            PerfData(label: "journal", journal, unit: .bytes, warning: limits.journal.0, critical: limits.journal.1, minimum: 0),
            PerfData(label: "subscriptions", Double(stats.subscriptions), minimum: 0),
        ] + (limits.refundOverdue.0 != nil || limits.refundOverdue.1 != nil
            ? [PerfData(label: "refund_overdue", Double(stats.refundsOverdue), warning: limits.refundOverdue.0,
                        critical: limits.refundOverdue.1, minimum: 0)] : [])
          + amounts.map { currency, minor in
            PerfData(label: "overdue_refund_\(currency)", Double(minor), warning: limits.refundOverdueAmount.0,
                     critical: limits.refundOverdueAmount.1, minimum: 0)
        }
        let replicationPerf: [PerfData] = shared
            ? [PerfData(label: "replication_lag", replication.lagSeconds, unit: .seconds, minimum: 0),
               PerfData(label: "epoch", Double(replication.epoch), minimum: 0)]
            : []
        var long: [String] = []
        if !persistence.fault.isEmpty { long.append("persistence fault: \(persistence.fault)") }
        if shared, verbosity > 0 {
            long.append("node \(replication.node), active host \(replication.activeHost.isEmpty ? "none" : replication.activeHost)")
        }
        if verbosity > 0 {
            long.append("sequence \(persistence.lastSequence), snapshot sequence \(persistence.lastSnapshotSequence)")
            long.append("in-flight calls \(stats.inFlightCalls), torn tails truncated \(persistence.tornTailTruncations)")
        }
        return PluginResult(state: worst, text: text, perfData: perf + replicationPerf, longText: long)
    }
}
