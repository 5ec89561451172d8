#if canImport(Glibc)
import Glibc
#endif
import CreditProto
import Foundation

// The PostgreSQL store section (`--only postgres --postgres CONNINFO`): durable writes through an
// active creditd and a standby on the given database, at 16 and 64 in flight, against pgbench
// inserting rows of the same size at the same concurrency into the same cluster, in the same
// run; then the standby's replication lag. Benchmarks/postgres.sh starts a throwaway cluster.

struct PostgresSuiteResult {
    var phases: [PhaseResult]
    var targets: [TargetResult]
}

func runPostgresSuite(options: Options, creditd: String, work: String, connectionInfo: String) async throws -> PostgresSuiteResult {
    let psql = try findTool("psql")
    let pgbench = try findTool("pgbench")
    let store = ["--store", "postgres:" + connectionInfo, "--log-level", "notice"]
    try FileManager.default.createDirectory(atPath: work + "/active", withIntermediateDirectories: true)
    try FileManager.default.createDirectory(atPath: work + "/standby", withIntermediateDirectories: true)
    let active = try Daemon(binary: creditd, workDirectory: work + "/active", stateDirectory: work + "/active/state",
                            extraArguments: store)
    defer { active.stop() }
    try active.waitUntilServing(timeout: 60)
    try waitForRole("active", of: active, timeout: 20)
    let standby = try Daemon(binary: creditd, workDirectory: work + "/standby", stateDirectory: work + "/standby/state",
                             extraArguments: store)
    defer { standby.stop() }
    try standby.waitUntilServing(timeout: 60)
    try waitForRole("standby", of: standby, timeout: 20)
    log("postgres: active pid \(active.pid), standby pid \(standby.pid)")

    // Every call creates a subscription of its own: each is one journal record.
    let poolSize = 400_000
    let pool = try RequestPool(MethodTable.Credits.createSubscription, messages: (0..<poolSize).map { index in
        var request = Creditd_V1_CreateSubscriptionRequest()
        request.subscriptionID = String(format: "pg-%08d", index)
        request.seats = 3
        request.unitPriceMinor = 1200
        request.currency = "EUR"
        request.interval = .monthly
        request.timeZone = "Europe/Oslo"
        return request
    })
    var phases: [PhaseResult] = []
    var targets: [TargetResult] = []
    var used = 0
    for (connections, inFlight) in [(1, 16), (4, 16)] {
        let slice = RequestPool(name: pool.name, requests: Array(pool.requests[used...]))
        var own = try runClosedLoop(system: "creditd-pg", socketPath: active.socketPath, serverPID: active.pid,
                                    pool: slice, connections: connections, inFlight: inFlight,
                                    warmup: options.warmup, duration: options.duration)
        used += own.poolEntriesUsed
        own.method = "create:postgres"
        phases.append(own)
        log(line(own))

        // pgbench: one row of the journal records' mean size per transaction, same concurrency.
        let recordBytes = Int(try runTool(psql, ["-At", "-d", connectionInfo, "-c",
                                                 "SELECT coalesce(round(avg(octet_length(payload))), 200) FROM creditd_journal"])
            .trimmingCharacters(in: .whitespacesAndNewlines)) ?? 200
        _ = try runTool(psql, ["-d", connectionInfo, "-c",
                               "CREATE TABLE IF NOT EXISTS bench_rows (id bigserial PRIMARY KEY, epoch bigint NOT NULL, payload bytea NOT NULL)"])
        let script = work + "/pgbench-insert.sql"
        try "INSERT INTO bench_rows (epoch, payload) VALUES (1, decode(repeat('ab', \(recordBytes)), 'hex'));\n"
            .write(toFile: script, atomically: true, encoding: .utf8)
        let clients = connections * inFlight
        // A transaction count (-t) sized to creditd's rate over the same duration, not -T: -T
        // relies on SIGALRM, which a child of this process may inherit blocked.
        let perClient = max(100, Int(own.callsPerSecond * options.duration) / clients)
        let output = try runTool(pgbench, ["-n", "-c", String(clients), "-j", "2", "-t", String(perClient),
                                           "-f", script, connectionInfo])
        let tps = output.split(separator: "\n").compactMap { line -> Double? in
            guard line.hasPrefix("tps = ") else { return nil }
            return Double(line.dropFirst(6).split(separator: " ").first ?? "")
        }.first ?? 0
        log("  pgbench insert \(recordBytes) B x\(clients): \(Int(tps)) tps")
        let ratio = own.callsPerSecond / max(tps, 1)
        targets.append(TargetResult(target: "PostgreSQL store \(clients) in flight >= 0.5x pgbench inserts of \(recordBytes) B",
                                    measured: "\(Int(own.callsPerSecond)) vs \(Int(tps)) per s", ratio: ratio,
                                    threshold: 0.5, holds: ratio >= 0.5, extrapolated: false))
    }

    // The standby replayed everything the active host committed; its lag histogram covers it.
    try await Task.sleep(for: .seconds(1))
    let metrics = try standby.call(MethodTable.Admin.getMetrics, Creditd_V1_GetMetricsRequest()).prometheusText
    let p99 = metric("creditd_replication_lag_p99_seconds", in: metrics) ?? .nan
    log("  standby replication lag p99 <= \(p99) s (bucket bound)")
    targets.append(TargetResult(target: "standby replication lag p99 <= 100 ms (under the write benchmark)",
                                measured: "<= \(fmt(p99 * 1000, 0)) ms (histogram bucket bound)", ratio: p99 / 0.1,
                                threshold: 1, holds: p99 <= 0.1, extrapolated: false))
    return PostgresSuiteResult(phases: phases, targets: targets)
}

private func waitForRole(_ role: String, of daemon: Daemon, timeout: Double) throws {
    let end = monotonicNanos() + UInt64(timeout * 1e9)
    while monotonicNanos() < end {
        if let text = try? daemon.call(MethodTable.Admin.getMetrics, Creditd_V1_GetMetricsRequest()).prometheusText,
           metric("creditd_replication_role{role=\"\(role)\"}", in: text) == 1 {
            return
        }
        usleep(20_000)
    }
    throw BenchError("creditd did not become \(role) within \(timeout) s:\n\(daemon.child.log)")
}

/// The value of the sample `name` (with its labels, if any) in Prometheus text.
private func metric(_ name: String, in text: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(name + " ") {
        return Double(line.dropFirst(name.count + 1))
    }
    return nil
}

private func findTool(_ name: String) throws -> String {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    for directory in path.split(separator: ":").map(String.init) + ["/usr/local/bin", "/usr/bin"] {
        let candidate = directory + "/" + name
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw BenchError("\(name) not found (Debian package postgresql-client / postgresql-contrib)")
}

/// Runs a client tool to completion; returns its standard output.
private func runTool(_ executable: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = output
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let text = String(decoding: data, as: UTF8.self)
    guard process.terminationStatus == 0 else { throw BenchError("\(executable) \(arguments.joined(separator: " ")): \(text)") }
    return text
}
