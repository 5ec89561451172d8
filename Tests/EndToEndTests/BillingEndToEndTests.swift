import CreditClient
import CreditProto
import CreditWire
import Foundation
import XCTest

/// The billing rules end to end: the real daemon on the manual test clock,
/// driven over its socket, checked against the worked examples of docs/billing-rules.md §11.
final class BillingEndToEndTests: XCTestCase {
    var daemon: DaemonProcess!
    var client: CreditClient!

    override func setUp() async throws {
        daemon = try DaemonProcess.start(arguments: ["--clock", "manual", "--now", "2025-04-01T09:00:00Z"])
        client = try await CreditClient.connect(socketPath: daemon.socketPath)
    }

    override func tearDown() async throws {
        await client?.close()
        if let daemon, daemon.isRunning { XCTAssertEqual(try daemon.stop(), 0, daemon.stderr) }
    }

    // MARK: helpers

    /// Setup A: USD 10.00/seat/month, anchor 1, UTC, 10 seats, charged 10000.
    @discardableResult
    func createSetupA(_ id: String, seats: Int64 = 10, price: Int64 = 1000, zone: String = "UTC",
                      policy: Creditd_V1_RefundPolicy = .anytime) async throws -> Creditd_V1_CreateSubscriptionResponse {
        var request = Creditd_V1_CreateSubscriptionRequest()
        request.subscriptionID = id
        request.customer = "acme"
        request.plan = "team"
        request.seats = seats
        request.unitPriceMinor = price
        request.currency = "USD"
        request.interval = .monthly
        request.timeZone = zone
        request.refundPolicy = policy
        return try await client.createSubscription(request)
    }

    func advance(to text: String) async throws {
        var request = Creditd_V1_AdvanceClockRequest()
        request.toUnixNanos = try XCTUnwrap(nanos(text))
        _ = try await client.advanceClock(request)
    }

    func nanos(_ text: String) -> Int64? {
        let formatter = ISO8601DateFormatter()
        return formatter.date(from: text).map { Int64($0.timeIntervalSince1970) * 1_000_000_000 }
    }

    func cancel(_ id: String, mode: Creditd_V1_CancelMode = .immediate, key: String = "", dryRun: Bool = false) async throws -> Creditd_V1_CancelSubscriptionResponse {
        var request = Creditd_V1_CancelSubscriptionRequest()
        request.subscriptionID = id
        request.mode = mode
        request.idempotencyKey = key
        request.dryRun = dryRun
        return try await client.cancelSubscription(request)
    }

    func seats(_ id: String, _ count: Int64, key: String = "", timing: Creditd_V1_SeatChangeTiming = .now,
               dryRun: Bool = false) async throws -> Creditd_V1_ChangeSeatsResponse {
        var request = Creditd_V1_ChangeSeatsRequest()
        request.subscriptionID = id
        request.newSeats = count
        request.idempotencyKey = key
        request.timing = timing
        request.dryRun = dryRun
        return try await client.changeSeats(request)
    }

    func refunds(_ id: String) async throws -> Creditd_V1_GetRefundStatusResponse {
        var request = Creditd_V1_GetRefundStatusRequest()
        request.subscriptionID = id
        return try await client.getRefundStatus(request)
    }

    func expectError(_ reason: String, _ code: StatusCode, _ body: () async throws -> Void,
                     file: StaticString = #filePath, line: UInt = #line) async {
        do {
            try await body()
            XCTFail("expected \(reason)", file: file, line: line)
        } catch let error as RPCError {
            XCTAssertEqual(error.code, code, "\(error)", file: file, line: line)
            XCTAssertEqual(error.reason, reason, "\(error)", file: file, line: line)
            XCTAssertTrue(error.message.hasPrefix("\(reason): "), error.message, file: file, line: line)
        } catch {
            XCTFail("unexpected \(error)", file: file, line: line)
        }
    }

    // MARK: tests

