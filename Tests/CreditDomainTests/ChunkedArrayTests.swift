import XCTest
@testable import CreditDomain

/// `ChunkedArray` behaves as an `Array` across its leaf and group boundaries, and its copies
/// are independent values however they share storage.
final class ChunkedArrayTests: XCTestCase {
    func testMatchesAnArrayAcrossLeavesAndGroups() {
        let perGroup = ChunkedArray<Int>.elementsPerGroup
        var chunked = ChunkedArray<Int>()
        var plain: [Int] = []
        for value in 0..<(2 * perGroup + 100) {
            chunked.append(value)
            plain.append(value)
        }
        XCTAssertTrue(chunked.elementsEqual(plain))
        for position in [0, 15, 16, 63, 64, 255, 256, perGroup - 1, perGroup, perGroup + 64, 2 * perGroup + 99] {
            chunked[position] = -position - 1
            plain[position] = -position - 1
        }
        XCTAssertTrue(chunked.elementsEqual(plain))
        // Down through a group boundary and back up.
        while chunked.count > perGroup - 2 { XCTAssertEqual(chunked.removeLast(), plain.removeLast()) }
        XCTAssertTrue(chunked.elementsEqual(plain))
        for value in 0..<130 {
            chunked.append(value)
            plain.append(value)
        }
        XCTAssertTrue(chunked.elementsEqual(plain))
        XCTAssertEqual(ChunkedArray(plain), chunked)
        while !chunked.isEmpty { XCTAssertEqual(chunked.removeLast(), plain.removeLast()) }
        XCTAssertEqual(chunked, ChunkedArray<Int>())
    }

    /// A published copy never sees the writer's later changes, nor the writer the copy's.
    /// `forEach(in:)` visits exactly the range, in place.
    func testVisitingRanges() {
        let perGroup = ChunkedArray<String>.elementsPerGroup
        let plain = (0..<(perGroup + 70)).map { "value \($0)" }
        let chunked = ChunkedArray(plain)
        XCTAssertTrue(chunked.elementsEqual(plain))
        for range in [0..<0, 0..<1, 63..<65, 0..<plain.count, (perGroup - 3)..<(perGroup + 70)] {
            var seen: [String] = []
            chunked.forEach(in: range) { seen.append(copy $0) }
            XCTAssertEqual(seen, Array(plain[range]), "\(range)")
        }
        var changed = chunked
        changed[5] = "changed"
        var seen: [String] = []
        chunked.forEach(in: 5..<6) { seen.append(copy $0) }
        XCTAssertEqual(seen, ["value 5"], "a copy's change is not seen through the original")
    }

    /// `init(boxes:)` keeps the order and takes the boxes as they are: the elements can be read
    /// in place before (`BoxedElements`), live only in the array's boxes after, and go when it
    /// goes.
    func testTakingBoxes() {
        final class Tracked {
            let number: Int
            init(_ number: Int) { self.number = number }
        }
        for count in [0, 5, ChunkedArray<Tracked>.elementsPerGroup * 2 + 17] {
            var weakly: [() -> Tracked?] = []
            var chunked: ChunkedArray<Tracked>? = {
                var boxes: [ChunkedArray<Tracked>.Box] = []
                for index in 0..<count {
                    let object = Tracked(index)
                    weak let reference = object
                    weakly.append { reference }
                    boxes.append(.init(object))
                }
                let array = ChunkedArray(boxes: boxes)
                boxes.withUnsafeBufferPointer { boxes in
                    XCTAssertEqual(BoxedElements(boxes).map(\.number), Array(0..<count), "read in place")
                }
                return array
            }()
            XCTAssertEqual(chunked?.map(\.number), Array(0..<count))
            XCTAssertTrue(weakly.allSatisfy { $0() != nil })
            chunked = nil
            XCTAssertTrue(weakly.allSatisfy { $0() == nil }, "every element released once the array is gone")
        }
    }

    /// Prefetching a box reads nothing it should not: any position, in range or not, and a
    /// shared (published) copy, leave every element as it was.
    func testPrefetchingBoxesChangesNothing() {
        var array = ChunkedArray((0..<5_000).map { "element \($0)" })
        let published = array
        array[17] = "changed"
        for position in [-1, 0, 15, 16, 17, 4_095, 4_096, 4_999, 5_000, Int.max] {
            array.prefetchBoxReference(at: position)
            array.prefetchBox(at: position, bytes: 300)
            published.prefetchBoxReference(at: position)
            published.prefetchBox(at: position, bytes: 0)
        }
        XCTAssertEqual(Array(array), (0..<5_000).map { $0 == 17 ? "changed" : "element \($0)" })
        XCTAssertEqual(Array(published), (0..<5_000).map { "element \($0)" })
    }

    func testCopiesAreIndependent() {
        var writer = ChunkedArray((0..<10_000).map { [$0] })
        let published = writer
        writer[5_000].append(1)
        writer[9_999] = []
        writer.append([42])
        XCTAssertEqual(published[5_000], [5_000])
        XCTAssertEqual(published[9_999], [9_999])
        XCTAssertEqual(published.count, 10_000)
        XCTAssertEqual(writer[5_000], [5_000, 1])
        var other = published
        _ = other.removeLast()
        XCTAssertEqual(published.count, 10_000)
        XCTAssertEqual(other.count, 9_999)
        XCTAssertEqual(writer.count, 10_001)
    }
}

