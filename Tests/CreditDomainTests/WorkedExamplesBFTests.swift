import XCTest
@testable import CreditDomain

/// §11 Setups B–F.
final class WorkedExamplesBFTests: XCTestCase {
    // MARK: B, C, D

    func testSetupBAnchor31() throws {
        var harness = Harness()
        harness.create(seats: 1, price: 2800, at: utc("2025-01-31T12:00:00Z"))
        XCTAssertEqual(harness.subscription().anchorDay, 31)
        var cancel = harness
        let record = try cancel.cancel(at: utc("2025-02-14")).get()
        XCTAssertEqual(record.credit?.amountMinor, 1400)
        XCTAssertEqual(record.credit?.dueDate, day("2025-02-28"))
        XCTAssertEqual(record.credit?.deadline, day("2025-03-16"))
        XCTAssertEqual(record.credit?.expectedBy, day("2025-02-28"))
        harness.tick(to: utc("2025-05-01"))
        let periods = harness.subscription().invoices.map { "\($0.periodStart)..\($0.periodEnd)" }
        XCTAssertEqual(periods, ["2025-01-31..2025-02-28", "2025-02-28..2025-03-31",
                                 "2025-03-31..2025-04-30", "2025-04-30..2025-05-31"])
        XCTAssertEqual(harness.subscription().period.days, 31)
        XCTAssertEqual(harness.subscription().anchorDay, 31)
    }

    func testSetupCAnnualLeapAnchor() throws {
        var harness = Harness()
        harness.create(seats: 1, price: 12_000, interval: .annual, at: utc("2024-02-29T08:00:00Z"))
        XCTAssertEqual(harness.subscription().anchorMonth, 2)
        XCTAssertEqual(harness.subscription().anchorDay, 29)
        XCTAssertEqual(harness.subscription().period.days, 365)
        var renewing = harness
        renewing.tick(to: utc("2027-03-01"))
        XCTAssertEqual(renewing.subscription().invoices.map { $0.periodStart.days(to: $0.periodEnd) }, [365, 365, 365, 366])
        XCTAssertEqual(renewing.subscription().period.end, day("2028-02-29"))

        let record = try harness.cancel(at: utc("2024-08-29")).get()
        XCTAssertEqual(record.line?.explanation.unusedDays, 183)
        XCTAssertEqual(record.credit?.amountMinor, 6016)
        XCTAssertEqual(record.credit?.dueDate, day("2025-02-28"))
        XCTAssertEqual(record.credit?.deadline, day("2024-09-28"))
        XCTAssertEqual(record.credit?.expectedBy, day("2024-09-28"))
        // E5: applied on the deadline, the final invoice settles that day; the 31-day cap bites.
        harness.tick(to: utc("2024-09-28"))
        let credit = harness.credits()[0]
        XCTAssertEqual(credit.state, .refundPending)
        XCTAssertEqual(credit.appliedDate, day("2024-09-28"))
        XCTAssertEqual(credit.refundExpectedBy, day("2024-10-29"))
    }

    func testSetupDTimeZone() throws {
        var base = Harness()
        base.create(zone: "America/Los_Angeles", at: utc("2025-02-01T08:00:00Z"))
        XCTAssertEqual(base.subscription().startDate, day("2025-02-01"))
        XCTAssertEqual(base.subscription().period.days, 28)

        var evening = base
        let record = try evening.cancel(at: utc("2025-03-01T05:00:00Z")).get()
        XCTAssertEqual(record.effectiveDate, day("2025-02-28"))
        XCTAssertEqual(record.entitlementEndsAt, utc("2025-02-28T08:00:00Z"))
        XCTAssertEqual(record.credit?.amountMinor, 357)
        XCTAssertEqual(record.credit?.expectedBy, day("2025-03-01"))

        var lastSecond = base
        XCTAssertEqual(try lastSecond.cancel(at: utc("2025-03-01T07:59:59Z")).get().credit?.amountMinor, 357)

        var march = base
        let marchRecord = try march.cancel(at: utc("2025-03-01T08:00:00Z")).get()
        XCTAssertEqual(marchRecord.credit?.amountMinor, 10_000)
        XCTAssertEqual(march.subscription().period.start, day("2025-03-01"))
        XCTAssertEqual(march.subscription().period.days, 31)
        // The renewal is dated 00:00 local on its date.
        XCTAssertEqual(march.subscription().invoices[1].issuedAt, utc("2025-03-01T08:00:00Z"))
        // The next renewal is at midnight PDT, after the 9 March change.
        var renewing = base
        renewing.tick(to: utc("2025-03-02"))
        XCTAssertEqual(renewing.subscription().nextDue, utc("2025-04-01T07:00:00Z"))
    }

