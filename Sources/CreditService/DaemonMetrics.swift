import CreditDomain
import CreditMonitoring
import CreditProto
import CreditServer
import CreditStore
import CreditWire
import Synchronization
import SystemdSupport

/// creditd's metrics, rendered in the Prometheus text format 0.0.4.
///
/// Call metrics are recorded as calls finish (the server observer); gauges
/// over the ledger and the journal are refreshed when the text is rendered,
/// so an idle daemon does no metrics work at all.
public final class DaemonMetrics: Sendable {
    public let registry = MetricsRegistry(requiredNamePrefix: "creditd_")
    let requests: CounterFamily
    let duration: HistogramFamily
    let connections: GaugeFamily
    let connectionsRejected: CounterFamily
    let inFlight: GaugeFamily
    let protocolErrors: CounterFamily
    let serving: GaugeFamily
    let subscriptions: GaugeFamily
    let credits: GaugeFamily
    let creditAmounts: GaugeFamily
    let creditsOverdue: GaugeFamily
    let refundsOverdue: GaugeFamily
    let refundOverdueAmount: GaugeFamily
    let eventsLastSeq: GaugeFamily
    let eventStreams: GaugeFamily
    let eventLongPolls: GaugeFamily
    let journalBytes: GaugeFamily
    let journalSegments: GaugeFamily
    let journalRecords: GaugeFamily
    let fsyncs: CounterFamily
    let snapshotFailures: CounterFamily
    let recoveryEvents: GaugeFamily
    let snapshotAge: GaugeFamily
    let snapshotDuration: HistogramFamily
    let persistenceFault: GaugeFamily
    let replicationRole: GaugeFamily
    let replicationEpoch: GaugeFamily
    let replicationLag: GaugeFamily
    let replicationLagP99: GaugeFamily
    // Limits (issue 13), refreshed from the server's counters at render time.
    let connectionsByUID: GaugeFamily
    let connectionsRefused: CounterFamily
    let connectionsEvicted: CounterFamily
    let connectionsThrottled: CounterFamily
    let connectionsThrottledNow: GaugeFamily
    let bufferedResponseBytes: GaugeFamily
    let partialFrameBytes: GaugeFamily
    let largeFramesRefused: CounterFamily
    let frameTimeouts: CounterFamily
    let logLinesSuppressed: CounterFamily
    let logLinesDropped: CounterFamily
    private let server = Mutex<TTRPCServer?>(nil)
    private let seenUIDs = Mutex<Set<UInt32>>([])
    /// Method label values: only methods the daemon serves, so a client's
    /// made-up names never become label values.
    let knownMethods: Set<String>

