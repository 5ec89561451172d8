import XCTest
@testable import CreditDomain

/// Validation, error precedence (X2), idempotency (§9), dry runs (S7) and lifecycle details.
final class OperationsTests: XCTestCase {
    private func createRequest(_ id: String = "sub", seats: Int64 = 10, price: Int64 = 1000, currency: String = "USD",
                               interval: EnumField<BillingInterval> = .known(.monthly), zone: String = "UTC",
                               policy: EnumField<RefundPolicy> = .unspecified, startDate: String = "") -> Command {
        .create(CreateSubscriptionRequest(subscriptionId: id, seats: seats, unitPriceMinor: price, currency: currency,
                                          interval: interval, timeZone: zone, refundPolicy: policy, startDate: startDate))
    }

    func testCreateValidation() throws {
        var ledger = Ledger()
        let now = utc("2025-03-01T10:00:00Z")
        func reason(_ command: Command) -> DomainError.Reason? {
            ledger.execute(command, at: now, callerUID: 1, dryRun: false).error?.reason
        }
        XCTAssertEqual(reason(createRequest("")), .invalidRequest)
        XCTAssertEqual(reason(createRequest(String(repeating: "é", count: 256))), .invalidRequest)
        XCTAssertEqual(reason(createRequest(seats: 0)), .invalidRequest)
        XCTAssertEqual(reason(createRequest(seats: 100_001)), .invalidRequest)
        XCTAssertEqual(reason(createRequest(price: -1)), .invalidRequest)
        XCTAssertEqual(reason(createRequest(currency: "usd")), .invalidRequest)
        XCTAssertEqual(reason(createRequest(currency: "BRL")), .invalidRequest)
        XCTAssertEqual(reason(createRequest(zone: "Mars/Base")), .invalidRequest)
        XCTAssertEqual(reason(createRequest(interval: .unspecified)), .invalidRequest)
        XCTAssertEqual(reason(createRequest(interval: .unrecognized(7))), .invalidRequest)
        XCTAssertEqual(reason(createRequest(policy: .unrecognized(9))), .invalidRequest)
        XCTAssertEqual(reason(createRequest(startDate: "2025-03-02")), .invalidRequest)
        XCTAssertEqual(reason(createRequest(startDate: "garbage")), .invalidRequest)
        XCTAssertEqual(reason(createRequest(seats: 3, price: Int64.max / 2)), .amountOverflow)
        XCTAssertEqual(ledger.subscriptionCount, 0)

        XCTAssertNil(reason(createRequest(String(repeating: "é", count: 255), startDate: "2025-03-01")))
        XCTAssertNil(reason(createRequest("sub", seats: 100_000, price: 0)))
        XCTAssertEqual(try ledger.subscription(id: "sub").refundPolicy, .anytime)
        XCTAssertEqual(reason(createRequest("sub")), .subscriptionExists)
        // X2: invalid_request outranks subscription_exists.
        XCTAssertEqual(reason(createRequest("sub", seats: 0)), .invalidRequest)
        // Ids differ by scalars, not by canonical equivalence.
        XCTAssertNil(reason(createRequest("e\u{301}")))
        XCTAssertNil(reason(createRequest("\u{e9}")))
        XCTAssertEqual(ledger.subscriptionCount, 4)
    }

