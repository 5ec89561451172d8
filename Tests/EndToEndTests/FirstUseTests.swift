import Foundation
import XCTest

/// What a first user of creditd and creditctl meets (issue 16, items 6-8, 11 and 12): the real
/// binaries on a real socket, on the manual clock.
final class FirstUseTests: XCTestCase {
    private func manualDaemon(directory: URL? = nil, now: String = "2025-04-01T09:00:00Z") throws -> DaemonProcess {
        try DaemonProcess.start(arguments: ["--clock", "manual", "--now", now], directory: directory, testService: false)
    }

    private func ctl(_ daemon: DaemonProcess, _ arguments: [String]) throws -> OpsResult {
        try OpsProcess.creditctl(arguments, environment: ["CREDITD_SOCKET": daemon.socketPath])
    }

    private func create(_ daemon: DaemonProcess, _ id: String) throws {
        let result = try ctl(daemon, ["create", id, "--seats", "10", "--price", "1000", "--currency", "USD"])
        XCTAssertEqual(result.status, 0, result.stderr)
    }

    // MARK: item 6: --now is never silently ignored

    func testNowWithoutManualClockIsRefused() throws {
        let (status, stderr) = try DaemonProcess.runToExit(arguments: ["--now", "2025-04-01T09:00:00Z"])
        XCTAssertNotEqual(status, 0)
        XCTAssertTrue(stderr.contains("--now 2025-04-01T09:00:00Z needs --clock manual"), stderr)
    }

    func testNowOnExistingStateWarns() throws {
        let first = try manualDaemon()
        try create(first, "warn-1")
        XCTAssertEqual(try first.stop(), 0)
        XCTAssertFalse(first.stderr.contains("applies only to a new state directory"), first.stderr)

        let second = try manualDaemon(directory: first.directory, now: "2025-01-01T00:00:00Z")
        defer { _ = try? second.stop() }
        XCTAssertTrue(second.stderr.contains("applies only to a new state directory"), second.stderr)
        // The clock resumed where the state left it, not at the earlier --now.
        let clock = try ctl(second, ["clock"])
        XCTAssertTrue(clock.stdout.contains("2025-04-01T09:00:00Z"), clock.stdout)
    }

