import Foundation
import XCTest
@testable import CreditDomain

final class CoreTypesTests: XCTestCase {
    func testCivilDateRoundTripsAndArithmetic() {
        XCTAssertEqual(CivilDate(epochDay: 0).description, "1970-01-01")
        XCTAssertEqual(day("2000-03-01").epochDay, 11_017)
        XCTAssertEqual(day("2024-02-29").adding(days: 1), day("2024-03-01"))
        XCTAssertEqual(day("2025-02-01").days(to: day("2025-03-01")), 28)
        XCTAssertNil(CivilDate("2025-02-29"))
        XCTAssertNil(CivilDate("2025-2-01"))
        XCTAssertNil(CivilDate("2025-13-01"))
        XCTAssertNil(CivilDate("abcd-01-01"))
        XCTAssertEqual(CivilDate("1969-12-31")?.epochDay, -1)
        // Every day from 1600 to 2400 round-trips through (y, m, d).
        var date = day("1600-01-01")
        let end = day("2400-12-31")
        while date <= end {
            let (y, m, d) = date.components
            XCTAssertEqual(CivilDate(year: y, month: m, day: d), date)
            XCTAssertEqual(CivilDate(date.description), date)
            date = date.adding(days: 1)
        }
    }

    /// `components` (Neri and Schneider) agrees with H. Hinnant's civil_from_days, kept here
    /// as the reference: on every day from year -10000 to 12000, at the ends of Int32, and on
    /// random days across its whole range.
    func testCivilDateComponentsMatchTheReference() {
        func reference(_ epochDay: Int32) -> (year: Int, month: Int, day: Int) {
            let z = Int(epochDay) + 719_468
            let era = (z >= 0 ? z : z - 146_096) / 146_097
            let dayOfEra = z - era * 146_097
            let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
            let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
            let shiftedMonth = (5 * dayOfYear + 2) / 153
            let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
            let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
            return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
        }
        func check(_ epochDay: Int32) {
            let fast = CivilDate(epochDay: epochDay).components, slow = reference(epochDay)
            if fast != slow { XCTFail("epoch day \(epochDay): \(fast) instead of \(slow)") }
        }
        let from = Int32(CivilDate.epochDay(year: -10_000, month: 1, day: 1))
        let to = Int32(CivilDate.epochDay(year: 12_000, month: 12, day: 31))
        for epochDay in from...to { check(epochDay) }
        let ends: [Int32] = [Int32.min, Int32.min + 1, Int32.min + 146_097, Int32.max - 146_097, Int32.max - 1, Int32.max]
        for epochDay in ends { check(epochDay) }
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200_000 { check(Int32.random(in: .min ... .max, using: &generator)) }
    }

    func testRoundingIsFloorOfXPlusHalf() {
        // M3: ties toward +∞.
        XCTAssertEqual(roundHalfUp(999, over: 2), 500)
        XCTAssertEqual(roundHalfUp(-999, over: 2), -499)
        XCTAssertEqual(roundHalfUp(-10000, over: 28), -357)
        XCTAssertEqual(roundHalfUp(10000, over: 3), 3333)
        XCTAssertEqual(roundHalfUp(-7, over: 2), -3)
        XCTAssertEqual(roundHalfUp(-5, over: 3), -2)
        XCTAssertEqual(roundHalfUp(0, over: 5), 0)
        XCTAssertNil(roundHalfUp(Int128.max, over: 1))
        XCTAssertEqual(Rational(-4000, 6), Rational(-2000, 3))
        XCTAssertEqual(Rational(6, -4).description, "-3/2")
        XCTAssertEqual(Rational(0, -7), Rational(0, 1))
    }

    func testCurrencyTableIsClosed() {
        XCTAssertEqual(Currency(code: "USD")?.exponent, 2)
        XCTAssertEqual(Currency(code: "JPY")?.exponent, 0)
        XCTAssertEqual(Currency(code: "KWD")?.exponent, 3)
        XCTAssertNil(Currency(code: "usd"))
        XCTAssertNil(Currency(code: "BRL"))
        XCTAssertEqual(Currency.allCases.count, 18)
    }

    func testSetupBMonthlyAnchor31() {
        let schedule = BillingSchedule(interval: .monthly, startDate: day("2025-01-31"))
        var boundary = day("2025-01-31")
        var found: [String] = []
        for _ in 0..<4 {
            let next = schedule.billingDate(after: boundary)
            found.append("\(boundary)..\(next)=\(boundary.days(to: next))")
            boundary = next
        }
        XCTAssertEqual(found, ["2025-01-31..2025-02-28=28", "2025-02-28..2025-03-31=31",
                               "2025-03-31..2025-04-30=30", "2025-04-30..2025-05-31=31"])
        XCTAssertEqual(schedule.anchorDay, 31)
    }

    func testSetupCAnnualAnchorFeb29() {
        let schedule = BillingSchedule(interval: .annual, startDate: day("2024-02-29"))
        var boundary = day("2024-02-29")
        var lengths: [Int] = []
        var ends: [CivilDate] = []
        for _ in 0..<4 {
            let next = schedule.billingDate(after: boundary)
            lengths.append(boundary.days(to: next))
            ends.append(next)
            boundary = next
        }
        XCTAssertEqual(lengths, [365, 365, 365, 366])
        XCTAssertEqual(ends, [day("2025-02-28"), day("2026-02-28"), day("2027-02-28"), day("2028-02-29")])
        // A monthly February 2024 period has 29 days.
        let monthly = BillingSchedule(interval: .monthly, startDate: day("2024-01-01"))
        let period = monthly.period(containing: day("2024-02-10"))
        XCTAssertEqual(period.start.days(to: period.end), 29)
    }

