import NIOCore
#if canImport(Glibc)
import Glibc
#endif
import CreditProto
import JSONCheck
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The daemon's configuration: one value, loaded at start and again on reload, from built-in
/// defaults, then the JSON config file, then command-line flags (each layer overrides the one
/// before). Environment defaults (`$RUNTIME_DIRECTORY`, `$STATE_DIRECTORY`) apply beneath all.
public struct DaemonConfiguration: Sendable, Hashable {
    public enum ClockMode: String, Sendable, Hashable, Codable, CaseIterable {
        case system
        case manual

        /// From the file: a value that is neither says what is allowed (Foundation's own text
        /// was "Cannot initialize ClockMode from invalid String value sundial").
        public init(from decoder: any Decoder) throws {
            let text = try decoder.singleValueContainer().decode(String.self)
            guard let mode = ClockMode(rawValue: text) else {
                throw DecodingError.dataCorrupted(.init(
                    codingPath: decoder.codingPath,
                    debugDescription: "expected \(Self.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: " or ")), found \"\(text)\""))
            }
            self = mode
        }
    }

    public var socketPath: String
    public var stateDirectory: String
    public var clock: ClockMode
    /// Start instant of the manual clock (RFC 3339); nil starts it at the current time.
    public var now: String?
    public var logLevel: String
    public var maxConnections: Int
    public var maxInFlight: Int
    /// Seconds; 0 keeps idle connections open.
    public var idleTimeoutSeconds: Double
    /// Seconds; the deadline of calls sent without timeout_nano; 0 for none.
    public var defaultDeadlineSeconds: Double
    /// Seconds a graceful shutdown waits for in-flight calls.
    public var shutdownGraceSeconds: Double
    public var maxSeats: Int64
    public var writerUIDs: [UInt32]
    public var writerGIDs: [UInt32]
    public var readerUIDs: [UInt32]
    public var readerGIDs: [UInt32]
    /// Seconds between periodic snapshots (when something changed).
    public var snapshotIntervalSeconds: Double
    /// Journal records after which a snapshot is taken regardless of time.
    public var snapshotEveryRecords: Int
    /// Size at which a journal segment is closed and a new one started.
    public var journalSegmentBytes: Int
    /// A .prom file for node_exporter's textfile collector, rewritten every 30 s; nil for none.
    public var metricsTextfile: String?
    /// Event feed retention (E5): an event is pruned only when it is older than this many days
    /// and outside the newest `eventRetentionEvents`. At least 45 days and 1,000,000 events.
    public var eventRetentionDays: Double = 45
    public var eventRetentionEvents: Int = 1_000_000
    public static let minimumEventRetentionDays: Double = 45
    public static let minimumEventRetentionEvents = 1_000_000
    /// Where the journal and snapshots live: `file` (the state directory, one host) or
    /// `postgres:CONNINFO` (a PostgreSQL database several hosts share, one of them active).
    public var store: String = "file"
    /// Seconds a writer lease on a shared store lasts without renewal (failover takes about this long).
    public var storeLeaseSeconds: Double = 3
    /// Connections per uid; 0: a quarter of `maxConnections`.
    public var maxConnectionsPerUID: Int = 0
    /// Slots of `maxConnections` kept for root, the daemon's uid and writers; -1: min(8, a quarter).
    public var reservedConnections: Int = -1
    /// Unwritten response bytes per connection beyond which its requests are not read.
    public var maxBufferedResponseBytes: Int = 1 << 20
    /// Calls per connection waiting for the writer at once.
    public var maxQueuedWrites: Int = 32
    /// Memory for partially received large frames, across connections.
    public var maxPartialFrameBytes: Int = 64 << 20
    /// Seconds within which a frame must arrive completely once started.
    public var frameReadTimeoutSeconds: Double = 10
    /// Event loop threads serving connections; 0: one per core but one (`eventLoopCount`).
    public var eventLoops: Int = 0
    public static let maximumEventLoops = 256

