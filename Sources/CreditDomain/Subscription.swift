/// Serial numbers for credit and invoice ids, shared by the whole ledger.
public struct SerialCounters: Sendable, Hashable {
    public var nextCreditSerial: UInt64
    public var nextInvoiceSerial: UInt64

    public init(nextCreditSerial: UInt64 = 1, nextInvoiceSerial: UInt64 = 1) {
        self.nextCreditSerial = nextCreditSerial
        self.nextInvoiceSerial = nextInvoiceSerial
    }

    mutating func takeCredit() -> UInt64 {
        defer { nextCreditSerial += 1 }
        return nextCreditSerial
    }

    mutating func takeInvoice() -> UInt64 {
        defer { nextInvoiceSerial += 1 }
        return nextInvoiceSerial
    }
}

/// The state of one subscription (O3) with its period, ledger, credits and invoices.
///
/// Every method either throws before touching `self` or succeeds, so a failed request leaves
/// the value unchanged. Dry runs call the same methods on a copy.
public struct Subscription: Sendable, Hashable {
    public let id: String
    public let customer: String
    public let plan: String
    public let unitPriceMinor: Int64
    public let createdAt: Instant
    public let timeZone: TimeZoneRules
    /// Seats in force; 0 after an effective cancel.
    public private(set) var seats: Int64
    /// The current period (after an effective cancel: the last one).
    public private(set) var period: BillingPeriod
    // A_n's numerator over S × P (P4), split to keep 8-byte alignment.
    package var cumulativeHigh: Int64
    package var cumulativeLow: UInt64
    package var storedScheduledSeats: Int64
    /// Positive lines of the current period not on an invoice yet (P3).
    public private(set) var unbilledChargesMinor: Int64
    /// Seat blocks (W1), newest last; kept only under a windowed policy.
    public private(set) var blocks: [SeatBlock]
    /// Charge and zero lines of the current period (credit lines live in `credits`).
    public private(set) var periodLines: [LedgerLine]
    /// In creation order.
    public private(set) var credits: CreditList
    // The purchase invoice is rebuilt from these on demand: every subscription has one, so
    // storing it would cost each of a million subscriptions two allocations.
    package let purchaseInvoiceSerial: UInt64
    /// Invoices after the purchase invoice, in order of issue.
    package var laterInvoices: [Invoice]
    package var cancellationSlot: CancellationSlot
    /// The eventSeq of the last recorded ledger line.
    public private(set) var lastEventSeq: UInt64
    /// When the next time-driven transition falls due (T6), nil when none can.
    public private(set) var nextDue: Instant?
    // Small fields last, so they share the tail of the 8-byte ones.
    public private(set) var status: SubscriptionStatus
    public let currency: Currency
    public let refundPolicy: RefundPolicy
    public let schedule: BillingSchedule
    public let startDate: CivilDate
    package let storedPurchaseSeats: Int32

    /// Every stored field as it is (snapshot decoding); the other initializers derive them.
    package init(id: String, customer: String, plan: String, unitPriceMinor: Int64, createdAt: Instant,
                 timeZone: TimeZoneRules, seats: Int64, period: BillingPeriod, cumulativeHigh: Int64, cumulativeLow: UInt64,
                 storedScheduledSeats: Int64, unbilledChargesMinor: Int64, blocks: [SeatBlock], periodLines: [LedgerLine],
                 credits: CreditList, purchaseInvoiceSerial: UInt64, laterInvoices: [Invoice], cancellationSlot: CancellationSlot,
                 lastEventSeq: UInt64, nextDue: Instant?, status: SubscriptionStatus, currency: Currency,
                 refundPolicy: RefundPolicy, schedule: BillingSchedule, startDate: CivilDate, storedPurchaseSeats: Int32) {
        self.id = id
        self.customer = customer
        self.plan = plan
        self.unitPriceMinor = unitPriceMinor
        self.createdAt = createdAt
        self.timeZone = timeZone
        self.seats = seats
        self.period = period
        self.cumulativeHigh = cumulativeHigh
        self.cumulativeLow = cumulativeLow
        self.storedScheduledSeats = storedScheduledSeats
        self.unbilledChargesMinor = unbilledChargesMinor
        self.blocks = blocks
        self.periodLines = periodLines
        self.credits = credits
        self.purchaseInvoiceSerial = purchaseInvoiceSerial
        self.laterInvoices = laterInvoices
        self.cancellationSlot = cancellationSlot
        self.lastEventSeq = lastEventSeq
        self.nextDue = nextDue
        self.status = status
        self.currency = currency
        self.refundPolicy = refundPolicy
        self.schedule = schedule
        self.startDate = startDate
        self.storedPurchaseSeats = storedPurchaseSeats
    }

