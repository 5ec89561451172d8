import XCTest
@testable import CreditDomain

/// Seeded random properties: proration, periods, anchors, time zones, previews, retries and replay.
final class PropertyTests: XCTestCase {
    // MARK: proration (P4, M3, M5)

    /// For any sequence of `now` changes in a period, the lines sum to R(exact total), where the
    /// exact total comes from an independent per-day count of the seats in force.
    func testLinesSumToRoundedExactTotal() throws {
        var random = SplitMix64(seed: 1)
        for _ in 0..<1_500 {
            let seats = Int64.random(in: 1...40, using: &random)
            let price = [Int64(0), 1, 999, 1000, 4_321, Int64.random(in: 1...9_999_999, using: &random)].randomElement(using: &random)!
            let policy: RefundPolicy = Bool.random(using: &random) ? .anytime : .window7d
            let start = day("2025-01-01").adding(days: Int.random(in: 0...800, using: &random))
            var harness = Harness()
            harness.create(seats: seats, price: price, policy: policy, at: Instant(utc: start, hour: 3))
            let subscription = harness.subscription()
            let period = subscription.period
            let days = Int(period.days)
            var perDay = Array(repeating: seats, count: days)
            var offset = 0
            var lines: [Int64] = []
            var current = seats
            for _ in 0..<Int.random(in: 1...12, using: &random) {
                offset = min(days - 1, offset + Int.random(in: 0...6, using: &random))
                let date = period.start.adding(days: offset)
                let instant = Instant(utc: date, hour: Int.random(in: 0...23, using: &random))
                let cancel = Int.random(in: 0..<15, using: &random) == 0
                if cancel {
                    let record = harness.cancel(at: instant)
                    guard let record = record.value else { break }   // outside a window
                    lines.append(record.line!.amountMinor)
                    for index in offset..<days { perDay[index] = 0 }
                    break
                }
                let target = Int64.random(in: 1...45, using: &random)
                guard let change = harness.changeSeats(to: target, at: instant).value else { continue }
                if let line = change.line { lines.append(line.amountMinor) }
                current = target
                for index in offset..<days { perDay[index] = current }
            }
            let seatDays = perDay.reduce(Int128(0)) { $0 + Int128($1) }
            // p = C / S = price: the lines sum to R(p / P × (seatDays − S × P)) (M5).
            let expected = roundHalfUp(Int128(price) * (seatDays - Int128(seats) * Int128(days)), over: Int128(days))!
            XCTAssertEqual(Int128(lines.reduce(0, +)), expected)
            XCTAssertGreaterThanOrEqual(lines.reduce(0, +), -price * seats)     // M5
        }
    }

    // MARK: periods and anchors (T2, T3)

    func testConsecutivePeriodsAddUp() {
        var random = SplitMix64(seed: 2)
        for _ in 0..<2_000 {
            let interval: BillingInterval = Int.random(in: 0..<4, using: &random) == 0 ? .annual : .monthly
            let start = day("1990-01-01").adding(days: Int.random(in: 0...20_000, using: &random))
            let schedule = BillingSchedule(interval: interval, startDate: start)
            var boundary = start
            var total = 0
            for _ in 0..<Int.random(in: 1...40, using: &random) {
                let next = schedule.billingDate(after: boundary)
                let length = boundary.days(to: next)
                XCTAssertTrue(interval == .monthly ? (28...31).contains(length) : (365...366).contains(length))
                let containing = schedule.period(containing: boundary.adding(days: length / 2))
                XCTAssertEqual(containing.start, boundary)
                XCTAssertEqual(containing.end, next)
                total += length
                boundary = next
            }
            XCTAssertEqual(total, start.days(to: boundary))
        }
    }