    /// Every setting optional: the shape of the config file and of the flags.
    public struct Layer: Sendable, Hashable, Codable {
        public var socket: String?
        public var stateDir: String?
        public var clock: ClockMode?
        public var now: String?
        public var logLevel: String?
        public var maxConnections: Int?
        public var maxInFlight: Int?
        public var idleTimeout: Double?
        public var defaultDeadline: Double?
        public var shutdownGrace: Double?
        public var maxSeats: Int64?
        public var writerUIDs: [UInt32]?
        public var writerGIDs: [UInt32]?
        public var readerUIDs: [UInt32]?
        public var readerGIDs: [UInt32]?
        public var snapshotInterval: Double?
        public var snapshotEveryRecords: Int?
        public var journalSegmentBytes: Int?
        public var metricsTextfile: String?
        public var eventRetentionDays: Double?
        public var eventRetentionEvents: Int?
        public var store: String?
        public var storeLeaseSeconds: Double?
        public var maxConnectionsPerUID: Int?
        public var reservedConnections: Int?
        public var maxBufferedResponseBytes: Int?
        public var maxQueuedWrites: Int?
        public var maxPartialFrameBytes: Int?
        public var frameReadTimeout: Double?
        public var eventLoops: Int?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case socket
            case stateDir = "state_dir"
            case clock
            case now
            case logLevel = "log_level"
            case maxConnections = "max_connections"
            case maxInFlight = "max_in_flight"
            case idleTimeout = "idle_timeout"
            case defaultDeadline = "default_deadline"
            case shutdownGrace = "shutdown_grace"
            case maxSeats = "max_seats"
            case writerUIDs = "writer_uids"
            case writerGIDs = "writer_gids"
            case readerUIDs = "reader_uids"
            case readerGIDs = "reader_gids"
            case snapshotInterval = "snapshot_interval"
            case snapshotEveryRecords = "snapshot_every_records"
            case journalSegmentBytes = "journal_segment_bytes"
            case metricsTextfile = "metrics_textfile"
            case eventRetentionDays = "event_retention_days"
            case eventRetentionEvents = "event_retention_events"
            case store
            case storeLeaseSeconds = "store_lease_seconds"
            case maxConnectionsPerUID = "max_connections_per_uid"
            case reservedConnections = "reserved_connections"
            case maxBufferedResponseBytes = "max_buffered_response_bytes"
            case maxQueuedWrites = "max_queued_writes"
            case maxPartialFrameBytes = "max_partial_frame_bytes"
            case frameReadTimeout = "frame_read_timeout"
            case eventLoops = "event_loops"
        }

