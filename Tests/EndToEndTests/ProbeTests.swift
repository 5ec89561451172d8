import CreditProto
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The monitoring probes against a real daemon, as monitoring runs them: `creditctl check`
/// (Nagios plugin: exit code, one stdout line, perfdata), `creditctl health` (grpc_health_probe's
/// exit codes) and `creditctl metrics` (Prometheus text, parsed by prometheus_client).
final class ProbeTests: XCTestCase {
    // MARK: Plugin output

    struct PerfValue: Equatable {
        var value: String
        var unit: String
        var warning: String
        var critical: String
        var minimum: String
        var maximum: String
    }

    struct PluginOutput {
        var status: Int32
        var state: String
        var text: String
        var perf: [String: PerfValue]
        var raw: String
    }

    static let states = ["OK", "WARNING", "CRITICAL", "UNKNOWN"]

    /// Runs `creditctl check` and checks the plugin contract every time: stdout only, under
    /// 1 KB, a first line `CREDITD <STATE> - text[ | perfdata]` whose state matches the exit code.
    func check(_ arguments: [String], socket: String?, environment: [String: String] = [:],
               file: StaticString = #filePath, line: UInt = #line) throws -> PluginOutput {
        let result = try OpsProcess.creditctl(["check"] + (socket.map { ["-s", $0] } ?? []) + arguments, environment: environment)
        return try Self.pluginOutput(result, file: file, line: line)
    }

    static func pluginOutput(_ result: OpsResult, file: StaticString = #filePath, line: UInt = #line) throws -> PluginOutput {
        XCTAssertEqual(result.stderr, "", "a plugin writes to stdout only", file: file, line: line)
        XCTAssertLessThan(result.stdout.utf8.count, 1024, "NRPE's 1 KB limit", file: file, line: line)
        XCTAssertTrue(result.stdout.hasSuffix("\n"), result.stdout, file: file, line: line)
        let first = String(result.stdout.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
        let pattern = try Regex(#"^CREDITD (OK|WARNING|CRITICAL|UNKNOWN) - ([^|]*?)(?: \| (.*))?$"#)
        guard let match = first.firstMatch(of: pattern) else {
            XCTFail("not a plugin line: \(result.stdout)", file: file, line: line)
            return PluginOutput(status: result.status, state: "", text: "", perf: [:], raw: result.stdout)
        }
        let state = String(match.output[1].substring ?? "")
        XCTAssertEqual(Int32(states.firstIndex(of: state) ?? -1), result.status, "exit code decides the state: \(first)",
                       file: file, line: line)
        let perf = try parsePerfdata(match.output[3].substring.map(String.init) ?? "", file: file, line: line)
        return PluginOutput(status: result.status, state: state, text: String(match.output[2].substring ?? ""),
                            perf: perf, raw: result.stdout)
    }

    /// `'label'=value[UOM];[warn];[crit];[min];[max]`, space-separated.
    static func parsePerfdata(_ text: String, file: StaticString, line: UInt) throws -> [String: PerfValue] {
        let item = try Regex(#"^'([^'=]+)'=(U|-?[0-9]+(?:\.[0-9]+)?(?:e-?[0-9]+)?)(s|ms|us|%|B|KB|MB|TB|c)?;([^;]*);([^;]*);([^;]*);([^;]*)$"#)
        var result: [String: PerfValue] = [:]
        for token in text.split(separator: " ") {
            guard let match = String(token).firstMatch(of: item) else {
                XCTFail("malformed perfdata \(token) in \(text)", file: file, line: line)
                continue
            }
            let parts = (1...7).map { String(match.output[$0].substring ?? "") }
            XCTAssertNil(result[parts[0]], "label \(parts[0]) repeats", file: file, line: line)
            result[parts[0]] = PerfValue(value: parts[1], unit: parts[2], warning: parts[3], critical: parts[4],
                                         minimum: parts[5], maximum: parts[6])
        }
        return result
    }

    static let perfLabels: Set = ["rtt", "connections", "credits_overdue", "refunds_overdue", "overdue", "snapshot_age",
                                  "journal", "subscriptions"]

    // MARK: creditctl check

    func testCheckHealthyIsOKWithPerfdata() throws {
        let daemon = try DaemonProcess.start()
        let ok = try check(["-w", "10", "-c", "20"], socket: daemon.socketPath)
        XCTAssertEqual(ok.status, 0, ok.raw)
        XCTAssertTrue(ok.text.hasPrefix("SERVING, "), ok.raw)
        XCTAssertEqual(Set(ok.perf.keys), Self.perfLabels, ok.raw)
        let rtt = try XCTUnwrap(ok.perf["rtt"])
        XCTAssertEqual(rtt.unit, "s")
        XCTAssertEqual([rtt.warning, rtt.critical, rtt.minimum], ["10", "20", "0"])
        XCTAssertGreaterThan(try XCTUnwrap(Double(rtt.value)), 0)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(Int(ok.perf["connections"]?.value ?? "")), 1)
        XCTAssertEqual(ok.perf["snapshot_age"]?.value, "U", "no snapshot yet: unknown value")
        XCTAssertEqual(ok.perf["journal"]?.unit, "B")
        XCTAssertEqual(ok.perf["subscriptions"]?.value, "0")

        // Installed as check_creditd (a link to creditctl), with the socket from $CREDITD_SOCKET.
        let links = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: links) }
        let plugin = links.appendingPathComponent("check_creditd").path
        try FileManager.default.createSymbolicLink(atPath: plugin, withDestinationPath: try OpsTools.creditctl)
        let viaLink = try Self.pluginOutput(try OpsProcess.run([plugin, "-t", "5"], environment: ["CREDITD_SOCKET": daemon.socketPath]))
        XCTAssertEqual(viaLink.status, 0, viaLink.raw)
        XCTAssertEqual(try daemon.stop(), 0)
    }