    /// A1 then E1: credit 6667, pending -> applied -> refund_pending on 05-01, refunded on report.
    func testCancelCreditLifecycle() async throws {
        let created = try await createSetupA("a1")
        XCTAssertEqual(created.subscription.currentPeriod.periodStart, "2025-04-01")
        XCTAssertEqual(created.subscription.currentPeriod.periodEnd, "2025-05-01")
        XCTAssertEqual(created.purchaseInvoice.totalMinor, 10000)

        try await advance(to: "2025-04-11T12:00:00Z")
        let cancelled = try await cancel("a1")
        let record = cancelled.cancellation
        XCTAssertEqual(record.effectiveDate, "2025-04-11")
        XCTAssertEqual(record.line.amountMinor, -6667)
        XCTAssertEqual(record.credit.amountMinor, 6667)
        XCTAssertEqual(record.credit.dueDate, "2025-05-01")
        XCTAssertEqual(record.credit.deadline, "2025-05-11")
        XCTAssertEqual(record.credit.expectedBy, "2025-05-01")
        XCTAssertEqual(record.credit.state, .pending)
        XCTAssertEqual(record.finalInvoice.kind, .final)
        XCTAssertEqual(record.finalInvoice.settlesOn, "2025-05-01")
        XCTAssertFalse(record.alreadyCancelled)
        XCTAssertEqual(record.line.explanation.unusedDays, 20)
        XCTAssertEqual(record.line.explanation.periodDays, 30)

        // A10: cancelling again returns the same record and no new credit.
        let again = try await cancel("a1", mode: .endOfPeriod)
        XCTAssertTrue(again.cancellation.alreadyCancelled)
        XCTAssertEqual(again.cancellation.credit.creditID, record.credit.creditID)
        // A11: seat changes are refused after a cancel.
        await expectError("subscription_cancelled", .failedPrecondition) { _ = try await self.seats("a1", 5) }

        var status = try await refunds("a1")
        XCTAssertEqual(status.credits.count, 1)
        XCTAssertEqual(status.credits[0].state, .pending)
        XCTAssertEqual(status.totals.pendingMinor, 6667)
        XCTAssertFalse(status.credits[0].overdue)

        try await advance(to: "2025-05-01T00:00:00Z")
        status = try await refunds("a1")
        let credit = status.credits[0]
        XCTAssertEqual(credit.state, .refundPending)
        XCTAssertEqual(credit.history.map(\.state), [.pending, .applied, .refundPending])
        XCTAssertEqual(credit.appliedDate, "2025-05-01")
        XCTAssertEqual(credit.refundExpectedBy, "2025-06-01")
        XCTAssertEqual(status.totals.refundPendingMinor, 6667)

        try await advance(to: "2025-06-03T10:00:00Z")
        var report = Creditd_V1_RecordRefundOutcomeRequest()
        report.subscriptionID = "a1"
        report.creditID = credit.creditID
        report.outcome = .succeeded
        let outcome = try await client.recordRefundOutcome(report)
        XCTAssertFalse(outcome.ignored)
        XCTAssertEqual(outcome.state, .refunded)
        XCTAssertEqual(outcome.refundedMinor, 6667)
        // A late failure report after refunded is ignored (L9).
        report.outcome = .failed
        let late = try await client.recordRefundOutcome(report)
        XCTAssertTrue(late.ignored)
        XCTAssertEqual(late.state, .refunded)
    }

    /// A4 then E2: a seat-decrease credit is consumed by the next renewal bill.
    func testSeatDecreaseCreditConsumedByRenewal() async throws {
        try await createSetupA("a4")
        try await advance(to: "2025-04-11T08:00:00Z")
        let change = try await seats("a4", 7)
        XCTAssertEqual(change.outcome, .credit)
        XCTAssertEqual(change.line.amountMinor, -2000)
        XCTAssertEqual(change.credit.amountMinor, 2000)
        XCTAssertEqual(change.credit.expectedBy, "2025-05-01")

        try await advance(to: "2025-05-01T00:00:00Z")
        let status = try await refunds("a4")
        XCTAssertEqual(status.credits[0].state, .consumed)
        XCTAssertEqual(status.credits[0].consumedMinor, 2000)
        XCTAssertEqual(status.totals.consumedMinor, 2000)

        var request = Creditd_V1_ListInvoicesRequest()
        request.subscriptionID = "a4"
        let invoices = try await client.listInvoices(request).invoices
        XCTAssertEqual(invoices.map(\.kind), [.purchase, .renewal])
        XCTAssertEqual(invoices[1].totalMinor, 5000, "7 x 1000 renewal less the 2000 credit")
    }

