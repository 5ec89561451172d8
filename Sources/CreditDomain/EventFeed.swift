// The event feed (E1–E5): what each committed change recorded, in one gap-free sequence.

import Synchronization

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

/// The fields of `creditd.v1.Subscription` that a stored subscription and an event's view both
/// give, so that one encoder serves both without copying a stored subscription into a view
/// (a GetSubscription reads the stored value in place).
public protocol SubscriptionFields {
    var id: String { get }
    var customer: String { get }
    var plan: String { get }
    var status: SubscriptionStatus { get }
    var seats: Int64 { get }
    var unitPriceMinor: Int64 { get }
    var currency: Currency { get }
    var schedule: BillingSchedule { get }
    var timeZone: TimeZoneRules { get }
    var refundPolicy: RefundPolicy { get }
    var startDate: CivilDate { get }
    var period: BillingPeriod { get }
    var scheduledSeats: Int64? { get }
}

extension SubscriptionFields {
    public var interval: BillingInterval { schedule.interval }
    /// `periodEnd` while `active`, nil otherwise (O3).
    public var nextBillingDate: CivilDate? { status == .active ? period.end : nil }
}

/// What only a stored subscription knows besides its view (an event's view has neither).
public protocol StoredSubscriptionFields: SubscriptionFields {
    var createdAt: Instant { get }
    var cancelEffectiveDate: CivilDate? { get }
}

extension Subscription: StoredSubscriptionFields {}

/// A stored subscription read in place (`Ledger.withSubscription`): each property loads only
/// its own field. Valid only inside the call that gives it.
public struct StoredSubscription: StoredSubscriptionFields {
    private let stored: UnsafePointer<Subscription>

    init(_ stored: UnsafePointer<Subscription>) { self.stored = stored }

    public var id: String { stored.pointee.id }
    public var customer: String { stored.pointee.customer }
    public var plan: String { stored.pointee.plan }
    public var status: SubscriptionStatus { stored.pointee.status }
    public var seats: Int64 { stored.pointee.seats }
    public var unitPriceMinor: Int64 { stored.pointee.unitPriceMinor }
    public var currency: Currency { stored.pointee.currency }
    public var schedule: BillingSchedule { stored.pointee.schedule }
    public var timeZone: TimeZoneRules { stored.pointee.timeZone }
    public var refundPolicy: RefundPolicy { stored.pointee.refundPolicy }
    public var startDate: CivilDate { stored.pointee.startDate }
    public var period: BillingPeriod { stored.pointee.period }
    public var createdAt: Instant { stored.pointee.createdAt }
    // Stored fields only: a computed property of `Subscription` read through the pointer
    // copies the whole value first.
    public var scheduledSeats: Int64? { Subscription.scheduledSeats(stored: stored.pointee.storedScheduledSeats) }
    public var cancelEffectiveDate: CivilDate? { stored.pointee.cancellationSlot.record?.effectiveDate }
}

/// The subscription as O3 gives it, without its credits and invoices: what events carry.
public struct SubscriptionView: SubscriptionFields, Sendable, Hashable {
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

/// Where a sealed chunk's events live outside memory, and how to read them back: the event
/// archive of the file store (CreditStore's `EventArchiveFiles`). The domain never writes it;
/// it only asks for a chunk's events when a call reaches them.
public protocol EventArchive: AnyObject, Sendable {
    /// The events of the archived chunk (seqs `chunk.firstSeq`, +1, …). Throws when the
    /// archive cannot give them back (a missing or damaged file).
    func events(of chunk: ArchivedEventChunk) throws -> [LedgerEvent]
}

/// Where one sealed chunk of `EventFeed.chunkSize` events is kept in the event archive.
public struct ArchivedEventChunk: Sendable, Hashable {
    /// The seq of its first event.
    public let firstSeq: UInt64
    /// The archive file, named after the first seq it holds.
    public let file: UInt64
    /// Where its block starts in the file, and how long the block is.
    public let offset: UInt64
    public let length: UInt64
    /// The newest `recordedAt` among its events (pruning never reads the chunk, E5).
    public let newestRecordedAt: Int64

