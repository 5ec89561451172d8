/// Containers whose copies share structure, so that a ledger value can be published to readers
/// after every durable batch while the writer keeps changing its own copy.
///
/// A flat `Array` or `Dictionary` that is shared with a published copy is copied whole by the
/// first mutation (copy-on-write), which at a million subscriptions is tens of megabytes per
/// batch. These split their elements into small parts: a mutation after a copy duplicates the
/// few small arrays of references above the one part it touches.

import CCreditSystem

/// Starts fetching, all at once, the objects that the references in `references` point to.
/// Copying an array of references (its copy-on-write after a publish) retains each one, and each
/// retain writes its object's header: taken one after another, that was a cache miss per
/// reference. A create's copy of 16 shards of the id table was ~4% of the daemon's CPU, 2.6%
/// with the shards fetched ahead. Each element must be one reference (asserted); the words are
/// read as addresses, without retaining them.
/// Bytes before an array's first element in its storage object: the object header, then the
/// count and capacity. Only prefetch addresses use it (a wrong value would only waste the hint).
let arrayStorageHeaderBytes = 32

@inline(__always)
func prefetchReferents<Element>(of references: [Element]) {
    assert(MemoryLayout<Element>.stride == MemoryLayout<UnsafeRawPointer>.stride)
    references.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count {
            credit_prefetch_for_write(raw.load(fromByteOffset: offset, as: UnsafeRawPointer?.self))
            offset += MemoryLayout<UnsafeRawPointer>.stride
        }
    }
}

/// Elements in the boxes a `ChunkedArray` keeps them in, read in place: recovery builds its
/// indexes from the subscriptions it decoded before the ledger takes their boxes.
package struct BoxedElements<Element>: RandomAccessCollection, @unchecked Sendable {
    package let boxes: UnsafeBufferPointer<ChunkedArray<Element>.Box>

    package init(_ boxes: UnsafeBufferPointer<ChunkedArray<Element>.Box>) {
        self.boxes = boxes
    }

    package var startIndex: Int { 0 }
    package var endIndex: Int { boxes.count }
    /// Stated, not inherited: another module's call to the protocol's default went through its
    /// generic `distance`, about 50 ns a call; recovery asks once per subscription (1M).
    package var count: Int { boxes.count }

    /// Read where it lies: `slots[i].id` reads the id, not a copy of the whole element. Boxes a
    /// reader sees here are not written to (they are not in any ledger yet).
    package subscript(position: Int) -> Element {
        _read { yield boxes[position].value }
    }
}

/// An array stored in fixed-size leaves of boxed elements, under two more levels of small
/// arrays. Indices are positions, as in `Array`.
///
/// Sharing at every level. A leaf holds references to immutable-until-unique boxes, so copying
/// a leaf after a publish retains `fanout` boxes rather than copying every element (a
/// `Subscription` holds a dozen references of its own), and a mutation then copies only the one
/// element it changes. Leaves sit 16 to a branch and branches 16 to a group, so the first change
/// of a batch to an element copies one group, one branch and one leaf of 16 references each,
/// and the top level once per batch (one reference per 4,096 elements). With 64-element leaves
/// under 64-leaf groups, the copies and their release when the published state was dropped
/// took about a seventh of a durable write's CPU at 16 writes per batch (each write touches its
/// own group and leaf); with one level of 256-element chunks, a fifth of the writer (and, before
/// elements were boxed, copies of 1,024-element chunks of subscriptions two thirds).
public struct ChunkedArray<Element>: RandomAccessCollection, MutableCollection {
    static var fanout: Int { 16 }
    /// Elements under one entry of the top level.
    static var elementsPerGroup: Int { fanout * fanout * fanout }

    package final class Box {
        package var value: Element
        package init(_ value: Element) { self.value = value }
    }

    /// groups[group][branch][leaf][slot]
    private var groups: [[[[Box]]]] = []
    public private(set) var count = 0

    public init() {}

    public init<S: Sequence>(_ elements: S) where S.Element == Element {
        for element in elements { append(element) }
    }

