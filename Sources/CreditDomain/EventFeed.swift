// The event feed (E1–E5): what each committed change recorded, in one gap-free sequence.

/// E1 event types. Raw values are stable: they are part of the snapshot format.
public enum EventType: Int32, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case subscriptionCreated = 1
    case subscriptionImported = 2
    case seatsChanged = 3
    case seatChangeScheduled = 4
    case scheduledSeatsApplied = 5
    case cancelRecorded = 6
    case subscriptionResumed = 7
    case subscriptionEnded = 8
    case periodRenewed = 9
    case invoiceIssued = 10
    case invoiceSettled = 11
    case creditStateChanged = 12

    /// The snake_case name of the spec (`credit_state_changed`).
    public var name: String {
        switch self {
        case .subscriptionCreated: return "subscription_created"
        case .subscriptionImported: return "subscription_imported"
        case .seatsChanged: return "seats_changed"
        case .seatChangeScheduled: return "seat_change_scheduled"
        case .scheduledSeatsApplied: return "scheduled_seats_applied"
        case .cancelRecorded: return "cancel_recorded"
        case .subscriptionResumed: return "subscription_resumed"
        case .subscriptionEnded: return "subscription_ended"
        case .periodRenewed: return "period_renewed"
        case .invoiceIssued: return "invoice_issued"
        case .invoiceSettled: return "invoice_settled"
        case .creditStateChanged: return "credit_state_changed"
        }
    }

    public var description: String { name }
}

/// The subscription as O3 gives it, without its credits and invoices: what events carry.
public struct SubscriptionView: Sendable, Hashable {
    public let id: String
    public let customer: String
    public let plan: String
    public let status: SubscriptionStatus
    /// 0 after an effective cancel.
    public let seats: Int64
    public let unitPriceMinor: Int64
    public let currency: Currency
    public let schedule: BillingSchedule
    public let timeZone: TimeZoneRules
    public let refundPolicy: RefundPolicy
    public let startDate: CivilDate
    /// The current period (after an effective cancel: the last one).
    public let period: BillingPeriod
    /// A scheduled `at_renewal` count (S6), nil when none.
    public let scheduledSeats: Int64?

    public init(_ subscription: Subscription) {
        self.init(id: subscription.id, customer: subscription.customer, plan: subscription.plan,
                  status: subscription.status, seats: subscription.seats, unitPriceMinor: subscription.unitPriceMinor,
                  currency: subscription.currency, schedule: subscription.schedule, timeZone: subscription.timeZone,
                  refundPolicy: subscription.refundPolicy, startDate: subscription.startDate,
                  period: subscription.period, scheduledSeats: subscription.scheduledSeats)
    }

    package init(id: String, customer: String, plan: String, status: SubscriptionStatus, seats: Int64, unitPriceMinor: Int64,
         currency: Currency, schedule: BillingSchedule, timeZone: TimeZoneRules, refundPolicy: RefundPolicy,
         startDate: CivilDate, period: BillingPeriod, scheduledSeats: Int64?) {
        self.id = id
        self.customer = customer
        self.plan = plan
        self.status = status
        self.seats = seats
        self.unitPriceMinor = unitPriceMinor
        self.currency = currency
        self.schedule = schedule
        self.timeZone = timeZone
        self.refundPolicy = refundPolicy
        self.startDate = startDate
        self.period = period
        self.scheduledSeats = scheduledSeats
    }

    public var interval: BillingInterval { schedule.interval }
    /// `periodEnd` while `active`, nil otherwise (O3).
    public var nextBillingDate: CivilDate? { status == .active ? period.end : nil }
}

/// What an event gives besides its common fields (E2). Indirect: the payload lives in one heap
/// box, so an event in the feed's chunks takes ~80 bytes inline instead of ~520 (the largest case).
public indirect enum EventPayload: Sendable, Hashable {
    /// Created, imported, resumed, ended, renewed, scheduled seats applied: the subscription
    /// right after the change.
    case subscription(SubscriptionView)
    /// `seats_changed` and `seat_change_scheduled`: the subscription and the S8 result.
    case seatChange(SubscriptionView, SeatChangeResult)
    /// `cancel_recorded`: the subscription and the C8 record.
    case cancel(SubscriptionView, CancellationRecord)
    /// `invoice_issued`, `invoice_settled`.
    case invoice(Invoice)
    /// `credit_state_changed`: the history entry and the credit as it stood after the command.
    case creditState(CreditStateChange, Credit)
}

