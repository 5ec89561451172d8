#if canImport(Glibc)
import Glibc
#endif
import CreditProto
import Foundation
import NIOCore
import SwiftProtobuf

// creditbench: load generator for the release creditd, with its baselines measured in the same
// run (a bare C echo server for RPC, a raw fdatasync group-commit loop for durable writes), and
// the memory, snapshot and recovery figures at several state sizes. See BENCHMARKS.md.

struct Options {
    var json = false
    var warmup = 0.5
    var duration = 2.0
    var subscriptions = 10_000
    // A consumed pool may not wrap within a phase (a second cancel of a subscription is not a
    // journaled change, a second create is refused): 4x16 alone takes ~250k calls at 2.5 s.
    var cancelPool = 400_000
    /// Each subscription of the rpc section's state its own customer, instead of one customer
    /// for all (the figures of BENCHMARKS.md): the book's customer map then has an entry per
    /// subscription, as in a book of consumers.
    var customerPerSubscription = false
    var scaleSizes = [10_000, 100_000]
    var runRPC = true
    var runScaleSuite = true
    var runAbuse = false
    var runBook = false
    /// Subscriptions (5 credits each) of the book section's state; the targets name 1,000,000.
    var bookSubscriptions = 1_000_000
    /// Lines of the book section's import file; the target names 100,000.
    var importLines = 100_000
    var runPostgres = false
    /// The database of the PostgreSQL section (a fresh one: it creates creditd's tables).
    var postgres: String?
    /// Seconds of the never-reading client in the abuse section.
    var abuseDuration = 60.0
    var creditd: String?
    var echoSource: String?
    var methods: [String]?
    var jsonFile: String?

    static let usage = """
        usage: creditbench [--json] [--json-file PATH] [--duration S] [--warmup S] [--subscriptions N] [--cancel-pool N]
                           [--customer-per-subscription]
                           [--scale N,N,...] [--only rpc|scale|abuse|book|postgres] [--abuse-duration S] [--methods M,M]
                           [--book-subscriptions N] [--import-lines N] [--postgres CONNINFO]
                           [--creditd PATH] [--echo-source PATH]
          --json          print JSON instead of the table; --json-file also writes it to PATH
          --duration      measured seconds per configuration (default 2)
          --warmup        unmeasured seconds before each (default 0.5)
          --subscriptions subscriptions with 5 credits each for the RPC phases (default 10000)
          --cancel-pool   fresh subscriptions for CancelSubscription calls, and as many new ids for
                          CreateSubscription calls (default 400000)
          --customer-per-subscription  every subscription of the RPC phases' state (and every
                          created one) its own customer, instead of one customer for all
          --scale         state sizes for memory/snapshot/recovery (default 10000,100000; 1000000 is the target)
          --methods       RPC phases to run (GetSubscription,GetRefundStatus,ChangeSeats,CancelSubscription,
                          CreateSubscription)
          --creditd       the daemon (default .build/release/creditd next to this binary)
          --only abuse    the abuse section (issue 13) alone: hostile clients against default limits
          --abuse-duration seconds of the never-reading client in the abuse section (default 60)
          --only book     ListCredits, export, long poll, WatchEvents and import at their target sizes
          --book-subscriptions  state size of the book section (default 1000000)
          --import-lines  subscriptions imported by the book section (default 100000)
          --only postgres the PostgreSQL store section alone (Benchmarks/postgres.sh starts a throwaway cluster):
                          an active and a standby creditd on CONNINFO against pgbench on the same cluster
        """

