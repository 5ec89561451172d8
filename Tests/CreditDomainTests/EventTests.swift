import XCTest
@testable import CreditDomain
@testable import LedgerEncoding

extension Harness {
    /// The events recorded after `seq`.
    func events(after seq: UInt64 = 0) -> [LedgerEvent] {
        // No archive in these tests: reading the events cannot fail.
        try! ledger.events.filter { $0.seq > seq }
    }

    func types(after seq: UInt64 = 0) -> [EventType] {
        events(after: seq).map(\.type)
    }
}

/// E1–E5: what each change records, in which order, and the feed's paging and retention.
final class EventTests: XCTestCase {
    // MARK: E1 per operation

    func testCreateRecordsCreatedAndPurchaseInvoice() throws {
        var harness = Harness()
        harness.create(zone: "America/Los_Angeles", at: utc("2025-03-01T05:00:00Z"))
        let events = harness.events()
        XCTAssertEqual(events.map(\.type), [.subscriptionCreated, .invoiceIssued])
        XCTAssertEqual(events.map(\.seq), [1, 2])
        for event in events {
            XCTAssertEqual(event.subscriptionId, "sub")
            XCTAssertEqual(event.customer, "c")
            XCTAssertEqual(event.at, utc("2025-03-01T05:00:00Z"))
            XCTAssertEqual(event.date, day("2025-02-28"))      // civil date in the zone
            XCTAssertEqual(event.recordedAt, utc("2025-03-01T05:00:00Z"))
        }
        guard case .subscription(let view) = events[0].payload else { return XCTFail("\(events[0].payload)") }
        XCTAssertEqual(view, SubscriptionView(harness.subscription()))
        XCTAssertEqual(view.nextBillingDate, day("2025-03-28"))
        guard case .invoice(let invoice) = events[1].payload else { return XCTFail() }
        XCTAssertEqual(invoice, harness.subscription().purchaseInvoice)
        XCTAssertEqual(harness.ledger.lastEventSeq, 2)
        XCTAssertEqual(harness.ledger.oldestEventSeq, 1)
    }

    func testImportRecordsImportedAndOpeningInvoiceOnly() throws {
        var harness = Harness()
        _ = try harness.importSubscription().get()
        XCTAssertEqual(harness.types(), [.subscriptionImported, .invoiceIssued])
        guard case .invoice(let invoice) = harness.events()[1].payload else { return XCTFail() }
        XCTAssertEqual(invoice.kind, .opening)
    }

