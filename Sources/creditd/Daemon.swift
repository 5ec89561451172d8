import CreditDomain
import CreditMonitoring
import CreditPostgresStore
import CreditProto
import CreditServer
import CreditService
import CreditStore
import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import SystemdSupport

/// Wires configuration, state, services and the server together and runs
/// until SIGTERM or SIGINT.
///
/// Start-up order (docs/operations.md §2, §5): take the socket, answer health
/// NOT_SERVING while the state is recovered, then SERVING and READY=1.
/// Shutdown runs in reverse: the server drains, the final snapshot is
/// written, and the watchdog pings until the very end.
struct Daemon: Sendable {
    let configFile: String?
    let flags: DaemonConfiguration.Layer
    let environment: [String: String]
    let activation: ListenFDs
    let repair: Bool
    let logLevel: SharedLogLevel
    let logger: Logger

    func loadConfiguration() throws -> DaemonConfiguration {
        try DaemonConfiguration.resolve(configFile: configFile, flags: flags, environment: environment)
    }

    func run(_ configuration: DaemonConfiguration) async throws {
        let manualStart: Instant?
        if let text = configuration.now {
            guard let instant = Instant(rfc3339: text) else {
                throw DaemonConfiguration.LoadError.badValue("--now \"\(text)\" is not an RFC 3339 instant")
            }
            manualStart = instant
        } else {
            manualStart = nil
        }
        let notifier = SystemdNotifier(environment: environment)
        let health = HealthStatus(initial: .notServing)
        let gate = ApplicationGate()
        let current = ConfigurationBox(configuration)
        let live = LiveDaemon(current: current, notifier: notifier, gate: gate, phase: DaemonPhase())
        let source = configurationSource()
        let eventLoopCount = configuration.eventLoopCount()
        logger.info("configuration loaded", metadata: [
            "file": "\(source.path ?? "none (\(source.absence ?? ""))")",
            "event_loops": "\(eventLoopCount)"])

        let metrics = DaemonMetrics(knownMethods: Set(MethodTable.all.map(\.fullName)))

        let hooks = AdminHooks(
            serverStats: { current.server?.stats ?? ServerStats() },
            reload: { [self] in try await self.reload(live) },
            serving: { health.status() == .serving },
            metrics: { await metrics.render(application: gate.application, serving: health.status() == .serving) })
        var services = CreditApplication.services(gate: gate, hooks: hooks)
        if environment["CREDITD_TEST_SERVICE"] == "1" {
            services.append(TestService.make())
            logger.warning("test service \(TestService.name) is mounted (CREDITD_TEST_SERVICE=1)")
        }
        let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: eventLoopCount)
        defer { eventLoops.shutdownGracefully { _ in } }
        let server = TTRPCServer(services: services, settings: configuration.serverSettings, health: health,
                                 observer: metrics.observer, logger: logger, eventLoopGroup: eventLoops,
                                 lookAhead: CreditApplication.lookAhead(gate: gate))
        metrics.attach(server: server)
        current.server = server

        try Self.prepareDirectories(configuration, socketActivated: activation.isActivated)
        let target: ListenTarget = activation.isActivated ? .inheritedSocket(try activation.rpcSocket()) : .path(configuration.socketPath)
        if case .inheritedSocket(let served) = target, activation.descriptors.count > 1 {
            // A second ListenStream= (a drop-in) would otherwise queue its clients for ever
            // without a word: creditd serves one socket.
            let ignored = activation.descriptors.filter { $0.fd != served }
            logger.warning("systemd passed more sockets than creditd serves; only one is served", metadata: [
                "served_fd": "\(served)",
                "ignored": "\(ignored.map { "fd \($0.fd) (\($0.name))" }.joined(separator: ", "))",
                "fix": "keep one ListenStream= in creditd.socket",
            ])
        }
        try await server.start(target)

        let hangup = installReloadOnSIGHUP(live)
        defer { hangup.cancel() }

