// Book-wide indexes and counts (Q1–Q3): derived state, kept up to date by every change and
// rebuilt on decode; left out of `==` and of snapshots.

/// Counts and amounts over the whole book, maintained with each change so stats never scan.
public struct BookStats: Sendable, Hashable {
    // Plain arrays, indexed by the statuses' and states' raw values and by a currency's place
    // in `Currency.allCases`: every change of a credit updates two of them, and hashing a key
    // per update (a dictionary per figure) was ~3% of a journal replay's time.
    private var statusCounts = [Int](repeating: 0, count: 8)
    private var stateCounts = [Int](repeating: 0, count: 8)
    private var currencyTotals = [CreditTotals](repeating: CreditTotals(), count: Currency.places.count)

    public init() {}

    /// Subscriptions per status; a status with none is left out.
    public var subscriptionsByStatus: [SubscriptionStatus: Int] {
        var counts: [SubscriptionStatus: Int] = [:]
        for status in SubscriptionStatus.allCases where statusCounts[Int(status.rawValue)] != 0 {
            counts[status] = statusCounts[Int(status.rawValue)]
        }
        return counts
    }

    /// Credits per state; a state with none is left out.
    public var creditsByState: [CreditState: Int] {
        var counts: [CreditState: Int] = [:]
        for state in CreditState.allCases where stateCounts[Int(state.rawValue)] != 0 {
            counts[state] = stateCounts[Int(state.rawValue)]
        }
        return counts
    }

    /// Per currency, the L8 totals over every credit of the book; a currency whose totals are
    /// all zero is left out.
    public var totalsByCurrency: [Currency: CreditTotals] {
        var totals: [Currency: CreditTotals] = [:]
        for (place, currency) in Currency.places.enumerated() where currencyTotals[place] != CreditTotals() {
            totals[currency] = currencyTotals[place]
        }
        return totals
    }

    mutating func count(_ status: SubscriptionStatus, by delta: Int) {
        statusCounts[Int(status.rawValue)] += delta
    }

    mutating func count(_ state: CreditState, by delta: Int) {
        stateCounts[Int(state.rawValue)] += delta
    }

    /// Adds (`sign` 1) or takes away (`sign` -1) one credit: its state's count and its
    /// currency's totals.
    mutating func add(_ credit: Credit, currency: Currency, sign: Int) {
        count(credit.state, by: sign)
        currencyTotals[currency.place].add(credit, sign: sign)
    }

    /// Adds `totals` to `currency`'s (building the index from a snapshot).
    mutating func add(_ totals: CreditTotals, currency: Currency) {
        currencyTotals[currency.place].add(totals)
    }

    /// The subscription counts of `other` in place of these (the index's parts are built apart).
    mutating func takeSubscriptionCounts(of other: BookStats) {
        statusCounts = other.statusCounts
    }
}

extension Currency {
    /// Every currency, in the order of `allCases`; a currency's index here is its `place`.
    static let places = Currency.allCases

    /// The index of per-currency arrays. The list is short: a linear search, no hashing.
    var place: Int { Currency.places.firstIndex(of: self)! }
}

extension CreditTotals {
    /// Adds (`sign` 1) or takes away (`sign` -1) one credit's amounts (L8).
    mutating func add(_ credit: Credit, sign: Int) {
        add(CreditLeadingFields(credit), sign: sign)
    }

    /// Adds another set of totals, field by field.
    mutating func add(_ other: CreditTotals) {
        pendingMinor &+= other.pendingMinor
        appliedMinor &+= other.appliedMinor
        refundPendingMinor &+= other.refundPendingMinor
        consumedMinor &+= other.consumedMinor
        refundedMinor &+= other.refundedMinor
    }

    mutating func add(_ credit: CreditLeadingFields, sign: Int) {
        let factor = Int64(sign)
        switch credit.state {
        case .pending: pendingMinor &+= factor &* credit.remainingMinor
        case .applied: appliedMinor &+= factor &* credit.remainingMinor
        case .refundPending: refundPendingMinor &+= factor &* credit.remainingMinor
        default: break
        }
        consumedMinor &+= factor &* credit.consumedMinor
        refundedMinor &+= factor &* credit.refundedMinor
    }
}

