import ArgumentParser
import CreditProto
import Foundation

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats", abstract: "Daemon counters and persistence state (journal, snapshots, faults).")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let response: Creditd_V1_GetStatsResponse = try await withSession(connection) {
            try await $0.call(MethodTable.Admin.getStats, Creditd_V1_GetStatsRequest())
        }
        try emit(response, output.output) {
            let p = response.persistence
            var pairs: [(String, String)] = [
                ("version", response.version),
                ("serving", String(response.serving)),
                ("clock", response.manualClock ? "manual" : "system"),
                ("now", Instants.format(response.nowUnixNanos)),
                ("uptime", String(format: "%.0f s", response.uptimeSeconds)),
                ("subscriptions", String(response.subscriptions)),
            ]
            for (state, count) in response.creditsByState.sorted(by: { $0.key < $1.key }) {
                pairs.append(("credits \(state)", String(count)))
            }
            pairs += [
                ("credits overdue", String(response.creditsOverdue)),
                ("refunds overdue", String(response.refundsOverdue)),
                ("connections", String(response.connections)),
                ("in-flight calls", String(response.inFlightCalls)),
                ("journal bytes", String(p.journalBytes)),
                ("journal segments", String(p.journalSegments)),
                ("last sequence", String(p.lastSequence)),
                ("last snapshot sequence", String(p.lastSnapshotSequence)),
                ("last snapshot at", Instants.format(p.lastSnapshotAtUnixNanos)),
                ("last snapshot age", p.lastSnapshotAtUnixNanos == 0 ? "-" : String(format: "%.0f s", p.lastSnapshotAgeSeconds)),
                ("snapshot failures", p.snapshotFailures == 0 ? "0" : "\(p.snapshotFailures) (last: \(p.lastSnapshotError))"),
                ("torn tail truncations", String(p.tornTailTruncations)),
                // What the start found: a repair threw changes away, a skipped snapshot was damaged.
                ("skipped snapshots", String(p.skippedSnapshots)),
                ("repairs", String(p.repairs)),
                ("recovery warnings", String(p.recoveryWarnings)),
                ("records written", String(p.recordsWritten)),
                ("fsyncs", String(p.fsyncs)),
                ("persistence fault", p.fault.isEmpty ? "none" : p.fault),
            ]
            let r = response.replication
            if !r.role.isEmpty, r.role != "standalone" {
                pairs += [
                    ("replication role", r.role),
                    ("replication epoch", String(r.epoch)),
                    ("node", r.node),
                    ("active host", r.activeHost.isEmpty ? "none" : r.activeHost),
                    ("replication lag", String(format: "%.3f s, %d records", r.lagSeconds, r.lagRecords)),
                ]
            }
            return fieldList(pairs)
        }
    }
}

struct TakeSnapshot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot", abstract: "Write a snapshot now; returns when it is durable.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let response: Creditd_V1_TakeSnapshotResponse = try await withSession(connection) {
            try await $0.call(MethodTable.Admin.takeSnapshot, Creditd_V1_TakeSnapshotRequest())
        }
        try emit(response, output.output) {
            fieldList([
                ("sequence", String(response.sequence)),
                ("path", response.path),
                ("bytes", String(response.bytes)),
                ("duration", String(format: "%.3f s", response.durationSeconds)),
            ])
        }
    }
}

struct Clock: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clock", abstract: "The daemon's current instant and clock mode.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let response: Creditd_V1_GetClockResponse = try await withSession(connection) {
            try await $0.call(MethodTable.Admin.getClock, Creditd_V1_GetClockRequest())
        }
        try emit(response, output.output) {
            fieldList([("now", response.now), ("clock", response.manual ? "manual" : "system")])
        }
    }
}

struct AdvanceClock: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "advance-clock",
        abstract: "Move the manual test clock forward and run the transitions that fall due.",
        discussion: "Only for a daemon started with --clock manual.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    // .unconditional: "-1d" is the value (refused with the reason below), not an unknown option.
    @Option(parsing: .unconditional, help: "How far forward: a positive number with a unit, e.g. 90s, 15m, 12h, 30d.")
    var by: String?
    @Option(help: "To this RFC 3339 instant, e.g. 2025-05-01T00:00:00Z.") var to: String?

    func validate() throws {
        guard (by == nil) != (to == nil) else { throw ValidationError("give exactly one of --by and --to") }
        if let by, AdvanceClock.nanos(by) == nil {
            // A number that reads, but not forward: say that, not "cannot read".
            if let unit = by.last, "smhd".contains(unit), let count = Int64(by.dropLast()), count <= 0 {
                throw ValidationError("--by \(by): the clock only moves forward; give a positive amount, e.g. 90s, 15m, 12h, 30d")
            }
            throw ValidationError("cannot read --by \(by): use a positive number with a unit, e.g. 90s, 15m, 12h, 30d")
        }
        if let to, Instants.parse(to) == nil { throw ValidationError("cannot read --to \(to): use RFC 3339, e.g. 2025-05-01T00:00:00Z") }
    }

    static func nanos(_ text: String) -> Int64? {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        guard let unit = text.last, let seconds = units[unit], let count = Int64(text.dropLast()), count > 0 else { return nil }
        let (total, overflow) = count.multipliedReportingOverflow(by: seconds * 1_000_000_000)
        return overflow ? nil : total
    }

    func run() async throws {
        var request = Creditd_V1_AdvanceClockRequest()
        if let by { request.byNanos = AdvanceClock.nanos(by) ?? 0 }
        if let to { request.toUnixNanos = Instants.parse(to) ?? 0 }
        let response: Creditd_V1_AdvanceClockResponse = try await withSession(connection) {
            try await $0.call(MethodTable.Admin.advanceClock, request)
        }
        try emit(response, output.output) {
            fieldList([("now", response.now), ("transitions", String(response.transitions))])
        }
    }
}

struct Reload: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reload",
        abstract: "Re-read the daemon's configuration (limits, log level, authorization) without dropping connections.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let response: Creditd_V1_ReloadResponse = try await withSession(connection) {
            try await $0.call(MethodTable.Admin.reload, Creditd_V1_ReloadRequest())
        }
        try emit(response, output.output) { (response.message.isEmpty ? "reloaded" : response.message) + "\n" }
    }
}

struct Metrics: AsyncParsableCommand {
    enum Format: String, ExpressibleByArgument { case prometheus, json, table }

    static let configuration = CommandConfiguration(
        commandName: "metrics", abstract: "The daemon's metrics in the Prometheus text format 0.0.4.")

    @OptionGroup var connection: ConnectionOptions
    @Option(name: [.customShort("o"), .customLong("output")], help: "prometheus (default), json or table.") var output: Format = .prometheus

    func run() async throws {
        let response: Creditd_V1_GetMetricsResponse = try await withSession(connection) {
            try await $0.call(MethodTable.Admin.getMetrics, Creditd_V1_GetMetricsRequest())
        }
        switch output {
        case .prometheus: print(response.prometheusText, terminator: "")
        case .json: try emit(response, .json) { "" }
        case .table: print(Metrics.table(response.prometheusText), terminator: "")
        }
    }

    /// One row per series, `SERIES  VALUE`, in the exposition's order; comments left out.
    static func table(_ prometheusText: String) -> String {
        var table = TextTable("SERIES", "VALUE")
        for line in prometheusText.split(separator: "\n") where !line.hasPrefix("#") {
            // The value follows the last space (label values may hold spaces; the value never does).
            guard let space = line.lastIndex(of: " ") else { continue }
            table.add(String(line[..<space]), String(line[line.index(after: space)...]))
        }
        return table.rendered
    }
}