    // MARK: E

    func testE1CancelCreditLifecycle() throws {
        var harness = Harness.setupA()
        let id = try XCTUnwrap(try harness.cancel(at: utc("2025-04-11")).get().credit?.id)
        harness.tick(to: utc("2025-04-30T23:59:59Z"))
        XCTAssertEqual(harness.credits()[0].state, .pending)
        XCTAssertEqual(harness.tick(to: utc("2025-05-01")), 2)   // applied + settlement
        var credit = harness.credits()[0]
        XCTAssertEqual(credit.history.map(\.state), [.pending, .applied, .refundPending])
        XCTAssertEqual(credit.history.map(\.at), [utc("2025-04-11"), utc("2025-05-01"), utc("2025-05-01")])
        XCTAssertEqual(credit.refundExpectedBy, day("2025-06-01"))
        XCTAssertEqual(credit.remainingMinor, 6667)
        XCTAssertNil(harness.subscription().nextDue)
        let status = try harness.ledger.refundStatus(subscriptionId: "sub", creditId: id, asOf: utc("2025-06-01T12:00:00Z"))
        XCTAssertFalse(status.credits[0].refundOverdue)
        XCTAssertTrue(try harness.ledger.refundStatus(subscriptionId: "sub", creditId: nil, asOf: utc("2025-06-02"))
                        .credits[0].refundOverdue)

        let succeeded = try harness.report(credit: id, outcome: .succeeded, at: utc("2025-06-03")).get()
        XCTAssertFalse(succeeded.ignored)
        XCTAssertEqual(succeeded.state, .refunded)
        XCTAssertEqual(succeeded.refundedMinor, 6667)
        XCTAssertEqual(succeeded.remainingMinor, 0)
        let late = try harness.report(credit: id, outcome: .failed, at: utc("2025-06-04")).get()
        XCTAssertTrue(late.ignored)
        XCTAssertEqual(late.state, .refunded)
        credit = harness.credits()[0]
        XCTAssertEqual(credit.history.map(\.state), [.pending, .applied, .refundPending, .refunded])
        XCTAssertEqual(try harness.ledger.refundStatus(subscriptionId: "sub", creditId: nil, asOf: utc("2025-06-04")).totals.refundedMinor, 6667)
    }

    func testE2DecreaseCreditConsumedByRenewal() throws {
        var harness = Harness.setupA()
        _ = try harness.changeSeats(to: 7, at: utc("2025-04-11")).get()
        harness.tick(to: utc("2025-05-01"))
        let credit = harness.credits()[0]
        XCTAssertEqual(credit.state, .consumed)
        XCTAssertEqual(credit.consumedMinor, 2000)
        XCTAssertEqual(credit.history.map(\.state), [.pending, .applied, .consumed])
        let renewal = harness.subscription().invoices.last!
        XCTAssertEqual(renewal.lines.map(\.amountMinor), [7000, -2000])
        XCTAssertEqual(renewal.lines.map(\.kind), [.periodCharge, .appliedCredit])
        XCTAssertEqual(renewal.lines[1].creditID, credit.id)
        XCTAssertEqual(renewal.totalMinor, 5000)
    }

    func testE3E8LargeDecreaseThenFailedRefund() throws {
        var harness = Harness.setupA()
        let change = try harness.changeSeats(to: 1, at: utc("2025-04-02")).get()
        XCTAssertEqual(change.credit?.amountMinor, 8700)
        harness.tick(to: utc("2025-05-01"))
        var credit = harness.credits()[0]
        XCTAssertEqual(credit.consumedMinor, 1000)
        XCTAssertEqual(credit.remainingMinor, 7700)
        XCTAssertEqual(credit.state, .refundPending)
        XCTAssertEqual(credit.refundExpectedBy, day("2025-06-01"))

        // E8: a failed refund returns the money to the balance of the active subscription.
        let failed = try harness.report(credit: credit.id, outcome: .failed, at: utc("2025-05-05")).get()
        XCTAssertEqual(failed.state, .applied)
        XCTAssertEqual(failed.remainingMinor, 7700)
        credit = harness.credits()[0]
        XCTAssertEqual(credit.history.suffix(2).map(\.state), [.refundFailed, .applied])
        XCTAssertEqual(credit.history.suffix(2).map(\.at), [utc("2025-05-05"), utc("2025-05-05")])
        XCTAssertEqual(try harness.ledger.refundStatus(subscriptionId: "sub", creditId: nil, asOf: utc("2025-05-06")).totals.appliedMinor, 7700)
        harness.tick(to: utc("2025-06-01"))
        credit = harness.credits()[0]
        XCTAssertEqual(credit.consumedMinor, 2000)
        XCTAssertEqual(credit.remainingMinor, 6700)
        XCTAssertEqual(credit.state, .refundPending)
        XCTAssertEqual(credit.refundExpectedBy, day("2025-06-01"))
        XCTAssertFalse(credit.isRefundOverdue(asOf: day("2025-06-01")))
        XCTAssertTrue(credit.isRefundOverdue(asOf: day("2025-06-02")))
        let totals = try harness.ledger.refundStatus(subscriptionId: "sub", creditId: nil, asOf: utc("2025-06-02")).totals
        XCTAssertEqual(totals.consumedMinor, 2000)
        XCTAssertEqual(totals.refundPendingMinor, 6700)
    }