    /// Every invoice in order of issue (L11), the purchase invoice first (an import's opening
    /// invoice, O5, is the first of `laterInvoices` instead).
    public var invoices: [Invoice] { isImported ? laterInvoices : [purchaseInvoice] + laterInvoices }

    /// The purchase invoice (O2).
    public var purchaseInvoice: Invoice {
        let purchaseSeats = Int64(storedPurchaseSeats)
        let charge = unitPriceMinor &* purchaseSeats   // checked at creation
        return Invoice(serial: purchaseInvoiceSerial, kind: .purchase, issuedAt: createdAt, issuedDate: startDate,
                       periodStart: startDate, periodEnd: schedule.billingDate(after: startDate),
                       lines: [InvoiceLine(kind: .periodCharge, amountMinor: charge, effectiveDate: startDate, seats: purchaseSeats)],
                       settlesOn: nil, settled: true)
    }

    public var anchorDay: Int { Int(schedule.anchorDay) }
    /// 1–12 for annual plans, 0 for monthly.
    public var anchorMonth: Int { Int(schedule.anchorMonth) }
    /// An `at_renewal` change (S6), nil when none is scheduled.
    public var scheduledSeats: Int64? { Self.scheduledSeats(stored: storedScheduledSeats) }
    /// 0 is stored for none.
    static func scheduledSeats(stored: Int64) -> Int64? { stored == 0 ? nil : stored }
    /// The cancellation record once a cancel is recorded (pending or effective).
    public var cancellation: CancellationRecord? { cancellationSlot.record }
    public var cancelEffectiveDate: CivilDate? { cancellation?.effectiveDate }
    /// `A_n`'s numerator over `S × P`.
    public private(set) var cumulativeNumerator: Int128 {
        get { (Int128(cumulativeHigh) << 64) | Int128(cumulativeLow) }
        set {
            cumulativeHigh = Int64(truncatingIfNeeded: newValue >> 64)
            cumulativeLow = UInt64(truncatingIfNeeded: newValue)
        }
    }
    /// `A_n` of the current period.
    public var cumulativeExact: Rational {
        Rational(cumulativeNumerator, Int128(period.chargedSeats) * Int128(period.days))
    }

    /// The credit with this serial (credits are in serial order).
    public func creditIndex(serial: UInt64) -> Int? {
        credits.position(ofSerial: serial)
    }

    public func credit(id: String) -> Credit? {
        Credit.serial(fromID: id).flatMap(creditIndex(serial:)).map { credits[$0] }
    }

    /// L10 for this subscription as of `instant` (no transition is run).
    public func refundStatus(creditId: String?, asOf instant: Instant) throws(DomainError) -> RefundStatus {
        let date = timeZone.civilDate(of: instant)
        // Decoded once (the list is packed): the totals count every credit, selected or not.
        let all = Array(credits)
        let selected: [Credit]
        if let creditId {
            guard let credit = credit(id: creditId) else { throw DomainError.creditNotFound }
            selected = [credit]
        } else {
            selected = all
        }
        return RefundStatus(subscriptionId: id, asOf: instant, asOfDate: date, currency: currency,
                            credits: selected.map { CreditStatus(credit: $0, asOf: date) },
                            totals: CreditTotals(all))
    }

    private var tracksBlocks: Bool { refundPolicy != .anytime }
    private var denominator: Int128 { Int128(period.chargedSeats) * Int128(period.days) }

    // MARK: creation (O2)

