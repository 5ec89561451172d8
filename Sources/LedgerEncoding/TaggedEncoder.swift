import ProtoWire
import CreditDomain

/// Writes one part of a tagged ledger (format version 3, see Overview.swift): records as
/// length-delimited fields, then the zone and currency tables they refer to (collected on the
/// way, so a part is written in one pass). Parts are independent, so they are written at once.
struct TaggedEncoder: ~Copyable {
    var out: ByteWriter
    private var zones: [String] = []
    private var zoneIndex: [String: Int] = [:]
    private var lastZone: (identifier: String, index: Int)?
    private var currencies: [Currency] = []
    private var lastCurrency: (currency: Currency, index: Int)?

    init(capacity: Int) {
        out = ByteWriter(capacity: capacity)
    }

    /// Encodes into `out`, which may be a reused buffer (`ByteWriter(reusing:)`).
    init(writingInto out: consuming ByteWriter) {
        self.out = out
    }

    /// The finished part, tables last; the caller deallocates it.
    consuming func finish() -> UnsafeMutableBufferPointer<UInt8> {
        finishWriter().take()
    }

    /// The finished part, tables last, still in its writer (to take its buffer for reuse).
    consuming func finishWriter() -> ByteWriter {
        if !zones.isEmpty || !currencies.isEmpty {
            let tables = out.beginMessage(TaggedField.Part.tables, reserve: 2)
            for zone in zones { out.stringField(TaggedField.Tables.zone, zone) }
            for currency in currencies { out.stringField(TaggedField.Tables.currency, currency.code) }
            out.endMessage(tables)
        }
        return out
    }

    // MARK: tables

    mutating func index(ofZone zone: TimeZoneRules) -> UInt64 {
        // Subscriptions of one zone share the identifier's storage, so this compare is cheap.
        if let last = lastZone, last.identifier == zone.identifier { return UInt64(last.index) }
        let index: Int
        if let known = zoneIndex[zone.identifier] {
            index = known
        } else {
            index = zones.count
            zones.append(zone.identifier)
            zoneIndex[zone.identifier] = index
        }
        lastZone = (zone.identifier, index)
        return UInt64(index)
    }

    mutating func index(ofCurrency currency: Currency) -> UInt64 {
        if let last = lastCurrency, last.currency == currency { return UInt64(last.index) }
        let index: Int
        if let known = currencies.firstIndex(of: currency) {
            index = known
        } else {
            index = currencies.count
            currencies.append(currency)
        }
        lastCurrency = (currency, index)
        return UInt64(index)
    }

    // MARK: small values

    /// An instant relative to `base` in the coarsest exact unit: a varint whose low two bits say
    /// minutes (2), seconds (1) or nanoseconds (0) above a zigzag count; a delta too large for
    /// that is written as a fixed64 of nanoseconds instead. Always written (never a zero varint).
    @inline(__always)
    mutating func instantField(_ field: UInt32, _ value: Instant, _ base: CodecBase) {
        let delta = value.nanosecondsSinceEpoch &- base.instant
        if delta % CodecBase.nanosecondsPerMinute == 0 {
            out.uintField(field, zigzag(delta / CodecBase.nanosecondsPerMinute) << 2 | 2)
        } else if delta % Instant.nanosecondsPerSecond == 0 {
            out.uintField(field, zigzag(delta / Instant.nanosecondsPerSecond) << 2 | 1)
        } else if delta >> 61 == 0 || delta >> 61 == -1 {
            out.uintField(field, zigzag(delta) << 2)
        } else {
            out.tag(field, .fixed64)
            out.uint64LE(UInt64(bitPattern: delta))
        }
    }

    @inline(__always)
    private func zigzag(_ value: Int64) -> UInt64 {
        UInt64(bitPattern: (value << 1) ^ (value >> 63))
    }

    /// A civil date as signed days from the base's day.
    @inline(__always)
    mutating func dateField(_ field: UInt32, _ value: CivilDate, _ base: CodecBase) {
        out.sintField(field, Int64(value.epochDay &- base.day))
    }

    // MARK: records

    mutating func subscriptionRecord(_ subscription: Subscription) {
        let mark = out.beginMessage(TaggedField.Part.record, reserve: 2)
        encode(subscription)
        out.endMessage(mark)
    }