    func testAnchorsNeverDriftOver400Years() {
        for anchor in 28...31 {
            let start = CivilDate(year: 2000, month: anchor == 31 ? 1 : 3, day: anchor)!
            let schedule = BillingSchedule(interval: .monthly, startDate: start)
            var boundary = start
            for _ in 0..<4_800 {
                boundary = schedule.billingDate(after: boundary)
                let (year, month, dayOfMonth) = boundary.components
                XCTAssertEqual(dayOfMonth, min(anchor, CivilDate.daysInMonth(year: year, month: month)))
            }
            XCTAssertGreaterThanOrEqual(boundary.year, 2400)
        }
        for (month, anchor) in [(2, 29), (2, 28), (1, 31), (12, 31)] {
            let schedule = BillingSchedule(interval: .annual, anchorMonth: month, anchorDay: anchor)
            var boundary = CivilDate(year: 2000, month: month, day: anchor)!
            for _ in 0..<400 {
                boundary = schedule.billingDate(after: boundary)
                let (year, boundaryMonth, dayOfMonth) = boundary.components
                XCTAssertEqual(boundaryMonth, month)
                XCTAssertEqual(dayOfMonth, min(anchor, CivilDate.daysInMonth(year: year, month: month)))
            }
        }
        // And through real renewals: a Feb-29 annual plan and an anchor-31 monthly plan for 60 years.
        var harness = Harness()
        harness.create("annual", seats: 1, price: 100, interval: .annual, at: utc("2024-02-29T12:00:00Z"))
        harness.create("monthly", seats: 1, price: 100, at: utc("2024-01-31T12:00:00Z"))
        harness.tick(to: utc("2084-03-01"))
        let annualStarts = harness.subscription("annual").invoices.map(\.periodStart)
        XCTAssertEqual(annualStarts.count, 61)
        for date in annualStarts {
            XCTAssertEqual(date.day, CivilDate.isLeapYear(date.year) ? 29 : 28)
        }
        for date in harness.subscription("monthly").invoices.map(\.periodStart) {
            XCTAssertEqual(date.day, CivilDate.daysInMonth(year: date.year, month: date.month))
        }
    }

    // MARK: time zones (T1, D)

    /// The same requests on the same local civil dates give the same amounts and day counts in a
    /// DST zone as in UTC, at any hour of the local day.
    func testDSTNeverChangesADayCount() throws {
        var random = SplitMix64(seed: 3)
        let zones = ["America/Los_Angeles", "Europe/Berlin", "America/Santiago", "Australia/Lord_Howe"]
        let utcZone = TimeZoneRules.utc
        for index in 0..<400 {
            let zone = TimeZoneRules(identifier: zones[index % zones.count])!
            // Start dates around the DST changes of 2024–2026.
            let start = day("2024-01-01").adding(days: Int.random(in: 0...900, using: &random))
            func instant(_ rules: TimeZoneRules, _ date: CivilDate) -> Instant {
                let first = rules.startOfDay(date)
                let length = rules.startOfDay(date.adding(days: 1)).nanosecondsSinceEpoch - first.nanosecondsSinceEpoch
                let offset = Int64.random(in: 0..<length, using: &random)
                let chosen = first.adding(nanoseconds: offset)
                XCTAssertEqual(rules.civilDate(of: chosen), date)
                return chosen
            }
            let interval: BillingInterval = index % 5 == 0 ? .annual : .monthly
            var local = Harness()
            var reference = Harness()
            local.create(interval: interval, zone: zone.identifier, at: instant(zone, start))
            reference.create(interval: interval, zone: "UTC", at: instant(utcZone, start))
            var date = start
            for _ in 0..<8 {
                date = date.adding(days: Int.random(in: 1...25, using: &random))
                let seats = Int64.random(in: 1...15, using: &random)
                let a = local.changeSeats(to: seats, at: instant(zone, date))
                let b = reference.changeSeats(to: seats, at: instant(utcZone, date))
                XCTAssertEqual(a.value?.line?.amountMinor, b.value?.line?.amountMinor)
                XCTAssertEqual(a.value?.line?.explanation.unusedDays, b.value?.line?.explanation.unusedDays)
                XCTAssertEqual(local.subscription().period.start, reference.subscription().period.start)
                XCTAssertEqual(local.subscription().period.days, reference.subscription().period.days)
            }
            let a = local.cancel(at: instant(zone, date.adding(days: 3)))
            let b = reference.cancel(at: instant(utcZone, date.adding(days: 3)))
            XCTAssertEqual(a.value?.line?.amountMinor, b.value?.line?.amountMinor)
            XCTAssertEqual(a.value?.credit?.expectedBy, b.value?.credit?.expectedBy)
            for invoice in local.subscription().invoices where invoice.kind == .renewal {
                XCTAssertEqual(invoice.issuedAt, zone.startOfDay(invoice.issuedDate))
                XCTAssertEqual(zone.civilDate(of: invoice.issuedAt), invoice.periodStart)
            }
        }
    }

