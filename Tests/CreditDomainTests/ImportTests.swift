import XCTest
@testable import CreditDomain
@testable import LedgerEncoding

extension Harness {
    @discardableResult
    mutating func importSubscription(_ id: String = "sub", seats: Int64 = 10, price: Int64 = 1000, currency: String = "USD",
                                     interval: BillingInterval = .monthly, zone: String = "UTC",
                                     policy: RefundPolicy = .anytime, startDate: String = "2025-01-31",
                                     charged: Int64? = nil, customer: String = "c",
                                     at instant: Instant = utc("2026-03-15T10:00:00Z"),
                                     dryRun: Bool = false) -> Result<ImportedSubscription, DomainError> {
        let request = ImportSubscriptionRequest(
            subscriptionId: id, customer: customer, plan: "p", seats: seats, unitPriceMinor: price, currency: currency,
            interval: .known(interval), timeZone: zone, refundPolicy: .known(policy), startDate: startDate,
            currentPeriodChargedMinor: charged)
        return run(.importSubscription(request), at: instant, dryRun: dryRun).outcome.map { response in
            guard case .imported(let imported) = response else { fatalError("unexpected \(response)") }
            return imported
        }
    }
}

/// O5 ImportSubscription and every Setup G example.
final class ImportTests: XCTestCase {
    private let now = utc("2026-03-15T10:00:00Z")

    func testG1CurrentPeriodAndOpeningInvoice() throws {
        var harness = Harness()
        let imported = try harness.importSubscription().get()
        let subscription = imported.subscription
        XCTAssertEqual(subscription.period.start, day("2026-02-28"))
        XCTAssertEqual(subscription.period.end, day("2026-03-31"))
        XCTAssertEqual(subscription.period.days, 31)
        XCTAssertEqual(subscription.period.chargedMinor, 10_000)
        XCTAssertEqual(subscription.period.chargedSeats, 10)
        XCTAssertEqual(subscription.anchorDay, 31)
        XCTAssertEqual(subscription.startDate, day("2025-01-31"))
        XCTAssertEqual(subscription.nextBillingDate, day("2026-03-31"))
        XCTAssertEqual(subscription.status, .active)
        XCTAssertNil(subscription.scheduledSeats)
        XCTAssertTrue(subscription.credits.isEmpty)
        XCTAssertTrue(subscription.isImported)
        // One opening invoice of 10000, settled at issue; no purchase invoice.
        let invoices = harness.subscription().invoices
        XCTAssertEqual(invoices.count, 1)
        XCTAssertEqual(invoices[0], imported.openingInvoice)
        XCTAssertEqual(invoices[0].kind, .opening)
        XCTAssertEqual(invoices[0].totalMinor, 10_000)
        XCTAssertEqual(invoices[0].lines.count, 1)
        XCTAssertEqual(invoices[0].lines[0].kind, .periodCharge)
        XCTAssertEqual(invoices[0].periodStart, day("2026-02-28"))
        XCTAssertEqual(invoices[0].periodEnd, day("2026-03-31"))
        XCTAssertEqual(invoices[0].issuedAt, now)
        XCTAssertTrue(invoices[0].settled)
        // The next renewal is at 00:00 local on b′, charged as usual (T4).
        XCTAssertEqual(harness.ledger.nextDueInstant(), utc("2026-03-31"))
        harness.tick(to: utc("2026-03-31"))
        let renewed = harness.subscription()
        XCTAssertEqual(renewed.period.start, day("2026-03-31"))
        XCTAssertEqual(renewed.period.end, day("2026-04-30"))
        XCTAssertEqual(renewed.invoices.last?.kind, .renewal)
        XCTAssertEqual(renewed.invoices.last?.totalMinor, 10_000)
    }

    func testG2CancelProratesFromTheImportedCharge() throws {
        var harness = Harness()
        _ = try harness.importSubscription().get()
        let record = try harness.cancel(at: now).get()
        XCTAssertEqual(record.effectiveDate, day("2026-03-15"))
        XCTAssertEqual(record.line?.explanation.unusedDays, 16)
        XCTAssertEqual(record.credit?.amountMinor, 5_161)
        XCTAssertEqual(record.credit?.dueDate, day("2026-03-31"))
        XCTAssertEqual(record.credit?.deadline, day("2026-04-14"))
        XCTAssertEqual(record.credit?.expectedBy, day("2026-03-31"))
    }