    public init(knownMethods: Set<String>) {
        self.knownMethods = knownMethods
        let r = registry
        // Registration of fixed, valid names cannot fail; a failure is a programming error.
        func must<T>(_ make: () throws -> T) -> T {
            do { return try make() } catch { fatalError("metric registration: \(error)") }
        }
        must { try r.gauge(name: "creditd_build_info", help: "Build information.", labelNames: ["version"]) }
            .labels(CreditApplication.version).set(1)
        requests = must { try r.counter(name: "creditd_rpc_requests_total", help: "Calls answered, by method and status code.", labelNames: ["method", "code"]) }
        duration = must { try r.histogram(name: "creditd_rpc_duration_seconds", help: "Call latency by method.", labelNames: ["method"],
                                          buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5]) }
        connections = must { try r.gauge(name: "creditd_connections", help: "Open client connections.") }
        connectionsRejected = must { try r.counter(name: "creditd_connections_rejected_total", help: "Connections refused for a connection limit, for every reason (by reason: creditd_connections_refused_total).") }
        inFlight = must { try r.gauge(name: "creditd_in_flight_calls", help: "Calls being handled.") }
        protocolErrors = must { try r.counter(name: "creditd_protocol_errors_total", help: "Malformed or refused frames, by status code.", labelNames: ["code"]) }
        serving = must { try r.gauge(name: "creditd_serving", help: "1 while health is SERVING.") }
        subscriptions = must { try r.gauge(name: "creditd_subscriptions", help: "Subscriptions by status.", labelNames: ["status"]) }
        credits = must { try r.gauge(name: "creditd_credits", help: "Credits by state.", labelNames: ["state"]) }
        creditAmounts = must { try r.gauge(name: "creditd_credit_amount_minor", help: "Amount held in each credit state, in minor units of each currency.", labelNames: ["state", "currency"]) }
        creditsOverdue = must { try r.gauge(name: "creditd_credits_overdue", help: "Credits past expected_by and still pending.") }
        refundsOverdue = must { try r.gauge(name: "creditd_refunds_overdue", help: "Refunds past refund_expected_by and not refunded.") }
        refundOverdueAmount = must { try r.gauge(name: "creditd_refund_overdue_amount_minor", help: "Remaining amount of credits whose refund is overdue, in minor units of each currency.", labelNames: ["currency"]) }
        eventsLastSeq = must { try r.gauge(name: "creditd_events_last_seq", help: "Sequence number of the newest committed event of the feed.") }
        eventStreams = must { try r.gauge(name: "creditd_event_streams", help: "WatchEvents streams being served.") }
        eventLongPolls = must { try r.gauge(name: "creditd_event_long_polls", help: "ListEvents calls waiting for an event.") }
        journalBytes = must { try r.gauge(name: "creditd_journal_bytes", help: "Bytes in journal segments.") }
        journalSegments = must { try r.gauge(name: "creditd_journal_segments", help: "Journal segment files.") }
        journalRecords = must { try r.gauge(name: "creditd_journal_last_sequence", help: "Sequence number of the newest journal record.") }
        fsyncs = must { try r.counter(name: "creditd_journal_fsyncs_total", help: "fdatasync calls of the journal since start.") }
        snapshotFailures = must { try r.counter(name: "creditd_snapshot_failures_total", help: "Snapshots that could not be written since start (the log says why).") }
        recoveryEvents = must { try r.gauge(name: "creditd_recovery_events", help: "What recovery found at the last start: torn tails truncated, snapshots skipped, repairs, warnings.", labelNames: ["kind"]) }
        snapshotAge = must { try r.gauge(name: "creditd_snapshot_age_seconds", help: "Seconds since the last snapshot (NaN before the first).") }
        snapshotDuration = must { try r.histogram(name: "creditd_snapshot_duration_seconds", help: "Time to write a snapshot.",
                                                  buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30]) }
        persistenceFault = must { try r.gauge(name: "creditd_persistence_fault", help: "1 once the journal refused a write; writes are refused until restart.") }
        replicationRole = must { try r.gauge(name: "creditd_replication_role", help: "1 for this process's role: standalone (file store), active or standby (shared store).", labelNames: ["role"]) }
        replicationEpoch = must { try r.gauge(name: "creditd_replication_epoch", help: "The writer lease epoch this process writes under (active) or last saw (standby).") }
        replicationLag = must { try r.gauge(name: "creditd_replication_lag_seconds", help: "How stale a standby's replayed state may be: the newest fetched record's delay, 0 once a fetch finds nothing new, or the time since its last complete fetch while it cannot read (0 when active).") }
        replicationLagP99 = must { try r.gauge(name: "creditd_replication_lag_p99_seconds", help: "Upper bucket bound of the 99th percentile lag of every record replayed as standby since start (NaN before the first).") }
        connectionsByUID = must { try r.gauge(name: "creditd_connections_by_uid", help: "Open client connections by peer uid.", labelNames: ["uid"]) }
        connectionsRefused = must { try r.counter(name: "creditd_connections_refused_total", help: "Connections refused by a limit, by reason (per_uid, full, draining).", labelNames: ["reason"]) }
        // Every reason from the start, at 0: an alert on rate() sees a series before the first
        // refusal, not a gap that a rule reads as "no data".
        for reason in ServerStats.refusalReasons { _ = connectionsRefused.labels(reason) }
        connectionsEvicted = must { try r.counter(name: "creditd_connections_evicted_total", help: "Idle connections closed to admit a new one at a limit.") }
        connectionsThrottled = must { try r.counter(name: "creditd_connections_throttled_total", help: "Times a connection stopped being read (unwritten responses, queued writes or its turn used up).") }
        connectionsThrottledNow = must { try r.gauge(name: "creditd_throttled_connections", help: "Connections not being read right now.") }
        bufferedResponseBytes = must { try r.gauge(name: "creditd_buffered_response_bytes", help: "Response bytes queued for connections and not yet written to their sockets.") }
        partialFrameBytes = must { try r.gauge(name: "creditd_partial_frame_bytes", help: "Memory reserved for partially received large frames.") }
        largeFramesRefused = must { try r.counter(name: "creditd_large_frames_refused_total", help: "Large frames refused RESOURCE_EXHAUSTED because the partial-frame memory was in use.") }
        frameTimeouts = must { try r.counter(name: "creditd_frame_timeouts_total", help: "Connections closed because a frame did not arrive within the frame read timeout.") }
        logLinesSuppressed = must { try r.counter(name: "creditd_log_lines_suppressed_total", help: "Repeated log lines not written by the per-uid rate limit.") }
        logLinesDropped = must { try r.counter(name: "creditd_log_lines_dropped_total", help: "Log lines dropped because the log writer's queue was full.") }
    }

    /// The server observer that records calls and connections.
    public var observer: any ServerObserver { Observer(metrics: self) }

    struct Observer: ServerObserver {
        let metrics: DaemonMetrics

        func connectionOpened(peer: PeerCredentials, openConnections: Int) {
            metrics.connections.labels().set(openConnections)
        }

        func connectionClosed(peer: PeerCredentials, openConnections: Int) {
            metrics.connections.labels().set(openConnections)
        }

        func connectionRejected(openConnections: Int) {
            metrics.connectionsRejected.labels().increment()
        }

        func callRecorder(for method: MethodDescriptor) -> any CallRecorder {
            let full = method.fullName
            return MethodSeries(metrics, label: metrics.knownMethods.contains(full) ? full : "unknown")
        }

        func protocolError(code: StatusCode) {
            metrics.protocolErrors.labels(code.name).increment()
        }
    }

    /// One method's series: its duration histogram, and its request counters by status code,
    /// each created on the first call that ends with that code (a code never seen is not shown).
    final class MethodSeries: CallRecorder {
        private let requests: CounterFamily
        private let label: String
        private let duration: Histogram
        private let byCode: Mutex<[Counter?]>

        init(_ metrics: DaemonMetrics, label: String) {
            requests = metrics.requests
            self.label = label
            duration = metrics.duration.labels(label)
            byCode = Mutex(Array(repeating: nil, count: StatusCode.allCases.count))
        }

        func callFinished(code: StatusCode, duration: Duration) {
            counter(code).increment()
            self.duration.observe(duration)
        }

        private func counter(_ code: StatusCode) -> Counter {
            byCode.withLock { counters in
                let index = Int(code.rawValue)
                if let counter = counters[index] { return counter }
                let counter = requests.labels(label, code.name)
                counters[index] = counter
                return counter
            }
        }
    }

    /// The server whose limit counters `render` reports.
    public func attach(server: TTRPCServer) {
        self.server.withLock { $0 = server }
    }

    func recordLimits() {
        logLinesDropped.labels().advance(to: Double(LogLineWriter.queuedStandardError.droppedLines))
        guard let server = server.withLock({ $0 }) else { return }
        let stats = server.detailedStats
        let gone = seenUIDs.withLock { seen -> Set<UInt32> in
            let gone = seen.subtracting(stats.connectionsByUID.keys)
            seen = Set(stats.connectionsByUID.keys)
            return gone
        }
        for uid in gone { connectionsByUID.labels("\(uid)").set(0) }
        for (uid, count) in stats.connectionsByUID { connectionsByUID.labels("\(uid)").set(count) }
        for (reason, count) in stats.refusedByReason { connectionsRefused.labels(reason).advance(to: Double(count)) }
        inFlight.labels().set(stats.inFlightCalls)
        connectionsEvicted.labels().advance(to: Double(stats.evictedIdleConnections))
        connectionsThrottled.labels().advance(to: Double(stats.throttledTotal))
        connectionsThrottledNow.labels().set(stats.throttledNow)
        bufferedResponseBytes.labels().set(stats.bufferedResponseBytes)
        partialFrameBytes.labels().set(stats.partialFrameBytes)
        largeFramesRefused.labels().advance(to: Double(stats.refusedLargeFrames))
        frameTimeouts.labels().advance(to: Double(stats.frameTimeouts))
        logLinesSuppressed.labels().advance(to: Double(stats.suppressedLogLines))
    }

    public func recordSnapshot(duration: Duration) {
        snapshotDuration.labels().observe(duration)
    }

    /// Refreshes the state gauges and renders the exposition.
    public func render(application: CreditApplication?, serving isServing: Bool) async -> String {
        serving.labels().set(isServing ? 1 : 0)
        recordLimits()
        if let application {
            let summary = LedgerSummary(application.writer.committed.ledger, asOf: application.writer.clock.now())
            for status in SubscriptionStatus.allCases {
                subscriptions.labels(Self.statusName(status)).set(summary.subscriptionsByStatus[status] ?? 0)
            }
            for state in CreditState.allCases {
                credits.labels(state.name).set(summary.creditsByState[state] ?? 0)
            }
            for (key, amount) in summary.amountByStateAndCurrency {
                creditAmounts.labels(key.state.name, key.currency.code).set(Double(amount))
            }
            creditsOverdue.labels().set(summary.creditsOverdue)
            refundsOverdue.labels().set(summary.refundsOverdue)
            for (currency, amount) in summary.refundOverdueAmountByCurrency {
                refundOverdueAmount.labels(currency.code).set(Double(amount))
            }
            eventsLastSeq.labels().set(Double(summary.lastEventSeq))
            eventStreams.labels().set(application.eventStreams.load(ordering: .relaxed))
            eventLongPolls.labels().set(application.eventLongPolls.load(ordering: .relaxed))
            let store = application.store.stats
            journalBytes.labels().set(Double(store.journalBytes))
            journalSegments.labels().set(store.segmentCount)
            journalRecords.labels().set(Double(store.lastSequence))
            fsyncs.labels().advance(to: store.fsyncCount)
            snapshotFailures.labels().advance(to: Int(application.snapshotFailures.withLock { $0.count }))
            recoveryEvents.labels("torn_tail_truncated").set(store.tornTailTruncations)
            recoveryEvents.labels("snapshot_skipped").set(store.skippedSnapshots)
            recoveryEvents.labels("repair").set(store.repairs)
            recoveryEvents.labels("warning").set(store.recoveryWarnings)
            if let millis = store.lastSnapshotUnixMillis {
                let now = DaemonClock.wallClock().nanosecondsSinceEpoch / 1_000_000
                snapshotAge.labels().set(Double(max(0, now - millis)) / 1000)
            } else {
                snapshotAge.labels().set(Double.nan)
            }
            persistenceFault.labels().set(application.writer.persistenceFault == nil ? 0 : 1)
            let replication = application.replication
            for role in [ReplicationRole.standalone, .active, .standby] {
                replicationRole.labels(role.rawValue).set(role == replication.role ? 1 : 0)
            }
            replicationEpoch.labels().set(Double(replication.epoch))
            replicationLag.labels().set(replication.lagSeconds)
            replicationLagP99.labels().set(replication.lag.upperBound(quantile: 0.99) ?? .nan)
        }
        return registry.render()
    }

    static func statusName(_ status: SubscriptionStatus) -> String {
        switch status {
        case .active: "active"
        case .cancelPending: "cancel_pending"
        case .cancelled: "cancelled"
        case .ended: "ended"
        }
    }
}