    func testChangeSeatsPrecedence() {
        var harness = Harness.setupA()
        XCTAssertReason(harness.changeSeats("nope", to: 100_001, at: utc("2025-04-02")), .invalidRequest)
        XCTAssertReason(harness.changeSeats("nope", to: 0, at: utc("2025-04-02")), .subscriptionNotFound)
        XCTAssertReason(harness.changeSeats(to: 100_001, at: utc("2025-04-02")), .invalidRequest)
        let unknownTiming = harness.run(.changeSeats(ChangeSeatsRequest(subscriptionId: "sub", newSeats: 3, timing: .unrecognized(5))),
                                        at: utc("2025-04-02"))
        XCTAssertEqual(unknownTiming.error?.reason, .invalidRequest)
        let unknownMode = harness.run(.cancel(CancelRequest(subscriptionId: "sub", mode: .unrecognized(3))), at: utc("2025-04-02"))
        XCTAssertEqual(unknownMode.error?.reason, .invalidRequest)
        XCTAssertReason(harness.cancel("nope", at: utc("2025-04-02")), .subscriptionNotFound)
        XCTAssertReason(harness.resume("nope", at: utc("2025-04-02")), .subscriptionNotFound)
        XCTAssertReason(harness.report("nope", credit: "cr_1", outcome: .succeeded, at: utc("2025-04-02")), .subscriptionNotFound)
        XCTAssertReason(harness.report(credit: "cr_1", outcome: .succeeded, at: utc("2025-04-02")), .creditNotFound)
        let unspecified = harness.run(.recordRefundOutcome(RecordRefundOutcomeRequest(subscriptionId: "nope", creditId: "x", outcome: .unspecified)),
                                      at: utc("2025-04-02"))
        XCTAssertEqual(unspecified.error?.reason, .invalidRequest)
        XCTAssertThrowsError(try harness.ledger.refundStatus(subscriptionId: "sub", creditId: "cr_99", asOf: utc("2025-04-02")))
        XCTAssertThrowsError(try harness.ledger.invoices(subscriptionId: "nope"))
    }

    func testAmountOverflowIsRejectedNotTrapped() throws {
        var harness = Harness()
        harness.create(seats: 1, price: Int64.max / 2, at: utc("2025-03-01"))
        XCTAssertReason(harness.changeSeats(to: 3, at: utc("2025-03-10")), .amountOverflow)
        XCTAssertReason(harness.changeSeats(to: 3, timing: .atRenewal, at: utc("2025-03-10")), .amountOverflow)
        // 2 seats: the charge fits, and the renewal bill (2 × price + the prorated charge) does not.
        XCTAssertReason(harness.changeSeats(to: 2, at: utc("2025-03-10")), .amountOverflow)
        XCTAssertEqual(harness.subscription().seats, 1)
        XCTAssertEqual(harness.subscription().lastEventSeq, 0)
        XCTAssertEqual(try harness.changeSeats(to: 2, timing: .atRenewal, at: utc("2025-03-10")).get().outcome, .scheduled)
        harness.tick(to: utc("2025-04-01"))
        XCTAssertEqual(harness.subscription().period.chargedMinor, (Int64.max / 2) * 2)
        // Cancel of a huge period still fits (the credit is at most C).
        XCTAssertNotNil(try harness.cancel(at: utc("2025-04-10")).get().credit)
    }

    func testAtRenewalScheduling() throws {
        var harness = Harness.setupA()
        let scheduled = try harness.changeSeats(to: 4, timing: .atRenewal, at: utc("2025-04-10")).get()
        XCTAssertEqual(scheduled.outcome, .scheduled)
        XCTAssertEqual(scheduled.previousSeats, 10)
        XCTAssertEqual(scheduled.newSeats, 4)
        XCTAssertEqual(scheduled.seats, 10)
        XCTAssertEqual(scheduled.effectiveDate, day("2025-05-01"))
        XCTAssertNil(scheduled.line)
        XCTAssertEqual(harness.subscription().scheduledSeats, 4)
        // A now change leaves the schedule in place.
        _ = try harness.changeSeats(to: 12, at: utc("2025-04-16")).get()
        XCTAssertEqual(harness.subscription().scheduledSeats, 4)
        harness.tick(to: utc("2025-05-01"))
        XCTAssertEqual(harness.subscription().seats, 4)
        XCTAssertEqual(harness.subscription().period.chargedMinor, 4000)
        XCTAssertEqual(harness.subscription().invoices.last?.lines.map(\.amountMinor), [4000, 1000])
        XCTAssertNil(harness.subscription().scheduledSeats)
        // Scheduling the current count clears a schedule.
        _ = try harness.changeSeats(to: 6, timing: .atRenewal, at: utc("2025-05-02")).get()
        _ = try harness.changeSeats(to: 4, timing: .atRenewal, at: utc("2025-05-03")).get()
        XCTAssertNil(harness.subscription().scheduledSeats)
        // A resumed cancel keeps a schedule made before it.
        _ = try harness.changeSeats(to: 2, timing: .atRenewal, at: utc("2025-05-04")).get()
        _ = try harness.cancel(mode: .endOfPeriod, at: utc("2025-05-05")).get()
        _ = try harness.resume(at: utc("2025-05-06")).get()
        XCTAssertEqual(harness.subscription().scheduledSeats, 2)
    }

