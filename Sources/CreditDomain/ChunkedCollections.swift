// Chunked containers for state that grows with the book. The service copies the `Ledger` after
// every durable batch and keeps mutating its own copy, so a flat array or dictionary would be
// copied whole by the first mutation after each copy; these copy one chunk of at most
// `chunkLimit` elements plus a small top-level array.

/// What a chunked sorted set can summarize per chunk: the smallest `indexDue` of its elements,
/// so that a scan for "due at or before t" skips whole chunks.
protocol ChunkedSetElement: Comparable, Sendable {
    /// `Int64.max` when the element has no due instant.
    var indexDue: Int64 { get }
}

extension UInt64: ChunkedSetElement {
    var indexDue: Int64 { Int64.max }
}

extension ScalarString: ChunkedSetElement {
    var indexDue: Int64 { Int64.max }
}

/// A credit serial with the instant (nanoseconds) from which a flag becomes true. Ordered and
/// compared by serial only: the set holds one entry per credit.
struct DueSerial: ChunkedSetElement {
    let serial: UInt64
    let due: Int64

    var indexDue: Int64 { due }

    static func < (lhs: DueSerial, rhs: DueSerial) -> Bool { lhs.serial < rhs.serial }
    static func == (lhs: DueSerial, rhs: DueSerial) -> Bool { lhs.serial == rhs.serial }
}

/// Where a credit lives: its serial and the slot of its subscription. Ordered by serial.
struct CreditLocation: ChunkedSetElement {
    let serial: UInt64
    let slot: Int32

    var indexDue: Int64 { Int64.max }

    static func < (lhs: CreditLocation, rhs: CreditLocation) -> Bool { lhs.serial < rhs.serial }
    static func == (lhs: CreditLocation, rhs: CreditLocation) -> Bool { lhs.serial == rhs.serial }
}

let chunkLimit = 1_024

/// A sorted set of distinct elements in chunks of at most `chunkLimit`.
/// Insert and remove cost O(log n + chunkLimit); appending the largest element is O(1).
struct ChunkedSortedSet<Element: ChunkedSetElement>: Sendable {
    private(set) var chunks: [[Element]] = []
    /// The smallest `indexDue` per chunk.
    private(set) var minimumDue: [Int64] = []
    private(set) var count = 0

    init() {}

    var isEmpty: Bool { count == 0 }

    /// The first chunk whose last element is ≥ `element` (or the last chunk).
    private func chunkIndex(for element: Element) -> Int {
        var low = 0
        var high = chunks.count
        while low < high {
            let mid = (low + high) / 2
            if chunks[mid].last! < element { low = mid + 1 } else { high = mid }
        }
        return min(low, chunks.count - 1)
    }

    private static func position(of element: Element, in chunk: [Element], strictlyAfter: Bool) -> Int {
        var low = 0
        var high = chunk.count
        while low < high {
            let mid = (low + high) / 2
            if chunk[mid] < element || (strictlyAfter && chunk[mid] == element) { low = mid + 1 } else { high = mid }
        }
        return low
    }

    private mutating func refreshMinimum(_ index: Int) {
        var smallest = Int64.max
        for element in chunks[index] where element.indexDue < smallest { smallest = element.indexDue }
        minimumDue[index] = smallest
    }

    /// Inserts `element`, or replaces the equal one (so a due instant can be updated).
    /// Returns whether it was new.
    @discardableResult
    mutating func insert(_ element: Element) -> Bool {
        if chunks.isEmpty || chunks[chunks.count - 1].last! < element {
            // Append: the common case (serials grow); full chunks stay full.
            if chunks.isEmpty || chunks[chunks.count - 1].count >= chunkLimit {
                // Grown as it fills, never reserved whole: most sets are small (a customer's
                // subscriptions and credits), and a reserved chunk was 8-16 KiB for each of them.
                chunks.append([])
                minimumDue.append(Int64.max)
            }
            let last = chunks.count - 1
            if chunks[last].count == chunks[last].capacity {
                // A set that has filled a chunk before will fill this one too: room for the whole
                // chunk at once (growing the large sets step by step made a 1M-record replay a
                // third slower). The first chunk doubles up to exactly `chunkLimit` (the standard
                // growth could leave a full chunk of 1,024 in room for 1,536).
                chunks[last].reserveCapacity(last > 0 ? chunkLimit : min(chunkLimit, max(4, chunks[last].count * 2)))
            }
            chunks[last].append(element)
            minimumDue[last] = min(minimumDue[last], element.indexDue)
            count += 1
            return true
        }
        let index = chunkIndex(for: element)
        let position = ChunkedSortedSet.position(of: element, in: chunks[index], strictlyAfter: false)
        if position < chunks[index].count, chunks[index][position] == element {
            let oldDue = chunks[index][position].indexDue
            chunks[index][position] = element
            if element.indexDue < minimumDue[index] {
                minimumDue[index] = element.indexDue
            } else if oldDue == minimumDue[index] {
                refreshMinimum(index)
            }
            return false
        }
        chunks[index].insert(element, at: position)
        minimumDue[index] = min(minimumDue[index], element.indexDue)
        count += 1
        if chunks[index].count > chunkLimit {
            let half = chunkLimit / 2
            let upper = Array(chunks[index][half...])
            chunks[index].removeSubrange(half...)
            chunks.insert(upper, at: index + 1)
            minimumDue.insert(Int64.max, at: index + 1)
            refreshMinimum(index)
            refreshMinimum(index + 1)
        }
        return true
    }

