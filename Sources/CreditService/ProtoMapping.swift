import CreditDomain
import CreditProto

/// Domain values as messages of the wire contract: one mapping per message,
/// in one place (architecture: conversions happen at the handler edge).
///
/// Credits and invoices do not repeat their subscription's id, currency and
/// time zone, so their mappings take the subscription as context. The responses that carry
/// many credits (ListCredits, GetRefundStatus) and the event feed's (ListEvents, WatchEvents)
/// are written by `ResponseEncoding` instead, to the bytes these mappings give.
enum ProtoMapping {
    struct Context {
        let subscriptionID: String
        let currency: Currency
        let timeZone: TimeZoneRules

        init(subscriptionID: String, currency: Currency, timeZone: TimeZoneRules) {
            self.subscriptionID = subscriptionID
            self.currency = currency
            self.timeZone = timeZone
        }

        init(_ subscription: Subscription) {
            subscriptionID = subscription.id
            currency = subscription.currency
            timeZone = subscription.timeZone
        }

        init(_ view: SubscriptionView) {
            subscriptionID = view.id
            currency = view.currency
            timeZone = view.timeZone
        }
    }

    static func date(_ date: CivilDate?) -> String { date.map(String.init(describing:)) ?? "" }

    static func rational(_ value: Rational) -> Creditd_V1_Rational {
        var message = Creditd_V1_Rational()
        message.numerator = String(value.numerator)
        message.denominator = String(value.denominator)
        return message
    }

    /// O3: the view events carry, plus what only the stored subscription knows.
    static func subscription(_ subscription: Subscription) -> Creditd_V1_Subscription {
        var message = self.subscription(SubscriptionView(subscription))
        message.createdAtUnixNanos = subscription.createdAt.nanosecondsSinceEpoch
        message.cancelEffectiveDate = date(subscription.cancelEffectiveDate)
        return message
    }

    static func period(_ period: BillingPeriod) -> Creditd_V1_Period {
        var message = Creditd_V1_Period()
        message.periodStart = date(period.start)
        message.periodEnd = date(period.end)
        message.periodDays = period.days
        message.chargedMinor = period.chargedMinor
        message.chargedSeats = period.chargedSeats
        return message
    }

    static func explanation(_ explanation: LineExplanation) -> Creditd_V1_LineExplanation {
        var message = Creditd_V1_LineExplanation()
        message.unitPrice = rational(explanation.unitPrice)
        message.seatsDelta = explanation.seatsDelta
        if let unused = explanation.unusedDays {
            message.unusedDays = unused
        } else {
            message.unusedDaysDiffer = true
        }
        message.periodDays = explanation.periodDays
        message.exact = rational(explanation.exact)
        message.cumulativeExact = rational(explanation.cumulativeExact)
        message.rounded = explanation.rounded
        message.carry = rational(explanation.carry)
        message.blocks = explanation.blocks.map { block in
            var portion = Creditd_V1_SeatBlockPortion()
            portion.seats = block.seats
            portion.startDate = date(block.startDate)
            portion.unusedDays = block.unusedDays
            return portion
        }
        return message
    }

    static func line(_ line: LedgerLine) -> Creditd_V1_LedgerLine {
        var message = Creditd_V1_LedgerLine()
        message.amountMinor = line.amountMinor
        message.effectiveDate = date(line.effectiveDate)
        message.explanation = explanation(line.explanation)
        return message
    }

    static func credit(_ credit: Credit, _ context: Context, asOf: CivilDate?) -> Creditd_V1_Credit {
        var message = creditSummary(credit, subscriptionID: context.subscriptionID, currency: context.currency, asOf: asOf)
        message.history = credit.history.map { change in
            var entry = Creditd_V1_CreditStateChange()
            entry.state = creditState(change.state)
            entry.atUnixNanos = change.at.nanosecondsSinceEpoch
            entry.date = date(context.timeZone.civilDate(of: change.at))
            return entry
        }
        message.explanation = explanation(credit.explanation)
        return message
    }

    /// A credit without `history` and `explanation` (CREDIT_VIEW_SUMMARY): neither the zone nor
    /// the rational arithmetic is needed.
    static func creditSummary(_ credit: Credit, subscriptionID: String, currency: Currency, asOf: CivilDate?) -> Creditd_V1_Credit {
        var message = Creditd_V1_Credit()
        message.creditID = credit.id
        message.subscriptionID = subscriptionID
        message.source = Creditd_V1_CreditSource(rawValue: Int(credit.source.rawValue)) ?? .unspecified
        message.effectiveDate = date(credit.effectiveDate)
        message.createdAtUnixNanos = credit.createdAt.nanosecondsSinceEpoch
        message.eventSeq = credit.eventSeq
        message.currency = currency.code
        message.amountMinor = credit.amountMinor
        message.remainingMinor = credit.remainingMinor
        message.consumedMinor = credit.consumedMinor
        message.refundedMinor = credit.refundedMinor
        message.state = creditState(credit.state)
        message.dueDate = date(credit.dueDate)
        message.deadline = date(credit.deadline)
        message.expectedBy = date(credit.expectedBy)
        message.appliedDate = date(credit.appliedDate)
        message.refundExpectedBy = date(credit.refundExpectedBy)
        if let asOf {
            message.overdue = credit.isOverdue(asOf: asOf)
            message.refundOverdue = credit.isRefundOverdue(asOf: asOf)
        }
        return message
    }

