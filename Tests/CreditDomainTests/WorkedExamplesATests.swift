import XCTest
@testable import CreditDomain

/// §11 Setup A: USD 1000/seat/month, anchor 1, UTC, `anytime`; period [2025-04-01, 2025-05-01), 10 seats.
final class WorkedExamplesATests: XCTestCase {
    func testSetupAState() {
        let harness = Harness.setupA()
        let subscription = harness.subscription()
        XCTAssertEqual(subscription.period.start, day("2025-04-01"))
        XCTAssertEqual(subscription.period.end, day("2025-05-01"))
        XCTAssertEqual(subscription.period.days, 30)
        XCTAssertEqual(subscription.period.chargedMinor, 10_000)
        XCTAssertEqual(subscription.period.chargedSeats, 10)
        XCTAssertEqual(subscription.nextBillingDate, day("2025-05-01"))
        XCTAssertEqual(subscription.invoices.map(\.kind), [.purchase, .renewal])
        XCTAssertEqual(subscription.invoices[1].totalMinor, 10_000)
    }

    func testA1ImmediateCancel() throws {
        var harness = Harness.setupA()
        let record = try harness.cancel(at: utc("2025-04-11T09:30:00Z")).get()
        XCTAssertEqual(record.mode, .immediate)
        XCTAssertEqual(record.effectiveDate, day("2025-04-11"))
        XCTAssertEqual(record.entitlementEndsAt, utc("2025-04-11"))
        XCTAssertFalse(record.alreadyCancelled)
        XCTAssertEqual(record.line?.amountMinor, -6667)
        let explanation = try XCTUnwrap(record.line?.explanation)
        XCTAssertEqual(explanation.unitPrice, Rational(1000))
        XCTAssertEqual(explanation.seatsDelta, -10)
        XCTAssertEqual(explanation.unusedDays, 20)
        XCTAssertEqual(explanation.periodDays, 30)
        XCTAssertEqual(explanation.exact, Rational(-20000, 3))
        XCTAssertEqual(explanation.cumulativeExact, Rational(-20000, 3))
        XCTAssertEqual(explanation.rounded, -6667)
        XCTAssertEqual(explanation.carry, Rational(-1, 3))
        let credit = try XCTUnwrap(record.credit)
        XCTAssertEqual(credit.amountMinor, 6667)
        XCTAssertEqual(credit.source, .cancel)
        XCTAssertEqual(credit.state, .pending)
        XCTAssertEqual(credit.dueDate, day("2025-05-01"))
        XCTAssertEqual(credit.deadline, day("2025-05-11"))
        XCTAssertEqual(credit.expectedBy, day("2025-05-01"))
        let invoice = try XCTUnwrap(record.finalInvoice)
        XCTAssertEqual(invoice.kind, .final)
        XCTAssertEqual(invoice.lines.map(\.amountMinor), [-6667])
        XCTAssertEqual(invoice.settlesOn, day("2025-05-01"))
        XCTAssertFalse(invoice.settled)
        let subscription = harness.subscription()
        XCTAssertEqual(subscription.status, .cancelled)
        XCTAssertEqual(subscription.seats, 0)
        XCTAssertNil(subscription.nextBillingDate)
        XCTAssertEqual(subscription.nextDue, utc("2025-05-01"))
    }

    func testA2CancelOnBillingDate() throws {
        var harness = Harness()
        harness.create(at: utc("2025-03-01"))
        // No tick: the command itself runs the renewal first (T6, P7).
        let record = try harness.cancel(at: utc("2025-04-01T00:00:00Z")).get()
        XCTAssertEqual(record.credit?.amountMinor, 10_000)
        XCTAssertEqual(record.credit?.expectedBy, day("2025-05-01"))
        XCTAssertEqual(harness.subscription().invoices.map(\.kind), [.purchase, .renewal, .final])
    }

    func testA2PrimeCancelOnFirstDayOf31DayPeriod() throws {
        var harness = Harness()
        harness.create(at: utc("2025-03-01"))
        let record = try harness.cancel(at: utc("2025-03-01T10:00:00Z")).get()
        let credit = try XCTUnwrap(record.credit)
        XCTAssertEqual(credit.amountMinor, 10_000)
        XCTAssertEqual(credit.dueDate, day("2025-04-01"))
        XCTAssertEqual(credit.deadline, day("2025-03-31"))
        XCTAssertEqual(credit.expectedBy, day("2025-03-31"))
    }

    func testA3CancelOnLastDay() throws {
        var harness = Harness.setupA()
        XCTAssertEqual(try harness.cancel(at: utc("2025-04-30T23:00:00Z")).get().credit?.amountMinor, 333)
    }