    /// -w and -c judge the response time; ranges that always (or never) alert force each state.
    func testCheckResponseTimeRangesForceEachState() throws {
        let daemon = try DaemonProcess.start()
        let socket = daemon.socketPath
        XCTAssertEqual(try check(["-w", "~:3600", "-c", "3600"], socket: socket).status, 0)
        let warning = try check(["-w", "@0:3600", "-c", "3600"], socket: socket)  // inside [0, 3600] alerts
        XCTAssertEqual(warning.state, "WARNING", warning.raw)
        XCTAssertTrue(warning.text.contains("response time"), warning.raw)
        XCTAssertEqual(warning.perf["rtt"]?.warning, "@3600", "@0:3600 with the default start left out")
        let critical = try check(["-w", "@0:3600", "-c", "@0:3600"], socket: socket)
        XCTAssertEqual(critical.state, "CRITICAL", "critical wins over warning: \(critical.raw)")

        // A range that starts below zero, as its own argument, short or long, as creditctl
        // check and as check_creditd: a value, not an unknown option.
        let negative = try check(["-w", "-1:3600", "-c", "-10:3600", "--overdue-warning", "-5:5"], socket: socket)
        XCTAssertEqual(negative.state, "OK", negative.raw)
        XCTAssertEqual(negative.perf["rtt"]?.warning, "-1:3600", negative.raw)
        let verbose = try check(["-vv", "-w", "-1:3600", "-vvv", "-c", "-10:3600"], socket: socket)  // -v repeated in one argument
        XCTAssertEqual(verbose.state, "OK", verbose.raw)
        let inverted = try check(["-w", "@-1:3600"], socket: socket)
        XCTAssertEqual(inverted.state, "WARNING", inverted.raw)
        let links = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: links) }
        let plugin = links.appendingPathComponent("check_creditd").path
        try FileManager.default.createSymbolicLink(atPath: plugin, withDestinationPath: try OpsTools.creditctl)
        let viaLink = try Self.pluginOutput(try OpsProcess.run([plugin, "-s", socket, "-c", "-10:3600"]))
        XCTAssertEqual(viaLink.state, "OK", viaLink.raw)
        XCTAssertEqual(try daemon.stop(), 0)
    }

    func testCheckSnapshotAgeThresholds() throws {
        let daemon = try DaemonProcess.start()
        let socket = daemon.socketPath
        let none = try check(["--snapshot-age-warning", "3600"], socket: socket)
        XCTAssertEqual(none.state, "WARNING", none.raw)
        XCTAssertTrue(none.text.contains("no snapshot yet"), none.raw)

        let snapshot = try OpsProcess.creditctl(["snapshot", "-s", socket])
        XCTAssertEqual(snapshot.status, 0, snapshot.stderr)
        let fresh = try check(["--snapshot-age-warning", "3600", "--snapshot-age-critical", "7200"], socket: socket)
        XCTAssertEqual(fresh.state, "OK", fresh.raw)
        let age = try XCTUnwrap(fresh.perf["snapshot_age"])
        XCTAssertNotNil(Double(age.value), fresh.raw)
        XCTAssertEqual([age.unit, age.warning, age.critical], ["s", "3600", "7200"])
        let tooYoung = try check(["--snapshot-age-critical", "@0:3600"], socket: socket)
        XCTAssertEqual(tooYoung.state, "CRITICAL", tooYoung.raw)
        XCTAssertTrue(tooYoung.text.contains("snapshot"), tooYoung.raw)
        XCTAssertEqual(try daemon.stop(), 0)
    }

    /// A refund really overdue (manual clock moved past the refund date) and a journal with
    /// records in it, judged by --overdue-* and --journal-*.
    func testCheckOverdueAndJournalThresholds() throws {
        let daemon = try DaemonProcess.start(arguments: ["--clock", "manual", "--now", "2025-04-01T09:00:00Z"])
        let socket = daemon.socketPath
        for command in [["create", "late-1", "--customer", "acme", "--seats", "10", "--price", "1000", "--currency", "USD"],
                        ["advance-clock", "--to", "2025-04-11T12:00:00Z"],
                        ["cancel", "late-1"],
                        ["advance-clock", "--by", "60d"]] {
            let result = try OpsProcess.creditctl(command + ["-s", socket])
            XCTAssertEqual(result.status, 0, "\(command): \(result.stderr)")
        }
        let calm = try check(["--overdue-warning", "5", "--journal-warning", "100000000"], socket: socket)
        XCTAssertEqual(calm.state, "OK", calm.raw)
        XCTAssertEqual(calm.perf["refunds_overdue"]?.value, "1", calm.raw)
        XCTAssertEqual(calm.perf["overdue"]?.value, "1", calm.raw)
        XCTAssertEqual(calm.perf["overdue"]?.warning, "5", calm.raw)

        let overdueWarning = try check(["--overdue-warning", "0"], socket: socket)
        XCTAssertEqual(overdueWarning.state, "WARNING", overdueWarning.raw)
        XCTAssertTrue(overdueWarning.text.contains("1 overdue"), overdueWarning.raw)
        let overdueCritical = try check(["--overdue-warning", "0", "--overdue-critical", "0"], socket: socket)
        XCTAssertEqual(overdueCritical.state, "CRITICAL", overdueCritical.raw)
        XCTAssertEqual(overdueCritical.perf["overdue"]?.critical, "0", overdueCritical.raw)

        let journalBytes = try XCTUnwrap(Int(calm.perf["journal"]?.value ?? ""), calm.raw)
        XCTAssertGreaterThan(journalBytes, 10)
        let journalWarning = try check(["--journal-warning", "0:10"], socket: socket)
        XCTAssertEqual(journalWarning.state, "WARNING", journalWarning.raw)
        XCTAssertTrue(journalWarning.text.contains("journal"), journalWarning.raw)
        let journalCritical = try check(["--journal-critical", "10"], socket: socket)
        XCTAssertEqual(journalCritical.state, "CRITICAL", journalCritical.raw)
        XCTAssertEqual(try daemon.stop(), 0)
    }

    /// No socket, a stale socket (refused), a daemon that does not answer: all CRITICAL for
    /// check; health says 2 when it cannot connect and 3 (DEADLINE_EXCEEDED, docs/operations.md §2)
    /// when it connected and got no answer.
    func testDaemonDownIsCritical() throws {
        let daemon = try DaemonProcess.start()
        let missing = daemon.directory.appendingPathComponent("missing.sock").path
        let noSocket = try check([], socket: missing)
        XCTAssertEqual(noSocket.state, "CRITICAL", noSocket.raw)
        XCTAssertEqual(try OpsProcess.creditctl(["health", "-s", missing]).status, 2)

        // Stopped (SIGSTOP): connect succeeds through the listen backlog, then no answer.
        kill(daemon.pid, SIGSTOP)
        let silent = try check(["-t", "0.5"], socket: daemon.socketPath)
        let healthSilent = try OpsProcess.creditctl(["health", "-s", daemon.socketPath, "--timeout", "0.5"])
        kill(daemon.pid, SIGCONT)
        XCTAssertEqual(silent.state, "CRITICAL", silent.raw)
        XCTAssertTrue(silent.text.contains("no answer within"), silent.raw)
        XCTAssertEqual(healthSilent.status, 3, healthSilent.stderr)
        XCTAssertTrue(healthSilent.stderr.hasPrefix("creditctl: error: DEADLINE_EXCEEDED: "), healthSilent.stderr)

        daemon.kill()  // SIGKILL leaves a socket nobody listens on
        let refused = try check([], socket: daemon.socketPath)
        XCTAssertEqual(refused.state, "CRITICAL", refused.raw)
        let healthRefused = try OpsProcess.creditctl(["health", "-s", daemon.socketPath])
        XCTAssertEqual(healthRefused.status, 2, healthRefused.stderr)
        XCTAssertTrue(healthRefused.stderr.hasPrefix("creditctl: error: UNAVAILABLE: "), healthRefused.stderr)
    }

    /// An answer is not silence: a DEADLINE_EXCEEDED the peer sends at once is CRITICAL with
    /// that answer, not "no answer within 10s"; UNAUTHENTICATED is UNKNOWN, like a permission
    /// error (operations.md groups them). The real daemon sends neither at will (its
    /// DEADLINE_EXCEEDED races creditctl's own timer), so a scripted peer answers every call.
    func testCheckReportsAnAnswersStatusNotSilence() throws {
        for (code, state, text) in [(Int32(4), "CRITICAL", "DEADLINE_EXCEEDED: a proxy gave up"),
                                    (16, "UNKNOWN", "permission denied: no credentials")] {
            let message = String(text.split(separator: ": ", maxSplits: 1)[1])
            let server = try FakeServer { connection in
                while let request = connection.readRequest() {
                    var response = Ttrpc_Response()
                    response.status.code = code
                    response.status.message = message
                    connection.sendResponse(streamID: request.streamID, response)
                }
            }
            let output = try check([], socket: server.path)
            server.join()
            XCTAssertEqual(output.state, state, output.raw)
            XCTAssertEqual(output.text, text, output.raw)
        }
    }

    /// UNKNOWN (3) for bad arguments, --help/-h, --version/-V and an unknown -S service.
    func testCheckUnknownForBadArgumentsHelpVersionAndUnknownService() throws {
        let daemon = try DaemonProcess.start()
        let socket = daemon.socketPath
        for (arguments, expected) in [(["-w", "abc"], "-w: "), (["-c", "1:0"], "-c: "), (["-t", "0"], "-t must be"),
                                      (["-t", "1e16"], "-t must be"),
                                      (["--journal-warning", "@"], "--journal-warning: ")] {
            let bad = try check(arguments, socket: socket)
            XCTAssertEqual(bad.state, "UNKNOWN", "\(arguments): \(bad.raw)")
            XCTAssertTrue(bad.text.hasPrefix(expected), "\(arguments): \(bad.raw)")
        }
        let abstract = try check([], socket: "unix-abstract:creditd")
        XCTAssertEqual(abstract.state, "UNKNOWN", abstract.raw)
        let unknownService = try check(["-S", "nope"], socket: socket)
        XCTAssertEqual(unknownService.state, "UNKNOWN", unknownService.raw)
        XCTAssertTrue(unknownService.text.hasPrefix("NOT_FOUND"), unknownService.raw)
        let knownService = try check(["-S", "creditd.v1.Credits"], socket: socket)
        XCTAssertEqual(knownService.state, "OK", knownService.raw)

        // Options the parser itself rejects: still UNKNOWN.
        let bogus = try OpsProcess.creditctl(["check", "-s", socket, "--bogus"])
        XCTAssertEqual(bogus.status, 3)
        XCTAssertTrue(bogus.stdout.hasPrefix("CREDITD UNKNOWN - Unknown option '--bogus'"), bogus.stdout)
        XCTAssertEqual(bogus.stderr, "", "a plugin writes to stdout only")
        XCTAssertEqual(try OpsProcess.creditctl(["check", "-s", socket, "-t", "soon"]).status, 3)
        for flag in ["--help", "-h"] {
            let help = try OpsProcess.creditctl(["check", flag])
            XCTAssertEqual(help.status, 3, flag)
            XCTAssertTrue(help.stdout.contains("USAGE: creditctl check"), help.stdout)
        }
        for flag in ["--version", "-V"] {
            let version = try OpsProcess.creditctl(["check", flag])
            XCTAssertEqual(version.status, 3, flag)
            XCTAssertEqual(version.stdout, "0.1.0\n", flag)
        }
        XCTAssertEqual(try daemon.stop(), 0)
    }

    // MARK: creditctl health

    /// `health --watch` (docs/operations.md §7: streams print JSON Lines): the status at once, then
    /// each change; the daemon's shutdown ends it with the last status (NOT_SERVING: 4), and a
    /// daemon that dies ends it as a lost connection (2).
    func testHealthWatchPrintsEachStatusUntilTheDaemonEndsIt() throws {
        for ending in ["shutdown", "kill"] {
            let daemon = try DaemonProcess.start()
            let log = daemon.directory.appendingPathComponent("watch-\(ending).log").path
            let watch = try BackgroundProcess(
                [try OpsTools.creditctl, "health", "--watch", "-o", "json", "-s", daemon.socketPath],
                environment: TestEnvironment.scrubbed(), logPath: log)
            XCTAssertTrue(watch.waitForLog(#"{"status":"SERVING"}"#), watch.log)
            XCTAssertTrue(watch.isRunning, "a watch goes on after the first status")
            if ending == "shutdown" {
                XCTAssertEqual(try daemon.stop(), 0)
                XCTAssertEqual(watch.waitForExit(), 4, watch.log)
                XCTAssertEqual(watch.log.split(separator: "\n").prefix(2), [#"{"status":"SERVING"}"#, #"{"status":"NOT_SERVING"}"#])
            } else {
                daemon.kill()
                XCTAssertEqual(watch.waitForExit(), 2, watch.log)
                XCTAssertTrue(watch.log.contains("creditctl: error: UNAVAILABLE: "), watch.log)
            }
        }
    }

    func testHealthExitCodes() throws {
        let daemon = try DaemonProcess.start()
        let socket = daemon.socketPath
        let serving = try OpsProcess.creditctl(["health", "-s", socket])
        XCTAssertEqual(serving.status, 0, serving.stderr)
        XCTAssertEqual(serving.stdout, "status: SERVING\n")
        let json = try OpsProcess.creditctl(["health", "-s", socket, "-o", "json"])
        XCTAssertEqual(json.status, 0, json.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(object?["status"] as? String, "SERVING", json.stdout)
        XCTAssertEqual(try OpsProcess.creditctl(["health", "-s", socket, "-S", "creditd.v1.Admin"]).status, 0)

        let unknown = try OpsProcess.creditctl(["health", "-s", socket, "-S", "nope"])
        XCTAssertEqual(unknown.status, 3, "NOT_FOUND is an RPC failure")
        XCTAssertTrue(unknown.stderr.hasPrefix("creditctl: error: NOT_FOUND: "), unknown.stderr)
        XCTAssertEqual(try OpsProcess.creditctl(["health", "-s", socket, "--bogus"]).status, 1, "invalid arguments")
        XCTAssertEqual(try OpsProcess.creditctl(["health", "-s", socket, "--timeout", "-1"]).status, 1, "invalid arguments")
        XCTAssertEqual(try daemon.stop(), 0)
        let gone = try OpsProcess.creditctl(["health", "-s", socket])
        XCTAssertEqual(gone.status, 2, "no daemon: \(gone.stderr)")
    }

    /// A journal that cannot be written: health answers NOT_SERVING (4), check is CRITICAL and
    /// names the fault, metrics say creditd_serving 0.
    func testProbesDuringPersistenceFault() throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let shim = try PersistenceFaultTests.buildShim(into: directory)
        let trigger = directory.appendingPathComponent("fail-now").path
        let daemon = try DaemonProcess.start(arguments: ["--clock", "manual"], directory: directory, environment: [
            "LD_PRELOAD": shim,
            "CREDITD_FAULTINJECT_DIR": directory.appendingPathComponent("state").path,
            "CREDITD_FAULTINJECT_TRIGGER": trigger,
            "CREDITD_FAULTINJECT_OPS": "fsync",
        ])
        let socket = daemon.socketPath
        XCTAssertTrue(FileManager.default.createFile(atPath: trigger, contents: nil))
        let write = try OpsProcess.creditctl(["create", "f-1", "--customer", "acme", "--seats", "1", "--price", "100",
                                              "--currency", "USD", "-s", socket])
        XCTAssertEqual(write.status, 69, "UNAVAILABLE: \(write.stderr)")

        let health = try OpsProcess.creditctl(["health", "-s", socket])
        XCTAssertEqual(health.status, 4, health.stderr)
        XCTAssertEqual(health.stdout, "status: NOT_SERVING\n")
        let check = try check([], socket: socket)
        XCTAssertEqual(check.state, "CRITICAL", check.raw)
        // The first line stays short; the fault's text (path, errno, what to do) follows it.
        XCTAssertEqual(check.text, "NOT_SERVING, persistence fault", check.raw)
        XCTAssertTrue(check.raw.contains("\npersistence fault: journal "), check.raw)
        let metrics = try OpsProcess.creditctl(["metrics", "-s", socket])
        XCTAssertEqual(metrics.status, 0, metrics.stderr)
        XCTAssertTrue(metrics.stdout.contains("\ncreditd_serving 0\n"), metrics.stdout)
        daemon.kill()
    }

    // MARK: creditctl metrics

    /// python3 with prometheus_client (Debian: python3-prometheus-client). Missing is a setup
    /// error that fails the test: CI installs it with scripts/install-deps.sh.
    static func prometheusPython() throws -> String {
        var candidates = ["/usr/bin/python3"]
        if let onPath = OpsTools.find("python3"), !candidates.contains(onPath) { candidates.append(onPath) }
        for python in candidates where FileManager.default.isExecutableFile(atPath: python) {
            if let probe = try? OpsProcess.run([python, "-c", "import prometheus_client.parser"]), probe.status == 0 {
                return python
            }
        }
        throw OpsTools.Missing(description: """
            no python3 with the prometheus_client module (tried \(candidates.joined(separator: ", "))); \
            install the Debian package python3-prometheus-client (scripts/install-deps.sh)
            """)
    }

    struct Family: Decodable {
        struct Sample: Decodable {
            var name: String
            var labels: [String: String]
            var value: String
            var timestamp: Double?
        }

        var name: String
        var type: String
        var documentation: String
        var samples: [Sample]
    }

    static let parseScript = """
        import json, sys
        from prometheus_client.parser import text_string_to_metric_families
        families = []
        for family in text_string_to_metric_families(sys.stdin.read()):
            families.append({"name": family.name, "type": family.type, "documentation": family.documentation,
                             "samples": [{"name": s.name, "labels": s.labels, "value": repr(s.value),
                                          "timestamp": None if s.timestamp is None else float(s.timestamp)}
                                         for s in family.samples]})
        json.dump(families, sys.stdout)
        """

    func testMetricsParseAsPrometheusText() async throws {
        let python = try Self.prometheusPython()
        let daemon = try DaemonProcess.start(arguments: ["--clock", "manual", "--now", "2025-04-01T09:00:00Z"])
        let socket = daemon.socketPath
        XCTAssertEqual(try OpsProcess.creditctl(["create", "m-1", "--customer", "acme", "--seats", "3", "--price", "500",
                                                 "--currency", "EUR", "-s", socket]).status, 0)
        XCTAssertEqual(try OpsProcess.creditctl(["seats", "m-1", "2", "-s", socket]).status, 0)
        XCTAssertEqual(try OpsProcess.creditctl(["get", "nope", "-s", socket]).status, 1)
        XCTAssertEqual(try OpsProcess.creditctl(["health", "-s", socket]).status, 0)

        let metrics = try OpsProcess.creditctl(["metrics", "-s", socket])
        XCTAssertEqual(metrics.status, 0, metrics.stderr)
        XCTAssertTrue(metrics.stdout.hasSuffix("\n"), "a newline after the last line")
        XCTAssertFalse(metrics.stdout.contains("\r"))
        // -o table: a row per series (label values may hold spaces), no comments.
        let table = try OpsProcess.creditctl(["metrics", "-o", "table", "-s", socket])
        XCTAssertEqual(table.status, 0, table.stderr)
        let rows = table.stdout.split(separator: "\n")
        XCTAssertTrue(rows.first?.hasPrefix("SERIES") == true, table.stdout)
        XCTAssertGreaterThan(rows.count, 50, table.stdout)
        XCTAssertTrue(rows.dropFirst().allSatisfy { $0.hasPrefix("creditd_") && Double($0.split(separator: " ").last ?? "") != nil },
                      table.stdout)
        XCTAssertTrue(rows.contains { $0.hasPrefix("creditd_serving ") && $0.hasSuffix(" 1") }, table.stdout)

        let parsed = try OpsProcess.run([python, "-c", Self.parseScript], stdin: metrics.stdout)
        XCTAssertEqual(parsed.status, 0, "prometheus_client rejects the text:\n\(parsed.stderr)\n\(metrics.stdout)")
        let families = try JSONDecoder().decode([Family].self, from: Data(parsed.stdout.utf8))

        XCTAssertEqual(Set(families.map(\.name)).count, families.count, "one block per family")
        let samples = families.flatMap(\.samples)
        for family in families {
            XCTAssertTrue(family.name.hasPrefix("creditd_"), family.name)
            XCTAssertFalse(family.documentation.isEmpty, "\(family.name) has # HELP")
        }
        XCTAssertTrue(samples.allSatisfy { $0.timestamp == nil }, "no timestamps (node_exporter skips such files)")
        func type(of sample: String) -> String? { families.first { $0.samples.contains { $0.name == sample } }?.type }
        func values(_ name: String) -> [Family.Sample] { samples.filter { $0.name == name } }

        let build = try XCTUnwrap(values("creditd_build_info").first)
        XCTAssertEqual(build.labels["version"], "0.1.0")
        // Every refusal reason is there from the start, at 0.
        XCTAssertEqual(Set(values("creditd_connections_refused_total").filter { Double($0.value) == 0 }.compactMap { $0.labels["reason"] }),
                       ["per_uid", "full", "draining"], metrics.stdout)
        XCTAssertEqual(Double(build.value), 1)
        XCTAssertEqual(type(of: "creditd_rpc_requests_total"), "counter")
        let requests = values("creditd_rpc_requests_total")
        XCTAssertTrue(requests.contains { $0.labels == ["method": "creditd.v1.Credits/CreateSubscription", "code": "OK"] && Double($0.value) == 1 },
                      "\(requests)")
        XCTAssertTrue(requests.contains { $0.labels == ["method": "creditd.v1.Credits/GetSubscription", "code": "NOT_FOUND"] },
                      "\(requests)")
        for name in ["creditd_connections", "creditd_serving", "creditd_credits_overdue", "creditd_refunds_overdue"] {
            XCTAssertEqual(values(name).count, 1, name)
            XCTAssertEqual(type(of: name), "gauge", name)
        }
        XCTAssertEqual(values("creditd_serving").first.flatMap { Double($0.value) }, 1)
        XCTAssertFalse(values("creditd_credits").isEmpty)
        XCTAssertTrue(values("creditd_credits").allSatisfy { $0.labels.keys.sorted() == ["state"] })
        XCTAssertTrue(samples.allSatisfy { $0.labels.values.allSatisfy { !$0.contains("m-1") } }, "no subscription ids in labels")

        // The latency histogram: per method, cumulative buckets ending in +Inf == _count, and _sum.
        XCTAssertEqual(type(of: "creditd_rpc_duration_seconds_count"), "histogram")
        let methods = Set(values("creditd_rpc_duration_seconds_count").compactMap { $0.labels["method"] })
        XCTAssertTrue(methods.contains("creditd.v1.Credits/ChangeSeats"), "\(methods)")
        for method in methods {
            let buckets = values("creditd_rpc_duration_seconds_bucket").filter { $0.labels["method"] == method }
            let bounds = buckets.compactMap { $0.labels["le"].flatMap(Double.init) }
            XCTAssertEqual(bounds, bounds.sorted(), method)
            XCTAssertEqual(bounds.last, .infinity, method)
            let counts = buckets.compactMap { Double($0.value) }
            XCTAssertEqual(counts, counts.sorted(), "cumulative: \(method)")
            let count = values("creditd_rpc_duration_seconds_count").first { $0.labels["method"] == method }?.value
            XCTAssertEqual(buckets.last.flatMap { Double($0.value) }, count.flatMap(Double.init), "+Inf bucket == _count: \(method)")
            XCTAssertEqual(values("creditd_rpc_duration_seconds_sum").filter { $0.labels["method"] == method }.count, 1, method)
        }
        XCTAssertEqual(try daemon.stop(), 0)
    }
}