    public init(firstSeq: UInt64, file: UInt64, offset: UInt64, length: UInt64, newestRecordedAt: Int64) {
        self.firstSeq = firstSeq
        self.file = file
        self.offset = offset
        self.length = length
        self.newestRecordedAt = newestRecordedAt
    }
}

/// A block of the event archive that an earlier run wrote for the chunk from `firstSeq`, which
/// recovery's replay takes instead of building the chunk's events again (`EventFeed.planAdoption`).
package struct AdoptableEventBlock: Sendable, Hashable {
    package let firstSeq: UInt64
    package let file: UInt64
    package let offset: UInt64
    package let length: UInt64

    package init(firstSeq: UInt64, file: UInt64, offset: UInt64, length: UInt64) {
        self.firstSeq = firstSeq
        self.file = file
        self.offset = offset
        self.length = length
    }

    func location(newestRecordedAt: Int64) -> ArchivedEventChunk {
        ArchivedEventChunk(firstSeq: firstSeq, file: file, offset: offset, length: length, newestRecordedAt: newestRecordedAt)
    }
}

/// One full chunk of the feed: its events in memory until the archive holds them, then only
/// where they are. Which of the two is a matter of memory, not of value: every ledger copy
/// sharing the chunk sees the same events either way, so the change is made in place.
public final class SealedEventChunk: Sendable {
    public let firstSeq: UInt64
    /// The newest `recordedAt` among its events.
    public let newestRecordedAt: Int64
    private enum Storage {
        case resident([LedgerEvent])
        case archived(ArchivedEventChunk, any EventArchive)
    }
    private let storage: Mutex<Storage>

    init(events: [LedgerEvent]) {
        precondition(events.count == EventFeed.chunkSize, "a sealed chunk is full")
        firstSeq = events[0].seq
        newestRecordedAt = events.lazy.map(\.recordedAt.nanosecondsSinceEpoch).max()!
        storage = Mutex(.resident(events))
    }

    package init(archived location: ArchivedEventChunk, in archive: any EventArchive) {
        firstSeq = location.firstSeq
        newestRecordedAt = location.newestRecordedAt
        storage = Mutex(.archived(location, archive))
    }

    /// Its events while they are in memory, nil once archived.
    public var residentEvents: [LedgerEvent]? {
        storage.withLock { storage in
            if case .resident(let events) = storage { return events }
            return nil
        }
    }

    /// Whether its events are still in memory (not yet archived); unlike `residentEvents`,
    /// without retaining them.
    public var isResident: Bool {
        storage.withLock { storage in
            if case .resident = storage { return true }
            return false
        }
    }

    /// Where the archive keeps it, nil while it is only in memory.
    public var archivedLocation: ArchivedEventChunk? {
        storage.withLock { storage in
            if case .archived(let location, _) = storage { return location }
            return nil
        }
    }

    /// Its events, read back from the archive when they are not in memory.
    public func events() throws -> [LedgerEvent] {
        let archived: (ArchivedEventChunk, any EventArchive)? = storage.withLock { storage in
            switch storage {
            case .resident: return nil
            case .archived(let location, let archive): return (location, archive)
            }
        }
        guard let (location, archive) = archived else { return residentEvents! }
        return try archive.events(of: location)
    }

