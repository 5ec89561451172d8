import XCTest
import CreditMonitoring

final class NagiosRangeTests: XCTestCase {
    /// The table of docs/operations.md §3, plus the endpoints of each range.
    func testRangeSyntaxTable() throws {
        let cases: [(text: String, alerting: [Double], quiet: [Double])] = [
            ("10", [-0.001, -1, 10.001, 11], [0, 5, 10]),
            ("10:", [9.999, 0, -5], [10, 11, 1e12]),
            ("~:10", [10.001, 1e12], [10, 0, -1e12]),
            ("10:20", [9.999, 20.001, 0], [10, 15, 20]),
            ("@10:20", [10, 15, 20], [9.999, 20.001, 0]),
            ("0.5", [0.5001, -0.1], [0, 0.25, 0.5]),
            ("@~:0", [-1, 0], [0.001]),
            (":5", [5.1, -0.1], [0, 5]),
            ("-5:-1", [-0.5, -6], [-5, -3, -1]),
        ]
        for entry in cases {
            let range = try NagiosRange(parsing: entry.text)
            for value in entry.alerting {
                XCTAssertTrue(range.alerts(value), "\(entry.text) should alert at \(value)")
            }
            for value in entry.quiet {
                XCTAssertFalse(range.alerts(value), "\(entry.text) should not alert at \(value)")
            }
            XCTAssertTrue(range.alerts(.nan), "NaN alerts for \(entry.text)")
        }
    }

    func testParsedBounds() throws {
        XCTAssertEqual(try NagiosRange(parsing: "10"), NagiosRange(start: 0, end: 10))
        XCTAssertEqual(try NagiosRange(parsing: "10:"), NagiosRange(start: 10, end: nil))
        XCTAssertEqual(try NagiosRange(parsing: "~:10"), NagiosRange(start: nil, end: 10))
        XCTAssertEqual(try NagiosRange(parsing: "@10:20"), NagiosRange(start: 10, end: 20, inverted: true))
        XCTAssertEqual(try NagiosRange(parsing: "~:"), NagiosRange(start: nil, end: nil))
        XCTAssertEqual(try NagiosRange(parsing: "10:10"), NagiosRange(start: 10, end: 10))
    }

    func testCanonicalText() throws {
        for text in ["10", "10:", "~:10", "@10:20", "0.5", "@~:0", "-5:-1", "~:"] {
            XCTAssertEqual(try NagiosRange(parsing: text).description, text)
        }
        XCTAssertEqual(try NagiosRange(parsing: "0:10").description, "10")
        XCTAssertEqual(try NagiosRange(parsing: ":5").description, "5")
    }

    func testInvalidRanges() {
        let invalid: [(String, NagiosRange.ParseError)] = [
            ("", .empty),
            ("@", .empty),
            ("20:10", .startAboveEnd("20:10")),
            ("abc", .invalidNumber("abc")),
            ("1:2:3", .invalidNumber("1:2:3")),
            ("inf", .invalidNumber("inf")),
            ("nan:", .invalidNumber("nan:")),
            ("0x10", .invalidNumber("0x10")),
            ("~", .invalidNumber("~")),
            ("10 ", .invalidNumber("10 ")),
        ]
        for (text, expected) in invalid {
            XCTAssertThrowsError(try NagiosRange(parsing: text), text) {
                XCTAssertEqual($0 as? NagiosRange.ParseError, expected, text)
            }
        }
    }
}
