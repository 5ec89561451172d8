/// The whole billing state: every subscription, the idempotency key table and the id counters.
///
/// `execute` is the one entry point for writes: `(state, command, now) → (state', response)`.
/// It is deterministic, so replaying a journal of commands (and `advance` ticks) on an equal
/// ledger gives an equal ledger.
public struct Ledger: Sendable {
    public static let defaultMaxSeats: Int64 = 100_000

    /// The configured seat maximum (S1), at most `Int32.max` (seat counts are stored in 32 bits).
    public var maxSeats: Int64 {
        get { storedMaxSeats }
        set { storedMaxSeats = min(max(newValue, 1), Ledger.seatLimit) }
    }
    public static let seatLimit = Int64(Int32.max)
    private var storedMaxSeats: Int64
    public private(set) var counters: SerialCounters
    // Chunked, so that the copy the writer publishes after each batch shares all but the
    // chunks changed since (ChunkedStorage.swift).
    private var slots = ChunkedArray<Subscription>()
    private var slotByID = SlotTable()
    private var idempotency = IdempotencyTable()
    // Derived indexes, rebuilt on decode and left out of ==.
    private var sortedIDs = SortedKeyIndex()
    private var dueQueue = DueQueue()
    /// One shared `TimeZoneRules` per zone id, so a million subscriptions share a few values.
    private var zones: [String: TimeZoneRules] = [:]
    // --- Issues 14/15 (EventFeed.swift, CreditIndex.swift, LedgerEvents.swift) ---
    /// The event feed (E1–E5): billing state, snapshotted and compared by `==`.
    package internal(set) var feed = EventFeed()
    /// E5 retention: configuration, not billing state.
    public var eventRetention = EventRetention.specMinimum
    /// Book-wide indexes and counts (Q1–Q3): derived, rebuilt on decode, left out of `==`.
    var book = BookIndex()
    /// The events of the command being handled; empty between commands.
    var pendingEvents: [PendingEvent] = []
    // --- end issues 14/15 ---

    public init(maxSeats: Int64 = Ledger.defaultMaxSeats) {
        self.storedMaxSeats = min(max(maxSeats, 1), Ledger.seatLimit)
        self.counters = SerialCounters()
    }

    /// Rebuilds a ledger from its parts (a snapshot).
    public init(maxSeats: Int64, counters: SerialCounters, subscriptions: [Subscription],
                idempotencyEntries: [IdempotencyEntry]) {
        self.storedMaxSeats = min(max(maxSeats, 1), Ledger.seatLimit)
        self.counters = counters
        for subscription in subscriptions { insert(subscription) }
        self.idempotency = IdempotencyTable(idempotencyEntries)
    }

    /// Every stored part as given (snapshot decoding, which builds the indexes itself). The
    /// ledger keeps the subscriptions in the boxes `slots` holds them in.
    package init(maxSeats: Int64, counters: SerialCounters, boxes slots: BoxedElements<Subscription>,
         slotByID: SlotTable, sortedIDs: SortedKeyIndex, dueQueue: DueQueue,
         idempotency: IdempotencyTable, zones: [String: TimeZoneRules], feed: EventFeed = EventFeed(),
         creditLocations: CreditLocations? = nil) {
        self.storedMaxSeats = min(max(maxSeats, 1), Ledger.seatLimit)
        self.counters = counters
        self.slotByID = slotByID
        self.sortedIDs = sortedIDs
        self.dueQueue = dueQueue
        self.idempotency = idempotency
        self.zones = zones
        self.feed = feed
        self.book = BookIndex(slots: slots, idOrder: sortedIDs.slotsInOrder, nextCreditSerial: counters.nextCreditSerial,
                              locations: creditLocations)
        self.slots = ChunkedArray(boxes: slots.boxes)
    }

    /// Every stored part, with the event feed (JSON decoding).
    init(maxSeats: Int64, counters: SerialCounters, subscriptions: [Subscription],
         idempotencyEntries: [IdempotencyEntry], feed: EventFeed) {
        self.init(maxSeats: maxSeats, counters: counters, subscriptions: subscriptions, idempotencyEntries: idempotencyEntries)
        self.feed = feed
    }

    /// The subscription in `slot` (creation order): a copy, every field retained.
    func slotValue(_ slot: Int) -> Subscription { slots[slot] }

