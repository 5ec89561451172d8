// Chunked containers for state that grows with the book. The service copies the `Ledger` after
// every durable batch and keeps mutating its own copy, so a flat array or dictionary would be
// copied whole by the first mutation after each copy; these copy only the small parts above
// and around the element a mutation touches.

/// What a chunked sorted set can summarize per leaf: the smallest `indexDue` of its elements,
/// so that a scan for "due at or before t" skips whole leaves.
protocol ChunkedSetElement: Comparable, Sendable {
    /// `Int64.max` when the element has no due instant.
    var indexDue: Int64 { get }
    /// Whether elements of this type can have a due instant (the set keeps per-leaf minimums).
    static var tracksDue: Bool { get }
}

extension ChunkedSetElement {
    /// Elements without a due instant.
    var indexDue: Int64 { Int64.max }
    static var tracksDue: Bool { false }
}

extension UInt64: ChunkedSetElement {}

extension ScalarString: ChunkedSetElement {}

/// A credit serial with the instant (nanoseconds) from which a flag becomes true. Ordered and
/// compared by serial only: the set holds one entry per credit.
struct DueSerial: ChunkedSetElement {
    let serial: UInt64
    let due: Int64

    var indexDue: Int64 { due }
    static var tracksDue: Bool { true }

    static func < (lhs: DueSerial, rhs: DueSerial) -> Bool { lhs.serial < rhs.serial }
    static func == (lhs: DueSerial, rhs: DueSerial) -> Bool { lhs.serial == rhs.serial }
}

/// Where a credit lives: its serial and the slot of its subscription. Ordered by serial.
struct CreditLocation: ChunkedSetElement {
    let serial: UInt64
    let slot: Int32

    static func < (lhs: CreditLocation, rhs: CreditLocation) -> Bool { lhs.serial < rhs.serial }
    static func == (lhs: CreditLocation, rhs: CreditLocation) -> Bool { lhs.serial == rhs.serial }
}

/// A sorted set of distinct elements in two levels: leaves of at most `leafLimit` elements in
/// groups of at most `groupLimit` leaves. Insert and remove cost O(log n + leafLimit +
/// groupLimit); appending the largest element is O(1).
///
/// After a copy (a publish), the first mutation copies the top-level array (one entry per few
/// thousand elements), one group's array of leaves and one leaf. With one level of 1,024-element
/// chunks it copied a chunk of 1,024 and a top level of one entry per chunk, and copying them
/// and later releasing them was about a seventh of a CancelSubscription's writer time (the
/// status sets hold ids, so each copy retained every id).
///
/// A small set (a customer's) costs what it did with one level: the top array, one leaf array
/// and one leaf; the per-leaf due instants are kept only for elements that have them.
struct ChunkedSortedSet<Element: ChunkedSetElement>: Sendable {
    static var leafLimit: Int { 128 }
    static var groupLimit: Int { 64 }

    struct Group: Sendable {
        var leaves: [[Element]]
        /// The smallest `indexDue` per leaf; empty unless `Element.tracksDue`.
        var minimumDue: [Int64]
        /// The smallest `indexDue` in the group (`Int64.max` unless `Element.tracksDue`).
        var smallestDue: Int64
        /// The group's last element, so that the top level is searched without reading leaves.
        var last: Element
    }

    private(set) var groups: [Group] = []
    private(set) var count = 0

    init() {}

    var isEmpty: Bool { count == 0 }

    /// The first group whose last element is ≥ `element` (or the last group).
    private func groupIndex(for element: Element) -> Int {
        var low = 0
        var high = groups.count
        while low < high {
            let mid = (low + high) / 2
            if groups[mid].last < element { low = mid + 1 } else { high = mid }
        }
        return min(low, groups.count - 1)
    }

    /// The first leaf whose last element is ≥ `element` (or the last leaf).
    private static func leafIndex(for element: Element, in leaves: [[Element]]) -> Int {
        var low = 0
        var high = leaves.count
        while low < high {
            let mid = (low + high) / 2
            if leaves[mid].last! < element { low = mid + 1 } else { high = mid }
        }
        return min(low, leaves.count - 1)
    }