    /// Opens a validated subscription at `now` and issues its purchase invoice.
    static func open(id: String, customer: String, plan: String, seats: Int64, unitPriceMinor: Int64,
                     currency: Currency, interval: BillingInterval, timeZone: TimeZoneRules,
                     refundPolicy: RefundPolicy, at now: Instant,
                     counters: inout SerialCounters) throws(DomainError) -> Subscription {
        let charge = try Checked.multiply(unitPriceMinor, seats)
        let start = timeZone.civilDate(of: now)
        let schedule = BillingSchedule(interval: interval, startDate: start)
        let end = schedule.billingDate(after: start)
        let period = BillingPeriod(start: start, end: end, chargedMinor: charge, chargedSeats: seats)
        let purchaseSerial = counters.takeInvoice()
        var subscription = Subscription(
            id: id, customer: customer, plan: plan, unitPriceMinor: unitPriceMinor, createdAt: now,
            timeZone: timeZone, seats: seats, period: period, cumulativeHigh: 0, cumulativeLow: 0,
            storedScheduledSeats: 0, unbilledChargesMinor: 0,
            blocks: refundPolicy == .anytime ? [] : [SeatBlock(seats: seats, windowStart: now, startDate: start)],
            periodLines: [], credits: [], purchaseInvoiceSerial: purchaseSerial,
            laterInvoices: [], cancellationSlot: .none, lastEventSeq: 0, nextDue: nil,
            status: .active, currency: currency, refundPolicy: refundPolicy, schedule: schedule, startDate: start,
            storedPurchaseSeats: Int32(seats))
        subscription.refreshNextDue()
        return subscription
    }

    // MARK: time-driven transitions (T4, T6, L3, L4, C5, C6)

    /// The civil date of the next time-driven transition, nil when none can happen.
    func nextDueDate() -> CivilDate? {
        // Pending credits are the newest ones (expectedBy never decreases within a period).
        var best = credits.earliestExpectedBy(from: credits.trailingPendingStart)
        switch status {
        case .active, .cancelPending:
            if best == nil || period.end < best! { best = period.end }
        case .cancelled:
            if let invoice = laterInvoices.last, invoice.kind == .final, !invoice.settled, let date = invoice.settlesOn,
               best == nil || date < best! {
                best = date
            }
        case .ended:
            break
        }
        return best
    }

    mutating func refreshNextDue() {
        // Past April 2262 no instant exists (startOfDay saturates): nothing is ever due there.
        nextDue = nextDueDate().map { timeZone.startOfDay($0) }.flatMap { $0.nanosecondsSinceEpoch < Int64.max ? $0 : nil }
    }

    /// Runs every transition due at or before `now`, each dated at 00:00 local on the date it
    /// fell due (T6). Returns how many ran.
    mutating func advance(to now: Instant, counters: inout SerialCounters) -> Int {
        var count = 0
        while let date = nextDueDate() {
            let instant = timeZone.startOfDay(date)
            // A date past the last representable instant (April 2262) saturates to Int64.max.
            // It can never fall due: with `now` at Int64.max the loop would otherwise renew
            // forever, until the date arithmetic traps.
            guard instant <= now, instant.nanosecondsSinceEpoch < Int64.max else { break }
            count += runTransitions(on: date, at: instant, counters: &counters)
        }
        refreshNextDue()
        return count
    }

    /// One step of `advance`: the transitions of the next due date, if it is due by `now`
    /// (events need each date's changes apart, E2). Nil when nothing was due.
    mutating func advanceOneDate(to now: Instant, counters: inout SerialCounters) -> (count: Int, instant: Instant, date: CivilDate)? {
        guard let date = nextDueDate() else { return nil }
        let instant = timeZone.startOfDay(date)
        guard instant <= now, instant.nanosecondsSinceEpoch < Int64.max else { return nil }
        let count = runTransitions(on: date, at: instant, counters: &counters)
        refreshNextDue()
        return (count, instant, date)
    }

    private mutating func runTransitions(on date: CivilDate, at instant: Instant, counters: inout SerialCounters) -> Int {
        var count = 0
        // L3: pending credits reach expectedBy before any bill of that day.
        let first = credits.trailingPendingStart
        let due = credits.credits(from: first).enumerated().filter { $0.element.expectedBy <= date }.map { first + $0.offset }
        for index in due {
            credits[index].apply(at: instant, schedule: schedule)
            count += 1
        }
        switch status {
        case .cancelled:
            if let last = laterInvoices.indices.last, laterInvoices[last].kind == .final, !laterInvoices[last].settled,
               let settlesOn = laterInvoices[last].settlesOn, settlesOn <= date {
                settleFinalInvoice(at: last, instant: instant)
                count += 1
            }
        case .active where period.end <= date:
            renew(on: period.end, at: instant, counters: &counters)
            count += 1
        case .cancelPending where period.end <= date:
            close(on: period.end, at: instant, counters: &counters)
            count += 1
        default:
            break
        }
        return count
    }

