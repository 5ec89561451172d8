import ArgumentParser
import CreditServer
import CreditService
import CreditStore
import Dispatch
import Foundation
import Logging
import Synchronization
import SystemdSupport

@main
struct CreditdCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "creditd",
        abstract: "Subscription credit daemon serving ttrpc on a Unix socket.",
        version: "0.1.0",
        subcommands: [Serve.self, VerifyState.self],
        defaultSubcommand: Serve.self
    )
}

/// `creditd verify-state DIR`: checks a state directory offline, without
/// taking its lock or changing a byte.
struct VerifyState: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify-state",
        abstract: "Check a state directory (snapshots and journal) without starting the server.",
        discussion: "Lists each segment (format version, seal, torn or corrupt damage) and snapshot (with its ledger encoding version). "
            + "Exit 0 when creditd can recover the directory as it is, 1 otherwise; then it also shows what --repair would do."
    )

    @Argument(help: "The state directory.") var directory: String

    func run() throws {
        do {
            let report = try verifyStateDirectory(directory, describePayload: SnapshotCodec.describeLedgerEncoding(of:))
            print(report.description)
            if !report.recoverable { throw ExitCode.failure }
        } catch let error as StoreError {
            print("cannot verify \(directory): \(error)")
            throw ExitCode.failure
        }
    }
}