    func testIdempotencyScopesAndStoredErrors() throws {
        var harness = Harness.setupA()
        // Business errors are stored (I3).
        let missing = harness.changeSeats("later", to: 3, key: "k", at: utc("2025-04-02"))
        XCTAssertReason(missing, .subscriptionNotFound)
        harness.create("later", at: utc("2025-04-02"))
        XCTAssertReason(harness.changeSeats("later", to: 3, key: "k", at: utc("2025-04-03")), .subscriptionNotFound)
        // Another uid has its own scope.
        harness.uid = 2
        XCTAssertEqual(try harness.changeSeats("later", to: 3, key: "k", at: utc("2025-04-03")).get().outcome, .credit)
        // Another operation has its own scope.
        XCTAssertEqual(try harness.cancel("later", key: "k", at: utc("2025-04-04")).get().mode, .immediate)
        // X2: a recorded key decides before anything else is checked.
        let reused = harness.run(.cancel(CancelRequest(subscriptionId: "later", mode: .unrecognized(9), idempotencyKey: "k")),
                                 at: utc("2025-04-05"))
        XCTAssertEqual(reused.error?.reason, .idempotencyKeyReused)
        let explicit = harness.run(.cancel(CancelRequest(subscriptionId: "later", mode: .known(.immediate), idempotencyKey: "k")),
                                   at: utc("2025-04-05"))
        XCTAssertTrue(explicit.replayed)   // an omitted mode is fingerprinted as immediate (I2)
        XCTAssertEqual(explicit.response, .cancelled(harness.subscription("later").cancellation!))
    }

    func testInvalidRequestsAreNotStored() throws {
        var harness = Harness.setupA()
        XCTAssertReason(harness.changeSeats(to: 200_000, key: "fix-me", at: utc("2025-04-02")), .invalidRequest)
        XCTAssertEqual(harness.ledger.idempotencyEntryCount, 0)
        XCTAssertEqual(try harness.changeSeats(to: 8, key: "fix-me", at: utc("2025-04-02")).get().outcome, .credit)
        let longKey = String(repeating: "k", count: 256)
        XCTAssertReason(harness.changeSeats(to: 8, key: longKey, at: utc("2025-04-02")), .invalidRequest)
        XCTAssertEqual(try harness.changeSeats(to: 8, key: String(longKey.dropFirst()), at: utc("2025-04-02")).get().outcome, .noChange)
        XCTAssertEqual(harness.ledger.idempotencyEntryCount, 2)
    }

    func testDryRunsConsultButNeverRecordKeys() throws {
        var harness = Harness.setupA()
        let before = harness.ledger
        let preview = harness.changeSeats(to: 7, key: "d", at: utc("2025-04-11"), dryRun: true)
        XCTAssertEqual(harness.ledger, before)
        // The key was not recorded: a different body with it is accepted.
        _ = try harness.changeSeats(to: 8, key: "d", at: utc("2025-04-11")).get()
        XCTAssertNotEqual(preview.value?.line, try harness.changeSeats(to: 8, key: "d", at: utc("2025-04-11")).get().line)
        // A recorded key answers a dry run as it would the commit.
        let replay = harness.run(.changeSeats(ChangeSeatsRequest(subscriptionId: "sub", newSeats: 8, idempotencyKey: "d")),
                                 at: utc("2025-04-12"), dryRun: true)
        XCTAssertTrue(replay.replayed)
        let reused = harness.changeSeats(to: 5, key: "d", at: utc("2025-04-12"), dryRun: true)
        XCTAssertReason(reused, .idempotencyKeyReused)
    }

    func testPreviewEqualsCommit() throws {
        var harness = Harness.setupA()
        _ = try harness.changeSeats(to: 12, at: utc("2025-04-05")).get()
        let preview = harness.cancel(at: utc("2025-04-11"), dryRun: true)
        let commit = harness.cancel(at: utc("2025-04-11"))
        XCTAssertEqual(preview, commit)
        XCTAssertEqual(preview.value?.credit?.id, harness.credits().last?.id)
    }