    /// Applied credits offset `charges`, oldest first; what remains of each awaits a refund
    /// (L4, C6). Returns the applied-credit invoice lines.
    private mutating func offsetAppliedCredits(against charges: Int64, on date: CivilDate, at instant: Instant) -> [InvoiceLine] {
        var open = charges
        var lines: [InvoiceLine] = []
        for index in credits.positions(inState: .applied) {
            let absorbed = credits[index].absorb(upTo: open, at: instant)
            open -= absorbed
            if absorbed > 0 {
                lines.append(InvoiceLine(kind: .appliedCredit, amountMinor: -absorbed,
                                         creditSerial: credits[index].serial, effectiveDate: date))
            }
            credits[index].awaitRefund(at: instant)
        }
        return lines
    }

    private var unbilledChargeLines: [InvoiceLine] {
        periodLines.filter { $0.amountMinor > 0 }.map {
            InvoiceLine(kind: .proratedCharge, amountMinor: $0.amountMinor, effectiveDate: $0.effectiveDate)
        }
    }

    /// T4/L4: the new period is charged at 00:00 local on the old `periodEnd`.
    private mutating func renew(on date: CivilDate, at instant: Instant, counters: inout SerialCounters) {
        let newSeats = scheduledSeats ?? seats
        // Requests are checked (M2), so these cannot overflow; saturate rather than trap.
        let (product, overflow) = unitPriceMinor.multipliedReportingOverflow(by: newSeats)
        let charge = overflow ? Int64.max : product
        let end = schedule.billingDate(after: date)
        var lines = [InvoiceLine(kind: .periodCharge, amountMinor: charge, effectiveDate: date, seats: newSeats)]
        lines += unbilledChargeLines
        let (total, totalOverflow) = charge.addingReportingOverflow(unbilledChargesMinor)
        lines += offsetAppliedCredits(against: totalOverflow ? Int64.max : total, on: date, at: instant)
        appendCompactly(&laterInvoices, Invoice(serial: counters.takeInvoice(), kind: .renewal, issuedAt: instant, issuedDate: date,
                                periodStart: date, periodEnd: end, lines: lines, settlesOn: nil, settled: true))
        period = BillingPeriod(start: date, end: end, chargedMinor: charge, chargedSeats: newSeats)
        seats = newSeats
        storedScheduledSeats = 0
        cumulativeNumerator = 0
        unbilledChargesMinor = 0
        periodLines = []
        blocks = tracksBlocks ? [SeatBlock(seats: newSeats, windowStart: instant, startDate: date)] : []
    }

    /// C6: an `end_of_period` cancel takes effect; nothing is renewed.
    private mutating func close(on date: CivilDate, at instant: Instant, counters: inout SerialCounters) {
        var lines = unbilledChargeLines
        lines += offsetAppliedCredits(against: unbilledChargesMinor, on: date, at: instant)
        appendCompactly(&laterInvoices, Invoice(serial: counters.takeInvoice(), kind: .closing, issuedAt: instant, issuedDate: date,
                                periodStart: period.start, periodEnd: period.end, lines: lines,
                                settlesOn: date, settled: true))
        status = .ended
        seats = 0
        storedScheduledSeats = 0
        unbilledChargesMinor = 0
        blocks = []
    }

    /// C5: the listed credits offset the listed charges, oldest first; the rest awaits a refund.
    private mutating func settleFinalInvoice(at invoiceIndex: Int, instant: Instant) {
        let invoice = laterInvoices[invoiceIndex]
        var open = invoice.lines.reduce(Int64(0)) { $1.amountMinor > 0 ? $0 &+ $1.amountMinor : $0 }
        for line in invoice.lines where line.creditSerial != 0 {
            guard let index = creditIndex(serial: line.creditSerial) else { continue }
            open -= credits[index].absorb(upTo: open, at: instant)
            credits[index].awaitRefund(at: instant)
        }
        laterInvoices[invoiceIndex].settled = true
    }

    // MARK: proration (P1–P4)

    private struct Proration {
        let amount: Int64
        let cumulative: Int128
        let explanation: LineExplanation
    }

