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

    /// (year, month, day) from the epoch day, with C. Neri and L. Schneider's Euclidean affine
    /// functions ("Euclidean affine functions and their application to calendar algorithms",
    /// 2022): divisions by constants become multiplications and shifts. Every answer carries
    /// dates, and this was half the cost of writing one (H. Hinnant's civil_from_days, which
    /// the tests keep as the reference, took about twice as long).
    public var components: (year: Int, month: Int, day: Int) {
        // Days since 0000-03-01, moved forward by whole 400-year eras so that every Int32
        // epoch day is a non-negative count; the eras come off the year at the end.
        let eras: Int64 = 14_700
        let days = UInt64(Int64(epochDay) + 719_468 + 146_097 * eras)
        let n1 = 4 * days + 3
        let century = n1 / 146_097
        let dayOfCentury = (n1 % 146_097) / 4
        let p2 = 2_939_745 * (4 * dayOfCentury + 3)
        let yearOfCentury = p2 >> 32
        let dayOfYear = (p2 & 0xFFFF_FFFF) / 2_939_745 / 4   // from March 1
        let n3 = 2_141 * dayOfYear + 197_913
        let shiftedMonth = Int(n3 >> 16)                      // 3...14
        let day = Int((n3 & 0xFFFF) / 2_141) + 1
        let january = dayOfYear >= 306
        let year = Int(Int64(100 * century + yearOfCentury) - 400 * eras) + (january ? 1 : 0)
        return (year, january ? shiftedMonth - 12 : shiftedMonth, day)
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