    func testG3ChargedAmountSetsTheProratedPrice() throws {
        var harness = Harness()
        let imported = try harness.importSubscription(charged: 7_750).get()
        XCTAssertEqual(imported.subscription.period.chargedMinor, 7_750)
        XCTAssertEqual(imported.openingInvoice.totalMinor, 7_750)
        let change = try harness.changeSeats(to: 8, at: now).get()
        XCTAssertEqual(change.credit?.amountMinor, 800)
        XCTAssertEqual(change.line?.explanation.unitPrice, Rational(775))
        // Renewals charge unitPriceMinor × seats again.
        harness.tick(to: utc("2026-03-31"))
        XCTAssertEqual(harness.subscription().period.chargedMinor, 8_000)
    }

    func testG4WindowStartedAtThePeriodStart() throws {
        var harness = Harness()
        _ = try harness.importSubscription(policy: .window72h).get()
        XCTAssertEqual(harness.subscription().blocks,
                       [SeatBlock(seats: 10, windowStart: utc("2026-02-28"), startDate: day("2026-02-28"))])
        XCTAssertReason(harness.cancel(at: now), .outsideCancellationWindow)
        XCTAssertReason(harness.changeSeats(to: 9, at: now), .outsideCancellationWindow)
        let record = try harness.cancel(mode: .endOfPeriod, at: now).get()
        XCTAssertEqual(record.effectiveDate, day("2026-03-31"))
        XCTAssertEqual(harness.subscription().status, .cancelPending)
    }

    func testG5ImportStartingTodayOpensTheWindowAtMidnight() throws {
        var inside = Harness()
        let imported = try inside.importSubscription(policy: .window72h, startDate: "2026-03-15").get()
        XCTAssertEqual(imported.subscription.anchorDay, 15)
        XCTAssertEqual(imported.subscription.period.start, day("2026-03-15"))
        XCTAssertEqual(imported.subscription.period.end, day("2026-04-15"))
        XCTAssertEqual(imported.subscription.period.days, 31)
        var outside = inside
        XCTAssertEqual(try inside.cancel(at: utc("2026-03-17T23:00:00Z")).get().credit?.amountMinor, 10_000)
        XCTAssertReason(outside.cancel(at: utc("2026-03-18T00:00:00Z")), .outsideCancellationWindow)
    }

    func testG6AnnualFeb29Anchor() throws {
        var harness = Harness()
        let imported = try harness.importSubscription(interval: .annual, startDate: "2024-02-29").get()
        XCTAssertEqual(imported.subscription.period.start, day("2026-02-28"))
        XCTAssertEqual(imported.subscription.period.end, day("2027-02-28"))
        XCTAssertEqual(imported.subscription.period.days, 365)
        XCTAssertEqual(imported.subscription.anchorMonth, 2)
        XCTAssertEqual(imported.subscription.anchorDay, 29)
        harness.tick(to: utc("2028-03-01"))
        XCTAssertEqual(harness.subscription().period.start, day("2028-02-29"))
    }

    func testG7TodayIsTheRequestDateInTheZone() throws {
        var harness = Harness()
        XCTAssertReason(harness.importSubscription("utc", startDate: "2026-03-16"), .invalidRequest)
        let imported = try harness.importSubscription("kiritimati", zone: "Pacific/Kiritimati", startDate: "2026-03-16").get()
        XCTAssertEqual(imported.subscription.period.start, day("2026-03-16"))
        XCTAssertEqual(imported.subscription.period.end, day("2026-04-16"))
        XCTAssertEqual(imported.openingInvoice.issuedDate, day("2026-03-16"))
    }

    // MARK: errors (O5, X2)