    /// The elements already in their boxes, in order (recovery decodes each subscription
    /// straight into its box, on all cores). Decoding into one array and then moving every
    /// element into a box touched a second copy of the whole book (256 MB at 1M
    /// subscriptions), the start-up's peak over the memory it settles at.
    package init(boxes: some Sequence<Box>) {
        for box in boxes { append(box: box) }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    public subscript(position: Int) -> Element {
        get {
            precondition(position >= 0 && position < count, "ChunkedArray index out of range")
            let (group, branch, leaf, slot) = Self.path(position)
            return groups[group][branch][leaf][slot].value
        }
        _modify {
            precondition(position >= 0 && position < count, "ChunkedArray index out of range")
            let (group, branch, leaf, slot) = Self.path(position)
            prefetchReferents(of: groups[group])
            prefetchReferents(of: groups[group][branch])
            prefetchReferents(of: groups[group][branch][leaf])
            // Copy the element only when a published copy still shares its box (the arrays
            // above it are copied on write by `Array` itself, one per level).
            if !isKnownUniquelyReferenced(&groups[group][branch][leaf][slot]) {
                groups[group][branch][leaf][slot] = Box(groups[group][branch][leaf][slot].value)
            }
            yield &groups[group][branch][leaf][slot].value
        }
    }

    /// Calls `body` with each element of `range` in its box, without copying it out (reading
    /// `box.value` as an argument copied the whole element, retaining each of its fields).
    public func forEach(in range: Range<Int>, _ body: (borrowing Element) -> Void) {
        for position in range {
            let (group, branch, leaf, slot) = Self.path(position)
            let box = groups[group][branch][leaf][slot]
            // Published boxes are never written (see `_modify`), so reading through the pointer
            // races with nothing.
            withUnsafeMutablePointer(to: &box.value) { body($0.pointee) }
        }
    }

    /// Calls `body` with the address of the element at `position` in its box. Passing the
    /// element itself, even `borrowing`, copies it (every field retained) because the box is
    /// a class; through the address a reader loads only the fields it reads. Published boxes
    /// are never written (see `_modify`), so the read races with nothing.
    public func withElementAddress(at position: Int, _ body: (UnsafePointer<Element>) -> Void) {
        precondition(position >= 0 && position < count, "ChunkedArray index out of range")
        let (group, branch, leaf, slot) = Self.path(position)
        let box = groups[group][branch][leaf][slot]
        withUnsafeMutablePointer(to: &box.value) { body(UnsafePointer($0)) }
    }

    // Group prefetching (`Ledger.prefetchSubscriptions`): each step loads only lines the step
    // before asked for, so the misses of many positions overlap instead of following one
    // another. The words are read as addresses without retaining them; a stale or wrong one
    // only makes the hint useless, since a prefetch never faults.

    /// Step one: the leaf's line that holds the reference to `position`'s box.
    func prefetchBoxReference(at position: Int) {
        guard position >= 0 && position < count else { return }
        let (group, branch, leaf, slot) = Self.path(position)
        groups[group][branch].withUnsafeBytes { leaves in
            let storage = leaves.load(fromByteOffset: leaf * MemoryLayout<UnsafeRawPointer>.stride, as: UnsafeRawPointer?.self)
            credit_prefetch(storage.map { $0 + arrayStorageHeaderBytes + slot * MemoryLayout<UnsafeRawPointer>.stride })
        }
    }

    /// Step two: the box of `position`, `bytes` of it from its start.
    func prefetchBox(at position: Int, bytes: Int) {
        guard position >= 0 && position < count else { return }
        let (group, branch, leaf, slot) = Self.path(position)
        groups[group][branch][leaf].withUnsafeBytes { boxes in
            guard let box = boxes.load(fromByteOffset: slot * MemoryLayout<UnsafeRawPointer>.stride,
                                       as: UnsafeRawPointer?.self) else { return }
            for offset in stride(from: 0, to: bytes, by: 64) { credit_prefetch(box + offset) }
        }
    }

    /// `withElementAddress` returning a value, for reads inside this module (specialized here).
    @inline(__always)
    func readElement<Result>(at position: Int, _ body: (UnsafePointer<Element>) -> Result) -> Result {
        precondition(position >= 0 && position < count, "ChunkedArray index out of range")
        let (group, branch, leaf, slot) = Self.path(position)
        let box = groups[group][branch][leaf][slot]
        return withUnsafeMutablePointer(to: &box.value) { body(UnsafePointer($0)) }
    }

    @inline(__always)
    private static func path(_ position: Int) -> (group: Int, branch: Int, leaf: Int, slot: Int) {
        (position / elementsPerGroup, (position / (fanout * fanout)) % fanout, (position / fanout) % fanout,
         position % fanout)
    }

    public mutating func append(_ element: Element) {
        append(box: Box(element))
    }

    private mutating func append(box: Box) {
        let (group, branch, leaf, _) = Self.path(count)
        if group == groups.count {
            groups.append(Self.reserved(Self.fanout))
        }
        if branch == groups[group].count {
            groups[group].append(Self.reserved(Self.fanout))
        }
        if leaf == groups[group][branch].count {
            groups[group][branch].append(Self.reserved(Self.fanout))
        }
        groups[group][branch][leaf].append(box)
        count += 1
    }

    private static func reserved<T>(_ capacity: Int) -> [T] {
        var array: [T] = []
        array.reserveCapacity(capacity)
        return array
    }

    /// Removes the last element (rolls back an append).
    @discardableResult
    public mutating func removeLast() -> Element {
        precondition(count > 0, "removeLast on an empty ChunkedArray")
        let (group, branch, leaf, _) = Self.path(count - 1)
        let element = groups[group][branch][leaf].removeLast().value
        if groups[group][branch][leaf].isEmpty { groups[group][branch].removeLast() }
        if groups[group][branch].isEmpty { groups[group].removeLast() }
        if groups[group].isEmpty { groups.removeLast() }
        count -= 1
        return element
    }
}

// Boxes are mutated only through `_modify` after a uniqueness check, so a shared box is never
// written: sharing the value across threads is as safe as sharing an Array of it.
extension ChunkedArray: @unchecked Sendable where Element: Sendable {}
extension ChunkedArray: Equatable where Element: Equatable {
    public static func == (lhs: ChunkedArray, rhs: ChunkedArray) -> Bool {
        lhs.count == rhs.count && lhs.elementsEqual(rhs)
    }
}

/// The slot of each subscription id. It stores, per id, 32 bits of the id's hash and the slot
/// (8 bytes) but not the id: a lookup confirms a match by reading the id at the slot, which the
/// caller reads next anyway.
///
/// A `Dictionary` from ids to slots visited its storage header, its bitmap, its keys and its
/// values, and hashed with SipHash: about 8% of a ChangeSeats's writer time and 10% of a
/// replay's, for a lookup. Here a lookup reads one 8-byte entry in a shard of a few dozen
/// (usually one cache line past the shard's header) and, on a match, the id at the slot.
///
/// The table is split in three levels of small arrays so that a change after a publish copies
/// little: the top level's 256 references once per batch, then 16 references twice and one shard
/// of a few entries per change. Copying an array of references retains each one, and each
/// retain touches its own object: with 1,024 groups of 64 shards, the top level and a group's 64
/// were ~13% of a CreateSubscription's writer. Each shard is linearly probed, 0 marking an empty
/// entry, and its first element counts its entries. Ids are never removed.
///
/// The hash is seeded per process: ids that a client chooses cannot be made to collide in a
/// shard in every run (collisions would only slow lookups; a match is always confirmed).
package struct SlotTable: Sendable {
    static var topCount: Int { 256 }
    static var fanout: Int { 16 }
    static var shardCount: Int { topCount * fanout * fanout }
    private static let seed = UInt64.random(in: .min ... .max)

    /// shards[top][middle][shard]: `[count, entries...]`, entries a power of two; an entry is
    /// `tag << 32 | (slot + 1)`, the tag being bits 16-47 of the hash (bits 0-15 pick the shard).
    private var shards: [[[[UInt64]]]]
    package private(set) var count = 0

    package init() {
        shards = Array(repeating: Array(repeating: Array(repeating: [], count: Self.fanout), count: Self.fanout),
                       count: Self.topCount)
    }

    @inline(__always)
    private static func hash(_ key: ScalarString) -> UInt64 {
        // FNV-1a from the seed, then murmur3's finalizer to spread every input bit.
        var hash = key.fnv1a(from: seed)
        hash ^= hash >> 33
        hash &*= 0xFF51_AFD7_ED55_8CCD
        hash ^= hash >> 33
        hash &*= 0xC4CE_B9FE_1A85_EC53
        return hash ^ (hash >> 33)
    }

    @inline(__always)
    private static func place(_ hash: UInt64) -> (top: Int, middle: Int, shard: Int, tag: UInt64) {
        let index = Int(truncatingIfNeeded: hash & 0xFFFF)
        return (index >> 8, (index >> 4) & 15, index & 15, (hash >> 16) & 0xFFFF_FFFF)
    }

    /// The slot of `key`, or nil. `isSlot` says whether a candidate slot holds `key`.
    package func slot(of key: ScalarString, isSlot: (Int32) -> Bool) -> Int32? {
        probe(Self.hash(key), accepting: isSlot)
    }

    /// The first slot whose entry carries `hash`'s tag and that `accepting` takes, or nil.
    @inline(__always)
    private func probe(_ hash: UInt64, accepting: (Int32) -> Bool) -> Int32? {
        let (top, middle, shard, tag) = Self.place(hash)
        return shards[top][middle][shard].withUnsafeBufferPointer { shard -> Int32? in
            guard shard.count > 1 else { return nil }
            let mask = shard.count - 2
            var index = Int(truncatingIfNeeded: tag) & mask
            while true {
                let entry = shard[1 + index]
                if entry == 0 { return nil }
                if entry >> 32 == tag {
                    let slot = Int32(truncatingIfNeeded: (entry & 0xFFFF_FFFF) - 1)
                    if accepting(slot) { return slot }
                }
                index = (index + 1) & mask
            }
        }
    }

    // Group prefetching (`Ledger.prefetchSubscriptions`), in three steps over many keys.

    /// `key`'s hash, for the steps below.
    package static func prefetchHash(_ key: ScalarString) -> UInt64 { hash(key) }

    /// Step one: the first line of the shard `hash` falls in (its count and first entries).
    package func prefetchShard(_ hash: UInt64) {
        let (top, middle, shard, _) = Self.place(hash)
        shards[top][middle].withUnsafeBytes { shards in
            let storage = shards.load(fromByteOffset: shard * MemoryLayout<UnsafeRawPointer>.stride, as: UnsafeRawPointer?.self)
            credit_prefetch(storage.map { $0 + arrayStorageHeaderBytes })
        }
    }

    /// Step two: the line where the probe for `hash` starts.
    package func prefetchProbe(_ hash: UInt64) {
        let (top, middle, shard, tag) = Self.place(hash)
        shards[top][middle][shard].withUnsafeBufferPointer { shard in
            guard shard.count > 1, let base = shard.baseAddress else { return }
            credit_prefetch(base + 1 + (Int(truncatingIfNeeded: tag) & (shard.count - 2)))
        }
    }

    /// Step three: the slot of the first entry with `hash`'s tag, unchecked against the key
    /// (for prefetching that slot; a lookup still checks).
    package func candidateSlot(_ hash: UInt64) -> Int32? {
        probe(hash) { _ in true }
    }

    /// Adds `key` at `slot`; the caller knows `key` is not in the table.
    package mutating func insert(_ key: ScalarString, slot: Int32) {
        let (top, middle, shard, tag) = Self.place(Self.hash(key))
        let entry = tag << 32 | UInt64(UInt32(slot) + 1)
        prefetchReferents(of: shards[top][middle])
        let stored = shards[top][middle][shard].isEmpty ? 0 : Int(shards[top][middle][shard][0])
        let capacity = max(0, shards[top][middle][shard].count - 1)
        if (stored + 1) * 4 > capacity * 3 {
            shards[top][middle][shard] = Self.rehashed(shards[top][middle][shard], capacity: max(8, capacity * 2))
        }
        shards[top][middle][shard].withUnsafeMutableBufferPointer { Self.place(entry, in: $0) }
        count += 1
    }

    /// Room for about `capacity` ids in all, without rehashing (bulk loading). Below a few
    /// ids per shard, shards grow as they fill instead: most would stay empty.
    package mutating func reserveCapacity(_ capacity: Int) {
        let each = capacity / Self.shardCount + 1
        guard each >= 4 else { return }
        var size = 8
        while each * 4 > size * 3 { size *= 2 }
        for top in shards.indices {
            for middle in shards[top].indices {
                for shard in shards[top][middle].indices where shards[top][middle][shard].count - 1 < size {
                    shards[top][middle][shard] = Self.rehashed(shards[top][middle][shard], capacity: size)
                }
            }
        }
    }

    private static func place(_ entry: UInt64, in shard: UnsafeMutableBufferPointer<UInt64>) {
        let mask = shard.count - 2
        var index = Int(truncatingIfNeeded: entry >> 32) & mask
        while shard[1 + index] != 0 { index = (index + 1) & mask }
        shard[1 + index] = entry
        shard[0] += 1
    }

    private static func rehashed(_ shard: [UInt64], capacity: Int) -> [UInt64] {
        var grown = [UInt64](repeating: 0, count: 1 + capacity)
        grown.withUnsafeMutableBufferPointer { grown in
            for entry in shard.dropFirst() where entry != 0 { place(entry, in: grown) }
        }
        return grown
    }
}