    func testSeatChanges() throws {
        var harness = Harness.setupA()
        var mark = harness.ledger.lastEventSeq
        // credit: seats_changed, then the credit's pending entry.
        let credit = try harness.changeSeats(to: 7, at: utc("2025-04-11T09:00:00Z")).get()
        XCTAssertEqual(harness.types(after: mark), [.seatsChanged, .creditStateChanged])
        let events = harness.events(after: mark)
        guard case .seatChange(let view, let result) = events[0].payload else { return XCTFail() }
        XCTAssertEqual(result, credit)
        XCTAssertEqual(view.seats, 7)
        XCTAssertEqual(events[1].creditChange?.change, CreditStateChange(state: .pending, at: utc("2025-04-11T09:00:00Z")))
        XCTAssertEqual(events[1].creditChange?.credit.id, credit.credit?.id)
        // charge and zero line: seats_changed only.
        mark = harness.ledger.lastEventSeq
        _ = try harness.changeSeats(to: 9, at: utc("2025-04-21T09:00:00Z")).get()
        XCTAssertEqual(harness.types(after: mark), [.seatsChanged])
        var free = Harness.setupA(price: 0)
        mark = free.ledger.lastEventSeq
        XCTAssertEqual(try free.changeSeats(to: 7, at: utc("2025-04-11")).get().outcome, .zeroLine)
        XCTAssertEqual(free.types(after: mark), [.seatsChanged])
        // no_change: nothing.
        mark = harness.ledger.lastEventSeq
        XCTAssertEqual(try harness.changeSeats(to: 9, at: utc("2025-04-21T10:00:00Z")).get().outcome, .noChange)
        XCTAssertEqual(harness.types(after: mark), [])
        // at_renewal: sets, replaces, clears; one that leaves the schedule as it was records none.
        _ = try harness.changeSeats(to: 4, timing: .atRenewal, at: utc("2025-04-22")).get()
        XCTAssertEqual(harness.types(after: mark), [.seatChangeScheduled])
        mark = harness.ledger.lastEventSeq
        _ = try harness.changeSeats(to: 4, timing: .atRenewal, at: utc("2025-04-22T01:00:00Z")).get()
        XCTAssertEqual(harness.types(after: mark), [])
        _ = try harness.changeSeats(to: 5, timing: .atRenewal, at: utc("2025-04-22T02:00:00Z")).get()
        XCTAssertEqual(harness.types(after: mark), [.seatChangeScheduled])
        mark = harness.ledger.lastEventSeq
        _ = try harness.changeSeats(to: 9, timing: .atRenewal, at: utc("2025-04-22T03:00:00Z")).get()
        XCTAssertEqual(harness.types(after: mark), [.seatChangeScheduled])
        guard case .seatChange(let cleared, _) = harness.events(after: mark)[0].payload else { return XCTFail() }
        XCTAssertNil(cleared.scheduledSeats)
        mark = harness.ledger.lastEventSeq
        _ = try harness.changeSeats(to: 9, timing: .atRenewal, at: utc("2025-04-22T04:00:00Z")).get()
        XCTAssertEqual(harness.types(after: mark), [])
    }

    func testCancelResumeAndRepeats() throws {
        var harness = Harness.setupA()
        var mark = harness.ledger.lastEventSeq
        _ = try harness.cancel(mode: .endOfPeriod, at: utc("2025-04-05")).get()
        XCTAssertEqual(harness.types(after: mark), [.cancelRecorded])
        mark = harness.ledger.lastEventSeq
        _ = try harness.cancel(mode: .endOfPeriod, at: utc("2025-04-06")).get()    // C3 repeat
        _ = try harness.resume(at: utc("2025-04-07")).get()
        XCTAssertEqual(harness.types(after: mark), [.subscriptionResumed])
        mark = harness.ledger.lastEventSeq
        _ = try harness.resume(at: utc("2025-04-08")).get()                            // no-op
        XCTAssertEqual(harness.types(after: mark), [])
        _ = try harness.changeSeats(to: 7, at: utc("2025-04-11")).get()
        mark = harness.ledger.lastEventSeq
        let record = try harness.cancel(at: utc("2025-04-21")).get()
        XCTAssertEqual(harness.types(after: mark), [.cancelRecorded, .invoiceIssued, .creditStateChanged])
        guard case .cancel(let view, let recorded) = harness.events(after: mark)[0].payload else { return XCTFail() }
        XCTAssertEqual(recorded, record)
        XCTAssertEqual(view.status, .cancelled)
        guard case .invoice(let invoice) = harness.events(after: mark)[1].payload else { return XCTFail() }
        XCTAssertEqual(invoice.kind, .final)
        mark = harness.ledger.lastEventSeq
        _ = try harness.cancel(at: utc("2025-04-22")).get()
        _ = try harness.cancel(mode: .endOfPeriod, at: utc("2025-04-22")).get()
        XCTAssertEqual(harness.types(after: mark), [])
        // The final invoice settles on 05-01: both credits applied, then refund_pending.
        harness.tick(to: utc("2025-05-03"))
        let settled = harness.events(after: mark)
        XCTAssertEqual(settled.map(\.type), [.invoiceSettled] + Array(repeating: .creditStateChanged, count: 4))
        for event in settled {
            XCTAssertEqual(event.at, utc("2025-05-01"))    // dated when due, not when processed (T6)
            XCTAssertEqual(event.date, day("2025-05-01"))
            XCTAssertEqual(event.recordedAt, utc("2025-05-03"))
        }
        // Credit events carry the credit as it stands after the whole command (E2).
        for event in settled.dropFirst() {
            XCTAssertEqual(event.creditChange?.credit.state, .refundPending)
        }
    }

