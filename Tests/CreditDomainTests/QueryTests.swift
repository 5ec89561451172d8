import XCTest
@testable import CreditDomain
@testable import LedgerEncoding

/// Compares the incrementally kept book indexes and counts with a scan of the ledger.
enum BookChecks {
    static func check(_ ledger: Ledger, file: StaticString = #filePath, line: UInt = #line) {
        let book = ledger.book
        var stats = BookStats()
        var byState: [CreditState: [UInt64]] = [:]
        var byCurrency: [Currency: [UInt64]] = [:]
        var byCustomer: [String: (subscriptions: [ScalarString], credits: [UInt64])] = [:]
        var byStatus: [SubscriptionStatus: [ScalarString]] = [:]
        var overdue: [UInt64] = []
        var refundOverdue: [UInt64] = []
        var all: [UInt64] = []
        for subscription in ledger.subscriptions {
            stats.count(subscription.status, by: 1)
            byStatus[subscription.status, default: []].append(ScalarString(subscription.id))
            byCustomer[subscription.customer, default: ([], [])].subscriptions.append(ScalarString(subscription.id))
            for credit in subscription.credits {
                stats.add(credit, currency: subscription.currency, sign: 1)
                byState[credit.state, default: []].append(credit.serial)
                byCurrency[subscription.currency, default: []].append(credit.serial)
                byCustomer[subscription.customer, default: ([], [])].credits.append(credit.serial)
                if credit.state == .pending { overdue.append(credit.serial) }
                if CreditLeadingFields(credit).isRefundOverdueCandidate { refundOverdue.append(credit.serial) }
                all.append(credit.serial)
            }
        }
        func clean<K>(_ counts: [K: Int]) -> [K: Int] { counts.filter { $0.value != 0 } }
        // The kept indexes, and a rebuild from the subscriptions both on one thread and in its
        // parts on the cores (recovery's way), all agree with the scan.
        for (label, book) in [
            ("kept", book),
            ("rebuilt", BookIndex(slots: ledger.subscriptions, idOrder: ledger.slotsInIDOrder,
                                  nextCreditSerial: ledger.counters.nextCreditSerial, concurrently: false)),
            ("rebuilt concurrently", BookIndex(slots: ledger.subscriptions, idOrder: ledger.slotsInIDOrder,
                                               nextCreditSerial: ledger.counters.nextCreditSerial, concurrently: true)),
        ] {
            XCTAssertEqual(clean(book.stats.subscriptionsByStatus), clean(stats.subscriptionsByStatus), label, file: file, line: line)
            XCTAssertEqual(clean(book.stats.creditsByState), clean(stats.creditsByState), label, file: file, line: line)
            XCTAssertEqual(book.stats.totalsByCurrency.filter { $0.value != CreditTotals() },
                           stats.totalsByCurrency.filter { $0.value != CreditTotals() }, label, file: file, line: line)
            for state in CreditState.allCases {
                XCTAssertEqual(book.creditsByState[Int(state.rawValue)].elements, (byState[state] ?? []).sorted(),
                               "\(label) \(state)", file: file, line: line)
            }
            for currency in Currency.allCases {
                XCTAssertEqual(book.creditsByCurrency[currency.place].elements, (byCurrency[currency] ?? []).sorted(),
                               label, file: file, line: line)
            }
            for (customer, expected) in byCustomer {
                let entry = book.customers[ScalarString(customer)]
                XCTAssertEqual(entry?.subscriptions.elements, expected.subscriptions.sorted(), label, file: file, line: line)
                XCTAssertEqual(entry?.credits.elements ?? [], expected.credits.sorted(), label, file: file, line: line)
            }
            for status in SubscriptionStatus.allCases {
                XCTAssertEqual(book.subscriptionsByStatus[Int(status.rawValue)].elements, (byStatus[status] ?? []).sorted(),
                               label, file: file, line: line)
            }
            XCTAssertEqual(book.overdue.elements.map(\.serial), overdue.sorted(), label, file: file, line: line)
            XCTAssertEqual(book.refundOverdue.elements.map(\.serial), refundOverdue.sorted(), label, file: file, line: line)
            XCTAssertEqual(book.creditLocations.elements.map(\.serial), all.sorted(), label, file: file, line: line)
            // The flags' instants, which the scan does not compute, agree with the kept ones.
            XCTAssertEqual(book.refundOverdue.elements.map(\.due), ledger.book.refundOverdue.elements.map(\.due),
                           label, file: file, line: line)
            XCTAssertEqual(book.overdue.elements.map(\.due), ledger.book.overdue.elements.map(\.due), label, file: file, line: line)
        }
    }
}

