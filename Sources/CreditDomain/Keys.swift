#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// A string compared by its Unicode scalars (UTF-8 bytes), not by canonical equivalence:
/// ids and keys that differ in any scalar are different (O2, I1), and the order is the
/// code-point order.
public struct ScalarString: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let value: String
    /// The first eight UTF-8 bytes as a big-endian number, zeros after a shorter string's end.
    /// It orders as the bytes do (a tie, zeros included, falls back to the bytes), so most
    /// comparisons in the sorted sets end here, in the element itself, without getting at the
    /// string's contiguous bytes and calling `memcmp` for every probe: the id sets' binary
    /// searches were ~8% of a CreateSubscription's writer, and its writer took ~15% less CPU
    /// at 64 in flight with this (BENCHMARKS.md).
    let leadingBytes: UInt64

    public init(_ value: String) {
        self.value = value
        var bytes = value
        leadingBytes = bytes.withUTF8 { utf8 in
            var leading: UInt64 = 0
            for index in 0..<8 { leading = leading << 8 | (index < utf8.count ? UInt64(utf8[index]) : 0) }
            return leading
        }
    }

    public static func == (lhs: ScalarString, rhs: ScalarString) -> Bool {
        guard lhs.leadingBytes == rhs.leadingBytes else { return false }
        let left = lhs.value.utf8, right = rhs.value.utf8
        guard left.count == right.count else { return false }
        guard left.count > 0 else { return true }
        // One memcmp over both contiguous UTF-8 buffers; `elementsEqual` walked the views byte
        // by byte, a tenth of recovery's profile (the book's hash tables compare keys).
        return withContiguousBytes(left, right) { a, b in memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 }
            ?? left.elementsEqual(right)
    }

    /// `body` over both strings' contiguous UTF-8 bytes; nil when either has none (a bridged
    /// string), for the caller's slower path.
    @inline(__always)
    private static func withContiguousBytes<Result>(
        _ left: String.UTF8View, _ right: String.UTF8View,
        _ body: (UnsafeBufferPointer<UInt8>, UnsafeBufferPointer<UInt8>) -> Result
    ) -> Result? {
        left.withContiguousStorageIfAvailable { a in right.withContiguousStorageIfAvailable { b in body(a, b) } } ?? nil
    }

    /// FNV-1a over the UTF-8 bytes from `basis` (the standard offset basis by default, which
    /// is stable across runs, unlike `Hasher`).
    func fnv1a(from basis: UInt64 = 0xCBF2_9CE4_8422_2325) -> UInt64 {
        var hash = basis
        var bytes = value
        bytes.withUTF8 { utf8 in
            for byte in utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        }
        return hash
    }

    public func hash(into hasher: inout Hasher) {
        var copy = value
        copy.withUTF8 { hasher.combine(bytes: UnsafeRawBufferPointer($0)) }
        hasher.combine(value.utf8.count)
    }

    public static func < (lhs: ScalarString, rhs: ScalarString) -> Bool {
        if lhs.leadingBytes != rhs.leadingBytes { return lhs.leadingBytes < rhs.leadingBytes }
        let left = lhs.value.utf8, right = rhs.value.utf8
        // memcmp over the common prefix, as in `==`: walking the views byte by byte was about
        // a twentieth of a CancelSubscription's writer time (the status sets search by id).
        return withContiguousBytes(left, right) { a, b in
            let common = min(a.count, b.count)
            if common > 0 {
                let order = memcmp(a.baseAddress!, b.baseAddress!, common)
                if order != 0 { return order < 0 }
            }
            return a.count < b.count
        } ?? left.lexicographicallyPrecedes(right)
    }

    public var description: String { value }
}

/// A subscription id with its ledger slot, ordered by id alone.
struct SlottedKey: ChunkedSetElement {
    let key: ScalarString
    let slot: Int32

    static func < (lhs: SlottedKey, rhs: SlottedKey) -> Bool { lhs.key < rhs.key }
    static func == (lhs: SlottedKey, rhs: SlottedKey) -> Bool { lhs.key == rhs.key }
}

/// Subscription ids in sorted order for paging, each with its ledger slot so that snapshots
/// get the id order without a hash lookup per key.
package struct SortedKeyIndex: Sendable {
    private var entries = ChunkedSortedSet<SlottedKey>()

    var count: Int { entries.count }

    package init() {}

    /// The index of keys already in strictly increasing order with their slots (snapshot
    /// loading): each one is appended, without searching.
    package init(sortedKeys: [ScalarString], slots: [Int32]) {
        for (key, slot) in zip(sortedKeys, slots) { entries.insert(SlottedKey(key: key, slot: slot)) }
    }

    /// The slots of all keys, in key order.
    var slotsInOrder: [Int32] {
        var result: [Int32] = []
        result.reserveCapacity(count)
        var cursor = entries.cursor(after: nil)
        while let next = cursor.next() { result.append(next.slot) }
        return result
    }

    mutating func insert(_ key: ScalarString, slot: Int32) {
        entries.insert(SlottedKey(key: key, slot: slot))
    }

    /// Up to `limit` keys strictly after `key` (from the start when nil) with their slots, and
    /// whether more follow.
    func keys(after key: ScalarString?, limit: Int) -> (entries: [SlottedKey], more: Bool) {
        guard limit > 0 else { return ([], false) }
        var cursor = entries.cursor(after: key.map { SlottedKey(key: $0, slot: 0) })
        var result: [SlottedKey] = []
        result.reserveCapacity(limit)
        while let next = cursor.next() {
            if result.count == limit { return (result, true) }
            result.append(next)
        }
        return (result, false)
    }
}

/// A binary min-heap of (due instant, subscription slot). Entries go stale when a
/// subscription's due instant changes; they are dropped when they reach the top.
package struct DueQueue: Sendable {
    package struct Entry: Sendable {
        let due: Instant
        let slot: Int32

        package init(due: Instant, slot: Int32) {
            self.due = due
            self.slot = slot
        }

        static func < (lhs: Entry, rhs: Entry) -> Bool {
            lhs.due < rhs.due || (lhs.due == rhs.due && lhs.slot < rhs.slot)
        }
    }

    private(set) var entries: [Entry] = []

    package init() {}

    /// A heap of `entries` in any order, built in linear time (snapshot loading). Pops come
    /// out in the same order as after pushing them one by one.
    package init(unordered entries: [Entry]) {
        self.entries = entries
        var parent = entries.count / 2 - 1
        while parent >= 0 {
            siftDown(from: parent)
            parent -= 1
        }
    }

    var top: Entry? { entries.first }

    mutating func push(_ entry: Entry) {
        entries.append(entry)
        var child = entries.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entries[child] < entries[parent] else { break }
            entries.swapAt(child, parent)
            child = parent
        }
    }

    @discardableResult
    mutating func pop() -> Entry? {
        guard !entries.isEmpty else { return nil }
        entries.swapAt(0, entries.count - 1)
        let entry = entries.removeLast()
        siftDown(from: 0)
        return entry
    }

    private mutating func siftDown(from start: Int) {
        var parent = start
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < entries.count, entries[left] < entries[smallest] { smallest = left }
            if right < entries.count, entries[right] < entries[smallest] { smallest = right }
            if smallest == parent { break }
            entries.swapAt(parent, smallest)
            parent = smallest
        }
    }

    mutating func removeAll() {
        entries.removeAll()
    }
}