    mutating func encode(_ subscription: Subscription) {
        typealias F = TaggedField.Subscription
        let base = CodecBase(subscription.createdAt, subscription.startDate)
        out.stringField(F.id, subscription.id)
        out.stringField(F.customer, subscription.customer)
        out.stringField(F.plan, subscription.plan)
        instantField(F.createdAt, subscription.createdAt, .zero)
        dateField(F.startDate, subscription.startDate, .zero)
        // Indexes are written even when zero: the tables are the part's.
        out.tag(F.zone, .varint)
        out.varint(index(ofZone: subscription.timeZone))
        out.tag(F.currency, .varint)
        out.varint(index(ofCurrency: subscription.currency))
        out.enumField(F.status, subscription.status)
        out.enumField(F.refundPolicy, subscription.refundPolicy)
        out.enumField(F.interval, subscription.schedule.interval)
        out.uintField(F.anchorMonth, UInt64(UInt8(bitPattern: subscription.schedule.anchorMonth)))
        out.uintField(F.anchorDay, UInt64(UInt8(bitPattern: subscription.schedule.anchorDay)))
        out.sintField(F.unitPriceMinor, subscription.unitPriceMinor)
        out.sintField(F.seats, subscription.seats)
        dateField(F.periodStart, subscription.period.start, base)
        dateField(F.periodEnd, subscription.period.end, base)
        out.sintField(F.periodChargedMinor, subscription.period.chargedMinor)
        for credit in subscription.credits {
            let mark = out.beginMessage(F.credit, reserve: 1)
            encode(credit, base)
            out.endMessage(mark)
        }
        out.sintField(F.periodChargedSeats, subscription.period.chargedSeats)
        out.sintField(F.purchaseSeats, Int64(subscription.storedPurchaseSeats))
        out.uintField(F.purchaseInvoiceSerial, subscription.purchaseInvoiceSerial)
        out.int128Fields(low: F.cumulativeLow, high: F.cumulativeHigh,
                         (Int128(subscription.cumulativeHigh) << 64) | Int128(subscription.cumulativeLow))
        out.sintField(F.scheduledSeats, subscription.storedScheduledSeats)
        out.sintField(F.unbilledChargesMinor, subscription.unbilledChargesMinor)
        out.uintField(F.lastEventSeq, subscription.lastEventSeq)
        // Instants are never zero varints, so presence is absence of the field.
        if let due = subscription.nextDue { instantField(F.nextDue, due, base) }
        for block in subscription.blocks {
            let mark = out.beginMessage(F.block)
            out.sintField(TaggedField.SeatBlock.seats, block.seats)
            instantField(TaggedField.SeatBlock.windowStart, block.windowStart, base)
            dateField(TaggedField.SeatBlock.startDate, block.startDate, base)
            out.endMessage(mark)
        }
        for line in subscription.periodLines {
            let mark = out.beginMessage(F.periodLine)
            encode(line, base)
            out.endMessage(mark)
        }
        for invoice in subscription.laterInvoices {
            let mark = out.beginMessage(F.laterInvoice)
            encode(invoice, base)
            out.endMessage(mark)
        }
        if case .recorded(let record) = subscription.cancellationSlot {
            let mark = out.beginMessage(F.cancellation, reserve: 2)
            encode(record, base)
            out.endMessage(mark)
        }
    }

    mutating func encode(_ explanation: LineExplanation, _ base: CodecBase) {
        typealias F = TaggedField.Explanation
        out.sintField(F.chargedMinor, explanation.chargedMinor)
        out.int128Fields(low: F.cumulativeLow, high: F.cumulativeHigh, explanation.cumulativeNumerator)
        out.sintField(F.chargedSeats, Int64(explanation.storedChargedSeats))
        out.sintField(F.seatsDelta, Int64(explanation.storedSeatsDelta))
        out.sintField(F.periodDays, Int64(explanation.storedPeriodDays))
        out.sintField(F.unusedDays, Int64(explanation.storedUnusedDays))
        for portion in explanation.blocks {
            let mark = out.beginMessage(F.portion)
            out.sintField(TaggedField.Portion.seats, portion.seats)
            dateField(TaggedField.Portion.startDate, portion.startDate, base)
            out.sintField(TaggedField.Portion.unusedDays, Int64(portion.unusedDays))
            out.endMessage(mark)
        }
    }

