/// Containers whose copies share structure, so that a ledger value can be published to readers
/// after every durable batch while the writer keeps changing its own copy.
///
/// A flat `Array` or `Dictionary` that is shared with a published copy is copied whole by the
/// first mutation (copy-on-write), which at a million subscriptions is tens of megabytes per
/// batch. These split their elements into small parts: a mutation after a copy duplicates the
/// few small arrays of references above the one part it touches.

/// An array stored in fixed-size leaves of boxed elements, grouped under a second level.
/// Indices are positions, as in `Array`.
///
/// Three levels of sharing. A leaf holds references to immutable-until-unique boxes, so copying
/// a leaf after a publish retains `leafCapacity` boxes rather than copying every element (a
/// `Subscription` holds a dozen references of its own), and a mutation then copies only the one
/// element it changes. Leaves are grouped `groupCapacity` to a group, so the first change after
/// a publish copies the top level (one reference per group), one group and one leaf: at a
/// million elements about 250 + 64 + 64 references, against 3,906 + 256 with one level of
/// 256-element chunks. A profile of durable writes showed the old chunk copies and their release
/// when the published state was dropped at a fifth of the writer's CPU (and, before elements
/// were boxed, copies of 1,024-element chunks of subscriptions at two thirds).
public struct ChunkedArray<Element>: RandomAccessCollection, MutableCollection {
    static var leafCapacity: Int { 64 }
    static var groupCapacity: Int { 64 }
    static var elementsPerGroup: Int { leafCapacity * groupCapacity }

    final class Box {
        var value: Element
        init(_ value: Element) { self.value = value }
    }

    private var groups: [[[Box]]] = []
    public private(set) var count = 0

    public init() {}

    public init<S: Sequence>(_ elements: S) where S.Element == Element {
        for element in elements { append(element) }
    }

    /// The elements of `elements`, moved into their boxes rather than copied: with a million
    /// subscriptions, copying each (retaining every field) and then releasing the array was
    /// a twentieth of recovery. `elements` should be uniquely referenced; if it is shared, it
    /// is copied once first, as any mutation would.
    public init(taking elements: consuming [Element]) {
        var boxes: [Box] = []
        boxes.reserveCapacity(elements.count)
        while let last = elements.popLast() { boxes.append(Box(last)) }
        for box in boxes.reversed() { append(box: box) }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    public subscript(position: Int) -> Element {
        get {
            precondition(position >= 0 && position < count, "ChunkedArray index out of range")
            let (group, leaf, slot) = Self.path(position)
            return groups[group][leaf][slot].value
        }
        _modify {
            precondition(position >= 0 && position < count, "ChunkedArray index out of range")
            let (group, leaf, slot) = Self.path(position)
            // Copy the element only when a published copy still shares its box (the arrays
            // above it are copied on write by `Array` itself, one per level).
            if !isKnownUniquelyReferenced(&groups[group][leaf][slot]) {
                groups[group][leaf][slot] = Box(groups[group][leaf][slot].value)
            }
            yield &groups[group][leaf][slot].value
        }
    }

    /// Calls `body` with each element of `range` in its box, without copying it out (reading
    /// `box.value` as an argument copied the whole element, retaining each of its fields).
    public func forEach(in range: Range<Int>, _ body: (borrowing Element) -> Void) {
        for position in range {
            let (group, leaf, slot) = Self.path(position)
            let box = groups[group][leaf][slot]
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
        let (group, leaf, slot) = Self.path(position)
        let box = groups[group][leaf][slot]
        withUnsafeMutablePointer(to: &box.value) { body(UnsafePointer($0)) }
    }

    @inline(__always)
    private static func path(_ position: Int) -> (group: Int, leaf: Int, slot: Int) {
        (position / elementsPerGroup, (position / leafCapacity) % groupCapacity, position % leafCapacity)
    }

    public mutating func append(_ element: Element) {
        append(box: Box(element))
    }

    private mutating func append(box: Box) {
        let (group, leaf, _) = Self.path(count)
        if group == groups.count {
            var newGroup: [[Box]] = []
            newGroup.reserveCapacity(Self.groupCapacity)
            groups.append(newGroup)
        }
        if leaf == groups[group].count {
            var newLeaf: [Box] = []
            newLeaf.reserveCapacity(Self.leafCapacity)
            groups[group].append(newLeaf)
        }
        groups[group][leaf].append(box)
        count += 1
    }

    /// Removes the last element (rolls back an append).
    @discardableResult
    public mutating func removeLast() -> Element {
        precondition(count > 0, "removeLast on an empty ChunkedArray")
        let (group, leaf, _) = Self.path(count - 1)
        let element = groups[group][leaf].removeLast().value
        if groups[group][leaf].isEmpty { groups[group].removeLast() }
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

/// A key that names its shard with a cheap hash of its own, so that a lookup does not hash the
/// key twice (once for the shard, once inside the shard's Dictionary). The shard hash needs no
/// resistance to crafted collisions: those could only crowd one shard, whose Dictionary still
/// hashes with the process's seeded hasher.
public protocol ShardedKey: Hashable {
    var shardHash: UInt { get }
}

/// A dictionary split into a fixed number of shards by `ShardedKey.shardHash`.
public struct ShardedDictionary<Key: ShardedKey, Value> {
    private static var shardCount: Int { 1_024 }
    private var shards: [[Key: Value]]
    public private(set) var count = 0

    public init() {
        shards = Array(repeating: [:], count: Self.shardCount)
    }

    private static func shard(of key: Key) -> Int {
        Int(key.shardHash % UInt(shardCount))
    }

    public subscript(key: Key) -> Value? {
        get { shards[Self.shard(of: key)][key] }
        set {
            let shard = Self.shard(of: key)
            let old = if let newValue {
                shards[shard].updateValue(newValue, forKey: key)
            } else {
                shards[shard].removeValue(forKey: key)
            }
            count += (newValue != nil ? 1 : 0) - (old != nil ? 1 : 0)
        }
    }

    /// Reserves room for about `capacity` keys in all (bulk loading).
    public mutating func reserveCapacity(_ capacity: Int) {
        let each = capacity / Self.shardCount + 1
        for index in shards.indices { shards[index].reserveCapacity(each) }
    }
}

extension ShardedDictionary: Sendable where Key: Sendable, Value: Sendable {}
