import CreditDomain
// The events section of snapshot format version 2 (E3), read only: version 3 is tagged.
//
//     firstSeq       varint, the oldest kept seq
//     count          varint; the events have seqs firstSeq, firstSeq + 1, …
//     per event      type (byte), recordedAt, at (instants), date, subscriptionId, customer (str),
//                    payload tag (byte) and payload
//
// Instants and dates are absolute (base zero); zone and currency ids go to the section's tables.
// A payload's subscription is the O3 view without its id and customer, which are the event's.

extension PositionalDecoder {
    private static let minimumEventBytes = 9

    /// The events section.
    mutating func events() throws(LedgerCodecError) -> EventFeed {
        let firstStart = reader.offset
        let firstSeq = try reader.varint("first event seq")
        guard firstSeq >= 1 else { throw reader.failure(.invalidValue, "first event seq", at: firstStart) }
        let count = try reader.count("event count", minimumBytes: PositionalDecoder.minimumEventBytes)
        guard firstSeq <= UInt64.max - UInt64(count) else { throw reader.failure(.invalidValue, "event count") }
        var events: [LedgerEvent] = []
        events.reserveCapacity(count)
        for index in 0..<count {
            do throws(LedgerCodecError) {
                events.append(try event(seq: firstSeq + UInt64(index)))
            } catch {
                throw error.within("event \(firstSeq + UInt64(index))")
            }
        }
        guard reader.remaining == 0 else { throw reader.failure(.trailingBytes, "end of events") }
        return EventFeed(firstSeq: firstSeq, events: events)
    }

    private mutating func event(seq: UInt64) throws(LedgerCodecError) -> LedgerEvent {
        let base = CodecBase.zero
        let type = try enumValue("event type", EventType.self)
        let recordedAt = try instant("event recordedAt", base)
        let at = try instant("event at", base)
        let date = try date("event date", base)
        let subscriptionId = try reader.string("event subscriptionId")
        let customer = try reader.string("event customer")
        let tagStart = reader.offset
        let payload: EventPayload
        switch try reader.byte("event payload tag") {
        case CodecTag.payloadSubscription:
            payload = .subscription(try view(id: subscriptionId, customer: customer))
        case CodecTag.payloadSeatChange:
            let view = try view(id: subscriptionId, customer: customer)
            let responseStart = reader.offset
            guard case .seatsChanged(let change) = try commandResponse() else {
                throw reader.failure(.invalidValue, "event seat change", at: responseStart)
            }
            payload = .seatChange(view, change)
        case CodecTag.payloadCancel:
            let view = try view(id: subscriptionId, customer: customer)
            payload = .cancel(view, try cancellation(base))
        case CodecTag.payloadInvoice:
            payload = .invoice(try invoice(base))
        case CodecTag.payloadCreditState:
            let state = try enumValue("event credit state", CreditState.self)
            let change = CreditStateChange(state: state, at: try instant("event credit instant", base))
            payload = .creditState(change, try credit(base, previousSerial: 0, explanation: nil))
        default:
            throw reader.failure(.invalidValue, "event payload tag", at: tagStart)
        }
        return LedgerEvent(seq: seq, type: type, at: at, date: date, subscriptionId: subscriptionId, customer: customer,
                           recordedAt: recordedAt, payload: payload)
    }

    private mutating func view(id: String, customer: String) throws(LedgerCodecError) -> SubscriptionView {
        let base = CodecBase.zero
        let plan = try reader.string("view plan")
        let status = try enumValue("view status", SubscriptionStatus.self)
        let policy = try enumValue("view refundPolicy", RefundPolicy.self)
        let interval = try enumValue("view interval", BillingInterval.self)
        let scheduleStart = reader.offset
        let anchorMonth = Int8(bitPattern: try reader.byte("view anchorMonth"))
        let anchorDay = Int8(bitPattern: try reader.byte("view anchorDay"))
        let monthValid = interval == .monthly ? anchorMonth == 0 : (1...12).contains(anchorMonth)
        guard monthValid, (1...31).contains(anchorDay) else {
            throw reader.failure(.invalidValue, "view billing anchor", at: scheduleStart)
        }
        let zone = zones[try reader.index("view zone index", below: zones.count)]
        let currency = currencies[try reader.index("view currency index", below: currencies.count)]
        let seats = try reader.signed("view seats")
        let unitPriceMinor = try reader.signed("view unitPriceMinor")
        let startDate = try date("view startDate", base)
        let period = BillingPeriod(start: try date("view period start", base), end: try date("view period end", base),
                                   chargedMinor: try reader.signed("view period chargedMinor"),
                                   chargedSeats: try reader.signed("view period chargedSeats"))
        let scheduled = try reader.signed("view scheduledSeats")
        return SubscriptionView(id: id, customer: customer, plan: plan, status: status, seats: seats,
                                unitPriceMinor: unitPriceMinor, currency: currency,
                                schedule: BillingSchedule(interval: interval, storedAnchorMonth: anchorMonth, storedAnchorDay: anchorDay),
                                timeZone: zone, refundPolicy: policy, startDate: startDate, period: period,
                                scheduledSeats: scheduled == 0 ? nil : scheduled)
    }
}