/// One event of the feed (E1, E2).
public struct LedgerEvent: Sendable, Hashable {
    public let seq: UInt64
    public let type: EventType
    /// The instant the event is dated at (time-driven: 00:00 local on the due date, T6).
    public let at: Instant
    /// `at`'s civil date in the subscription's zone.
    public let date: CivilDate
    public let subscriptionId: String
    public let customer: String
    /// When the command that recorded it ran (retention counts from here, E5).
    public let recordedAt: Instant
    public let payload: EventPayload

    public init(seq: UInt64, type: EventType, at: Instant, date: CivilDate, subscriptionId: String, customer: String,
                recordedAt: Instant, payload: EventPayload) {
        self.seq = seq
        self.type = type
        self.at = at
        self.date = date
        self.subscriptionId = subscriptionId
        self.customer = customer
        self.recordedAt = recordedAt
        self.payload = payload
    }

    /// The history entry of a `credit_state_changed` event.
    public var creditChange: (change: CreditStateChange, credit: Credit)? {
        if case .creditState(let change, let credit) = payload { return (change, credit) }
        return nil
    }
}

/// E5: an event may be pruned only when it is older than `minimumAgeNanoseconds` (from when
/// it was recorded) and outside the newest `minimumCount`. The domain takes any positive
/// values; the daemon refuses less than the spec's 45 days and 1,000,000 events.
public struct EventRetention: Sendable, Hashable {
    public var minimumAgeNanoseconds: Int64
    public var minimumCount: Int

    public init(minimumAgeNanoseconds: Int64, minimumCount: Int) {
        self.minimumAgeNanoseconds = max(minimumAgeNanoseconds, 0)
        self.minimumCount = max(minimumCount, 0)
    }

    public static let specMinimum = EventRetention(minimumAgeNanoseconds: 45 * 24 * Instant.nanosecondsPerHour,
                                                   minimumCount: 1_000_000)
}

/// One page of ListEvents (E4).
public struct EventPage: Sendable, Hashable {
    public let events: [LedgerEvent]
    /// The position to ask from next: the seq of the last event examined (`lastSeq` when the
    /// scan reached the end of the feed).
    public let nextAfterSeq: UInt64
    /// The newest committed seq (0 when none was ever recorded).
    public let lastSeq: UInt64
    /// The oldest seq still kept (`lastSeq + 1` when none is kept).
    public let oldestSeq: UInt64
}