    /// Every zone's offset table answers what Foundation answers: at every transition and the
    /// second before it, and at random instants from 1900 to 2200. A zone whose table could
    /// not be checked has none and asks Foundation itself, which this also covers.
    func testUTCOffsetTablesAgreeWithFoundation() {
        var generator = SystemRandomNumberGenerator()
        var withTable = 0
        let identifiers = TimeZone.knownTimeZoneIdentifiers
        for identifier in identifiers {
            guard let zone = TimeZone(identifier: identifier) else { continue }
            guard let table = UTCOffsetTable(zone: zone) else { continue }
            withTable += 1
            func check(_ seconds: Int64) {
                XCTAssertEqual(table.offset(atEpochSecond: seconds), UTCOffsetTable.foundationOffset(zone, seconds),
                               "\(identifier) at \(seconds)")
            }
            for transition in table.transitions { check(transition); check(transition - 1) }
            for _ in 0..<200 { check(Int64.random(in: UTCOffsetTable.start..<UTCOffsetTable.end, using: &generator)) }
            XCTAssertNil(table.offset(atEpochSecond: UTCOffsetTable.end))
        }
        // The tables are what makes recovery fast; nearly every zone must have one.
        XCTAssertGreaterThan(withTable, identifiers.count * 9 / 10, "\(withTable) of \(identifiers.count) zones have a table")
        let la = TimeZoneRules(identifier: "America/Los_Angeles")!
        XCTAssertEqual(la.utcOffsetSeconds(atEpochSecond: UTCOffsetTable.end + 86_400 * 180), -7 * 3_600)
    }

    func testTimeZoneCivilDatesAndMidnights() {
        let la = TimeZoneRules(identifier: "America/Los_Angeles")!
        XCTAssertEqual(la.civilDate(of: utc("2025-03-01T05:00:00Z")), day("2025-02-28"))
        XCTAssertEqual(la.civilDate(of: utc("2025-03-01T07:59:59Z")), day("2025-02-28"))
        XCTAssertEqual(la.civilDate(of: utc("2025-03-01T08:00:00Z")), day("2025-03-01"))
        XCTAssertEqual(la.startOfDay(day("2025-03-01")), utc("2025-03-01T08:00:00Z"))
        XCTAssertEqual(la.startOfDay(day("2025-03-10")), utc("2025-03-10T07:00:00Z"))
        // America/Santiago skips midnight in September: the day starts at 01:00 local (-03).
        let santiago = TimeZoneRules(identifier: "America/Santiago")!
        XCTAssertEqual(santiago.startOfDay(day("2025-09-07")), utc("2025-09-07T04:00:00Z"))
        XCTAssertEqual(santiago.civilDate(of: utc("2025-09-07T04:00:00Z")), day("2025-09-07"))
        XCTAssertEqual(santiago.civilDate(of: utc("2025-09-07T03:59:59Z")), day("2025-09-06"))
        // In April midnight exists (the clocks fall back at 24:00 to 23:00 of the day before).
        XCTAssertEqual(santiago.startOfDay(day("2025-04-06")), utc("2025-04-06T04:00:00Z"))
        XCTAssertEqual(TimeZoneRules.utc.startOfDay(day("2025-04-01")), utc("2025-04-01"))
        XCTAssertNil(TimeZoneRules(identifier: "Mars/Olympus"))
        XCTAssertNil(TimeZoneRules(identifier: "GMT+5"))
        XCTAssertNil(TimeZoneRules(identifier: "america/los_angeles"))
        XCTAssertNotNil(TimeZoneRules(identifier: "Europe/Berlin"))
        XCTAssertNotNil(TimeZoneRules(identifier: "Australia/Lord_Howe"))
    }

    func testInstantDescription() {
        XCTAssertEqual(utc("2025-04-08T00:00:00Z").description, "2025-04-08T00:00:00Z")
        XCTAssertEqual(Instant(nanosecondsSinceEpoch: -1).description, "1969-12-31T23:59:59.999999999Z")
    }

    func testCreditIDs() {
        XCTAssertEqual(Credit.serial(fromID: "cr_42"), 42)
        XCTAssertNil(Credit.serial(fromID: "cr_042"))
        XCTAssertNil(Credit.serial(fromID: "cr_"))
        XCTAssertNil(Credit.serial(fromID: "42"))
        XCTAssertNil(Credit.serial(fromID: "cr_1x"))
    }

    func testErrorsCarryStableCodes() {
        let error = DomainError.seatsMustBePositive
        XCTAssertEqual(error.code, "seats_must_be_positive")
        XCTAssertEqual(error.wireMessage, "seats_must_be_positive: use Cancel to remove all seats")
    }

    func testCompactLayouts() {
        // Per-credit memory matters at 5,000,000 credits.
        XCTAssertLessThanOrEqual(MemoryLayout<Credit>.stride, 200)
        print("layout: Credit \(MemoryLayout<Credit>.stride), Subscription \(MemoryLayout<Subscription>.stride), Invoice \(MemoryLayout<Invoice>.stride), LineExplanation \(MemoryLayout<LineExplanation>.stride)")
    }
}
