#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Logging
import Synchronization

/// How log lines are written to stderr.
public enum LogLineFormat: Sendable, Equatable {
    /// stderr is connected to journald: `<N>` syslog priority prefix, no timestamp
    /// (journald stamps each line; `SyslogLevelPrefix=` turns `<N>` into the priority).
    case journal
    /// Anything else (a terminal, a file, a container log): the same `<N>` prefix (the
    /// docs/operations.md §6 asks for it on every line; a syslog or container log collector reads it
    /// too), then an ISO-8601 UTC timestamp and the level name for a human reader.
    case plain

    /// `.journal` when `$JOURNAL_STREAM` (`dev:inode`) names the same file as
    /// `fstat(fd)`; a mere presence of the variable is not enough, because a child
    /// whose stderr was redirected still inherits it.
    public static func detect(environment: [String: String], fd: Int32 = STDERR_FILENO) -> LogLineFormat {
        guard let value = environment["JOURNAL_STREAM"] else { return .plain }
        let parts = value.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let device = parseDecimal(String(parts[0])),
              let inode = parseDecimal(String(parts[1]))
        else { return .plain }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .plain }
        return UInt64(info.st_dev) == device && UInt64(info.st_ino) == inode ? .journal : .plain
    }

    /// Detects from the process environment and fd 2.
    public static func detectForStandardError() -> LogLineFormat {
        detect(environment: ProcessEnvironment.values(for: ["JOURNAL_STREAM"]), fd: STDERR_FILENO)
    }
}

/// A log level shared by every handler created from one bootstrap, so a
/// configuration reload can change the level of loggers that already exist.
public final class SharedLogLevel: Sendable {
    private let raw: Atomic<UInt8>

    public init(_ level: Logger.Level) {
        raw = Atomic(Self.encode(level))
    }

    public var level: Logger.Level {
        get { Self.decode(raw.load(ordering: .relaxed)) }
        set { raw.store(Self.encode(newValue), ordering: .relaxed) }
    }

    private static let order: [Logger.Level] = [.trace, .debug, .info, .notice, .warning, .error, .critical]

    private static func encode(_ level: Logger.Level) -> UInt8 {
        UInt8(order.firstIndex(of: level)!)
    }

    private static func decode(_ value: UInt8) -> Logger.Level {
        order[Int(value)]
    }
}

/// Writes whole lines to one fd. A lock keeps concurrent records from
/// interleaving when `write(2)` returns short on a pipe or stream socket.
///
/// Synchronous by default (the write blocks the caller). With a `queueCapacity`, `write`
/// only queues the line and a writer thread (a serial dispatch queue) does the blocking
/// write, so a slow reader of stderr never stalls the caller (an event loop); when the queue
/// is full the line is dropped and counted, and once the queue drains a line says how many
/// were dropped.
public final class LogLineWriter: Sendable {
    private struct Queue {
        var lines: [String] = []
        var writing = false
        var dropped: UInt64 = 0
        var droppedUnreported: UInt64 = 0
    }

    private let fd: Mutex<Int32>
    private let capacity: Int?
    private let queue = Mutex(Queue())
    private let thread: DispatchQueue?

    public init(fd: Int32, queueCapacity: Int? = nil) {
        self.fd = Mutex(fd)
        capacity = queueCapacity
        thread = queueCapacity == nil ? nil : DispatchQueue(label: "creditd.log-writer")
    }

    /// Writes to fd 2, blocking the caller.
    public static let standardError = LogLineWriter(fd: STDERR_FILENO)

    /// Writes to fd 2 from a writer thread; at most 10,000 lines wait, more are dropped.
    public static let queuedStandardError = LogLineWriter(fd: STDERR_FILENO, queueCapacity: 10_000)

    /// Lines dropped because the queue was full.
    public var droppedLines: UInt64 { queue.withLock { $0.dropped } }

    public func write(line: String) {
        guard let capacity, let thread else {
            writeNow(line: line)
            return
        }
        let start = queue.withLock { state -> Bool in
            guard state.lines.count < capacity else {
                state.dropped += 1
                state.droppedUnreported += 1
                return false
            }
            state.lines.append(line)
            guard !state.writing else { return false }
            state.writing = true
            return true
        }
        if start { thread.async { self.drain() } }
    }

    /// Waits (at most `timeout`) until queued lines are written; for the end of the process.
    public func flush(timeout: Duration = .seconds(2)) {
        guard let thread else { return }
        let done = DispatchSemaphore(value: 0)
        thread.async { done.signal() }
        let (seconds, attoseconds) = timeout.components
        _ = done.wait(timeout: .now() + .nanoseconds(Int(seconds) * 1_000_000_000 + Int(attoseconds / 1_000_000_000)))
    }

    private func drain() {
        while true {
            let (batch, dropped) = queue.withLock { state -> ([String], UInt64) in
                let batch = state.lines
                state.lines.removeAll(keepingCapacity: true)
                var dropped: UInt64 = 0
                if batch.isEmpty {
                    dropped = state.droppedUnreported
                    state.droppedUnreported = 0
                    if dropped == 0 { state.writing = false }
                }
                return (batch, dropped)
            }
            if batch.isEmpty {
                guard dropped > 0 else { return }
                writeNow(line: "[creditd] \(dropped) log lines dropped: log output too slow")
                continue
            }
            for line in batch { writeNow(line: line) }
        }
    }

