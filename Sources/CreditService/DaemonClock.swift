import CreditDomain
import Glibc
import Synchronization

/// Where creditd's "now" comes from.
///
/// The system clock follows wall time but never runs backwards within one
/// process or across the journal (an NTP step back would otherwise let a
/// later command be dated before an earlier one). The manual clock moves only
/// with `Admin.AdvanceClock`; tests and rehearsals use it to check dates and
/// deadlines deterministically.
public final class DaemonClock: Sendable {
    public enum Mode: String, Sendable {
        case system
        case manual
    }

    public let mode: Mode
    // The last instant handed out (system) or the manual reading.
    private let reading: Mutex<Instant>

    public init(mode: Mode, start: Instant? = nil) {
        self.mode = mode
        self.reading = Mutex(start ?? DaemonClock.wallClock())
    }

    /// The current instant; never earlier than one returned before.
    public func now() -> Instant {
        switch mode {
        case .manual:
            return reading.withLock { $0 }
        case .system:
            let wall = DaemonClock.wallClock()
            return reading.withLock { last in
                if wall > last { last = wall }
                return last
            }
        }
    }

    /// Makes sure the clock never reads earlier than `instant` (after recovery:
    /// the newest instant in the journal).
    public func notBefore(_ instant: Instant) {
        reading.withLock { if instant > $0 { $0 = instant } }
    }

    public enum AdvanceError: Error, Equatable {
        case notManual
        case backwards(current: Instant)
    }

    /// Moves the manual clock to `instant`.
    public func set(to instant: Instant) throws(AdvanceError) {
        guard mode == .manual else { throw .notManual }
        try reading.withLock { (current: inout Instant) throws(AdvanceError) in
            guard instant >= current else { throw .backwards(current: current) }
            current = instant
        }
    }

    static func wallClock() -> Instant {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Instant(nanosecondsSinceEpoch: Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec))
    }
}

extension Instant {
    /// RFC 3339 in UTC, e.g. 2025-04-11T12:00:00Z (fractions only when present).
    public var rfc3339: String { RFC3339.format(unixNanos: nanosecondsSinceEpoch) }

    /// Parses RFC 3339 (`Z` or a numeric offset, optional fraction), exactly.
    public init?(rfc3339 text: String) {
        guard let nanos = RFC3339.parse(text) else { return nil }
        self.init(nanosecondsSinceEpoch: nanos)
    }
}