    func testE4CreditNoteOnDeadline() throws {
        var harness = Harness()
        harness.create(at: utc("2025-03-01"))
        _ = try harness.cancel(at: utc("2025-03-01T10:00:00Z")).get()
        XCTAssertEqual(harness.subscription().nextDue, utc("2025-03-31"))
        harness.tick(to: utc("2025-03-31"))
        let credit = harness.credits()[0]
        XCTAssertEqual(credit.state, .refundPending)
        XCTAssertEqual(credit.appliedDate, day("2025-03-31"))
        XCTAssertEqual(credit.refundExpectedBy, day("2025-05-01"))
        XCTAssertTrue(harness.subscription().invoices.last!.settled)
    }

    func testE6FinalInvoiceWithWaitingCreditNote() throws {
        var harness = Harness()
        harness.create(at: utc("2025-02-01"))
        harness.tick(to: utc("2025-03-01"))
        let first = try harness.changeSeats(to: 7, at: utc("2025-03-01T09:00:00Z")).get()
        XCTAssertEqual(first.credit?.amountMinor, 3000)
        XCTAssertEqual(first.credit?.expectedBy, day("2025-03-31"))
        let second = try harness.changeSeats(to: 9, at: utc("2025-03-11")).get()
        XCTAssertEqual(second.line?.explanation.exact, Rational(42000, 31))
        XCTAssertEqual(second.line?.explanation.cumulativeExact, Rational(-51000, 31))
        XCTAssertEqual(second.line?.amountMinor, 1355)
        let record = try harness.cancel(at: utc("2025-03-16")).get()
        XCTAssertEqual(record.line?.explanation.exact, Rational(-144000, 31))
        XCTAssertEqual(record.line?.explanation.cumulativeExact, Rational(-195000, 31))
        XCTAssertEqual(record.line?.amountMinor, -4645)
        XCTAssertEqual(record.credit?.expectedBy, day("2025-04-01"))
        XCTAssertEqual(record.finalInvoice?.lines.map(\.amountMinor), [1355, -3000, -4645])
        XCTAssertEqual(record.finalInvoice?.settlesOn, day("2025-04-01"))

        harness.tick(to: utc("2025-03-31"))
        XCTAssertEqual(harness.credits().map(\.state), [.applied, .pending])
        harness.tick(to: utc("2025-04-01"))
        let credits = harness.credits()
        XCTAssertEqual(credits[0].consumedMinor, 1355)
        XCTAssertEqual(credits[0].remainingMinor, 1645)
        XCTAssertEqual(credits[0].state, .refundPending)
        XCTAssertEqual(credits[1].remainingMinor, 4645)
        XCTAssertEqual(credits[1].state, .refundPending)
        XCTAssertEqual(credits.map(\.refundExpectedBy), [day("2025-05-01"), day("2025-05-01")])
        // Paid 10000 + 1355, credited 7645: 3710 kept.
        XCTAssertEqual(10_000 + 1355 - credits.map(\.amountMinor).reduce(0, +), 3710)
    }

