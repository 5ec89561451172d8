/// Containers whose copies share structure, so that a ledger value can be published to readers
/// after every durable batch while the writer keeps changing its own copy.
///
/// A flat `Array` or `Dictionary` that is shared with a published copy is copied whole by the
/// first mutation (copy-on-write), which at a million subscriptions is tens of megabytes per
/// batch. These split their elements into chunks of at most `chunkCapacity`: a mutation after
/// a copy duplicates the small top-level array of chunk references and the one chunk it touches.

/// An array stored in fixed-size chunks of boxed elements. Indices are positions, as in `Array`.
///
/// Two levels of sharing: a chunk holds references to immutable-until-unique boxes, so copying a
/// chunk after a publish retains `chunkCapacity` boxes rather than copying every element (a
/// `Subscription` holds a dozen references of its own), and a mutation then copies only the one
/// element it changes. A profile of durable writes showed per-batch copies of 1,024-element
/// chunks of subscriptions taking two thirds of the writer's CPU before elements were boxed.
public struct ChunkedArray<Element>: RandomAccessCollection, MutableCollection {
    static var chunkCapacity: Int { 256 }

    final class Box {
        var value: Element
        init(_ value: Element) { self.value = value }
    }

    private var chunks: [[Box]] = []
    public private(set) var count = 0

    public init() {}

    public init<S: Sequence>(_ elements: S) where S.Element == Element {
        var chunk: [Box] = []
        chunk.reserveCapacity(Self.chunkCapacity)
        for element in elements {
            chunk.append(Box(element))
            if chunk.count == Self.chunkCapacity {
                chunks.append(chunk)
                chunk = []
                chunk.reserveCapacity(Self.chunkCapacity)
            }
        }
        if !chunk.isEmpty { chunks.append(chunk) }
        count = chunks.reduce(0) { $0 + $1.count }
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    public subscript(position: Int) -> Element {
        get {
            precondition(position >= 0 && position < count, "ChunkedArray index out of range")
            return chunks[position / Self.chunkCapacity][position % Self.chunkCapacity].value
        }
        _modify {
            precondition(position >= 0 && position < count, "ChunkedArray index out of range")
            let chunk = position / Self.chunkCapacity
            let slot = position % Self.chunkCapacity
            // Copy the element only when a published copy still shares its box.
            if !isKnownUniquelyReferenced(&chunks[chunk][slot]) {
                chunks[chunk][slot] = Box(chunks[chunk][slot].value)
            }
            yield &chunks[chunk][slot].value
        }
    }

    public mutating func append(_ element: Element) {
        if count % Self.chunkCapacity == 0 {
            var chunk: [Box] = []
            chunk.reserveCapacity(Self.chunkCapacity)
            chunk.append(Box(element))
            chunks.append(chunk)
        } else {
            chunks[chunks.count - 1].append(Box(element))
        }
        count += 1
    }

    /// Removes the last element (rolls back an append).
    @discardableResult
    public mutating func removeLast() -> Element {
        precondition(count > 0, "removeLast on an empty ChunkedArray")
        let element = chunks[chunks.count - 1].removeLast().value
        if chunks[chunks.count - 1].isEmpty { chunks.removeLast() }
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

/// A dictionary split into a fixed number of shards by hash.
public struct ShardedDictionary<Key: Hashable, Value> {
    private static var shardCount: Int { 1_024 }
    private var shards: [[Key: Value]]
    public private(set) var count = 0

    public init() {
        shards = Array(repeating: [:], count: Self.shardCount)
    }

    private static func shard(of key: Key) -> Int {
        // Hashing is seeded per process, which is fine: shards are never stored.
        Int(UInt(bitPattern: key.hashValue) % UInt(shardCount))
    }

    public subscript(key: Key) -> Value? {
        get { shards[Self.shard(of: key)][key] }
        set {
            let shard = Self.shard(of: key)
            let had = shards[shard][key] != nil
            shards[shard][key] = newValue
            count += (newValue != nil ? 1 : 0) - (had ? 1 : 0)
        }
    }

    /// Reserves room for about `capacity` keys in all (bulk loading).
    public mutating func reserveCapacity(_ capacity: Int) {
        let each = capacity / Self.shardCount + 1
        for index in shards.indices { shards[index].reserveCapacity(each) }
    }
}

extension ShardedDictionary: Sendable where Key: Sendable, Value: Sendable {}
