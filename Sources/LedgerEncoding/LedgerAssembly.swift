import CreditDomain

/// What every encoding's decoder does last: rebuilds the indexes a snapshot does not store
/// (sorted ids from the stored id order, the id table and the due queue) and makes the ledger.
enum LedgerAssembly {
    /// `idOrder` is the range of `buffer` holding the id order: per position in id order, the
    /// slot as a zigzag varint delta from the previous slot + 1.
    static func ledger(_ buffer: UnsafeBufferPointer<UInt8>, maxSeats: Int64, counters: SerialCounters,
                       slots: consuming DecodedSubscriptions, idOrder orderRange: Range<Int>,
                       idempotency: IdempotencyTable, zones: [String: TimeZoneRules],
                       feed: EventFeed) throws(LedgerCodecError) -> Ledger {
        try slots.withElements { elements throws(LedgerCodecError) in
            let (idIndex, slotByID, dueQueue, locations) = try indexes(buffer, idOrder: orderRange, slots: elements)
            // The ledger takes the boxes the subscriptions were decoded into: nothing is copied.
            return Ledger(maxSeats: maxSeats, counters: counters, boxes: elements, slotByID: slotByID,
                          sortedIDs: idIndex, dueQueue: dueQueue, idempotency: idempotency, zones: zones, feed: feed,
                          creditLocations: locations)
        }
    }

    /// The id order and sorted ids, the id table with the due queue, and the credits' places
    /// for the book's indexes, built at once.
    private static func indexes(_ buffer: UnsafeBufferPointer<UInt8>, idOrder orderRange: Range<Int>,
                                slots: BoxedElements<Subscription>)
        throws(LedgerCodecError) -> (SortedKeyIndex, SlotTable, DueQueue, CreditLocations) {
        let input = Unchecked(buffer)
        let shared = Unchecked(slots)
        let orderResult = Unchecked(UnsafeMutablePointer<Result<SortedKeyIndex, LedgerCodecError>>.allocate(capacity: 1))
        orderResult.value.initialize(to: .success(SortedKeyIndex()))
        let tableResult = Unchecked(UnsafeMutablePointer<(SlotTable, DueQueue)>.allocate(capacity: 1))
        tableResult.value.initialize(to: (SlotTable(), DueQueue()))
        let locationsResult = Unchecked(UnsafeMutablePointer<CreditLocations?>.allocate(capacity: 1))
        locationsResult.value.initialize(to: nil)
        defer {
            orderResult.value.deinitialize(count: 1)
            orderResult.value.deallocate()
            tableResult.value.deinitialize(count: 1)
            tableResult.value.deallocate()
            locationsResult.value.deinitialize(count: 1)
            locationsResult.value.deallocate()
        }
        runConcurrently(3) { index in
            let slots = shared.value
            if index == 2 {
                locationsResult.value.pointee = CreditLocations(slots)
            } else if index == 0 {
                do throws(LedgerCodecError) {
                    orderResult.value.pointee = .success(try sortedIDs(input.value, orderRange, slots))
                } catch {
                    orderResult.value.pointee = .failure(error)
                }
            } else {
                // Built here, in the ledger's own form, not copied into it afterwards. The id order
                // (built beside this) refuses repeated ids.
                var slotByID = SlotTable()
                slotByID.reserveCapacity(slots.count)
                var due: [DueQueue.Entry] = []
                due.reserveCapacity(slots.count)
                for slot in slots.indices {
                    slotByID.insert(ScalarString(slots[slot].id), slot: Int32(slot))
                    if let instant = slots[slot].nextDue { due.append(.init(due: instant, slot: Int32(slot))) }
                }
                tableResult.value.pointee = (slotByID, DueQueue(unordered: due))
            }
        }
        let idIndex = try orderResult.value.pointee.get()
        let (slotByID, dueQueue) = tableResult.value.pointee
        return (idIndex, slotByID, dueQueue, locationsResult.value.pointee ?? CreditLocations(slots))
    }

    /// The id order section: every slot once, with strictly increasing ids (so no duplicates).
    private static func sortedIDs(_ buffer: UnsafeBufferPointer<UInt8>, _ range: Range<Int>,
                                  _ subscriptions: BoxedElements<Subscription>) throws(LedgerCodecError) -> SortedKeyIndex {
        var reader = ByteReader(buffer, range)
        let count = subscriptions.count
        var order: [Int32] = []
        order.reserveCapacity(count)
        var keys: [ScalarString] = []
        keys.reserveCapacity(count)
        var seen = [Bool](repeating: false, count: count)
        var previous = -1
        for _ in 0..<count {
            let start = reader.offset
            let delta = try reader.signed("id order")
            let (sum, overflow) = Int64(previous).addingReportingOverflow(delta)
            guard !overflow, sum >= -1, sum < Int64(count) - 1 else {
                throw reader.failure(.invalidValue, "id order", at: start)
            }
            let slot = Int(sum) + 1
            guard !seen[slot] else { throw reader.failure(.invalidValue, "id order (slot repeated)", at: start) }
            if let last = order.last, !LedgerAssembly.precedes(subscriptions[Int(last)].id, subscriptions[slot].id) {
                throw LedgerCodecError(.invalidValue, offset: start,
                                       field: "id order (\"\(subscriptions[slot].id)\" out of order or repeated)")
            }
            seen[slot] = true
            order.append(Int32(slot))
            keys.append(ScalarString(subscriptions[slot].id))
            previous = slot
        }
        guard reader.remaining == 0 else { throw reader.failure(.trailingBytes, "end of id order") }
        return SortedKeyIndex(sortedKeys: keys, slots: order)
    }