    /// The archive now holds these events durably enough to read back: memory lets them go.
    /// Returns the events it held (nil if it held none), so that the caller chooses the thread
    /// that frees them: memory is best freed by the thread that allocated it (see
    /// `ReplayArchiving`).
    @discardableResult
    public func markArchived(_ location: ArchivedEventChunk, in archive: any EventArchive) -> [LedgerEvent]? {
        precondition(location.firstSeq == firstSeq, "an archived chunk keeps its seqs")
        return storage.withLock { storage in
            defer { storage = .archived(location, archive) }
            if case .resident(let events) = storage { return events }
            return nil
        }
    }
}

/// Why a kept event could not be read (its archived chunk is gone or damaged).
public struct EventArchiveReadError: Error, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The events kept, in seq order: sealed chunks of `chunkSize`, then the newest events (fewer
/// than `chunkSize`) in open pieces of `pieceSize`. A seq is found by division.
///
/// The split is for the writer, whose feed shares its storage with the state it last published:
/// the first append of a batch copies what it touches. With the newest events at the end of
/// one array of 1,024-event chunks, that was the chunk (512 events on average) and the list of
/// every chunk (11,700 at 12M events); now it is at most 16 piece references and one piece of
/// at most 64 events, and the list of sealed chunks changes once per 1,024 events. Pruning
/// drops whole sealed chunks from the front (retention is a minimum).
///
/// Sealed chunks are what the file store's event archive moves out of memory (E5 keeps 45 days
/// of events: at 1M subscriptions, ~12M events, several GiB as values).
package struct EventFeed: Sendable, Hashable {
    package static let chunkSize = 1_024
    static let pieceSize = 64

    /// Full chunks, oldest first.
    private var sealed: [SealedEventChunk] = []
    /// The events after the sealed chunks, in pieces; every piece but the last is full.
    private var open: [[LedgerEvent]] = []
    /// The seq of the first kept event (`lastSeq + 1` when none is kept).
    package private(set) var firstSeq: UInt64 = 1
    private(set) var lastSeq: UInt64 = 0
    /// Recovery only: the archive blocks the replay takes for the chunks it is rebuilding.
    private var adoption: Adoption?

    /// A replay that takes archived blocks for the chunks it rebuilds. Its events are the
    /// journal's, applied in the same order, so a chunk's events are those the block holds:
    /// while the open chunk's block is adopted, the events appended to it are counted (their
    /// seq and `recordedAt`) and not built; the open pieces hold only the events from before
    /// the adoption started (the recovered snapshot's newest ones). When the chunk is full, it
    /// is sealed as archived in that block.
    private struct Adoption: Sendable {
        /// The open chunk's block first, then the next chunks' blocks, consecutive.
        var blocks: ArraySlice<AdoptableEventBlock>
        let archive: any EventArchive
        /// Events of the open chunk counted, not built, and the newest `recordedAt` in the chunk.
        var skipped = 0
        var newestRecordedAt = Int64.min
        /// Blocks sealed as archived chunks so far.
        var adopted: [AdoptableEventBlock] = []
    }

    package init() {}

    /// Events with consecutive seqs starting at `firstSeq` (snapshot decoding); `lastSeq`
    /// is `firstSeq + events.count - 1`.
    package init(firstSeq: UInt64, events: [LedgerEvent]) {
        self.init(firstSeq: firstSeq, archived: [], parts: [events])
    }

    /// `archived` (consecutive full chunks from `firstSeq`), then the events of `parts` in
    /// order, as decoded by several cores, with consecutive seqs.
    package init(firstSeq: UInt64, archived: [SealedEventChunk] = [], parts: [[LedgerEvent]]) {
        self.firstSeq = firstSeq
        sealed = archived
        lastSeq = firstSeq &+ UInt64(archived.count * Self.chunkSize) &- 1
        for part in parts {
            for event in part { append(unchecked: event) }
        }
    }

    /// The sealed chunks (resident or archived), oldest first.
    package var sealedChunks: [SealedEventChunk] { sealed }
    /// The events after the sealed chunks (fewer than `chunkSize`).
    package var openEvents: [LedgerEvent] { Array(open.joined()) }

    package var count: Int { Int(lastSeq &+ 1 &- firstSeq) }
    var nextSeq: UInt64 { lastSeq + 1 }
    /// How many events are in the open pieces.
    private var openCount: Int { count - sealed.count * Self.chunkSize }

    /// Every kept event in seq order (throws when an archived chunk cannot be read).
    func events() throws -> [LedgerEvent] {
        var all: [LedgerEvent] = []
        for chunk in sealed { all += try chunk.events() }
        return all + open.joined()
    }

    mutating func append(_ event: consuming LedgerEvent) {
        precondition(event.seq == lastSeq + 1, "event seqs are gap-free")
        append(unchecked: event)
    }

    // Consuming, so that the event moves into the piece instead of being copied (retained).
    private mutating func append(unchecked event: consuming LedgerEvent) {
        if open.isEmpty || open[open.count - 1].count == Self.pieceSize {
            var piece: [LedgerEvent] = []
            piece.reserveCapacity(Self.pieceSize)
            open.append(piece)
        }
        lastSeq = event.seq
        open[open.count - 1].append(event)
        if openCount == Self.chunkSize {
            sealed.append(SealedEventChunk(events: Self.joined(takingFrom: &open)))
            open = []
        }
    }

    /// The pieces' events in order, moved out of them rather than copied. A replay's pieces are
    /// its own, and copying them (every event's strings and payload retained, then released
    /// with the pieces) was ~2% of a 1M-record replay. A piece a published state still shares
    /// (the writer's) is copied once by its first `popLast`, which costs what the copy did.
    private static func joined(takingFrom pieces: inout [[LedgerEvent]]) -> [LedgerEvent] {
        let total = pieces.reduce(0) { $0 + $1.count }
        return [LedgerEvent](unsafeUninitializedCapacity: total) { target, initialized in
            var end = total
            for index in pieces.indices.reversed() {
                while let event = pieces[index].popLast() {
                    end -= 1
                    (target.baseAddress! + end).initialize(to: event)
                }
            }
            initialized = total
        }
    }

    /// The seq of the open chunk's first event: where the next sealed chunk starts.
    package var openChunkFirstSeq: UInt64 { firstSeq &+ UInt64(sealed.count * Self.chunkSize) }

    /// Recovery: the replay that follows takes `blocks` (consecutive chunks, the first being the
    /// open one) as they are instead of building their events, until they run out or
    /// `finishAdoption`. Only for a feed whose sealed chunks are all archived (the archive's
    /// chunks are a prefix of the sealed ones). No blocks, or a first block that is not the open
    /// chunk's: no adoption.
    package mutating func planAdoption(_ blocks: [AdoptableEventBlock], from archive: any EventArchive) {
        guard let first = blocks.first, first.firstSeq == openChunkFirstSeq,
              zip(blocks, blocks.dropFirst()).allSatisfy({ $1.firstSeq == $0.firstSeq + UInt64(Self.chunkSize) }) else { return }
        adoption = Adoption(blocks: blocks[...], archive: archive)
    }

    /// Whether the next event appended is counted into an adopted block rather than built.
    package var isAdopting: Bool { adoption.map { !$0.blocks.isEmpty } ?? false }

    /// Counts the next event into the adopted block of the open chunk (`isAdopting`), and seals
    /// the chunk as archived in that block once it is full.
    mutating func skipAdopted(recordedAt: Instant) {
        guard var adoption = adoption.take() else { preconditionFailure("no adoption planned") }
        defer { self.adoption = adoption }
        lastSeq += 1
        adoption.skipped += 1
        adoption.newestRecordedAt = max(adoption.newestRecordedAt, recordedAt.nanosecondsSinceEpoch)
        guard openCount == Self.chunkSize else { return }
        let block = adoption.blocks.removeFirst()
        // Events from before the adoption began are built and in the block too; only their time counts.
        let newest = open.joined().reduce(adoption.newestRecordedAt) { max($0, $1.recordedAt.nanosecondsSinceEpoch) }
        sealed.append(SealedEventChunk(archived: block.location(newestRecordedAt: newest), in: adoption.archive))
        open = []
        adoption.adopted.append(block)
        adoption.skipped = 0
        adoption.newestRecordedAt = .min
    }

    /// Ends the adoption (the replay is over, or the blocks ran out): events counted into a chunk
    /// that is not full yet are read back from its block into the open pieces. Returns every
    /// block sealed as an archived chunk, for the archive files to keep. Throws when that block
    /// cannot be read or does not hold those events; the feed is then unchanged.
    package mutating func finishAdoption() throws -> [AdoptableEventBlock] {
        guard let adoption else { return [] }
        if adoption.skipped > 0, let block = adoption.blocks.first {
            let built = openCount - adoption.skipped
            let from = lastSeq - UInt64(adoption.skipped) + 1
            let counted = try adoption.archive.events(of: block.location(newestRecordedAt: adoption.newestRecordedAt))
                .dropFirst(built).prefix(adoption.skipped)
            guard counted.count == adoption.skipped, counted.first?.seq == from,
                  zip(counted, counted.dropFirst()).allSatisfy({ $1.seq == $0.seq + 1 }) else {
                throw EventArchiveReadError("the archived events from seq \(block.firstSeq) do not hold seqs \(from) to \(lastSeq)")
            }
            lastSeq = from - 1
            for event in counted { append(unchecked: event) }
        }
        self.adoption = nil
        return adoption.adopted
    }

    /// E5: drops whole sealed chunks from the front while every event in them is older than
    /// the age at `now` and outside the newest `minimumCount`; the chunk holding the newest
    /// events is always kept. Returns how many events were dropped.
    @discardableResult
    mutating func prune(now: Instant, retention: EventRetention) -> Int {
        var dropped = 0
        let cutoff = now.nanosecondsSinceEpoch &- retention.minimumAgeNanoseconds
        var drop = 0
        let keepLast = openCount == 0 ? 1 : 0
        while sealed.count - drop > keepLast {
            guard count - dropped - Self.chunkSize >= retention.minimumCount, sealed[drop].newestRecordedAt < cutoff else { break }
            dropped += Self.chunkSize
            drop += 1
        }
        if drop > 0 {
            sealed.removeFirst(drop)
            firstSeq += UInt64(dropped)
        }
        return dropped
    }

    /// Drops the events after `seq` (a rollback of changes that never became durable).
    /// Archived chunks hold only durable events, so a rollback never cuts into one.
    mutating func truncate(after seq: UInt64) {
        guard lastSeq > seq, lastSeq >= firstSeq else { return }
        let keep = Int(max(seq, firstSeq - 1) + 1 - firstSeq)
        let keptSealed = keep / Self.chunkSize
        var tail: [LedgerEvent] = []
        if keptSealed < sealed.count {
            guard let events = sealed[keptSealed].residentEvents else {
                preconditionFailure("a rollback reached an archived chunk, which holds only durable events")
            }
            tail = Array(events.prefix(keep - keptSealed * Self.chunkSize))
            sealed.removeSubrange(keptSealed...)
        } else {
            tail = Array(Array(open.joined()).prefix(keep - keptSealed * Self.chunkSize))
        }
        open = []
        lastSeq = firstSeq &+ UInt64(keptSealed * Self.chunkSize) &- 1
        for event in tail { append(unchecked: event) }
    }

    /// The kept event with this seq.
    func event(seq: UInt64) throws -> LedgerEvent? {
        guard seq >= firstSeq, seq <= lastSeq else { return nil }
        let offset = Int(seq - firstSeq)
        let chunk = offset / Self.chunkSize
        if chunk < sealed.count { return try sealed[chunk].events()[offset % Self.chunkSize] }
        let inOpen = offset - sealed.count * Self.chunkSize
        return open[inOpen / Self.pieceSize][inOpen % Self.pieceSize]
    }

    /// Whether reading from `afterSeq` on starts in a chunk that is only in the archive (a
    /// caller on an event loop moves such a read to a thread that may block).
    func startsInArchive(after afterSeq: UInt64) -> Bool {
        let seq = max(afterSeq + 1, firstSeq)
        guard seq <= lastSeq else { return false }
        let chunk = Int(seq - firstSeq) / Self.chunkSize
        return chunk < sealed.count && !sealed[chunk].isResident
    }

    /// Visits kept events with seq > `afterSeq` in order while `body` returns true.
    func forEach(after afterSeq: UInt64, _ body: (LedgerEvent) -> Bool) throws {
        let seq = max(afterSeq + 1, firstSeq)
        guard seq <= lastSeq else { return }
        let offset = Int(seq - firstSeq)
        let sealedEvents = sealed.count * Self.chunkSize
        if offset < sealedEvents {
            var position = offset % Self.chunkSize
            for chunk in sealed[(offset / Self.chunkSize)...] {
                let events = try chunk.events()
                guard Self.visit([events], part: 0, position: position, body) else { return }
                position = 0
            }
        }
        let inOpen = max(offset - sealedEvents, 0)
        _ = Self.visit(open, part: inOpen / Self.pieceSize, position: inOpen % Self.pieceSize, body)
    }

    /// Visits the events of `parts` from `position` in `part` on while `body` returns true;
    /// false once it has stopped.
    private static func visit(_ parts: [[LedgerEvent]], part start: Int, position first: Int,
                              _ body: (LedgerEvent) -> Bool) -> Bool {
        var part = start
        var position = first
        while part < parts.count {
            let events = parts[part]
            while position < events.count {
                if !body(events[position]) { return false }
                position += 1
            }
            part += 1
            position = 0
        }
        return true
    }

    /// Equal kept events. An archived chunk that cannot be read compares unequal.
    package static func == (lhs: EventFeed, rhs: EventFeed) -> Bool {
        guard lhs.firstSeq == rhs.firstSeq, lhs.lastSeq == rhs.lastSeq, lhs.sealed.count == rhs.sealed.count else { return false }
        for (left, right) in zip(lhs.sealed, rhs.sealed) where left !== right {
            guard let leftEvents = try? left.events(), let rightEvents = try? right.events(), leftEvents == rightEvents else {
                return false
            }
        }
        return lhs.open.joined().elementsEqual(rhs.open.joined())
    }

    package func hash(into hasher: inout Hasher) {
        hasher.combine(firstSeq)
        hasher.combine(lastSeq)
    }
}

// MARK: ListEvents (E4, E5)

/// The filters of ListEvents and WatchEvents (E4, E6): an empty one matches everything.
struct EventFilter {
    let types: Set<EventType>
    let subscriptionId: ScalarString?

    init(types: [EnumField<EventType>], subscriptionId: String) throws(DomainError) {
        var wanted = Set<EventType>()
        for type in types {
            guard case .known(let known) = type else {
                throw DomainError.invalid("unknown event type \(type.wireValue)")
            }
            wanted.insert(known)
        }
        self.types = wanted
        self.subscriptionId = subscriptionId.isEmpty ? nil : ScalarString(subscriptionId)
    }

    func matches(_ event: LedgerEvent) -> Bool {
        (types.isEmpty || types.contains(event.type))
            && (subscriptionId == nil || ScalarString(event.subscriptionId) == subscriptionId!)
    }
}

extension Ledger {
    /// The most events one ListEvents call examines, so a call with selective filters stays
    /// bounded (it then returns a short page, E4).
    static let eventScanBudget = 10_000

    /// ListEvents (E4) without the wait, which the server does: up to `limit` events with
    /// `seq > afterSeq` matching the filters. `limit` 0 means 100. An empty `types` or
    /// `subscriptionId` is no filter. Errors: `invalid_request` (negative values, `limit`
    /// above 1000, an unknown or unspecified type, `afterSeq` above `lastSeq`), then
    /// `events_pruned` (`afterSeq < oldestSeq − 1`, with `oldestSeq`). An archived chunk that
    /// cannot be read back throws `EventArchiveReadError`.
    public func listEvents(afterSeq: Int64, limit: Int32, types: [EnumField<EventType>] = [],
                           subscriptionId: String = "") throws -> EventPage {
        guard afterSeq >= 0 else { throw DomainError.invalid("after_seq must not be negative") }
        guard limit >= 0, limit <= 1_000 else { throw DomainError.invalid("limit must be 0 to 1000") }
        let filter = try EventFilter(types: types, subscriptionId: subscriptionId)
        let lastSeq = feed.lastSeq
        guard UInt64(afterSeq) <= lastSeq else {
            throw DomainError.invalid("after_seq \(afterSeq) is above the last seq \(lastSeq)")
        }
        let oldestSeq = feed.firstSeq
        guard UInt64(afterSeq) + 1 >= oldestSeq else { throw DomainError.eventsPruned(oldestSeq: oldestSeq) }
        let cap = limit == 0 ? 100 : Int(limit)
        var events: [LedgerEvent] = []
        var examined = 0
        var next = UInt64(afterSeq)
        var reachedEnd = true
        try feed.forEach(after: UInt64(afterSeq)) { event in
            if events.count == cap || examined == Ledger.eventScanBudget {
                reachedEnd = false
                return false
            }
            examined += 1
            next = event.seq
            if filter.matches(event) { events.append(event) }
            return true
        }
        return EventPage(events: events, nextAfterSeq: reachedEnd ? lastSeq : next, lastSeq: lastSeq, oldestSeq: oldestSeq)
    }

    /// How many events after `afterSeq` the filters match, counting no further than `limit`:
    /// how far behind a filtered WatchEvents stream is (E6 counts unsent events, and a stream
    /// never sends the events its filters skip). The arguments are a ListEvents call's, already
    /// checked by one.
    public func countEvents(afterSeq: UInt64, types: [EnumField<EventType>] = [], subscriptionId: String = "",
                            upTo limit: Int) throws -> Int {
        let filter = try EventFilter(types: types, subscriptionId: subscriptionId)
        var count = 0
        try feed.forEach(after: afterSeq) { event in
            if filter.matches(event) { count += 1 }
            return count < limit
        }
        return count
    }

    /// The newest committed seq (0 when no event was ever recorded).
    public var lastEventSeq: UInt64 { feed.lastSeq }
    /// The oldest seq still kept (`lastEventSeq + 1` when none is kept).
    public var oldestEventSeq: UInt64 { feed.firstSeq }
    /// How many events are kept.
    public var eventCount: Int { feed.count }
    /// Every kept event in seq order (tests, tools; the daemon pages with `listEvents`).
    public var events: [LedgerEvent] { get throws { try feed.events() } }
    /// The kept event with this seq.
    public func event(seq: UInt64) throws -> LedgerEvent? { try feed.event(seq: seq) }
    /// Whether a read of the events after `afterSeq` starts in the event archive rather than
    /// in memory (it may then block on the disk).
    public func eventsStartInArchive(after afterSeq: Int64) -> Bool { feed.startsInArchive(after: UInt64(max(afterSeq, 0))) }

    /// Drops the events after `seq`, for a writer that rolls back changes which never became
    /// durable (the billing state must be rolled back to the same point; `lastEventSeq` taken
    /// after each journaled command says where). Events at or below `seq` are kept.
    public mutating func truncateEvents(after seq: UInt64) { feed.truncate(after: seq) }

    /// Recovery: the replay that follows takes these archive blocks for the chunks it rebuilds
    /// (`EventFeed.planAdoption`).
    package mutating func planEventAdoption(_ blocks: [AdoptableEventBlock], from archive: any EventArchive) {
        feed.planAdoption(blocks, from: archive)
    }

    /// Ends the replay's adoption of archive blocks; returns the blocks it took (`EventFeed.finishAdoption`).
    package mutating func finishEventAdoption() throws -> [AdoptableEventBlock] { try feed.finishAdoption() }

    /// Rebuilds a ledger from its parts with its event feed (the events must have consecutive
    /// seqs; `[]` gives an empty feed starting at seq 1).
    public init(maxSeats: Int64, counters: SerialCounters, subscriptions: [Subscription],
                idempotencyEntries: [IdempotencyEntry], events: [LedgerEvent]) {
        precondition(events.indices.allSatisfy { events[$0].seq == events[0].seq + UInt64($0) }, "event seqs have a gap")
        self.init(maxSeats: maxSeats, counters: counters, subscriptions: subscriptions, idempotencyEntries: idempotencyEntries,
                  feed: events.isEmpty ? EventFeed() : EventFeed(firstSeq: events[0].seq, events: events))
    }
}