/// Credits flagged overdue or refund-overdue as of an instant (L6), per currency.
public struct OverdueTotals: Sendable, Hashable {
    public struct Amount: Sendable, Hashable {
        public var count = 0
        /// The sum of `remainingMinor`.
        public var remainingMinor: Int64 = 0
    }
    public var overdue: [Currency: Amount] = [:]
    public var refundOverdue: [Currency: Amount] = [:]
}

/// What one customer has: subscription ids (for ListSubscriptions) and credit serials.
struct CustomerEntry: Sendable {
    var subscriptions = ChunkedSortedSet<ScalarString>()
    var credits = ChunkedSortedSet<UInt64>()
}

/// The book's indexes. Credits are keyed by serial, which is their creation order across
/// creditd (serials are taken from one counter, only by committed changes).
struct BookIndex: Sendable {
    /// Every credit by serial, with the slot of its subscription.
    var creditLocations = ChunkedSortedSet<CreditLocation>()
    /// Indexed by `CreditState.rawValue`.
    var creditsByState = [ChunkedSortedSet<UInt64>](repeating: .init(), count: 8)
    /// Indexed by `Currency.place`.
    var creditsByCurrency = [ChunkedSortedSet<UInt64>](repeating: .init(), count: Currency.places.count)
    var customers = SlottedMap<CustomerEntry>()
    /// Indexed by `SubscriptionStatus.rawValue`.
    var subscriptionsByStatus = [ChunkedSortedSet<ScalarString>](repeating: .init(), count: 5)
    /// `pending` credits, due from 00:00 local on `expectedBy + 1` (L6 `overdue`).
    var overdue = ChunkedSortedSet<DueSerial>()
    /// `refund_pending` credits, and `applied` ones after a `refund_failed`, due from 00:00
    /// local on `refundExpectedBy + 1` (L6 `refundOverdue`).
    var refundOverdue = ChunkedSortedSet<DueSerial>()
    var stats = BookStats()

    init() {}

    /// The indexes of `slots`; `idOrder` is the slots in id order. Built in three parts on
    /// the cores (`concurrently`, by default from 4,096 subscriptions): the credit sets and
    /// counts, the per-customer and per-status sets, and the overdue flags.
    init(slots: [Subscription], idOrder: [Int32], nextCreditSerial: UInt64, concurrently: Bool? = nil) {
        self = slots.withUnsafeBufferPointer {
            BookIndex(slots: $0, idOrder: idOrder, nextCreditSerial: nextCreditSerial, concurrently: concurrently)
        }
    }