    /// Reads stored fields of the subscription in `slot` where it is stored. A command read
    /// its subscription whole about nine times (its due instant before and after, the marks,
    /// each event), copying 256 bytes and retaining every field each time. Only stored
    /// properties may be read through the address: a computed one copies the whole value first.
    @inline(__always)
    func readSlot<Result>(_ slot: Int, _ body: (UnsafePointer<Subscription>) -> Result) -> Result {
        slots.readElement(at: slot, body)
    }

    /// Commands to prefetch together (the replay's records, the writer's batch): enough for
    /// their misses to overlap, few enough for what they bring in to stay in the cache.
    public static let prefetchGroup = 16

    /// Brings what commands on the subscriptions of `items` read first (their id-table entries,
    /// then the subscriptions themselves) into the cache, for all of them before the first
    /// command runs. Otherwise each command's lookups miss the cache one after another, each
    /// waiting for the last: replaying a million seat changes, the id lookup alone was ~15% of
    /// the replay, and the replay took 10% less time with its records prefetched in groups of
    /// 16. `id(i)` gives the subscription id of item `i` of `count` (nil: none). Only a hint: an
    /// unknown id costs a lookup and nothing else.
    ///
    /// Items by position rather than a generic collection: other modules' calls ran the
    /// unspecialized loop, whose iterator allocated for every element it read.
    public func prefetchSubscriptions(count items: Int, id: (Int) -> String?) {
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: items) { buffer in
            var count = 0
            for item in 0..<items {
                guard let id = id(item) else { continue }
                buffer[count] = SlotTable.prefetchHash(ScalarString(id))
                count += 1
            }
            let hashes = UnsafeMutableBufferPointer(rebasing: buffer[..<count])
            // Each pass reads only lines the pass before asked for.
            for hash in hashes { slotByID.prefetchShard(hash) }
            for hash in hashes { slotByID.prefetchProbe(hash) }
            for (index, hash) in hashes.enumerated() {
                // The candidate slot replaces the hash: the last pass needs only the slot.
                let slot = slotByID.candidateSlot(hash).map(Int.init) ?? -1
                hashes[index] = UInt64(bitPattern: Int64(slot))
                slots.prefetchBoxReference(at: slot)
            }
            for slot in hashes {
                slots.prefetchBox(at: Int(Int64(bitPattern: slot)), bytes: 16 + MemoryLayout<Subscription>.size)
            }
        }
    }

    /// The instant of `slot`'s next time-driven transition (a stored field, read in place).
    @inline(__always)
    func slotNextDue(_ slot: Int) -> Instant? {
        readSlot(slot) { $0.pointee.nextDue }
    }

    /// The slot of the subscription with this id.
    func slotIndex(_ id: ScalarString) -> Int? {
        slotByID.slot(of: id) { slot in
            readSlot(Int(slot)) { ScalarString($0.pointee.id) == id }
        }.map(Int.init)
    }

    /// Runs one due date of `slot` (T6) and keeps the due queue current; nil when none was due.
    mutating func advanceSlotOneDate(_ slot: Int, to now: Instant) -> (count: Int, instant: Instant, date: CivilDate)? {
        let dueBefore = slotNextDue(slot)
        let step = slots[slot].advanceOneDate(to: now, counters: &counters)
        // A step that changed nothing is not queued again, so `advance` always terminates.
        if let step, step.count > 0 || slotNextDue(slot) != dueBefore, let next = slotNextDue(slot) {
            dueQueue.push(.init(due: next, slot: Int32(slot)))
        }
        return step
    }

    /// The ledger as readers see it: the same value without the writer's own bookkeeping
    /// (the due-transition queue, the idempotency table and the pending events' buffer), so
    /// that keeping both copies costs nothing and the writer's next change to them copies
    /// nothing. Reads (subscription lookups, lists, refund status, invoices) are unaffected;
    /// `execute`, `advance` and `nextDueInstant` must not be used on it.
    public func readerCopy() -> Ledger {
        var copy = self
        copy.dueQueue = DueQueue()
        copy.idempotency = IdempotencyTable()
        copy.pendingEvents = []
        copy.isReaderCopy = true
        return copy
    }

    /// True for a `readerCopy()`.
    public private(set) var isReaderCopy = false

    /// The slots in id order (snapshots store it, so loading need not sort).
    package var slotsInIDOrder: [Int32] { sortedIDs.slotsInOrder }

    /// The key table in order of first use, without building `idempotencyEntries` (snapshots).
    package func forEachIdempotencyEntry(_ body: (IdempotencyTable.Scope, IdempotencyTable.Stored) -> Void) {
        idempotency.forEachInOrder(body)
    }

    // MARK: reads

    public var subscriptionCount: Int { slots.count }
    /// Every subscription in creation order.
    public var subscriptions: [Subscription] { Array(slots) }
    /// Calls `body` with the subscriptions in slots `range` (creation order) where they are
    /// stored: a snapshot copied every subscription into an array first (retaining each of
    /// their fields and releasing them all again), about a third of its time at 1M.
    package func forEachSubscription(inSlots range: Range<Int>, _ body: (borrowing Subscription) -> Void) {
        slots.forEach(in: range, body)
    }
    /// The key table in order of first use (for snapshots).
    public var idempotencyEntries: [IdempotencyEntry] { idempotency.list }
    public var idempotencyEntryCount: Int { idempotency.count }

    /// GetSubscription (O1).
    public func subscription(id: String) throws(DomainError) -> Subscription {
        guard let slot = slotIndex(ScalarString(id)) else { throw DomainError.subscriptionNotFound }
        return slots[slot]
    }

    /// Calls `body` with the stored subscription read in place: a read that only encodes it
    /// saves copying its 256 bytes and retaining each of its references. The view is valid
    /// only during `body`. (Not generic in a result, so that it is specialized here rather
    /// than left generic for callers in other modules.)
    public func withSubscription(id: String, _ body: (StoredSubscription) -> Void) throws(DomainError) {
        guard let slot = slotIndex(ScalarString(id)) else { throw DomainError.subscriptionNotFound }
        slots.withElementAddress(at: slot) { body(StoredSubscription($0)) }
    }

    /// ListSubscriptions in id order (code-point order). `pageSize` 0 means 100, at most 1000;
    /// `pageToken` is empty for the first page, else the previous page's `nextPageToken`.
    public func listSubscriptions(pageSize: Int32, pageToken: String) throws(DomainError) -> SubscriptionPage {
        guard pageSize >= 0 else { throw DomainError.invalid("page_size must not be negative") }
        let limit = pageSize == 0 ? 100 : min(Int(pageSize), 1_000)
        let page = sortedIDs.keys(after: try Ledger.subscriptionPosition(pageToken), limit: limit)
        let list = page.entries.map { slots[Int($0.slot)] }
        return SubscriptionPage(subscriptions: list, nextPageToken: page.more ? (page.entries.last.map { Ledger.subscriptionToken(after: $0.key) } ?? "") : "")
    }

    /// GetRefundStatus (L10) as of `asOf`. Reads recorded state only; no transition runs.
    public func refundStatus(subscriptionId: String, creditId: String?, asOf: Instant) throws(DomainError) -> RefundStatus {
        let creditId = creditId?.isEmpty == true ? nil : creditId
        return try subscription(id: subscriptionId).refundStatus(creditId: creditId, asOf: asOf)
    }

    /// ListInvoices (L11), in order of issue.
    public func invoices(subscriptionId: String) throws(DomainError) -> [Invoice] {
        try subscription(id: subscriptionId).invoices
    }

    /// The earliest instant at which a time-driven transition falls due, nil when none can.
    public func nextDueInstant() -> Instant? {
        dueQueue.top?.due
    }

    // MARK: time

    /// Runs every transition due at or before `now` for all subscriptions (T6). Returns how
    /// many ran; the ledger changed exactly when this is > 0.
    @discardableResult
    public mutating func advance(to now: Instant) -> Int {
        var total = 0
        while let top = dueQueue.top, top.due <= now {
            dueQueue.pop()
            let slot = Int(top.slot)
            guard slotNextDue(slot) == top.due else { continue }
            // One due date at a time, so the events of all subscriptions come in order of due
            // instant, ties in creation order (E2); the next date is queued again.
            total += stepSlot(slot, to: now)
        }
        commitEvents(now: now)
        normalizeQueue()
        return total
    }

    // MARK: writes

    /// Handles one command at `now` for the caller `callerUID` (I2 scope). A dry run (S7)
    /// answers as the commit would and records nothing, except the time-driven transitions due
    /// at `now` (T6), which always run first and stay.
    public mutating func execute(_ command: Command, at now: Instant, callerUID: UInt32, dryRun: Bool) -> CommandResult {
        var transitions = 0
        var slot: Int?
        if case .create = command {
            slot = nil
        } else if case .importSubscription = command {
            slot = nil
        } else if let found = slotIndex(ScalarString(command.subscriptionId)) {
            slot = found
            transitions = advanceSlot(found, to: now)
        }
        let result: (outcome: Result<CommandResponse, DomainError>, changed: Bool, replayed: Bool)
        switch command {
        case .create(let request):
            result = create(request, at: now, dryRun: dryRun)
        case .importSubscription(let request):
            result = importSubscription(request, at: now, dryRun: dryRun)
        case .cancel(let request):
            let mode = request.mode.resolved(default: .immediate)
            let fingerprint = RequestFingerprint.cancel(subscriptionId: ScalarString(request.subscriptionId),
                                                        mode: mode?.rawValue ?? request.mode.wireValue)
            let invalid: DomainError? = mode == nil ? DomainError.invalid("unknown cancel mode \(request.mode.wireValue)") : nil
            result = runKeyed(.cancel, key: request.idempotencyKey, fingerprint: fingerprint, invalid: invalid,
                              slot: slot, callerUID: callerUID, at: now, dryRun: dryRun) { subscription, counters throws(DomainError) in
                let record = try subscription.cancel(mode: mode!, at: now, counters: &counters)
                return (.cancelled(record), !record.alreadyCancelled)
            }
        case .changeSeats(let request):
            let timing = request.timing.resolved(default: .now)
            let fingerprint = RequestFingerprint.changeSeats(subscriptionId: ScalarString(request.subscriptionId),
                                                             newSeats: request.newSeats,
                                                             timing: timing?.rawValue ?? request.timing.wireValue)
            var invalid: DomainError?
            if timing == nil {
                invalid = DomainError.invalid("unknown seat change timing \(request.timing.wireValue)")
            } else if request.newSeats > maxSeats {
                invalid = DomainError.invalid("new_seats above the maximum of \(maxSeats)")
            }
            result = runKeyed(.changeSeats, key: request.idempotencyKey, fingerprint: fingerprint, invalid: invalid,
                              slot: slot, callerUID: callerUID, at: now, dryRun: dryRun) { subscription, counters throws(DomainError) in
                let change = try subscription.changeSeats(to: request.newSeats, timing: timing!, at: now, counters: &counters)
                return (.seatsChanged(change), change.outcome != .noChange)
            }
        case .resume:
            result = runUnkeyed(slot: slot, at: now, dryRun: dryRun) { subscription, _ throws(DomainError) in
                let changed = try subscription.resume()
                return (.resumed(subscription), changed)
            }
        case .recordRefundOutcome(let request):
            if let outcome = request.outcome.resolved(default: nil) {
                result = runUnkeyed(slot: slot, at: now, dryRun: dryRun) { subscription, _ throws(DomainError) in
                    let recorded = try subscription.recordRefundOutcome(creditId: request.creditId, outcome: outcome, at: now)
                    return (.refundOutcomeRecorded(recorded), !recorded.ignored)
                }
            } else {
                result = (.failure(DomainError.invalid("refund outcome must be succeeded or failed")), false, false)
            }
        }
        commitEvents(now: now)
        normalizeQueue()
        return CommandResult(outcome: result.outcome, stateChanged: transitions > 0 || result.changed,
                             transitions: transitions, replayed: result.replayed)
    }

    private typealias Operation = (inout Subscription, inout SerialCounters) throws(DomainError) -> (CommandResponse, Bool)

    /// Runs `operation` on the subscription in place (commit) or on a copy (dry run). The
    /// operations throw before they change anything, so a failure leaves the state as it was.
    private mutating func perform(slot: Int, at now: Instant, dryRun: Bool, _ operation: Operation) -> (Result<CommandResponse, DomainError>, Bool) {
        if dryRun {
            var copy = slots[slot]
            var counters = self.counters
            do throws(DomainError) {
                let (response, _) = try operation(&copy, &counters)
                return (.success(response), false)
            } catch {
                return (.failure(error), false)
            }
        }
        let dueBefore = slotNextDue(slot)
        let marks = readSlot(slot) { SubscriptionMarks($0) }
        do throws(DomainError) {
            let (response, changed) = try operation(&slots[slot], &counters)
            if slotNextDue(slot) != dueBefore, let due = slotNextDue(slot) {
                dueQueue.push(.init(due: due, slot: Int32(slot)))
            }
            if changed { recordRequest(slot: slot, marks: marks, response: response, now: now) }
            return (.success(response), changed)
        } catch {
            return (.failure(error), false)
        }
    }

    private mutating func runUnkeyed(slot: Int?, at now: Instant, dryRun: Bool, _ operation: Operation)
        -> (outcome: Result<CommandResponse, DomainError>, changed: Bool, replayed: Bool) {
        guard let slot else { return (.failure(DomainError.subscriptionNotFound), false, false) }
        let (outcome, changed) = perform(slot: slot, at: now, dryRun: dryRun, operation)
        return (outcome, changed, false)
    }

    /// Cancel and ChangeSeats: the key table first (X2, I3, I4), then the request.
    private mutating func runKeyed(_ operation: IdempotentOperation, key: String, fingerprint: RequestFingerprint,
                                   invalid: DomainError?, slot: Int?, callerUID: UInt32, at now: Instant,
                                   dryRun: Bool, _ body: Operation)
        -> (outcome: Result<CommandResponse, DomainError>, changed: Bool, replayed: Bool) {
        if key.unicodeScalars.count > 255 {
            return (.failure(DomainError.invalid("idempotency_key is longer than 255 Unicode scalars")), false, false)
        }
        let scope = key.isEmpty ? nil : IdempotencyTable.Scope(callerUID: callerUID, operation: operation, key: ScalarString(key))
        if let scope, let stored = idempotency.lookup(scope) {
            if stored.fingerprint == fingerprint { return (stored.outcome.result, false, true) }
            return (.failure(DomainError.keyReused), false, false)
        }
        if let invalid { return (.failure(invalid), false, false) }     // never stored (I3)
        var outcome: Result<CommandResponse, DomainError>
        var changed = false
        if let slot {
            (outcome, changed) = perform(slot: slot, at: now, dryRun: dryRun, body)
        } else {
            outcome = .failure(DomainError.subscriptionNotFound)
        }
        if let scope, !dryRun {
            idempotency.record(scope, .init(fingerprint: fingerprint, outcome: StoredOutcome(outcome), firstUsedAt: now))
            changed = true
        }
        return (outcome, changed, false)
    }

    /// The O2 field checks that CreateSubscription and ImportSubscription (O5) share, in X2
    /// order; each throws `invalid_request`.
    mutating func validatedTerms(
        subscriptionId: String, seats: Int64, unitPriceMinor: Int64, currency: String, timeZone: String,
        interval: EnumField<BillingInterval>, refundPolicy: EnumField<RefundPolicy>
    ) throws(DomainError) -> (Currency, TimeZoneRules, BillingInterval, RefundPolicy) {
        let scalarCount = subscriptionId.unicodeScalars.count
        guard scalarCount >= 1, scalarCount <= 255 else {
            throw DomainError.invalid("subscription_id must be 1 to 255 Unicode scalars")
        }
        guard seats >= 1, seats <= maxSeats else { throw DomainError.invalid("seats must be 1 to \(maxSeats)") }
        guard unitPriceMinor >= 0 else { throw DomainError.invalid("unit_price_minor must not be negative") }
        guard let code = Currency(code: currency) else { throw DomainError.invalid("unsupported currency \"\(currency)\"") }
        guard let zone = zoneRules(timeZone) else { throw DomainError.invalid("unknown time zone \"\(timeZone)\"") }
        guard let resolvedInterval = interval.resolved(default: nil) else {
            throw DomainError.invalid("interval must be monthly or annual")
        }
        guard let policy = refundPolicy.resolved(default: .anytime) else {
            throw DomainError.invalid("unknown refund policy \(refundPolicy.wireValue)")
        }
        return (code, zone, resolvedInterval, policy)
    }

    private mutating func create(_ request: CreateSubscriptionRequest, at now: Instant, dryRun: Bool)
        -> (outcome: Result<CommandResponse, DomainError>, changed: Bool, replayed: Bool) {
        do throws(DomainError) {
            let id = request.subscriptionId
            let (currency, zone, interval, policy) = try validatedTerms(
                subscriptionId: id, seats: request.seats, unitPriceMinor: request.unitPriceMinor,
                currency: request.currency, timeZone: request.timeZone, interval: request.interval,
                refundPolicy: request.refundPolicy)
            if !request.startDate.isEmpty {
                let today = zone.civilDate(of: now)
                guard let sent = CivilDate(request.startDate), sent == today else {
                    throw DomainError.invalid("start_date must be today's date in the time zone, \(today)")
                }
            }
            guard slotIndex(ScalarString(id)) == nil else { throw DomainError.subscriptionExists }
            var counters = self.counters
            let subscription = try Subscription.open(
                id: id, customer: request.customer, plan: request.plan, seats: request.seats,
                unitPriceMinor: request.unitPriceMinor, currency: currency, interval: interval, timeZone: zone,
                refundPolicy: policy, at: now, counters: &counters)
            let created = CreatedSubscription(subscription: subscription, purchaseInvoice: subscription.purchaseInvoice)
            if !dryRun {
                self.counters = counters
                insert(subscription)
                recordOpened(slot: slots.count - 1, imported: false, now: now)
            }
            return (.success(.created(created)), !dryRun, false)
        } catch {
            return (.failure(error), false, false)
        }
    }

    /// ImportSubscription (O5).
    private mutating func importSubscription(_ request: ImportSubscriptionRequest, at now: Instant, dryRun: Bool)
        -> (outcome: Result<CommandResponse, DomainError>, changed: Bool, replayed: Bool) {
        do throws(DomainError) {
            let (subscription, counters) = try buildImport(request, at: now)
            if !dryRun {
                self.counters = counters
                insert(subscription)
                recordOpened(slot: slots.count - 1, imported: true, now: now)
            }
            let imported = ImportedSubscription(subscription: subscription, openingInvoice: subscription.openingInvoice!)
            return (.success(.imported(imported)), !dryRun, false)
        } catch {
            return (.failure(error), false, false)
        }
    }

    // MARK: bookkeeping

    mutating func zoneRules(_ identifier: String) -> TimeZoneRules? {
        if let known = zones[identifier] { return known }
        guard let rules = TimeZoneRules(identifier: identifier) else { return nil }
        zones[identifier] = rules
        return rules
    }

    private mutating func insert(_ subscription: Subscription) {
        let key = ScalarString(subscription.id)
        let slot = Int32(slots.count)
        slots.append(subscription)
        slotByID.insert(key, slot: slot)
        sortedIDs.insert(key, slot: slot)
        book.addSubscription(subscription, slot: slot)
        if let due = subscription.nextDue { dueQueue.push(.init(due: due, slot: slot)) }
    }

    private mutating func advanceSlot(_ slot: Int, to now: Instant) -> Int {
        var count = 0
        while let due = slotNextDue(slot), due <= now {
            let ran = stepSlot(slot, to: now)
            if ran == 0 { break }
            count += ran
        }
        return count
    }

    /// Keeps the queue's top current, so `nextDueInstant` is exact, and its size bounded.
    private mutating func normalizeQueue() {
        if dueQueue.entries.count > 2 * slots.count + 1_024 {
            dueQueue.removeAll()
            for (slot, subscription) in slots.enumerated() {
                if let due = subscription.nextDue { dueQueue.push(.init(due: due, slot: Int32(slot))) }
            }
        }
        while let top = dueQueue.top, slotNextDue(Int(top.slot)) != top.due {
            dueQueue.pop()
        }
    }
}

extension Ledger: Equatable {
    /// Equal billing state: the derived indexes are left out.
    public static func == (lhs: Ledger, rhs: Ledger) -> Bool {
        lhs.maxSeats == rhs.maxSeats && lhs.counters == rhs.counters && lhs.slots == rhs.slots
            && lhs.idempotency.entries == rhs.idempotency.entries && lhs.feed == rhs.feed
    }
}