/// Q1–Q3: ListCredits, ListSubscriptions filters, paging under writes, counts.
final class QueryTests: XCTestCase {
    /// Every credit that `filter` matches as of `asOf`, by brute force, in creation order.
    private func expected(_ ledger: Ledger, _ filter: CreditFilter, asOf: Instant) -> [UInt64] {
        var result: [(UInt64, Credit)] = []
        for subscription in ledger.subscriptions {
            for credit in subscription.credits {
                let states = Set(filter.states.compactMap { if case .known(let s) = $0 { return s } else { return nil } })
                if !states.isEmpty, !states.contains(credit.state) { continue }
                if !filter.customer.isEmpty, subscription.customer != filter.customer { continue }
                if !filter.subscriptionId.isEmpty, subscription.id != filter.subscriptionId { continue }
                if !filter.currency.isEmpty, subscription.currency.code != filter.currency { continue }
                let date = subscription.timeZone.civilDate(of: asOf)
                if filter.overdueOnly, !credit.isOverdue(asOf: date) { continue }
                if filter.refundOverdueOnly, !credit.isRefundOverdue(asOf: date) { continue }
                result.append((credit.serial, credit))
            }
        }
        return result.map(\.0).sorted()
    }

    /// Follows every page.
    private func listAll(_ ledger: Ledger, _ filter: CreditFilter, pageSize: Int32, asOf: Instant) throws -> [UInt64] {
        var token = ""
        var serials: [UInt64] = []
        repeat {
            let page = try ledger.listCredits(filter: filter, pageSize: pageSize, pageToken: token, asOf: asOf)
            XCTAssertLessThanOrEqual(page.credits.count, Int(pageSize == 0 ? 100 : pageSize))
            serials += page.credits.map(\.credit.serial)
            token = page.nextPageToken
        } while !token.isEmpty
        return serials
    }