    /// `init(slots:idOrder:nextCreditSerial:concurrently:)` over subscriptions where they are
    /// (recovery's: in the boxes it decoded them into). `locations`, if given, must be those of
    /// `slots`.
    init<Slots: RandomAccessCollection<Subscription> & SendableMetatype>(slots: Slots, idOrder: [Int32], nextCreditSerial: UInt64,
                                                                concurrently: Bool? = nil,
                                                                locations: CreditLocations? = nil) where Slots.Index == Int {
        // Credits in serial order, so every set is built by appends.
        let locations = locations?.sorted ?? CreditLocations.sorted(of: slots)
        let parts = Unchecked(UnsafeMutableBufferPointer<BookIndex>.allocate(capacity: 3))
        parts.value.initialize(repeating: BookIndex())
        defer {
            parts.value.deinitialize()
            parts.value.deallocate()
        }
        let sortedLocations = locations
        // Three parts on the two cores, taken in turn as each core comes free: the per-credit
        // sets and counts; the per-subscription and per-customer sets; the overdue flags (a
        // local midnight per credit). As two halves, with the flags beside the customers, one
        // half took 0.87 s and the other 0.55 s at a million subscriptions. The credits' parts
        // read only the fields each credit's record stores first: decoding five million
        // credits whole took 0.6 s of the flags' part alone.
        let shared = Unchecked(slots)
        let small = !(concurrently ?? (slots.count >= 4_096))
        runConcurrently(small ? 1 : 3) { task in
            let slots = shared.value
            if task == 0 {
                var index = BookIndex()
                // Per currency and per state in plain arrays, moved into the dictionaries at the
                // end: hashing a key per credit was most of this half's time. A book has few
                // currencies, so finding one's place by a linear search is cheap.
                var currencies: [Currency] = []
                var setsByCurrency: [ChunkedSortedSet<UInt64>] = []
                var totalsByCurrency: [CreditTotals] = []
                var countsByState = [Int](repeating: 0, count: index.creditsByState.count)
                for location in sortedLocations {
                    let slot = Int(location.slot)
                    let credit = slots[slot].credits.leadingFields(at: Int(location.index))
                    let currency = slots[slot].currency
                    index.creditLocations.insert(CreditLocation(serial: location.serial, slot: location.slot))
                    index.creditsByState[Int(credit.state.rawValue)].insert(credit.serial)
                    countsByState[Int(credit.state.rawValue)] += 1
                    let place: Int
                    if let known = currencies.firstIndex(of: currency) {
                        place = known
                    } else {
                        place = currencies.count
                        currencies.append(currency)
                        setsByCurrency.append(.init())
                        totalsByCurrency.append(CreditTotals())
                    }
                    setsByCurrency[place].insert(credit.serial)
                    totalsByCurrency[place].add(credit, sign: 1)
                }
                for state in CreditState.allCases {
                    index.stats.count(state, by: countsByState[Int(state.rawValue)])
                }
                while let set = setsByCurrency.popLast() {
                    let currency = currencies.removeLast(), totals = totalsByCurrency.removeLast()
                    index.creditsByCurrency[currency.place] = set
                    index.stats.add(totals, currency: currency)
                }
                parts.value[0] = index
            }
            if task == 1 || small {
                var index = BookIndex()
                // Customers numbered in order of first appearance, so each credit below finds its
                // customer's entry through its slot instead of hashing the customer's id again.
                var customerNumbers: [ScalarString: Int32] = [:]
                var customerIDs: [ScalarString] = []
                var entries: [CustomerEntry] = []
                var customerOfSlot = [Int32](repeating: 0, count: slots.count)
                for slot in idOrder {
                    let id = ScalarString(slots[Int(slot)].id)
                    let status = slots[Int(slot)].status
                    index.subscriptionsByStatus[Int(status.rawValue)].insert(id)
                    index.stats.count(status, by: 1)
                    let customer = ScalarString(slots[Int(slot)].customer)
                    let number: Int32
                    if let known = customerNumbers[customer] {
                        number = known
                    } else {
                        number = Int32(entries.count)
                        customerNumbers[customer] = number
                        customerIDs.append(customer)
                        entries.append(CustomerEntry())
                    }
                    customerOfSlot[Int(slot)] = number
                    entries[Int(number)].subscriptions.insert(id)
                }
                // Each customer's credits, in serial order.
                for location in sortedLocations {
                    entries[Int(customerOfSlot[Int(location.slot)])].credits.insert(location.serial)
                }
                // Moved, not copied, into the map: a copy would be shared and copied again on
                // the customer's next change.
                index.customers.reserveCapacity(entries.count)
                while let entry = entries.popLast() {
                    let customer = customerIDs.removeLast()
                    index.customers.update(customer, default: entry) { _ in }
                }
                parts.value[1] = index
            }
            if task == 2 || small {
                var index = BookIndex()
                for location in sortedLocations {
                    let slot = Int(location.slot)
                    index.updateFlags(nil, slots[slot].credits.leadingFields(at: Int(location.index)), zone: slots[slot].timeZone)
                }
                parts.value[2] = index
            }
        }
        self = parts.value[0]
        customers = parts.value[1].customers
        subscriptionsByStatus = parts.value[1].subscriptionsByStatus
        stats.takeSubscriptionCounts(of: parts.value[1].stats)
        overdue = parts.value[2].overdue
        refundOverdue = parts.value[2].refundOverdue
    }

    /// The state and currency sets, the flag sets and the counts of a new credit.
    private mutating func addCreditToSets(_ credit: Credit, currency: Currency, zone: TimeZoneRules) {
        creditsByState[Int(credit.state.rawValue)].insert(credit.serial)
        creditsByCurrency[currency.place].insert(credit.serial)
        updateFlags(nil, credit, zone: zone)
        stats.add(credit, currency: currency, sign: 1)
    }

    // MARK: maintenance

    mutating func addSubscription(_ subscription: Subscription, slot: Int32) {
        let id = ScalarString(subscription.id)
        subscriptionsByStatus[Int(subscription.status.rawValue)].insert(id)
        customers.update(ScalarString(subscription.customer), default: CustomerEntry()) { $0.subscriptions.insert(id) }
        stats.count(subscription.status, by: 1)
        for credit in subscription.credits { addCredit(credit, of: subscription, slot: slot) }
    }

