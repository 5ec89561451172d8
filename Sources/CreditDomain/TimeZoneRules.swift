import Foundation
import Synchronization

/// An IANA time zone (T1). This is the only place Foundation is used: it answers the UTC offset
/// at an instant. Everything else is integer arithmetic on epoch days and seconds.
public struct TimeZoneRules: Sendable, CustomStringConvertible {
    /// The IANA id as given at creation (e.g. `America/Los_Angeles`).
    public let identifier: String
    private let zone: TimeZone
    /// The zone's offsets as a table, shared by every value of the same zone; nil when the
    /// table could not be checked against Foundation (then every answer comes from Foundation).
    private let table: UTCOffsetTable?

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
        self.table = UTCOffsetTable.shared(for: identifier, zone: zone)
    }

    public static let utc = TimeZoneRules(identifier: "UTC")!

    private static let knownIdentifiers: Set<String> = Set(TimeZone.knownTimeZoneIdentifiers)
    private static let utcAliases: Set<String> = ["UTC", "GMT", "Etc/UTC", "Etc/GMT", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu"]

    /// Seconds east of UTC at the instant `seconds` after the epoch.
    public func utcOffsetSeconds(atEpochSecond seconds: Int64) -> Int64 {
        // Optional chaining reads the shared table in place; `if let table` retained and
        // released it on every call, six times per `startOfDay`.
        if let offset = table?.offset(atEpochSecond: seconds) { return offset }
        return UTCOffsetTable.foundationOffset(zone, seconds)
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
        for probe in stride(from: localMidnight - 108_000, through: localMidnight + 108_000, by: 108_000) {
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

/// One zone's UTC offsets from 1900 to 2200: the instants where the offset changes and the
/// offset from each on. Foundation answers an offset in about a microsecond behind a lock;
/// recovery asks for millions (every credit's local due midnight), so each zone's answers
/// are taken from Foundation once, checked, and then looked up by binary search.
final class UTCOffsetTable: Sendable {
    static let start: Int64 = -2_208_988_800  // 1900-01-01T00:00:00Z
    static let end: Int64 = 7_258_118_400  // 2200-01-01T00:00:00Z
    /// Ascending instants (epoch seconds) at which `offsets[i + 1]` takes over.
    let transitions: [Int64]
    /// `offsets[0]` is in force from `start` to the first transition.
    let offsets: [Int64]

    private static let tables = Mutex<[String: UTCOffsetTable?]>([:])

    static func shared(for identifier: String, zone: TimeZone) -> UTCOffsetTable? {
        if let known = tables.withLock({ $0[identifier] }) { return known }
        let built = UTCOffsetTable(zone: zone)
        tables.withLock { $0[identifier] = built }
        return built
    }

    static func foundationOffset(_ zone: TimeZone, _ seconds: Int64) -> Int64 {
        Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(seconds))))
    }

    /// Nil when Foundation's transitions do not account for every offset change it reports:
    /// each interval's offset is checked at its first and last second.
    init?(zone: TimeZone) {
        var transitions: [Int64] = []
        var offsets = [UTCOffsetTable.foundationOffset(zone, UTCOffsetTable.start)]
        var at = UTCOffsetTable.start
        while let next = zone.nextDaylightSavingTimeTransition(after: Date(timeIntervalSince1970: TimeInterval(at))) {
            let seconds = Int64(next.timeIntervalSince1970.rounded(.up))
            guard seconds > at else { return nil }
            if seconds >= UTCOffsetTable.end { break }
            let offset = UTCOffsetTable.foundationOffset(zone, seconds)
            guard UTCOffsetTable.foundationOffset(zone, seconds - 1) == offsets[offsets.count - 1] else { return nil }
            if offset != offsets[offsets.count - 1] {
                transitions.append(seconds)
                offsets.append(offset)
            }
            at = seconds
        }
        guard UTCOffsetTable.foundationOffset(zone, UTCOffsetTable.end - 1) == offsets[offsets.count - 1] else { return nil }
        self.transitions = transitions
        self.offsets = offsets
    }

    /// The offset at `seconds`, or nil outside the table's years.
    func offset(atEpochSecond seconds: Int64) -> Int64? {
        guard seconds >= UTCOffsetTable.start, seconds < UTCOffsetTable.end else { return nil }
        // The number of transitions at or before `seconds`.
        var low = 0, high = transitions.count
        while low < high {
            let middle = (low + high) / 2
            if transitions[middle] <= seconds { low = middle + 1 } else { high = middle }
        }
        return offsets[low]
    }
}