        public init() {}
    }

    public enum LoadError: Error, Sendable, Hashable, CustomStringConvertible {
        case unreadable(path: String, reason: String)
        case invalid(path: String, reason: String)
        case badValue(String)

        public var description: String {
            switch self {
            case .unreadable(let path, let reason): "cannot read config file \(path): \(reason)"
            case .invalid(let path, let reason): "invalid config file \(path): \(reason)"
            case .badValue(let reason): "invalid configuration: \(reason)"
            }
        }
    }

    public static let logLevels = ["trace", "debug", "info", "notice", "warning", "error", "critical"]

    /// Built-in defaults, with the systemd directory variables when set.
    public static func defaults(environment: [String: String]) -> DaemonConfiguration {
        let runtime = environment["RUNTIME_DIRECTORY"].flatMap { $0.split(separator: ":").first.map(String.init) }
        let state = environment["STATE_DIRECTORY"].flatMap { $0.split(separator: ":").first.map(String.init) }
        return DaemonConfiguration(
            socketPath: runtime.map { "\($0)/creditd.sock" } ?? "./.creditd/creditd.sock",
            stateDirectory: state ?? "./.creditd/state",
            clock: .system,
            now: nil,
            logLevel: "info",
            maxConnections: 256,
            maxInFlight: 256,
            idleTimeoutSeconds: 300,
            defaultDeadlineSeconds: 120,
            shutdownGraceSeconds: 10,
            maxSeats: 100_000,
            writerUIDs: [],
            writerGIDs: [],
            readerUIDs: [],
            readerGIDs: [],
            snapshotIntervalSeconds: 600,
            snapshotEveryRecords: 100_000,
            journalSegmentBytes: 64 << 20,
            metricsTextfile: nil
        )
    }

    /// The largest configuration file read (1 MiB).
    static let maxFileBytes = 1 << 20

    /// Reads a JSON config file as a layer. Unknown keys are rejected so typos are not ignored.
    public static func readFile(_ path: String) throws -> Layer {
        // Opened and read here rather than by Foundation, whose messages say neither what nor
        // why ("NSCocoaErrorDomain error 256" for a directory, "The operation could not be
        // completed" for a missing file): the system's reason names it.
        // O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer, and a reload
        // (or a start) stuck there held up every later reload and SIGTERM's drain. Only a
        // regular file is read; for one, O_NONBLOCK changes nothing.
        let descriptor = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            throw LoadError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw LoadError.unreadable(path: path, reason: String(cString: strerror(errno)))
        }
        switch info.st_mode & S_IFMT {
        case S_IFREG: break
        case S_IFDIR: throw LoadError.unreadable(path: path, reason: "it is a directory, not a JSON file")
        default: throw LoadError.unreadable(path: path, reason: "it is not a regular file (a FIFO, socket or device)")
        }
        // A configuration is a few hundred bytes; a file far larger is a mistake, and reading
        // it all would take the daemon's memory.
        guard info.st_size <= Self.maxFileBytes else {
            throw LoadError.unreadable(path: path, reason: "it is \(info.st_size) bytes, more than a configuration "
                                       + "file may be (\(Self.maxFileBytes))")
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65_536)
        while bytes.count <= Self.maxFileBytes {
            let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count > 0 {
                bytes.append(contentsOf: chunk[..<count])
            } else if count == 0 {
                break
            } else if errno != EINTR {
                throw LoadError.unreadable(path: path, reason: String(cString: strerror(errno)))
            }
        }
        guard bytes.count <= Self.maxFileBytes else {
            throw LoadError.unreadable(path: path, reason: "it grew past \(Self.maxFileBytes) bytes while it was read")
        }
        let data = Data(bytes)
        // Foundation's own message ("not valid JSON") does not say where; say it.
        if let syntax = JSONSyntaxError.find(in: bytes) {
            throw LoadError.invalid(path: path, reason: "malformed JSON at \(syntax)")
        }
        do {
            let keys = try JSONDecoder().decode(TopLevelKeys.self, from: data).keys
            let known = Set(Layer.CodingKeys.allCases.map(\.rawValue))
            if let unknown = keys.sorted().first(where: { !known.contains($0) }) {
                throw LoadError.invalid(path: path, reason: "unknown key \"\(unknown)\"")
            }
            return try JSONDecoder().decode(Layer.self, from: data)
        } catch let error as LoadError {
            throw error
        } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty {
            // Foundation's report of a number its type cannot hold: no key, "not valid JSON".
            throw LoadError.invalid(path: path, reason: numberOutOfItsType(in: data) ?? context.debugDescription)
        } catch let error as DecodingError {
            throw LoadError.invalid(path: path, reason: describe(error))
        } catch {
            throw LoadError.invalid(path: path, reason: "\(error)")
        }
    }

    /// `"max_seats": expected a whole number, found a string`: the key and what belongs there,
    /// in the file's terms (JSON), not the decoder's (`Int64`).
    private static func describe(_ error: DecodingError) -> String {
        let context: DecodingError.Context
        var reason: String
        switch error {
        case .typeMismatch(let type, let c), .valueNotFound(let type, let c):
            context = c
            // Foundation's text ends "but found a string instead."; keep what it found.
            let found = c.debugDescription.range(of: "found ").map { c.debugDescription[$0.upperBound...] }
                .map { $0.hasSuffix(" instead.") ? String($0.dropLast(" instead.".count)) : String($0) }
            reason = "expected \(jsonKind(type))"
            if case .valueNotFound = error { reason += ", found null" } else if let found { reason += ", found \(found)" }
        case .keyNotFound(_, let c), .dataCorrupted(let c):
            context = c
            reason = c.debugDescription
        @unknown default: return "\(error)"
        }
        let path = context.codingPath.map(\.stringValue).joined(separator: ".")
        return path.isEmpty ? reason : "\"\(path)\": \(reason)"
    }

    /// The key whose number its setting cannot hold (`1.5` or `3e10` where a whole number of
    /// some size belongs, `-1` in a list of uids), as `"max_seats": expected a whole number
    /// that fits, found 1.5` or `"writer_uids"[0]: ...`. Foundation reports such a number as
    /// "The given data was not valid JSON", with no key, although the file's syntax was
    /// checked: each number is decoded alone, with its key, to find it. Numbers are read as
    /// `Decimal`, which keeps every digit (a `Double` turned a valid Int64.max into 2^63).
    /// Every key is known by then (unknown keys are refused first), so each is plain ASCII.
    private static func numberOutOfItsType(in data: Data) -> String? {
        guard let members = try? JSONDecoder().decode(TopLevelNumbers.self, from: data).members else { return nil }
        func fits(_ json: String) -> Bool {
            do {
                _ = try JSONDecoder().decode(Layer.self, from: Data(json.utf8))
            } catch DecodingError.dataCorrupted(let context) where context.codingPath.isEmpty {
                return false
            } catch {}
            return true
        }
        for (key, member) in members.sorted(by: { $0.key < $1.key }) {
            switch member {
            case .number(let number):
                if !fits("{\"\(key)\": \(number)}") {
                    return "\"\(key)\": expected a whole number that fits, found \(number)"
                }
            case .list(let numbers):
                for (index, number) in numbers.enumerated() where !fits("{\"\(key)\": [\(number)]}") {
                    return "\"\(key)\"[\(index)]: expected a whole number that fits, found \(number)"
                }
            }
        }
        return nil
    }

    /// The top-level members whose values are numbers or lists of numbers.
    private struct TopLevelNumbers: Decodable {
        enum Member: Decodable {
            case number(Decimal)
            case list([Decimal])

            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let number = try? container.decode(Decimal.self) {
                    self = .number(number)
                } else {
                    self = .list(try container.decode([Decimal].self))
                }
            }
        }

        var members: [String: Member] = [:]

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: TopLevelKeys.AnyKey.self)
            for key in container.allKeys {
                if let member = try? container.decode(Member.self, forKey: key) { members[key.stringValue] = member }
            }
        }
    }

    private static func jsonKind(_ type: Any.Type) -> String {
        switch type {
        case is Int.Type, is Int32.Type, is Int64.Type, is UInt.Type, is UInt32.Type, is UInt64.Type: "a whole number"
        case is Double.Type, is Float.Type: "a number"
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        // The decoder reports a list it expected as `Array<Any>`.
        default: String(describing: type).hasPrefix("Array") ? "a list" : "a value of another kind"
        }
    }

    /// The file read when no `--config` is given: `creditd.json` in `$CONFIGURATION_DIRECTORY`
    /// (the unit sets it to /etc/creditd, root's and read-only to creditd), if it exists. Looked
    /// up at every load, so a file created later takes effect on the next reload.
    public static func defaultConfigFile(environment: [String: String]) -> String? {
        guard let directory = environment["CONFIGURATION_DIRECTORY"]?.split(separator: ":").first else { return nil }
        let path = "\(directory)/creditd.json"
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }

    /// defaults < file (`configFile`, else `defaultConfigFile`) < flags, then validated.
    public static func resolve(configFile: String?, flags: Layer, environment: [String: String]) throws -> DaemonConfiguration {
        var configuration = defaults(environment: environment)
        if let configFile = configFile ?? defaultConfigFile(environment: environment) {
            configuration.apply(try readFile(configFile))
        }
        configuration.apply(flags)
        try configuration.validate()
        return configuration
    }

    public mutating func apply(_ layer: Layer) {
        if let value = layer.socket { socketPath = value }
        if let value = layer.stateDir { stateDirectory = value }
        if let value = layer.clock { clock = value }
        if let value = layer.now { now = value }
        if let value = layer.logLevel { logLevel = value }
        if let value = layer.maxConnections { maxConnections = value }
        if let value = layer.maxInFlight { maxInFlight = value }
        if let value = layer.idleTimeout { idleTimeoutSeconds = value }
        if let value = layer.defaultDeadline { defaultDeadlineSeconds = value }
        if let value = layer.shutdownGrace { shutdownGraceSeconds = value }
        if let value = layer.maxSeats { maxSeats = value }
        if let value = layer.writerUIDs { writerUIDs = value }
        if let value = layer.writerGIDs { writerGIDs = value }
        if let value = layer.readerUIDs { readerUIDs = value }
        if let value = layer.readerGIDs { readerGIDs = value }
        if let value = layer.snapshotInterval { snapshotIntervalSeconds = value }
        if let value = layer.snapshotEveryRecords { snapshotEveryRecords = value }
        if let value = layer.journalSegmentBytes { journalSegmentBytes = value }
        if let value = layer.metricsTextfile { metricsTextfile = value.isEmpty ? nil : value }
        if let value = layer.eventRetentionDays { eventRetentionDays = value }
        if let value = layer.eventRetentionEvents { eventRetentionEvents = value }
        if let value = layer.store { store = value }
        if let value = layer.storeLeaseSeconds { storeLeaseSeconds = value }
        if let value = layer.maxConnectionsPerUID { maxConnectionsPerUID = value }
        if let value = layer.reservedConnections { reservedConnections = value }
        if let value = layer.maxBufferedResponseBytes { maxBufferedResponseBytes = value }
        if let value = layer.maxQueuedWrites { maxQueuedWrites = value }
        if let value = layer.maxPartialFrameBytes { maxPartialFrameBytes = value }
        if let value = layer.frameReadTimeout { frameReadTimeoutSeconds = value }
        if let value = layer.eventLoops { eventLoops = value }
    }

    public func validate() throws {
        guard !socketPath.isEmpty else { throw LoadError.badValue("socket path is empty") }
        guard socketPath.utf8.count <= TTRPCServer.maxSocketPathBytes else {
            throw LoadError.badValue(
                "socket path is longer than \(TTRPCServer.maxSocketPathBytes) bytes (\(socketPath.utf8.count)): \(socketPath)")
        }
        guard Self.logLevels.contains(logLevel) else {
            throw LoadError.badValue("log level \"\(logLevel)\" is not one of \(Self.logLevels.joined(separator: ", "))")
        }
        guard maxConnections > 0 else { throw LoadError.badValue("max connections must be > 0") }
        guard maxInFlight > 0 else { throw LoadError.badValue("max in-flight must be > 0") }
        guard idleTimeoutSeconds >= 0, idleTimeoutSeconds.isFinite else { throw LoadError.badValue("idle timeout must be >= 0") }
        guard defaultDeadlineSeconds >= 0, defaultDeadlineSeconds.isFinite else { throw LoadError.badValue("default deadline must be >= 0") }
        guard shutdownGraceSeconds >= 0, shutdownGraceSeconds.isFinite else { throw LoadError.badValue("shutdown grace must be >= 0") }
        guard maxSeats > 0 else { throw LoadError.badValue("max seats must be > 0") }
        guard snapshotIntervalSeconds > 0, snapshotIntervalSeconds.isFinite else { throw LoadError.badValue("snapshot interval must be > 0") }
        guard snapshotEveryRecords > 0 else { throw LoadError.badValue("snapshot every records must be > 0") }
        guard journalSegmentBytes >= 4096 else { throw LoadError.badValue("journal segment bytes must be at least 4096") }
        guard eventRetentionDays >= Self.minimumEventRetentionDays, eventRetentionDays.isFinite else {
            throw LoadError.badValue("event retention days must be at least \(Int(Self.minimumEventRetentionDays)) (docs/billing-rules.md E5)")
        }
        guard eventRetentionEvents >= Self.minimumEventRetentionEvents else {
            throw LoadError.badValue("event retention events must be at least \(Self.minimumEventRetentionEvents) (docs/billing-rules.md E5)")
        }
        guard store == "file" || store.hasPrefix("postgres:") else {
            throw LoadError.badValue("store \"\(store)\" is neither \"file\" nor \"postgres:CONNINFO\"")
        }
        guard storeLeaseSeconds >= 0.5, storeLeaseSeconds <= 600 else {
            throw LoadError.badValue("store lease seconds must be from 0.5 to 600")
        }
        guard maxConnectionsPerUID >= 0 else { throw LoadError.badValue("max connections per uid must be >= 0 (0: a quarter of max connections)") }
        guard reservedConnections >= -1, reservedConnections < maxConnections else {
            throw LoadError.badValue("reserved connections must be below max connections")
        }
        guard maxBufferedResponseBytes >= 64 << 10 else { throw LoadError.badValue("max buffered response bytes must be at least 65536") }
        guard maxQueuedWrites > 0 else { throw LoadError.badValue("max queued writes must be > 0") }
        guard maxPartialFrameBytes >= 0 else { throw LoadError.badValue("max partial frame bytes must be >= 0") }
        guard frameReadTimeoutSeconds > 0, frameReadTimeoutSeconds.isFinite else { throw LoadError.badValue("frame read timeout must be > 0") }
        guard (0...Self.maximumEventLoops).contains(eventLoops) else {
            throw LoadError.badValue("event loops must be from 0 (one per core but one) to \(Self.maximumEventLoops)")
        }
    }

    /// The event loop threads to start: `eventLoops`, or by default one per core but one, and at
    /// least one. The writer thread applies and fsyncs every write; with a loop on each core as
    /// well, a two-core host ran three busy threads, and each durable batch woke both loops to
    /// answer it. One loop there took the CPU per write at 16 in flight from 18.4-21.7 us to
    /// 16.5-17.1 us, while reads still served 1.4x containerd's Go ttrpc echo server
    /// (BENCHMARKS.md).
    public func eventLoopCount(cores: Int = System.coreCount) -> Int {
        eventLoops > 0 ? eventLoops : max(1, cores - 1)
    }

    /// `snapshotIntervalSeconds` as a Duration.
    public var snapshotInterval: Duration { .milliseconds(Int64(snapshotIntervalSeconds * 1000)) }

    /// The server settings this configuration asks for.
    public var serverSettings: ServerSettings {
        ServerSettings(
            maxConnections: maxConnections,
            maxInFlightPerConnection: maxInFlight,
            idleTimeout: idleTimeoutSeconds > 0 ? .milliseconds(Int64(idleTimeoutSeconds * 1000)) : nil,
            defaultDeadline: defaultDeadlineSeconds > 0 ? .milliseconds(Int64(defaultDeadlineSeconds * 1000)) : nil,
            shutdownGracePeriod: .milliseconds(Int64(shutdownGraceSeconds * 1000)),
            authorizer: .policy(authorizationPolicy),
            maxConnectionsPerUID: maxConnectionsPerUID > 0 ? maxConnectionsPerUID : nil,
            reservedConnections: reservedConnections >= 0 ? reservedConnections : nil,
            maxBufferedResponseBytes: maxBufferedResponseBytes,
            maxQueuedWritesPerConnection: maxQueuedWrites,
            maxPartialFrameBytes: maxPartialFrameBytes,
            frameReadTimeout: .milliseconds(Int64(frameReadTimeoutSeconds * 1000))
        )
    }

    public var authorizationPolicy: AuthorizationPolicy {
        AuthorizationPolicy(
            writerUIDs: Set(writerUIDs),
            writerGIDs: Set(writerGIDs),
            readerUIDs: Set(readerUIDs),
            readerGIDs: Set(readerGIDs)
        )
    }
}