    /// A5: cumulative rounding across several changes in one period.
    func testCumulativeRoundingAcrossChanges() async throws {
        try await createSetupA("a5")
        try await advance(to: "2025-04-11T00:00:00Z")
        let first = try await seats("a5", 7)
        try await advance(to: "2025-04-21T00:00:00Z")
        let second = try await seats("a5", 9)
        try await advance(to: "2025-04-26T00:00:00Z")
        let third = try await seats("a5", 8)
        XCTAssertEqual([first.line.amountMinor, second.line.amountMinor, third.line.amountMinor], [-2000, 667, -167])
        XCTAssertEqual(second.outcome, .charge)
        XCTAssertEqual(third.line.explanation.cumulativeExact.numerator, "-1500")
    }

    /// A14-A16: idempotency keys replay byte for byte; a different body is refused.
    func testIdempotencyKeys() async throws {
        try await createSetupA("idem")
        try await advance(to: "2025-04-11T00:00:00Z")
        var request = Creditd_V1_ChangeSeatsRequest()
        request.subscriptionID = "idem"
        request.newSeats = 7
        request.idempotencyKey = "5b0d4c1e-key"
        let firstBytes = try await client.callRaw(service: "creditd.v1.Credits", method: "ChangeSeats",
                                                  payload: try request.serializedBytes())
        try await advance(to: "2025-04-12T00:00:00Z")
        let replayBytes = try await client.callRaw(service: "creditd.v1.Credits", method: "ChangeSeats",
                                                   payload: try request.serializedBytes())
        XCTAssertEqual(firstBytes, replayBytes, "a replay is byte for byte the first answer")

        await expectError("idempotency_key_reused", .alreadyExists) {
            _ = try await self.seats("idem", 6, key: "5b0d4c1e-key")
        }
        // A16: the same change without a key is a no-op.
        let noKey = try await seats("idem", 7)
        XCTAssertEqual(noKey.outcome, .noChange)
        let status = try await refunds("idem")
        XCTAssertEqual(status.credits.count, 1, "retries never create a second credit")
    }

    /// Dry runs answer as the commit would and change nothing.
    func testDryRunEqualsCommit() async throws {
        try await createSetupA("dry")
        try await advance(to: "2025-04-11T00:00:00Z")
        let preview = try await cancel("dry", dryRun: true)
        XCTAssertTrue(preview.dryRun)
        let observed1 = try await refunds("dry").credits.count
        XCTAssertEqual(observed1, 0)
        let commit = try await cancel("dry")
        XCTAssertEqual(preview.cancellation.line, commit.cancellation.line)
        XCTAssertEqual(preview.cancellation.credit.amountMinor, commit.cancellation.credit.amountMinor)
    }

    /// Stable errors (§10) with their codes and reasons.
    func testErrors() async throws {
        await expectError("subscription_not_found", .notFound) {
            var request = Creditd_V1_GetSubscriptionRequest()
            request.subscriptionID = "nope"
            _ = try await self.client.getSubscription(request)
        }
        try await createSetupA("err")
        await expectError("subscription_exists", .alreadyExists) { try await self.createSetupA("err") }
        await expectError("seats_must_be_positive", .invalidArgument) { _ = try await self.seats("err", 0) }
        await expectError("invalid_request", .invalidArgument) { _ = try await self.seats("err", 100_001) }
        await expectError("invalid_request", .invalidArgument) {
            var request = Creditd_V1_CreateSubscriptionRequest()
            request.subscriptionID = "bad-currency"
            request.seats = 1
            request.currency = "usd"
            request.interval = .monthly
            request.timeZone = "UTC"
            _ = try await self.client.createSubscription(request)
        }
        await expectError("credit_not_found", .notFound) {
            var request = Creditd_V1_GetRefundStatusRequest()
            request.subscriptionID = "err"
            request.creditID = "cr_999"
            _ = try await self.client.getRefundStatus(request)
        }
    }

