import CreditDomain
import CreditProto
import CreditServer
import CreditStore
import CreditWire
import Foundation

/// What the Admin service needs from the daemon around it.
public struct AdminHooks: Sendable {
    /// Open connections and calls in flight.
    public var serverStats: @Sendable () -> ServerStats
    /// Re-reads the configuration; returns a one-line summary.
    public var reload: @Sendable () async throws -> String
    /// Whether health says SERVING.
    public var serving: @Sendable () -> Bool
    /// The Prometheus text exposition.
    public var metrics: @Sendable () async -> String

    public init(serverStats: @escaping @Sendable () -> ServerStats,
                reload: @escaping @Sendable () async throws -> String,
                serving: @escaping @Sendable () -> Bool,
                metrics: @escaping @Sendable () async -> String) {
        self.serverStats = serverStats
        self.reload = reload
        self.serving = serving
        self.metrics = metrics
    }
}

/// `creditd.v1.Admin`: stats, snapshots, the test clock, reload, metrics.
enum AdminService {
    static func make(gate: ApplicationGate, hooks: AdminHooks) -> RPCService {
        let methods = MethodTable.Admin.self
        return RPCService(name: methods.serviceName, methods: [
            .immediate(methods.getStats) { _, _ in
                stats(try gate.require(), hooks)
            },
            .async(methods.takeSnapshot) { _, _ in
                let application = try gate.require()
                let started = ContinuousClock.now
                let info: SnapshotInfo
                do {
                    info = try await application.takeRequestedSnapshot()
                } catch let failure as WriteFailure {
                    throw failure.rpcError
                } catch {
                    throw RPCError.unavailable("snapshot failed: \(error)")
                }
                var response = Creditd_V1_TakeSnapshotResponse()
                response.sequence = info.sequence
                // A file in the state directory; on a shared store, where the snapshot is rows
                // in the database, the store's own name for it ("snapshot N in postgres ...").
                response.path = application.store is DurableStore
                    ? application.stateDirectory + "/" + info.fileName : info.fileName
                response.bytes = UInt64(info.bytes)
                response.durationSeconds = seconds(ContinuousClock.now - started)
                return response
            },
            .immediate(methods.getClock) { _, _ in
                let clock = try gate.require().writer.clock
                let now = clock.now()
                var response = Creditd_V1_GetClockResponse()
                response.nowUnixNanos = now.nanosecondsSinceEpoch
                response.manual = clock.mode == .manual
                response.now = now.rfc3339
                return response
            },
            .async(methods.advanceClock) { request, _ in
                let writer = try gate.require().writer
                guard writer.clock.mode == .manual else { throw WriteFailure.notManualClock.rpcError }
                let current = writer.clock.now()
                let target: Instant
                switch (request.byNanos, request.toUnixNanos) {
                case (let by, 0) where by > 0:
                    let (sum, overflow) = current.nanosecondsSinceEpoch.addingReportingOverflow(by)
                    guard !overflow else { throw invalid("by_nanos moves the clock out of range") }
                    target = Instant(nanosecondsSinceEpoch: sum)
                case (0, let to) where to != 0:
                    target = Instant(nanosecondsSinceEpoch: to)
                default:
                    throw invalid("set exactly one of by_nanos (> 0) and to_unix_nanos")
                }
                let transitions: Int
                do throws(WriteFailure) {
                    transitions = try await writer.advanceClock(to: target)
                } catch {
                    throw error.rpcError
                }
                var response = Creditd_V1_AdvanceClockResponse()
                response.nowUnixNanos = target.nanosecondsSinceEpoch
                response.now = target.rfc3339
                response.transitions = UInt32(clamping: transitions)
                return response
            },
            .async(methods.reload) { _, _ in
                var response = Creditd_V1_ReloadResponse()
                do {
                    response.message = try await hooks.reload()
                } catch {
                    throw RPCError.invalidArgument("reload failed, previous configuration kept: \(error)")
                }
                return response
            },
            .async(methods.getMetrics) { _, _ in
                var response = Creditd_V1_GetMetricsResponse()
                response.prometheusText = await hooks.metrics()
                return response
            },
        ])
    }

    static func stats(_ application: CreditApplication, _ hooks: AdminHooks) -> Creditd_V1_GetStatsResponse {
        let writer = application.writer
        let now = writer.clock.now()
        let summary = LedgerSummary(writer.committed.ledger, asOf: now)
        let store = application.store.stats
        let server = hooks.serverStats()
        var response = Creditd_V1_GetStatsResponse()
        response.version = CreditApplication.version
        response.serving = hooks.serving()
        response.manualClock = writer.clock.mode == .manual
        response.nowUnixNanos = now.nanosecondsSinceEpoch
        response.subscriptions = UInt64(summary.subscriptions)
        for state in CreditState.allCases {
            response.creditsByState[state.name] = UInt64(summary.creditsByState[state] ?? 0)
        }
        response.creditsOverdue = UInt64(summary.creditsOverdue)
        response.refundsOverdue = UInt64(summary.refundsOverdue)
        response.connections = UInt32(clamping: server.openConnections)
        response.inFlightCalls = UInt32(clamping: server.inFlightCalls)
        response.uptimeSeconds = seconds(ContinuousClock.now - application.startedAt)
        var persistence = Creditd_V1_PersistenceStats()
        persistence.journalBytes = UInt64(clamping: store.journalBytes)
        persistence.journalSegments = UInt32(clamping: store.segmentCount)
        persistence.lastSequence = store.lastSequence
        persistence.lastSnapshotSequence = store.lastSnapshotSequence ?? 0
        if let millis = store.lastSnapshotUnixMillis {
            persistence.lastSnapshotAtUnixNanos = millis * 1_000_000
            let wallMillis = DaemonClock.wallClock().nanosecondsSinceEpoch / 1_000_000
            persistence.lastSnapshotAgeSeconds = Double(max(0, wallMillis - millis)) / 1000
        }
        persistence.tornTailTruncations = UInt64(store.tornTailTruncations)
        persistence.skippedSnapshots = UInt64(store.skippedSnapshots)
        persistence.repairs = UInt64(store.repairs)
        persistence.recoveryWarnings = UInt64(store.recoveryWarnings)
        (persistence.snapshotFailures, persistence.lastSnapshotError) = application.snapshotFailures.withLock { ($0.count, $0.lastError) }
        persistence.fault = writer.persistenceFault ?? store.fault?.description ?? ""
        persistence.fsyncs = UInt64(store.fsyncCount)
        persistence.recordsWritten = UInt64(store.recordsWritten)
        response.persistence = persistence
        let status = application.replication
        var replication = Creditd_V1_ReplicationStats()
        replication.role = status.role.rawValue
        replication.epoch = status.epoch
        replication.node = status.node
        replication.activeHost = status.activeHolder
        replication.lagSeconds = status.lagSeconds
        replication.lagRecords = status.lagRecords
        response.replication = replication
        return response
    }

    /// A malformed admin request, with the same stable reason as domain requests.
    static func invalid(_ text: String) -> RPCError {
        RPCError.domain(.invalidArgument, reason: DomainError.Reason.invalidRequest.rawValue, text)
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