/// The keys of a JSON object, whatever their values.
private struct TopLevelKeys: Decodable {
    struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    let keys: [String]

    init(from decoder: any Decoder) throws {
        keys = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)
    }
}

// MARK: reload

extension DaemonConfiguration {
    /// One setting as a reload sees it: its key, whether only a restart changes it, how its
    /// value reads in the reload's answer, and how to keep the running value.
    struct ReloadedSetting {
        let key: Layer.CodingKeys
        let restartOnly: Bool
        let differs: (DaemonConfiguration, DaemonConfiguration) -> Bool
        let show: (DaemonConfiguration) -> String
        let keep: (inout DaemonConfiguration, DaemonConfiguration) -> Void

        init<T: Equatable>(_ key: Layer.CodingKeys, _ path: WritableKeyPath<DaemonConfiguration, T>, restartOnly: Bool = false,
                           show: @escaping (T) -> String = { "\($0)" }) {
            self.init(key, path, restartOnly: restartOnly, effective: { $0[keyPath: path] }, show: show)
        }

        /// A setting compared and shown by the value in force (`effective`), not as written:
        /// 0 for "a quarter of max_connections" was shown as "0 -> 64" for a change that
        /// changed nothing, and a list in another order as a change.
        init<T, E: Equatable>(_ key: Layer.CodingKeys, _ path: WritableKeyPath<DaemonConfiguration, T>, restartOnly: Bool = false,
                              effective: @escaping (DaemonConfiguration) -> E, show: @escaping (E) -> String = { "\($0)" }) {
            self.key = key
            self.restartOnly = restartOnly
            self.differs = { effective($0) != effective($1) }
            self.show = { show(effective($0)) }
            self.keep = { $0[keyPath: path] = $1[keyPath: path] }
        }
    }