    private static func position(of element: Element, in leaf: [Element], strictlyAfter: Bool) -> Int {
        var low = 0
        var high = leaf.count
        while low < high {
            let mid = (low + high) / 2
            if leaf[mid] < element || (strictlyAfter && leaf[mid] == element) { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// Where `element` is or would go: a group, a leaf in it and a position in the leaf.
    private func locate(_ element: Element) -> (group: Int, leaf: Int, position: Int) {
        let group = groupIndex(for: element)
        let leaf = Self.leafIndex(for: element, in: groups[group].leaves)
        return (group, leaf, Self.position(of: element, in: groups[group].leaves[leaf], strictlyAfter: false))
    }

    private mutating func lowerDue(group: Int, leaf: Int, to due: Int64) {
        guard Element.tracksDue else { return }
        if due < groups[group].minimumDue[leaf] { groups[group].minimumDue[leaf] = due }
        if due < groups[group].smallestDue { groups[group].smallestDue = due }
    }

    /// Recomputes the smallest due instant of `leaf` (nil: of no leaf) and of its group.
    private mutating func refreshDue(group: Int, leaf: Int?) {
        guard Element.tracksDue else { return }
        if let leaf {
            var smallest = Int64.max
            for element in groups[group].leaves[leaf] where element.indexDue < smallest { smallest = element.indexDue }
            groups[group].minimumDue[leaf] = smallest
        }
        groups[group].smallestDue = groups[group].minimumDue.min() ?? Int64.max
    }

    /// Inserts `element`, or replaces the equal one (so a due instant can be updated).
    /// Returns whether it was new.
    @discardableResult
    mutating func insert(_ element: Element) -> Bool {
        if groups.isEmpty || groups[groups.count - 1].last < element {
            append(element)
            return true
        }
        // `element` is at most the last element, so its leaf has an element ≥ it.
        let (group, leaf, position) = locate(element)
        prefetchReferents(of: groups[group].leaves)
        if groups[group].leaves[leaf][position] == element {
            let oldDue = groups[group].leaves[leaf][position].indexDue
            groups[group].leaves[leaf][position] = element
            if element.indexDue < oldDue {
                lowerDue(group: group, leaf: leaf, to: element.indexDue)
            } else if element.indexDue > oldDue {
                refreshDue(group: group, leaf: leaf)
            }
            return false
        }
        groups[group].leaves[leaf].insert(element, at: position)
        lowerDue(group: group, leaf: leaf, to: element.indexDue)
        count += 1
        if groups[group].leaves[leaf].count > Self.leafLimit { split(group: group, leaf: leaf) }
        return true
    }

    /// Appends an element larger than every other: the common case (serials grow). Full leaves
    /// and groups stay full.
    private mutating func append(_ element: Element) {
        if groups.isEmpty || (groups[groups.count - 1].leaves.count >= Self.groupLimit
                              && groups[groups.count - 1].leaves[Self.groupLimit - 1].count >= Self.leafLimit) {
            groups.append(Group(leaves: [], minimumDue: [], smallestDue: Int64.max, last: element))
        }
        let group = groups.count - 1
        if groups[group].leaves.isEmpty || groups[group].leaves[groups[group].leaves.count - 1].count >= Self.leafLimit {
            groups[group].leaves.append([])
            if Element.tracksDue { groups[group].minimumDue.append(Int64.max) }
        }
        let leaf = groups[group].leaves.count - 1
        if groups[group].leaves[leaf].count == groups[group].leaves[leaf].capacity {
            // A set that has filled a leaf before will fill this one too: room for the whole
            // leaf at once. The first leaf grows by doubling, up to exactly `leafLimit`: most
            // sets are small (a customer's subscriptions and credits).
            let first = group == 0 && leaf == 0
            groups[group].leaves[leaf].reserveCapacity(first ? min(Self.leafLimit, max(4, count * 2)) : Self.leafLimit)
        }
        groups[group].leaves[leaf].append(element)
        groups[group].last = element
        lowerDue(group: group, leaf: leaf, to: element.indexDue)
        count += 1
    }

    /// Splits an overfull leaf in two, and its group if that makes it overfull.
    private mutating func split(group: Int, leaf: Int) {
        let half = Self.leafLimit / 2
        let upper = Array(groups[group].leaves[leaf][half...])
        groups[group].leaves[leaf].removeSubrange(half...)
        groups[group].leaves.insert(upper, at: leaf + 1)
        if Element.tracksDue {
            groups[group].minimumDue.insert(Int64.max, at: leaf + 1)
            refreshDue(group: group, leaf: leaf)
            refreshDue(group: group, leaf: leaf + 1)
        }
        guard groups[group].leaves.count > Self.groupLimit else { return }
        let halfGroup = Self.groupLimit / 2
        var upperGroup = Group(leaves: Array(groups[group].leaves[halfGroup...]),
                               minimumDue: Element.tracksDue ? Array(groups[group].minimumDue[halfGroup...]) : [],
                               smallestDue: Int64.max, last: groups[group].last)
        groups[group].leaves.removeSubrange(halfGroup...)
        groups[group].last = groups[group].leaves[halfGroup - 1].last!
        if Element.tracksDue {
            upperGroup.smallestDue = upperGroup.minimumDue.min() ?? Int64.max
            groups[group].minimumDue.removeSubrange(halfGroup...)
            refreshDue(group: group, leaf: nil)
        }
        groups.insert(upperGroup, at: group + 1)
    }

    /// Removes the element equal to `element`; returns whether there was one.
    @discardableResult
    mutating func remove(_ element: Element) -> Bool {
        guard !groups.isEmpty else { return false }
        let (group, leaf, position) = locate(element)
        guard position < groups[group].leaves[leaf].count, groups[group].leaves[leaf][position] == element else { return false }
        prefetchReferents(of: groups[group].leaves)
        let removedDue = groups[group].leaves[leaf][position].indexDue
        groups[group].leaves[leaf].remove(at: position)
        count -= 1
        if groups[group].leaves[leaf].isEmpty {
            groups[group].leaves.remove(at: leaf)
            if groups[group].leaves.isEmpty {
                groups.remove(at: group)
                return true
            }
            if Element.tracksDue {
                groups[group].minimumDue.remove(at: leaf)
                refreshDue(group: group, leaf: nil)
            }
        } else if Element.tracksDue, removedDue == groups[group].minimumDue[leaf] {
            refreshDue(group: group, leaf: leaf)
        }
        if leaf >= groups[group].leaves.count - 1 {
            groups[group].last = groups[group].leaves[groups[group].leaves.count - 1].last!
        }
        return true
    }

    func contains(_ element: Element) -> Bool {
        find(element) != nil
    }

    /// The stored element equal to `element`.
    func find(_ element: Element) -> Element? {
        guard !groups.isEmpty else { return nil }
        let (group, leaf, position) = locate(element)
        let elements = groups[group].leaves[leaf]
        return position < elements.count && elements[position] == element ? elements[position] : nil
    }

    /// A cursor over the elements strictly after `element` (from the start when nil) whose
    /// `indexDue` is at or before `dueLimit` (every element when nil); groups and leaves whose
    /// smallest due instant is later are skipped whole.
    func cursor(after element: Element?, dueAtOrBefore dueLimit: Int64? = nil) -> Cursor {
        var cursor = Cursor(set: self, group: 0, leaf: 0, position: 0, dueLimit: dueLimit)
        if let element, !groups.isEmpty {
            cursor.group = groupIndex(for: element)
            cursor.leaf = Self.leafIndex(for: element, in: groups[cursor.group].leaves)
            cursor.position = Self.position(of: element, in: groups[cursor.group].leaves[cursor.leaf], strictlyAfter: true)
        }
        return cursor
    }

    struct Cursor {
        let set: ChunkedSortedSet
        var group: Int
        var leaf: Int
        var position: Int
        let dueLimit: Int64?

        mutating func next() -> Element? {
            while group < set.groups.count {
                if let dueLimit, set.groups[group].smallestDue > dueLimit {
                    (group, leaf, position) = (group + 1, 0, 0)
                    continue
                }
                while leaf < set.groups[group].leaves.count {
                    if let dueLimit, Element.tracksDue, set.groups[group].minimumDue[leaf] > dueLimit {
                        (leaf, position) = (leaf + 1, 0)
                        continue
                    }
                    let elements = set.groups[group].leaves[leaf]
                    while position < elements.count {
                        let element = elements[position]
                        position += 1
                        if let dueLimit, element.indexDue > dueLimit { continue }
                        return element
                    }
                    (leaf, position) = (leaf + 1, 0)
                }
                (group, leaf, position) = (group + 1, 0, 0)
            }
            return nil
        }
    }

    /// Every element in order (tests and rebuilds).
    var elements: [Element] { groups.flatMap { $0.leaves.joined() } }

    /// Every leaf in order (tests of the layout).
    var leaves: [[Element]] { groups.flatMap(\.leaves) }
}

/// A map from strings (by Unicode scalars) to values in a fixed number of small dictionaries,
/// chosen by a stable hash of the key, so a mutation copies one bucket, never the whole map.
/// The buckets sit 32 to a shelf under a top level of 32 shelves: the first change after a
/// publish copies 32 references twice and one bucket. With the 1,024 buckets in one array, that
/// array's copy (each reference retained) and its release were ~5% of a CancelSubscription's
/// writer at one write per batch.
struct BucketedMap<Value: Sendable>: Sendable {
    static var shelfCount: Int { 32 }
    static var bucketsPerShelf: Int { 32 }
    private var shelves: [[[ScalarString: Value]]] = []
    private(set) var count = 0

    init() {}

    private static func place(of key: ScalarString) -> (shelf: Int, bucket: Int) {
        let bucket = Int(key.fnv1a() % UInt64(shelfCount * bucketsPerShelf))
        return (bucket / bucketsPerShelf, bucket % bucketsPerShelf)
    }

    subscript(key: ScalarString) -> Value? {
        guard !shelves.isEmpty else { return nil }
        let (shelf, bucket) = BucketedMap.place(of: key)
        return shelves[shelf][bucket][key]
    }

    /// Changes the value of `key` in place, creating it with `make` when absent.
    @discardableResult
    mutating func update<Result>(_ key: ScalarString, default make: @autoclosure () -> Value,
                                 _ body: (inout Value) -> Result) -> Result {
        if shelves.isEmpty {
            shelves = Array(repeating: Array(repeating: [:], count: BucketedMap.bucketsPerShelf), count: BucketedMap.shelfCount)
        }
        let (shelf, bucket) = BucketedMap.place(of: key)
        if shelves[shelf][bucket][key] == nil { count += 1 }
        return body(&shelves[shelf][bucket][key, default: make()])
    }
}
