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
    /// Elements per leaf, leaves per group and groups per section at most (tests use small
    /// limits to reach every split and merge with few elements).
    static var leafLimit: Int { get }
    static var groupLimit: Int { get }
    static var sectionLimit: Int { get }
}

extension ChunkedSetElement {
    /// Elements without a due instant.
    var indexDue: Int64 { Int64.max }
    static var tracksDue: Bool { false }
    static var leafLimit: Int { 128 }
    static var groupLimit: Int { 64 }
    static var sectionLimit: Int { 32 }
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

/// A sorted set of distinct elements in three levels: leaves of at most `leafLimit` elements,
/// groups of at most `groupLimit` leaves, sections of at most `sectionLimit` groups. Insert and
/// remove cost O(log n + leafLimit + groupLimit + sectionLimit); appending the largest element
/// is O(1).
///
/// After a copy (a publish), the first mutation copies the top-level array (one entry per
/// hundred thousand elements or so), one section's array of groups, one group's array of leaves
/// and one leaf. With two levels the top array held a group (two references) per few thousand
/// elements, and every batch copied it whole for each set it changed, then released the copy:
/// at 800,000 ids, copying and releasing the tops of the id sets was about a tenth of a
/// CreateSubscription's writer, and the cost grew with the book (5M credits: 2,000 references
/// per set and batch). With one level of 1,024-element chunks, a seventh of a
/// CancelSubscription's writer time went to copying chunks of 1,024 (the status sets hold ids,
/// so each copy retained every id).
///
/// A small set (a customer's) costs what it did with one level: the top array, one group
/// array, one leaf array and one leaf; the per-leaf due instants are kept only for elements
/// that have them.
struct ChunkedSortedSet<Element: ChunkedSetElement>: Sendable {
    static var leafLimit: Int { Element.leafLimit }
    static var groupLimit: Int { Element.groupLimit }
    static var sectionLimit: Int { Element.sectionLimit }

    struct Group: Sendable {
        var leaves: [[Element]]
        /// The smallest `indexDue` per leaf; empty unless `Element.tracksDue`.
        var minimumDue: [Int64]
        /// The smallest `indexDue` in the group (`Int64.max` unless `Element.tracksDue`).
        var smallestDue: Int64
        /// The group's last element, so that a section is searched without reading leaves.
        var last: Element
    }

    struct Section: Sendable {
        var groups: [Group]
        /// The smallest `indexDue` in the section (`Int64.max` unless `Element.tracksDue`).
        var smallestDue: Int64
        /// The section's last element, so that the top level is searched without reading groups.
        var last: Element
    }

    private(set) var sections: [Section] = []
    private(set) var count = 0

    init() {}

    var isEmpty: Bool { count == 0 }

    /// Where an element is or would go.
    private struct Path {
        var section: Int
        var group: Int
        var leaf: Int
        var position: Int
    }