    /// Writes one line now, blocking until it is written.
    public func writeNow(line: String) {
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        fd.withLock { fd in
            var offset = 0
            while offset < bytes.count {
                let written = bytes.withUnsafeBytes { buffer in
                    Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                }
                if written < 0 {
                    if errno == EINTR { continue }
                    return  // nowhere left to report a logging failure
                }
                offset += written
            }
        }
    }
}

/// A swift-log handler for daemons under systemd: one line per record on stderr.
///
/// - `.journal`: `<6>[label] message key=value …`
/// - `.plain`:   `<6>2025-01-31T12:00:00.123Z info [label] message key=value …`
///
/// Control characters (newlines included) are escaped so one record is one line.
public struct JournaldLogHandler: LogHandler {
    public let label: String
    public let format: LogLineFormat
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?

    private let writer: LogLineWriter
    private let sharedLevel: SharedLogLevel
    /// Set when someone assigns `logger.logLevel`; otherwise the shared level applies.
    private var localLevel: Logger.Level?

    public var logLevel: Logger.Level {
        get { localLevel ?? sharedLevel.level }
        set { localLevel = newValue }
    }

    public init(
        label: String,
        format: LogLineFormat,
        level: SharedLogLevel,
        writer: LogLineWriter = .standardError,
        metadataProvider: Logger.MetadataProvider? = nil
    ) {
        self.label = label
        self.format = format
        self.sharedLevel = level
        self.writer = writer
        self.metadataProvider = metadataProvider
    }

    /// Installs the handler process-wide (`LoggingSystem.bootstrap`, callable once)
    /// with the format detected from `$JOURNAL_STREAM` and fd 2. Returns the shared
    /// level, which a reload may change.
    @discardableResult
    public static func bootstrap(level: Logger.Level = .info, writer: LogLineWriter = .standardError) -> SharedLogLevel {
        let shared = SharedLogLevel(level)
        let format = LogLineFormat.detectForStandardError()
        LoggingSystem.bootstrap { label in
            JournaldLogHandler(label: label, format: format, level: shared, writer: writer)
        }
        return shared
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() {
            merged.merge(provided) { _, new in new }
        }
        if let own = event.metadata {
            merged.merge(own) { _, new in new }
        }
        if let error = event.error, merged["error"] == nil {
            merged["error"] = "\(error)"
        }
        writer.write(line: Self.formatLine(
            format: format,
            level: event.level,
            label: label,
            message: event.message.description,
            metadata: merged,
            timestamp: format == .plain ? Self.timestamp() : ""
        ))
    }

    // MARK: Formatting

    /// syslog priorities as journald's `SyslogLevelPrefix=` reads them.
    public static func priority(of level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// Builds one line (without its newline). `timestamp` is used only by `.plain`.
    public static func formatLine(
        format: LogLineFormat,
        level: Logger.Level,
        label: String,
        message: String,
        metadata: Logger.Metadata,
        timestamp: String
    ) -> String {
        var line: String
        switch format {
        case .journal:
            line = "<\(priority(of: level))>"
        case .plain:
            line = "<\(priority(of: level))>\(timestamp) \(level.rawValue) "
        }
        line += "[\(escapeControlCharacters(label))] \(escapeControlCharacters(message))"
        for key in metadata.keys.sorted() {
            line += " \(escapeControlCharacters(key))=\(renderValue(metadata[key]!))"
        }
        return line
    }

    /// Renders a metadata value; quotes it when it is empty or holds a space,
    /// quote, backslash or `=`, so `key=value` pairs stay parseable.
    static func renderValue(_ value: Logger.Metadata.Value) -> String {
        let text = "\(value)"
        let needsQuotes = text.isEmpty || text.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\\" })
        guard needsQuotes else { return escapeControlCharacters(text) }
        var quoted = "\""
        for character in text {
            if character == "\"" || character == "\\" { quoted.append("\\") }
            quoted.append(character)
        }
        quoted.append("\"")
        return escapeControlCharacters(quoted)
    }

    /// `\n`, `\r`, `\t` and other C0/DEL controls become visible escapes.
    public static func escapeControlCharacters(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where isControl(scalar):
                let hex = String(scalar.value, radix: 16)
                result += "\\x" + (hex.count < 2 ? "0" + hex : hex)
            default:
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || scalar.value == 0x7F || scalar == "\u{2028}" || scalar == "\u{2029}"
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC from CLOCK_REALTIME.
    public static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return formatTimestamp(seconds: now.tv_sec, milliseconds: Int(now.tv_nsec / 1_000_000))
    }

    static func formatTimestamp(seconds: time_t, milliseconds: Int) -> String {
        var time = seconds
        var parts = tm()
        gmtime_r(&time, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))"
            + "T\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))"
            + ".\(pad(Int32(milliseconds), 3))Z"
    }
}
