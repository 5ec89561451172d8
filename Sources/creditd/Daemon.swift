import CreditDomain
import CreditMonitoring
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

        let metrics = DaemonMetrics(knownMethods: Set(MethodTable.all.map(\.fullName)))

        let hooks = AdminHooks(
            serverStats: { current.server?.stats ?? ServerStats() },
            reload: { [self] in try await self.reload(current, notifier: notifier) },
            serving: { health.status() == .serving },
            metrics: { await metrics.render(application: gate.application, serving: health.status() == .serving) })
        var services = CreditApplication.services(gate: gate, hooks: hooks)
        if environment["CREDITD_TEST_SERVICE"] == "1" {
            services.append(TestService.make())
            logger.warning("test service \(TestService.name) is mounted (CREDITD_TEST_SERVICE=1)")
        }
        let server = TTRPCServer(services: services, settings: configuration.serverSettings, health: health,
                                 observer: metrics.observer, logger: logger)
        metrics.attach(server: server)
        current.server = server

        try Self.prepareDirectories(configuration, socketActivated: activation.isActivated)
        let target: ListenTarget = activation.isActivated ? .inheritedSocket(try activation.rpcSocket()) : .path(configuration.socketPath)
        try await server.start(target)

        let hangup = installReloadOnSIGHUP(current, notifier: notifier)
        defer { hangup.cancel() }

        // Everything from here runs inside the service group, so SIGTERM is handled
        // gracefully from the moment the socket is taken, during recovery included.
        let recovery = Recovery(daemon: self, configuration: configuration, manualStart: manualStart,
                                health: health, notifier: notifier, metrics: metrics, gate: gate, server: server)
        var lifecycle: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if let watchdog = WatchdogConfiguration(environment: environment, pid: getpid()) {
            let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
            let dog = Watchdog(configuration: watchdog, notifier: notifier, logger: logger) {
                // No ping before READY (a ping would arm the watchdog during recovery), and
                // none once the event loop or the writer thread is wedged.
                guard let application = gate.application else { throw NotReadyYet() }
                try await eventLoop.submit {}.get()
                await application.writer.ping()
            }
            lifecycle.append(.init(service: WatchdogService(watchdog: dog)))
        }
        lifecycle.append(.init(service: ApplicationService(recovery: recovery, logger: logger)))
        if let path = configuration.metricsTextfile {
            lifecycle.append(.init(service: MetricsTextfileService(path: path, metrics: metrics, gate: gate, health: health, logger: logger)))
        }
        lifecycle.append(.init(service: ServerService(server: server, notifier: notifier, logger: logger)))
        let group = ServiceGroup(configuration: .init(
            services: lifecycle,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger
        ))
        try await group.run()
        logger.info("stopped")
    }

    fileprivate func recover(_ configuration: DaemonConfiguration, manualStart: Instant?, health: HealthStatus,
                             notifier: SystemdNotifier, metrics: DaemonMetrics) async throws -> CreditApplication {
        var storeOptions = StoreOptions()
        storeOptions.segmentSize = configuration.journalSegmentBytes
        let logger = self.logger
        storeOptions.onFault = { fault in
            health.setAll(.notServing)
            notifier.status("persistence fault: \(fault); writes refused, reads served")
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
        let frozen = settings
        return try await withCheckedThrowingContinuation { continuation in
            // A thread of its own: recovery reads and fsyncs files for as long as it takes.
            Thread.detachNewThread {
                do {
                    continuation.resume(returning: try CreditApplication(configuration: frozen, logger: logger))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    fileprivate func readyStatus(_ application: CreditApplication) -> String {
        let stats = application.store.stats
        let snapshot = stats.lastSnapshotUnixMillis.map { Instant(nanosecondsSinceEpoch: $0 * 1_000_000).rfc3339 } ?? "none"
        return "SERVING: \(application.subscriptionsRecovered) subscriptions, last snapshot \(snapshot)"
    }

    /// Re-reads the configuration and applies what can change while running:
    /// limits, log level, authorization and the seat maximum.
    func reload(_ current: ConfigurationBox, notifier: SystemdNotifier) async throws -> String {
        notifier.reloading()
        defer { notifier.ready(status: "SERVING: configuration reloaded") }
        let next = try loadConfiguration()
        let previous = current.value
        var ignored: [String] = []
        if next.socketPath != previous.socketPath { ignored.append("socket") }
        if next.stateDirectory != previous.stateDirectory { ignored.append("state directory") }
        if next.clock != previous.clock { ignored.append("clock") }
        if next.journalSegmentBytes != previous.journalSegmentBytes { ignored.append("journal segment size") }
        if !ignored.isEmpty {
            logger.warning("these settings change only with a restart; keeping the running values",
                           metadata: ["settings": "\(ignored.joined(separator: ", "))"])
        }
        var applied = previous
        applied.logLevel = next.logLevel
        applied.maxConnections = next.maxConnections
        applied.maxInFlight = next.maxInFlight
        applied.idleTimeoutSeconds = next.idleTimeoutSeconds
        applied.defaultDeadlineSeconds = next.defaultDeadlineSeconds
        applied.shutdownGraceSeconds = next.shutdownGraceSeconds
        applied.writerUIDs = next.writerUIDs
        applied.writerGIDs = next.writerGIDs
        applied.readerUIDs = next.readerUIDs
        applied.readerGIDs = next.readerGIDs
        applied.maxConnectionsPerUID = next.maxConnectionsPerUID
        applied.reservedConnections = next.reservedConnections
        applied.maxBufferedResponseBytes = next.maxBufferedResponseBytes
        applied.maxQueuedWrites = next.maxQueuedWrites
        applied.maxPartialFrameBytes = next.maxPartialFrameBytes
        applied.frameReadTimeoutSeconds = next.frameReadTimeoutSeconds
        current.value = applied
        current.server?.reload(applied.serverSettings)
        logLevel.level = Logger.Level(rawValue: applied.logLevel) ?? .info
        logger.notice("configuration reloaded")
        return "configuration reloaded"
    }

    private func installReloadOnSIGHUP(_ current: ConfigurationBox, notifier: SystemdNotifier) -> any DispatchSourceSignal {
        signal(SIGHUP, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        source.setEventHandler { [self] in
            Task {
                do {
                    _ = try await self.reload(current, notifier: notifier)
                } catch {
                    logger.error("reload failed; keeping the running configuration", metadata: ["error": "\(error)"])
                }
            }
        }
        source.resume()
        return source
    }

    static func prepareDirectories(_ configuration: DaemonConfiguration, socketActivated: Bool) throws {
        let files = FileManager.default
        let socketDirectory = (configuration.socketPath as NSString).deletingLastPathComponent
        if !socketActivated, !socketDirectory.isEmpty, !files.fileExists(atPath: socketDirectory) {
            try files.createDirectory(atPath: socketDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
        }
        if !files.fileExists(atPath: configuration.stateDirectory) {
            try files.createDirectory(atPath: configuration.stateDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
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
            await server.shutdown()
        }
    }
}

/// Recovers the state, then opens for business: SERVING and READY=1.
struct Recovery: Sendable {
    let daemon: Daemon
    let configuration: DaemonConfiguration
    let manualStart: Instant?
    let health: HealthStatus
    let notifier: SystemdNotifier
    let metrics: DaemonMetrics
    let gate: ApplicationGate
    let server: TTRPCServer

    func run() async throws -> CreditApplication {
        // Blocking file I/O, kept off the event loops; health says NOT_SERVING meanwhile.
        notifier.status("recovering state from \(configuration.stateDirectory)")
        notifier.extendTimeout(usec: 60_000_000)
        let application = try await daemon.recover(configuration, manualStart: manualStart, health: health,
                                                   notifier: notifier, metrics: metrics)
        gate.open(application)
        server.setReady()  // calls parked during recovery go on now
        health.setAll(.serving)
        notifier.ready(status: daemon.readyStatus(application))
        daemon.logger.info("serving", metadata: [
            "clock": "\(configuration.clock.rawValue)",
            "now": "\(application.writer.clock.now().rfc3339)",
            "state_dir": "\(configuration.stateDirectory)",
            "subscriptions": "\(application.subscriptionsRecovered)",
        ])
        return application
    }
}

/// Thrown by the watchdog's probe before the state is recovered.
struct NotReadyYet: Error {}

/// Recovery, then time-driven transitions and periodic snapshots while
/// running, then the final snapshot once the server has drained.
struct ApplicationService: Service, CustomStringConvertible {
    let recovery: Recovery
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

/// Rewrites a .prom file for node_exporter's textfile collector every 30 s.
struct MetricsTextfileService: Service, CustomStringConvertible {
    let path: String
    let metrics: DaemonMetrics
    let gate: ApplicationGate
    let health: HealthStatus
    let logger: Logger
    var description: String { "MetricsTextfileService" }

    func run() async throws {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                let text = await metrics.render(application: gate.application, serving: health.status() == .serving)
                do {
                    try PrometheusTextfile.write(text, to: path)
                } catch {
                    logger.warning("cannot write the metrics textfile", metadata: ["path": "\(path)", "error": "\(error)"])
                }
                try await Task.sleep(for: .seconds(30))
            }
        }
    }
}
