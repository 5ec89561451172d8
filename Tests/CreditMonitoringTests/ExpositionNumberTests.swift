import CreditMonitoring
import XCTest

/// Issue 16, item 8: sums of seconds carry no binary floating-point artefacts, and cumulative
/// counts mirrored from elsewhere are exposed as counters.
final class ExpositionNumberTests: XCTestCase {
    func testHistogramSumsAreExactDecimals() throws {
        let registry = MetricsRegistry()
        let family = try registry.histogram(name: "creditd_x_seconds", help: "x", buckets: [1])
        for _ in 0..<3 { family.labels().observe(0.1) }  // 0.1 + 0.1 + 0.1 is 0.30000000000000004 in Double
        for _ in 0..<10 { family.labels().observe(.milliseconds(7)) }
        let text = registry.render()
        XCTAssertTrue(text.contains("creditd_x_seconds_sum 0.37\n"), text)
        XCTAssertFalse(text.contains("0000000"), text)
    }

    func testMirroredTotalsAreCountersAndNeverGoDown() throws {
        let registry = MetricsRegistry()
        let fsyncs = try registry.counter(name: "creditd_journal_fsyncs_total", help: "fdatasync calls.").labels()
        fsyncs.advance(to: 12)
        fsyncs.advance(to: 7)
        let text = registry.render()
        XCTAssertTrue(text.contains("# TYPE creditd_journal_fsyncs_total counter\n"), text)
        XCTAssertTrue(text.contains("creditd_journal_fsyncs_total 12\n"), text)
    }
}
