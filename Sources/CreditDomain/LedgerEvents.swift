// Recording events (E1, E2) and keeping the book indexes current: each change of one
// subscription is compared with marks taken just before it.

/// An event of the command being handled, before it gets its seq. Credit events take the
/// credit as it stands after the whole command (E2), so they are completed at its end.
enum PendingEvent: Sendable {
    case ready(type: EventType, at: Instant, date: CivilDate, slot: Int32, payload: EventPayload)
    case credit(slot: Int32, serial: UInt64, change: CreditStateChange)
}

/// What can change in a subscription, taken just before a change.
struct SubscriptionMarks {
    let status: SubscriptionStatus
    let periodStart: CivilDate
    let scheduledSeats: Int64?
    let invoiceCount: Int
    let lastInvoiceSettled: Bool
    /// The first credit not in a terminal state; the ones before it cannot change.
    let firstOpen: Int
    /// The credits before the command (the list shares its bytes until the command writes).
    let credits: CreditList

    /// Takes the marks from the subscription where it is stored (stored fields only, see
    /// `Ledger.readSlot`).
    init(_ subscription: UnsafePointer<Subscription>) {
        status = subscription.pointee.status
        periodStart = subscription.pointee.period.start
        scheduledSeats = Subscription.scheduledSeats(stored: subscription.pointee.storedScheduledSeats)
        invoiceCount = subscription.pointee.laterInvoices.count
        lastInvoiceSettled = subscription.pointee.laterInvoices.last?.settled ?? true
        credits = subscription.pointee.credits
        var first = credits.count
        credits.scanStates { position, state in
            guard [.consumed, .refunded, .voided].contains(state) else {
                first = position
                return false
            }
            return true
        }
        firstOpen = first
    }
}

extension Credit {
    /// The number of history entries (L7), without building the list.
    var historyCount: Int { 1 + Int(laterHistory.count) + laterHistory.overflow.count }
}

extension Ledger {
    /// Runs the transitions of one due date of `slot` if due by `now` (T6), recording their
    /// events dated at 00:00 local on that date. Returns how many transitions ran.
    mutating func stepSlot(_ slot: Int, to now: Instant) -> Int {
        let marks = readSlot(slot) { SubscriptionMarks($0) }
        guard let step = advanceSlotOneDate(slot, to: now) else { return 0 }
        recordChanges(slot: slot, subscription: slotValue(slot), marks: marks, timeDriven: (step.instant, step.date), now: now)
        return step.count
    }

    /// Records the events of a committed request on `slot` (the subscription is already
    /// changed), then those its change implies (invoices, credit entries), and updates the indexes.
    mutating func recordRequest(slot: Int, marks: SubscriptionMarks, response: CommandResponse, now: Instant) {
        let subscription = slotValue(slot)
        let date = subscription.timeZone.civilDate(of: now)
        func record(_ type: EventType, _ payload: EventPayload) {
            pendingEvents.append(.ready(type: type, at: now, date: date, slot: Int32(slot), payload: payload))
        }
        switch response {
        case .cancelled(let cancellation) where !cancellation.alreadyCancelled:
            record(.cancelRecorded, .cancel(SubscriptionView(subscription), cancellation))
        case .seatsChanged(let change):
            switch change.outcome {
            case .credit, .charge, .zeroLine:
                record(.seatsChanged, .seatChange(SubscriptionView(subscription), change))
            case .scheduled where subscription.scheduledSeats != marks.scheduledSeats:
                record(.seatChangeScheduled, .seatChange(SubscriptionView(subscription), change))
            default:
                break
            }
        case .resumed where marks.status == .cancelPending && subscription.status == .active:
            record(.subscriptionResumed, .subscription(SubscriptionView(subscription)))
        default:
            break
        }
        recordChanges(slot: slot, subscription: subscription, marks: marks, timeDriven: nil, now: now)
    }

    /// A new subscription (created or imported): its events and index entries.
    mutating func recordOpened(slot: Int, imported: Bool, now: Instant) {
        let subscription = slotValue(slot)
        let date = subscription.timeZone.civilDate(of: now)
        let invoice = imported ? subscription.openingInvoice! : subscription.purchaseInvoice
        pendingEvents.append(.ready(type: imported ? .subscriptionImported : .subscriptionCreated, at: now, date: date,
                                    slot: Int32(slot), payload: .subscription(SubscriptionView(subscription))))
        pendingEvents.append(.ready(type: .invoiceIssued, at: invoice.issuedAt, date: invoice.issuedDate,
                                    slot: Int32(slot), payload: .invoice(invoice)))
    }