    /// A later `--now` on existing state does not move the clock either: the jump would skip the
    /// transitions between (a final invoice due in between stayed pending, shown late).
    func testLaterNowOnExistingStateResumesWhereTheClockStopped() throws {
        let first = try manualDaemon()
        try create(first, "later-1")
        XCTAssertEqual(try ctl(first, ["advance-clock", "--to", "2025-04-11T12:00:00Z"]).status, 0)
        XCTAssertEqual(try ctl(first, ["cancel", "later-1"]).status, 0)
        XCTAssertEqual(try ctl(first, ["advance-clock", "--to", "2025-04-20T00:00:00Z"]).status, 0)
        XCTAssertEqual(try first.stop(), 0)

        let second = try manualDaemon(directory: first.directory, now: "2025-09-01T00:00:00Z")
        defer { _ = try? second.stop() }
        XCTAssertTrue(second.stderr.contains("--now is not used"), second.stderr)
        let clock = try ctl(second, ["clock"])
        XCTAssertTrue(clock.stdout.contains("2025-04-20T00:00:00Z"), clock.stdout)
        // Moving on runs the transitions: the credit due 2025-05-01 settles (C3).
        XCTAssertEqual(try ctl(second, ["advance-clock", "--to", "2025-09-01T00:00:00Z"]).status, 0)
        let refunds = try ctl(second, ["-o", "json", "refunds", "later-1"])
        XCTAssertTrue(refunds.stdout.contains(#""state":"CREDIT_STATE_REFUND_PENDING""#), refunds.stdout)
    }

    /// After a `--repair` that threw changes away, `creditctl stats` says so: its table showed only
    /// torn-tail truncations, and the repair was visible in `-o json` and the metrics alone.
    func testStatsTableShowsWhatTheStartRepaired() throws {
        let first = try manualDaemon()
        for i in 0..<20 { try create(first, "repair-\(i)") }
        first.kill()
        _ = try first.waitForExit()
        let state = first.directory.appendingPathComponent("state")
        let journal = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: state.path)
            .filter { $0.hasPrefix("journal-") }.sorted().first)
        let handle = try FileHandle(forUpdating: state.appendingPathComponent(journal))
        try handle.seek(toOffset: 1200)
        let byte = try XCTUnwrap(handle.readData(ofLength: 1).first)
        try handle.seek(toOffset: 1200)
        try handle.write(contentsOf: [~byte])
        try handle.close()

        let second = try DaemonProcess.start(arguments: ["--clock", "manual", "--repair"], directory: first.directory,
                                             testService: false)
        defer { _ = try? second.stop() }
        let stats = try ctl(second, ["stats"])
        XCTAssertEqual(stats.status, 0, stats.stderr)
        XCTAssertNotNil(stats.stdout.range(of: #"(?m)^repairs +1$"#, options: .regularExpression), stats.stdout)
        XCTAssertNotNil(stats.stdout.range(of: #"(?m)^recovery warnings +[1-9]"#, options: .regularExpression), stats.stdout)
    }

    /// A change whose answer never came may have been made: the error says so and how to repeat
    /// it safely, instead of a bare timeout that invites a second, different change.
    func testAWriteWithoutAnAnswerSaysItMayHaveBeenMade() throws {
        let daemon = try manualDaemon()
        defer { _ = try? daemon.stop() }
        try create(daemon, "stalled-1")
        kill(daemon.pid, SIGSTOP)
        let keyed = try ctl(daemon, ["seats", "stalled-1", "7", "-k", "op-42", "--timeout", "1"])
        let unkeyed = try ctl(daemon, ["cancel", "stalled-1", "--timeout", "1"])
        let dryRun = try ctl(daemon, ["seats", "stalled-1", "5", "--dry-run", "--timeout", "1"])
        kill(daemon.pid, SIGCONT)
        XCTAssertEqual(keyed.status, 75, keyed.stderr)
        XCTAssertTrue(keyed.stderr.contains("the change may have been made; repeat the command with the same -k op-42"),
                      keyed.stderr)
        XCTAssertEqual(unkeyed.status, 75, unkeyed.stderr)
        XCTAssertTrue(unkeyed.stderr.contains("look with `creditctl get stalled-1` before repeating it"), unkeyed.stderr)
        XCTAssertEqual(dryRun.status, 75, dryRun.stderr)
        XCTAssertFalse(dryRun.stderr.contains("may have been made"), dryRun.stderr)
    }

    // MARK: item 7: options, numbers, addresses, usage

    func testCommonOptionsBeforeTheSubcommand() throws {
        let daemon = try manualDaemon()
        defer { _ = try? daemon.stop() }
        let created = try OpsProcess.creditctl(["-s", daemon.socketPath, "--timeout", "5", "-o", "json",
                                                "create", "opt-1", "--seats", "2", "--price", "100", "--currency", "EUR"])
        XCTAssertEqual(created.status, 0, created.stderr)
        XCTAssertTrue(created.stdout.hasPrefix("{"), created.stdout)
        let got = try OpsProcess.creditctl(["--socket=\(daemon.socketPath)", "get", "opt-1"])
        XCTAssertEqual(got.status, 0, got.stderr)
        XCTAssertTrue(got.stdout.contains("opt-1"), got.stdout)
        let health = try OpsProcess.creditctl(["-s", daemon.socketPath, "health"])
        XCTAssertEqual(health.status, 0, health.stderr)
        // An option that may not come first is the one named, not the valid -s before it.
        let misplaced = try OpsProcess.creditctl(["-s", daemon.socketPath, "-t", "5", "get", "opt-1"])
        XCTAssertEqual(misplaced.status, 2, misplaced.stderr)
        XCTAssertTrue(misplaced.stderr.contains("Unknown option '-t'"), misplaced.stderr)
    }

    func testNegativeNumbersReachTheServer() throws {
        let daemon = try manualDaemon()
        defer { _ = try? daemon.stop() }
        try create(daemon, "neg-1")
        let seats = try ctl(daemon, ["seats", "neg-1", "-1"])
        XCTAssertEqual(seats.status, 1)
        XCTAssertTrue(seats.stderr.hasPrefix("creditctl: error: INVALID_ARGUMENT: seats_must_be_positive: "), seats.stderr)
        let dry = try ctl(daemon, ["seats", "neg-1", "--dry-run", "-2"])
        XCTAssertTrue(dry.stderr.contains("seats_must_be_positive"), dry.stderr)
        let price = try ctl(daemon, ["create", "neg-2", "--seats", "1", "--price", "-5", "--currency", "USD"])
        XCTAssertEqual(price.status, 1)
        XCTAssertTrue(price.stderr.hasPrefix("creditctl: error: INVALID_ARGUMENT: invalid_request: "), price.stderr)
    }

    func testUsageErrors() throws {
        let tcp = try OpsProcess.creditctl(["-s", "tcp://127.0.0.1:1", "get", "x"])
        XCTAssertEqual(tcp.status, 2)
        XCTAssertTrue(tcp.stderr.hasPrefix("creditctl: error: usage: creditd listens on a Unix socket"), tcp.stderr)

        // An empty -s (an unset variable in a script) is refused, not read as "the default".
        let empty = try OpsProcess.creditctl(["-s", "", "get", "x"])
        XCTAssertEqual(empty.status, 2, empty.stderr)
        XCTAssertTrue(empty.stderr.contains("-s/--socket needs a path"), empty.stderr)
        let emptyCheck = try OpsProcess.creditctl(["check", "-s", ""])
        XCTAssertEqual(emptyCheck.status, 3, emptyCheck.stdout)
        XCTAssertTrue(emptyCheck.stdout.hasPrefix("CREDITD UNKNOWN - -s/--socket needs a path"), emptyCheck.stdout)

        let none = try OpsProcess.creditctl([])
        XCTAssertEqual(none.status, 2)
        XCTAssertTrue(none.stderr.contains("USAGE: creditctl <subcommand>"), none.stderr)
        XCTAssertEqual(none.stdout, "")

        let missing = try OpsProcess.creditctl(["get"])
        XCTAssertEqual(missing.status, 2)
        XCTAssertTrue(missing.stderr.hasPrefix("creditctl: error: usage: Missing expected argument '<id>'"), missing.stderr)

        // A timeout too large for a deadline is a usage error, not a crash.
        let huge = try OpsProcess.creditctl(["health", "-s", "/nonexistent.sock", "--timeout", "1e16"])
        XCTAssertEqual(huge.status, 1, huge.stderr)
        XCTAssertTrue(huge.stderr.contains("--timeout must be a positive number of seconds, at most"), huge.stderr)

        // A negative number after a flag is still read as the next option's value.
        for arguments in [["events", "--follow", "--after", "-5"], ["events", "-f", "--after", "-5"]] {
            let negative = try OpsProcess.creditctl(arguments + ["-s", "/nonexistent.sock"])
            XCTAssertTrue(negative.stderr.contains("--after must be 0 or more"), "\(arguments): \(negative.stderr)")
        }
        let page = try OpsProcess.creditctl(["credits", "--overdue", "--page-size", "-1", "-s", "/nonexistent.sock"])
        XCTAssertFalse(page.stderr.contains("Missing value"), page.stderr)
    }

    /// An export that fails (here: no daemon) leaves the file it would have replaced as it was.
    func testAFailedExportLeavesTheOutputFileAlone() throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        let file = directory.appendingPathComponent("keep.csv").path
        try "the last good export\n".write(toFile: file, atomically: true, encoding: .utf8)
        let failed = try OpsProcess.creditctl(["export", "credits", "-o", file, "-s", "/nonexistent.sock"])
        XCTAssertNotEqual(failed.status, 0)
        XCTAssertEqual(try String(contentsOfFile: file, encoding: .utf8), "the last good export\n")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["keep.csv"], "no temporary file left")
    }

    func testEnumOptionHelpShowsNames() throws {
        // Help wraps its lines; compare with the whitespace collapsed.
        func help(_ arguments: [String]) throws -> String {
            try OpsProcess.creditctl(arguments).stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        }
        let create = try help(["create", "--help"])
        XCTAssertTrue(create.contains("default: monthly"), create)
        XCTAssertTrue(create.contains("default: anytime"), create)
        XCTAssertFalse(create.contains("default: 1)"), create)
        let cancel = try help(["cancel", "--help"])
        XCTAssertTrue(cancel.contains("default: immediate"), cancel)
    }

    func testIgnoredRefundOutcomeAndNoOpResumeSayWhy() throws {
        let daemon = try manualDaemon()
        defer { _ = try? daemon.stop() }
        try create(daemon, "why-1")
        XCTAssertEqual(try ctl(daemon, ["seats", "why-1", "7"]).status, 0)
        let report = try ctl(daemon, ["refund-outcome", "why-1", "cr_1", "succeeded"])
        XCTAssertEqual(report.status, 0, report.stderr)
        XCTAssertTrue(report.stdout.contains("ignored    true: the credit is pending, and only a refund_pending credit"),
                      report.stdout)

        let resume = try ctl(daemon, ["resume", "why-1"])
        XCTAssertEqual(resume.status, 0, resume.stderr)
        XCTAssertTrue(resume.stdout.hasPrefix("not resumed: why-1 had no pending end-of-period cancel"), resume.stdout)
        XCTAssertEqual(try ctl(daemon, ["cancel", "why-1", "--mode", "end_of_period"]).status, 0)
        let resumed = try ctl(daemon, ["resume", "why-1"])
        XCTAssertTrue(resumed.stdout.hasPrefix("resumed: the end-of-period cancel is withdrawn"), resumed.stdout)
    }

    // MARK: item 8: JSON keeps zero fields; item 11: the error format

    func testJSONKeepsZeroAndEmptyFields() throws {
        let daemon = try manualDaemon()
        defer { _ = try? daemon.stop() }
        try create(daemon, "json-1")
        let result = try ctl(daemon, ["refunds", "json-1", "-o", "json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        // Piped, it is one line.
        XCTAssertEqual(result.stdout.split(separator: "\n").count, 1, result.stdout)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        XCTAssertEqual((json["credits"] as? [Any])?.count, 0)
        let totals = try XCTUnwrap(json["totals"] as? [String: String])
        XCTAssertEqual(totals, ["pending_minor": "0", "applied_minor": "0", "consumed_minor": "0",
                                "refund_pending_minor": "0", "refunded_minor": "0"])
    }

    /// A message field the answer leaves out is `null`, not an object of zeros: a seat increase
    /// has no credit (S8), and read as `{"amount_minor": "0", ...}` it looked like one.
    func testJSONShowsAMessageTheAnswerDoesNotCarryAsNull() throws {
        let daemon = try manualDaemon()
        defer { _ = try? daemon.stop() }
        try create(daemon, "json-2")
        let result = try ctl(daemon, ["seats", "json-2", "12", "-o", "json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(json["outcome"] as? String, "SEAT_CHANGE_OUTCOME_CHARGE", result.stdout)
        XCTAssertTrue(json["credit"] is NSNull, result.stdout)
        XCTAssertNotNil(json["line"] as? [String: Any], result.stdout)
    }

    func testErrorsCarryTheReasonCode() throws {
        let daemon = try manualDaemon()
        defer { _ = try? daemon.stop() }
        let result = try ctl(daemon, ["get", "nobody"])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.hasPrefix("creditctl: error: NOT_FOUND: subscription_not_found: "), result.stderr)
    }

    /// Text a client sent is printed with its control characters escaped: a customer with a
    /// newline forged a row of `list`, and an escape sequence recoloured the operator's terminal.
    func testControlCharactersInClientTextAreEscapedInTables() throws {
        let daemon = try manualDaemon()
        defer { _ = try? daemon.stop() }
        let customer = "acme\nsub-9  active  99\u{1B}[31m\u{202E}x\\y"
        let created = try ctl(daemon, ["create", "sub-\u{7}1", "--seats", "2", "--price", "1000", "--currency", "USD",
                                      "--customer", customer])
        XCTAssertEqual(created.status, 0, created.stderr)
        for arguments in [["list"], ["get", "sub-\u{7}1"], ["events"]] {
            let result = try ctl(daemon, arguments)
            XCTAssertEqual(result.status, 0, result.stderr)
            XCTAssertFalse(result.stdout.unicodeScalars.contains { $0.value < 0x20 && $0 != "\n" && $0 != "\t" || $0.value == 0x1B },
                           "\(arguments): \(result.stdout.debugDescription)")
            XCTAssertFalse(result.stdout.unicodeScalars.contains("\u{202E}"), result.stdout)
            if arguments != ["list"] {   // list has no customer column
                XCTAssertTrue(result.stdout.contains(#"acme\nsub-9  active  99\x1B[31m\u{202E}x\\y"#), result.stdout)
            }
            XCTAssertTrue(result.stdout.contains(#"sub-\x071"#), "\(arguments): \(result.stdout)")
        }
        let refused = try ctl(daemon, ["create", "x", "--seats", "2", "--price", "1", "--currency", "U\nS\u{1B}"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.stderr.contains(#"U\nS\x1B"#), refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        // JSON escapes by its own rules: the text comes back whole.
        let json = try ctl(daemon, ["get", "sub-\u{7}1", "-o", "json"])
        XCTAssertTrue(json.stdout.contains("\"customer\":\"acme\\nsub-9  active  99\\u001B[31m\u{202E}x\\\\y\""), json.stdout)
    }

    /// What a first user met in a walkthrough: an added seat's charge printed as "line 3000"
    /// (no currency: a hundred times the 30.00 USD it is), refund status credits without their
    /// customer in JSON, `list` without the filters ListSubscriptions has, and `advance-clock`
    /// errors that did not say what was wrong.
    func testSeatChargeCurrencyRefundCustomerListFiltersAndClockErrors() throws {
        let daemon = try manualDaemon()
        defer { _ = try? daemon.stop() }
        for (id, customer) in [("a-1", "acme"), ("a-2", "acme"), ("g-1", "globex")] {
            let created = try ctl(daemon, ["create", id, "--seats", "10", "--price", "1000", "--currency", "USD",
                                          "--customer", customer])
            XCTAssertEqual(created.status, 0, created.stderr)
        }
        let added = try ctl(daemon, ["seats", "a-1", "13"])
        XCTAssertEqual(added.status, 0, added.stderr)
        XCTAssertTrue(added.stdout.contains("30.00 USD"), added.stdout)
        let addedJSON = try ctl(daemon, ["seats", "a-2", "12", "-o", "json"])
        XCTAssertTrue(addedJSON.stdout.contains("\"currency\":\"USD\""), addedJSON.stdout)

        _ = try ctl(daemon, ["seats", "g-1", "8"])
        let refunds = try ctl(daemon, ["refunds", "g-1", "-o", "json"])
        XCTAssertTrue(refunds.stdout.contains("\"customer\":\"globex\""), refunds.stdout)
        XCTAssertTrue(refunds.stdout.contains("\"as_of_date\":\"2025-04-01\""), refunds.stdout)

        _ = try ctl(daemon, ["cancel", "a-2"])
        let acme = try ctl(daemon, ["list", "--customer", "acme"])
        XCTAssertTrue(acme.stdout.contains("a-1") && acme.stdout.contains("a-2") && !acme.stdout.contains("g-1"), acme.stdout)
        let active = try ctl(daemon, ["list", "--customer", "acme", "--status", "active"])
        XCTAssertTrue(active.stdout.contains("a-1") && !active.stdout.contains("a-2"), active.stdout)

        let backwards = try ctl(daemon, ["advance-clock", "--by", "-1d"])
        XCTAssertEqual(backwards.status, 2, backwards.stderr)
        XCTAssertTrue(backwards.stderr.contains("the clock only moves forward"), backwards.stderr)
        let none = try ctl(daemon, ["advance-clock", "--by", "0s"])
        XCTAssertTrue(none.stderr.contains("the clock only moves forward"), none.stderr)
    }

    // MARK: item 12: a repeated cancel without a key shows the credit as it stands now

    func testRepeatedCancelShowsCreditAndInvoiceAsTheyStandNow() throws {
        let daemon = try manualDaemon()
        defer { _ = try? daemon.stop() }
        try create(daemon, "again-1")
        XCTAssertEqual(try ctl(daemon, ["advance-clock", "--to", "2025-04-11T12:00:00Z"]).status, 0)
        XCTAssertEqual(try ctl(daemon, ["cancel", "again-1"]).status, 0)
        XCTAssertEqual(try ctl(daemon, ["advance-clock", "--by", "20d"]).status, 0)
        let again = try ctl(daemon, ["cancel", "again-1", "-o", "json"])
        XCTAssertEqual(again.status, 0, again.stderr)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any])
        let record = try XCTUnwrap(json["cancellation"] as? [String: Any])
        XCTAssertEqual(record["already_cancelled"] as? Bool, true)
        XCTAssertEqual((record["credit"] as? [String: Any])?["state"] as? String, "CREDIT_STATE_REFUND_PENDING")
        XCTAssertEqual((record["final_invoice"] as? [String: Any])?["settled"] as? Bool, true)
        XCTAssertEqual(record["effective_date"] as? String, "2025-04-11")
    }
}