    init(arguments: [String]) throws {
        var rest = arguments[...]
        func value(_ flag: String) throws -> String {
            guard let next = rest.popFirst() else { throw BenchError("\(flag) needs a value\n\(Self.usage)") }
            return next
        }
        func number(_ flag: String) throws -> Double {
            guard let parsed = Double(try value(flag)) else { throw BenchError("\(flag) needs a number") }
            return parsed
        }
        while let flag = rest.popFirst() {
            switch flag {
            case "--json": json = true
            case "--json-file": jsonFile = try value(flag)
            case "--warmup": warmup = try number(flag)
            case "--duration": duration = try number(flag)
            case "--subscriptions": subscriptions = Int(try number(flag))
            case "--cancel-pool": cancelPool = Int(try number(flag))
            case "--customer-per-subscription": customerPerSubscription = true
            case "--abuse-duration": abuseDuration = try number(flag)
            case "--book-subscriptions": bookSubscriptions = Int(try number(flag))
            case "--import-lines": importLines = Int(try number(flag))
            case "--scale":
                scaleSizes = try value(flag).split(separator: ",").map {
                    guard let size = Int($0), size > 0 else { throw BenchError("--scale takes sizes like 10000,100000") }
                    return size
                }
            case "--only":
                switch try value(flag) {
                case "rpc": runScaleSuite = false
                case "scale": runRPC = false
                case "abuse": runRPC = false; runScaleSuite = false; runAbuse = true
                case "book": runRPC = false; runScaleSuite = false; runBook = true
                case "postgres": runRPC = false; runScaleSuite = false; runPostgres = true
                default: throw BenchError("--only takes rpc, scale, abuse, book or postgres")
                }
            case "--creditd": creditd = try value(flag)
            case "--postgres": postgres = try value(flag)
            case "--echo-source": echoSource = try value(flag)
            case "--methods": methods = try value(flag).split(separator: ",").map(String.init)
            case "-h", "--help":
                print(Self.usage)
                exit(0)
            default: throw BenchError("unknown argument \(flag)\n\(Self.usage)")
            }
        }
    }
}

struct MachineInfo: Codable {
    var nproc: Int
    var cpuModel: String
    var memoryGiB: Double
    var kernel: String
    var stateFilesystem: String

    init(stateDirectory: String) {
        nproc = ProcessInfo.processInfo.activeProcessorCount
        cpuModel = ProcFS.cpuModel()
        memoryGiB = ProcFS.memTotalGiB()
        var name = utsname()
        uname(&name)
        kernel = withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        stateFilesystem = ProcFS.filesystem(of: stateDirectory)
    }
}

struct TargetResult: Codable {
    var target: String
    var measured: String
    var ratio: Double
    var threshold: Double
    var holds: Bool
    var extrapolated: Bool
}

struct Report: Codable {
    var machine: MachineInfo
    var phases: [PhaseResult]
    var scale: [ScaleResult]
    var book: BookResult?
    var targets: [TargetResult]
}