    mutating func encode(_ line: LedgerLine, _ base: CodecBase) {
        typealias F = TaggedField.Line
        out.sintField(F.amountMinor, line.amountMinor)
        dateField(F.effectiveDate, line.effectiveDate, base)
        out.uintField(F.eventSeq, line.eventSeq)
        let mark = out.beginMessage(F.explanation)
        encode(line.explanation, base)
        out.endMessage(mark)
    }

    mutating func encode(_ credit: Credit, _ base: CodecBase) {
        typealias F = TaggedField.Credit
        out.uintField(F.serial, credit.serial)
        instantField(F.createdAt, credit.createdAt, base)
        dateField(F.effectiveDate, credit.effectiveDate, base)
        out.sintField(F.amountMinor, credit.amountMinor)
        out.sintField(F.remainingMinor, credit.remainingMinor)
        out.sintField(F.consumedMinor, credit.consumedMinor)
        out.uintField(F.eventSeq, UInt64(credit.storedEventSeq))
        out.uintField(F.dueDateOffset, UInt64(credit.dueDateOffset))
        out.uintField(F.refundExpectedByOffset, UInt64(credit.refundExpectedByOffset))
        out.enumField(F.source, credit.source)
        out.enumField(F.state, credit.state)
        out.boolField(F.hadRefundFailure, credit.hadRefundFailure)
        let mark = out.beginMessage(F.explanation)
        encode(credit.explanation, base)
        out.endMessage(mark)
        // The history after its first entry (`pending` at `createdAt`).
        let history = credit.laterHistory
        let inline = Int(history.count)
        if inline > 0 { historyEntry(history.states.0, history.instants.0, base) }
        if inline > 1 { historyEntry(history.states.1, history.instants.1, base) }
        if inline > 2 { historyEntry(history.states.2, history.instants.2, base) }
        for change in history.overflow {
            historyEntry(UInt8(truncatingIfNeeded: change.state.rawValue), change.at.nanosecondsSinceEpoch, base)
        }
    }

    @inline(__always)
    private mutating func historyEntry(_ state: UInt8, _ nanoseconds: Int64, _ base: CodecBase) {
        let mark = out.beginMessage(TaggedField.Credit.history)
        out.uintField(TaggedField.HistoryEntry.state, UInt64(state))
        instantField(TaggedField.HistoryEntry.at, Instant(nanosecondsSinceEpoch: nanoseconds), base)
        out.endMessage(mark)
    }

    mutating func encode(_ invoice: Invoice, _ base: CodecBase) {
        typealias F = TaggedField.Invoice
        out.uintField(F.serial, invoice.serial)
        out.enumField(F.kind, invoice.kind)
        out.boolField(F.settled, invoice.settled)
        instantField(F.issuedAt, invoice.issuedAt, base)
        dateField(F.issuedDate, invoice.issuedDate, base)
        dateField(F.periodStart, invoice.periodStart, base)
        dateField(F.periodEnd, invoice.periodEnd, base)
        if let settlesOn = invoice.settlesOn {
            // Present even when equal to the base: absence means none.
            out.tag(F.settlesOn, .varint)
            out.signed(Int64(settlesOn.epochDay &- base.day))
        }
        for line in invoice.lines {
            let mark = out.beginMessage(F.line)
            out.enumField(TaggedField.InvoiceLine.kind, line.kind)
            out.sintField(TaggedField.InvoiceLine.amountMinor, line.amountMinor)
            out.uintField(TaggedField.InvoiceLine.creditSerial, line.creditSerial)
            dateField(TaggedField.InvoiceLine.effectiveDate, line.effectiveDate, base)
            out.sintField(TaggedField.InvoiceLine.seats, line.seats)
            out.endMessage(mark)
        }
    }

