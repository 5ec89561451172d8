import Foundation
import XCTest
import CreditMonitoring
import CreditTestSupport

final class PrometheusTests: XCTestCase {
    /// The minimum set of docs/operations.md §4, with awkward label values and a HELP needing escapes.
    private func makeSampleRegistry() throws -> MetricsRegistry {
        let registry = MetricsRegistry(requiredNamePrefix: "creditd_")
        try registry.gauge(name: "creditd_build_info", help: "Build metadata.", labelNames: ["version"])
            .labels("1.0.0 \"dev\"\\build\nx").set(1)
        let requests = try registry.counter(
            name: "creditd_rpc_requests_total", help: "RPCs by method and code.", labelNames: ["method", "code"]
        )
        requests.labels("Cancel", "OK").increment()
        requests.labels("Cancel", "OK").increment(by: 2)
        requests.labels("ChangeSeats", "PERMISSION_DENIED").increment()
        let durations = try registry.histogram(
            name: "creditd_rpc_duration_seconds", help: "RPC latency.\nBackslash \\ here.",
            labelNames: ["method"], buckets: [0.001, 0.01, 0.1, 1]
        )
        for value in [0.0005, 0.001, 0.002, 0.05, 0.05, 3.0] {
            durations.labels("Cancel").observe(value)
        }
        durations.labels("Check").observe(.milliseconds(20))
        try registry.gauge(name: "creditd_connections", help: "Open connections.").labels().set(4)
        try registry.gauge(name: "creditd_serving", help: "1 when SERVING.").labels().set(1)
        let credits = try registry.gauge(name: "creditd_credits", help: "Credits by state.", labelNames: ["state"])
        credits.labels("pending").set(12)
        credits.labels("applied").set(30)
        _ = try registry.gauge(name: "creditd_credits_overdue", help: "Overdue credits.")
        try registry.gauge(name: "creditd_refunds_overdue", help: "Overdue refunds.").labels().set(.nan)
        return registry
    }