    /// Code-point (UTF-8 byte) order, as `ScalarString` orders ids.
    private static func precedes(_ lhs: String, _ rhs: String) -> Bool {
        let fast = lhs.utf8.withContiguousStorageIfAvailable { left in
            rhs.utf8.withContiguousStorageIfAvailable { right in
                let shared = min(left.count, right.count)
                var index = 0
                while index < shared {
                    if left[index] != right[index] { return left[index] < right[index] }
                    index += 1
                }
                return left.count < right.count
            }
        }
        return (fast ?? nil) ?? (ScalarString(lhs) < ScalarString(rhs))
    }

}

/// The subscriptions a decoder has read, in slot order, each in the box the ledger will keep it
/// in (`ChunkedArray`), until the ledger takes them. Several threads decode into it at once,
/// each its own range.
struct DecodedSubscriptions: ~Copyable {
    typealias Box = ChunkedArray<Subscription>.Box
    private let buffer: UnsafeMutableBufferPointer<Box>
    /// Whether every element is initialized; until then (or after a failure) none is: a decoder
    /// that fails deinitializes what it had decoded itself.
    private var complete = false

    init(count: Int) {
        buffer = .allocate(capacity: count)
    }

    /// Where the decoders write (`Target.initialize`), from any thread, each its own range.
    var target: Target { Target(base: buffer.baseAddress, capacity: buffer.count) }

    struct Target: @unchecked Sendable {
        fileprivate let base: UnsafeMutablePointer<Box>?
        /// The buffer's size. The decoders check a file's counts before they decode (a damaged
        /// file is an error, never a trap); a part's range is also checked here, once per
        /// part, so that a mistake in that arithmetic traps instead of writing past the buffer.
        fileprivate let capacity: Int

        /// Decodes elements `first..<(first + count)` with `decode` (called with 0..<count):
        /// all of them, then each into its box, so that a part's boxes lie together in memory.
        /// Boxed as each was decoded, they sat among the subscriptions' own allocations, and
        /// the replay's frees of credit lists then left holes between live boxes that no
        /// trim could return: 210 MB more resident after a 1M-record replay. On an error none
        /// is boxed (what was decoded is released) and the error is rethrown.
        func decode(first: Int, count: Int, _ decode: (Int) throws(LedgerCodecError) -> Subscription) throws(LedgerCodecError) {
            guard count > 0 else { return }
            precondition(first >= 0 && first <= capacity - count, "a part outside the decoded subscriptions")
            let decoded = UnsafeMutableBufferPointer<Subscription>.allocate(capacity: count)
            defer { decoded.deallocate() }
            for index in 0..<count {
                do throws(LedgerCodecError) {
                    (decoded.baseAddress! + index).initialize(to: try decode(index))
                } catch {
                    decoded.baseAddress!.deinitialize(count: index)
                    throw error
                }
            }
            for index in 0..<count {
                (base! + first + index).initialize(to: Box((decoded.baseAddress! + index).move()))
            }
        }

        /// Releases elements `range` (a failed decoder's), leaving them uninitialized.
        func deinitialize(_ range: Range<Int>) {
            guard let base, !range.isEmpty else { return }
            precondition(range.lowerBound >= 0 && range.upperBound <= capacity, "a part outside the decoded subscriptions")
            (base + range.lowerBound).deinitialize(count: range.count)
        }
    }

    /// Every element is now initialized.
    mutating func markComplete() {
        complete = true
    }

    /// Calls `body` with the decoded subscriptions, to read in place; only after
    /// `markComplete`. `body` must not keep them: the ledger retains the boxes it takes.
    func withElements<Result, Failure: Error>(_ body: (BoxedElements<Subscription>) throws(Failure) -> Result) throws(Failure) -> Result {
        precondition(complete, "reading subscriptions before every part is decoded")
        return try body(BoxedElements(UnsafeBufferPointer(buffer)))
    }

    deinit {
        if complete { buffer.deinitialize() }
        buffer.deallocate()
    }
}
