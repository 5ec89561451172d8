// O5 ImportSubscription: a subscription that began in another billing system keeps its dates.

/// ImportSubscription (O5): the O2 fields with `startDate` required, plus an optional charge
/// for the current period.
public struct ImportSubscriptionRequest: Sendable, Hashable {
    public var subscriptionId: String
    public var customer: String
    public var plan: String
    public var seats: Int64
    public var unitPriceMinor: Int64
    public var currency: String
    /// UNSPECIFIED → `invalid_request`.
    public var interval: EnumField<BillingInterval>
    public var timeZone: String
    /// UNSPECIFIED → `anytime`.
    public var refundPolicy: EnumField<RefundPolicy>
    /// `YYYY-MM-DD`, the original start date; required, not after today, not before 1970-01-01.
    public var startDate: String
    /// `C` of the current period; nil means `unitPriceMinor × seats`. Must be ≥ 0.
    public var currentPeriodChargedMinor: Int64?

    public init(subscriptionId: String, customer: String = "", plan: String = "", seats: Int64, unitPriceMinor: Int64,
                currency: String, interval: EnumField<BillingInterval>, timeZone: String,
                refundPolicy: EnumField<RefundPolicy> = .unspecified, startDate: String,
                currentPeriodChargedMinor: Int64? = nil) {
        self.subscriptionId = subscriptionId
        self.customer = customer
        self.plan = plan
        self.seats = seats
        self.unitPriceMinor = unitPriceMinor
        self.currency = currency
        self.interval = interval
        self.timeZone = timeZone
        self.refundPolicy = refundPolicy
        self.startDate = startDate
        self.currentPeriodChargedMinor = currentPeriodChargedMinor
    }
}

/// ImportSubscription's result: the subscription and its opening invoice (O5).
public struct ImportedSubscription: Sendable, Hashable {
    public let subscription: Subscription
    public let openingInvoice: Invoice

    /// Every stored field as it is (also snapshot decoding, in LedgerEncoding).
    package init(subscription: Subscription, openingInvoice: Invoice) {
        self.subscription = subscription
        self.openingInvoice = openingInvoice
    }
}

extension Subscription {
    /// Imported (O5): it has an opening invoice instead of a purchase invoice. Stored as a
    /// purchase seat count of 0, which a created subscription never has (seats ≥ 1).
    public var isImported: Bool { storedPurchaseSeats == 0 }

    /// The opening invoice of an imported subscription (O5), nil otherwise.
    public var openingInvoice: Invoice? { isImported ? laterInvoices.first : nil }

    /// Opens an imported subscription at `now` (O5) with its current period `[b, b′)` charged
    /// `charged` elsewhere, and issues its opening invoice (first of `laterInvoices`).
    static func imported(id: String, customer: String, plan: String, seats: Int64, unitPriceMinor: Int64,
                         charged: Int64, currency: Currency, interval: BillingInterval, timeZone: TimeZoneRules,
                         refundPolicy: RefundPolicy, startDate: CivilDate, at now: Instant,
                         counters: inout SerialCounters) -> Subscription {
        let schedule = BillingSchedule(interval: interval, startDate: startDate)
        let today = timeZone.civilDate(of: now)
        let (start, end) = today == startDate ? (today, schedule.billingDate(after: today)) : schedule.period(containing: today)
        let period = BillingPeriod(start: start, end: end, chargedMinor: charged, chargedSeats: seats)
        let opening = Invoice(serial: counters.takeInvoice(), kind: .opening, issuedAt: now, issuedDate: today,
                              periodStart: start, periodEnd: end,
                              lines: [InvoiceLine(kind: .periodCharge, amountMinor: charged, effectiveDate: start, seats: seats)],
                              settlesOn: nil, settled: true)
        let windowStart = timeZone.startOfDay(start)
        var subscription = Subscription(
            id: id, customer: customer, plan: plan, unitPriceMinor: unitPriceMinor, createdAt: now,
            timeZone: timeZone, seats: seats, period: period, cumulativeHigh: 0, cumulativeLow: 0,
            storedScheduledSeats: 0, unbilledChargesMinor: 0,
            blocks: refundPolicy == .anytime ? [] : [SeatBlock(seats: seats, windowStart: windowStart, startDate: start)],
            periodLines: [], credits: [], purchaseInvoiceSerial: 0,
            laterInvoices: [opening], cancellationSlot: .none, lastEventSeq: 0, nextDue: nil,
            status: .active, currency: currency, refundPolicy: refundPolicy, schedule: schedule, startDate: startDate,
            storedPurchaseSeats: 0)
        subscription.refreshNextDue()
        return subscription
    }
}

extension Ledger {
    static let earliestImportDate = CivilDate(epochDay: 0)   // 1970-01-01

    /// O5: validates in X2 order (`invalid_request`, `subscription_exists`, `amount_overflow`),
    /// then builds the subscription with the counters it took; the caller inserts it and keeps
    /// the counters (a dry run does neither).
    mutating func buildImport(_ request: ImportSubscriptionRequest,
                              at now: Instant) throws(DomainError) -> (Subscription, SerialCounters) {
        let (currency, zone, interval, policy) = try validatedTerms(
            subscriptionId: request.subscriptionId, seats: request.seats, unitPriceMinor: request.unitPriceMinor,
            currency: request.currency, timeZone: request.timeZone, interval: request.interval,
            refundPolicy: request.refundPolicy)
        guard !request.startDate.isEmpty else { throw DomainError.invalid("start_date is required for an import") }
        guard let startDate = CivilDate(request.startDate) else {
            throw DomainError.invalid("start_date must be a date YYYY-MM-DD")
        }
        let today = zone.civilDate(of: now)
        guard startDate <= today else {
            throw DomainError.invalid("start_date \(startDate) is after today's date in the time zone, \(today)")
        }
        guard startDate >= Ledger.earliestImportDate else { throw DomainError.invalid("start_date is before 1970-01-01") }
        if let charged = request.currentPeriodChargedMinor, charged < 0 {
            throw DomainError.invalid("current_period_charged_minor must not be negative")
        }
        guard slotIndex(ScalarString(request.subscriptionId)) == nil else { throw DomainError.subscriptionExists }
        // M2: renewals charge unitPriceMinor × seats, even when the current period's charge is given.
        let product = try Checked.multiply(request.unitPriceMinor, request.seats)
        var counters = self.counters
        let subscription = Subscription.imported(
            id: request.subscriptionId, customer: request.customer, plan: request.plan, seats: request.seats,
            unitPriceMinor: request.unitPriceMinor, charged: request.currentPeriodChargedMinor ?? product,
            currency: currency, interval: interval, timeZone: zone, refundPolicy: policy, startDate: startDate,
            at: now, counters: &counters)
        return (subscription, counters)
    }
}