    /// Every setting of the configuration file, in its order. One table, so that a setting
    /// cannot be applied by a reload without its answer naming it (a test checks that every
    /// key is here): a reload that changed only `max_connections_per_uid` answered "nothing
    /// changed" while the new limit was in force.
    static var reloadedSettings: [ReloadedSetting] {
        // Id lists are sets (authorization asks "is it in"): compared and shown sorted, once each.
        let ids: (KeyPath<DaemonConfiguration, [UInt32]>) -> (DaemonConfiguration) -> [UInt32] = { path in
            { Array(Set($0[keyPath: path])).sorted() }
        }
        let showIDs: ([UInt32]) -> String = { "[" + $0.map(String.init).joined(separator: ",") + "]" }
        // Seconds as written in the file: 300, not 300.0.
        let seconds: (Double) -> String = { $0 == $0.rounded() && abs($0) < 1e15 ? String(Int64($0)) : "\($0)" }
        return [
            ReloadedSetting(.socket, \.socketPath, restartOnly: true),
            ReloadedSetting(.stateDir, \.stateDirectory, restartOnly: true),
            ReloadedSetting(.clock, \.clock, restartOnly: true) { $0.rawValue },
            ReloadedSetting(.now, \.now, restartOnly: true) { $0 ?? "none" },
            ReloadedSetting(.logLevel, \.logLevel),
            ReloadedSetting(.maxConnections, \.maxConnections),
            ReloadedSetting(.maxInFlight, \.maxInFlight),
            ReloadedSetting(.idleTimeout, \.idleTimeoutSeconds, show: seconds),
            ReloadedSetting(.defaultDeadline, \.defaultDeadlineSeconds, show: seconds),
            ReloadedSetting(.shutdownGrace, \.shutdownGraceSeconds, show: seconds),
            ReloadedSetting(.maxSeats, \.maxSeats),
            ReloadedSetting(.writerUIDs, \.writerUIDs, effective: ids(\.writerUIDs), show: showIDs),
            ReloadedSetting(.writerGIDs, \.writerGIDs, effective: ids(\.writerGIDs), show: showIDs),
            ReloadedSetting(.readerUIDs, \.readerUIDs, effective: ids(\.readerUIDs), show: showIDs),
            ReloadedSetting(.readerGIDs, \.readerGIDs, effective: ids(\.readerGIDs), show: showIDs),
            ReloadedSetting(.snapshotInterval, \.snapshotIntervalSeconds, show: seconds),
            ReloadedSetting(.snapshotEveryRecords, \.snapshotEveryRecords),
            ReloadedSetting(.journalSegmentBytes, \.journalSegmentBytes, restartOnly: true),
            ReloadedSetting(.metricsTextfile, \.metricsTextfile) { $0 ?? "none" },
            ReloadedSetting(.eventRetentionDays, \.eventRetentionDays),
            ReloadedSetting(.eventRetentionEvents, \.eventRetentionEvents),
            ReloadedSetting(.store, \.store, restartOnly: true),
            ReloadedSetting(.storeLeaseSeconds, \.storeLeaseSeconds, restartOnly: true, show: seconds),
            // 0 and -1 stand for defaults that follow max_connections: the limits in force.
            ReloadedSetting(.maxConnectionsPerUID, \.maxConnectionsPerUID, effective: { $0.serverSettings.maxConnectionsPerUID }),
            ReloadedSetting(.reservedConnections, \.reservedConnections, effective: { $0.serverSettings.reservedConnections }),
            ReloadedSetting(.maxBufferedResponseBytes, \.maxBufferedResponseBytes),
            ReloadedSetting(.maxQueuedWrites, \.maxQueuedWrites),
            ReloadedSetting(.maxPartialFrameBytes, \.maxPartialFrameBytes),
            ReloadedSetting(.frameReadTimeout, \.frameReadTimeoutSeconds, show: seconds),
            ReloadedSetting(.eventLoops, \.eventLoops, restartOnly: true),
        ]
    }

    /// What a reload from `running` to `loaded` does: the configuration to run with (`loaded`,
    /// with the running values of the restart-only settings), the changes it applies ("max_seats
    /// 100000 -> 5") and the restart-only settings that differ, each in file order.
    public static func reload(from running: DaemonConfiguration, to loaded: DaemonConfiguration)
        -> (applied: DaemonConfiguration, changes: [String], restartOnly: [String]) {
        var applied = loaded
        var changes: [String] = []
        var restartOnly: [String] = []
        for setting in reloadedSettings where setting.differs(running, loaded) {
            if setting.restartOnly {
                restartOnly.append(setting.key.rawValue)
                setting.keep(&applied, running)
            } else {
                changes.append("\(setting.key.rawValue) \(setting.show(running)) -> \(setting.show(loaded))")
            }
        }
        return (applied, changes, restartOnly)
    }
}
