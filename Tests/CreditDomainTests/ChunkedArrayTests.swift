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
    /// `init(taking:)` keeps the order, and `forEach(in:)` visits exactly the range, in place.
    func testTakingAnArrayAndVisitingRanges() {
        let perGroup = ChunkedArray<String>.elementsPerGroup
        let plain = (0..<(perGroup + 70)).map { "value \($0)" }
        let chunked = ChunkedArray(taking: plain)
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