    func testRenewalScheduledSeatsAndClosing() throws {
        var harness = Harness.setupA()
        _ = try harness.changeSeats(to: 7, at: utc("2025-04-11")).get()
        _ = try harness.changeSeats(to: 3, timing: .atRenewal, at: utc("2025-04-12")).get()
        var mark = harness.ledger.lastEventSeq
        harness.tick(to: utc("2025-05-01"))
        XCTAssertEqual(harness.types(after: mark),
                       [.scheduledSeatsApplied, .periodRenewed, .invoiceIssued, .creditStateChanged, .creditStateChanged])
        let states = harness.events(after: mark).compactMap { $0.creditChange?.change.state }
        XCTAssertEqual(states, [.applied, .consumed])
        guard case .subscription(let view) = harness.events(after: mark)[1].payload else { return XCTFail() }
        XCTAssertEqual(view.seats, 3)
        XCTAssertEqual(view.period.start, day("2025-05-01"))
        // C6: closing invoice, issued and settled, and the subscription ends.
        _ = try harness.cancel(mode: .endOfPeriod, at: utc("2025-05-10")).get()
        mark = harness.ledger.lastEventSeq
        harness.tick(to: utc("2025-06-01"))
        XCTAssertEqual(harness.types(after: mark), [.subscriptionEnded, .invoiceIssued, .invoiceSettled])
        XCTAssertEqual(harness.events(after: mark).map(\.at), Array(repeating: utc("2025-06-01"), count: 3))
    }

    func testNothingForDryRunsFailuresReplaysAndIgnoredReports() throws {
        var harness = Harness.setupA()
        let mark = harness.ledger.lastEventSeq
        _ = try harness.changeSeats(to: 7, at: utc("2025-04-11"), dryRun: true).get()
        _ = try harness.cancel(at: utc("2025-04-11"), dryRun: true).get()
        XCTAssertReason(harness.changeSeats(to: 0, key: "k", at: utc("2025-04-11")), .seatsMustBePositive)   // key recorded
        XCTAssertReason(harness.changeSeats(to: 0, key: "k", at: utc("2025-04-11")), .seatsMustBePositive)   // replay
        XCTAssertReason(harness.changeSeats("nope", to: 3, at: utc("2025-04-11")), .subscriptionNotFound)
        XCTAssertReason(harness.run(.create(CreateSubscriptionRequest(
            subscriptionId: "sub", seats: 1, unitPriceMinor: 1, currency: "USD", interval: .known(.monthly),
            timeZone: "UTC")), at: utc("2025-04-11")).outcome, .subscriptionExists)
        XCTAssertEqual(harness.types(after: mark), [])
        _ = try harness.changeSeats(to: 7, key: "k2", at: utc("2025-04-11")).get()
        let afterChange = harness.ledger.lastEventSeq
        _ = try harness.changeSeats(to: 7, key: "k2", at: utc("2025-04-11")).get()                           // replay
        let credit = harness.credits()[0]
        _ = try harness.report(credit: credit.id, outcome: .succeeded, at: utc("2025-04-12")).get()           // ignored
        XCTAssertEqual(harness.ledger.lastEventSeq, afterChange)
    }

    func testFailedRefundLoopRecordsBothEntries() throws {
        var harness = Harness.setupA()
        _ = try harness.cancel(at: utc("2025-04-11")).get()
        harness.tick(to: utc("2025-05-01"))
        let credit = harness.credits()[0]
        XCTAssertEqual(credit.state, .refundPending)
        let mark = harness.ledger.lastEventSeq
        _ = try harness.report(credit: credit.id, outcome: .failed, at: utc("2025-05-03T08:00:00Z")).get()
        let events = harness.events(after: mark)
        XCTAssertEqual(events.compactMap { $0.creditChange?.change.state }, [.refundFailed, .applied, .refundPending])
        XCTAssertTrue(events.allSatisfy { $0.at == utc("2025-05-03T08:00:00Z") })
    }