    func testA4SeatDecrease() throws {
        var harness = Harness.setupA()
        let change = try harness.changeSeats(to: 7, at: utc("2025-04-11")).get()
        XCTAssertEqual(change.outcome, .credit)
        XCTAssertEqual(change.previousSeats, 10)
        XCTAssertEqual(change.newSeats, 7)
        XCTAssertEqual(change.seats, 7)
        XCTAssertEqual(change.effectiveDate, day("2025-04-11"))
        XCTAssertEqual(change.line?.amountMinor, -2000)
        XCTAssertEqual(change.credit?.amountMinor, 2000)
        XCTAssertEqual(change.credit?.source, .seatChange)
        XCTAssertEqual(change.credit?.expectedBy, day("2025-05-01"))
        XCTAssertEqual(change.line?.explanation.seatsDelta, -3)
        XCTAssertEqual(harness.subscription().seats, 7)
    }

    func testA5SeriesUsesCumulativeRounding() throws {
        var harness = Harness.setupA()
        let lines = try [(7, "2025-04-11"), (9, "2025-04-21"), (8, "2025-04-26")].map { seats, date in
            try harness.changeSeats(to: Int64(seats), at: utc(date)).get()
        }
        XCTAssertEqual(lines.map { $0.line!.amountMinor }, [-2000, 667, -167])
        XCTAssertEqual(lines.map { $0.line!.explanation.cumulativeExact },
                       [Rational(-2000), Rational(-4000, 3), Rational(-1500)])
        XCTAssertEqual(lines.map(\.outcome), [.credit, .charge, .credit])
        XCTAssertEqual(lines.map { $0.line!.amountMinor }.reduce(0, +), -1500)
        XCTAssertEqual(harness.subscription().unbilledChargesMinor, 667)
    }

    func testA5PrimeThreeRemovalsKeepTheCent() throws {
        var harness = Harness()
        harness.create(seats: 4, price: 999, at: utc("2025-01-01"))
        var lines: [Int64] = []
        for seats in [3, 2, 1] as [Int64] {
            let change = try harness.changeSeats(to: seats, at: utc("2025-01-31T12:00:00Z")).get()
            XCTAssertEqual(change.line?.explanation.exact, Rational(-999, 31))
            lines.append(change.line!.amountMinor)
        }
        XCTAssertEqual(lines, [-32, -32, -33])
        XCTAssertEqual(harness.credits().map(\.amountMinor).reduce(0, +), 97)
    }

    func testA6SeatIncreaseIsUnbilledCharge() throws {
        var harness = Harness.setupA(seats: 5)
        let change = try harness.changeSeats(to: 8, at: utc("2025-04-16")).get()
        XCTAssertEqual(change.outcome, .charge)
        XCTAssertEqual(change.line?.amountMinor, 1500)
        XCTAssertNil(change.credit)
        XCTAssertTrue(harness.credits().isEmpty)
        XCTAssertEqual(harness.subscription().unbilledChargesMinor, 1500)
        // It is billed on the next renewal, with the renewal charge for 8 seats.
        harness.tick(to: utc("2025-05-01"))
        let renewal = harness.subscription().invoices.last!
        XCTAssertEqual(renewal.kind, .renewal)
        XCTAssertEqual(renewal.lines.map(\.amountMinor), [8000, 1500])
        XCTAssertEqual(renewal.lines.map(\.kind), [.periodCharge, .proratedCharge])
    }

    func testA7ToZeroSeats() {
        var harness = Harness.setupA()
        let result = harness.changeSeats(to: 0, at: utc("2025-04-11"))
        XCTAssertReason(result, .seatsMustBePositive)
        XCTAssertEqual(result.failure?.wireMessage, "seats_must_be_positive: use Cancel to remove all seats")
        XCTAssertReason(harness.changeSeats(to: -3, at: utc("2025-04-11")), .seatsMustBePositive)
    }

    func testA8SameCountIsNoChange() throws {
        var harness = Harness.setupA()
        let change = try harness.changeSeats(to: 10, at: utc("2025-04-11")).get()
        XCTAssertEqual(change.outcome, .noChange)
        XCTAssertNil(change.line)
        XCTAssertEqual(harness.subscription().lastEventSeq, 0)
    }

    func testA9DecreaseThenIncreaseSameDay() throws {
        var harness = Harness.setupA()
        XCTAssertEqual(try harness.changeSeats(to: 7, at: utc("2025-04-11")).get().line?.amountMinor, -2000)
        XCTAssertEqual(try harness.changeSeats(to: 10, at: utc("2025-04-11T15:00:00Z")).get().line?.amountMinor, 2000)
        XCTAssertEqual(harness.subscription().cumulativeNumerator, 0)
    }

    func testA10RepeatedCancel() throws {
        var harness = Harness.setupA()
        let first = try harness.cancel(at: utc("2025-04-11")).get()
        for mode in [CancelMode.immediate, .endOfPeriod] {
            let again = try harness.cancel(mode: mode, at: utc("2025-04-12")).get()
            XCTAssertTrue(again.alreadyCancelled)
            var expected = first
            expected.alreadyCancelled = true
            XCTAssertEqual(again, expected)
        }
        XCTAssertEqual(harness.credits().count, 1)
        XCTAssertEqual(harness.subscription().invoices.filter { $0.kind == .final }.count, 1)
    }