    /// A book of several customers, zones and currencies with credits in every resting state.
    private func book(seed: UInt64) -> (Ledger, Instant) {
        var random = SplitMix64(seed: seed)
        var harness = Harness()
        var now = utc("2025-01-01T10:00:00Z")
        let zones = ["UTC", "America/Los_Angeles", "Asia/Tokyo"]
        for index in 0..<12 {
            let request = CreateSubscriptionRequest(
                subscriptionId: "sub-\(String(format: "%02d", (index * 7) % 12))", customer: ["acme", "globex", "initech"][index % 3],
                seats: 20, unitPriceMinor: 1_000, currency: ["USD", "EUR", "JPY"][index % 3 == 2 ? 2 : index % 2],
                interval: .known(.monthly), timeZone: zones[index % 3])
            harness.run(.create(request), at: now)
        }
        for _ in 0..<150 {
            now = now.adding(hours: Int64.random(in: 1...30, using: &random))
            let id = "sub-\(String(format: "%02d", Int.random(in: 0..<12, using: &random)))"
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<6:
                harness.run(.changeSeats(ChangeSeatsRequest(subscriptionId: id, newSeats: Int64.random(in: 1...20, using: &random))), at: now)
            case 6:
                harness.run(.cancel(CancelRequest(subscriptionId: id)), at: now)
            default:
                harness.run(.recordRefundOutcome(RecordRefundOutcomeRequest(
                    subscriptionId: id, creditId: "cr_\(Int.random(in: 1...80, using: &random))",
                    outcome: .known(Bool.random(using: &random) ? .succeeded : .failed))), at: now)
            }
            if Int.random(in: 0..<8, using: &random) == 0 { harness.tick(to: now) }
        }
        return (harness.ledger, now)
    }

    func testListCreditsMatchesBruteForceForEveryFilter() throws {
        for seed in UInt64(1)...UInt64(4) {
            let (ledger, now) = book(seed: seed)
            BookChecks.check(ledger)
            let stateSets: [[CreditState]] = [[], [.pending], [.applied], [.refundPending], [.consumed, .refunded],
                                              [.pending, .refundPending, .applied], [.refundFailed], [.voided]]
            for asOf in [now, now.adding(hours: 24 * 20), now.adding(hours: 24 * 70)] {
                for states in stateSets {
                    for customer in ["", "acme", "initech", "nobody"] {
                        for currency in ["", "USD", "JPY"] {
                            for flags in 0..<3 {
                                let filter = CreditFilter(states: states.map { .known($0) }, overdueOnly: flags == 1,
                                                          refundOverdueOnly: flags == 2, customer: customer, currency: currency)
                                let want = expected(ledger, filter, asOf: asOf)
                                XCTAssertEqual(try listAll(ledger, filter, pageSize: 3, asOf: asOf), want, "\(filter)")
                                if flags == 0, customer.isEmpty {
                                    XCTAssertEqual(try listAll(ledger, filter, pageSize: 0, asOf: asOf), want)
                                }
                            }
                        }
                    }
                }
                for id in ["sub-03", "sub-07", "unknown"] {
                    let filter = CreditFilter(states: [.known(.refundPending)], subscriptionId: id)
                    XCTAssertEqual(try listAll(ledger, filter, pageSize: 2, asOf: asOf), expected(ledger, filter, asOf: asOf))
                    XCTAssertEqual(try listAll(ledger, CreditFilter(subscriptionId: id), pageSize: 1, asOf: asOf),
                                   expected(ledger, CreditFilter(subscriptionId: id), asOf: asOf))
                }
            }
            // Listings carry the owner and the flags as of the request.
            let page = try ledger.listCredits(filter: CreditFilter(), pageSize: 1000, pageToken: "", asOf: now)
            for listing in page.credits {
                let subscription = try ledger.subscription(id: listing.subscriptionId)
                XCTAssertEqual(listing.customer, subscription.customer)
                XCTAssertEqual(listing.currency, subscription.currency)
                XCTAssertEqual(listing.status, CreditStatus(credit: subscription.credit(serial: listing.credit.serial)!,
                                                            asOf: subscription.timeZone.civilDate(of: now)))
            }
        }
    }

    func testOverdueAndRefundOverdueFollowTheSubscriptionsZone() throws {
        var harness = Harness()
        harness.create("la", zone: "America/Los_Angeles", at: utc("2025-03-01T10:00:00Z"))
        _ = try harness.changeSeats("la", to: 7, at: utc("2025-03-11T10:00:00Z")).get()   // expectedBy 2025-04-01
        let ledger = harness.ledger   // never advanced: the credit stays pending (L6)
        let overdue = CreditFilter(overdueOnly: true)
        // 2025-04-02 00:00 local (PDT) = 07:00Z.
        XCTAssertEqual(try listAll(ledger, overdue, pageSize: 10, asOf: utc("2025-04-02T06:59:59Z")), [])
        XCTAssertEqual(try listAll(ledger, overdue, pageSize: 10, asOf: utc("2025-04-02T07:00:00Z")), [1])
        XCTAssertEqual(ledger.overdueTotals(asOf: utc("2025-04-02T07:00:00Z")).overdue[.USD]?.remainingMinor, 2_032)
        XCTAssertNil(ledger.overdueTotals(asOf: utc("2025-04-02T06:00:00Z")).overdue[.USD])

        // Refund-overdue: a cancel, settled at 05-01 → refund_pending, refundExpectedBy 06-01.
        var refund = Harness.setupA()
        _ = try refund.cancel(at: utc("2025-04-11")).get()
        refund.tick(to: utc("2025-05-01"))
        let filter = CreditFilter(refundOverdueOnly: true)
        XCTAssertEqual(try listAll(refund.ledger, filter, pageSize: 10, asOf: utc("2025-06-01T23:59:59Z")), [])
        XCTAssertEqual(try listAll(refund.ledger, filter, pageSize: 10, asOf: utc("2025-06-02")), [1])
        XCTAssertEqual(refund.ledger.overdueTotals(asOf: utc("2025-06-02")).refundOverdue[.USD],
                       OverdueTotals.Amount(count: 1, remainingMinor: 6_667))
        _ = try refund.report(credit: "cr_1", outcome: .succeeded, at: utc("2025-06-03")).get()
        XCTAssertEqual(try listAll(refund.ledger, filter, pageSize: 10, asOf: utc("2025-06-04")), [])
        BookChecks.check(refund.ledger)
    }

    func testErrorsAndEmptyFilters() throws {
        let (ledger, now) = book(seed: 9)
        func reason(_ body: () throws -> Void) -> DomainError.Reason? {
            do { try body() } catch { return (error as? DomainError)?.reason }
            return nil
        }
        XCTAssertEqual(reason { _ = try ledger.listCredits(filter: CreditFilter(), pageSize: -1, pageToken: "", asOf: now) }, .invalidRequest)
        XCTAssertEqual(reason { _ = try ledger.listCredits(filter: CreditFilter(), pageSize: 1_001, pageToken: "", asOf: now) }, .invalidRequest)
        for token in ["x", "c", "c-1", "cZZ", "c" + String(repeating: "z", count: 20), "c1 "] {
            XCTAssertEqual(reason { _ = try ledger.listCredits(filter: CreditFilter(), pageSize: 10, pageToken: token, asOf: now) },
                           .invalidRequest, token)
        }
        XCTAssertEqual(reason { _ = try ledger.listCredits(filter: CreditFilter(states: [.unrecognized(42)]), pageSize: 10,
                                                           pageToken: "", asOf: now) }, .invalidRequest)
        XCTAssertEqual(reason { _ = try ledger.listCredits(filter: CreditFilter(currency: "usd"), pageSize: 10, pageToken: "",
                                                           asOf: now) }, .invalidRequest)
        XCTAssertEqual(reason { _ = try ledger.listCredits(filter: CreditFilter(currency: "XAU"), pageSize: 10, pageToken: "",
                                                           asOf: now) }, .invalidRequest)
        XCTAssertEqual(try ledger.listCredits(filter: CreditFilter(states: [.known(.refundFailed)]), pageSize: 10, pageToken: "",
                                              asOf: now).credits, [])
        // Page size 1000 is allowed; the last page's token is empty.
        let page = try ledger.listCredits(filter: CreditFilter(), pageSize: 1_000, pageToken: "", asOf: now)
        XCTAssertEqual(page.nextPageToken, "")
        XCTAssertEqual(page.credits.count, ledger.subscriptions.map(\.credits.count).reduce(0, +))
        // Subscriptions: bad sizes and statuses.
        XCTAssertEqual(reason { _ = try ledger.listSubscriptions(pageSize: 1_001, pageToken: "", customer: "", statuses: []) },
                       .invalidRequest)
        XCTAssertEqual(reason { _ = try ledger.listSubscriptions(pageSize: -1, pageToken: "", customer: "acme", statuses: []) },
                       .invalidRequest)
        XCTAssertEqual(reason { _ = try ledger.listSubscriptions(pageSize: 10, pageToken: "", customer: "",
                                                                 statuses: [.unrecognized(9)]) }, .invalidRequest)
    }

    /// Q1: following the tokens while writes happen between pages never returns a credit twice
    /// and never skips one that matched before and after the page was read; new credits appear.
    func testPagingUnderConcurrentWrites() throws {
        for seed in UInt64(20)..<UInt64(30) {
            var random = SplitMix64(seed: seed)
            var harness = Harness()
            var now = utc("2025-01-01T10:00:00Z")
            for index in 0..<8 {
                harness.create("s\(index)", seats: 30, customer: index % 2 == 0 ? "even" : "odd", at: now)
            }
            func write() {
                now = now.adding(hours: Int64.random(in: 1...20, using: &random))
                let id = "s\(Int.random(in: 0..<8, using: &random))"
                switch Int.random(in: 0..<6, using: &random) {
                case 0..<4:
                    harness.run(.changeSeats(ChangeSeatsRequest(subscriptionId: id, newSeats: Int64.random(in: 1...30, using: &random))), at: now)
                case 4:
                    harness.tick(to: now)
                default:
                    harness.run(.recordRefundOutcome(RecordRefundOutcomeRequest(
                        subscriptionId: id, creditId: "cr_\(Int.random(in: 1...60, using: &random))", outcome: .known(.succeeded))), at: now)
                }
            }
            for _ in 0..<40 { write() }
            let filters = [CreditFilter(), CreditFilter(states: [.known(.pending)]),
                           CreditFilter(states: [.known(.pending), .known(.refundPending)]), CreditFilter(customer: "odd"),
                           CreditFilter(states: [.known(.applied)], customer: "even", currency: "USD")]
            for filter in filters {
                let startLedger = harness.ledger
                let startAsOf = now
                var token = ""
                var seen: [UInt64] = []
                repeat {
                    let page = try harness.ledger.listCredits(filter: filter, pageSize: 2, pageToken: token, asOf: now)
                    seen += page.credits.map(\.credit.serial)
                    token = page.nextPageToken
                    for _ in 0..<Int.random(in: 0...3, using: &random) { write() }
                } while !token.isEmpty
                XCTAssertEqual(Set(seen).count, seen.count, "duplicates, seed \(seed)")
                XCTAssertEqual(seen, seen.sorted())
                let before = Set(expected(startLedger, filter, asOf: startAsOf))
                let after = Set(expected(harness.ledger, filter, asOf: now))
                XCTAssertTrue(before.intersection(after).isSubset(of: Set(seen)), "skipped, seed \(seed) \(filter)")
            }
            BookChecks.check(harness.ledger)
        }
    }

    func testListSubscriptionsFilters() throws {
        var harness = Harness()
        let now = utc("2025-03-01T10:00:00Z")
        let ids = ["m", "b", "z", "a", "k", "c", "é", "y"]
        for (index, id) in ids.enumerated() {
            harness.create(id, customer: index % 2 == 0 ? "acme" : "globex", at: now)
        }
        _ = try harness.cancel("b", at: now).get()
        _ = try harness.cancel("k", mode: .endOfPeriod, at: now).get()
        _ = try harness.cancel("z", mode: .endOfPeriod, at: now).get()
        harness.tick(to: utc("2025-04-01"))   // z and k end
        func all(customer: String, statuses: [SubscriptionStatus], pageSize: Int32) throws -> [String] {
            var token = ""
            var list: [String] = []
            repeat {
                let page = try harness.ledger.listSubscriptions(pageSize: pageSize, pageToken: token, customer: customer,
                                                                statuses: statuses.map { .known($0) })
                list += page.subscriptions.map(\.id)
                token = page.nextPageToken
            } while !token.isEmpty
            return list
        }
        let sorted = ids.map(ScalarString.init).sorted().map(\.value)
        XCTAssertEqual(try all(customer: "", statuses: [], pageSize: 3), sorted)
        XCTAssertEqual(try all(customer: "acme", statuses: [], pageSize: 2), ["k", "m", "z", "é"])
        XCTAssertEqual(try all(customer: "", statuses: [.ended], pageSize: 1), ["k", "z"])
        XCTAssertEqual(try all(customer: "", statuses: [.cancelled, .ended], pageSize: 1), ["b", "k", "z"])
        XCTAssertEqual(try all(customer: "globex", statuses: [.active], pageSize: 1), ["a", "c", "y"])
        XCTAssertEqual(try all(customer: "nobody", statuses: [], pageSize: 1), [])
        // A subscription created after the listing began appears on a later page when its id
        // sorts after the page already read.
        let first = try harness.ledger.listSubscriptions(pageSize: 2, pageToken: "", customer: "acme", statuses: [])
        XCTAssertEqual(first.subscriptions.map(\.id), ["k", "m"])
        harness.create("aa", customer: "acme", at: utc("2025-04-02"))
        harness.create("n", customer: "acme", at: utc("2025-04-02"))
        let second = try harness.ledger.listSubscriptions(pageSize: 10, pageToken: first.nextPageToken, customer: "acme", statuses: [])
        XCTAssertEqual(second.subscriptions.map(\.id), ["n", "z", "é"])
        XCTAssertEqual(harness.ledger.bookStats.subscriptionsByStatus[.active], 7)
        XCTAssertEqual(harness.ledger.bookStats.subscriptionsByStatus[.ended], 2)
        XCTAssertEqual(harness.ledger.bookStats.subscriptionsByStatus[.cancelled], 1)
        BookChecks.check(harness.ledger)
    }

    func testIndexesSurviveSnapshotsAndOldVersions() throws {
        let (ledger, now) = book(seed: 3)
        let decoded = try LedgerCodec.decode(LedgerCodec.encode(ledger))
        BookChecks.check(decoded)
        XCTAssertEqual(decoded.bookStats, ledger.bookStats)
        let filter = CreditFilter(states: [.known(.refundPending)])
        XCTAssertEqual(try listAll(decoded, filter, pageSize: 4, asOf: now), try listAll(ledger, filter, pageSize: 4, asOf: now))
        // A token taken before the snapshot goes on after it.
        let page = try ledger.listCredits(filter: CreditFilter(), pageSize: 5, pageToken: "", asOf: now)
        XCTAssertEqual(try decoded.listCredits(filter: CreditFilter(), pageSize: 5, pageToken: page.nextPageToken, asOf: now),
                       try ledger.listCredits(filter: CreditFilter(), pageSize: 5, pageToken: page.nextPageToken, asOf: now))
    }

    // MARK: chunked containers

    func testChunkedSortedSetAgainstASet() {
        checkChunkedSortedSet(DueSerial.self, serials: 40_000, sequential: 30_000, removedRange: 5_000...15_000,
                              minimumGroups: 3, minimumSections: 1)
    }

    /// Leaves of 4, groups of 4 leaves and sections of 4 groups: a few thousand elements make
    /// hundreds of sections, so every split and every removal of an emptied leaf, group and
    /// section runs many times.
    func testChunkedSortedSetWithTinyLimits() {
        checkChunkedSortedSet(TinyDueSerial.self, serials: 3_000, sequential: 2_000, removedRange: 300...900,
                              minimumGroups: 40, minimumSections: 10)
    }

    /// Inserts serials `1...sequential` in order (appends), then inserts and removes random ones
    /// up to `serials`, removing `removedRange` whole on the way, and compares the set, its layout
    /// and its due-limited cursors with a dictionary.
    private func checkChunkedSortedSet<Element: DueSerialLike>(
        _: Element.Type, serials: UInt64, sequential: Int, removedRange: ClosedRange<UInt64>,
        minimumGroups: Int, minimumSections: Int
    ) {
        var random = SplitMix64(seed: 77)
        var set = ChunkedSortedSet<Element>()
        var reference: [UInt64: Int64] = [:]
        let steps = sequential * 8 / 3
        for step in 0..<steps {
            let serial = step < sequential ? UInt64(step + 1) : UInt64.random(in: 1...serials, using: &random)
            if step < sequential || Bool.random(using: &random) || reference.count < 100 {
                let due = Int64.random(in: 0...1_000, using: &random)
                XCTAssertEqual(set.insert(Element(serial: serial, due: due)), reference[serial] == nil)
                reference[serial] = due
            } else {
                XCTAssertEqual(set.remove(Element(serial: serial, due: 0)), reference.removeValue(forKey: serial) != nil)
            }
            if step == steps * 3 / 4 {
                for serial in removedRange {
                    reference.removeValue(forKey: serial)
                    set.remove(Element(serial: serial, due: 0))
                }
            }
        }
        XCTAssertEqual(set.count, reference.count)
        XCTAssertEqual(set.elements.map(\.serial), reference.keys.sorted())
        XCTAssertEqual(set.elements.map(\.due), reference.keys.sorted().map { reference[$0]! })
        for serial in stride(from: 1, through: serials + 1, by: 7) {
            XCTAssertEqual(set.find(Element(serial: serial, due: 0))?.due, reference[serial])
        }
        XCTAssertGreaterThanOrEqual(set.groups.count, minimumGroups)
        XCTAssertGreaterThanOrEqual(set.sections.count, minimumSections)
        typealias Set = ChunkedSortedSet<Element>
        for section in set.sections {
            XCTAssertTrue(!section.groups.isEmpty && section.groups.count <= Set.sectionLimit)
            XCTAssertEqual(section.last, section.groups.last?.last)
            XCTAssertEqual(section.smallestDue, section.groups.map(\.smallestDue).min())
        }
        for group in set.groups {
            XCTAssertTrue(!group.leaves.isEmpty && group.leaves.count <= Set.groupLimit)
            XCTAssertTrue(group.leaves.allSatisfy { !$0.isEmpty && $0.count <= Set.leafLimit })
            XCTAssertEqual(group.last, group.leaves.last?.last)
            XCTAssertEqual(group.minimumDue, group.leaves.map { $0.map(\.due).min()! })
            XCTAssertEqual(group.smallestDue, group.minimumDue.min())
        }
        for limit: Int64 in [0, 10, 500, 1_000] {
            for after: UInt64? in [nil, 1, serials / 13, serials / 7, serials / 2, serials + 1] {
                var cursor = set.cursor(after: after.map { Element(serial: $0, due: 0) }, dueAtOrBefore: limit)
                var got: [UInt64] = []
                while let next = cursor.next() { got.append(next.serial) }
                XCTAssertEqual(got, reference.filter { $0.value <= limit && $0.key > (after ?? 0) }.keys.sorted())
            }
        }
        // A copy (a publish) and the original never see each other's later changes.
        let published = set
        let publishedElements = published.elements
        for serial in stride(from: 1, through: serials, by: 11) {
            if reference[serial] == nil { set.insert(Element(serial: serial, due: 1)) } else { set.remove(Element(serial: serial, due: 0)) }
        }
        XCTAssertEqual(published.elements.map(\.serial), publishedElements.map(\.serial))
        XCTAssertNotEqual(set.elements.map(\.serial), publishedElements.map(\.serial))
    }

    /// The customer map behaves as a dictionary across thousands of keys, and a copy (a
    /// publish) never sees the original's later changes, nor the original the copy's.
    func testSlottedMapAgainstADictionary() {
        var random = SplitMix64(seed: 91)
        var map = SlottedMap<Int>()
        var reference: [String: Int] = [:]
        XCTAssertNil(map[ScalarString("absent")])
        for step in 0..<20_000 {
            let key = "customer-\(UInt64.random(in: 0..<5_000, using: &random))"
            let added = map.update(ScalarString(key), default: 0) { value in
                value += step
                return value
            }
            reference[key, default: 0] += step
            XCTAssertEqual(added, reference[key])
        }
        XCTAssertEqual(map.count, reference.count)
        for (key, value) in reference { XCTAssertEqual(map[ScalarString(key)], value, key) }

        let published = map
        for key in reference.keys.prefix(50) { map.update(ScalarString(key), default: 0) { $0 = -1 } }
        map.update(ScalarString("new customer"), default: 7) { _ in }
        for key in reference.keys.prefix(50) {
            XCTAssertEqual(published[ScalarString(key)], reference[key], "the copy keeps its values")
            XCTAssertEqual(map[ScalarString(key)], -1)
        }
        XCTAssertNil(published[ScalarString("new customer")])
        XCTAssertEqual(map[ScalarString("new customer")], 7)
        XCTAssertEqual(published.count + 1, map.count)
    }

    /// The data layout constraint: after a copy, one mutation copies one chunk, so the other
    /// chunks still share storage with the copy.
    func testAMutationAfterACopyCopiesOneChunk() throws {
        var harness = Harness()
        for index in 0..<1_500 {
            harness.create("s\(index)", seats: 5, at: utc("2025-03-01").adding(nanoseconds: Int64(index)))
            _ = harness.changeSeats("s\(index)", to: 4, at: utc("2025-03-02").adding(nanoseconds: Int64(index)))
        }
        let published = harness.ledger
        _ = harness.changeSeats("s3", to: 3, at: utc("2025-03-03"))
        func shared<T>(_ lhs: [[T]], _ rhs: [[T]]) -> Int {
            zip(lhs, rhs).filter { pair in
                pair.0.withUnsafeBufferPointer { a in pair.1.withUnsafeBufferPointer { b in a.baseAddress == b.baseAddress } }
            }.count
        }
        let feedChunks = published.feed.sealedChunks.count
        XCTAssertGreaterThanOrEqual(feedChunks, 5)
        XCTAssertEqual(zip(published.feed.sealedChunks, harness.ledger.feed.sealedChunks).filter { $0.0 === $0.1 }.count, feedChunks)
        let pending = published.book.creditsByState[Int(CreditState.pending.rawValue)].leaves
        XCTAssertGreaterThanOrEqual(shared(pending, harness.ledger.book.creditsByState[Int(CreditState.pending.rawValue)].leaves),
                                    pending.count - 1)
        let locations = published.book.creditLocations.leaves
        XCTAssertGreaterThanOrEqual(shared(locations, harness.ledger.book.creditLocations.leaves), locations.count - 1)
        let active = published.book.subscriptionsByStatus[Int(SubscriptionStatus.active.rawValue)].leaves
        XCTAssertGreaterThan(active.count, 5)
        XCTAssertGreaterThanOrEqual(shared(active, harness.ledger.book.subscriptionsByStatus[Int(SubscriptionStatus.active.rawValue)].leaves),
                                    active.count - 1)
    }

    // MARK: measurement

    /// ListCredits page latency, index rebuild and copy-then-mutate cost at a large book; runs
    /// only when asked (CREDITD_QUERY_PROBE=1, size in CREDITD_QUERY_PROBE_SUBSCRIPTIONS).
    /// Meaningful with -c release.
    func testQuerySpeedProbe() throws {
        let environment = ProcessInfo.processInfo.environment
        guard environment["CREDITD_QUERY_PROBE"] == "1" else { throw XCTSkip("set CREDITD_QUERY_PROBE=1") }
        let count = Int(environment["CREDITD_QUERY_PROBE_SUBSCRIPTIONS"] ?? "") ?? 100_000
        let clock = ContinuousClock()
        var ledger = Ledger()
        let start = utc("2025-03-01")
        let built = clock.measure {
            for index in 0..<count {
                let id = "sub-\(index)"
                _ = ledger.execute(.create(CreateSubscriptionRequest(
                    subscriptionId: id, customer: "customer-\(index % 50_000)", seats: 10, unitPriceMinor: 1000, currency: "USD",
                    interval: .known(.monthly), timeZone: "Europe/Berlin")), at: start, callerUID: 1, dryRun: false)
                for step in 0..<5 {
                    _ = ledger.execute(.changeSeats(ChangeSeatsRequest(subscriptionId: id, newSeats: Int64(9 - step))),
                                       at: start.adding(hours: Int64(step + 1)), callerUID: 1, dryRun: false)
                }
            }
            ledger.advance(to: utc("2025-04-01T12:00:00Z"))
        }
        let asOf = utc("2025-04-02")
        var samples: [Duration] = []
        var token = ""
        for round in 0..<2_000 {
            let state: CreditState = round % 2 == 0 ? .consumed : .refundPending
            let elapsed = clock.measure {
                let page = try? ledger.listCredits(filter: CreditFilter(states: [.known(state)]), pageSize: 100,
                                                   pageToken: token, asOf: asOf)
                token = page?.nextPageToken ?? ""
            }
            samples.append(elapsed)
        }
        samples.sort()
        let rebuild = clock.measure {
            _ = BookIndex(slots: ledger.subscriptions, idOrder: ledger.slotsInIDOrder, nextCreditSerial: ledger.counters.nextCreditSerial)
        }
        var copies: [Duration] = []
        for index in 0..<200 {
            let published = ledger
            copies.append(clock.measure {
                _ = ledger.execute(.changeSeats(ChangeSeatsRequest(subscriptionId: "sub-\(index)", newSeats: 2)),
                                   at: utc("2025-04-03"), callerUID: 1, dryRun: false)
            })
            _ = published
        }
        copies.sort()
        print("query probe: \(count) subscriptions, \(ledger.bookStats.creditsByState.values.reduce(0, +)) credits, "
              + "\(ledger.eventCount) events, built in \(built); ListCredits state filter page 100: "
              + "p50 \(samples[samples.count / 2]) p99 \(samples[samples.count * 99 / 100]); index rebuild \(rebuild); "
              + "write after a copy p50 \(copies[copies.count / 2]) p99 \(copies[copies.count * 99 / 100])")
    }
}

/// A due serial as the sorted-set tests build it.
protocol DueSerialLike: ChunkedSetElement {
    init(serial: UInt64, due: Int64)
    var serial: UInt64 { get }
    var due: Int64 { get }
}

extension DueSerial: DueSerialLike {}

/// `DueSerial` with tiny chunk limits, so that a few thousand elements fill many sections.
struct TinyDueSerial: DueSerialLike {
    let serial: UInt64
    let due: Int64

    var indexDue: Int64 { due }
    static var tracksDue: Bool { true }
    static var leafLimit: Int { 4 }
    static var groupLimit: Int { 4 }
    static var sectionLimit: Int { 4 }

    static func < (lhs: TinyDueSerial, rhs: TinyDueSerial) -> Bool { lhs.serial < rhs.serial }
    static func == (lhs: TinyDueSerial, rhs: TinyDueSerial) -> Bool { lhs.serial == rhs.serial }
}