    /// E2: within one command, time-driven events in order of due instant, ties in creation order.
    func testTimeDrivenEventsAcrossSubscriptionsComeInDueOrder() throws {
        var harness = Harness()
        harness.create("tokyo", zone: "Asia/Tokyo", at: utc("2025-01-01T03:00:00Z"))       // local 12:00 Jan 1
        harness.create("la", zone: "America/Los_Angeles", at: utc("2025-01-01T20:00:00Z"))  // local 12:00 Jan 1
        harness.create("utc", at: utc("2025-01-01T12:00:00Z"))
        harness.create("utc2", at: utc("2025-01-01T13:00:00Z"))
        let mark = harness.ledger.lastEventSeq
        harness.tick(to: utc("2025-04-15"))
        let events = harness.events(after: mark)
        XCTAssertEqual(events.count, 4 * 3 * 2)
        XCTAssertEqual(events.map(\.at), events.map(\.at).sorted())
        let firstRound = events.prefix(8).map(\.subscriptionId)
        XCTAssertEqual(firstRound, ["tokyo", "tokyo", "utc", "utc", "utc2", "utc2", "la", "la"])
        XCTAssertEqual(events.map(\.seq), Array((mark + 1)...(mark + 24)))
    }

    /// E2: a request that first runs due transitions records their events first; a dry run or
    /// a failed request still records the transitions' events (T6), and nothing of its own.
    func testTransitionsOfARequestComeFirstAndStayInADryRun() throws {
        var harness = Harness()
        harness.create(at: utc("2025-03-01"))
        _ = try harness.changeSeats(to: 7, at: utc("2025-03-11")).get()
        var mark = harness.ledger.lastEventSeq
        _ = try harness.changeSeats(to: 5, at: utc("2025-04-02T09:00:00Z")).get()
        XCTAssertEqual(harness.types(after: mark),
                       [.periodRenewed, .invoiceIssued, .creditStateChanged, .creditStateChanged, .seatsChanged, .creditStateChanged])
        XCTAssertEqual(harness.events(after: mark).map(\.at).prefix(4), [utc("2025-04-01"), utc("2025-04-01"), utc("2025-04-01"), utc("2025-04-01")])
        mark = harness.ledger.lastEventSeq
        _ = try harness.changeSeats(to: 4, at: utc("2025-05-02T09:00:00Z"), dryRun: true).get()
        XCTAssertEqual(harness.types(after: mark).first, .periodRenewed)          // the 05-01 renewal
        XCTAssertFalse(harness.types(after: mark).contains(.seatsChanged))
        mark = harness.ledger.lastEventSeq
        XCTAssertReason(harness.changeSeats(to: 0, at: utc("2025-06-02T09:00:00Z")), .seatsMustBePositive)
        XCTAssertEqual(harness.types(after: mark).first, .periodRenewed)          // the 06-01 renewal
        XCTAssertFalse(harness.types(after: mark).contains(.seatsChanged))
    }

    // MARK: multiset of credit events = histories; replay and snapshots