    mutating func encode(_ record: CancellationRecord, _ base: CodecBase) {
        typealias F = TaggedField.Cancellation
        out.enumField(F.mode, record.mode)
        out.boolField(F.alreadyCancelled, record.alreadyCancelled)
        dateField(F.effectiveDate, record.effectiveDate, base)
        instantField(F.requestedAt, record.requestedAt, base)
        instantField(F.entitlementEndsAt, record.entitlementEndsAt, base)
        if let line = record.line {
            let mark = out.beginMessage(F.line)
            encode(line, base)
            out.endMessage(mark)
        }
        if let credit = record.credit {
            let mark = out.beginMessage(F.credit)
            encode(credit, base)
            out.endMessage(mark)
        }
        if let invoice = record.finalInvoice {
            let mark = out.beginMessage(F.finalInvoice)
            encode(invoice, base)
            out.endMessage(mark)
        }
    }

    mutating func keyRecord(_ scope: IdempotencyTable.Scope, _ entry: IdempotencyTable.Stored) {
        typealias F = TaggedField.KeyEntry
        let record = out.beginMessage(TaggedField.Part.record, reserve: 2)
        out.uintField(F.callerUID, UInt64(scope.callerUID))
        out.enumField(F.operation, scope.operation)
        out.stringField(F.key, scope.key.value)
        instantField(F.firstUsedAt, entry.firstUsedAt, .zero)
        switch entry.fingerprint {
        case .cancel(let subscriptionId, let mode):
            let mark = out.beginMessage(F.cancelFingerprint)
            out.stringField(TaggedField.Fingerprint.subscriptionId, subscriptionId.value)
            out.sintField(TaggedField.Fingerprint.mode, Int64(mode))
            out.endMessage(mark)
        case .changeSeats(let subscriptionId, let newSeats, let timing):
            let mark = out.beginMessage(F.changeSeatsFingerprint)
            out.stringField(TaggedField.Fingerprint.subscriptionId, subscriptionId.value)
            out.sintField(TaggedField.Fingerprint.newSeats, newSeats)
            out.sintField(TaggedField.Fingerprint.timing, Int64(timing))
            out.endMessage(mark)
        }
        switch entry.outcome {
        case .response(let response):
            let mark = out.beginMessage(F.response, reserve: 2)
            encode(response)
            out.endMessage(mark)
        case .error(let error):
            let mark = out.beginMessage(F.error)
            out.uintField(TaggedField.Error.reason, UInt64(error.reason.codecNumber))
            out.stringField(TaggedField.Error.message, error.message)
            out.endMessage(mark)
        }
        out.endMessage(record)
    }

    /// A command response, as one of its fields (a oneof).
    mutating func encode(_ response: CommandResponse) {
        typealias F = TaggedField.Response
        let base = CodecBase.zero
        switch response {
        case .created(let created):
            let mark = out.beginMessage(F.created, reserve: 2)
            subscriptionAndInvoice(created.subscription, created.purchaseInvoice)
            out.endMessage(mark)
        case .cancelled(let record):
            let mark = out.beginMessage(F.cancelled, reserve: 2)
            encode(record, base)
            out.endMessage(mark)
        case .resumed(let subscription):
            let mark = out.beginMessage(F.resumed, reserve: 2)
            encode(subscription)
            out.endMessage(mark)
        case .seatsChanged(let change):
            let mark = out.beginMessage(F.seatsChanged, reserve: 2)
            encode(change)
            out.endMessage(mark)
        case .refundOutcomeRecorded(let result):
            let mark = out.beginMessage(F.refundOutcomeRecorded, reserve: 2)
            out.boolField(TaggedField.RefundOutcome.ignored, result.ignored)
            out.boolField(TaggedField.RefundOutcome.overdue, result.credit.overdue)
            out.boolField(TaggedField.RefundOutcome.refundOverdue, result.credit.refundOverdue)
            let credit = out.beginMessage(TaggedField.RefundOutcome.credit)
            encode(result.credit.credit, base)
            out.endMessage(credit)
            out.endMessage(mark)
        case .imported(let imported):
            let mark = out.beginMessage(F.imported, reserve: 2)
            subscriptionAndInvoice(imported.subscription, imported.openingInvoice)
            out.endMessage(mark)
        }
    }

    private mutating func subscriptionAndInvoice(_ subscription: Subscription, _ invoice: Invoice) {
        let first = out.beginMessage(TaggedField.Created.subscription, reserve: 2)
        encode(subscription)
        out.endMessage(first)
        let second = out.beginMessage(TaggedField.Created.invoice)
        encode(invoice, .zero)
        out.endMessage(second)
    }