    mutating func statusChanged(_ subscription: Subscription, from old: SubscriptionStatus) {
        guard old != subscription.status else { return }
        let id = ScalarString(subscription.id)
        subscriptionsByStatus[Int(old.rawValue)].remove(id)
        subscriptionsByStatus[Int(subscription.status.rawValue)].insert(id)
        stats.count(old, by: -1)
        stats.count(subscription.status, by: 1)
    }

    mutating func addCredit(_ credit: Credit, of subscription: Subscription, slot: Int32) {
        creditLocations.insert(CreditLocation(serial: credit.serial, slot: slot))
        addCreditEntries(credit, of: subscription)
    }

    private mutating func addCreditEntries(_ credit: Credit, of subscription: Subscription) {
        addCreditToSets(credit, currency: subscription.currency, zone: subscription.timeZone)
        customers.update(ScalarString(subscription.customer), default: CustomerEntry()) { $0.credits.insert(credit.serial) }
    }

    /// A credit changed from `old` to `new` (same serial).
    mutating func creditChanged(from old: Credit, to new: Credit, of subscription: Subscription) {
        if old.state != new.state {
            creditsByState[Int(old.state.rawValue)].remove(old.serial)
            creditsByState[Int(new.state.rawValue)].insert(new.serial)
        }
        updateFlags(old, new, zone: subscription.timeZone)
        stats.add(old, currency: subscription.currency, sign: -1)
        stats.add(new, currency: subscription.currency, sign: 1)
    }

    private mutating func updateFlags(_ old: Credit?, _ new: Credit, zone: TimeZoneRules) {
        updateFlags(old.map(CreditLeadingFields.init), CreditLeadingFields(new), zone: zone)
    }

    private mutating func updateFlags(_ old: CreditLeadingFields?, _ new: CreditLeadingFields, zone: TimeZoneRules) {
        let wasOverdueCandidate = old?.state == .pending
        if new.state == .pending, !wasOverdueCandidate {
            overdue.insert(DueSerial(serial: new.serial, due: BookIndex.dayAfter(new.expectedBy, zone)))
        } else if new.state != .pending, wasOverdueCandidate {
            overdue.remove(DueSerial(serial: new.serial, due: 0))
        }
        let was = old?.isRefundOverdueCandidate ?? false
        let now = new.isRefundOverdueCandidate
        if now, !was, let date = new.refundExpectedBy {
            refundOverdue.insert(DueSerial(serial: new.serial, due: BookIndex.dayAfter(date, zone)))
        } else if was, !now {
            refundOverdue.remove(DueSerial(serial: new.serial, due: 0))
        }
    }

    /// The subscription that holds the credit with this serial.
    func subscription(ofCredit serial: UInt64, in ledger: Ledger) -> Subscription? {
        creditLocations.find(CreditLocation(serial: serial, slot: 0)).map { ledger.slotValue(Int($0.slot)) }
    }


    /// 00:00 local on `date + 1`: from then on, the as-of date is after `date`.
    static func dayAfter(_ date: CivilDate, _ zone: TimeZoneRules) -> Int64 {
        zone.startOfDay(date.adding(days: 1)).nanosecondsSinceEpoch
    }
}

extension Subscription {
    /// The credit with this serial.
    func credit(serial: UInt64) -> Credit? {
        creditIndex(serial: serial).map { credits[$0] }
    }
}

// MARK: ListCredits (Q1) and ListSubscriptions filters (Q2)

/// Q1 filters; they combine with AND, and an empty value is no filter.
public struct CreditFilter: Sendable, Hashable {
    public var states: [EnumField<CreditState>]
    public var overdueOnly: Bool
    public var refundOverdueOnly: Bool
    public var customer: String
    public var subscriptionId: String
    public var currency: String

    public init(states: [EnumField<CreditState>] = [], overdueOnly: Bool = false, refundOverdueOnly: Bool = false,
                customer: String = "", subscriptionId: String = "", currency: String = "") {
        self.states = states
        self.overdueOnly = overdueOnly
        self.refundOverdueOnly = refundOverdueOnly
        self.customer = customer
        self.subscriptionId = subscriptionId
        self.currency = currency
    }
}

/// One credit of a ListCredits page: L7 with the L6 flags as of the request, plus its owner.
public struct CreditListing: Sendable, Hashable {
    public let subscriptionId: String
    public let customer: String
    public let currency: Currency
    /// The subscription's zone: the history's dates are civil dates in it.
    public let timeZone: TimeZoneRules
    /// The as-of date in the subscription's zone.
    public let asOfDate: CivilDate
    public let status: CreditStatus