    private func randomCommand(_ random: inout SplitMix64, ids: [String], now: Instant) -> Command {
        let id = ids.randomElement(using: &random)!
        switch Int.random(in: 0..<20, using: &random) {
        case 0..<8:
            return .changeSeats(ChangeSeatsRequest(subscriptionId: id, newSeats: Int64.random(in: 0...15, using: &random),
                                                   idempotencyKey: Bool.random(using: &random) ? "" : "k\(Int.random(in: 0..<5, using: &random))"))
        case 8..<10:
            return .changeSeats(ChangeSeatsRequest(subscriptionId: id, newSeats: Int64.random(in: 1...15, using: &random),
                                                   timing: .known(.atRenewal)))
        case 10:
            return .cancel(CancelRequest(subscriptionId: id, mode: .known(Bool.random(using: &random) ? .immediate : .endOfPeriod)))
        case 11..<13:
            return .resume(ResumeRequest(subscriptionId: id))
        case 13..<17:
            return .recordRefundOutcome(RecordRefundOutcomeRequest(
                subscriptionId: id, creditId: "cr_\(Int.random(in: 1...40, using: &random))",
                outcome: .known(Bool.random(using: &random) ? .succeeded : .failed)))
        case 17:
            return .importSubscription(ImportSubscriptionRequest(
                subscriptionId: id, customer: "cust-\(id)", seats: Int64.random(in: 1...12, using: &random), unitPriceMinor: 999,
                currency: "EUR", interval: .known(.monthly), timeZone: "Europe/Berlin",
                refundPolicy: .known(RefundPolicy.allCases.randomElement(using: &random)!),
                startDate: "2024-0\(Int.random(in: 1...9, using: &random))-\(Int.random(in: 10...28, using: &random))"))
        default:
            return .create(CreateSubscriptionRequest(
                subscriptionId: id, customer: "cust-\(id)", seats: Int64.random(in: 1...12, using: &random),
                unitPriceMinor: [0, 7, 1000, 12_345].randomElement(using: &random)!, currency: ["EUR", "JPY"].randomElement(using: &random)!,
                interval: .known(Bool.random(using: &random) ? .monthly : .annual),
                timeZone: ["UTC", "America/Los_Angeles", "Australia/Lord_Howe"].randomElement(using: &random)!,
                refundPolicy: .known(RefundPolicy.allCases.randomElement(using: &random)!)))
        }
    }