final class SlotTableTests: XCTestCase {
    /// Ids found at their slots, absent ids not found, through growth and bulk reservation;
    /// a copy keeps what it had.
    func testFindsEveryIdAndOnlyThose() {
        for reserved in [0, 300_000] {
            var table = SlotTable()
            table.reserveCapacity(reserved)
            var ids: [ScalarString] = []
            for index in 0..<20_000 {
                let id = ScalarString(index % 3 == 0 ? "a-long-subscription-id-\(index)" : "s\(index)")
                table.insert(id, slot: Int32(index))
                ids.append(id)
            }
            XCTAssertEqual(table.count, ids.count)
            func find(_ key: ScalarString, in table: SlotTable, upTo end: Int) -> Int32? {
                table.slot(of: key) { slot in Int(slot) < end && ids[Int(slot)] == key }
            }
            for (slot, id) in ids.enumerated() { XCTAssertEqual(find(id, in: table, upTo: ids.count), Int32(slot)) }
            for index in 0..<2_000 { XCTAssertNil(find(ScalarString("missing\(index)"), in: table, upTo: ids.count)) }
            let copy = table
            for index in 20_000..<21_000 {
                let id = ScalarString("late\(index)")
                table.insert(id, slot: Int32(index))
                ids.append(id)
            }
            XCTAssertEqual(copy.count, 20_000)
            XCTAssertNil(find(ids[20_500], in: copy, upTo: 20_000))
            XCTAssertEqual(find(ids[20_500], in: table, upTo: ids.count), 20_500)
            XCTAssertEqual(find(ids[7], in: copy, upTo: 20_000), 7)
        }
    }

    /// The prefetching steps: the candidate slot of a present id is its slot (tags are 32
    /// bits, so a collision among a shard's few entries is far too rare to see here), and
    /// every step takes absent ids and an empty table without harm.
    func testPrefetchStepsFindTheSlotAndTolerateAbsentIds() {
        let empty = SlotTable()
        for key in ["x", "", "missing"] {
            let hash = SlotTable.prefetchHash(ScalarString(key))
            empty.prefetchShard(hash)
            empty.prefetchProbe(hash)
            XCTAssertNil(empty.candidateSlot(hash))
        }
        var table = SlotTable()
        for index in 0..<20_000 { table.insert(ScalarString("sub-\(index)"), slot: Int32(index)) }
        for index in 0..<20_000 {
            let hash = SlotTable.prefetchHash(ScalarString("sub-\(index)"))
            table.prefetchShard(hash)
            table.prefetchProbe(hash)
            XCTAssertEqual(table.candidateSlot(hash), Int32(index))
        }
        for index in 0..<2_000 {
            let hash = SlotTable.prefetchHash(ScalarString("absent-\(index)"))
            table.prefetchShard(hash)
            table.prefetchProbe(hash)
            _ = table.candidateSlot(hash)   // nil, or (rarely) another id's slot: a hint only
        }
    }

    /// A lookup confirms a candidate through `isSlot`: a refused candidate is skipped.
    func testACandidateTheCallerRefusesIsNotAnAnswer() {
        var table = SlotTable()
        table.insert(ScalarString("x"), slot: 4)
        XCTAssertEqual(table.slot(of: ScalarString("x")) { $0 == 4 }, 4)
        XCTAssertNil(table.slot(of: ScalarString("x")) { _ in false })
    }
}

final class ScalarStringTests: XCTestCase {
    /// Ids order by their UTF-8 bytes (code-point order), prefixes first, whether the first
    /// eight bytes decide or the rest; equal ids are equal whatever their storage (small or
    /// native).
    func testOrderIsCodePointOrder() {
        let ids = ["", "a", "a\u{0}", "ab", "abc", "b", "Z", "é", "e\u{301}", "日本", "😀", "s0000001", "s0000010",
                   String(repeating: "x", count: 40), String(repeating: "x", count: 41), String(repeating: "x", count: 15) + "é",
                   // Around the eight leading bytes compared as one number: shorter, longer,
                   // zeros inside and after, a character split by the boundary, bytes >= 0x80.
                   "\u{0}", "\u{0}\u{0}", "abcdefg", "abcdefg\u{0}", "abcdefgh", "abcdefgh\u{0}", "abcdefghi",
                   "abcdefg\u{7F}", "abcdefgé", "abcdefg\u{FF}", "ÿÿÿÿ", "ÿÿÿÿÿ"]
        for left in ids {
            for right in ids {
                let expected = Array(left.utf8).lexicographicallyPrecedes(Array(right.utf8))
                XCTAssertEqual(ScalarString(left) < ScalarString(right), expected, "\(left) < \(right)")
                XCTAssertEqual(ScalarString(left) == ScalarString(right), Array(left.utf8) == Array(right.utf8))
            }
        }
    }
}