    public var credit: Credit { status.credit }
}

/// One page of ListCredits.
public struct CreditPage: Sendable, Hashable {
    public let credits: [CreditListing]
    /// Empty only when the listing has ended (Q1).
    public let nextPageToken: String
}

extension Ledger {
    /// The most index entries one page examines when several filters combine (Q3); the page is
    /// then short, and its token goes on from where it stopped.
    static let pageScanBudget = 20_000

    /// Q1/Q2 page sizes: 0 means 100; negative or above 1000 → `invalid_request`.
    static func pageLimit(_ pageSize: Int32) throws(DomainError) -> Int {
        guard pageSize >= 0, pageSize <= 1_000 else { throw DomainError.invalid("page_size must be 0 to 1000") }
        return pageSize == 0 ? 100 : Int(pageSize)
    }

    /// A credit page token: the serial of the last credit examined, opaque to clients.
    static func creditToken(_ serial: UInt64) -> String { "c" + String(serial, radix: 36) }

    /// The page token of ListSubscriptions (Q2) after subscription `id`: "s", a check of the
    /// id (FNV-1a, 32 bits, 8 hex digits), and the id's UTF-8 in hex, all lowercase. Opaque, as
    /// Q1 asks: the token used to be the raw id, so no text could be malformed ("garbage" was
    /// read as a position), and the check keeps an old raw-id token that happens to look like
    /// hex ("s2024") from being read as some other position rather than refused.
    static func subscriptionToken(after id: ScalarString) -> String {
        let bytes = Array(id.value.utf8)
        var token: [UInt8] = [UInt8(ascii: "s")]
        token.reserveCapacity(9 + 2 * bytes.count)
        appendHex(tokenCheck(bytes), to: &token)
        for byte in bytes { appendHex(UInt32(byte), digits: 2, to: &token) }
        return String(decoding: token, as: UTF8.self)
    }

    /// The id a ListSubscriptions token names; nil for the first page. Anything that is not
    /// such a token, for an id of 1-255 Unicode scalars, is `invalid_request`.
    static func subscriptionPosition(_ token: String) throws(DomainError) -> ScalarString? {
        if token.isEmpty { return nil }
        let digits = Array(token.utf8.dropFirst())
        func value(_ digit: UInt8) -> UInt8? {
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
            default: nil
            }
        }
        var decoded: [UInt8] = []
        if token.utf8.first == UInt8(ascii: "s"), digits.count >= 10, digits.count % 2 == 0, digits.count <= 8 + 2 * 4 * 255 {
            decoded.reserveCapacity(digits.count / 2)
            for index in stride(from: 0, to: digits.count, by: 2) {
                guard let high = value(digits[index]), let low = value(digits[index + 1]) else { decoded = []; break }
                decoded.append(high << 4 | low)
            }
        }
        guard decoded.count >= 5 else { throw Self.unknownSubscriptionToken }
        let check = decoded[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let bytes = Array(decoded[4...])
        guard check == tokenCheck(bytes), let id = String(validating: bytes, as: UTF8.self), id.unicodeScalars.count <= 255 else {
            throw Self.unknownSubscriptionToken
        }
        return ScalarString(id)
    }

    /// A token this release did not issue: malformed, or one of the raw ids that releases
    /// before the opaque tokens handed out (refused rather than guessed at: "s12" may be either).
    static var unknownSubscriptionToken: DomainError {
        DomainError.invalid("malformed page_token: not one this release issued (a listing begun before an upgrade starts again from its first page)")
    }

    /// FNV-1a over `bytes`: not a secret, only a check that a token was made by `subscriptionToken`.
    private static func tokenCheck(_ bytes: [UInt8]) -> UInt32 {
        bytes.reduce(UInt32(2_166_136_261)) { ($0 ^ UInt32($1)) &* 16_777_619 }
    }

    private static func appendHex(_ value: UInt32, digits: Int = 8, to out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        for shift in stride(from: 4 * (digits - 1), through: 0, by: -4) { out.append(hex[Int(value >> UInt32(shift) & 0xF)]) }
    }

