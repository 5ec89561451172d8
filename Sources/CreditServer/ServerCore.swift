import CreditProto
import CreditWire
import Logging
import NIOCore
import Synchronization

/// State shared by the listener and every connection of one server.
final class ServerCore: Sendable {
    struct Counters {
        var openConnections = 0
        var inFlightCalls = 0
        var acceptedConnections: UInt64 = 0
        var rejectedConnections: UInt64 = 0
        var finishedCalls: UInt64 = 0
        var draining = false
        var connections: [ObjectIdentifier: any Channel] = [:]
    }

    /// Calls that arrived before the server was ready, each to be resumed on its event loop.
    private struct Readiness {
        var ready = false
        var parked: [(any EventLoop, @Sendable () -> Void)] = []
    }

    let services: [String: RPCService]
    let health: HealthStatus
    let observer: any ServerObserver
    let logger: Logger
    private let settingsBox: Mutex<ServerSettings>
    private let counters = Mutex(Counters())
    private let readiness = Mutex(Readiness())
    /// Work that must await (async handlers, streams), run as child tasks of `runJobs`.
    private let jobs: AsyncStream<@Sendable () async -> Void>
    private let jobSink: AsyncStream<@Sendable () async -> Void>.Continuation

    init(services: [String: RPCService], settings: ServerSettings, health: HealthStatus, observer: any ServerObserver, logger: Logger) {
        self.services = services
        self.health = health
        self.observer = observer
        self.logger = logger
        settingsBox = Mutex(settings)
        (jobs, jobSink) = AsyncStream.makeStream()
    }

    // MARK: readiness

    var isReady: Bool { readiness.withLock { $0.ready } }

    /// Runs `resume` on `eventLoop` once the server is ready; returns false when it is parked,
    /// true when the server is ready already (then `resume` is not called: go on directly).
    func parkUntilReady(on eventLoop: any EventLoop, _ resume: @escaping @Sendable () -> Void) -> Bool {
        readiness.withLock { state in
            if state.ready { return true }
            state.parked.append((eventLoop, resume))
            return false
        }
    }

    /// Opens the server for calls that need the state, and resumes the parked ones.
    func setReady() {
        let parked = readiness.withLock { state in
            state.ready = true
            defer { state.parked = [] }
            return state.parked
        }
        for (eventLoop, resume) in parked { eventLoop.execute(resume) }
    }

    // MARK: jobs

    /// Queues work that awaits; it runs as a child task of `runJobs`.
    func submit(_ job: @escaping @Sendable () async -> Void) {
        jobSink.yield(job)
    }

    /// Runs submitted jobs as child tasks until `finishJobs` and every job has ended.
    func runJobs() async {
        await withDiscardingTaskGroup { group in
            for await job in jobs {
                group.addTask { await job() }
            }
        }
    }

    func finishJobs() {
        jobSink.finish()
    }

    var settings: ServerSettings {
        get { settingsBox.withLock { $0 } }
        set { settingsBox.withLock { $0 = newValue } }
    }

    var isDraining: Bool { counters.withLock { $0.draining } }

    var stats: ServerStats {
        counters.withLock {
            ServerStats(
                openConnections: $0.openConnections,
                inFlightCalls: $0.inFlightCalls,
                acceptedConnections: $0.acceptedConnections,
                rejectedConnections: $0.rejectedConnections,
                finishedCalls: $0.finishedCalls
            )
        }
    }

    /// Admits a new connection unless the server drains or is at its connection limit.
    /// Returns the open count after admission, or nil when rejected.
    func admit(_ channel: any Channel, limit: Int) -> Int? {
        counters.withLock { counters -> Int? in
            guard !counters.draining, counters.openConnections < limit else {
                counters.rejectedConnections += 1
                return nil
            }
            counters.openConnections += 1
            counters.acceptedConnections += 1
            counters.connections[ObjectIdentifier(channel)] = channel
            return counters.openConnections
        }
    }

    func release(_ channel: any Channel) -> Int {
        counters.withLock { counters in
            counters.openConnections -= 1
            counters.connections.removeValue(forKey: ObjectIdentifier(channel))
            return counters.openConnections
        }
    }

    /// Marks the server as draining and returns the connections open at that moment.
    func beginDraining() -> [any Channel] {
        counters.withLock { counters in
            counters.draining = true
            return Array(counters.connections.values)
        }
    }

    func callStarted() {
        let count = counters.withLock { counters in
            counters.inFlightCalls += 1
            return counters.inFlightCalls
        }
        observer.inFlightChanged(inFlightCalls: count)
    }

    func callEnded() {
        let count = counters.withLock { counters in
            counters.inFlightCalls -= 1
            counters.finishedCalls += 1
            return counters.inFlightCalls
        }
        observer.inFlightChanged(inFlightCalls: count)
    }
}

/// Asks a connection to finish its open streams, refuse new calls and close.
struct DrainConnectionEvent: Sendable {}

extension TimeAmount {
    init(clamping duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let nanos = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if nanos.overflow {
            self = .nanoseconds(seconds < 0 ? .min : .max)
        } else {
            let total = nanos.partialValue.addingReportingOverflow(attoseconds / 1_000_000_000)
            self = .nanoseconds(total.overflow ? .max : total.partialValue)
        }
    }
}