    /// The first of `count` (> 0) parts that does not end before the element sought, by
    /// `endsBefore(part)`, or the last part when all do.
    @inline(__always)
    private static func firstPart(count: Int, endsBefore: (Int) -> Bool) -> Int {
        var low = 0
        var high = count
        while low < high {
            let mid = (low + high) / 2
            if endsBefore(mid) { low = mid + 1 } else { high = mid }
        }
        return min(low, count - 1)
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

    /// Where `element` is, or would go (the position before every larger element). The set
    /// must not be empty.
    private func locate(_ element: Element, strictlyAfter: Bool = false) -> Path {
        let section = Self.firstPart(count: sections.count) { sections[$0].last < element }
        let groups = sections[section].groups
        let group = Self.firstPart(count: groups.count) { groups[$0].last < element }
        let leaves = groups[group].leaves
        let leaf = Self.firstPart(count: leaves.count) { leaves[$0].last! < element }
        return Path(section: section, group: group, leaf: leaf,
                    position: Self.position(of: element, in: leaves[leaf], strictlyAfter: strictlyAfter))
    }

    private mutating func lowerDue(_ path: Path, to due: Int64) {
        guard Element.tracksDue else { return }
        if due < sections[path.section].groups[path.group].minimumDue[path.leaf] {
            sections[path.section].groups[path.group].minimumDue[path.leaf] = due
        }
        if due < sections[path.section].groups[path.group].smallestDue {
            sections[path.section].groups[path.group].smallestDue = due
        }
        if due < sections[path.section].smallestDue { sections[path.section].smallestDue = due }
    }

    /// Recomputes the smallest due instant of `leaf` (nil: of no leaf), of its group and of its
    /// section.
    private mutating func refreshDue(section: Int, group: Int, leaf: Int?) {
        guard Element.tracksDue else { return }
        if let leaf {
            var smallest = Int64.max
            for element in sections[section].groups[group].leaves[leaf] where element.indexDue < smallest {
                smallest = element.indexDue
            }
            sections[section].groups[group].minimumDue[leaf] = smallest
        }
        sections[section].groups[group].smallestDue = sections[section].groups[group].minimumDue.min() ?? Int64.max
        refreshDue(section: section)
    }

    private mutating func refreshDue(section: Int) {
        guard Element.tracksDue else { return }
        sections[section].smallestDue = sections[section].groups.lazy.map(\.smallestDue).min() ?? Int64.max
    }

    /// Inserts `element`, or replaces the equal one (so a due instant can be updated).
    /// Returns whether it was new.
    @discardableResult
    mutating func insert(_ element: Element) -> Bool {
        if sections.isEmpty || sections[sections.count - 1].last < element {
            append(element)
            return true
        }
        // `element` is at most the last element, so its section, group and leaf each hold an
        // element ≥ it, and their `last` stay as they are.
        let path = locate(element)
        prefetchReferents(of: sections[path.section].groups[path.group].leaves)
        // Only the old element is read out: a local copy of the leaf would make the insert
        // below copy it.
        if let old = storedElement(at: path), old == element {
            let oldDue = old.indexDue
            sections[path.section].groups[path.group].leaves[path.leaf][path.position] = element
            if element.indexDue < oldDue {
                lowerDue(path, to: element.indexDue)
            } else if element.indexDue > oldDue {
                refreshDue(section: path.section, group: path.group, leaf: path.leaf)
            }
            return false
        }
        sections[path.section].groups[path.group].leaves[path.leaf].insert(element, at: path.position)
        lowerDue(path, to: element.indexDue)
        count += 1
        if sections[path.section].groups[path.group].leaves[path.leaf].count > Self.leafLimit { split(path) }
        return true
    }

    /// Whether the last group of `groups` holds all the leaves and elements it may.
    private static func lastGroupIsFull(_ groups: [Group]) -> Bool {
        guard let group = groups.last else { return false }
        return group.leaves.count >= groupLimit && group.leaves[groupLimit - 1].count >= leafLimit
    }

    /// Appends an element larger than every other: the common case (serials grow). Full
    /// leaves, groups and sections stay full.
    private mutating func append(_ element: Element) {
        if sections.isEmpty || (sections[sections.count - 1].groups.count >= Self.sectionLimit
                                && Self.lastGroupIsFull(sections[sections.count - 1].groups)) {
            sections.append(Section(groups: [], smallestDue: Int64.max, last: element))
        }
        let section = sections.count - 1
        if sections[section].groups.isEmpty || Self.lastGroupIsFull(sections[section].groups) {
            sections[section].groups.append(Group(leaves: [], minimumDue: [], smallestDue: Int64.max, last: element))
        }
        let group = sections[section].groups.count - 1
        let leafCount = sections[section].groups[group].leaves.count
        if leafCount == 0 || sections[section].groups[group].leaves[leafCount - 1].count >= Self.leafLimit {
            sections[section].groups[group].leaves.append([])
            if Element.tracksDue { sections[section].groups[group].minimumDue.append(Int64.max) }
        }
        let leaf = sections[section].groups[group].leaves.count - 1
        let path = Path(section: section, group: group, leaf: leaf, position: 0)
        if sections[section].groups[group].leaves[leaf].count == sections[section].groups[group].leaves[leaf].capacity {
            // A set that has filled a leaf before will fill this one too: room for the whole
            // leaf at once. The first leaf grows by doubling, up to exactly `leafLimit`: most
            // sets are small (a customer's subscriptions and credits).
            let first = section == 0 && group == 0 && leaf == 0
            sections[section].groups[group].leaves[leaf].reserveCapacity(
                first ? min(Self.leafLimit, max(4, count * 2)) : Self.leafLimit)
        }
        sections[section].groups[group].leaves[leaf].append(element)
        sections[section].groups[group].last = element
        sections[section].last = element
        lowerDue(path, to: element.indexDue)
        count += 1
    }

    /// Splits an overfull leaf in two, then its group and its section if that makes them
    /// overfull.
    private mutating func split(_ path: Path) {
        let (section, group, leaf) = (path.section, path.group, path.leaf)
        let half = Self.leafLimit / 2
        let upper = Array(sections[section].groups[group].leaves[leaf][half...])
        sections[section].groups[group].leaves[leaf].removeSubrange(half...)
        sections[section].groups[group].leaves.insert(upper, at: leaf + 1)
        if Element.tracksDue {
            sections[section].groups[group].minimumDue.insert(Int64.max, at: leaf + 1)
            refreshDue(section: section, group: group, leaf: leaf)
            refreshDue(section: section, group: group, leaf: leaf + 1)
        }
        guard sections[section].groups[group].leaves.count > Self.groupLimit else { return }
        let halfGroup = Self.groupLimit / 2
        var upperGroup = Group(leaves: Array(sections[section].groups[group].leaves[halfGroup...]),
                               minimumDue: Element.tracksDue ? Array(sections[section].groups[group].minimumDue[halfGroup...]) : [],
                               smallestDue: Int64.max, last: sections[section].groups[group].last)
        sections[section].groups[group].leaves.removeSubrange(halfGroup...)
        sections[section].groups[group].last = sections[section].groups[group].leaves[halfGroup - 1].last!
        if Element.tracksDue {
            upperGroup.smallestDue = upperGroup.minimumDue.min() ?? Int64.max
            sections[section].groups[group].minimumDue.removeSubrange(halfGroup...)
            sections[section].groups[group].smallestDue = sections[section].groups[group].minimumDue.min() ?? Int64.max
        }
        sections[section].groups.insert(upperGroup, at: group + 1)
        // The section holds the same elements: its last and smallest due instant stand.
        guard sections[section].groups.count > Self.sectionLimit else { return }
        let halfSection = Self.sectionLimit / 2
        var upperSection = Section(groups: Array(sections[section].groups[halfSection...]),
                                   smallestDue: Int64.max, last: sections[section].last)
        sections[section].groups.removeSubrange(halfSection...)
        sections[section].last = sections[section].groups[halfSection - 1].last
        if Element.tracksDue {
            upperSection.smallestDue = upperSection.groups.lazy.map(\.smallestDue).min() ?? Int64.max
            refreshDue(section: section)
        }
        sections.insert(upperSection, at: section + 1)
    }

    /// Removes the element equal to `element`; returns whether there was one.
    @discardableResult
    mutating func remove(_ element: Element) -> Bool {
        guard !sections.isEmpty else { return false }
        let path = locate(element)
        let (section, group, leaf) = (path.section, path.group, path.leaf)
        guard let old = storedElement(at: path), old == element else { return false }
        prefetchReferents(of: sections[section].groups[group].leaves)
        let removedDue = old.indexDue
        sections[section].groups[group].leaves[leaf].remove(at: path.position)
        count -= 1
        if sections[section].groups[group].leaves[leaf].isEmpty {
            sections[section].groups[group].leaves.remove(at: leaf)
            if Element.tracksDue { sections[section].groups[group].minimumDue.remove(at: leaf) }
            if sections[section].groups[group].leaves.isEmpty {
                sections[section].groups.remove(at: group)
                if sections[section].groups.isEmpty {
                    sections.remove(at: section)
                    return true
                }
                if group == sections[section].groups.count {
                    sections[section].last = sections[section].groups[group - 1].last
                }
                refreshDue(section: section)
                return true
            }
            refreshDue(section: section, group: group, leaf: nil)
        } else if Element.tracksDue, removedDue == sections[section].groups[group].minimumDue[leaf] {
            refreshDue(section: section, group: group, leaf: leaf)
        }
        let leafCount = sections[section].groups[group].leaves.count
        if leaf >= leafCount - 1 {
            sections[section].groups[group].last = sections[section].groups[group].leaves[leafCount - 1].last!
            if group == sections[section].groups.count - 1 {
                sections[section].last = sections[section].groups[group].last
            }
        }
        return true
    }

    /// The element at `path`, if its leaf has one there.
    private func storedElement(at path: Path) -> Element? {
        let leaf = sections[path.section].groups[path.group].leaves[path.leaf]
        return path.position < leaf.count ? leaf[path.position] : nil
    }

    func contains(_ element: Element) -> Bool {
        find(element) != nil
    }

    /// The stored element equal to `element`.
    func find(_ element: Element) -> Element? {
        guard !sections.isEmpty else { return nil }
        let stored = storedElement(at: locate(element))
        return stored == element ? stored : nil
    }

    /// A cursor over the elements strictly after `element` (from the start when nil) whose
    /// `indexDue` is at or before `dueLimit` (every element when nil); sections, groups and
    /// leaves whose smallest due instant is later are skipped whole.
    func cursor(after element: Element?, dueAtOrBefore dueLimit: Int64? = nil) -> Cursor {
        var cursor = Cursor(set: self, section: 0, group: 0, leaf: 0, position: 0, dueLimit: dueLimit)
        if let element, !sections.isEmpty {
            let path = locate(element, strictlyAfter: true)
            (cursor.section, cursor.group, cursor.leaf, cursor.position) = (path.section, path.group, path.leaf, path.position)
        }
        return cursor
    }

    struct Cursor {
        let set: ChunkedSortedSet
        var section: Int
        var group: Int
        var leaf: Int
        var position: Int
        let dueLimit: Int64?

        mutating func next() -> Element? {
            while section < set.sections.count {
                if let dueLimit, set.sections[section].smallestDue > dueLimit {
                    (section, group, leaf, position) = (section + 1, 0, 0, 0)
                    continue
                }
                let groups = set.sections[section].groups
                while group < groups.count {
                    if let dueLimit, groups[group].smallestDue > dueLimit {
                        (group, leaf, position) = (group + 1, 0, 0)
                        continue
                    }
                    while leaf < groups[group].leaves.count {
                        if let dueLimit, Element.tracksDue, groups[group].minimumDue[leaf] > dueLimit {
                            (leaf, position) = (leaf + 1, 0)
                            continue
                        }
                        let elements = groups[group].leaves[leaf]
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
                (section, group, leaf, position) = (section + 1, 0, 0, 0)
            }
            return nil
        }
    }

    /// Every element in order (tests and rebuilds).
    var elements: [Element] { sections.flatMap { $0.groups.flatMap { $0.leaves.joined() } } }

    /// Every group in order (tests of the layout).
    var groups: [Group] { sections.flatMap(\.groups) }

    /// Every leaf in order (tests of the layout).
    var leaves: [[Element]] { sections.flatMap { $0.groups.flatMap(\.leaves) } }
}

/// A map from strings to values whose changes after a copy (a publish) copy a small, bounded
/// amount however many keys it holds. The values sit in a `ChunkedArray`, in the order their
/// keys were first added, with each key beside its value; a `SlotTable` finds a key's position.
/// Keys are never removed.
///
/// The customers' map was 1,024 dictionaries under two levels of 32: fine for a few thousand
/// customers, but at 800,000 (one per subscription) each dictionary held ~800 entries, the first
/// change after a publish copied the whole dictionary (every key and entry retained), and a
/// ChangeSeats took 86 us of CPU at 16 in flight instead of 20. Here a change copies a path of
/// references and one value's box; a new key adds an entry to one shard of the slot table
/// (plain integers, no references).
struct SlottedMap<Value: Sendable>: Sendable {
    struct Entry: Sendable {
        let key: ScalarString
        var value: Value
    }

    private var entries = ChunkedArray<Entry>()
    private var slots = SlotTable()

    init() {}

    var count: Int { entries.count }

    private func slot(of key: ScalarString) -> Int32? {
        // The candidate's key is compared in its box: reading the entry out would copy the value.
        slots.slot(of: key) { slot in entries.readElement(at: Int(slot)) { $0.pointee.key == key } }
    }

    subscript(key: ScalarString) -> Value? {
        slot(of: key).map { slot in entries.readElement(at: Int(slot)) { $0.pointee.value } }
    }

    /// Room for `capacity` keys in all (bulk loading).
    mutating func reserveCapacity(_ capacity: Int) {
        slots.reserveCapacity(capacity)
    }

    /// Changes the value of `key` in place, creating it with `make` when absent.
    @discardableResult
    mutating func update<Result>(_ key: ScalarString, default make: @autoclosure () -> Value,
                                 _ body: (inout Value) -> Result) -> Result {
        if let slot = slot(of: key) {
            return body(&entries[Int(slot)].value)
        }
        let slot = entries.count
        entries.append(Entry(key: key, value: make()))
        slots.insert(key, slot: Int32(slot))
        return body(&entries[slot].value)
    }
}