    /// Every E rule that can be checked on a random history, plus replay and snapshot
    /// determinism with events, and the book indexes against a scan.
    func testRandomHistoriesRecordEveryCreditEntryOnce() throws {
        for seed in UInt64(1)..<UInt64(25) {
            var random = SplitMix64(seed: seed)
            var ledger = Ledger()
            var journal: [(Command?, Instant, Bool)] = []
            var snapshot: (bytes: [UInt8], journalCount: Int)?
            var now = utc("2025-01-01T07:00:00Z")
            let ids = ["a", "b", "c", "d", "e"]
            for step in 0..<250 {
                now = now.adding(nanoseconds: Int64.random(in: 0...(2 * 86_400_000_000_000), using: &random))
                if Int.random(in: 0..<5, using: &random) == 0 {
                    let before = ledger.lastEventSeq
                    if ledger.advance(to: now) > 0 {
                        journal.append((nil, now, false))
                    } else {
                        XCTAssertEqual(ledger.lastEventSeq, before)
                    }
                    continue
                }
                let command = randomCommand(&random, ids: ids, now: now)
                let dryRun = Int.random(in: 0..<6, using: &random) == 0
                let before = ledger
                let result = ledger.execute(command, at: now, callerUID: 1, dryRun: dryRun)
                if result.stateChanged { journal.append((command, now, dryRun)) }
                // A dry run, a failure or a replay records only its time-driven transitions' events.
                if (dryRun || result.error != nil || result.replayed) && result.transitions == 0 {
                    XCTAssertEqual(ledger.lastEventSeq, before.lastEventSeq, "seed \(seed) step \(step) \(command)")
                }
                if step == 120 { snapshot = (LedgerCodec.encode(ledger), journal.count) }
            }
            ledger.advance(to: now.adding(hours: 24 * 400))
            journal.append((nil, now.adding(hours: 24 * 400), false))

            // Gap-free seqs, dates in the subscription's zone.
            let events = try ledger.events
            XCTAssertEqual(events.map(\.seq), Array(1...UInt64(events.count)))
            for event in events {
                let zone = try ledger.subscription(id: event.subscriptionId).timeZone
                XCTAssertEqual(event.date, zone.civilDate(of: event.at))
                XCTAssertEqual(event.customer, try ledger.subscription(id: event.subscriptionId).customer)
            }
            // The multiset of credit_state_changed events equals every credit's history.
            var fromEvents: [String: Int] = [:]
            for event in events {
                if let (change, credit) = event.creditChange {
                    fromEvents["\(credit.serial) \(change.state) \(change.at)", default: 0] += 1
                }
            }
            var fromHistories: [String: Int] = [:]
            for subscription in ledger.subscriptions {
                for credit in subscription.credits {
                    for change in credit.history { fromHistories["\(credit.serial) \(change.state) \(change.at)", default: 0] += 1 }
                }
            }
            XCTAssertEqual(fromEvents, fromHistories, "seed \(seed)")
            // Every invoice issued once; every created or imported subscription announced once.
            let issued = events.filter { $0.type == .invoiceIssued }.compactMap { event -> String? in
                if case .invoice(let invoice) = event.payload { return invoice.id }
                return nil
            }
            XCTAssertEqual(issued.sorted(), ledger.subscriptions.flatMap { $0.invoices.map(\.id) }.sorted())
            XCTAssertEqual(events.filter { $0.type == .subscriptionCreated || $0.type == .subscriptionImported }.count,
                           ledger.subscriptionCount)

            // Replay from nothing, and from the snapshot, gives the same ledger, events included.
            // Prefetched in groups as recovery does (ticks and unknown ids included): a hint
            // that must change nothing.
            var replayed = Ledger()
            for (index, (command, instant, dryRun)) in journal.enumerated() {
                if index % 8 == 0 {
                    replayed.prefetchSubscriptions(count: min(8, journal.count - index)) {
                        journal[index + $0].0?.subscriptionId ?? "no-such-id"
                    }
                }
                if let command { _ = replayed.execute(command, at: instant, callerUID: 1, dryRun: dryRun) } else { replayed.advance(to: instant) }
            }
            XCTAssertEqual(replayed, ledger, "seed \(seed)")
            XCTAssertEqual(try replayed.events, try ledger.events)
            if let snapshot {
                var restored = try LedgerCodec.decode(snapshot.bytes)
                for (command, instant, dryRun) in journal[snapshot.journalCount...] {
                    if let command { _ = restored.execute(command, at: instant, callerUID: 1, dryRun: dryRun) } else { restored.advance(to: instant) }
                }
                XCTAssertEqual(restored, ledger, "seed \(seed) from snapshot")
                XCTAssertEqual(try restored.events, try ledger.events)
                BookChecks.check(restored)
            }
            XCTAssertEqual(try LedgerCodec.decode(LedgerCodec.encode(ledger)).events, try ledger.events)
            BookChecks.check(ledger)
        }
    }

    // MARK: E4 ListEvents, E5 retention

    private func feedOfThirty() -> Harness {
        var harness = Harness()
        for index in 0..<10 {
            harness.create("s\(index)", at: utc("2025-03-01").adding(hours: Int64(index)))
        }
        for index in 0..<10 {
            _ = harness.changeSeats("s\(index)", to: 5, at: utc("2025-03-02").adding(hours: Int64(index)))
        }
        return harness
    }

