import CreditDomain
import ProtoWire

/// The event feed's answers (E2, E4, E6), the subscription reads (O3) and the frequent writes'
/// answers encoded straight from the domain values, like `ResponseEncoding`'s credits: exactly
/// the bytes SwiftProtobuf writes for the messages `ProtoMapping` builds (`EventEncodingTests`
/// compares the two on every kind of event and subscription random ledgers reach). Field
/// numbers are those of proto/creditd/v1/credits.proto.
///
/// Built as messages, an event cost about 7 µs to map and encode, most of a WatchEvents
/// stream's CPU: at the write benchmark's rate a fast consumer took a third of a core from
/// the writers on a two-core machine. GetSubscription is the most frequent read; ChangeSeats,
/// CancelSubscription and CreateSubscription the most frequent writes, whose answers are encoded
/// as their batch completes.
extension ResponseEncoding {
    /// One `creditd.v1.Event`, as a WatchEvents message.
    static func event(_ event: LedgerEvent, in ledger: Ledger) -> [UInt8] {
        var out = ByteWriter(capacity: 512)
        out.event(event, in: ledger)
        return out.array()
    }

    /// `creditd.v1.ChangeSeatsResponse` (S8), as the writer's result gives it.
    static func changeSeats(_ result: SeatChangeResult, _ subscription: Subscription, dryRun: Bool) -> [UInt8] {
        var out = ByteWriter(capacity: 256)
        out.seatChange(result, subscription, dryRun: dryRun)
        return out.array()
    }

    /// `creditd.v1.CancelSubscriptionResponse` (C8).
    static func cancelSubscription(_ record: CancellationRecord, _ subscription: Subscription, dryRun: Bool) -> [UInt8] {
        var out = ByteWriter(capacity: 512)
        let mark = out.beginMessage(1, reserve: 2)
        out.cancellation(record, subscription)
        out.endMessage(mark)
        out.boolField(2, dryRun)
        return out.array()
    }

    /// `creditd.v1.CreateSubscriptionResponse` (O2): the new subscription and its purchase
    /// invoice. Built as messages, the answer took about a seventh of the server's CPU per
    /// create at 64 writes in flight.
    static func createSubscription(_ subscription: Subscription, purchaseInvoice: Invoice) -> [UInt8] {
        var out = ByteWriter(capacity: 768)
        out.subscription(1, subscription)
        let mark = out.beginMessage(2, reserve: 2)
        out.invoice(purchaseInvoice, currency: subscription.currency)
        out.endMessage(mark)
        return out.array()
    }

    /// `creditd.v1.GetSubscriptionResponse` (O3).
    static func getSubscription(_ subscription: StoredSubscription) -> [UInt8] {
        var out = ByteWriter(capacity: 256)
        out.subscription(1, subscription)
        return out.array()
    }

    /// `creditd.v1.ListSubscriptionsResponse` for one page.
    static func listSubscriptions(_ page: SubscriptionPage) -> [UInt8] {
        var out = ByteWriter(capacity: 32 + page.subscriptions.count * 256)
        for subscription in page.subscriptions { out.subscription(1, subscription) }
        out.stringField(2, page.nextPageToken)
        return out.array()
    }

    /// `creditd.v1.ListEventsResponse` for one page (E4).
    static func listEvents(_ page: EventPage, in ledger: Ledger) -> [UInt8] {
        var out = ByteWriter(capacity: 32 + page.events.count * 512)
        for event in page.events {
            // ListEventsResponse.events = 1
            let mark = out.beginMessage(1, reserve: 2)
            out.event(event, in: ledger)
            out.endMessage(mark)
        }
        out.uintField(2, page.nextAfterSeq)
        out.uintField(3, page.lastSeq)
        out.uintField(4, page.oldestSeq)
        return out.array()
    }
}

extension ByteWriter {
    /// The fields of one `creditd.v1.Event`. Invoice and credit events do not carry their
    /// subscription's currency and zone; `ledger` gives them (a subscription is never removed).
    mutating func event(_ event: LedgerEvent, in ledger: Ledger) {
        uintField(1, event.seq)
        intField(2, Int64(event.type.rawValue))
        intField(3, event.at.nanosecondsSinceEpoch)
        dateField(4, event.date)
        stringField(5, event.subscriptionId)
        stringField(6, event.customer)
        switch event.payload {
        case .subscription(let view):
            subscriptionView(7, view)
        case .seatChange(let view, let result):
            subscriptionView(7, view)
            let mark = beginMessage(8, reserve: 2)
            seatChange(result, view)
            endMessage(mark)
        case .cancel(let view, let record):
            subscriptionView(7, view)
            let mark = beginMessage(9, reserve: 2)
            cancellation(record, view)
            endMessage(mark)
        case .invoice(let invoice):
            if let owner = try? ledger.subscription(id: event.subscriptionId) {
                let mark = beginMessage(10, reserve: 2)
                self.invoice(invoice, currency: owner.currency)
                endMessage(mark)
            }
        case .creditState(let change, let credit):
            if let owner = try? ledger.subscription(id: event.subscriptionId) {
                let entry = beginMessage(11)
                intField(1, Int64(change.state.rawValue))
                intField(2, change.at.nanosecondsSinceEpoch)
                dateField(3, owner.timeZone.civilDate(of: change.at))
                endMessage(entry)
                let mark = beginMessage(12, reserve: 2)
                self.credit(credit, subscriptionID: owner.id, currency: owner.currency, timeZone: owner.timeZone,
                            overdue: false, refundOverdue: false, customer: event.customer, asOfDate: nil)
                endMessage(mark)
            }
        }
    }