    static func creditPosition(_ token: String) throws(DomainError) -> UInt64? {
        if token.isEmpty { return nil }
        guard token.hasPrefix("c"), token.count > 1, token.count <= 14,
              token.utf8.dropFirst().allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x7a).contains($0) }),
              let serial = UInt64(token.dropFirst(), radix: 36) else {
            throw DomainError.invalid("malformed page_token")
        }
        return serial
    }

    /// ListCredits (Q1) as of `asOf`: credits across all subscriptions in creation order.
    /// Served from the narrowest index; with one filter (or none) a page costs O(page size +
    /// log n). Reads recorded state only; no transition runs.
    public func listCredits(filter: CreditFilter, pageSize: Int32, pageToken: String,
                            asOf: Instant) throws(DomainError) -> CreditPage {
        let limit = try Ledger.pageLimit(pageSize)
        var states = Set<CreditState>()
        for state in filter.states {
            guard case .known(let known) = state else { throw DomainError.invalid("unknown credit state \(state.wireValue)") }
            states.insert(known)
        }
        var currency: Currency?
        if !filter.currency.isEmpty {
            guard let known = Currency(code: filter.currency) else {
                throw DomainError.invalid("unsupported currency \"\(filter.currency)\"")
            }
            currency = known
        }
        let after = try Ledger.creditPosition(pageToken)
        let customer = filter.customer.isEmpty ? nil : ScalarString(filter.customer)
        let asOfNanos = asOf.nanosecondsSinceEpoch

        func matches(_ credit: Credit, _ subscription: Subscription) -> CreditListing? {
            if !states.isEmpty, !states.contains(credit.state) { return nil }
            if let currency, subscription.currency != currency { return nil }
            if let customer, ScalarString(subscription.customer) != customer { return nil }
            let date = subscription.timeZone.civilDate(of: asOf)
            let status = CreditStatus(credit: credit, asOf: date)
            if filter.overdueOnly, !status.overdue { return nil }
            if filter.refundOverdueOnly, !status.refundOverdue { return nil }
            return CreditListing(subscriptionId: subscription.id, customer: subscription.customer,
                                 currency: subscription.currency, timeZone: subscription.timeZone, asOfDate: date,
                                 status: status)
        }

        var listed: [CreditListing] = []
        // One subscription: its own credits, in serial order.
        if !filter.subscriptionId.isEmpty {
            guard let slot = slotIndex(ScalarString(filter.subscriptionId)) else {
                return CreditPage(credits: [], nextPageToken: "")
            }
            let subscription = slotValue(slot)
            var index = after.map { subscription.creditIndex(afterSerial: $0) } ?? 0
            var examined = 0
            while index < subscription.credits.count {
                if listed.count == limit || examined == Ledger.pageScanBudget {
                    return CreditPage(credits: listed, nextPageToken: Ledger.creditToken(subscription.credits[index - 1].serial))
                }
                examined += 1
                if let listing = matches(subscription.credits[index], subscription) { listed.append(listing) }
                index += 1
            }
            return CreditPage(credits: listed, nextPageToken: "")
        }

        // Otherwise the narrowest of the indexes that apply.
        var sources: [(size: Int, cursors: [ChunkedSortedSet<UInt64>.Cursor]?, due: ChunkedSortedSet<DueSerial>.Cursor?)] = []
        if !states.isEmpty {
            let sets = states.map { book.creditsByState[Int($0.rawValue)] }
            sources.append((sets.reduce(0) { $0 + $1.count }, sets.map { $0.cursor(after: after) }, nil))
        }
        if let customer {
            let set = book.customers[customer]?.credits ?? .init()
            sources.append((set.count, [set.cursor(after: after)], nil))
        }
        if let currency {
            let set = book.creditsByCurrency[currency.place]
            sources.append((set.count, [set.cursor(after: after)], nil))
        }
        // The flag sets hold candidates; only those due by `asOf` can match.
        let afterDue = after.map { DueSerial(serial: $0, due: 0) }
        if filter.overdueOnly {
            sources.append((book.overdue.count, nil, book.overdue.cursor(after: afterDue, dueAtOrBefore: asOfNanos)))
        }
        if filter.refundOverdueOnly {
            sources.append((book.refundOverdue.count, nil, book.refundOverdue.cursor(after: afterDue, dueAtOrBefore: asOfNanos)))
        }
        var next: () -> UInt64?
        if var chosen = sources.min(by: { $0.size < $1.size }) {
            if var due = chosen.due {
                next = { due.next()?.serial }
            } else {
                var heads = chosen.cursors!.indices.map { chosen.cursors![$0].next() }
                next = {
                    // The smallest head of the (disjoint) state sets.
                    var best: Int?
                    for index in heads.indices {
                        if let head = heads[index], best == nil || head < heads[best!]! { best = index }
                    }
                    guard let best else { return nil }
                    let value = heads[best]
                    heads[best] = chosen.cursors![best].next()
                    return value
                }
            }
        } else {
            // No filter: every credit by serial.
            var cursor = book.creditLocations.cursor(after: after.map { CreditLocation(serial: $0, slot: 0) })
            next = { cursor.next()?.serial }
        }
        var examined = 0
        var lastExamined: UInt64 = 0
        while let serial = next() {
            if listed.count == limit || examined == Ledger.pageScanBudget {
                return CreditPage(credits: listed, nextPageToken: Ledger.creditToken(lastExamined))
            }
            examined += 1
            lastExamined = serial
            guard let subscription = book.subscription(ofCredit: serial, in: self),
                  let credit = subscription.credit(serial: serial) else { continue }
            if let listing = matches(credit, subscription) { listed.append(listing) }
        }
        return CreditPage(credits: listed, nextPageToken: "")
    }

    /// ListSubscriptions (Q2) with its filters, in id order (Unicode scalar order). The token
    /// is the last id examined. `customer` and `statuses` empty mean no filter.
    public func listSubscriptions(pageSize: Int32, pageToken: String, customer: String,
                                  statuses: [EnumField<SubscriptionStatus>]) throws(DomainError) -> SubscriptionPage {
        let limit = try Ledger.pageLimit(pageSize)
        var wanted = Set<SubscriptionStatus>()
        for status in statuses {
            guard case .known(let known) = status else { throw DomainError.invalid("unknown status \(status.wireValue)") }
            wanted.insert(known)
        }
        let after = try Ledger.subscriptionPosition(pageToken)
        let customerKey = customer.isEmpty ? nil : ScalarString(customer)
        if customerKey == nil, wanted.isEmpty {
            return try listSubscriptions(pageSize: Int32(limit), pageToken: pageToken)
        }
        var cursors: [ChunkedSortedSet<ScalarString>.Cursor]
        let customerSet = customerKey.map { book.customers[$0]?.subscriptions ?? .init() }
        let statusSets = wanted.map { book.subscriptionsByStatus[Int($0.rawValue)] }
        if let customerSet, wanted.isEmpty || customerSet.count <= statusSets.reduce(0, { $0 + $1.count }) {
            cursors = [customerSet.cursor(after: after)]
        } else {
            cursors = statusSets.map { $0.cursor(after: after) }
        }
        var heads = cursors.indices.map { cursors[$0].next() }
        var list: [Subscription] = []
        var examined = 0
        var lastExamined: ScalarString?
        while true {
            var best: Int?
            for index in heads.indices {
                if let head = heads[index], best == nil || head < heads[best!]! { best = index }
            }
            guard let best, let id = heads[best] else { break }
            if list.count == limit || examined == Ledger.pageScanBudget {
                return SubscriptionPage(subscriptions: list, nextPageToken: lastExamined.map { Ledger.subscriptionToken(after: $0) } ?? "")
            }
            heads[best] = cursors[best].next()
            examined += 1
            lastExamined = id
            guard let slot = slotIndex(id) else { continue }
            let subscription = slotValue(slot)
            if let customerKey, ScalarString(subscription.customer) != customerKey { continue }
            if !wanted.isEmpty, !wanted.contains(subscription.status) { continue }
            list.append(subscription)
        }
        return SubscriptionPage(subscriptions: list, nextPageToken: "")
    }

    // MARK: counts

    /// Book-wide counts and amounts, maintained with every change (no scan).
    public var bookStats: BookStats { book.stats }

    /// Overdue and refund-overdue counts and remaining amounts per currency as of `asOf` (L6).
    /// Not maintained incrementally (the flags depend on the as-of date): it walks only the
    /// candidates due by `asOf` — normally none for `overdue`, and the refund-overdue backlog —
    /// skipping chunks of 1,024 candidates whose earliest due instant is later.
    public func overdueTotals(asOf: Instant) -> OverdueTotals {
        var totals = OverdueTotals()
        let limit = asOf.nanosecondsSinceEpoch
        for (set, refund) in [(book.overdue, false), (book.refundOverdue, true)] {
            var cursor = set.cursor(after: nil, dueAtOrBefore: limit)
            while let entry = cursor.next() {
                guard let subscription = book.subscription(ofCredit: entry.serial, in: self),
                      let credit = subscription.credit(serial: entry.serial) else { continue }
                if refund {
                    totals.refundOverdue[subscription.currency, default: .init()].count += 1
                    totals.refundOverdue[subscription.currency, default: .init()].remainingMinor &+= credit.remainingMinor
                } else {
                    totals.overdue[subscription.currency, default: .init()].count += 1
                    totals.overdue[subscription.currency, default: .init()].remainingMinor &+= credit.remainingMinor
                }
            }
        }
        return totals
    }
}