    func testListEventsPagesFiltersAndPositions() throws {
        let harness = feedOfThirty()
        let ledger = harness.ledger
        XCTAssertEqual(ledger.lastEventSeq, 40)
        var page = try ledger.listEvents(afterSeq: 0, limit: 0)
        XCTAssertEqual(page.events.count, 40)
        XCTAssertEqual(page.nextAfterSeq, 40)
        XCTAssertEqual(page.lastSeq, 40)
        XCTAssertEqual(page.oldestSeq, 1)
        page = try ledger.listEvents(afterSeq: 5, limit: 3)
        XCTAssertEqual(page.events.map(\.seq), [6, 7, 8])
        XCTAssertEqual(page.nextAfterSeq, 8)
        // Type and subscription filters; nextAfterSeq passes the skipped events.
        page = try ledger.listEvents(afterSeq: 0, limit: 2, types: [.known(.creditStateChanged)])
        XCTAssertEqual(page.events.map(\.type), [.creditStateChanged, .creditStateChanged])
        XCTAssertEqual(page.nextAfterSeq, page.events.last!.seq)
        page = try ledger.listEvents(afterSeq: Int64(page.nextAfterSeq), limit: 100, types: [.known(.creditStateChanged)], subscriptionId: "s9")
        XCTAssertEqual(page.events.count, 1)
        XCTAssertEqual(page.events[0].subscriptionId, "s9")
        XCTAssertEqual(page.nextAfterSeq, 40)
        page = try ledger.listEvents(afterSeq: 0, limit: 10, subscriptionId: "unknown")
        XCTAssertEqual(page.events, [])
        XCTAssertEqual(page.nextAfterSeq, 40)
        page = try ledger.listEvents(afterSeq: 40, limit: 10)
        XCTAssertEqual(page.events, [])
        XCTAssertEqual(page.nextAfterSeq, 40)
        // Following nextAfterSeq visits every event once.
        var seen: [UInt64] = []
        var after: Int64 = 0
        while true {
            let next = try ledger.listEvents(afterSeq: after, limit: 7)
            seen += next.events.map(\.seq)
            if Int64(next.nextAfterSeq) == after { break }
            after = Int64(next.nextAfterSeq)
        }
        XCTAssertEqual(seen, Array(1...40))
        // Errors.
        for (afterSeq, limit) in [(Int64(-1), Int32(10)), (0, -1), (0, 1_001), (41, 10)] {
            XCTAssertThrowsError(try ledger.listEvents(afterSeq: afterSeq, limit: limit)) { error in
                XCTAssertEqual((error as? DomainError)?.reason, .invalidRequest, "\(afterSeq) \(limit)")
            }
        }
        XCTAssertThrowsError(try ledger.listEvents(afterSeq: 0, limit: 1, types: [.unrecognized(99)])) { error in
            XCTAssertEqual((error as? DomainError)?.reason, .invalidRequest)
        }
        XCTAssertThrowsError(try ledger.listEvents(afterSeq: 0, limit: 1, types: [.unspecified])) { error in
            XCTAssertEqual((error as? DomainError)?.reason, .invalidRequest)
        }
    }

    func testRetentionPrunesOnlyOldAndOutsideTheNewestCount() throws {
        var harness = Harness()
        harness.ledger.eventRetention = EventRetention(minimumAgeNanoseconds: 10 * 24 * Instant.nanosecondsPerHour,
                                                       minimumCount: 1_000)
        // 1,200 subscriptions → 2,400 events on day 0.
        for index in 0..<1_200 {
            harness.create("s\(index)", seats: 1, price: 0, at: utc("2025-03-01").adding(nanoseconds: Int64(index)))
        }
        XCTAssertEqual(harness.ledger.eventCount, 2_400)
        // Old enough only later; the count alone never prunes.
        harness.create("day5", at: utc("2025-03-06"))
        XCTAssertEqual(harness.ledger.oldestEventSeq, 1)
        // Day 12: the first chunk (1,024 events) is older than 10 days and outside the newest
        // 1,000; the second is as old, but dropping it would keep fewer than 1,000.
        harness.create("day12", at: utc("2025-03-13"))
        XCTAssertEqual(harness.ledger.oldestEventSeq, 1_025)
        XCTAssertEqual(harness.ledger.lastEventSeq, 2_404)
        XCTAssertEqual(harness.ledger.eventCount, 1_380)
        // E5: events_pruned below oldestSeq − 1, with the oldest kept seq; invalid_request first.
        XCTAssertNoThrow(try harness.ledger.listEvents(afterSeq: 1_024, limit: 1))
        XCTAssertEqual(try harness.ledger.listEvents(afterSeq: 1_024, limit: 1).events.first?.seq, 1_025)
        XCTAssertThrowsError(try harness.ledger.listEvents(afterSeq: 1_023, limit: 1)) { error in
            let error = error as? DomainError
            XCTAssertEqual(error?.reason, .eventsPruned)
            XCTAssertEqual(error?.oldestSeq, 1_025)
        }
        XCTAssertThrowsError(try harness.ledger.listEvents(afterSeq: 0, limit: 5_000)) { error in
            XCTAssertEqual((error as? DomainError)?.reason, .invalidRequest)
        }
        // Pruned feeds survive snapshots with their seqs.
        let decoded = try LedgerCodec.decode(LedgerCodec.encode(harness.ledger))
        XCTAssertEqual(decoded.oldestEventSeq, 1_025)
        XCTAssertEqual(try decoded.events, try harness.ledger.events)
        XCTAssertEqual(decoded, harness.ledger)
    }