    /// A whole `creditd.v1.Subscription` field (O3).
    mutating func subscription<Stored: StoredSubscriptionFields>(_ field: UInt32, _ subscription: Stored) {
        subscriptionView(field, subscription, createdAt: subscription.createdAt,
                         cancelEffectiveDate: subscription.cancelEffectiveDate)
    }

    /// A `creditd.v1.Subscription` field: the view's fields, and the two only the stored
    /// subscription knows (none in an event's view).
    mutating func subscriptionView<View: SubscriptionFields>(_ field: UInt32, _ view: borrowing View, createdAt: Instant? = nil,
                                   cancelEffectiveDate: CivilDate? = nil) {
        let mark = beginMessage(field, reserve: 2)
        stringField(1, view.id)
        stringField(2, view.customer)
        stringField(3, view.plan)
        intField(4, Int64(view.status.rawValue))
        intField(5, view.seats)
        intField(6, view.unitPriceMinor)
        stringField(7, view.currency.code)
        intField(8, Int64(view.interval.rawValue))
        intField(9, Int64(view.schedule.anchorDay))
        intField(10, Int64(view.schedule.anchorMonth))
        stringField(11, view.timeZone.identifier)
        intField(12, Int64(view.refundPolicy.rawValue))
        dateField(13, view.startDate)
        if let createdAt { intField(14, createdAt.nanosecondsSinceEpoch) }
        // Period current_period = 15: always present, as the mapping sets it.
        let period = beginMessage(15)
        dateField(1, view.period.start)
        dateField(2, view.period.end)
        intField(3, Int64(view.period.days))
        intField(4, view.period.chargedMinor)
        intField(5, view.period.chargedSeats)
        endMessage(period)
        dateField(16, view.nextBillingDate)
        intField(17, view.scheduledSeats ?? 0)
        dateField(18, cancelEffectiveDate)
        endMessage(mark)
    }

    /// The fields of `creditd.v1.ChangeSeatsResponse` (S8) as a `seats_changed` or
    /// `seat_change_scheduled` event records it.
    mutating func seatChange<View: SubscriptionFields>(_ result: SeatChangeResult, _ view: View, dryRun: Bool = false) {
        intField(1, Int64(result.outcome.rawValue))
        intField(2, result.previousSeats)
        intField(3, result.newSeats)
        intField(4, result.seats)
        dateField(5, result.effectiveDate)
        if let line = result.line { ledgerLine(6, line) }
        if let credit = result.credit { creditField(7, credit, view) }
        boolField(8, dryRun)
        stringField(9, view.currency.code)
    }

    /// The fields of `creditd.v1.CancellationRecord` (C8).
    mutating func cancellation<View: SubscriptionFields>(_ record: CancellationRecord, _ view: View) {
        intField(1, Int64(record.mode.rawValue))
        dateField(2, record.effectiveDate)
        intField(3, record.requestedAt.nanosecondsSinceEpoch)
        intField(4, record.entitlementEndsAt.nanosecondsSinceEpoch)
        if let line = record.line { ledgerLine(5, line) }
        if let credit = record.credit { creditField(6, credit, view) }
        if let invoice = record.finalInvoice {
            let mark = beginMessage(7, reserve: 2)
            self.invoice(invoice, currency: view.currency)
            endMessage(mark)
        }
        boolField(8, record.alreadyCancelled)
    }

    /// A whole credit as a record gives it: as of its own instant, so no flags.
    private mutating func creditField<View: SubscriptionFields>(_ field: UInt32, _ credit: Credit, _ view: View) {
        let mark = beginMessage(field, reserve: 2)
        self.credit(credit, subscriptionID: view.id, currency: view.currency, timeZone: view.timeZone,
                    overdue: false, refundOverdue: false, customer: "", asOfDate: nil)
        endMessage(mark)
    }

    /// A `creditd.v1.LedgerLine` field (L7).
    mutating func ledgerLine(_ field: UInt32, _ line: LedgerLine) {
        let mark = beginMessage(field, reserve: 2)
        intField(1, line.amountMinor)
        dateField(2, line.effectiveDate)
        let explanation = beginMessage(3, reserve: 2)
        self.explanation(line.explanation)
        endMessage(explanation)
        endMessage(mark)
    }

    /// The fields of `creditd.v1.Invoice` (L11).
    mutating func invoice(_ invoice: Invoice, currency: Currency) {
        stringField(1, invoice.id)
        intField(2, Int64(invoice.kind.rawValue))
        intField(3, invoice.issuedAt.nanosecondsSinceEpoch)
        dateField(4, invoice.issuedDate)
        dateField(5, invoice.periodStart)
        dateField(6, invoice.periodEnd)
        for line in invoice.lines {
            let mark = beginMessage(7, reserve: 2)
            intField(1, Int64(line.kind.rawValue))
            intField(2, line.amountMinor)
            stringField(3, line.creditID ?? "")
            stringField(4, line.description)
            dateField(5, line.effectiveDate)
            endMessage(mark)
        }
        intField(8, invoice.totalMinor)
        dateField(9, invoice.settlesOn)
        boolField(10, invoice.settled)
        stringField(11, currency.code)
    }
}