extension Subscription {
    /// The index of the first credit with a serial above `serial`.
    func creditIndex(afterSerial serial: UInt64) -> Int {
        var low = 0
        var high = credits.count
        while low < high {
            let mid = (low + high) / 2
            if credits[mid].serial <= serial { low = mid + 1 } else { high = mid }
        }
        return low
    }
}

/// The fields a packed credit record stores first (`CreditRecord`): all that the book's sets,
/// totals and overdue flags (L6) need of a credit. Taken from a `Credit`, or read from the packed
/// record without decoding the rest (`CreditList.leadingFields(at:)`).
struct CreditLeadingFields {
    let serial: UInt64
    let state: CreditState
    let hadRefundFailure: Bool
    let amountMinor: Int64
    let remainingMinor: Int64
    let consumedMinor: Int64
    let expectedBy: CivilDate
    let refundExpectedBy: CivilDate?

    init(serial: UInt64, state: CreditState, hadRefundFailure: Bool, amountMinor: Int64, remainingMinor: Int64,
         consumedMinor: Int64, effectiveDate: CivilDate, dueDateOffset: UInt16, refundExpectedByOffset: UInt8) {
        self.serial = serial
        self.state = state
        self.hadRefundFailure = hadRefundFailure
        self.amountMinor = amountMinor
        self.remainingMinor = remainingMinor
        self.consumedMinor = consumedMinor
        expectedBy = Credit.expectedBy(effectiveDate: effectiveDate, dueDateOffset: dueDateOffset)
        refundExpectedBy = Credit.refundExpectedBy(expectedBy: expectedBy, refundExpectedByOffset: refundExpectedByOffset)
    }