    func testE7ClosingInvoice() throws {
        var harness = Harness.setupA()
        let pending = try harness.cancel(mode: .endOfPeriod, at: utc("2025-04-05")).get()
        XCTAssertEqual(pending.effectiveDate, day("2025-05-01"))
        XCTAssertEqual(pending.entitlementEndsAt, utc("2025-05-01"))
        XCTAssertNil(pending.credit)
        XCTAssertEqual(harness.subscription().status, .cancelPending)
        XCTAssertNil(harness.subscription().nextBillingDate)
        XCTAssertEqual(try harness.changeSeats(to: 12, at: utc("2025-04-11")).get().line?.amountMinor, 1333)
        let decrease = try harness.changeSeats(to: 6, at: utc("2025-04-21")).get()
        XCTAssertEqual(decrease.line?.amountMinor, -2000)
        XCTAssertEqual(decrease.line?.explanation.cumulativeExact, Rational(-2000, 3))
        XCTAssertEqual(decrease.credit?.expectedBy, day("2025-05-01"))
        // S6: at_renewal changes are refused while the cancel is pending.
        XCTAssertReason(harness.changeSeats(to: 3, timing: .atRenewal, at: utc("2025-04-22")), .subscriptionCancelled)

        harness.tick(to: utc("2025-05-01"))
        let subscription = harness.subscription()
        XCTAssertEqual(subscription.status, .ended)
        XCTAssertEqual(subscription.seats, 0)
        let closing = subscription.invoices.last!
        XCTAssertEqual(closing.kind, .closing)
        XCTAssertEqual(closing.lines.map(\.amountMinor), [1333, -1333])
        XCTAssertEqual(closing.totalMinor, 0)
        let credit = subscription.credits[0]
        XCTAssertEqual(credit.consumedMinor, 1333)
        XCTAssertEqual(credit.remainingMinor, 667)
        XCTAssertEqual(credit.state, .refundPending)
        XCTAssertEqual(subscription.invoices.filter { $0.kind == .renewal }.count, 1)
        // C3: cancels on an ended subscription return the end_of_period record.
        let again = try harness.cancel(at: utc("2025-05-02")).get()
        XCTAssertEqual(again.mode, .endOfPeriod)
        XCTAssertTrue(again.alreadyCancelled)
        XCTAssertReason(harness.resume(at: utc("2025-05-02")), .subscriptionCancelled)
    }

    func testE9FailedRefundOnCancelledSubscription() throws {
        var harness = Harness.setupA()
        let id = try harness.cancel(at: utc("2025-04-11")).get().credit!.id
        harness.tick(to: utc("2025-05-01"))
        let result = try harness.report(credit: id, outcome: .failed, at: utc("2025-05-03")).get()
        XCTAssertEqual(result.state, .refundPending)
        XCTAssertEqual(result.remainingMinor, 6667)
        let credit = harness.credits()[0]
        XCTAssertEqual(credit.history.map(\.state), [.pending, .applied, .refundPending, .refundFailed, .applied, .refundPending])
        XCTAssertEqual(credit.history.suffix(3).map(\.at), Array(repeating: utc("2025-05-03"), count: 3))
        XCTAssertEqual(credit.refundExpectedBy, day("2025-06-01"))
    }

    func testE10Resume() throws {
        var harness = Harness.setupA()
        _ = try harness.cancel(mode: .endOfPeriod, at: utc("2025-04-05")).get()
        var variant = harness
        let resumed = try harness.resume(at: utc("2025-04-20")).get()
        XCTAssertEqual(resumed.status, .active)
        XCTAssertNil(resumed.cancellation)
        // Resuming an active subscription is a no-op.
        let noop = harness.run(.resume(ResumeRequest(subscriptionId: "sub")), at: utc("2025-04-21"))
        XCTAssertFalse(noop.stateChanged)
        harness.tick(to: utc("2025-05-01"))
        XCTAssertEqual(harness.subscription().invoices.last?.kind, .renewal)
        XCTAssertEqual(harness.subscription().invoices.last?.totalMinor, 10_000)

        XCTAssertReason(variant.resume(at: utc("2025-05-01T00:00:00Z")), .subscriptionCancelled)
        XCTAssertEqual(variant.subscription().status, .ended)
    }

    // MARK: F

    func testF1F2F3Window7dCancel() throws {
        var inside = Harness.setupA(policy: .window7d)
        XCTAssertEqual(try inside.cancel(at: utc("2025-04-07T23:59:59Z")).get().credit?.amountMinor, 8000)
        var outside = Harness.setupA(policy: .window7d)
        let refused = outside.cancel(at: utc("2025-04-08T00:00:00Z"))
        XCTAssertReason(refused, .outsideCancellationWindow)
        XCTAssertEqual(outside.subscription().status, .active)
        let endOfPeriod = try outside.cancel(mode: .endOfPeriod, at: utc("2025-04-08T00:00:00Z")).get()
        XCTAssertEqual(endOfPeriod.mode, .endOfPeriod)
        // C2: a refused conversion keeps the pending cancel.
        XCTAssertReason(outside.cancel(at: utc("2025-04-09")), .outsideCancellationWindow)
        XCTAssertEqual(outside.subscription().status, .cancelPending)
    }

