/// A point in time: signed nanoseconds since 1970-01-01T00:00:00Z.
///
/// Instants are only compared and offset by fixed elapsed durations (the refund windows, W2);
/// every billing decision uses civil dates (T1).
public struct Instant: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var nanosecondsSinceEpoch: Int64

    public init(nanosecondsSinceEpoch: Int64) {
        self.nanosecondsSinceEpoch = nanosecondsSinceEpoch
    }

    public static let nanosecondsPerSecond: Int64 = 1_000_000_000
    public static let nanosecondsPerHour: Int64 = 3_600 * nanosecondsPerSecond

    /// Whole seconds since the epoch, rounded toward −∞.
    public var secondsSinceEpoch: Int64 {
        floorDivide(nanosecondsSinceEpoch, Instant.nanosecondsPerSecond)
    }

    /// The instant `seconds` after the epoch, saturating at the representable range.
    public init(secondsSinceEpoch seconds: Int64) {
        let (value, overflow) = seconds.multipliedReportingOverflow(by: Instant.nanosecondsPerSecond)
        self.nanosecondsSinceEpoch = overflow ? (seconds < 0 ? .min : .max) : value
    }

    /// The UTC instant at `hour:minute:second` on `date` (a convenience for fixed instants).
    public init(utc date: CivilDate, hour: Int = 0, minute: Int = 0, second: Int = 0, nanosecond: Int64 = 0) {
        let seconds = Int64(date.epochDay) * 86_400 + Int64(hour) * 3_600 + Int64(minute) * 60 + Int64(second)
        self.init(nanosecondsSinceEpoch: Instant(secondsSinceEpoch: seconds).nanosecondsSinceEpoch &+ nanosecond)
    }

    /// This instant moved by `nanoseconds`, saturating instead of trapping.
    public func adding(nanoseconds: Int64) -> Instant {
        let (value, overflow) = nanosecondsSinceEpoch.addingReportingOverflow(nanoseconds)
        if overflow { return Instant(nanosecondsSinceEpoch: nanoseconds > 0 ? .max : .min) }
        return Instant(nanosecondsSinceEpoch: value)
    }

    public func adding(hours: Int64) -> Instant {
        adding(nanoseconds: hours.multipliedReportingOverflow(by: Instant.nanosecondsPerHour).partialValue)
    }

    public static func < (lhs: Instant, rhs: Instant) -> Bool {
        lhs.nanosecondsSinceEpoch < rhs.nanosecondsSinceEpoch
    }

    /// RFC 3339 in UTC, e.g. `2025-04-08T00:00:00Z` (fraction only when non-zero).
    public var description: String {
        let seconds = secondsSinceEpoch
        let fraction = nanosecondsSinceEpoch &- seconds &* Instant.nanosecondsPerSecond
        let day = floorDivide(seconds, 86_400)
        let secondOfDay = seconds - day * 86_400
        let date = CivilDate(epochDay: Int32(truncatingIfNeeded: day))
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        var text = "\(date)T\(two(secondOfDay / 3600)):\(two(secondOfDay / 60 % 60)):\(two(secondOfDay % 60))"
        if fraction != 0 {
            let digits = String(fraction)
            text += "." + String(repeating: "0", count: 9 - digits.count) + digits
        }
        return text + "Z"
    }
}

/// Division rounding toward −∞ (Swift's `/` truncates toward zero). `divisor` must be > 0.
@inlinable
func floorDivide<T: BinaryInteger>(_ dividend: T, _ divisor: T) -> T {
    let quotient = dividend / divisor
    return (dividend % divisor != 0 && dividend < 0) ? quotient - 1 : quotient
}