    init(_ credit: Credit) {
        self.init(serial: credit.serial, state: credit.state, hadRefundFailure: credit.hadRefundFailure,
                  amountMinor: credit.amountMinor, remainingMinor: credit.remainingMinor,
                  consumedMinor: credit.consumedMinor, effectiveDate: credit.effectiveDate,
                  dueDateOffset: credit.dueDateOffset, refundExpectedByOffset: credit.refundExpectedByOffset)
    }

    /// As `Credit.refundedMinor`.
    var refundedMinor: Int64 { amountMinor - remainingMinor - consumedMinor }

    /// L6 `refundOverdue` can become true for this credit (given the date).
    var isRefundOverdueCandidate: Bool {
        refundExpectedBy != nil && (state == .refundPending || (state == .applied && hadRefundFailure))
    }
}

/// Every credit's place (its subscription's slot and its position in that subscription's
/// list), in serial order: the book's indexes are built from it by appends. Recovery finds it
/// beside its other indexes (`LedgerAssembly`), where a core would otherwise wait for the
/// slower of those, rather than before building the book, with the other core idle.
package struct CreditLocations: Sendable {
    let sorted: [(serial: UInt64, slot: Int32, index: Int32)]

    package init(_ slots: BoxedElements<Subscription>) {
        sorted = Self.sorted(of: slots)
    }

    static func sorted<Slots: RandomAccessCollection<Subscription>>(of slots: Slots) -> [(serial: UInt64, slot: Int32, index: Int32)]
        where Slots.Index == Int {
        var locations: [(serial: UInt64, slot: Int32, index: Int32)] = []
        locations.reserveCapacity(slots.reduce(0) { $0 + $1.credits.count })
        for slot in slots.indices {
            slots[slot].credits.scanSerials { index, serial in
                locations.append((serial, Int32(slot), Int32(index)))
                return true
            }
        }
        locations.sort { $0.serial < $1.serial }
        return locations
    }
}
