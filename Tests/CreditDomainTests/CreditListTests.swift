import XCTest
@testable import CreditDomain

/// The packed credit list gives back exactly the credits it was given, at every position, after
/// every kind of write, and across the checkpoints of long lists.
final class CreditListTests: XCTestCase {
    /// A credit with every field drawn from `random`, extremes included.
    private func randomCredit(serial: UInt64, _ random: inout SplitMix) -> Credit {
        func pick<T>(_ values: [T]) -> T { values[Int(random.next() % UInt64(values.count))] }
        let wide: [Int64] = [0, 1, -1, 127, 128, -129, 1_000, Int64.max, Int64.min, Int64(bitPattern: random.next())]
        let blocks = (0..<Int(random.next() % 3)).map { _ in
            SeatBlockPortion(seats: pick(wide), startDate: CivilDate(epochDay: pick([0, -1, 20_000, Int32.max, Int32.min])),
                             unusedDays: pick([0, 30, -1, Int32.max]))
        }
        let cumulative: Int128 = pick([0, -1, 1, Int128(Int64.min) * 1_000, Int128.max, Int128.min, Int128(Int64(bitPattern: random.next()))])
        let explanation = LineExplanation(chargedMinor: pick(wide), cumulativeNumerator: cumulative, blocks: blocks,
                                          storedChargedSeats: pick([0, 1, Int32.max, Int32.min]),
                                          storedSeatsDelta: pick([-1, 0, 5, Int32.min]),
                                          storedPeriodDays: pick([28, 365, Int16.max, Int16.min]),
                                          storedUnusedDays: pick([-1, 0, 30, Int16.max]))
        var history = CreditHistory()
        for _ in 0..<Int(random.next() % 7) {
            history.append(pick(CreditState.allCases), at: Instant(nanosecondsSinceEpoch: pick(wide)))
        }
        return Credit(serial: serial, createdAt: Instant(nanosecondsSinceEpoch: pick(wide)), amountMinor: pick(wide),
                      remainingMinor: pick(wide), consumedMinor: pick(wide), explanation: explanation,
                      storedEventSeq: UInt32(truncatingIfNeeded: random.next()), laterHistory: history,
                      effectiveDate: CivilDate(epochDay: pick([0, 20_000, -5, Int32.max, Int32.min])),
                      dueDateOffset: pick([0, 31, UInt16.max]), refundExpectedByOffset: pick([0, 1, 31, UInt8.max]),
                      source: pick(CreditSource.allCases), state: pick(CreditState.allCases),
                      hadRefundFailure: random.next() % 2 == 0)
    }

    func testEveryFieldRoundTripsAtEveryPosition() {
        var random = SplitMix(seed: 7)
        for length in [0, 1, 2, 31, 32, 33, 64, 65, 200] {
            let credits = (0..<length).map { randomCredit(serial: UInt64($0) * 3 + (length == 200 ? UInt64.max - 700 : 1), &random) }
            let list = CreditList(credits)
            XCTAssertEqual(list.count, length)
            XCTAssertEqual(Array(list), credits, "iteration, \(length) credits")
            for index in credits.indices { XCTAssertEqual(list[index], credits[index], "position \(index) of \(length)") }
            var appended = CreditList()
            for credit in credits { appended.append(credit) }
            XCTAssertEqual(appended, list, "appending one by one packs the same bytes, \(length) credits")
        }
    }

    func testWritesKeepEveryOtherCreditIntact() {
        var random = SplitMix(seed: 11)
        var credits = (0..<100).map { randomCredit(serial: UInt64($0) + 1, &random) }
        var list = CreditList(credits)
        // Replacements that grow and shrink records, before, on and after checkpoints.
        for _ in 0..<500 {
            let index = Int(random.next() % 100)
            let replacement = randomCredit(serial: credits[index].serial, &random)
            credits[index] = replacement
            list[index] = replacement
        }
        XCTAssertEqual(Array(list), credits)
        for index in credits.indices { XCTAssertEqual(list[index], credits[index]) }
        XCTAssertEqual(list, CreditList(credits), "a list written in place equals one packed afresh")
    }

