import CreditDomain
import CreditService
import XCTest

/// Inputs found by the fuzz targets (FUZZING.md), kept as tests once fixed.
final class FuzzRegressionTests: XCTestCase {
    /// FuzzState: RFC 3339 must round-trip every representable instant (the `--now` flag and
    /// the manual clock print and read them). The first 0.855 s of the range, down to
    /// Int64.min, parsed as nil because seconds × 10^9 overflowed before the fraction was added.
    func testRFC3339RoundTripsTheWholeRange() {
        for nanos: Int64 in [.min, .min + 1, -9_223_372_036_000_000_000, -9_223_372_035_999_999_999,
                             -1_000_000_001, -1_000_000_000, -999_999_999, -1, 0, 1,
                             1_743_498_000_000_000_000, .max - 1, .max] {
            let text = RFC3339.format(unixNanos: nanos)
            XCTAssertEqual(RFC3339.parse(text), nanos, text)
        }
        XCTAssertEqual(RFC3339.format(unixNanos: .min), "1677-09-21T00:12:43.145224192Z")
        XCTAssertEqual(RFC3339.parse("1677-09-21T00:12:43.145224191Z"), nil, "one nanosecond before Int64.min")
        XCTAssertEqual(RFC3339.parse("2262-04-11T23:47:16.854775808Z"), nil, "one nanosecond after Int64.max")
    }
}