    /// Compares `subscription` (as `slot` now holds it) with `marks`: records the implied
    /// events and updates the indexes.
    private mutating func recordChanges(slot: Int, subscription: Subscription, marks: SubscriptionMarks,
                                        timeDriven: (instant: Instant, date: CivilDate)?, now: Instant) {
        let slot32 = Int32(slot)
        if marks.status != subscription.status { book.statusChanged(subscription, from: marks.status) }
        let zone = subscription.timeZone
        if let (instant, date) = timeDriven {
            let view = SubscriptionView(subscription)
            if subscription.period.start != marks.periodStart {
                if marks.scheduledSeats != nil {
                    pendingEvents.append(.ready(type: .scheduledSeatsApplied, at: instant, date: date, slot: slot32, payload: .subscription(view)))
                }
                pendingEvents.append(.ready(type: .periodRenewed, at: instant, date: date, slot: slot32, payload: .subscription(view)))
            }
            if marks.status == .cancelPending, subscription.status == .ended {
                pendingEvents.append(.ready(type: .subscriptionEnded, at: instant, date: date, slot: slot32, payload: .subscription(view)))
            }
        }
        let invoices = subscription.laterInvoices
        if marks.invoiceCount > 0, marks.invoiceCount <= invoices.count, !marks.lastInvoiceSettled,
           invoices[marks.invoiceCount - 1].settled {
            let at = timeDriven?.instant ?? now
            pendingEvents.append(.ready(type: .invoiceSettled, at: at, date: zone.civilDate(of: at), slot: slot32,
                                        payload: .invoice(invoices[marks.invoiceCount - 1])))
        }
        if marks.invoiceCount < invoices.count {
            for invoice in invoices[marks.invoiceCount...] {
                pendingEvents.append(.ready(type: .invoiceIssued, at: invoice.issuedAt, date: invoice.issuedDate,
                                            slot: slot32, payload: .invoice(invoice)))
                if invoice.kind == .closing {   // C6: settled at issue
                    pendingEvents.append(.ready(type: .invoiceSettled, at: invoice.issuedAt, date: invoice.issuedDate,
                                                slot: slot32, payload: .invoice(invoice)))
                }
            }
        }
        let credits = subscription.credits
        if marks.firstOpen < credits.count {
            // Only the credits the command changed or added: an unchanged one has no new
            // history and nothing for the book.
            credits.forEachPositionDiffering(from: marks.credits, startingAt: marks.firstOpen) { index in
                let credit = credits[index]
                var known = 0
                if index < marks.credits.count {
                    let old = marks.credits[index]
                    known = old.historyCount
                    if old != credit { book.creditChanged(from: old, to: credit, of: subscription) }
                } else {
                    book.addCredit(credit, of: subscription, slot: slot32)
                }
                if credit.historyCount > known {
                    for change in credit.history.dropFirst(known) {
                        pendingEvents.append(.credit(slot: slot32, serial: credit.serial, change: change))
                    }
                }
            }
        }
    }

    /// Gives the command's events their seqs, in order, and prunes the feed (E5).
    mutating func commitEvents(now: Instant) {
        guard !pendingEvents.isEmpty else { return }
        // The buffer goes back afterwards, emptied: a new one for every command was two
        // allocations of a ChangeSeats (its first event, then its second). `readerCopy` leaves
        // it out, so it stays unshared.
        var pending: [PendingEvent] = []
        swap(&pending, &pendingEvents)
        defer {
            assert(pendingEvents.isEmpty, "an event was queued while the pending ones were committed")
            pending.removeAll(keepingCapacity: true)
            pendingEvents = pending
        }
        for item in pending {
            // Read before the closures: a closure that read `feed` would capture the ledger,
            // and the compiler copied the whole ledger (every field retained and released) for
            // each event to let it.
            if feed.isAdopting {
                // Recovery, with the chunk's events already in an archived block.
                feed.skipAdopted(recordedAt: now)
                continue
            }
            let seq = feed.nextSeq
            let event: LedgerEvent
            switch item {
            case .ready(let type, let at, let date, let slot, let payload):
                event = readSlot(Int(slot)) { subscription in
                    LedgerEvent(seq: seq, type: type, at: at, date: date, subscriptionId: subscription.pointee.id,
                                customer: subscription.pointee.customer, recordedAt: now, payload: payload)
                }
            case .credit(let slot, let serial, let change):
                event = readSlot(Int(slot)) { subscription in
                    let credits = subscription.pointee.credits
                    let credit = credits[credits.position(ofSerial: serial)!]
                    return LedgerEvent(seq: seq, type: .creditStateChanged, at: change.at,
                                       date: subscription.pointee.timeZone.civilDate(of: change.at),
                                       subscriptionId: subscription.pointee.id, customer: subscription.pointee.customer,
                                       recordedAt: now, payload: .creditState(change, credit))
                }
            }
            feed.append(event)
        }
        feed.prune(now: now, retention: eventRetention)
    }
}