    func testScansAgreeWithDecodedCredits() {
        var random = SplitMix(seed: 13)
        for length in [0, 1, 5, 32, 33, 70] {
            let credits = (0..<length).map { randomCredit(serial: UInt64($0) + 1, &random) }
            let list = CreditList(credits)
            var states: [CreditState] = []
            list.scanStates { _, state in states.append(state); return true }
            XCTAssertEqual(states, credits.map(\.state))
            for state in CreditState.allCases {
                XCTAssertEqual(list.positions(inState: state), credits.indices.filter { credits[$0].state == state })
            }
            let trailing = (credits.lastIndex { $0.state != .pending }).map { $0 + 1 } ?? 0
            XCTAssertEqual(list.trailingPendingStart, trailing, "\(length) credits")
            for start in Set([0, length / 2, length]) {
                XCTAssertEqual(Array(list.credits(from: start)), Array(credits[start...]))
                XCTAssertEqual(list.earliestExpectedBy(from: start), credits[start...].map(\.expectedBy).min(),
                               "\(length) credits from \(start)")
                var visited: [Int] = []
                list.scanStates(from: start) { position, _ in visited.append(position); return visited.count < 3 }
                XCTAssertEqual(visited, Array((start..<length).prefix(3)))
            }
        }
    }

    func testPositionsDifferingNameExactlyTheChangedAndAddedCredits() {
        var random = SplitMix(seed: 17)
        let credits = (0..<80).map { randomCredit(serial: UInt64($0) + 1, &random) }
        let old = CreditList(credits)
        var new = old
        new[3] = randomCredit(serial: credits[3].serial, &random)
        new[40] = randomCredit(serial: credits[40].serial, &random)
        new.append(randomCredit(serial: 1_000, &random))
        let expected = [3, 40, 80].filter { new[$0] != (($0 < credits.count) ? credits[$0] : nil) }
        XCTAssertEqual(differing(new, from: old, startingAt: 0), expected)
        XCTAssertEqual(differing(new, from: old, startingAt: 4), expected.filter { $0 >= 4 })
        XCTAssertEqual(differing(old, from: old, startingAt: 0), [])
        XCTAssertEqual(differing(new, from: CreditList(), startingAt: 78), [78, 79, 80])
    }

    private func differing(_ list: CreditList, from old: CreditList, startingAt start: Int) -> [Int] {
        var positions: [Int] = []
        list.forEachPositionDiffering(from: old, startingAt: start) { positions.append($0) }
        return positions
    }

    func testMutatingMethodsThroughTheSubscript() {
        let schedule = BillingSchedule(interval: .monthly, startDate: CivilDate(epochDay: 20_000))
        var list: CreditList = []
        for serial in 1...3 {
            list.append(Credit(serial: UInt64(serial), source: .seatChange, effectiveDate: CivilDate(epochDay: 20_000),
                               dueDate: CivilDate(epochDay: 20_010), createdAt: Instant(nanosecondsSinceEpoch: 1_000),
                               eventSeq: UInt64(serial), amountMinor: 500, explanation: LineExplanation(
                                   chargedMinor: 1_000, cumulativeNumerator: -5, blocks: [], storedChargedSeats: 2,
                                   storedSeatsDelta: -1, storedPeriodDays: 30, storedUnusedDays: 15)))
        }
        list[1].apply(at: Instant(nanosecondsSinceEpoch: 9_000_000_000), schedule: schedule)
        XCTAssertEqual(list[1].absorb(upTo: 200, at: Instant(nanosecondsSinceEpoch: 9_000_000_001)), 200)
        XCTAssertEqual(list[1].state, .applied)
        XCTAssertEqual(list[1].remainingMinor, 300)
        XCTAssertEqual(list[1].history.map(\.state), [.pending, .applied])
        XCTAssertEqual(list[0].state, .pending)
        XCTAssertEqual(list[2].state, .pending)
        XCTAssertEqual(list.map(\.serial), [1, 2, 3])
    }
}

/// A small deterministic generator, so a failure names the same credits on every run.
struct SplitMix {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