    func testTransitionsRunEvenForDryRunsAndFailures() {
        var harness = Harness()
        harness.create(at: utc("2025-03-01"))
        let dry = harness.run(.changeSeats(ChangeSeatsRequest(subscriptionId: "sub", newSeats: 5)), at: utc("2025-04-02"), dryRun: true)
        XCTAssertTrue(dry.stateChanged)
        XCTAssertEqual(dry.transitions, 1)
        XCTAssertEqual(harness.subscription().period.start, day("2025-04-01"))
        XCTAssertEqual(harness.subscription().seats, 10)
        let failed = harness.run(.changeSeats(ChangeSeatsRequest(subscriptionId: "sub", newSeats: 0)), at: utc("2025-05-02"))
        XCTAssertEqual(failed.error?.reason, .seatsMustBePositive)
        XCTAssertTrue(failed.stateChanged)
        XCTAssertEqual(harness.subscription().period.start, day("2025-05-01"))
    }

    func testKeysArePrunedOnlyAfter45Days() throws {
        var harness = Harness.setupA()
        _ = try harness.changeSeats(to: 9, key: "old", at: utc("2025-04-02")).get()
        _ = try harness.changeSeats(to: 9, key: "a", at: utc("2025-05-16T23:00:00Z")).get()  // 44 days later
        XCTAssertReason(harness.changeSeats(to: 3, key: "old", at: utc("2025-05-17")), .idempotencyKeyReused)
        _ = try harness.changeSeats(to: 9, key: "b", at: utc("2025-05-18")).get()           // 46 days later
        XCTAssertEqual(try harness.changeSeats(to: 9, key: "old", at: utc("2025-05-18")).get().outcome, .noChange)
    }

    func testOverdueOnlyWhenTransitionNotRecorded() throws {
        var harness = Harness.setupA()
        let credit = try harness.cancel(at: utc("2025-04-11")).get().credit!
        // No advance: the state stays pending, so a later read shows it overdue (L6).
        let onTime = try harness.ledger.refundStatus(subscriptionId: "sub", creditId: credit.id, asOf: utc("2025-05-01T12:00:00Z"))
        XCTAssertFalse(onTime.credits[0].overdue)
        let late = try harness.ledger.refundStatus(subscriptionId: "sub", creditId: nil, asOf: utc("2025-05-02"))
        XCTAssertTrue(late.credits[0].overdue)
        XCTAssertEqual(late.credits[0].credit.state, .pending)
        XCTAssertEqual(late.asOfDate, day("2025-05-02"))
        XCTAssertEqual(late.totals.pendingMinor, 6667)
        harness.tick(to: utc("2025-05-02"))
        let recorded = try harness.ledger.refundStatus(subscriptionId: "sub", creditId: nil, asOf: utc("2025-05-02"))
        XCTAssertFalse(recorded.credits[0].overdue)
        XCTAssertEqual(recorded.totals.refundPendingMinor, 6667)
    }

    func testRefundOutcomeOnNonPendingCreditIsIgnored() throws {
        var harness = Harness.setupA()
        let credit = try harness.changeSeats(to: 5, at: utc("2025-04-11")).get().credit!
        let result = try harness.report(credit: credit.id, outcome: .succeeded, at: utc("2025-04-12")).get()
        XCTAssertTrue(result.ignored)
        XCTAssertEqual(result.state, .pending)
        let raw = harness.run(.recordRefundOutcome(RecordRefundOutcomeRequest(subscriptionId: "sub", creditId: credit.id,
                                                                              outcome: .known(.failed))), at: utc("2025-04-12"))
        XCTAssertFalse(raw.stateChanged)
    }