    /// Setup D: time zones decide the civil date; a cancel late on Feb 28 in Los Angeles.
    func testTimeZoneDecidesTheEffectiveDate() async throws {
        daemon = nil
        let la = try DaemonProcess.start(arguments: ["--clock", "manual", "--now", "2025-02-01T12:00:00Z"])
        let client = try await CreditClient.connect(socketPath: la.socketPath)
        defer { Task { await client.close() } }
        var create = Creditd_V1_CreateSubscriptionRequest()
        create.subscriptionID = "d1"
        create.seats = 10
        create.unitPriceMinor = 1000
        create.currency = "USD"
        create.interval = .monthly
        create.timeZone = "America/Los_Angeles"
        let created = try await client.createSubscription(create)
        XCTAssertEqual(created.subscription.currentPeriod.periodEnd, "2025-03-01")

        var clock = Creditd_V1_AdvanceClockRequest()
        clock.toUnixNanos = try XCTUnwrap(nanos("2025-03-01T05:00:00Z"))
        _ = try await client.advanceClock(clock)
        var cancel = Creditd_V1_CancelSubscriptionRequest()
        cancel.subscriptionID = "d1"
        let record = try await client.cancelSubscription(cancel).cancellation
        XCTAssertEqual(record.effectiveDate, "2025-02-28")
        XCTAssertEqual(record.credit.amountMinor, 357)
        XCTAssertEqual(record.credit.expectedBy, "2025-03-01")
        XCTAssertEqual(try la.stop(), 0, la.stderr)
    }

    /// State and the manual clock survive a restart (journal and snapshot).
    func testStateSurvivesRestart() async throws {
        try await createSetupA("keep")
        try await advance(to: "2025-04-11T00:00:00Z")
        let change = try await seats("keep", 7, key: "restart-key")
        await client.close()
        client = nil
        XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)

        let restarted = try DaemonProcess.start(arguments: ["--clock", "manual"], directory: daemon.directory)
        daemon = restarted
        client = try await CreditClient.connect(socketPath: restarted.socketPath)
        let clock = try await client.getClock()
        XCTAssertEqual(clock.now, "2025-04-11T00:00:00Z", "the manual clock resumes where it was")
        let replay = try await seats("keep", 7, key: "restart-key")
        XCTAssertEqual(replay, change, "idempotency keys survive restarts")
        let status = try await refunds("keep")
        XCTAssertEqual(status.credits.map(\.amountMinor), [2000])
    }

    /// creditctl shows credits as a table and as JSON.
    func testCreditctlTableAndJSON() async throws {
        try await createSetupA("ctl")
        try await advance(to: "2025-04-11T00:00:00Z")
        _ = try await seats("ctl", 7)
        _ = try await cancel("ctl")

        let table = try CreditctlProcess.run(["refunds", "ctl", "-s", daemon.socketPath])
        XCTAssertEqual(table.status, 0, table.stderr)
        for expected in ["cr_", "seat_change", "cancel", "pending", "20.00 USD", "46.67 USD", "2025-05-01", "2025-05-11", "EXPECTED BY"] {
            XCTAssertTrue(table.stdout.contains(expected), "missing \(expected) in:\n\(table.stdout)")
        }
        let json = try CreditctlProcess.run(["refunds", "ctl", "-s", daemon.socketPath, "-o", "json"])
        XCTAssertEqual(json.status, 0, json.stderr)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        let credits = object?["credits"] as? [[String: Any]]
        XCTAssertEqual(credits?.count, 2)
        XCTAssertEqual(credits?.first?["expected_by"] as? String, "2025-05-01")

        let missing = try CreditctlProcess.run(["get", "nope", "-s", daemon.socketPath])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.hasPrefix("creditctl: error: NOT_FOUND: subscription_not_found"), missing.stderr)
    }
}
