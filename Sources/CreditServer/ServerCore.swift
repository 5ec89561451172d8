import CreditProto
import CreditWire
import Logging
import NIOCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// State shared by the listener and every connection of one server.
final class ServerCore: Sendable {
    struct Counters {
        var openConnections = 0
        var acceptedConnections: UInt64 = 0
        var rejectedConnections: UInt64 = 0
        var draining = false
        var connections: [ObjectIdentifier: Entry] = [:]
        var perUID: [UInt32: Int] = [:]
        var nextSequence: UInt64 = 0
        var refusedByReason: [String: UInt64] = [:]
        var evicted: UInt64 = 0
        var throttledTotal: UInt64 = 0
        var throttledNow = 0
        var refusedLargeFrames: UInt64 = 0
        var frameTimeouts: UInt64 = 0
        /// Refused connections waiting to answer their first request.
        var refusedOpen = 0
    }

    /// One admitted connection.
    struct Entry {
        var channel: any Channel
        var uid: UInt32
        /// Admission order: the oldest idle connection is closed first.
        var sequence: UInt64
        /// No call open and nothing queued.
        var idle = true
        /// When the connection last did something (nil: never sent a byte since admission).
        var lastActive: ContinuousClock.Instant?

        /// May be closed to make room: silent since admission, or idle and quiet for a second
        /// (a client between two calls, or sending a large frame, is not idle).
        func isEvictable(now: ContinuousClock.Instant) -> Bool {
            guard idle else { return false }
            guard let lastActive else { return true }
            return now - lastActive >= .seconds(1)
        }
    }

    /// The outcome of admission.
    enum Admission: Equatable {
        case admitted(openConnections: Int)
        /// Refused: the reason label and the message sent to the client.
        case refused(reason: String, message: String)
    }

    /// Calls that arrived before the server was ready, each to be resumed on its event loop.
    private struct Readiness {
        var ready = false
        /// Set when the state could not be recovered: parked and later calls end with it.
        var refusal: RPCError?
        var parked: [ParkedCall] = []
    }

    /// A parked call: its event loop, and what resumes it (nil: go on; else end with that).
    private typealias ParkedCall = (any EventLoop, @Sendable (RPCError?) -> Void)

    /// What `parkUntilReady` did with a call.
    enum Parking {
        /// The server is ready: go on directly.
        case ready
        /// Held; its resume runs once the server is ready or refuses calls.
        case parked
        /// The server will never be ready: end the call with this.
        case refused(RPCError)
    }

    let services: [String: RPCService]
    /// Shown each read burst's requests before dispatch (`RequestLookAhead`); nil: none.
    let lookAhead: (any RequestLookAhead)?
    let health: HealthStatus
    let observer: any ServerObserver
    let logger: Logger
    private let settingsBox: Mutex<ServerSettings>
    private let counters = Mutex(Counters())
    private let readiness = Mutex(Readiness())
    /// Calls started and not yet written, and calls ended: atomics rather than fields of
    /// `counters`, whose lock both event loops would otherwise take for every call.
    private let inFlightCalls = Atomic<Int>(0)
    private let finishedCalls = Atomic<UInt64>(0)
    /// Bytes written to connections and not yet on their sockets.
    private let bufferedBytes = Atomic<Int>(0)
    /// Bytes reserved for partial large frames (`reservePartialFrame`).
    private let partialBytes = Atomic<Int>(0)
    let logLimiter = LogRateLimiter()
    /// Work that must await (async handlers, streams), run as child tasks of `runJobs`.
    private let jobs: AsyncStream<@Sendable () async -> Void>
    private let jobSink: AsyncStream<@Sendable () async -> Void>.Continuation

    init(services: [String: RPCService], settings: ServerSettings, health: HealthStatus, observer: any ServerObserver,
         logger: Logger, lookAhead: (any RequestLookAhead)? = nil) {
        self.services = services
        self.lookAhead = lookAhead
        self.health = health
        self.observer = observer
        self.logger = logger
        settingsBox = Mutex(settings)
        (jobs, jobSink) = AsyncStream.makeStream()
    }

    // MARK: readiness