    /// Removes the element equal to `element`; returns whether there was one.
    @discardableResult
    mutating func remove(_ element: Element) -> Bool {
        guard !chunks.isEmpty else { return false }
        let index = chunkIndex(for: element)
        let position = ChunkedSortedSet.position(of: element, in: chunks[index], strictlyAfter: false)
        guard position < chunks[index].count, chunks[index][position] == element else { return false }
        let removedDue = chunks[index][position].indexDue
        chunks[index].remove(at: position)
        count -= 1
        if chunks[index].isEmpty {
            chunks.remove(at: index)
            minimumDue.remove(at: index)
        } else if removedDue == minimumDue[index] {
            refreshMinimum(index)
        }
        return true
    }

    func contains(_ element: Element) -> Bool {
        find(element) != nil
    }

    /// The stored element equal to `element`.
    func find(_ element: Element) -> Element? {
        guard !chunks.isEmpty else { return nil }
        let chunk = chunks[chunkIndex(for: element)]
        let position = ChunkedSortedSet.position(of: element, in: chunk, strictlyAfter: false)
        return position < chunk.count && chunk[position] == element ? chunk[position] : nil
    }

    /// A cursor over the elements strictly after `element` (from the start when nil) whose
    /// `indexDue` is at or before `dueLimit` (every element when nil); chunks whose smallest
    /// due instant is later are skipped whole.
    func cursor(after element: Element?, dueAtOrBefore dueLimit: Int64? = nil) -> Cursor {
        var cursor = Cursor(set: self, chunk: 0, position: 0, dueLimit: dueLimit)
        if let element, !chunks.isEmpty {
            cursor.chunk = chunkIndex(for: element)
            cursor.position = ChunkedSortedSet.position(of: element, in: chunks[cursor.chunk], strictlyAfter: true)
        }
        return cursor
    }

    struct Cursor {
        let set: ChunkedSortedSet
        var chunk: Int
        var position: Int
        let dueLimit: Int64?

        mutating func next() -> Element? {
            while chunk < set.chunks.count {
                if let dueLimit, set.minimumDue[chunk] > dueLimit {
                    chunk += 1
                    position = 0
                    continue
                }
                let elements = set.chunks[chunk]
                while position < elements.count {
                    let element = elements[position]
                    position += 1
                    if let dueLimit, element.indexDue > dueLimit { continue }
                    return element
                }
                chunk += 1
                position = 0
            }
            return nil
        }
    }

    /// Every element in order (tests and rebuilds).
    var elements: [Element] { chunks.flatMap { $0 } }
}

/// A map from strings (by Unicode scalars) to values in a fixed number of small dictionaries,
/// chosen by a stable hash of the key, so a mutation copies one bucket, never the whole map.
struct BucketedMap<Value: Sendable>: Sendable {
    static var bucketCount: Int { 1_024 }
    private var buckets: [[ScalarString: Value]] = []
    private(set) var count = 0

    init() {}

    private static func bucket(of key: ScalarString) -> Int {
        // FNV-1a over the UTF-8 bytes: stable across runs, unlike `Hasher`.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in key.value.utf8 {
            hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3
        }
        return Int(hash % UInt64(bucketCount))
    }

    subscript(key: ScalarString) -> Value? {
        guard !buckets.isEmpty else { return nil }
        return buckets[BucketedMap.bucket(of: key)][key]
    }

    /// Changes the value of `key` in place, creating it with `make` when absent.
    @discardableResult
    mutating func update<Result>(_ key: ScalarString, default make: @autoclosure () -> Value,
                                 _ body: (inout Value) -> Result) -> Result {
        if buckets.isEmpty { buckets = Array(repeating: [:], count: BucketedMap.bucketCount) }
        let index = BucketedMap.bucket(of: key)
        if buckets[index][key] == nil { count += 1 }
        return body(&buckets[index][key, default: make()])
    }
}