    func testErrors() throws {
        var harness = Harness()
        XCTAssertReason(harness.importSubscription(startDate: ""), .invalidRequest)
        XCTAssertReason(harness.importSubscription(startDate: "2026-3-1"), .invalidRequest)
        XCTAssertReason(harness.importSubscription(startDate: "2027-01-01"), .invalidRequest)
        XCTAssertReason(harness.importSubscription(startDate: "1969-12-31"), .invalidRequest)
        XCTAssertReason(harness.importSubscription(charged: -1), .invalidRequest)
        XCTAssertReason(harness.importSubscription(seats: 0), .invalidRequest)
        XCTAssertReason(harness.importSubscription(seats: 100_001), .invalidRequest)
        XCTAssertReason(harness.importSubscription(price: -1), .invalidRequest)
        XCTAssertReason(harness.importSubscription(currency: "usd"), .invalidRequest)
        XCTAssertReason(harness.importSubscription(zone: "Mars/Olympus"), .invalidRequest)
        XCTAssertReason(harness.importSubscription(""), .invalidRequest)
        XCTAssertReason(harness.importSubscription(String(repeating: "x", count: 256)), .invalidRequest)
        var unspecified = ImportSubscriptionRequest(subscriptionId: "x", seats: 1, unitPriceMinor: 1, currency: "USD",
                                                    interval: .unspecified, timeZone: "UTC", startDate: "2025-01-01")
        XCTAssertReason(harness.run(.importSubscription(unspecified), at: now).outcome, .invalidRequest)
        unspecified.interval = .known(.monthly)
        unspecified.refundPolicy = .unrecognized(9)
        XCTAssertReason(harness.run(.importSubscription(unspecified), at: now).outcome, .invalidRequest)
        // The product renewals charge must fit Int64, even with the charge given (M2).
        XCTAssertReason(harness.importSubscription(seats: 10, price: Int64.max / 5, charged: 100), .amountOverflow)
        XCTAssertEqual(harness.ledger.subscriptionCount, 0)
        XCTAssertEqual(harness.ledger.lastEventSeq, 0)

        // 1970-01-01 itself is accepted; a price of 0 too.
        XCTAssertNotNil(harness.importSubscription("epoch", price: 0, startDate: "1970-01-01").value)
        // A repeated import, or an import over a created id → subscription_exists, after invalid_request.
        _ = try harness.importSubscription().get()
        XCTAssertReason(harness.importSubscription(), .subscriptionExists)
        XCTAssertReason(harness.importSubscription(startDate: "2027-01-01"), .invalidRequest)
        XCTAssertReason(harness.importSubscription(seats: 10, price: Int64.max / 5), .subscriptionExists)
        harness.create("created", at: now)
        XCTAssertReason(harness.importSubscription("created"), .subscriptionExists)
    }

    func testDryRunRecordsNothing() throws {
        var harness = Harness()
        let before = harness.ledger
        let preview = try harness.importSubscription(dryRun: true).get()
        XCTAssertEqual(harness.ledger, before)
        XCTAssertEqual(harness.ledger.subscriptionCount, 0)
        XCTAssertEqual(harness.ledger.counters, before.counters)
        let commit = try harness.importSubscription().get()
        XCTAssertEqual(preview, commit)
    }

    /// Imports are journaled and replayed like other writes, and survive snapshots.
    func testImportsReplayAndSnapshot() throws {
        var harness = Harness()
        _ = try harness.importSubscription("a").get()
        _ = try harness.importSubscription("b", interval: .annual, zone: "Europe/Berlin", policy: .window7d,
                                       startDate: "2024-02-29", charged: 123_456).get()
        _ = harness.changeSeats("a", to: 12, at: now.adding(hours: 1))
        harness.tick(to: utc("2026-05-01"))
        var replayed = Ledger()
        for (command, instant, uid, dryRun) in harness.log {
            _ = replayed.execute(command, at: instant, callerUID: uid, dryRun: dryRun)
        }
        replayed.advance(to: utc("2026-05-01"))
        XCTAssertEqual(replayed, harness.ledger)
        let decoded = try LedgerCodec.decode(LedgerCodec.encode(harness.ledger))
        XCTAssertEqual(decoded, harness.ledger)
        XCTAssertTrue(try decoded.subscription(id: "b").isImported)
        XCTAssertEqual(try decoded.subscription(id: "b").invoices.first?.kind, .opening)
    }
}