    /// The line of a change of `delta` seats (P2, P3, P4; §6 for `window_72h` portions).
    private func prorate(delta: Int64, unusedDays: Int32, portions: [SeatBlockPortion]) throws(DomainError) -> Proration {
        let charged = Int128(period.chargedMinor)
        let exact: Int128
        if portions.isEmpty {
            exact = try Checked.multiply(try Checked.multiply(charged, Int128(delta)), Int128(unusedDays))
        } else {
            var seatDays: Int128 = 0
            for portion in portions {
                seatDays = try Checked.add(seatDays, try Checked.multiply(Int128(portion.seats), Int128(portion.unusedDays)))
            }
            exact = try Checked.multiply(-charged, seatDays)
        }
        let previous = cumulativeNumerator
        let cumulative = try Checked.add(previous, exact)
        let denominator = self.denominator
        let roundedPrevious = try Checked.round(previous, over: denominator)
        let roundedTotal = try Checked.round(cumulative, over: denominator)
        _ = try Checked.toInt64(roundedTotal)  // M2: the period total R(A_n)
        let amount = try Checked.toInt64(try Checked.add(roundedTotal, -roundedPrevious))
        let explanation = LineExplanation(chargedMinor: period.chargedMinor, chargedSeats: period.chargedSeats,
                                          seatsDelta: delta, periodDays: period.days, unusedDays: unusedDays,
                                          cumulativeNumerator: cumulative, blocks: portions)
        return Proration(amount: amount, cumulative: cumulative, explanation: explanation)
    }

    /// `e` (T5): the civil date of the request instant, kept inside the current period.
    private func effectiveDate(at now: Instant) -> CivilDate {
        let date = timeZone.civilDate(of: now)
        if date < period.start { return period.start }
        if date >= period.end { return period.end.adding(days: -1) }
        return date
    }

    private func isOpen(_ block: SeatBlock, at now: Instant) -> Bool {
        guard let window = refundPolicy.windowNanoseconds else { return true }
        return now < block.windowStart.adding(nanoseconds: window)
    }

    /// Takes `count` seats from the newest blocks first (W3).
    private func takeSeats(_ count: Int64) -> (remaining: [SeatBlock], portions: [SeatBlockPortion]) {
        var remaining = blocks
        var portions: [SeatBlockPortion] = []
        var needed = count
        while needed > 0, let last = remaining.last {
            let taken = min(last.seats, needed)
            portions.append(SeatBlockPortion(seats: taken, startDate: last.startDate,
                                             unusedDays: Int32(last.startDate.days(to: period.end))))
            needed -= taken
            if taken == last.seats { remaining.removeLast() } else { remaining[remaining.count - 1].seats -= taken }
        }
        return (remaining, portions)
    }

    /// M2: the next renewal bill must stay inside `Int64`.
    private func checkRenewalBill(seatsAtRenewal: Int64, unbilled: Int64) throws(DomainError) {
        let charge = try Checked.multiply(unitPriceMinor, seatsAtRenewal)
        _ = try Checked.add(charge, unbilled)
    }

    private mutating func nextEventSeq() -> UInt64 {
        lastEventSeq += 1
        return lastEventSeq
    }

    // MARK: cancel (C1–C8)

    mutating func cancel(mode: CancelMode, at now: Instant, counters: inout SerialCounters) throws(DomainError) -> CancellationRecord {
        switch status {
        case .cancelled, .ended:
            // C3: the existing record, never a second credit.
            return repeatedCancellation()
        case .cancelPending where mode == .endOfPeriod:
            return repeatedCancellation()
        case .active where mode == .endOfPeriod:
            let record = CancellationRecord(mode: .endOfPeriod, effectiveDate: period.end, requestedAt: now,
                                            entitlementEndsAt: timeZone.startOfDay(period.end),
                                            line: nil, credit: nil, finalInvoice: nil, alreadyCancelled: false)
            status = .cancelPending
            cancellationSlot = .recorded(record)
            return record
        default:
            return try cancelImmediately(at: now, counters: &counters)
        }
    }