    // MARK: random operation sequences

    private struct Step {
        let command: Command
        let at: Instant
        let uid: UInt32
        let dryRun: Bool
    }

    /// A random mix of every operation on a few subscriptions over a few months.
    private func randomSteps(seed: UInt64, count: Int) -> [Step] {
        var random = SplitMix64(seed: seed)
        let zones = ["UTC", "America/Los_Angeles", "Europe/Berlin", "America/Santiago", "Australia/Lord_Howe"]
        var now = utc("2025-01-01").adding(hours: Int64.random(in: 0..<24, using: &random))
        var steps: [Step] = []
        let ids = ["a", "b", "c", "d"]
        for (index, id) in ids.enumerated() {
            let policy = RefundPolicy.allCases.randomElement(using: &random)!
            let interval: BillingInterval = index == 3 ? .annual : .monthly
            let price = [Int64(0), 999, 1000, 12_345, 7].randomElement(using: &random)!
            steps.append(Step(command: .create(CreateSubscriptionRequest(
                subscriptionId: id, seats: Int64.random(in: 1...12, using: &random), unitPriceMinor: price, currency: "EUR",
                interval: .known(interval), timeZone: zones.randomElement(using: &random)!, refundPolicy: .known(policy))),
                at: now, uid: 1, dryRun: false))
        }
        var keyCounter = 0
        for _ in 0..<count {
            now = now.adding(nanoseconds: Int64.random(in: 0...(3 * 86_400 * 1_000_000_000), using: &random))
            let id = ids.randomElement(using: &random)!
            let dryRun = Int.random(in: 0..<6, using: &random) == 0
            let uid = UInt32.random(in: 1...2, using: &random)
            let keyed = Bool.random(using: &random)
            if keyed { keyCounter += 1 }
            // Reuse a recent key now and then, with the same or another body.
            let key = keyed ? "k\(Int.random(in: max(1, keyCounter - 3)...keyCounter, using: &random))" : ""
            let command: Command
            switch Int.random(in: 0..<20, using: &random) {
            case 0..<9:
                command = .changeSeats(ChangeSeatsRequest(subscriptionId: id, newSeats: Int64.random(in: 0...15, using: &random),
                                                          timing: .known(.now), idempotencyKey: key))
            case 9..<11:
                command = .changeSeats(ChangeSeatsRequest(subscriptionId: id, newSeats: Int64.random(in: 1...15, using: &random),
                                                          timing: .known(.atRenewal), idempotencyKey: key))
            case 11:
                command = .cancel(CancelRequest(subscriptionId: id, mode: Bool.random(using: &random) ? .known(.immediate) : .known(.endOfPeriod),
                                                idempotencyKey: key))
            case 12..<14:
                command = .resume(ResumeRequest(subscriptionId: id))
            case 14..<17:
                command = .recordRefundOutcome(RecordRefundOutcomeRequest(
                    subscriptionId: id, creditId: "cr_\(Int.random(in: 1...30, using: &random))",
                    outcome: Bool.random(using: &random) ? .known(.succeeded) : .known(.failed)))
            case 17:
                command = .create(CreateSubscriptionRequest(subscriptionId: id, seats: 1, unitPriceMinor: 1, currency: "EUR",
                                                            interval: .known(.monthly), timeZone: "UTC"))
            default:
                command = .changeSeats(ChangeSeatsRequest(subscriptionId: id, newSeats: 200_000, idempotencyKey: key))
            }
            steps.append(Step(command: command, at: now, uid: uid, dryRun: dryRun))
        }
        return steps
    }