func log(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

func defaultCreditd() -> String {
    let here = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    return here.appendingPathComponent("creditd").path
}

// MARK: RPC suite

let readConfigurations = [(1, 1), (4, 16), (1, 64)]
/// The durable writes the targets name, in the order the suite runs them.
let writeMethods = [MethodTable.Credits.changeSeats.method, MethodTable.Credits.cancelSubscription.method,
                    MethodTable.Credits.createSubscription.method]
let writeConfigurations = [(1, 1), (4, 4), (4, 16)]

func runRPCSuite(options: Options, creditd: String, work: String) async throws -> [PhaseResult] {
    let state = work + "/state"
    let echoSource = try EchoServerBuild.findSource(explicit: options.echoSource)
    let echo = try EchoServerBuild(source: echoSource, into: work)
    let goEcho = try GoEchoServerBuild(source: GoEchoServerBuild.findSource(echoSource: echoSource), into: work)
    log("building state: \(options.subscriptions) subscriptions with 5 credits, \(options.cancelPool) to cancel")
    _ = try await StateBuilder.build(directory: state, creditSubscriptions: options.subscriptions,
                                     plainSubscriptions: options.cancelPool, ownCustomers: options.customerPerSubscription)
    let daemon = try Daemon(binary: creditd, workDirectory: work, stateDirectory: state)
    defer { daemon.stop() }
    let startSeconds = try daemon.waitUntilServing(timeout: 120)
    log("creditd serving after \(fmt(startSeconds)) s (pid \(daemon.pid))")

    var random = SystemRandomNumberGenerator()
    let order = (0..<options.subscriptions).shuffled(using: &random)
    let ids = order.map(StateBuilder.creditSubscriptionID)
    let pools: [(pool: RequestPool, configurations: [(Int, Int)])] = [
        (try RequestPool(MethodTable.Credits.getSubscription, messages: ids.map {
            var request = Creditd_V1_GetSubscriptionRequest()
            request.subscriptionID = $0
            return request
        }), readConfigurations),
        (try RequestPool(MethodTable.Credits.getRefundStatus, messages: ids.map {
            var request = Creditd_V1_GetRefundStatusRequest()
            request.subscriptionID = $0
            return request
        }), readConfigurations),
        // Two passes over the subscriptions, up one seat then down again: every call is a change.
        (try RequestPool(MethodTable.Credits.changeSeats, messages: (0..<(2 * ids.count)).map {
            StateBuilder.seatsRequest(id: ids[$0 % ids.count],
                                      seats: StateBuilder.builtSeats + ($0 < ids.count ? 1 : 0))
        }), writeConfigurations),
        (try RequestPool(MethodTable.Credits.cancelSubscription, messages: (0..<options.cancelPool).map {
            var request = Creditd_V1_CancelSubscriptionRequest()
            request.subscriptionID = StateBuilder.cancelSubscriptionID($0)
            request.mode = .immediate
            return request
        }), writeConfigurations),
        (try RequestPool(MethodTable.Credits.createSubscription, messages: (0..<options.cancelPool).map {
            StateBuilder.createRequest(id: StateBuilder.newSubscriptionID($0), ownCustomer: options.customerPerSubscription)
        }), writeConfigurations),
    ]

    // Journal record sizes (16-byte record header + JournalEntry) of the write methods.
    var cancelEntry = Creditd_Journal_V1_JournalEntry()
    cancelEntry.atUnixNanos = StateBuilder.instantNanos
    cancelEntry.callerUid = getuid()
    cancelEntry.cancelSubscription = Creditd_V1_CancelSubscriptionRequest.with {
        $0.subscriptionID = StateBuilder.cancelSubscriptionID(0)
        $0.mode = .immediate
    }
    var createEntry = Creditd_Journal_V1_JournalEntry()
    createEntry.atUnixNanos = StateBuilder.instantNanos
    createEntry.callerUid = getuid()
    createEntry.createSubscription = StateBuilder.createRequest(id: StateBuilder.newSubscriptionID(0))
    let journalRecordBytes = [
        MethodTable.Credits.changeSeats.method: 16 + (try StateBuilder.seatChangeRecord(id: ids[0], seats: 6)).count,
        MethodTable.Credits.cancelSubscription.method: 16 + (try cancelEntry.serializedBytes() as [UInt8]).count,
        MethodTable.Credits.createSubscription.method: 16 + (try createEntry.serializedBytes() as [UInt8]).count,
    ]
    let methods = Set(options.methods ?? pools.map(\.pool.name))

    var results: [PhaseResult] = []
    // Cancels and creates consume their entries: each configuration starts past the last one
    // used, and one that runs out of entries fails the run rather than measure repeats (a
    // repeated cancel changes nothing and journals nothing; a repeated create is refused).
    let consumed: Set = [MethodTable.Credits.cancelSubscription.method, MethodTable.Credits.createSubscription.method]
    var used: [String: Int] = [:]
    for (pool, configurations) in pools where methods.contains(pool.name) {
        for (connections, inFlight) in configurations {
            var measuredPool = pool
            if consumed.contains(pool.name) {
                let start = min(used[pool.name, default: 0], pool.requests.count)
                measuredPool = RequestPool(name: pool.name, requests: Array(pool.requests[start...]))
                guard measuredPool.requests.count > 4 * connections * inFlight else {
                    throw BenchError("the \(pool.name) pool is used up; raise --cancel-pool")
                }
            }
            let result = try runClosedLoop(system: "creditd", socketPath: daemon.socketPath, serverPID: daemon.pid,
                                           pool: measuredPool, connections: connections, inFlight: inFlight,
                                           warmup: options.warmup, duration: options.duration)
            if consumed.contains(pool.name) {
                guard result.poolEntriesUsed <= measuredPool.requests.count else {
                    throw BenchError("the \(pool.name) pool ran out during \(connections)x\(inFlight) "
                                     + "(\(result.poolEntriesUsed) calls, \(measuredPool.requests.count) entries); raise --cancel-pool")
                }
                used[pool.name, default: 0] += result.poolEntriesUsed
            }
            results.append(result)
            log(line(result))

            let echoSocket = work + "/echo.sock"
            let server = try echo.start(socketPath: echoSocket, responseBytes: Int(result.meanResponseBytes.rounded()),
                                        logDirectory: work)
            let baseline = try runClosedLoop(system: "echo", socketPath: echoSocket, serverPID: server.pid,
                                             pool: measuredPool, connections: connections, inFlight: inFlight,
                                             warmup: options.warmup, duration: options.duration)
            server.stop(signal: SIGKILL)
            results.append(baseline)
            log(line(baseline))

            // containerd's own Go ttrpc server, the same framing and response size.
            let goSocket = work + "/go-echo.sock"
            let goServer = try goEcho.start(socketPath: goSocket, responseBytes: Int(result.meanResponseBytes.rounded()),
                                            methods: MethodTable.all.filter { $0.kind == .unary }.map(\.fullName),
                                            logDirectory: work)
            let goBaseline = try runClosedLoop(system: "go-echo", socketPath: goSocket, serverPID: goServer.pid,
                                               pool: measuredPool, connections: connections, inFlight: inFlight,
                                               warmup: options.warmup, duration: options.duration)
            goServer.stop(signal: SIGKILL)
            results.append(goBaseline)
            log(line(goBaseline))

            // Writes: the durable-write limit right after, at the same total in flight, with
            // records the size of this method's journal records (the disk is shared and noisy).
            if let recordBytes = journalRecordBytes[pool.name] {
                var limit = try runGroupCommitLimit(directory: state, recordBytes: recordBytes,
                                                    inFlight: connections * inFlight,
                                                    warmup: options.warmup, duration: options.duration)
                limit.method = "commit:" + pool.name
                results.append(limit)
                log(line(limit))
            }
        }
    }
    return results
}

func line(_ r: PhaseResult) -> String {
    "  \(r.system) \(r.method) \(r.connections)x\(r.inFlight): \(Int(r.callsPerSecond)) calls/s, p99 \(fmt(r.p99Micros, 0)) us"
        + (r.errors > 0 ? ", \(r.errors) errors (\(r.firstError ?? ""))" : "")
}

// MARK: targets

func evaluateTargets(phases: [PhaseResult], scale: [ScaleResult]) -> [TargetResult] {
    func find(_ system: String, _ method: String, _ connections: Int, _ inFlight: Int) -> PhaseResult? {
        phases.first { $0.system == system && $0.method == method && $0.connections == connections && $0.inFlight == inFlight }
    }
    var targets: [TargetResult] = []
    // Issue targets against containerd's Go ttrpc echo server at the same CxW and response size.
    let get = MethodTable.Credits.getSubscription.method
    if let own = find("creditd", get, 4, 16), let go = find("go-echo", get, 4, 16) {
        let rate = own.callsPerSecond / max(go.callsPerSecond, 1)
        targets.append(TargetResult(target: "\(get) 4x16 calls/s >= 0.8x Go ttrpc echo",
                                    measured: "\(Int(own.callsPerSecond)) vs \(Int(go.callsPerSecond))",
                                    ratio: rate, threshold: 0.8, holds: rate >= 0.8, extrapolated: false))
        let cpu = own.serverCPUMicrosPerCall / max(go.serverCPUMicrosPerCall, 0.001)
        targets.append(TargetResult(target: "\(get) 4x16 server CPU/call <= 1.0x Go ttrpc echo",
                                    measured: "\(fmt(own.serverCPUMicrosPerCall)) us vs \(fmt(go.serverCPUMicrosPerCall)) us",
                                    ratio: cpu, threshold: 1.0, holds: cpu <= 1.0, extrapolated: false))
        let p99 = own.p99Micros / max(go.p99Micros, 0.001)
        targets.append(TargetResult(target: "\(get) 4x16 p99 <= 1.5x Go ttrpc echo",
                                    measured: "\(fmt(own.p99Micros, 0)) us vs \(fmt(go.p99Micros, 0)) us",
                                    ratio: p99, threshold: 1.5, holds: p99 <= 1.5, extrapolated: false))
    }
    if let own = find("creditd", get, 1, 64), let go = find("go-echo", get, 1, 64) {
        let rate = own.callsPerSecond / max(go.callsPerSecond, 1)
        targets.append(TargetResult(target: "\(get) 1x64 calls/s >= 1.0x Go ttrpc echo",
                                    measured: "\(Int(own.callsPerSecond)) vs \(Int(go.callsPerSecond))",
                                    ratio: rate, threshold: 1.0, holds: rate >= 1.0, extrapolated: false))
    }
    let refunds = MethodTable.Credits.getRefundStatus.method
    if let own = find("creditd", refunds, 4, 16), let go = find("go-echo", refunds, 4, 16) {
        let cpu = own.serverCPUMicrosPerCall / max(go.serverCPUMicrosPerCall, 0.001)
        targets.append(TargetResult(target: "\(refunds) (5 credits) 4x16 server CPU/call <= 2x Go ttrpc echo",
                                    measured: "\(fmt(own.serverCPUMicrosPerCall)) us vs \(fmt(go.serverCPUMicrosPerCall)) us",
                                    ratio: cpu, threshold: 2.0, holds: cpu <= 2.0, extrapolated: false))
    }
    for method in writeMethods {
        for (connections, inFlight) in [(4, 4), (4, 16)] {
            guard let own = find("creditd", method, connections, inFlight) else { continue }
            // Either half the disk's raw group-commit rate at the same in-flight count, or at
            // most 3x the Go echo server's CPU per call (disks swing between 0.1 and 4 ms).
            let raw = find("fdatasync", "commit:" + method, 1, connections * inFlight)
            let go = find("go-echo", method, connections, inFlight)
            let rate = raw.map { own.callsPerSecond / max($0.callsPerSecond, 1) } ?? 0
            let cpu = go.map { own.serverCPUMicrosPerCall / max($0.serverCPUMicrosPerCall, 0.001) } ?? .infinity
            targets.append(TargetResult(
                target: "\(method) \(connections * inFlight) in flight: >= 0.5x group commit, or CPU/write <= 3x Go echo",
                measured: "\(fmt(rate, 2))x commit (\(Int(own.callsPerSecond)) vs \(Int(raw?.callsPerSecond ?? 0))), "
                    + "\(fmt(cpu, 2))x CPU (\(fmt(own.serverCPUMicrosPerCall)) us vs \(fmt(go?.serverCPUMicrosPerCall ?? 0)) us)",
                ratio: min(rate / 0.5, 3 / cpu), threshold: 1, holds: rate >= 0.5 || cpu <= 3, extrapolated: false))
        }
    }
    // Scale targets at 1,000,000 subscriptions: measured, or extrapolated linearly from the two
    // largest sizes run.
    let sorted = scale.sorted { $0.subscriptions < $1.subscriptions }
    if let largest = sorted.last {
        let goal = 1_000_000.0
        let exact = largest.subscriptions == 1_000_000
        func at1M(_ value: (ScaleResult) -> Double) -> Double {
            if exact { return value(largest) }
            // One size only: proportional (overestimates what does not grow with the state).
            if sorted.count < 2 { return value(largest) * goal / Double(largest.subscriptions) }
            let small = sorted[sorted.count - 2]
            let slope = (value(largest) - value(small)) / Double(largest.subscriptions - small.subscriptions)
            return value(largest) + slope * (goal - Double(largest.subscriptions))
        }
        let rss = at1M(\.rssMiB)
        targets.append(TargetResult(target: "1M subscriptions / 5M credits RSS <= 1 GiB",
                                    measured: "\(fmt(rss, 0)) MiB", ratio: rss / 1024, threshold: 1,
                                    holds: rss <= 1024, extrapolated: !exact))
        let snapshot = at1M(\.snapshotSeconds)
        targets.append(TargetResult(target: "full snapshot at 1M <= 2 s",
                                    measured: "\(fmt(snapshot)) s", ratio: snapshot / 2, threshold: 1,
                                    holds: snapshot <= 2, extrapolated: !exact))
        // Answered from counters kept as the state changes: it does not grow with the state, so
        // a smaller run's figure stands for 1M as it is.
        let stats = largest.getStatsP99Micros
        targets.append(TargetResult(target: "GetStats at 1M answers in <= 1 ms (p99 of the client's times)",
                                    measured: "\(fmt(stats, 0)) us (p50 \(fmt(largest.getStatsP50Micros, 0)) us, "
                                        + "max \(fmt(largest.getStatsMaxMicros, 0)) us)",
                                    ratio: stats / 1000, threshold: 1, holds: stats <= 1000, extrapolated: !exact))
        let recovery = at1M(\.snapshotPlusJournalRecoverySeconds)
        targets.append(TargetResult(target: "recovery: 1M snapshot + 1M journal records <= 3 s",
                                    measured: "\(fmt(recovery)) s", ratio: recovery / 3, threshold: 1,
                                    holds: recovery <= 3, extrapolated: !exact))
    }
    return targets
}

// MARK: output

func printTable(_ report: Report) {
    let machine = report.machine
    print("machine: \(machine.nproc) CPUs, \(machine.cpuModel), \(fmt(machine.memoryGiB, 1)) GiB, Linux \(machine.kernel)")
    print("state directory: \(machine.stateFilesystem)")
    if !report.phases.isEmpty {
        print("")
        func pad(_ text: String, _ width: Int) -> String {
            text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
        }
        let header = ["system", "method", "CxW", "calls/s", "p50us", "p90us", "p99us", "p99.9us",
                      "srvCPUus", "cliCPUus", "others%", "err", "x base", "p99 x base"]
        let widths = [9, 26, 5, 9, 7, 7, 7, 8, 9, 9, 8, 5, 7, 11]
        print(zip(header, widths).map { pad($0, $1) }.joined(separator: " "))
        for phase in report.phases {
            var ratio = "", p99Ratio = ""
            if phase.system == "creditd" {
                let isWrite = writeMethods.contains(phase.method)
                let base = isWrite
                    ? report.phases.first { $0.system == "fdatasync" && $0.method == "commit:" + phase.method
                        && $0.inFlight == phase.connections * phase.inFlight }
                    : report.phases.first { $0.system == "echo" && $0.method == phase.method
                        && $0.connections == phase.connections && $0.inFlight == phase.inFlight }
                if let base {
                    ratio = fmt(phase.callsPerSecond / max(base.callsPerSecond, 1))
                    p99Ratio = fmt(phase.p99Micros / max(base.p99Micros, 0.001))
                }
            }
            let row = [phase.system, phase.method, "\(phase.connections)x\(phase.inFlight)",
                       "\(Int(phase.callsPerSecond))", fmt(phase.p50Micros, 0), fmt(phase.p90Micros, 0),
                       fmt(phase.p99Micros, 0), fmt(phase.p999Micros, 0), fmt(phase.serverCPUMicrosPerCall, 1),
                       fmt(phase.clientCPUMicrosPerCall, 1), fmt(phase.othersCPUShare * 100, 0), "\(phase.errors)",
                       ratio, p99Ratio]
            print(zip(row, widths).map { pad($0, $1) }.joined(separator: " "))
        }
        print("(x base: creditd calls/s over the echo server's at the same CxW for reads, over the fdatasync")
        print(" group-commit limit at the same total in flight for writes; others%: CPU share of other processes)")
    }
    if !report.scale.isEmpty {
        print("")
        print("subscriptions  credits  replay_s  snapshot_s  snap_MiB  recover_s  RSS_MiB  peak_MiB  +journal  recover+j_s  +archived_s  stats_p99us")
        for s in report.scale {
            print(String(format: "%13d %8d %9.2f %11.2f %9.1f %10.2f %8.0f %9.0f %9d %12.2f %12.2f %12.0f",
                         s.subscriptions, s.credits, s.journalReplaySeconds, s.snapshotSeconds,
                         Double(s.snapshotBytes) / 1_048_576, s.snapshotRecoverySeconds, s.rssMiB, s.peakRSSMiB,
                         s.journalTailRecords, s.snapshotPlusJournalRecoverySeconds,
                         s.snapshotPlusArchivedJournalRecoverySeconds, s.getStatsP99Micros))
        }
    }
    if let book = report.book {
        print("")
        print("book: \(book.subscriptions) subscriptions, \(book.credits) credits, serving after \(fmt(book.startSeconds)) s, RSS \(fmt(book.rssMiB, 0)) MiB")
        print("  ListCredits                    pages   items/page   p50us   p90us   p99us  p99.9us")
        // The first row, if any, ran while the start-up snapshot was being written (not a target).
        for figure in [book.listCreditsDuringSnapshot].compactMap({ $0 }) + book.listCredits {
            print(String(format: "  %-28@ %7d %12.1f %7.0f %7.0f %7.0f %8.0f", figure.name as NSString, figure.calls,
                         figure.meanItems, figure.p50Micros, figure.p90Micros, figure.p99Micros, figure.p999Micros))
        }
        print("  export credits: \(book.exportRows) rows in \(fmt(book.exportSeconds)) s = \(Int(book.exportRowsPerSecond)) rows/s; "
              + "creditctl peak RSS \(fmt(book.exportClientPeakRSSMiB, 0)) MiB, daemon RSS +\(fmt(book.exportDaemonRSSGrowthMiB, 0)) MiB")
        print("  long poll: answered \(fmt(book.longPollAfterWriteAckMedianMicros, 0)) us (median; p90 \(fmt(book.longPollAfterWriteAckP90Micros, 0)) us) "
              + "after the write's own answer; from send: poll \(fmt(book.longPollFromSendMedianMicros, 0)) us, write \(fmt(book.writeAckFromSendMedianMicros, 0)) us; "
              + "\(book.longPollSamples) samples beside \(Int(book.longPollBackgroundWritesPerSecond)) writes/s")
        print("  WatchEvents: writes/s \(Int(book.writesPerSecondWithoutWatcher)) without, \(Int(book.writesPerSecondWithWatcher)) with a watcher; "
              + "events/s \(Int(book.eventsCommittedPerSecond)) committed, \(Int(book.eventsDeliveredPerSecond)) delivered; lag at end "
              + "\(book.watcherLagAtEnd), caught up \(fmt(book.watcherCatchUpSeconds, 3)) s later" + (book.watcherEnded.map { "; ended: \($0)" } ?? ""))
        print("  import: \(book.importLines) subscriptions in \(fmt(book.importSeconds)) s = \(Int(book.importsPerSecond))/s; "
              + "fdatasync group commit at 64 in flight: \(Int(book.importGroupCommitPerSecond)) records/s")
    }
    if !report.targets.isEmpty {
        print("")
        print("targets:")
        for target in report.targets {
            print("  [\(target.holds ? "holds" : "MISSED")] \(target.target): \(target.measured) (ratio \(fmt(target.ratio)))"
                  + (target.extrapolated ? " [extrapolated]" : ""))
        }
    }
}

// MARK: main

signal(SIGPIPE, SIG_IGN)
do {
    let options = try Options(arguments: Array(CommandLine.arguments.dropFirst()))
    let creditd = options.creditd ?? defaultCreditd()
    guard FileManager.default.isExecutableFile(atPath: creditd) else {
        throw BenchError("no creditd at \(creditd): run `swift build -c release --product creditd` or pass --creditd")
    }
    let work = try makeTemporaryDirectory(prefix: "creditbench")
    defer { try? FileManager.default.removeItem(atPath: work) }
    let machine = MachineInfo(stateDirectory: work)
    var phases: [PhaseResult] = []
    if options.runRPC {
        phases = try await runRPCSuite(options: options, creditd: creditd, work: work)
    }
    var scale: [ScaleResult] = []
    if options.runScaleSuite {
        for size in options.scaleSizes {
            log("scale: \(size) subscriptions")
            scale.append(try await runScale(subscriptions: size, tailRecords: size, creditd: creditd, log: log))
        }
    }
    var abuseTargets: [TargetResult] = []
    if options.runAbuse {
        let abuse = try await runAbuseSuite(options: options, creditd: creditd, work: work)
        phases += abuse.phases
        abuseTargets = abuse.targets
    }
    var book: BookResult?
    var bookTargets: [TargetResult] = []
    if options.runBook {
        (book, bookTargets) = try await runBookSuite(options: options, creditd: creditd, work: work)
    }
    var postgresTargets: [TargetResult] = []
    if options.runPostgres {
        guard let connectionInfo = options.postgres else { throw BenchError("--only postgres needs --postgres CONNINFO") }
        let postgres = try await runPostgresSuite(options: options, creditd: creditd, work: work, connectionInfo: connectionInfo)
        phases += postgres.phases
        postgresTargets = postgres.targets
    }
    let report = Report(machine: machine, phases: phases, scale: scale, book: book,
                        targets: evaluateTargets(phases: phases, scale: scale) + abuseTargets + bookTargets + postgresTargets)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let json = try encoder.encode(report)
    if let path = options.jsonFile {
        try json.write(to: URL(fileURLWithPath: path))
    }
    if options.json {
        print(String(decoding: json, as: UTF8.self))
    } else {
        printTable(report)
    }
} catch {
    log("creditbench: error: \(error)")
    exit(1)
}
