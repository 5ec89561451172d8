import CreditDomain
import CreditProto
import LedgerScenarios
import XCTest
@testable import CreditService

/// `ResponseEncoding.event`, `.listEvents`, `.getSubscription` and `.listSubscriptions` write
/// their answers straight from the domain. Their bytes must be exactly what SwiftProtobuf
/// writes for the messages built from the same values through `ProtoMapping` (for events,
/// below, as the handlers built them before), for every kind of event and subscription random
/// ledgers reach.
final class EventEncodingTests: XCTestCase {
    /// One event as a generated message (E2). Invoice and credit events take their
    /// subscription's currency and zone from the ledger.
    private func expectedEvent(_ event: LedgerEvent, in ledger: Ledger) -> Creditd_V1_Event {
        var message = Creditd_V1_Event()
        message.seq = event.seq
        message.type = Creditd_V1_EventType(rawValue: Int(event.type.rawValue)) ?? .unspecified
        message.atUnixNanos = event.at.nanosecondsSinceEpoch
        message.date = ProtoMapping.date(event.date)
        message.subscriptionID = event.subscriptionId
        message.customer = event.customer
        switch event.payload {
        case .subscription(let view):
            message.subscription = ProtoMapping.subscription(view)
        case .seatChange(let view, let result):
            message.subscription = ProtoMapping.subscription(view)
            message.seatChange = ProtoMapping.seatChange(result, ProtoMapping.Context(view))
        case .cancel(let view, let record):
            message.subscription = ProtoMapping.subscription(view)
            message.cancellation = ProtoMapping.cancellation(record, ProtoMapping.Context(view))
        case .invoice(let invoice):
            if let owner = try? ledger.subscription(id: event.subscriptionId) {
                message.invoice = ProtoMapping.invoice(invoice, ProtoMapping.Context(owner))
            }
        case .creditState(let change, let credit):
            if let owner = try? ledger.subscription(id: event.subscriptionId) {
                let context = ProtoMapping.Context(owner)
                var entry = Creditd_V1_CreditStateChange()
                entry.state = ProtoMapping.creditState(change.state)
                entry.atUnixNanos = change.at.nanosecondsSinceEpoch
                entry.date = ProtoMapping.date(context.timeZone.civilDate(of: change.at))
                message.creditState = entry
                message.credit = ProtoMapping.credit(credit, context, asOf: nil)
                message.credit.customer = event.customer
            }
        }
        return message
    }

    func testRandomLedgersEncodeEventsAsTheGeneratedMessages() throws {
        var types = Set<EventType>()
        var seatChangesWithCredit = 0, cancelsWithFinalInvoice = 0, scheduledSeats = 0
        for seed in UInt64(1)...60 {
            let (ledger, _) = RandomLedger.make(seed: seed, steps: 300)
            for event in try ledger.events {
                XCTAssertEqual(ResponseEncoding.event(event, in: ledger), try expectedEvent(event, in: ledger).serializedBytes(),
                               "seed \(seed), event \(event.seq) (\(event.type))")
                types.insert(event.type)
                switch event.payload {
                case .seatChange(let view, let result):
                    if result.credit != nil { seatChangesWithCredit += 1 }
                    if view.scheduledSeats != nil { scheduledSeats += 1 }
                case .cancel(_, let record):
                    if record.finalInvoice != nil { cancelsWithFinalInvoice += 1 }
                default:
                    break
                }
            }
            // ListEvents pages, filtered and not, up to the end of the feed.
            for (types, id) in [([EnumField<EventType>](), ""), ([.known(.creditStateChanged)], ""),
                                ([], ledger.subscriptions.first?.id ?? "")] {
                var after: Int64 = 0
                while true {
                    let page = try ledger.listEvents(afterSeq: after, limit: 17, types: types, subscriptionId: id)
                    var expected = Creditd_V1_ListEventsResponse()
                    expected.events = page.events.map { expectedEvent($0, in: ledger) }
                    expected.nextAfterSeq = page.nextAfterSeq
                    expected.lastSeq = page.lastSeq
                    expected.oldestSeq = page.oldestSeq
                    XCTAssertEqual(ResponseEncoding.listEvents(page, in: ledger), try expected.serializedBytes(),
                                   "seed \(seed), page after \(after)")
                    guard page.nextAfterSeq > UInt64(after), page.nextAfterSeq < page.lastSeq else { break }
                    after = Int64(page.nextAfterSeq)
                }
            }
        }
        // Every kind of event, and the payloads' optional parts, were compared.
        XCTAssertEqual(types, Set(EventType.allCases).subtracting([.subscriptionImported]), "\(types)")
        XCTAssertGreaterThan(seatChangesWithCredit, 0)
        XCTAssertGreaterThan(cancelsWithFinalInvoice, 0)
        XCTAssertGreaterThan(scheduledSeats, 0)
    }