    private func checkInvariants(_ ledger: Ledger, file: StaticString = #filePath, line: UInt = #line) {
        for subscription in ledger.subscriptions {
            var total: Int64 = 0
            for credit in subscription.credits {
                XCTAssertGreaterThanOrEqual(credit.remainingMinor, 0, file: file, line: line)
                XCTAssertGreaterThanOrEqual(credit.consumedMinor, 0, file: file, line: line)
                XCTAssertGreaterThanOrEqual(credit.refundedMinor, 0, file: file, line: line)
                XCTAssertGreaterThan(credit.amountMinor, 0, file: file, line: line)
                XCTAssertNotEqual(credit.state, .refundFailed, file: file, line: line)
                total += credit.amountMinor
            }
            let totals = CreditTotals(subscription.credits)
            XCTAssertEqual(totals.pendingMinor + totals.appliedMinor + totals.consumedMinor + totals.refundPendingMinor
                           + totals.refundedMinor, total, file: file, line: line)
            // P4/M5 for the current period: the lines sum to R(A_n), never below −C.
            let period = subscription.period
            let credited = subscription.credits.filter { $0.effectiveDate >= period.start }.map(\.amountMinor).reduce(0, +)
            let lines = subscription.periodLines.map(\.amountMinor).reduce(0, +) - credited
            let denominator = Int128(period.chargedSeats) * Int128(period.days)
            XCTAssertEqual(Int128(lines), roundHalfUp(subscription.cumulativeNumerator, over: denominator), file: file, line: line)
            XCTAssertGreaterThanOrEqual(lines, -period.chargedMinor, file: file, line: line)
            if subscription.status.isEffectivelyCancelled { XCTAssertEqual(subscription.seats, 0, file: file, line: line) }
            XCTAssertEqual(subscription.blocks.map(\.seats).reduce(0, +), subscription.refundPolicy == .anytime ? 0 : subscription.seats,
                           file: file, line: line)
        }
        // Credit ids are unique across the ledger.
        let serials = ledger.subscriptions.flatMap { $0.credits.map(\.serial) }
        XCTAssertEqual(Set(serials).count, serials.count, file: file, line: line)
    }