    func testF4F5F6Window7dSeatBlocks() throws {
        var harness = Harness.setupA(policy: .window7d)
        XCTAssertEqual(try harness.changeSeats(to: 13, at: utc("2025-04-20T12:00:00Z")).get().line?.amountMinor, 1100)
        XCTAssertEqual(harness.subscription().blocks.last?.windowStart, utc("2025-04-20T12:00:00Z"))
        XCTAssertEqual(try harness.changeSeats(to: 11, at: utc("2025-04-25")).get().credit?.amountMinor, 400)
        XCTAssertReason(harness.changeSeats(to: 9, at: utc("2025-04-26")), .outsideCancellationWindow)
        let accepted = try harness.changeSeats(to: 10, at: utc("2025-04-26")).get()
        XCTAssertEqual(accepted.line?.amountMinor, -167)
        XCTAssertEqual(accepted.line?.explanation.cumulativeExact, Rational(1600, 3))
        // W4: at_renewal changes ignore windows.
        XCTAssertEqual(try harness.changeSeats(to: 2, timing: .atRenewal, at: utc("2025-04-27")).get().outcome, .scheduled)
    }

    func testF7F8Window72hCancel() throws {
        var inside = Harness.setupA(policy: .window72h)
        let record = try inside.cancel(at: utc("2025-04-03T23:59:59Z")).get()
        XCTAssertEqual(record.credit?.amountMinor, 10_000)
        XCTAssertEqual(record.line?.explanation.blocks, [SeatBlockPortion(seats: 10, startDate: day("2025-04-01"), unusedDays: 30)])
        XCTAssertEqual(record.line?.explanation.unusedDays, 30)
        var outside = Harness.setupA(policy: .window72h)
        XCTAssertReason(outside.cancel(at: utc("2025-04-04T00:00:00Z")), .outsideCancellationWindow)
    }

    func testF9F10Window72hSeatBlocks() throws {
        var harness = Harness.setupA(policy: .window72h)
        XCTAssertEqual(try harness.changeSeats(to: 13, at: utc("2025-04-20T12:00:00Z")).get().line?.amountMinor, 1100)
        var late = harness
        let reversal = try harness.changeSeats(to: 10, at: utc("2025-04-23T11:59:59Z")).get()
        XCTAssertEqual(reversal.credit?.amountMinor, 1100)
        XCTAssertEqual(reversal.line?.explanation.blocks, [SeatBlockPortion(seats: 3, startDate: day("2025-04-20"), unusedDays: 11)])
        XCTAssertEqual(harness.subscription().cumulativeNumerator, 0)
        XCTAssertReason(late.changeSeats(to: 10, at: utc("2025-04-23T12:00:00Z")), .outsideCancellationWindow)
    }

    func testWindow72hBlocksWithDifferentUnusedDays() throws {
        var harness = Harness.setupA(policy: .window72h)
        harness.ledger = {
            var ledger = Ledger()
            _ = ledger.execute(.create(CreateSubscriptionRequest(subscriptionId: "sub", seats: 10, unitPriceMinor: 1000,
                                                                 currency: "USD", interval: .known(.monthly), timeZone: "UTC",
                                                                 refundPolicy: .known(.window72h))),
                               at: utc("2025-04-01"), callerUID: 1, dryRun: false)
            return ledger
        }()
        _ = try harness.changeSeats(to: 12, at: utc("2025-04-02")).get()
        let record = try harness.cancel(at: utc("2025-04-03")).get()
        let explanation = try XCTUnwrap(record.line?.explanation)
        XCTAssertEqual(explanation.blocks.map(\.unusedDays), [29, 30])
        XCTAssertNil(explanation.unusedDays)
        // Increase +2×1000×29/30, cancel −(2×29 + 10×30)×1000/30.
        XCTAssertEqual(explanation.exact, Rational(-358_000, 30))
        // The line reverses the unbilled +1933 too: the final invoice nets to −10000.
        XCTAssertEqual(record.credit?.amountMinor, 11_933)
        XCTAssertEqual(record.finalInvoice?.totalMinor, -10_000)
    }
}