    func testAppliedCreditsAwaitRefundAtCancel() throws {
        // C5: a credit note waiting for its bill goes to refund_pending at the cancel instant.
        var harness = Harness()
        harness.create(at: utc("2025-02-01"))
        harness.tick(to: utc("2025-03-01"))
        _ = try harness.changeSeats(to: 7, at: utc("2025-03-01T09:00:00Z")).get()
        harness.tick(to: utc("2025-03-31"))
        XCTAssertEqual(harness.credits()[0].state, .applied)
        let record = try harness.cancel(at: utc("2025-03-31T10:00:00Z")).get()
        XCTAssertEqual(harness.credits()[0].state, .refundPending)
        XCTAssertEqual(harness.credits()[0].history.last?.at, utc("2025-03-31T10:00:00Z"))
        XCTAssertEqual(record.finalInvoice?.lines.map(\.kind), [.cancelCredit])
    }

    func testSchedulerQueue() throws {
        var harness = Harness()
        harness.create("a", at: utc("2025-03-05"))
        harness.create("b", zone: "Europe/Berlin", at: utc("2025-03-02T12:00:00Z"))
        harness.create("c", interval: .annual, at: utc("2025-03-01"))
        XCTAssertEqual(harness.ledger.nextDueInstant(), utc("2025-04-01T22:00:00Z"))  // b: 00:00 CEST on 04-02
        _ = try harness.cancel("b", at: utc("2025-03-03")).get()
        XCTAssertEqual(harness.ledger.nextDueInstant(), utc("2025-04-01T22:00:00Z"))  // final invoice settles then
        XCTAssertEqual(harness.ledger.advance(to: utc("2025-04-05")), 3)            // b: apply + settle; a: renewal
        XCTAssertEqual(harness.ledger.nextDueInstant(), utc("2025-05-05"))
        XCTAssertEqual(harness.ledger.advance(to: utc("2026-03-01")), 11)           // a: 10 renewals, c: 1
        XCTAssertEqual(harness.subscription("c").invoices.count, 2)
        XCTAssertEqual(harness.subscription("a").invoices.count, 12)
        XCTAssertEqual(harness.ledger.nextDueInstant(), utc("2026-03-05"))
    }

    func testListSubscriptionsPaging() throws {
        var harness = Harness()
        let ids = (0..<250).map { String(format: "s%03d", ($0 * 7919) % 250) }
        for id in ids { harness.create(id, at: utc("2025-03-01")) }
        var collected: [String] = []
        var token = ""
        repeat {
            let page = try harness.ledger.listSubscriptions(pageSize: 0, pageToken: token)
            XCTAssertLessThanOrEqual(page.subscriptions.count, 100)
            collected += page.subscriptions.map(\.id)
            token = page.nextPageToken
        } while !token.isEmpty
        XCTAssertEqual(collected, ids.sorted())
        XCTAssertEqual(try harness.ledger.listSubscriptions(pageSize: 1_000, pageToken: "").subscriptions.count, 250)
        let after247 = Ledger.subscriptionToken(after: ScalarString("s247"))
        XCTAssertEqual(try harness.ledger.listSubscriptions(pageSize: 5, pageToken: after247).subscriptions.map(\.id), ["s248", "s249"])
        // Opaque (Q1, Q2): a token that was not handed out is malformed.
        // Old raw-id tokens too, those that look like hex included: "s12" was read as U+0012.
        var wrongCheck = Array(after247.utf8)
        wrongCheck[1] = wrongCheck[1] == UInt8(ascii: "0") ? UInt8(ascii: "1") : UInt8(ascii: "0")
        for forged in ["s247", "s12", "s2024", "sbeef", "s00", "garbage", "s", "s7", "s4g", "sFF", "sff",
                       String(repeating: "s", count: 5_000), "s00000000" + String(repeating: "61", count: 256),
                       String(decoding: wrongCheck, as: UTF8.self), after247.uppercased()] {
            XCTAssertThrowsError(try harness.ledger.listSubscriptions(pageSize: 5, pageToken: forged), forged)
            XCTAssertThrowsError(try harness.ledger.listSubscriptions(pageSize: 5, pageToken: forged, customer: "x", statuses: []), forged)
        }
        let unicode = ScalarString("cafe\u{301}-\u{1F600}")
        XCTAssertEqual(try Ledger.subscriptionPosition(Ledger.subscriptionToken(after: unicode)), unicode)
        XCTAssertThrowsError(try harness.ledger.listSubscriptions(pageSize: -1, pageToken: ""))
    }
}