    /// ChangeSeats and CancelSubscription answers, as the writer's results give them, against
    /// the generated messages (every seat change and cancel the random ledgers record).
    func testRandomLedgersEncodeWriteAnswersAsTheGeneratedMessages() throws {
        var seatChanges = 0, cancels = 0
        for seed in UInt64(1)...30 {
            let (ledger, _) = RandomLedger.make(seed: seed, steps: 300)
            for event in try ledger.events {
                for dryRun in [false, true] {
                    switch event.payload {
                    case .seatChange(let view, let result):
                        let subscription = try ledger.subscription(id: view.id)
                        var expected = ProtoMapping.seatChange(result, ProtoMapping.Context(subscription))
                        expected.dryRun = dryRun
                        XCTAssertEqual(ResponseEncoding.changeSeats(result, subscription, dryRun: dryRun),
                                       try expected.serializedBytes(), "seed \(seed), event \(event.seq)")
                        seatChanges += 1
                    case .cancel(let view, let record):
                        let subscription = try ledger.subscription(id: view.id)
                        var expected = Creditd_V1_CancelSubscriptionResponse()
                        expected.cancellation = ProtoMapping.cancellation(record, ProtoMapping.Context(subscription))
                        expected.dryRun = dryRun
                        XCTAssertEqual(ResponseEncoding.cancelSubscription(record, subscription, dryRun: dryRun),
                                       try expected.serializedBytes(), "seed \(seed), event \(event.seq)")
                        cancels += 1
                    default:
                        break
                    }
                }
            }
        }
        XCTAssertGreaterThan(seatChanges, 0)
        XCTAssertGreaterThan(cancels, 0)
    }

    func testRandomLedgersEncodeSubscriptionsAsTheGeneratedMessages() throws {
        var cancelled = 0, scheduled = 0, ended = 0
        for seed in UInt64(1)...60 {
            let (ledger, _) = RandomLedger.make(seed: seed, steps: 300)
            for subscription in ledger.subscriptions {
                var expected = Creditd_V1_GetSubscriptionResponse()
                expected.subscription = ProtoMapping.subscription(subscription)
                // Read in place, as GetSubscription reads it.
                var encoded: [UInt8] = []
                try ledger.withSubscription(id: subscription.id) { encoded = ResponseEncoding.getSubscription($0) }
                XCTAssertEqual(encoded, try expected.serializedBytes(), "seed \(seed), \(subscription.id)")
                // The CreateSubscription answer: the subscription and its purchase invoice.
                var created = Creditd_V1_CreateSubscriptionResponse()
                created.subscription = ProtoMapping.subscription(subscription)
                created.purchaseInvoice = ProtoMapping.invoice(subscription.purchaseInvoice, subscription)
                XCTAssertEqual(ResponseEncoding.createSubscription(subscription, purchaseInvoice: subscription.purchaseInvoice),
                               try created.serializedBytes(), "seed \(seed), \(subscription.id)")
                if subscription.cancelEffectiveDate != nil { cancelled += 1 }
                if subscription.scheduledSeats != nil { scheduled += 1 }
                if subscription.status == .ended { ended += 1 }
            }
            var token = ""
            repeat {
                let page = try ledger.listSubscriptions(pageSize: 3, pageToken: token, customer: "", statuses: [])
                var expected = Creditd_V1_ListSubscriptionsResponse()
                expected.subscriptions = page.subscriptions.map(ProtoMapping.subscription)
                expected.nextPageToken = page.nextPageToken
                XCTAssertEqual(ResponseEncoding.listSubscriptions(page), try expected.serializedBytes(),
                               "seed \(seed), page after '\(token)'")
                token = page.nextPageToken
            } while !token.isEmpty
        }
        XCTAssertGreaterThan(cancelled, 0)
        XCTAssertGreaterThan(scheduled, 0)
        XCTAssertGreaterThan(ended, 0)
    }

    /// An imported subscription's events, which random ledgers do not make, and an empty page.
    func testImportedSubscriptionAndEmptyPage() throws {
        var ledger = Ledger()
        let empty = try ledger.listEvents(afterSeq: 0, limit: 0)
        var expected = Creditd_V1_ListEventsResponse()
        expected.lastSeq = empty.lastSeq
        expected.oldestSeq = empty.oldestSeq
        XCTAssertEqual(ResponseEncoding.listEvents(empty, in: ledger), try expected.serializedBytes())
        try Self.importOne(into: &ledger)
        XCTAssertTrue(try ledger.events.contains { $0.type == .subscriptionImported })
        for event in try ledger.events {
            XCTAssertEqual(ResponseEncoding.event(event, in: ledger), try expectedEvent(event, in: ledger).serializedBytes())
        }
        let none = try Ledger().listSubscriptions(pageSize: 0, pageToken: "", customer: "", statuses: [])
        XCTAssertEqual(ResponseEncoding.listSubscriptions(none), try Creditd_V1_ListSubscriptionsResponse().serializedBytes())
    }
}

extension EventEncodingTests {
    /// O5: one subscription imported mid-period (2026-03-15T10:00:00Z), in a zone with an offset.
    static func importOne(into ledger: inout Ledger) throws {
        let request = ImportSubscriptionRequest(
            subscriptionId: "imported", customer: "acme", plan: "team", seats: 10, unitPriceMinor: 1000, currency: "USD",
            interval: .known(.monthly), timeZone: "Europe/Oslo", refundPolicy: .known(.anytime), startDate: "2025-01-31",
            currentPeriodChargedMinor: nil)
        let result = ledger.execute(.importSubscription(request), at: Instant(nanosecondsSinceEpoch: 1_773_568_800_000_000_000),
                                    callerUID: 0, dryRun: false)
        XCTAssertTrue(result.stateChanged)
    }
}