    func testExactExposition() throws {
        let text = try makeSampleRegistry().render()
        XCTAssertEqual(text, #"""
        # HELP creditd_build_info Build metadata.
        # TYPE creditd_build_info gauge
        creditd_build_info{version="1.0.0 \"dev\"\\build\nx"} 1
        # HELP creditd_rpc_requests_total RPCs by method and code.
        # TYPE creditd_rpc_requests_total counter
        creditd_rpc_requests_total{method="Cancel",code="OK"} 3
        creditd_rpc_requests_total{method="ChangeSeats",code="PERMISSION_DENIED"} 1
        # HELP creditd_rpc_duration_seconds RPC latency.\nBackslash \\ here.
        # TYPE creditd_rpc_duration_seconds histogram
        creditd_rpc_duration_seconds_bucket{method="Cancel",le="0.001"} 2
        creditd_rpc_duration_seconds_bucket{method="Cancel",le="0.01"} 3
        creditd_rpc_duration_seconds_bucket{method="Cancel",le="0.1"} 5
        creditd_rpc_duration_seconds_bucket{method="Cancel",le="1"} 5
        creditd_rpc_duration_seconds_bucket{method="Cancel",le="+Inf"} 6
        creditd_rpc_duration_seconds_sum{method="Cancel"} 3.1035
        creditd_rpc_duration_seconds_count{method="Cancel"} 6
        creditd_rpc_duration_seconds_bucket{method="Check",le="0.001"} 0
        creditd_rpc_duration_seconds_bucket{method="Check",le="0.01"} 0
        creditd_rpc_duration_seconds_bucket{method="Check",le="0.1"} 1
        creditd_rpc_duration_seconds_bucket{method="Check",le="1"} 1
        creditd_rpc_duration_seconds_bucket{method="Check",le="+Inf"} 1
        creditd_rpc_duration_seconds_sum{method="Check"} 0.02
        creditd_rpc_duration_seconds_count{method="Check"} 1
        # HELP creditd_connections Open connections.
        # TYPE creditd_connections gauge
        creditd_connections 4
        # HELP creditd_serving 1 when SERVING.
        # TYPE creditd_serving gauge
        creditd_serving 1
        # HELP creditd_credits Credits by state.
        # TYPE creditd_credits gauge
        creditd_credits{state="applied"} 30
        creditd_credits{state="pending"} 12
        # HELP creditd_credits_overdue Overdue credits.
        # TYPE creditd_credits_overdue gauge
        creditd_credits_overdue 0
        # HELP creditd_refunds_overdue Overdue refunds.
        # TYPE creditd_refunds_overdue gauge
        creditd_refunds_overdue NaN

        """#)
    }

    /// Structural rules of the format, checked line by line.
    func testStructuralRules() throws {
        let text = try makeSampleRegistry().render()
        XCTAssertTrue(text.hasSuffix("\n"))
        XCTAssertFalse(text.contains("\r"))

        var helpSeen = Set<String>()
        var typeSeen = Set<String>()
        var types: [String: String] = [:]
        var finishedFamilies = Set<String>()
        var currentFamily = ""
        var sampleKeys = Set<String>()
        let nameRule = /[a-zA-Z_:][a-zA-Z0-9_:]*/
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
            if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
                let parts = line.split(separator: " ", maxSplits: 3)
                let name = String(parts[2])
                XCTAssertNotNil(name.wholeMatch(of: nameRule), name)
                XCTAssertTrue(name.hasPrefix("creditd_"))
                if parts[1] == "HELP" {
                    XCTAssertTrue(helpSeen.insert(name).inserted, "HELP twice for \(name)")
                    XCTAssertFalse(typeSeen.contains(name), "HELP after TYPE for \(name)")
                } else {
                    XCTAssertTrue(typeSeen.insert(name).inserted, "TYPE twice for \(name)")
                    types[name] = String(parts[3])
                }
                if name != currentFamily {
                    XCTAssertFalse(finishedFamilies.contains(name), "\(name) split into two blocks")
                    finishedFamilies.insert(currentFamily)
                    currentFamily = name
                }
                continue
            }
            XCTAssertFalse(line.hasPrefix("#"), String(line))
            // name{labels} value — exactly two fields after the label set: no timestamp.
            let key = line.lastIndex(of: " ").map { String(line[..<$0]) } ?? ""
            let value = line.split(separator: " ").last.map(String.init) ?? ""
            XCTAssertNotNil(Double(value == "+Inf" ? "inf" : value) ?? (value == "NaN" ? .nan : nil), String(line))
            XCTAssertTrue(sampleKeys.insert(key).inserted, "duplicate series \(key)")
            let sampleName = String(key.prefix { $0 != "{" })
            XCTAssertTrue(
                sampleName == currentFamily || (types[currentFamily] == "histogram"
                    && [currentFamily + "_bucket", currentFamily + "_sum", currentFamily + "_count"].contains(sampleName)),
                "\(sampleName) outside its family block"
            )
            XCTAssertFalse(key.contains("} ") && key.hasSuffix("}") == false, String(line))
        }
        XCTAssertEqual(helpSeen, typeSeen)
    }

    func testHistogramBucketsAreCumulativeAndEndWithCount() throws {
        let registry = MetricsRegistry()
        let histogram = try registry.histogram(name: "h", help: "h", buckets: [1, 2, 3]).labels()
        for value in [0.5, 1, 1.5, 2, 2.5, 3, 3.5, 100, -1] {
            histogram.observe(value)
        }
        histogram.observe(.nan)   // ignored
        XCTAssertEqual(histogram.count, 9)
        XCTAssertEqual(registry.render(), """
        # HELP h h
        # TYPE h histogram
        h_bucket{le="1"} 3
        h_bucket{le="2"} 5
        h_bucket{le="3"} 7
        h_bucket{le="+Inf"} 9
        h_sum 113
        h_count 9

        """)
    }

    func testRegistrationRules() throws {
        let registry = MetricsRegistry(requiredNamePrefix: "creditd_")
        XCTAssertThrowsError(try registry.counter(name: "other_total", help: "")) {
            XCTAssertEqual($0 as? MetricsError, .missingNamePrefix(name: "other_total", prefix: "creditd_"))
        }
        XCTAssertThrowsError(try registry.counter(name: "creditd-x", help: "")) {
            XCTAssertEqual($0 as? MetricsError, .invalidMetricName("creditd-x"))
        }
        XCTAssertThrowsError(try registry.gauge(name: "creditd_g", help: "", labelNames: ["__x"]))
        XCTAssertThrowsError(try registry.gauge(name: "creditd_g", help: "", labelNames: ["a:b"]))
        XCTAssertThrowsError(try registry.gauge(name: "creditd_g", help: "", labelNames: ["a", "a"])) {
            XCTAssertEqual($0 as? MetricsError, .duplicateLabelName(metric: "creditd_g", label: "a"))
        }
        XCTAssertThrowsError(try registry.histogram(name: "creditd_h", help: "", labelNames: ["le"]))
        XCTAssertThrowsError(try registry.histogram(name: "creditd_h", help: "", buckets: [1, 1]))
        XCTAssertThrowsError(try registry.histogram(name: "creditd_h", help: "", buckets: [.nan]))
        XCTAssertThrowsError(try registry.histogram(name: "creditd_h", help: "", buckets: []))

        let first = try registry.counter(name: "creditd_c_total", help: "c", labelNames: ["m"])
        let again = try registry.counter(name: "creditd_c_total", help: "c", labelNames: ["m"])
        XCTAssertTrue(first === again)
        XCTAssertThrowsError(try registry.gauge(name: "creditd_c_total", help: "c", labelNames: ["m"])) {
            XCTAssertEqual($0 as? MetricsError, .conflictingRegistration("creditd_c_total"))
        }
        XCTAssertThrowsError(try registry.counter(name: "creditd_c_total", help: "c", labelNames: ["n"]))

        _ = try registry.histogram(name: "creditd_lat", help: "", buckets: [1])
        XCTAssertThrowsError(try registry.gauge(name: "creditd_lat_count", help: ""))
        XCTAssertThrowsError(try registry.histogram(name: "creditd_lat", help: "", buckets: [2]))

        XCTAssertTrue(PrometheusText.isValidMetricName("a:b_c9"))
        XCTAssertTrue(PrometheusText.isValidMetricName("_x"))
        XCTAssertFalse(PrometheusText.isValidMetricName("9x"))
        XCTAssertFalse(PrometheusText.isValidMetricName(""))
        XCTAssertFalse(PrometheusText.isValidMetricName("é"))
    }

    func testCountersIgnoreNegativeIncrements() throws {
        let counter = try MetricsRegistry().counter(name: "c_total", help: "").labels()
        counter.increment(by: 5)
        counter.increment(by: -3)
        counter.increment(by: .nan)
        XCTAssertEqual(counter.current, 5)
    }

    func testConcurrentUpdatesAreAllCounted() async throws {
        let registry = MetricsRegistry()
        let requests = try registry.counter(name: "r_total", help: "", labelNames: ["method"])
        let latency = try registry.histogram(name: "l", help: "", labelNames: ["method"], buckets: [0.5])
        let gauge = try registry.gauge(name: "g", help: "")
        await withTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for index in 0..<1000 {
                        let method = index % 2 == 0 ? "Cancel" : "Check"
                        requests.labels(method).increment()
                        latency.labels(method).observe(Double(task % 2))
                        gauge.labels().increment()
                        if index % 100 == 0 { _ = registry.render() }
                    }
                }
            }
        }
        XCTAssertEqual(requests.labels("Cancel").current, 4000)
        XCTAssertEqual(requests.labels("Check").current, 4000)
        XCTAssertEqual(latency.labels("Cancel").count + latency.labels("Check").count, 8000)
        XCTAssertEqual(gauge.labels().current, 8000)
        XCTAssertTrue(registry.render().contains("l_bucket{method=\"Cancel\",le=\"+Inf\"} 4000\n"))
    }

    /// Parses the output with the Python `prometheus-client` package (pip
    /// `prometheus-client`), when it is installed. The script also re-checks the
    /// histogram invariants on what it parsed.
    func testPythonPrometheusClientParsesTheOutput() throws {
        let text = try makeSampleRegistry().render()
        let script = #"""
        import sys, json
        try:
            from prometheus_client.parser import text_string_to_metric_families
        except ImportError:
            print("MISSING")
            sys.exit(0)
        text = sys.stdin.read()
        out = {}
        for family in text_string_to_metric_families(text):
            samples = [[s.name, s.labels, s.value, s.timestamp] for s in family.samples]
            if family.type == "histogram":
                groups = {}
                for name, labels, value, _ in samples:
                    key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
                    groups.setdefault(key, {"buckets": [], "count": None, "sum": None})
                    if name.endswith("_bucket"):
                        groups[key]["buckets"].append((float(labels["le"]), value))
                    elif name.endswith("_count"):
                        groups[key]["count"] = value
                    elif name.endswith("_sum"):
                        groups[key]["sum"] = value
                for key, g in groups.items():
                    bounds = [b for b, _ in g["buckets"]]
                    counts = [c for _, c in g["buckets"]]
                    assert bounds == sorted(bounds), ("buckets out of order", key)
                    assert counts == sorted(counts), ("buckets not cumulative", key)
                    assert bounds[-1] == float("inf"), ("no +Inf bucket", key)
                    assert counts[-1] == g["count"], ("+Inf != _count", key)
                    assert g["sum"] is not None, ("no _sum", key)
            # JSON has no NaN: values travel as text.
            samples = [[n, l, repr(float(v)), t] for n, l, v, t in samples]
            out[family.name] = {"type": family.type, "documentation": family.documentation, "samples": samples}
        print(json.dumps(out, sort_keys=True))
        """#
        // Debian's /usr/bin/python3 is the one `apt-get install python3-prometheus-client` serves;
        // another python3 first on PATH (a venv, pyenv) usually lacks the module.
        let python = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") ? ["/usr/bin/python3"]
            : ["/usr/bin/env", "python3"]
        let result: OpsResult
        do {
            result = try OpsProcess.run(python + ["-c", script], stdin: text)
        } catch {
            throw XCTSkip("python3 is not available: \(error)")
        }
        let printed = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        if printed == "MISSING" {
            throw XCTSkip("Python module prometheus_client is missing; install it with `apt-get install python3-prometheus-client`")
        }
        XCTAssertEqual(result.status, 0, result.stderr)

        let parsed = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(printed.utf8)) as? [String: [String: Any]])
        // The Python client names counter families without `_total`.
        XCTAssertEqual(Set(parsed.keys), [
            "creditd_build_info", "creditd_rpc_requests", "creditd_rpc_duration_seconds", "creditd_connections",
            "creditd_serving", "creditd_credits", "creditd_credits_overdue", "creditd_refunds_overdue",
        ])
        XCTAssertEqual(parsed["creditd_rpc_requests"]?["type"] as? String, "counter")
        XCTAssertEqual(parsed["creditd_rpc_duration_seconds"]?["type"] as? String, "histogram")
        XCTAssertEqual(parsed["creditd_rpc_duration_seconds"]?["documentation"] as? String, "RPC latency.\nBackslash \\ here.")
        let info = try XCTUnwrap(parsed["creditd_build_info"]?["samples"] as? [[Any]])
        XCTAssertEqual((info.first?[1] as? [String: String])?["version"], "1.0.0 \"dev\"\\build\nx")
        let overdue = try XCTUnwrap(parsed["creditd_refunds_overdue"]?["samples"] as? [[Any]])
        XCTAssertEqual(overdue.first?[2] as? String, "nan")
        let requests = try XCTUnwrap(parsed["creditd_rpc_requests"]?["samples"] as? [[Any]])
        XCTAssertEqual(requests.map { $0[2] as? String }, ["3.0", "1.0"])
        for family in parsed.values {
            for sample in family["samples"] as? [[Any]] ?? [] {
                XCTAssertTrue(sample[3] is NSNull, "timestamps must not appear: \(sample)")
            }
        }
    }
}
