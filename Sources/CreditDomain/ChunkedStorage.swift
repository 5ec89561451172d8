/// Containers whose copies share structure, so that a ledger value can be published to readers
/// after every durable batch while the writer keeps changing its own copy.
///
/// A flat `Array` or `Dictionary` that is shared with a published copy is copied whole by the
/// first mutation (copy-on-write), which at a million subscriptions is tens of megabytes per
/// batch. These split their elements into small parts: a mutation after a copy duplicates the
/// few small arrays of references above the one part it touches.

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

    final class Box {
        var value: Element
        init(_ value: Element) { self.value = value }
    }

    /// groups[group][branch][leaf][slot]
    private var groups: [[[[Box]]]] = []
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
            let (group, branch, leaf, slot) = Self.path(position)
            return groups[group][branch][leaf][slot].value
        }
        _modify {
            precondition(position >= 0 && position < count, "ChunkedArray index out of range")
            let (group, branch, leaf, slot) = Self.path(position)
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

/// A key that names its shard with a cheap hash of its own, so that a lookup does not hash the
/// key twice (once for the shard, once inside the shard's Dictionary). The shard hash needs no
/// resistance to crafted collisions: those could only crowd one shard, whose Dictionary still
/// hashes with the process's seeded hasher.
public protocol ShardedKey: Hashable {
    var shardHash: UInt { get }
}

/// A dictionary split into a fixed number of small shards by `ShardedKey.shardHash`, 64 shards
/// to a group.
///
/// Shared with a published copy, a shard is copied whole by its first change, with a retain
/// per key: with 1,024 shards of ~400 ids each (400,000 subscriptions), each CreateSubscription
/// copied one, and that copy and its release were about a third of the writer's time. Now a
/// change copies one group's 64 shard references and one shard of a few keys (1,024 groups);
/// the group list itself is copied once per batch, as before.
///
/// Its accessors are inlinable so that other modules (snapshot decoding inserts a million
/// keys) use a specialized copy: unspecialized, every access looked up the generic types'
/// metadata in the runtime, about a tenth of building the id index.
public struct ShardedDictionary<Key: ShardedKey, Value> {
    @usableFromInline static var groupCount: Int { 1_024 }
    @usableFromInline static var shardsPerGroup: Int { 64 }
    /// groups[group][shard]
    @usableFromInline var groups: [[[Key: Value]]]
    @usableFromInline var storedCount = 0
    public var count: Int { storedCount }

    public init() {
        groups = Array(repeating: Array(repeating: [:], count: Self.shardsPerGroup), count: Self.groupCount)
    }

    @inlinable
    static func place(of key: Key) -> (group: Int, shard: Int) {
        let index = Int(key.shardHash % UInt(groupCount * shardsPerGroup))
        return (index / shardsPerGroup, index % shardsPerGroup)
    }

    @inlinable
    public subscript(key: Key) -> Value? {
        get {
            let (group, shard) = Self.place(of: key)
            return groups[group][shard][key]
        }
        set {
            let (group, shard) = Self.place(of: key)
            let old = if let newValue {
                groups[group][shard].updateValue(newValue, forKey: key)
            } else {
                groups[group][shard].removeValue(forKey: key)
            }
            storedCount += (newValue != nil ? 1 : 0) - (old != nil ? 1 : 0)
        }
    }

    /// Reserves room for about `capacity` keys in all (bulk loading).
    public mutating func reserveCapacity(_ capacity: Int) {
        let each = capacity / (Self.groupCount * Self.shardsPerGroup) + 1
        for group in groups.indices {
            for shard in groups[group].indices { groups[group][shard].reserveCapacity(each) }
        }
    }
}

extension ShardedDictionary: Sendable where Key: Sendable, Value: Sendable {}