/// `creditd [serve]`: runs the daemon.
///
/// Synchronous on purpose (and so is `CreditdCommand`): the daemon runs in a detached
/// task of medium priority while the main thread waits. An async main would drain the
/// main queue on a user-interactive worker thread, and an async `run()` would run
/// everything at the main task's user-initiated priority; libdispatch gives such
/// threads nice -4 and -2, which an unprivileged service may not set, and logs "Failed
/// to set thread priority for worker thread" at every start. At medium priority it
/// asks for nice 0 (the unit allows setpriority for that).
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the daemon (the default)."
    )

    @Option(name: .long, help: "JSON configuration file; flags override its values.")
    var config: String?

    @Option(name: [.short, .long], help: "Socket path (default ./.creditd/creditd.sock, or $RUNTIME_DIRECTORY/creditd.sock).")
    var socket: String?

    @Option(name: .long, help: "State directory (default ./.creditd/state, or $STATE_DIRECTORY).")
    var stateDir: String?

    @Option(name: .long, help: "Clock: system or manual.")
    var clock: DaemonConfiguration.ClockMode?

    @Option(name: .long, help: "Start instant of the manual clock (RFC 3339); needs --clock manual and applies only to a new state directory.")
    var now: String?

    @Option(name: .long, help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String?

    @Option(name: .long, parsing: .unconditional, help: "Most open connections; a new one beyond it closes an idle one, or its first request gets RESOURCE_EXHAUSTED.")
    var maxConnections: Int?

    @Option(name: .long, parsing: .unconditional, help: "Most calls in flight per connection.")
    var maxInFlight: Int?

    @Option(name: .long, parsing: .unconditional, help: "Seconds before a connection with nothing read or written and no unary call open is closed, silent streams included (0: never).")
    var idleTimeout: Double?

    @Option(name: .long, parsing: .unconditional, help: "Seconds allowed to calls sent without a timeout (0: no limit).")
    var defaultDeadline: Double?

    @Option(name: .long, parsing: .unconditional, help: "Seconds a shutdown waits for calls in flight.")
    var shutdownGrace: Double?

    @Option(name: .customLong("max-connections-per-uid"), parsing: .unconditional, help: "Most open connections of one uid; at the limit its oldest idle one is closed, else the new one is refused (default: a quarter of --max-connections).")
    var maxConnectionsPerUID: Int?

    @Option(name: .long, parsing: .unconditional, help: "Connection slots only root, creditd's uid and writers may take (default: 8, at most a quarter of --max-connections).")
    var reservedConnections: Int?

    @Option(name: .long, parsing: .unconditional, help: "Unwritten response bytes per connection beyond which its requests are not read (default 1048576).")
    var maxBufferedResponseBytes: Int?

    @Option(name: .long, parsing: .unconditional, help: "Calls per connection waiting for the writer at once (default 32).")
    var maxQueuedWrites: Int?

    @Option(name: .long, parsing: .unconditional, help: "Memory for partially received large frames, all connections together; beyond it large frames are refused (default 67108864).")
    var maxPartialFrameBytes: Int?

    @Option(name: .long, parsing: .unconditional, help: "Seconds within which a frame must arrive completely once started (default 10).")
    var frameReadTimeout: Double?

    @Option(name: .long, parsing: .unconditional, help: "Event loop threads serving connections (default 0: one per core but one, at least one; the writer thread has the last core).")
    var eventLoops: Int?

    @Option(name: .long, parsing: .unconditional, help: "Most seats per subscription.")
    var maxSeats: Int64?

    @Option(name: .long, parsing: .singleValue, help: "A uid allowed to write (repeatable, or comma-separated).")
    var writerUid: [String] = []

    @Option(name: .long, parsing: .singleValue, help: "A gid allowed to write (repeatable, or comma-separated).")
    var writerGid: [String] = []

    @Option(name: .long, parsing: .singleValue, help: "A uid allowed to read (default: any peer).")
    var readerUid: [String] = []

    @Option(name: .long, parsing: .singleValue, help: "A gid allowed to read (default: any peer).")
    var readerGid: [String] = []

    @Option(name: .long, parsing: .unconditional, help: "Seconds between periodic snapshots (default 600).")
    var snapshotInterval: Double?

    @Option(name: .long, parsing: .unconditional, help: "Journal records after which a snapshot is taken (default 100000).")
    var snapshotEveryRecords: Int?

    @Option(name: .long, parsing: .unconditional, help: "Size of a journal segment in bytes (default 64 MiB).")
    var journalSegmentBytes: Int?

    @Option(name: .long, help: "Where the journal lives: file (the state directory, default) or postgres:CONNINFO (shared by several hosts, one active).")
    var store: String?

    @Option(name: .long, parsing: .unconditional, help: "Seconds a writer lease on a shared store lasts without renewal (default 3).")
    var storeLeaseSeconds: Double?

    @Option(name: .long, help: "Write metrics to this .prom file every 30 s (node_exporter textfile collector).")
    var metricsTextfile: String?

    @Option(name: .long, parsing: .unconditional, help: "Keep events at least this many days (default and minimum 45).")
    var eventRetentionDays: Double?

    @Option(name: .long, parsing: .unconditional, help: "Keep at least the newest this many events (default and minimum 1000000).")
    var eventRetentionEvents: Int?

    @Flag(name: .long, help: "Truncate a damaged journal at its first bad record, after keeping a copy of it.")
    var repair = false

    func run() throws {
        // Socket activation first: the variables are cleared before anything else can read them.
        let activation: ListenFDs
        do {
            activation = try ListenFDs.takeFromProcessEnvironment()
        } catch {
            FileHandle.standardError.write(Data("creditd: socket activation: \(error)\n".utf8))
            throw ExitCode.failure
        }
        let environment = ProcessInfo.processInfo.environment
        let flags = try flagLayer()
        // Log lines go through a bounded queue and a writer thread: a slow stderr reader never
        // stalls an event loop (issue 13); lines beyond the queue are dropped and counted.
        let logLevel = JournaldLogHandler.bootstrap(level: .info, writer: .queuedStandardError)
        defer { LogLineWriter.queuedStandardError.flush() }
        let logger = Logger(label: "creditd")
        let daemon = Daemon(configFile: config, flags: flags, environment: environment, activation: activation,
                            repair: repair, logLevel: logLevel, logger: logger)
        let outcome = Outcome()
        Task.detached(priority: .medium) {
            do {
                let configuration = try daemon.loadConfiguration()
                logLevel.level = Logger.Level(rawValue: configuration.logLevel) ?? .info
                try Self.checkStartInstant(configuration, logger: logger)
                try await daemon.run(configuration)
            } catch {
                logger.critical("cannot run: \(error)")
                outcome.failed.withLock { $0 = true }
            }
            outcome.done.signal()
        }
        outcome.done.wait()
        if outcome.failed.withLock({ $0 }) { throw ExitCode.failure }
    }

    /// How the daemon's task ended, for the waiting main thread.
    private final class Outcome: Sendable {
        let done = DispatchSemaphore(value: 0)
        let failed = Mutex(false)
    }

    /// `--now` sets where a *new* manual clock starts. Without `--clock manual` it would mean
    /// nothing, so it is refused; on a state directory that already holds state, the clock resumes
    /// at its last recorded instant and `--now` is not used, which the operator is told.
    static func checkStartInstant(_ configuration: DaemonConfiguration, logger: Logger) throws {
        guard let now = configuration.now else { return }
        guard configuration.clock == .manual else {
            throw StartError("--now \(now) needs --clock manual: the system clock cannot be set")
        }
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: configuration.stateDirectory)) ?? []
        if existing.contains(where: { $0.hasPrefix("journal-") || $0.hasSuffix(".snap") }) {
            logger.warning("""
                --now \(now) applies only to a new state directory: \(configuration.stateDirectory) already holds \
                state, so --now is not used and the manual clock resumes where it stopped (move it with \
                creditctl advance-clock; use an empty --state-dir for a reproducible start)
                """)
        }
    }

    struct StartError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    private func flagLayer() throws -> DaemonConfiguration.Layer {
        var layer = DaemonConfiguration.Layer()
        layer.socket = socket
        layer.stateDir = stateDir
        layer.clock = clock
        layer.now = now
        layer.logLevel = logLevel
        layer.maxConnections = maxConnections
        layer.maxInFlight = maxInFlight
        layer.idleTimeout = idleTimeout
        layer.defaultDeadline = defaultDeadline
        layer.shutdownGrace = shutdownGrace
        layer.maxSeats = maxSeats
        layer.writerUIDs = try Self.ids(writerUid, "--writer-uid")
        layer.writerGIDs = try Self.ids(writerGid, "--writer-gid")
        layer.readerUIDs = try Self.ids(readerUid, "--reader-uid")
        layer.readerGIDs = try Self.ids(readerGid, "--reader-gid")
        layer.snapshotInterval = snapshotInterval
        layer.snapshotEveryRecords = snapshotEveryRecords
        layer.journalSegmentBytes = journalSegmentBytes
        layer.store = store
        layer.storeLeaseSeconds = storeLeaseSeconds
        layer.metricsTextfile = metricsTextfile
        layer.eventRetentionDays = eventRetentionDays
        layer.eventRetentionEvents = eventRetentionEvents
        layer.maxConnectionsPerUID = maxConnectionsPerUID
        layer.reservedConnections = reservedConnections
        layer.maxBufferedResponseBytes = maxBufferedResponseBytes
        layer.maxQueuedWrites = maxQueuedWrites
        layer.maxPartialFrameBytes = maxPartialFrameBytes
        layer.frameReadTimeout = frameReadTimeout
        layer.eventLoops = eventLoops
        return layer
    }

    /// nil when the flag was not given, so the file's list stays in force.
    private static func ids(_ values: [String], _ flag: String) throws -> [UInt32]? {
        guard !values.isEmpty else { return nil }
        return try values.flatMap { $0.split(separator: ",") }.map { part in
            guard let id = UInt32(part.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("\(flag): \"\(part)\" is not a numeric id")
            }
            return id
        }
    }
}

extension DaemonConfiguration.ClockMode: ExpressibleByArgument {}