    mutating func encode(_ change: SeatChangeResult) {
        typealias F = TaggedField.SeatChange
        let base = CodecBase.zero
        out.enumField(F.outcome, change.outcome)
        out.sintField(F.previousSeats, change.previousSeats)
        out.sintField(F.newSeats, change.newSeats)
        out.sintField(F.seats, change.seats)
        dateField(F.effectiveDate, change.effectiveDate, base)
        if let line = change.line {
            let mark = out.beginMessage(F.line)
            encode(line, base)
            out.endMessage(mark)
        }
        if let credit = change.credit {
            let mark = out.beginMessage(F.credit)
            encode(credit, base)
            out.endMessage(mark)
        }
    }

    // MARK: events

    /// One event; its seq is its position (the parts hold consecutive seqs from the header's
    /// first). Instants and dates are absolute.
    mutating func eventRecord(_ event: LedgerEvent) {
        typealias F = TaggedField.Event
        let base = CodecBase.zero
        let record = out.beginMessage(TaggedField.Part.record, reserve: 2)
        out.enumField(F.type, event.type)
        instantField(F.recordedAt, event.recordedAt, base)
        instantField(F.at, event.at, base)
        dateField(F.date, event.date, base)
        out.stringField(F.subscriptionId, event.subscriptionId)
        out.stringField(F.customer, event.customer)
        switch event.payload {
        case .subscription(let view):
            let mark = out.beginMessage(F.subscription)
            encode(view)
            out.endMessage(mark)
        case .seatChange(let view, let change):
            let mark = out.beginMessage(F.seatChange, reserve: 2)
            let first = out.beginMessage(TaggedField.ViewAnd.view)
            encode(view)
            out.endMessage(first)
            let second = out.beginMessage(TaggedField.ViewAnd.detail, reserve: 2)
            encode(change)
            out.endMessage(second)
            out.endMessage(mark)
        case .cancel(let view, let record):
            let mark = out.beginMessage(F.cancel, reserve: 2)
            let first = out.beginMessage(TaggedField.ViewAnd.view)
            encode(view)
            out.endMessage(first)
            let second = out.beginMessage(TaggedField.ViewAnd.detail, reserve: 2)
            encode(record, base)
            out.endMessage(second)
            out.endMessage(mark)
        case .invoice(let invoice):
            let mark = out.beginMessage(F.invoice)
            encode(invoice, base)
            out.endMessage(mark)
        case .creditState(let change, let credit):
            let mark = out.beginMessage(F.creditState, reserve: 2)
            out.enumField(TaggedField.CreditStateEvent.state, change.state)
            instantField(TaggedField.CreditStateEvent.at, change.at, base)
            let inner = out.beginMessage(TaggedField.CreditStateEvent.credit)
            encode(credit, base)
            out.endMessage(inner)
            out.endMessage(mark)
        }
        out.endMessage(record)
    }

    /// The O3 view without its id and customer, which are the event's.
    private mutating func encode(_ view: SubscriptionView) {
        typealias F = TaggedField.View
        let base = CodecBase.zero
        out.stringField(F.plan, view.plan)
        out.enumField(F.status, view.status)
        out.enumField(F.refundPolicy, view.refundPolicy)
        out.enumField(F.interval, view.schedule.interval)
        out.uintField(F.anchorMonth, UInt64(UInt8(bitPattern: view.schedule.anchorMonth)))
        out.uintField(F.anchorDay, UInt64(UInt8(bitPattern: view.schedule.anchorDay)))
        out.tag(F.zone, .varint)
        out.varint(index(ofZone: view.timeZone))
        out.tag(F.currency, .varint)
        out.varint(index(ofCurrency: view.currency))
        out.sintField(F.seats, view.seats)
        out.sintField(F.unitPriceMinor, view.unitPriceMinor)
        dateField(F.startDate, view.startDate, base)
        dateField(F.periodStart, view.period.start, base)
        dateField(F.periodEnd, view.period.end, base)
        out.sintField(F.periodChargedMinor, view.period.chargedMinor)
        out.sintField(F.periodChargedSeats, view.period.chargedSeats)
        out.sintField(F.scheduledSeats, view.scheduledSeats ?? 0)
    }
}