        // Everything from here runs inside the service group, so SIGTERM is handled
        // gracefully from the moment the socket is taken, during recovery included.
        let recovery = StartupRecovery(daemon: self, configuration: configuration, manualStart: manualStart,
                                health: health, live: live, metrics: metrics, server: server)
        var lifecycle: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let watchdog = WatchdogConfiguration(environment: environment, pid: getpid()) {
            let eventLoop = eventLoops.next()
            let dog = Watchdog(configuration: watchdog, notifier: notifier, logger: logger) {
                // No ping before READY (systemd arms the watchdog only then; NotReady is
                // logged at debug), and none once the event loop or the writer thread is wedged.
                guard let application = gate.application else { throw Watchdog.NotReady() }
                try await eventLoop.submit {}.get()
                await application.writer.ping()
            }
            lifecycle.append(.init(service: WatchdogService(watchdog: dog)))
        }
        lifecycle.append(.init(service: ApplicationService(recovery: recovery, logger: logger)))
        // Always in the group: a reload may set, change or clear metrics_textfile.
        lifecycle.append(.init(service: MetricsTextfileService(current: current, metrics: metrics, gate: gate, health: health, logger: logger)))
        lifecycle.append(.init(service: StatusService(daemon: self, live: live)))
        lifecycle.append(.init(service: ServerService(server: server, notifier: notifier, logger: logger,
                                                      beforeDrain: { gate.application?.writer.commits.close() })))
        let group = ServiceGroup(configuration: .init(
            services: lifecycle,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        try await group.run()
        logger.info("stopped")
    }

    fileprivate func recover(_ configuration: DaemonConfiguration, manualStart: Instant?, health: HealthStatus,
                             live: LiveDaemon, metrics: DaemonMetrics, progress: RecoveryProgress,
                             eventLoops: any EventLoopGroup) async throws -> CreditApplication {
        var storeOptions = StoreOptions()
        storeOptions.segmentSize = configuration.journalSegmentBytes
        storeOptions.zeroFillBytes = StoreOptions.recommendedZeroFillBytes
        let logger = self.logger
        let notifier = live.notifier
        storeOptions.onFault = { fault in
            health.setAll(.notServing)
            let status = "persistence fault: \(fault); writes refused, reads served"
            live.phase.set(.faulted(status))
            notifier.status(status)
            logger.critical("journal fault: writes refused until restart", metadata: ["fault": "\(fault)"])
        }
        var settings = ApplicationConfiguration(
            stateDirectory: configuration.stateDirectory,
            clockMode: configuration.clock == .manual ? .manual : .system,
            manualStart: manualStart,
            maxSeats: configuration.maxSeats,
            snapshotInterval: .milliseconds(Int64(configuration.snapshotIntervalSeconds * 1000)),
            snapshotEveryRecords: configuration.snapshotEveryRecords,
            repair: repair,
            storeOptions: storeOptions)
        settings.snapshotObserver = { metrics.recordSnapshot(duration: $0) }
        settings.eventRetention = configuration.eventRetention
        if configuration.store.hasPrefix("postgres:") {
            let info = try PostgresConnectionInfo(parsing: String(configuration.store.dropFirst("postgres:".count)),
                                                  environment: environment)
            var options = PostgresStoreOptions()
            options.lease = .milliseconds(Int64(configuration.storeLeaseSeconds * 1000))
            options.eventLoopGroup = eventLoops
            let frozenOptions = options
            settings.openStore = {
                let (store, recovery) = try PostgresJournalStore.open(info, options: frozenOptions, logger: logger)
                logger.notice("using a shared store; standing by until this host holds the writer lease",
                              metadata: ["store": "\(info)", "node": "\(frozenOptions.node)"])
                return (store, recovery)
            }
        }
        let frozen = settings
        return try await withCheckedThrowingContinuation { continuation in
            // A thread of its own: recovery reads and fsyncs files for as long as it takes.
            Thread.detachNewThread {
                let size = StateSize.measure(frozen.stateDirectory)
                progress.begin(size)
                logger.info("recovering state", metadata: [
                    "state_dir": "\(frozen.stateDirectory)",
                    "bytes": "\(size.bytes)",
                    "files": "\(size.files)",
                ])
                do {
                    continuation.resume(returning: try CreditApplication(configuration: frozen, logger: logger))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    /// `SERVING: N subscriptions, last snapshot T`, with the counts as they are now.
    fileprivate func servingStatus(_ application: CreditApplication) async -> String {
        let stats = application.store.stats
        let snapshot = stats.lastSnapshotUnixMillis.map { Instant(nanosecondsSinceEpoch: $0 * 1_000_000).rfc3339 } ?? "none"
        let line = "SERVING: \(application.currentSubscriptionCount()) subscriptions, last snapshot \(snapshot)"
        let replication = application.replication
        switch replication.role {
        case .standalone:
            return line
        case .active:
            return line + ", active (epoch \(replication.epoch))"
        case .standby:
            let active = replication.activeHolder.isEmpty ? "none" : replication.activeHolder
            return line + ", standby (epoch \(replication.epoch), active \(active), lag "
                + String(format: "%.3f", replication.lagSeconds) + " s)"
        }
    }

    /// Where the configuration comes from: the file read, or why there is none.
    func configurationSource() -> (path: String?, absence: String?) {
        if let configFile { return (configFile, nil) }
        if let path = DaemonConfiguration.defaultConfigFile(environment: environment) { return (path, nil) }
        if let directory = environment["CONFIGURATION_DIRECTORY"]?.split(separator: ":").first {
            return (nil, "\(directory)/creditd.json does not exist")
        }
        return (nil, "no --config and no $CONFIGURATION_DIRECTORY")
    }

    /// Re-reads the configuration and applies every setting that can change while
    /// running; the answer (and the log) names what changed and what needs a restart.
    /// A refused reload is logged as a warning with its reason and keeps everything.
    ///
    /// systemd hears RELOADING=1 ... READY=1 only once the daemon has been READY: a
    /// reload during recovery must not tell it the start is over. STATUS= afterwards
    /// is the truthful line for the daemon's state, with current counts.
    func reload(_ live: LiveDaemon) async throws -> String {
        let announced = live.phase.isReady
        if announced { live.notifier.reloading() }
        let outcome: Result<String, any Error>
        do {
            outcome = .success(try await applyReload(live))
        } catch {
            outcome = .failure(error)
        }
        if announced { live.notifier.ready(status: await statusLine(live)) }
        switch outcome {
        case .success(let message):
            return message
        case .failure(let error):
            logger.warning("reload refused; keeping the running configuration", metadata: ["reason": "\(error)"])
            throw error
        }
    }

    /// The STATUS= line for the daemon's state now.
    fileprivate func statusLine(_ live: LiveDaemon) async -> String {
        switch live.phase.value {
        case .faulted(let text):
            return text
        case .serving:
            if let application = live.gate.application { return await servingStatus(application) }
            return "SERVING"
        case .starting:
            return "recovering state from \(live.current.value.stateDirectory)"
        }
    }

    private func applyReload(_ live: LiveDaemon) async throws -> String {
        let source = configurationSource()
        let next = try loadConfiguration()
        let previous = live.current.value
        let (applied, changed, restartOnly) = DaemonConfiguration.reload(from: previous, to: next)

        live.current.value = applied
        live.current.server?.reload(applied.serverSettings)
        logLevel.level = Logger.Level(rawValue: applied.logLevel) ?? .info
        if let application = live.gate.application {
            await application.applyReloadedSettings(
                maxSeats: applied.maxSeats, snapshotInterval: applied.snapshotInterval,
                snapshotEveryRecords: applied.snapshotEveryRecords,
                eventRetention: applied.eventRetention)
        }
        // During recovery, Recovery.run applies `live.current` once the state is loaded.

        var message: String
        if let path = source.path {
            message = "configuration reloaded from \(path)"
        } else {
            message = "configuration reloaded without a configuration file (\(source.absence ?? "none")): built-in defaults and flags apply"
        }
        message += changed.isEmpty ? "; nothing changed" : "; applied: \(changed.joined(separator: ", "))"
        logger.notice("configuration reloaded", metadata: [
            "file": "\(source.path ?? "none (\(source.absence ?? ""))")",
            "applied": "\(changed.isEmpty ? "nothing changed" : changed.joined(separator: ", "))",
        ])
        if !restartOnly.isEmpty {
            let names = restartOnly.joined(separator: ", ")
            message += "; needs a restart to take effect (running values kept): \(names)"
            logger.warning("these settings change only with a restart; keeping the running values",
                           metadata: ["settings": "\(names)"])
        }
        return message
    }

    private func installReloadOnSIGHUP(_ live: LiveDaemon) -> any DispatchSourceSignal {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler { [self] in
            Task {
                // reload() logs a refusal itself.
                _ = try? await self.reload(live)
            }
        }
        source.resume()
        return source
    }

    static func prepareDirectories(_ configuration: DaemonConfiguration, socketActivated: Bool) throws {
        let socketDirectory = (configuration.socketPath as NSString).deletingLastPathComponent
        if !socketActivated, !socketDirectory.isEmpty {
            try makeDirectory(socketDirectory, mode: 0o750, purpose: "socket directory")
        }
        try makeDirectory(configuration.stateDirectory, mode: 0o700, purpose: "state directory")
    }

    /// `mkdir -p` with the system's reason on failure. Foundation's error read "Error
    /// Domain=NSCocoaErrorDomain Code=513 ... UserInfo={...}" in the journal.
    static func makeDirectory(_ path: String, mode: mode_t, purpose: String, within target: String? = nil) throws {
        var info = stat()
        if stat(path, &info) == 0 { return }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != path { try makeDirectory(parent, mode: mode, purpose: purpose, within: target ?? path) }
        guard mkdir(path, mode) == 0 || errno == EEXIST else {
            let code = errno
            let named = target.map { "\($0) (making \(path))" } ?? path
            var text = "cannot create the \(purpose) \(named): \(String(cString: strerror(code)))"
            if code == EACCES || code == EPERM || code == EROFS {
                text += "; create it for the user creditd runs as, or choose another path"
            }
            throw Serve.StartError(text)
        }
    }
}

/// Where the daemon is in its life, for the STATUS= line and for whether a
/// reload may say RELOADING=1/READY=1.
final class DaemonPhase: Sendable {
    enum Phase: Sendable {
        case starting
        case serving
        /// A persistence fault: the STATUS= text that says so.
        case faulted(String)
    }

    private let state = Mutex(Phase.starting)

    var value: Phase { state.withLock { $0 } }

    /// Serving or faulted: READY=1 has been sent.
    var isReady: Bool {
        if case .starting = value { return false }
        return true
    }

    func set(_ phase: Phase) { state.withLock { $0 = phase } }

    /// To serving, unless a fault came first (the fault stays in force).
    func markServing() {
        state.withLock { if case .starting = $0 { $0 = .serving } }
    }
}

/// What reload and the status line need of the running daemon.
struct LiveDaemon: Sendable {
    let current: ConfigurationBox
    let notifier: SystemdNotifier
    let gate: ApplicationGate
    let phase: DaemonPhase
}

/// The size of a state directory, measured when recovery starts.
struct StateSize: Sendable {
    var bytes: Int64 = 0
    var files = 0

    /// Blocking I/O: call it off the event loops (recovery's own thread).
    static func measure(_ directory: String) -> StateSize {
        var size = StateSize()
        let url = URL(fileURLWithPath: directory)
        guard let walker = FileManager.default.enumerator(at: url, includingPropertiesForKeys: [.fileSizeKey, .isRegularFileKey]) else {
            return size
        }
        for case let file as URL in walker {
            guard let values = try? file.resourceValues(forKeys: [.fileSizeKey, .isRegularFileKey]),
                  values.isRegularFile == true else { continue }
            size.bytes += Int64(values.fileSize ?? 0)
            size.files += 1
        }
        return size
    }
}

/// How far recovery got: bytes read by the process (`rchar` of /proc/self/io, which
/// the store's read(2) calls advance) against the size of the state directory.
final class RecoveryProgress: Sendable {
    private struct State {
        var size: StateSize?
        var baseline: Int64 = 0
    }

    private let state = Mutex(State())
    let stateDirectory: String

    init(stateDirectory: String) { self.stateDirectory = stateDirectory }

    func begin(_ size: StateSize) {
        let baseline = Self.bytesRead() ?? 0
        state.withLock { $0 = State(size: size, baseline: baseline) }
    }

    /// "recovering state from DIR: 120.5 of 1024.0 MiB read, 15 s"
    func status(elapsed: Duration) -> String {
        let seconds = elapsed.components.seconds
        let (size, baseline) = state.withLock { ($0.size, $0.baseline) }
        guard let size, let now = Self.bytesRead() else {
            return "recovering state from \(stateDirectory), \(seconds) s"
        }
        let read = min(max(0, now - baseline), size.bytes)
        return "recovering state from \(stateDirectory): \(Self.mebibytes(read)) of \(Self.mebibytes(size.bytes)) MiB read, \(seconds) s"
    }

    static func mebibytes(_ bytes: Int64) -> String {
        String(Double(bytes * 10 / 1_048_576) / 10)
    }

    /// rchar from /proc/self/io (procfs: answers at once, no disk I/O).
    static func bytesRead() -> Int64? {
        guard let text = try? String(contentsOfFile: "/proc/self/io", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("rchar:") {
            return Int64(line.dropFirst(6).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }
}

/// The configuration in force, replaced on reload (from SIGHUP and from
/// Admin/Reload, so it is shared).
final class ConfigurationBox: Sendable {
    private struct State {
        var value: DaemonConfiguration
        var server: TTRPCServer?
    }

    private let state: Mutex<State>

    init(_ value: DaemonConfiguration) { state = Mutex(State(value: value, server: nil)) }

    var value: DaemonConfiguration {
        get { state.withLock { $0.value } }
        set { state.withLock { $0.value = newValue } }
    }

    var server: TTRPCServer? {
        get { state.withLock { $0.server } }
        set { state.withLock { $0.server = newValue } }
    }
}

/// The server inside the service group: waits for the graceful-shutdown
/// signal, says STOPPING=1, then drains in-flight calls.
struct ServerService: Service, CustomStringConvertible {
    let server: TTRPCServer
    let notifier: SystemdNotifier
    let logger: Logger
    /// Ends event streams and long polls cleanly before the connections drain.
    let beforeDrain: @Sendable () -> Void
    var description: String { "ServerService" }

    func run() async throws {
        await withDiscardingTaskGroup { group in
            // The calls that await (reload, snapshots, health watches) run here, as child tasks.
            group.addTask { await server.run() }
            do {
                try await gracefulShutdown()
            } catch is CancellationError {
                // Cancelled rather than shut down gracefully: still close cleanly, exit 0.
            } catch {}
            notifier.stopping(status: "draining calls in flight")
            logger.notice("shutting down", metadata: ["in_flight": "\(server.stats.inFlightCalls)"])
            beforeDrain()
            await server.shutdown()
        }
    }
}

/// Recovers the state, then opens for business: SERVING and READY=1.
struct StartupRecovery: Sendable {
    let daemon: Daemon
    let configuration: DaemonConfiguration
    let manualStart: Instant?
    let health: HealthStatus
    let live: LiveDaemon
    let metrics: DaemonMetrics

    let server: TTRPCServer

    func run() async throws -> CreditApplication {
        // Blocking file I/O on a thread of its own; health says NOT_SERVING meanwhile.
        // While it runs, a heartbeat extends systemd's start timeout (EXTEND_TIMEOUT_USEC)
        // every 5 s, keeps STATUS= current and logs progress every 10 s.
        let started = ContinuousClock.now
        let logger = daemon.logger
        let progress = RecoveryProgress(stateDirectory: configuration.stateDirectory)
        let heartbeat = StartupHeartbeat(
            notifier: live.notifier,
            progress: { progress.status(elapsed: $0) },
            report: { _, status in logger.notice("recovery in progress", metadata: ["status": "\(status)"]) })
        let beating = Task { await heartbeat.run() }
        let application: CreditApplication
        do {
            application = try await daemon.recover(configuration, manualStart: manualStart, health: health,
                                                   live: live, metrics: metrics, progress: progress,
                                                   eventLoops: server.eventLoopGroup)
        } catch {
            // Calls parked during recovery, and any before the socket closes, learn it now;
            // left parked, they held the drain for the whole shutdown grace before creditd
            // exited and logged why.
            server.refuseUnready("creditd could not recover its state and is stopping; its log says why")
            beating.cancel()
            await beating.value
            throw error
        }
        beating.cancel()
        await beating.value

        // Settings reloaded while recovery ran apply now.
        let latest = live.current.value
        await application.applyReloadedSettings(
            maxSeats: latest.maxSeats, snapshotInterval: latest.snapshotInterval,
            snapshotEveryRecords: latest.snapshotEveryRecords,
            eventRetention: latest.eventRetention)
        live.gate.open(application)
        live.phase.markServing()
        // Health first: a probe that started the daemon waits in a parked call, then asks
        // health again (`creditctl health`); released first, its call could be answered before
        // health said SERVING, and the probe reported NOT_SERVING for a daemon that was ready.
        if case .serving = live.phase.value { health.setAll(.serving) }
        server.setReady()  // calls parked during recovery go on now
        live.notifier.ready(status: await daemon.statusLine(live))
        daemon.logger.info("serving", metadata: [
            "clock": "\(configuration.clock.rawValue)",
            "now": "\(application.writer.clock.now().rfc3339)",
            "state_dir": "\(configuration.stateDirectory)",
            "subscriptions": "\(application.subscriptionsRecovered)",
            "recovery_seconds": "\(CreditApplication.seconds(ContinuousClock.now - started))",
        ])
        return application
    }
}

/// Recovery, then time-driven transitions and periodic snapshots while
/// running, then the final snapshot once the server has drained.
struct ApplicationService: Service, CustomStringConvertible {
    let recovery: StartupRecovery
    let logger: Logger
    var description: String { "ApplicationService" }

    func run() async throws {
        let application = try await recovery.run()
        await cancelWhenGracefulShutdown {
            await application.runScheduler()
        }
        await application.shutdown()
    }
}

/// systemd's watchdog: pings every WATCHDOG_USEC/2 while the daemon is alive.
struct WatchdogService: Service, CustomStringConvertible {
    let watchdog: Watchdog
    var description: String { "WatchdogService" }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await watchdog.run()
        }
    }
}

/// Keeps `systemctl status creditd` current: the STATUS= line again every 15 s while
/// serving, with the subscription count as it is now.
struct StatusService: Service, CustomStringConvertible {
    let daemon: Daemon
    let live: LiveDaemon
    var description: String { "StatusService" }

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: .seconds(15))
                if case .serving = live.phase.value {
                    live.notifier.status(await daemon.statusLine(live))
                }
            }
        }
    }
}

/// Rewrites a .prom file for node_exporter's textfile collector every 30 s, at the
/// path the configuration in force names (a reload may set, change or clear it).
struct MetricsTextfileService: Service, CustomStringConvertible {
    let current: ConfigurationBox
    let metrics: DaemonMetrics
    let gate: ApplicationGate
    let health: HealthStatus
    let logger: Logger
    var description: String { "MetricsTextfileService" }

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                if let path = current.value.metricsTextfile {
                    let text = await metrics.render(application: gate.application, serving: health.status() == .serving)
                    do {
                        try PrometheusTextfile.write(text, to: path)
                    } catch {
                        logger.warning("cannot write the metrics textfile", metadata: ["path": "\(path)", "error": "\(error)"])
                    }
                }
                try await Task.sleep(for: .seconds(30))
            }
        }
    }
}

extension DaemonConfiguration {
    /// The configured event feed retention (E5) as the domain takes it.
    var eventRetention: EventRetention {
        EventRetention(minimumAgeNanoseconds: Int64(eventRetentionDays * 86_400) * 1_000_000_000,
                       minimumCount: eventRetentionEvents)
    }
}