    /// C3: a repeated cancel answers the original record (line, explanation, dates), but with its
    /// credit and final invoice as they stand now, so a refunded credit never reads as pending.
    /// Only a replay under an idempotency key (I3) repeats the first answer byte for byte.
    private func repeatedCancellation() -> CancellationRecord {
        let original = cancellation!
        let credit = original.credit.map { credit in creditIndex(serial: credit.serial).map { credits[$0] } ?? credit }
        let invoice = original.finalInvoice.map { invoice in laterInvoices.first { $0.serial == invoice.serial } ?? invoice }
        return CancellationRecord(mode: original.mode, effectiveDate: original.effectiveDate,
                                  requestedAt: original.requestedAt, entitlementEndsAt: original.entitlementEndsAt,
                                  line: original.line, credit: credit, finalInvoice: invoice, alreadyCancelled: true)
    }

    /// C1 `immediate` (and C2): a change to 0 seats effective `e` (P6) with a final invoice (C5).
    private mutating func cancelImmediately(at now: Instant, counters: inout SerialCounters) throws(DomainError) -> CancellationRecord {
        let e = effectiveDate(at: now)
        // W3: every remaining seat must be in an open block.
        if refundPolicy != .anytime, !blocks.allSatisfy({ isOpen($0, at: now) }) {
            throw DomainError.outsideWindow
        }
        let portions = refundPolicy == .window72h ? takeSeats(seats).portions : []
        let proration = try prorate(delta: -seats, unusedDays: Int32(e.days(to: period.end)), portions: portions)

        // Everything below cannot fail.
        let line = LedgerLine(amountMinor: proration.amount, effectiveDate: e, eventSeq: nextEventSeq(),
                              explanation: proration.explanation)
        cumulativeNumerator = proration.cumulative
        let settlesOn = min(period.end, e.adding(days: 30))
        var invoiceLines = unbilledChargeLines
        for credit in credits where credit.state == .pending {
            invoiceLines.append(InvoiceLine(kind: .seatChangeCredit, amountMinor: -credit.remainingMinor,
                                            creditSerial: credit.serial, effectiveDate: credit.effectiveDate))
        }
        // C5: credits waiting in the balance are not listed; they await a refund now.
        for index in credits.positions(inState: .applied) {
            credits[index].awaitRefund(at: now)
        }
        var credit: Credit?
        if proration.amount < 0 {
            let created = Credit(serial: counters.takeCredit(), source: .cancel, effectiveDate: e, dueDate: period.end,
                                 createdAt: now, eventSeq: line.eventSeq, amountMinor: -proration.amount,
                                 explanation: proration.explanation)
            invoiceLines.append(InvoiceLine(kind: .cancelCredit, amountMinor: proration.amount,
                                            creditSerial: created.serial, effectiveDate: e))
            credits.append(created)
            credit = created
        } else {
            periodLines.append(line)
        }
        let invoice = Invoice(serial: counters.takeInvoice(), kind: .final, issuedAt: now,
                              issuedDate: timeZone.civilDate(of: now), periodStart: period.start, periodEnd: period.end,
                              lines: invoiceLines, settlesOn: settlesOn, settled: false)
        appendCompactly(&laterInvoices, invoice)
        let record = CancellationRecord(mode: .immediate, effectiveDate: e, requestedAt: now,
                                        entitlementEndsAt: timeZone.startOfDay(e), line: line, credit: credit,
                                        finalInvoice: invoice, alreadyCancelled: false)
        status = .cancelled
        seats = 0
        storedScheduledSeats = 0
        unbilledChargesMinor = 0
        blocks = []
        cancellationSlot = .recorded(record)
        refreshNextDue()
        return record
    }

    // MARK: resume (C7)

    /// Returns whether anything changed.
    mutating func resume() throws(DomainError) -> Bool {
        switch status {
        case .active:
            return false
        case .cancelPending:
            status = .active
            cancellationSlot = .none
            refreshNextDue()
            return true
        case .cancelled, .ended:
            throw DomainError.subscriptionCancelled
        }
    }

    // MARK: seat change (S1–S8)

