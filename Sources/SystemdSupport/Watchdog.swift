#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Logging

/// The service watchdog as systemd configures it (sd_watchdog_enabled(3)).
public struct WatchdogConfiguration: Sendable, Equatable {
    /// `WATCHDOG_USEC`: the manager's timeout.
    public let timeoutMicroseconds: UInt64

    /// How often to ping: half the timeout, as sd_watchdog_enabled(3) recommends.
    public var intervalMicroseconds: UInt64 { timeoutMicroseconds / 2 }

    public var interval: Duration { .microseconds(Int64(clamping: intervalMicroseconds)) }

    public init(timeoutMicroseconds: UInt64) {
        self.timeoutMicroseconds = timeoutMicroseconds
    }

    /// Reads `WATCHDOG_USEC` and `WATCHDOG_PID` from the process environment.
    /// Nil when the watchdog is off or meant for another process.
    public static func fromProcessEnvironment() -> WatchdogConfiguration? {
        WatchdogConfiguration(
            environment: ProcessEnvironment.values(for: ["WATCHDOG_USEC", "WATCHDOG_PID"]),
            pid: getpid()
        )
    }

    /// Active only if `WATCHDOG_USEC` is a positive integer and `WATCHDOG_PID` is
    /// unset or equals `pid`.
    public init?(environment: [String: String], pid: pid_t) {
        guard let text = environment["WATCHDOG_USEC"], let usec = parseDecimal(text), usec > 0 else {
            return nil
        }
        if let pidText = environment["WATCHDOG_PID"] {
            guard let target = parseDecimal(pidText), target == UInt64(pid) else { return nil }
        }
        self.timeoutMicroseconds = usec
    }
}

/// Pings the service manager's watchdog, but only while the daemon is really alive.
///
/// Before each `WATCHDOG=1` it awaits `livenessProbe`, which the daemon implements
/// as a round trip through its event loop and its state actor. If either is wedged
/// the probe never returns (or throws), no ping is sent, and systemd's
/// `WatchdogSec=` expires: SIGABRT, then `Restart=on-failure`.
///
/// `run()` is a plain async loop so this module needs no ServiceLifecycle; the
/// daemon wraps it in a `Service` (see `run()`).
public struct Watchdog: Sendable {
    public let configuration: WatchdogConfiguration
    public let notifier: SystemdNotifier
    private let livenessProbe: @Sendable () async throws -> Void
    private let logger: Logger

    public init(
        configuration: WatchdogConfiguration,
        notifier: SystemdNotifier,
        logger: Logger,
        livenessProbe: @escaping @Sendable () async throws -> Void
    ) {
        self.configuration = configuration
        self.notifier = notifier
        self.logger = logger
        self.livenessProbe = livenessProbe
    }

    /// Probes and pings at once, then every `configuration.interval`, until the
    /// task is cancelled; then it returns normally (never throws), so a graceful
    /// shutdown does not surface as an error.
    public func run() async {
        logger.debug(
            "watchdog active",
            metadata: ["interval_usec": "\(configuration.intervalMicroseconds)"]
        )
        while !Task.isCancelled {
            await pingIfAlive()
            do {
                try await Task.sleep(for: configuration.interval)
            } catch {
                return  // cancelled
            }
        }
    }

    /// Thrown by a liveness probe while the daemon is still starting: no ping is
    /// sent and nothing is logged above debug. systemd arms the watchdog only once
    /// the service is READY, so no ping is owed yet.
    public struct NotReady: Error, Sendable {
        public init() {}
    }

    /// One probe-then-ping step. Returns whether the probe succeeded (and so
    /// `WATCHDOG=1` was sent, if notifications are enabled).
    @discardableResult
    public func pingIfAlive() async -> Bool {
        do {
            try await livenessProbe()
        } catch is NotReady {
            logger.debug("watchdog: not ready yet; not pinging")
            return false
        } catch {
            if Task.isCancelled { return false }
            logger.warning("watchdog liveness probe failed; not pinging", metadata: ["error": "\(error)"])
            return false
        }
        if Task.isCancelled { return false }
        notifier.watchdog()
        return true
    }
}