/// The events kept, in seq order, as chunks of `chunkSize`: every chunk but the last is full,
/// so a seq is found by division, and a mutation after a copy copies one chunk and the small
/// top-level arrays. Pruning drops whole chunks from the front (retention is a minimum).
package struct EventFeed: Sendable, Hashable {
    package static let chunkSize = 1_024

    package private(set) var chunks: [[LedgerEvent]] = []
    /// The newest `recordedAt` of each chunk, so pruning never looks inside a chunk.
    private var newestRecorded: [Int64] = []
    /// The seq of the first kept event (`lastSeq + 1` when none is kept).
    package private(set) var firstSeq: UInt64 = 1
    private(set) var lastSeq: UInt64 = 0

    package init() {}

    /// Events with consecutive seqs starting at `firstSeq` (snapshot decoding); `lastSeq`
    /// is `firstSeq + events.count - 1`.
    package init(firstSeq: UInt64, events: [LedgerEvent]) {
        self.init(firstSeq: firstSeq, parts: [events])
    }

    /// The events of `parts` in order, as decoded by several cores, with consecutive seqs
    /// starting at `firstSeq`.
    package init(firstSeq: UInt64, parts: [[LedgerEvent]]) {
        let total = parts.reduce(0) { $0 + $1.count }
        self.firstSeq = firstSeq
        self.lastSeq = firstSeq &+ UInt64(total) &- 1
        var chunk: [LedgerEvent] = []
        chunk.reserveCapacity(min(EventFeed.chunkSize, total))
        var left = total
        for part in parts {
            for event in part {
                chunk.append(event)
                if chunk.count == EventFeed.chunkSize {
                    append(chunk: chunk)
                    left -= chunk.count
                    chunk = []
                    chunk.reserveCapacity(min(EventFeed.chunkSize, left))
                }
            }
        }
        if !chunk.isEmpty { append(chunk: chunk) }
    }

    private mutating func append(chunk: [LedgerEvent]) {
        chunks.append(chunk)
        newestRecorded.append(chunk.map(\.recordedAt.nanosecondsSinceEpoch).max()!)
    }

    package var count: Int { Int(lastSeq &+ 1 &- firstSeq) }
    var nextSeq: UInt64 { lastSeq + 1 }

    /// Every kept event in seq order.
    var events: [LedgerEvent] { chunks.flatMap { $0 } }

    mutating func append(_ event: LedgerEvent) {
        precondition(event.seq == lastSeq + 1, "event seqs are gap-free")
        if chunks.isEmpty || chunks[chunks.count - 1].count == EventFeed.chunkSize {
            var chunk: [LedgerEvent] = []
            chunk.reserveCapacity(EventFeed.chunkSize)
            chunks.append(chunk)
            newestRecorded.append(Int64.min)
        }
        let last = chunks.count - 1
        chunks[last].append(event)
        newestRecorded[last] = max(newestRecorded[last], event.recordedAt.nanosecondsSinceEpoch)
        lastSeq = event.seq
    }

    /// E5: drops whole chunks from the front while every event in them is older than the age
    /// at `now` and outside the newest `minimumCount`. Returns how many events were dropped.
    @discardableResult
    mutating func prune(now: Instant, retention: EventRetention) -> Int {
        var dropped = 0
        let cutoff = now.nanosecondsSinceEpoch &- retention.minimumAgeNanoseconds
        while chunks.count > 1 {    // the last chunk holds the newest events
            let chunkCount = chunks[0].count
            guard count - chunkCount >= retention.minimumCount, newestRecorded[0] < cutoff else { break }
            chunks.removeFirst()
            newestRecorded.removeFirst()
            firstSeq += UInt64(chunkCount)
            dropped += chunkCount
        }
        return dropped
    }

    /// Drops the events after `seq` (a rollback of changes that never became durable).
    mutating func truncate(after seq: UInt64) {
        while lastSeq > seq, lastSeq >= firstSeq, !chunks.isEmpty {
            let last = chunks.count - 1
            let keep = Int(max(seq, firstSeq - 1) + 1 - firstSeq) - last * EventFeed.chunkSize
            if keep <= 0 {
                lastSeq -= UInt64(chunks[last].count)
                chunks.removeLast()
                newestRecorded.removeLast()
            } else {
                lastSeq -= UInt64(chunks[last].count - keep)
                chunks[last].removeSubrange(keep...)
                newestRecorded[last] = chunks[last].map(\.recordedAt.nanosecondsSinceEpoch).max()!
            }
        }
    }

    /// The kept event with this seq.
    func event(seq: UInt64) -> LedgerEvent? {
        guard seq >= firstSeq, seq <= lastSeq else { return nil }
        let offset = Int(seq - firstSeq)
        return chunks[offset / EventFeed.chunkSize][offset % EventFeed.chunkSize]
    }

    /// Visits kept events with seq > `afterSeq` in order while `body` returns true.
    func forEach(after afterSeq: UInt64, _ body: (LedgerEvent) -> Bool) {
        var seq = max(afterSeq + 1, firstSeq)
        guard seq <= lastSeq else { return }
        var offset = Int(seq - firstSeq)
        var chunk = offset / EventFeed.chunkSize
        var position = offset % EventFeed.chunkSize
        while chunk < chunks.count {
            let events = chunks[chunk]
            while position < events.count {
                if !body(events[position]) { return }
                position += 1
                seq += 1
            }
            chunk += 1
            position = 0
            offset = 0
        }
    }

    package static func == (lhs: EventFeed, rhs: EventFeed) -> Bool {
        lhs.firstSeq == rhs.firstSeq && lhs.lastSeq == rhs.lastSeq && lhs.chunks == rhs.chunks
    }

    package func hash(into hasher: inout Hasher) {
        hasher.combine(firstSeq)
        hasher.combine(lastSeq)
    }
}