    func testA11SeatChangeAfterCancel() {
        var harness = Harness.setupA()
        _ = harness.cancel(at: utc("2025-04-11"))
        XCTAssertReason(harness.changeSeats(to: 3, at: utc("2025-04-12")), .subscriptionCancelled)
        // X2: subscription_cancelled outranks seats_must_be_positive.
        XCTAssertReason(harness.changeSeats(to: 0, at: utc("2025-04-12")), .subscriptionCancelled)
        XCTAssertReason(harness.changeSeats(to: 3, timing: .atRenewal, at: utc("2025-04-12")), .subscriptionCancelled)
    }

    func testA12DecreaseThenCancel() throws {
        var harness = Harness.setupA()
        _ = try harness.changeSeats(to: 7, at: utc("2025-04-11")).get()
        let record = try harness.cancel(at: utc("2025-04-21")).get()
        XCTAssertEqual(record.line?.amountMinor, -2333)
        XCTAssertEqual(record.line?.explanation.cumulativeExact, Rational(-13000, 3))
        XCTAssertEqual(harness.credits().map(\.amountMinor).reduce(0, +), 4333)
        // The pending seat-change credit is listed on the final invoice too.
        XCTAssertEqual(record.finalInvoice?.lines.map(\.amountMinor), [-2000, -2333])
    }

    func testA13ZeroPriceGivesZeroLine() throws {
        var harness = Harness.setupA(price: 0)
        XCTAssertEqual(harness.subscription().period.chargedMinor, 0)
        let change = try harness.changeSeats(to: 7, at: utc("2025-04-11")).get()
        XCTAssertEqual(change.outcome, .zeroLine)
        XCTAssertEqual(change.line?.amountMinor, 0)
        XCTAssertEqual(change.line?.explanation.unitPrice, Rational(0))
        XCTAssertNil(change.credit)
        XCTAssertTrue(harness.credits().isEmpty)
        XCTAssertEqual(harness.subscription().periodLines.count, 1)
    }

    func testA14A15A16Idempotency() throws {
        var harness = Harness.setupA()
        let first = harness.run(.changeSeats(ChangeSeatsRequest(subscriptionId: "sub", newSeats: 7, idempotencyKey: "k-1")),
                                at: utc("2025-04-11"), dryRun: false)
        let retry = harness.run(.changeSeats(ChangeSeatsRequest(subscriptionId: "sub", newSeats: 7, idempotencyKey: "k-1")),
                                at: utc("2025-04-12"), dryRun: false)
        XCTAssertEqual(retry.outcome, first.outcome)
        XCTAssertTrue(retry.replayed)
        XCTAssertFalse(retry.stateChanged)
        XCTAssertEqual(harness.credits().count, 1)
        // A15: same key, different body.
        let reused = harness.changeSeats(to: 6, key: "k-1", at: utc("2025-04-12"))
        XCTAssertReason(reused, .idempotencyKeyReused)
        // A16: retried without a key.
        XCTAssertEqual(try harness.changeSeats(to: 7, at: utc("2025-04-12")).get().outcome, .noChange)
        XCTAssertEqual(harness.credits().count, 1)
    }

    func testA17Ties() throws {
        var decrease = Harness.setupA(price: 999)
        let credit = try decrease.changeSeats(to: 9, at: utc("2025-04-16")).get()
        XCTAssertEqual(credit.line?.explanation.exact, Rational(-999, 2))
        XCTAssertEqual(credit.line?.amountMinor, -499)
        XCTAssertEqual(credit.credit?.amountMinor, 499)
        var increase = Harness.setupA(price: 999)
        XCTAssertEqual(try increase.changeSeats(to: 11, at: utc("2025-04-16")).get().line?.amountMinor, 500)
    }

    func testA18IncreaseThenCancel() throws {
        var harness = Harness.setupA()
        XCTAssertEqual(try harness.changeSeats(to: 13, at: utc("2025-04-11")).get().line?.amountMinor, 2000)
        let record = try harness.cancel(at: utc("2025-04-21")).get()
        XCTAssertEqual(record.line?.amountMinor, -4333)
        XCTAssertEqual(record.finalInvoice?.lines.map(\.amountMinor), [2000, -4333])
        XCTAssertEqual(record.finalInvoice?.totalMinor, -2333)
        harness.tick(to: utc("2025-05-01"))
        let credit = harness.credits()[0]
        XCTAssertEqual(credit.consumedMinor, 2000)
        XCTAssertEqual(credit.remainingMinor, 2333)
        XCTAssertEqual(credit.state, .refundPending)
        XCTAssertTrue(harness.subscription().invoices.last!.settled)
    }

    func testMicrosoftReference() throws {
        var harness = Harness()
        harness.create(seats: 1, price: 2000, at: utc("2022-02-01T10:00:00Z"))
        let record = try harness.cancel(at: utc("2022-02-03T10:00:00Z")).get()
        XCTAssertEqual(record.credit?.amountMinor, 1857)
        XCTAssertEqual(record.line?.explanation.unusedDays, 26)
        XCTAssertEqual(record.line?.explanation.periodDays, 28)
    }
}