    static func creditState(_ state: CreditState) -> Creditd_V1_CreditState {
        Creditd_V1_CreditState(rawValue: Int(state.rawValue)) ?? .unspecified
    }

    static func invoice(_ invoice: Invoice, _ subscription: Subscription) -> Creditd_V1_Invoice {
        self.invoice(invoice, Context(subscription))
    }

    static func invoice(_ invoice: Invoice, _ context: Context) -> Creditd_V1_Invoice {
        var message = Creditd_V1_Invoice()
        message.invoiceID = invoice.id
        message.kind = Creditd_V1_InvoiceKind(rawValue: Int(invoice.kind.rawValue)) ?? .unspecified
        message.issuedAtUnixNanos = invoice.issuedAt.nanosecondsSinceEpoch
        message.issuedDate = date(invoice.issuedDate)
        message.periodStart = date(invoice.periodStart)
        message.periodEnd = date(invoice.periodEnd)
        message.lines = invoice.lines.map { line in
            var entry = Creditd_V1_InvoiceLine()
            entry.kind = Creditd_V1_InvoiceLineKind(rawValue: Int(line.kind.rawValue)) ?? .unspecified
            entry.amountMinor = line.amountMinor
            entry.creditID = line.creditID ?? ""
            entry.description_p = line.description
            entry.effectiveDate = date(line.effectiveDate)
            return entry
        }
        message.totalMinor = invoice.totalMinor
        message.settlesOn = date(invoice.settlesOn)
        message.settled = invoice.settled
        message.currency = context.currency.code
        return message
    }

    static func cancellation(_ record: CancellationRecord, _ context: Context) -> Creditd_V1_CancellationRecord {
        var message = Creditd_V1_CancellationRecord()
        message.mode = Creditd_V1_CancelMode(rawValue: Int(record.mode.rawValue)) ?? .unspecified
        message.effectiveDate = date(record.effectiveDate)
        message.requestedAtUnixNanos = record.requestedAt.nanosecondsSinceEpoch
        message.entitlementEndsAtUnixNanos = record.entitlementEndsAt.nanosecondsSinceEpoch
        if let line = record.line { message.line = self.line(line) }
        // A record is answered as of its own instant; refund status gives live flags.
        if let credit = record.credit { message.credit = self.credit(credit, context, asOf: nil) }
        if let invoice = record.finalInvoice { message.finalInvoice = self.invoice(invoice, context) }
        message.alreadyCancelled = record.alreadyCancelled
        return message
    }

    static func seatChange(_ result: SeatChangeResult, _ context: Context) -> Creditd_V1_ChangeSeatsResponse {
        var message = Creditd_V1_ChangeSeatsResponse()
        message.outcome = Creditd_V1_SeatChangeOutcome(rawValue: Int(result.outcome.rawValue)) ?? .unspecified
        message.previousSeats = result.previousSeats
        message.newSeats = result.newSeats
        message.seats = result.seats
        message.effectiveDate = date(result.effectiveDate)
        if let line = result.line { message.line = self.line(line) }
        if let credit = result.credit { message.credit = self.credit(credit, context, asOf: nil) }
        message.currency = context.currency.code
        return message
    }

    static func refundOutcome(_ result: RefundOutcomeResult, _ context: Context) -> Creditd_V1_RecordRefundOutcomeResponse {
        var message = Creditd_V1_RecordRefundOutcomeResponse()
        message.ignored = result.ignored
        message.state = creditState(result.state)
        message.remainingMinor = result.remainingMinor
        message.refundedMinor = result.refundedMinor
        var credit = credit(result.credit.credit, context, asOf: nil)
        credit.overdue = result.credit.overdue
        credit.refundOverdue = result.credit.refundOverdue
        message.credit = credit
        return message
    }

    // MARK: the whole book (Q1, E1-E2, O5)

    /// The subscription as an event gives it (O3 without credits and invoices).
    static func subscription(_ view: SubscriptionView) -> Creditd_V1_Subscription {
        var message = Creditd_V1_Subscription()
        message.subscriptionID = view.id
        message.customer = view.customer
        message.plan = view.plan
        message.status = Creditd_V1_SubscriptionStatus(rawValue: Int(view.status.rawValue)) ?? .unspecified
        message.seats = view.seats
        message.unitPriceMinor = view.unitPriceMinor
        message.currency = view.currency.code
        message.interval = Creditd_V1_BillingInterval(rawValue: Int(view.interval.rawValue)) ?? .unspecified
        message.anchorDay = Int32(view.schedule.anchorDay)
        message.anchorMonth = Int32(view.schedule.anchorMonth)
        message.timeZone = view.timeZone.identifier
        message.refundPolicy = Creditd_V1_RefundPolicy(rawValue: Int(view.refundPolicy.rawValue)) ?? .unspecified
        message.startDate = date(view.startDate)
        message.currentPeriod = period(view.period)
        message.nextBillingDate = date(view.nextBillingDate)
        message.scheduledSeats = view.scheduledSeats ?? 0
        return message
    }
}