    var isReady: Bool { readiness.withLock { $0.ready } }

    /// Runs `resume` on `eventLoop` once the server is ready (with nil) or refuses calls (with
    /// the refusal), unless it is either already (then `resume` is not called; the answer says
    /// which).
    func parkUntilReady(on eventLoop: any EventLoop, _ resume: @escaping @Sendable (RPCError?) -> Void) -> Parking {
        readiness.withLock { state in
            if state.ready { return .ready }
            if let refusal = state.refusal { return .refused(refusal) }
            state.parked.append((eventLoop, resume))
            return .parked
        }
    }

    /// Opens the server for calls that need the state, and resumes the parked ones (not after
    /// `refuseUnready`: a refusal is final).
    func setReady() {
        let parked = readiness.withLock { state in
            guard state.refusal == nil else { return [ParkedCall]() }
            state.ready = true
            defer { state.parked = [] }
            return state.parked
        }
        for (eventLoop, resume) in parked { eventLoop.execute { resume(nil) } }
    }

    /// The state will never be ready (recovery failed): the parked calls, and any that arrive
    /// while the server shuts down, end with `refusal` at once rather than wait out their
    /// deadlines and hold the drain.
    func refuseUnready(_ refusal: RPCError) {
        let parked = readiness.withLock { state in
            guard !state.ready, state.refusal == nil else { return [ParkedCall]() }
            state.refusal = refusal
            defer { state.parked = [] }
            return state.parked
        }
        for (eventLoop, resume) in parked { eventLoop.execute { resume(refusal) } }
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
                inFlightCalls: inFlightCalls.load(ordering: .relaxed),
                acceptedConnections: $0.acceptedConnections,
                rejectedConnections: $0.rejectedConnections,
                finishedCalls: finishedCalls.load(ordering: .relaxed)
            )
        }
    }

    /// `stats` plus the limit counters (a copy of the per-uid table: for metrics, not per call).
    var detailedStats: ServerStats {
        var stats = counters.withLock { counters in
            var stats = ServerStats(
                openConnections: counters.openConnections,
                inFlightCalls: inFlightCalls.load(ordering: .relaxed),
                acceptedConnections: counters.acceptedConnections,
                rejectedConnections: counters.rejectedConnections,
                finishedCalls: finishedCalls.load(ordering: .relaxed)
            )
            stats.connectionsByUID = counters.perUID
            stats.refusedByReason = counters.refusedByReason
            stats.evictedIdleConnections = counters.evicted
            stats.throttledTotal = counters.throttledTotal
            stats.throttledNow = counters.throttledNow
            stats.refusedLargeFrames = counters.refusedLargeFrames
            stats.frameTimeouts = counters.frameTimeouts
            return stats
        }
        stats.bufferedResponseBytes = bufferedBytes.load(ordering: .relaxed)
        stats.partialFrameBytes = partialBytes.load(ordering: .relaxed)
        stats.suppressedLogLines = logLimiter.suppressedTotal
        return stats
    }

    /// Admits a new connection from `uid`, unless the server drains or a limit refuses it:
    /// at most `maxConnectionsPerUID` per uid, and `maxConnections` in all, of which the last
    /// `reservedConnections` only privileged peers take. At a limit, the oldest idle connection of
    /// the same uid (at the total limit: of the uid with the most connections) is closed to
    /// make room; only when none is idle is the new one refused.
    func admit(_ channel: any Channel, uid: UInt32, privileged: Bool, settings: ServerSettings) -> Admission {
        var victim: (any Channel)?
        let outcome = counters.withLock { counters -> Admission in
            func refuse(_ reason: String, _ message: String) -> Admission {
                counters.rejectedConnections += 1
                counters.refusedByReason[reason, default: 0] += 1
                return .refused(reason: reason, message: message)
            }
            guard !counters.draining else { return refuse("draining", "server is shutting down") }
            if counters.perUID[uid, default: 0] >= settings.maxConnectionsPerUID {
                guard let evicted = Self.evictIdle(&counters, from: uid) else {
                    return refuse("per_uid", "too many connections from uid \(uid) (limit \(settings.maxConnectionsPerUID) per uid)")
                }
                victim = evicted
            } else {
                let limit = settings.maxConnections - (privileged ? 0 : settings.reservedConnections)
                if counters.openConnections >= limit {
                    // The uid with the most connections gives up its oldest idle one.
                    let ranked = counters.perUID.sorted { $0.value > $1.value }.map(\.key)
                    var found: (any Channel)?
                    for candidate in ranked where found == nil {
                        found = Self.evictIdle(&counters, from: candidate)
                    }
                    guard let evicted = found else {
                        return refuse("full", privileged
                            ? "connection limit reached (\(settings.maxConnections))"
                            : "connection limit reached (\(limit) open; \(settings.reservedConnections) reserved for root, uid \(getuid()) and writers)")
                    }
                    victim = evicted
                }
            }
            counters.openConnections += 1
            counters.acceptedConnections += 1
            counters.perUID[uid, default: 0] += 1
            counters.nextSequence += 1
            counters.connections[ObjectIdentifier(channel)] = Entry(channel: channel, uid: uid, sequence: counters.nextSequence)
            return .admitted(openConnections: counters.openConnections)
        }
        if let victim {
            logger.debug("closing idle connection to admit a new one", metadata: ["uid": "\(uid)"])
            victim.close(promise: nil)
        }
        return outcome
    }

    /// Removes the oldest idle connection of `uid` from the counts and returns it to be closed.
    private static func evictIdle(_ counters: inout Counters, from uid: UInt32) -> (any Channel)? {
        var oldest: (key: ObjectIdentifier, sequence: UInt64)?
        let now = ContinuousClock.now
        for (key, entry) in counters.connections where entry.uid == uid && entry.isEvictable(now: now) {
            if oldest == nil || entry.sequence < oldest!.sequence { oldest = (key, entry.sequence) }
        }
        guard let oldest, let entry = counters.connections.removeValue(forKey: oldest.key) else { return nil }
        counters.openConnections -= 1
        counters.perUID[uid, default: 1] -= 1
        if counters.perUID[uid] == 0 { counters.perUID.removeValue(forKey: uid) }
        counters.evicted += 1
        return entry.channel
    }

    /// Releases the slot of a closed connection (once; an evicted one was released already).
    func release(_ channel: any Channel) -> Int {
        counters.withLock { counters in
            if let entry = counters.connections.removeValue(forKey: ObjectIdentifier(channel)) {
                counters.openConnections -= 1
                counters.perUID[entry.uid, default: 1] -= 1
                if counters.perUID[entry.uid] == 0 { counters.perUID.removeValue(forKey: entry.uid) }
            }
            return counters.openConnections
        }
    }

    /// Marks a connection idle (no call open, nothing queued) or busy; either is activity.
    func setIdle(_ channel: any Channel, _ idle: Bool) {
        let now = ContinuousClock.now
        counters.withLock { counters in
            // Read, change, store: changing the entry in place through the optional-chained
            // subscript cost three allocations per assignment (the accessor's frame holds a
            // whole `Entry`), six per call, and calls come with most requests.
            guard var entry = counters.connections[ObjectIdentifier(channel)] else { return }
            entry.idle = idle
            entry.lastActive = now
            counters.connections[ObjectIdentifier(channel)] = entry
        }
    }

    /// Records activity of a connection that has no call open (bytes of a frame arriving).
    func touch(_ channel: any Channel) {
        let now = ContinuousClock.now
        counters.withLock { counters in
            guard var entry = counters.connections[ObjectIdentifier(channel)] else { return }
            entry.lastActive = now
            counters.connections[ObjectIdentifier(channel)] = entry
        }
    }

    /// A refused connection waits for its first request to answer it; at most `limit` at once.
    func holdRefused(limit: Int) -> Bool {
        counters.withLock { counters in
            guard counters.refusedOpen < limit else { return false }
            counters.refusedOpen += 1
            return true
        }
    }

    func releaseRefused() {
        counters.withLock { $0.refusedOpen -= 1 }
    }

    // MARK: backpressure and frame memory

    func throttled(_ on: Bool) {
        counters.withLock { counters in
            if on {
                counters.throttledTotal += 1
                counters.throttledNow += 1
            } else {
                counters.throttledNow -= 1
            }
        }
        observer.connectionThrottled(on)
    }

    func addBufferedBytes(_ delta: Int) {
        bufferedBytes.add(delta, ordering: .relaxed)
    }

    /// Reserves `bytes` for a partial large frame; false (and counted) when the budget is spent.
    func reservePartialFrame(_ bytes: Int, limit: Int) -> Bool {
        var current = partialBytes.load(ordering: .relaxed)
        while true {
            guard current + bytes <= limit else {
                counters.withLock { $0.refusedLargeFrames += 1 }
                return false
            }
            let (exchanged, original) = partialBytes.compareExchange(expected: current, desired: current + bytes, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
    }

    func releasePartialFrame(_ bytes: Int) {
        partialBytes.subtract(bytes, ordering: .relaxed)
    }

    func frameTimedOut() {
        counters.withLock { $0.frameTimeouts += 1 }
    }

    /// Marks the server as draining and returns the connections open at that moment.
    /// The connections admitted and not yet closed.
    func openConnections() -> [any Channel] {
        counters.withLock { $0.connections.values.map(\.channel) }
    }

    func beginDraining() -> [any Channel] {
        counters.withLock { counters in
            counters.draining = true
            return counters.connections.values.map(\.channel)
        }
    }

    // The in-flight gauge is read from these counters when metrics are scraped, not pushed
    // to the observer at every start and end (two labelled-series lookups per call).
    func callStarted() {
        inFlightCalls.add(1, ordering: .relaxed)
    }

    func callsEnded(_ count: Int) {
        inFlightCalls.subtract(count, ordering: .relaxed)
        finishedCalls.add(UInt64(count), ordering: .relaxed)
    }
}

/// Rate-limits repeated log lines per key (an event and a uid): one line per key per
/// `interval`; the next line written for that key carries the count suppressed meanwhile.
final class LogRateLimiter: Sendable {
    private struct Slot {
        var last: ContinuousClock.Instant
        var suppressed: Int
    }

    private let slots = Mutex([String: Slot]())
    private let suppressed = Atomic<UInt64>(0)
    let interval: Duration

    init(interval: Duration = .seconds(1)) {
        self.interval = interval
    }

    var suppressedTotal: UInt64 { suppressed.load(ordering: .relaxed) }

    /// Returns nil when the line is to be dropped, else the number suppressed since the last
    /// line of this key.
    func admit(_ key: String, now: ContinuousClock.Instant = .now) -> Int? {
        let result = slots.withLock { slots -> Int? in
            if var slot = slots[key] {
                guard now - slot.last >= interval else {
                    slot.suppressed += 1
                    slots[key] = slot
                    return nil
                }
                slots[key] = Slot(last: now, suppressed: 0)
                return slot.suppressed
            }
            if slots.count >= 4096 { slots.removeAll() }  // many keys: start over rather than grow
            slots[key] = Slot(last: now, suppressed: 0)
            return 0
        }
        if result == nil { suppressed.add(1, ordering: .relaxed) }
        return result
    }

    /// Logs through `logger` unless rate-limited; adds `suppressed=N` when lines were dropped.
    func log(_ logger: Logger, _ level: Logger.Level, key: String, _ message: @autoclosure () -> Logger.Message,
             metadata: @autoclosure () -> Logger.Metadata) {
        guard logger.logLevel <= level, let dropped = admit(key) else { return }
        var metadata = metadata()
        if dropped > 0 { metadata["suppressed"] = "\(dropped)" }
        logger.log(level: level, message(), metadata: metadata)
    }
}

/// Asks a connection to finish its open streams, refuse new calls and close.
struct DrainConnectionEvent: Sendable {}

/// Tells a draining connection that the shutdown's grace is over: it answers every call still
/// open and every request it has not dispatched, then closes once that is written.
struct ShutdownGraceEndedEvent: Sendable {
    let grace: Duration
}

/// Tells a connection that a reload changed the idle timeout: it re-arms its idle timer.
struct IdleTimeoutChangedEvent: Sendable {}

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