// MARK: ListEvents (E4, E5)

extension Ledger {
    /// The most events one ListEvents call examines, so a call with selective filters stays
    /// bounded (it then returns a short page, E4).
    static let eventScanBudget = 10_000

    /// ListEvents (E4) without the wait, which the server does: up to `limit` events with
    /// `seq > afterSeq` matching the filters. `limit` 0 means 100. An empty `types` or
    /// `subscriptionId` is no filter. Errors: `invalid_request` (negative values, `limit`
    /// above 1000, an unknown or unspecified type, `afterSeq` above `lastSeq`), then
    /// `events_pruned` (`afterSeq < oldestSeq − 1`, with `oldestSeq`).
    public func listEvents(afterSeq: Int64, limit: Int32, types: [EnumField<EventType>] = [],
                           subscriptionId: String = "") throws(DomainError) -> EventPage {
        guard afterSeq >= 0 else { throw DomainError.invalid("after_seq must not be negative") }
        guard limit >= 0, limit <= 1_000 else { throw DomainError.invalid("limit must be 0 to 1000") }
        var wanted = Set<EventType>()
        for type in types {
            guard case .known(let known) = type else {
                throw DomainError.invalid("unknown event type \(type.wireValue)")
            }
            wanted.insert(known)
        }
        let lastSeq = feed.lastSeq
        guard UInt64(afterSeq) <= lastSeq else {
            throw DomainError.invalid("after_seq \(afterSeq) is above the last seq \(lastSeq)")
        }
        let oldestSeq = feed.firstSeq
        guard UInt64(afterSeq) + 1 >= oldestSeq else { throw DomainError.eventsPruned(oldestSeq: oldestSeq) }
        let cap = limit == 0 ? 100 : Int(limit)
        let idFilter = subscriptionId.isEmpty ? nil : ScalarString(subscriptionId)
        var events: [LedgerEvent] = []
        var examined = 0
        var next = UInt64(afterSeq)
        var reachedEnd = true
        feed.forEach(after: UInt64(afterSeq)) { event in
            if events.count == cap || examined == Ledger.eventScanBudget {
                reachedEnd = false
                return false
            }
            examined += 1
            next = event.seq
            if (wanted.isEmpty || wanted.contains(event.type))
                && (idFilter == nil || ScalarString(event.subscriptionId) == idFilter!) {
                events.append(event)
            }
            return true
        }
        return EventPage(events: events, nextAfterSeq: reachedEnd ? lastSeq : next, lastSeq: lastSeq, oldestSeq: oldestSeq)
    }

    /// The newest committed seq (0 when no event was ever recorded).
    public var lastEventSeq: UInt64 { feed.lastSeq }
    /// The oldest seq still kept (`lastEventSeq + 1` when none is kept).
    public var oldestEventSeq: UInt64 { feed.firstSeq }
    /// How many events are kept.
    public var eventCount: Int { feed.count }
    /// Every kept event in seq order (tests, tools; the daemon pages with `listEvents`).
    public var events: [LedgerEvent] { feed.events }
    /// The kept event with this seq.
    public func event(seq: UInt64) -> LedgerEvent? { feed.event(seq: seq) }

    /// Drops the events after `seq`, for a writer that rolls back changes which never became
    /// durable (the billing state must be rolled back to the same point; `lastEventSeq` taken
    /// after each journaled command says where). Events at or below `seq` are kept.
    public mutating func truncateEvents(after seq: UInt64) { feed.truncate(after: seq) }

    /// Rebuilds a ledger from its parts with its event feed (the events must have consecutive
    /// seqs; `[]` gives an empty feed starting at seq 1).
    public init(maxSeats: Int64, counters: SerialCounters, subscriptions: [Subscription],
                idempotencyEntries: [IdempotencyEntry], events: [LedgerEvent]) {
        precondition(events.indices.allSatisfy { events[$0].seq == events[0].seq + UInt64($0) }, "event seqs have a gap")
        self.init(maxSeats: maxSeats, counters: counters, subscriptions: subscriptions, idempotencyEntries: idempotencyEntries,
                  feed: events.isEmpty ? EventFeed() : EventFeed(firstSeq: events[0].seq, events: events))
    }
}
