/// A proleptic Gregorian calendar date (Y-M-D) without a time zone, stored as its epoch day.
///
/// All day arithmetic is exact integer arithmetic on epoch days (T1): no calendar library,
/// no division of seconds by 86,400.
public struct CivilDate: Sendable, Hashable, Comparable, CustomStringConvertible, LosslessStringConvertible {
    /// Days since 1970-01-01 (negative before).
    public let epochDay: Int32

    public init(epochDay: Int32) {
        self.epochDay = epochDay
    }

    /// A valid date, or nil (month 1–12, day within the month, year 1–9999).
    public init?(year: Int, month: Int, day: Int) {
        guard (1...9999).contains(year), (1...12).contains(month),
              day >= 1, day <= CivilDate.daysInMonth(year: year, month: month) else { return nil }
        self.epochDay = Int32(CivilDate.epochDay(year: year, month: month, day: day))
    }

    /// Parses exactly `YYYY-MM-DD`.
    public init?(_ text: String) {
        let bytes = Array(text.utf8)
        guard bytes.count == 10, bytes[4] == UInt8(ascii: "-"), bytes[7] == UInt8(ascii: "-") else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for index in range {
                let byte = bytes[index]
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10) else { return nil }
        self.init(year: year, month: month, day: day)
    }

    public var year: Int { components.year }
    public var month: Int { components.month }
    public var day: Int { components.day }

    /// (year, month, day) from the epoch day (H. Hinnant's civil_from_days).
    public var components: (year: Int, month: Int, day: Int) {
        let z = Int(epochDay) + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        let year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0)
        return (year, month, day)
    }

    /// Days since 1970-01-01 of a valid (year, month, day) (H. Hinnant's days_from_civil).
    public static func epochDay(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    public static func isLeapYear(_ year: Int) -> Bool {
        year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
    }

    public static func daysInMonth(year: Int, month: Int) -> Int {
        switch month {
        case 2: return isLeapYear(year) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    public func adding(days: Int) -> CivilDate {
        CivilDate(epochDay: Int32(truncatingIfNeeded: Int(epochDay) + days))
    }

    /// `days(self, other)`: the number of days from this date to `other` (negative if earlier).
    public func days(to other: CivilDate) -> Int {
        Int(other.epochDay) - Int(epochDay)
    }

    public static func < (lhs: CivilDate, rhs: CivilDate) -> Bool {
        lhs.epochDay < rhs.epochDay
    }

    public var description: String {
        let (year, month, day) = components
        if year >= 0 && year <= 9999 {
            // "YYYY-MM-DD" written in place: a small string, no allocation.
            return String(unsafeUninitializedCapacity: 10) { buffer in
                func put(_ value: Int, width: Int, at offset: Int) {
                    var rest = value
                    for index in stride(from: offset + width - 1, through: offset, by: -1) {
                        buffer[index] = UInt8(48 + rest % 10)
                        rest /= 10
                    }
                }
                put(year, width: 4, at: 0)
                buffer[4] = 45
                put(month, width: 2, at: 5)
                buffer[7] = 45
                put(day, width: 2, at: 8)
                return 10
            }
        }
        func pad(_ value: Int, _ width: Int) -> String {
            let digits = String(abs(value))
            return (value < 0 ? "-" : "") + String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))"
    }
}