    mutating func changeSeats(to newSeats: Int64, timing: SeatChangeTiming, at now: Instant,
                              counters: inout SerialCounters) throws(DomainError) -> SeatChangeResult {
        if status.isEffectivelyCancelled { throw DomainError.subscriptionCancelled }               // C4
        if timing == .atRenewal, status == .cancelPending {
            throw DomainError(.subscriptionCancelled, "an end-of-period cancel is pending; resume first")  // S6
        }
        guard newSeats > 0 else { throw DomainError.seatsMustBePositive }                         // S1
        let previous = seats

        if timing == .atRenewal {
            // S6: no proration; the renewal charges unitPriceMinor × newSeats. Windows do not apply (W4).
            try checkRenewalBill(seatsAtRenewal: newSeats, unbilled: unbilledChargesMinor)
            storedScheduledSeats = newSeats == seats ? 0 : newSeats
            return SeatChangeResult(outcome: .scheduled, previousSeats: previous, newSeats: newSeats, seats: seats,
                                    effectiveDate: period.end, line: nil, credit: nil)
        }

        let e = effectiveDate(at: now)
        if newSeats == seats {                                                                   // S2
            return SeatChangeResult(outcome: .noChange, previousSeats: previous, newSeats: newSeats, seats: seats,
                                    effectiveDate: e, line: nil, credit: nil)
        }
        let delta = newSeats - seats
        let unusedDays = Int32(e.days(to: period.end))
        var newBlocks = blocks
        var portions: [SeatBlockPortion] = []
        if delta < 0 {
            if refundPolicy != .anytime {
                // W3: the removed seats must all sit in blocks whose window is open.
                let openSeats = blocks.reduce(Int64(0)) { isOpen($1, at: now) ? $0 + $1.seats : $0 }
                guard openSeats >= -delta else { throw DomainError.outsideWindow }
                let taken = takeSeats(-delta)
                newBlocks = taken.remaining
                if refundPolicy == .window72h { portions = taken.portions }
            }
        } else if tracksBlocks {
            newBlocks.append(SeatBlock(seats: delta, windowStart: now, startDate: e))            // W1
        }
        _ = try Checked.multiply(unitPriceMinor, newSeats)                                        // M2
        let proration = try prorate(delta: delta, unusedDays: unusedDays, portions: portions)
        let unbilledAfter = try Checked.add(unbilledChargesMinor, max(proration.amount, 0))
        try checkRenewalBill(seatsAtRenewal: scheduledSeats ?? newSeats, unbilled: unbilledAfter)

        // Everything below cannot fail.
        let line = LedgerLine(amountMinor: proration.amount, effectiveDate: e, eventSeq: nextEventSeq(),
                              explanation: proration.explanation)
        cumulativeNumerator = proration.cumulative
        seats = newSeats
        blocks = newBlocks
        unbilledChargesMinor = unbilledAfter
        var credit: Credit?
        let outcome: SeatChangeOutcome
        if proration.amount < 0 {
            let created = Credit(serial: counters.takeCredit(), source: .seatChange, effectiveDate: e,
                                 dueDate: period.end, createdAt: now, eventSeq: line.eventSeq,
                                 amountMinor: -proration.amount, explanation: proration.explanation)
            credits.append(created)
            credit = created
            outcome = .credit
        } else {
            periodLines.append(line)
            outcome = proration.amount > 0 ? .charge : .zeroLine
        }
        refreshNextDue()
        return SeatChangeResult(outcome: outcome, previousSeats: previous, newSeats: newSeats, seats: seats,
                                effectiveDate: e, line: line, credit: credit)
    }

    // MARK: refund outcome (L9)

    mutating func recordRefundOutcome(creditId: String, outcome: RefundOutcome, at now: Instant) throws(DomainError) -> RefundOutcomeResult {
        guard let serial = Credit.serial(fromID: creditId), let index = creditIndex(serial: serial) else {
            throw DomainError.creditNotFound
        }
        let asOf = timeZone.civilDate(of: now)
        guard credits[index].state == .refundPending else {
            return RefundOutcomeResult(ignored: true, credit: CreditStatus(credit: credits[index], asOf: asOf))
        }
        switch outcome {
        case .succeeded:
            credits[index].recordRefundSucceeded(at: now)
        case .failed:
            credits[index].recordRefundFailed(at: now)
            // After an effective cancel there is no bill left to wait for.
            if status.isEffectivelyCancelled { credits[index].awaitRefund(at: now) }
        }
        return RefundOutcomeResult(ignored: false, credit: CreditStatus(credit: credits[index], asOf: asOf))
    }
}

/// Appends with slow growth: per-subscription arrays are many and small, so doubling would
/// waste memory across a million subscriptions.
func appendCompactly<Element>(_ array: inout [Element], _ element: Element) {
    if array.count == array.capacity {
        array.reserveCapacity(array.count + max(1, array.count / 4))
    }
    array.append(element)
}