    /// Sealing a chunk moves the open pieces' events into it; a copy taken before (a published
    /// state) keeps its own open events, and both go on to the same seqs and events.
    func testSealingKeepsOrderWhetherOrNotACopySharesThePieces() throws {
        var harness = feedOfThirty()
        var copies: [Ledger] = []
        for index in 0..<1_200 {
            if index % 97 == 0 { copies.append(harness.ledger) }
            harness.create("seal-\(index)", at: utc("2025-03-03").adding(nanoseconds: Int64(index)))
        }
        let all = try harness.ledger.events
        XCTAssertGreaterThan(all.count, 2 * EventFeed.chunkSize)
        XCTAssertEqual(all.map(\.seq), Array(1...UInt64(all.count)))
        for copy in copies {
            let kept = try copy.events
            XCTAssertEqual(kept, Array(all.prefix(kept.count)), "a copy keeps the events it had")
        }
    }

    func testTruncateAndRebuildFromParts() throws {
        var harness = feedOfThirty()
        for index in 0..<600 { harness.create("x\(index)", at: utc("2025-03-03").adding(nanoseconds: Int64(index))) }
        let full = harness.ledger
        for cut: UInt64 in [1_240, 1_024, 1_000, 40, 0] {
            var ledger = full
            ledger.truncateEvents(after: cut)
            XCTAssertEqual(ledger.lastEventSeq, cut)
            XCTAssertEqual(try ledger.events, try Array(full.events.prefix(Int(cut))))
            var again = ledger
            harness.ledger = ledger
            harness.create("after-\(cut)", at: utc("2025-03-04"))
            XCTAssertEqual(try harness.ledger.events.last?.seq, cut + 2)
            again.truncateEvents(after: cut + 5)     // nothing above: unchanged
            XCTAssertEqual(again, ledger)
        }
        let rebuilt = Ledger(maxSeats: full.maxSeats, counters: full.counters, subscriptions: full.subscriptions,
                             idempotencyEntries: full.idempotencyEntries, events: try full.events)
        XCTAssertEqual(rebuilt, full)
        BookChecks.check(rebuilt)
        // Every seq is found, and pages start where asked, across the sealed chunk and the
        // open pieces after it.
        let all = try full.events
        XCTAssertGreaterThan(all.count, EventFeed.chunkSize + EventFeed.pieceSize)
        for event in all { XCTAssertEqual(try full.event(seq: event.seq), event) }
        for after in [0, 63, 64, 1_000, 1_023, 1_024, 1_087, 1_088, all.count - 1] {
            let page = try full.listEvents(afterSeq: Int64(after), limit: 100)
            XCTAssertEqual(page.events, Array(all[after..<min(after + 100, all.count)]), "after \(after)")
        }
    }

    func testSpecMinimumRetention() {
        XCTAssertEqual(EventRetention.specMinimum.minimumCount, 1_000_000)
        XCTAssertEqual(EventRetention.specMinimum.minimumAgeNanoseconds, 45 * 86_400 * 1_000_000_000)
        XCTAssertEqual(Ledger().eventRetention, .specMinimum)
    }
}
