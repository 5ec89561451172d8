import Foundation

/// An IANA time zone (T1). This is the only place Foundation is used: it answers the UTC offset
/// at an instant. Everything else is integer arithmetic on epoch days and seconds.
public struct TimeZoneRules: Sendable, CustomStringConvertible {
    /// The IANA id as given at creation (e.g. `America/Los_Angeles`).
    public let identifier: String
    private let zone: TimeZone

    /// The zone with this IANA id, or nil for an unknown id. Foundation also accepts custom
    /// offsets (`GMT+5`) and abbreviations (`PST`); those are not IANA ids and are refused.
    public init?(identifier: String) {
        guard !identifier.isEmpty, identifier.unicodeScalars.count <= 64,
              let zone = TimeZone(identifier: identifier) else { return nil }
        let listed = TimeZoneRules.knownIdentifiers.contains(identifier)
            || TimeZoneRules.utcAliases.contains(identifier)
        // Links of the tz database (US/Pacific, Etc/GMT+5) resolve to themselves.
        let linked = identifier.contains("/") && zone.identifier == identifier
        guard listed || linked else { return nil }
        self.identifier = identifier
        self.zone = zone
    }

    public static let utc = TimeZoneRules(identifier: "UTC")!

    private static let knownIdentifiers: Set<String> = Set(TimeZone.knownTimeZoneIdentifiers)
    private static let utcAliases: Set<String> = ["UTC", "GMT", "Etc/UTC", "Etc/GMT", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu"]

    /// Seconds east of UTC at the instant `seconds` after the epoch.
    public func utcOffsetSeconds(atEpochSecond seconds: Int64) -> Int64 {
        Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(seconds))))
    }

    /// The civil date of `instant` in this zone.
    public func civilDate(of instant: Instant) -> CivilDate {
        let seconds = instant.secondsSinceEpoch
        let local = seconds &+ utcOffsetSeconds(atEpochSecond: seconds)
        return CivilDate(epochDay: Int32(truncatingIfNeeded: floorDivide(local, 86_400)))
    }

    /// "00:00 local on `date`": the first instant of `date` in this zone (T1). Where a DST
    /// change skips midnight, the first instant that exists (e.g. 01:00 local).
    public func startOfDay(_ date: CivilDate) -> Instant {
        let localMidnight = Int64(date.epochDay) * 86_400
        // Midnight exists when some offset in force near it maps it back to itself.
        var first: Int64?
        for probe in [localMidnight - 108_000, localMidnight, localMidnight + 108_000] {
            let offset = utcOffsetSeconds(atEpochSecond: probe)
            let instant = localMidnight - offset
            if utcOffsetSeconds(atEpochSecond: instant) == offset, instant < (first ?? .max) { first = instant }
        }
        if let first {
            return Instant(secondsSinceEpoch: first)
        }
        // Midnight was skipped: the first second whose local time is at or after it.
        var low = localMidnight - 108_000
        var high = localMidnight + 108_000
        while low < high {
            let mid = low + (high - low) / 2
            if mid + utcOffsetSeconds(atEpochSecond: mid) >= localMidnight { high = mid } else { low = mid + 1 }
        }
        return Instant(secondsSinceEpoch: low)
    }

    public var description: String { identifier }
}

extension TimeZoneRules: Hashable {
    public static func == (lhs: TimeZoneRules, rhs: TimeZoneRules) -> Bool {
        lhs.identifier == rhs.identifier
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(identifier)
    }
}
