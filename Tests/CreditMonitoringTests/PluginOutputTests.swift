import XCTest
import CreditMonitoring

final class PluginOutputTests: XCTestCase {
    func testSpecExampleLine() throws {
        let result = PluginResult(
            state: .ok,
            text: "SERVING, 4 connections",
            perfData: [
                PerfData(label: "rtt", 0.0021, unit: .seconds,
                         warning: try NagiosRange(parsing: "0.5"), critical: try NagiosRange(parsing: "1"), minimum: 0),
                PerfData(label: "connections", 4, minimum: 0),
                PerfData(label: "credits_overdue", 0, minimum: 0),
            ]
        )
        XCTAssertEqual(
            result.rendered(),
            "CREDITD OK - SERVING, 4 connections | 'rtt'=0.0021s;0.5;1;0; 'connections'=4;;;0; 'credits_overdue'=0;;;0;\n"
        )
        XCTAssertEqual(result.exitCode, 0)
    }

    func testStatesAndExitCodes() {
        XCTAssertEqual(PluginState.allCases.map(\.exitCode), [0, 1, 2, 3])
        XCTAssertEqual(PluginState.allCases.map(\.description), ["OK", "WARNING", "CRITICAL", "UNKNOWN"])
        XCTAssertEqual(
            PluginResult(state: .critical, text: "socket missing").rendered(),
            "CREDITD CRITICAL - socket missing\n"
        )
    }

    func testEvaluateAgainstThresholds() throws {
        let warning = try NagiosRange(parsing: "0.5")
        let critical = try NagiosRange(parsing: "1")
        XCTAssertEqual(PluginState.evaluate(0.2, warning: warning, critical: critical), .ok)
        XCTAssertEqual(PluginState.evaluate(0.5, warning: warning, critical: critical), .ok)
        XCTAssertEqual(PluginState.evaluate(0.7, warning: warning, critical: critical), .warning)
        XCTAssertEqual(PluginState.evaluate(1.0, warning: warning, critical: critical), .warning)
        XCTAssertEqual(PluginState.evaluate(1.5, warning: warning, critical: critical), .critical)
        XCTAssertEqual(PluginState.evaluate(99, warning: nil, critical: nil), .ok)
    }

    func testPerfDataFormatting() throws {
        XCTAssertEqual(PerfData(label: "rtt", value: .unknown, unit: .seconds).formatted, "'rtt'=U;;;;")
        XCTAssertEqual(PerfData(label: "tiny", 0.00001, unit: .seconds).formatted, "'tiny'=0.00001s;;;;")
        XCTAssertEqual(PerfData(label: "huge", 1e21, unit: .bytes).formatted, "'huge'=1000000000000000000000B;;;;")
        XCTAssertEqual(PerfData(label: "neg", -12.5).formatted, "'neg'=-12.5;;;;")
        XCTAssertEqual(PerfData(label: "p", 99.5, unit: .percent, minimum: 0, maximum: 100).formatted, "'p'=99.5%;;;0;100")
        XCTAssertEqual(PerfData(label: "c", 17, unit: .counter).formatted, "'c'=17c;;;;")
        XCTAssertEqual(PerfData(label: "nan", .nan).formatted, "'nan'=U;;;;")
        XCTAssertEqual(
            PerfData(label: "w", 1, warning: try NagiosRange(parsing: "@10:20"), critical: try NagiosRange(parsing: "~:5")).formatted,
            "'w'=1;@10:20;~:5;;"
        )
        XCTAssertEqual(
            PerfData.Unit.allCases.map(\.rawValue),
            ["", "s", "ms", "us", "%", "B", "KB", "MB", "TB", "c"]
        )
    }

    func testLabelQuoting() {
        XCTAssertEqual(PerfData.quotedLabel("response time"), "'response time'")
        XCTAssertEqual(PerfData.quotedLabel("it's"), "'it''s'")
        XCTAssertEqual(PerfData.quotedLabel("a=b"), "'a_b'")
        XCTAssertEqual(PerfData.quotedLabel("line\nbreak"), "'line_break'")
    }

    func testTextIsOneLineWithoutPipes() {
        let output = PluginResult(state: .warning, text: "slow | very\nslow", perfData: [PerfData(label: "x", 1)])
            .rendered()
        XCTAssertEqual(output, "CREDITD WARNING - slow / very slow | 'x'=1;;;;\n")
    }

    func testLabelsMustDifferInTheirFirst19Characters() {
        let output = PluginResult(state: .ok, text: "t", perfData: [
            PerfData(label: "credits_overdue_total_a", 1),
            PerfData(label: "credits_overdue_total_b", 2),   // same first 19 characters: dropped
            PerfData(label: "other", 3),
        ]).rendered()
        XCTAssertEqual(output, "CREDITD OK - t | 'credits_overdue_total_a'=1;;;; 'other'=3;;;;\n")
    }

    func testLongTextLines() {
        let output = PluginResult(state: .ok, text: "t", perfData: [PerfData(label: "x", 1)], longText: ["a", "b|c"])
            .rendered()
        XCTAssertEqual(output, "CREDITD OK - t | 'x'=1;;;;\na\nb/c\n")
    }

    func testOutputStaysUnder1KB() {
        let longText = (0..<50).map { "detail line \($0) " + String(repeating: "x", count: 40) }
        let perfData = (0..<60).map { PerfData(label: "metric_\($0)", Double($0), unit: .seconds, minimum: 0) }
        let result = PluginResult(state: .critical, text: String(repeating: "é", count: 600), perfData: perfData, longText: longText)
        let output = result.rendered()
        XCTAssertLessThan(output.utf8.count, 1024)
        XCTAssertTrue(output.hasPrefix("CREDITD CRITICAL - é"))
        XCTAssertTrue(output.hasSuffix("\n"))
        XCTAssertEqual(output.split(separator: "\n").count, 1)
        XCTAssertTrue(output.hasSuffix(" (60 perfdata left out: 1 KB limit)\n"), output)

        // Room for the text: long text goes first, perfdata is kept while it fits.
        let fitting = PluginResult(state: .ok, text: "fine", perfData: Array(perfData.prefix(10)), longText: longText).rendered()
        XCTAssertLessThan(fitting.utf8.count, 1024)
        XCTAssertTrue(fitting.contains("'metric_9'=9s;;;0;"))
        XCTAssertTrue(fitting.contains("\ndetail line 0 "))

        // Series that do not fit are left out from the end, and the text says how many.
        let crowded = PluginResult(state: .ok, text: "fine", perfData: perfData).rendered()
        XCTAssertLessThan(crowded.utf8.count, 1024)
        let kept = crowded.components(separatedBy: "'metric_").count - 1
        XCTAssertTrue(crowded.hasPrefix("CREDITD OK - fine (\(60 - kept) perfdata left out: 1 KB limit) | 'metric_0'="), crowded)
        XCTAssertGreaterThan(kept, 20)
    }
}