    /// Replaying the journaled commands (and ticks) on a fresh ledger gives an equal ledger;
    /// previews equal commits; retries never add a credit; invariants hold throughout.
    func testRandomOperationSequences() throws {
        var outcomes: [String: Int] = [:]
        var states: [CreditState: Int] = [:]
        for seed in UInt64(100)..<UInt64(160) {
            let steps = randomSteps(seed: seed, count: 150)
            var ledger = Ledger()
            var journal: [(Step?, Instant)] = []    // nil step: a scheduler tick
            var random = SplitMix64(seed: seed ^ 0xABCD)
            for step in steps {
                if Int.random(in: 0..<4, using: &random) == 0 {
                    let tick = step.at.adding(nanoseconds: -Int64.random(in: 0...3_600_000_000_000, using: &random))
                    if ledger.advance(to: tick) > 0 { journal.append((nil, tick)) }
                }
                let creditsBefore = ledger.subscriptions.map(\.credits.count).reduce(0, +)
                if !step.dryRun {
                    // Preview equals commit at the same instant (the preview's transitions are kept).
                    var previewLedger = ledger
                    let preview = previewLedger.execute(step.command, at: step.at, callerUID: step.uid, dryRun: true)
                    if preview.stateChanged { XCTAssertGreaterThan(preview.transitions, 0) }
                    let commit = ledger.execute(step.command, at: step.at, callerUID: step.uid, dryRun: false)
                    XCTAssertEqual(preview.outcome, commit.outcome, "seed \(seed) \(step.command)")
                    if commit.stateChanged { journal.append((step, step.at)) }
                    let creditsAfter = ledger.subscriptions.map(\.credits.count).reduce(0, +)
                    let created: Int
                    switch commit.response {
                    case .cancelled(let record) where !commit.replayed && !record.alreadyCancelled:
                        created = record.credit == nil ? 0 : 1
                    case .seatsChanged(let change) where !commit.replayed:
                        created = change.credit == nil ? 0 : 1
                    default:
                        created = 0
                    }
                    XCTAssertEqual(creditsAfter, creditsBefore + created, "seed \(seed) \(step.command)")
                    outcomes[commit.error?.code ?? "\(commit.response.map { "\($0)".prefix(14) } ?? "")", default: 0] += 1
                    // A retry, with the same key or without one, never adds a credit.
                    let retry = ledger.execute(step.command, at: step.at, callerUID: step.uid, dryRun: false)
                    if retry.stateChanged { journal.append((step, step.at)) }
                    XCTAssertEqual(ledger.subscriptions.map(\.credits.count).reduce(0, +), creditsAfter, "seed \(seed) retry")
                    if case .changeSeats(let request) = step.command, !request.idempotencyKey.isEmpty, !commit.replayed, commit.error == nil {
                        var unkeyed = request
                        unkeyed.idempotencyKey = ""
                        let plain = ledger.execute(.changeSeats(unkeyed), at: step.at, callerUID: step.uid, dryRun: false)
                        if plain.stateChanged { journal.append((.init(command: .changeSeats(unkeyed), at: step.at, uid: step.uid, dryRun: false), step.at)) }
                        XCTAssertEqual(ledger.subscriptions.map(\.credits.count).reduce(0, +), creditsAfter)
                    }
                } else {
                    let before = ledger
                    let result = ledger.execute(step.command, at: step.at, callerUID: step.uid, dryRun: true)
                    if result.stateChanged {
                        journal.append((step, step.at))
                    } else {
                        XCTAssertEqual(ledger, before)
                    }
                }
                checkInvariants(ledger)
            }
            // Replay determinism.
            var replayed = Ledger()
            for (step, instant) in journal {
                if let step {
                    _ = replayed.execute(step.command, at: instant, callerUID: step.uid, dryRun: step.dryRun)
                } else {
                    replayed.advance(to: instant)
                }
            }
            XCTAssertEqual(replayed, ledger, "seed \(seed)")
            XCTAssertEqual(replayed.nextDueInstant(), ledger.nextDueInstant())
            // Events are part of the state: replay reproduces them, seq for seq (E3).
            XCTAssertEqual(try replayed.events, try ledger.events, "seed \(seed)")
            BookChecks.check(ledger)
            BookChecks.check(replayed)
            XCTAssertGreaterThan(journal.count, 20)
            // Advancing far ahead settles everything that can settle.
            ledger.advance(to: utc("2027-01-01"))
            checkInvariants(ledger)
            for subscription in ledger.subscriptions {
                for credit in subscription.credits { states[credit.state, default: 0] += 1 }
                XCTAssertFalse(subscription.credits.contains { $0.state == .pending })
                XCTAssertTrue(subscription.invoices.allSatisfy(\.settled))
            }
        }
        print("random outcomes: \(outcomes.sorted { $0.key < $1.key }) credit states: \(states)")
    }

    /// Retried cancels, with or without a key, never create a second credit or record.
    func testRetriedCancelsNeverCreateASecondCredit() throws {
        var random = SplitMix64(seed: 5)
        for _ in 0..<300 {
            var harness = Harness.setupA(seats: Int64.random(in: 1...20, using: &random))
            let at = utc("2025-04-01").adding(hours: Int64.random(in: 0..<(30 * 24), using: &random))
            let key = Bool.random(using: &random) ? "cancel-key" : ""
            let first = try harness.cancel(key: key, at: at).get()
            for retry in 0..<3 {
                let mode: CancelMode = Bool.random(using: &random) ? .immediate : .endOfPeriod
                let later = at.adding(hours: Int64(retry))
                let again = try harness.cancel(mode: key.isEmpty ? mode : .immediate, key: key, at: later).get()
                XCTAssertEqual(again.credit, first.credit)
                XCTAssertEqual(again.alreadyCancelled, key.isEmpty)
            }
            XCTAssertEqual(harness.credits().count, first.credit == nil ? 0 : 1)
            XCTAssertEqual(harness.subscription().invoices.filter { $0.kind == .final }.count, 1)
        }
    }
}
