import CreditDomain
import CreditStore
import XCTest

@testable import CreditService

/// Recovery's decoding of journal records, on its own thread for a long journal and inline for a
/// short one: every entry in order, and a record that does not decode ends the replay there.
final class ReplayDecodingTests: XCTestCase {
    /// Ticks one second apart from sequence 1; the record at `broken` (if any) is not an entry.
    private func records(_ count: Int, broken: Int? = nil) throws -> [JournalRecord] {
        let start = Instant(utc: CivilDate(year: 2025, month: 1, day: 1)!)
        return try (0..<count).map { $0 + 1 }.map { sequence in
            let payload = sequence == broken
                ? [0xFF, 0xFF, 0xFF]
                : try JournalEntry.tick(at: start.adding(nanoseconds: Int64(sequence) * 1_000_000_000),
                                        manualClock: true).encoded()
            return JournalRecord(sequence: UInt64(sequence), payload: payload)
        }
    }

    /// Drains `decoding` as the replay does; returns the seconds of the entries' instants (in
    /// order) and the failure, if any.
    private func drain(_ decoding: ReplayDecoding) -> (seconds: [Int64], failure: UInt64?) {
        var seconds: [Int64] = []
        var failure: UInt64?
        while var batch = decoding.next() {
            seconds += batch.entries.map { $0.instant.secondsSinceEpoch }
            if let (sequence, _) = batch.failure {
                failure = sequence
                break
            }
            decoding.recycle(&batch)
            XCTAssertTrue(batch.entries.isEmpty, "recycling takes the entries")
        }
        decoding.finish()
        return (seconds, failure)
    }

    func testEveryEntryInOrder() throws {
        let start = Instant(utc: CivilDate(year: 2025, month: 1, day: 1)!).secondsSinceEpoch
        for count in [0, 1, ReplayDecoding.batchSize + 3, ReplayDecoding.threadFromRecords * 3 + 11] {
            let (seconds, failure) = drain(ReplayDecoding(records: try records(count)))
            XCTAssertNil(failure)
            XCTAssertEqual(seconds, (0..<count).map { start + Int64($0) + 1 }, "\(count) records")
        }
    }

    func testStopsAtARecordThatDoesNotDecode() throws {
        for (count, broken) in [(50, 20), (ReplayDecoding.threadFromRecords * 2, ReplayDecoding.threadFromRecords + 5)] {
            let (seconds, failure) = drain(ReplayDecoding(records: try records(count, broken: broken)))
            XCTAssertEqual(failure, UInt64(broken), "\(count) records")
            XCTAssertEqual(seconds.count, broken - 1, "every entry before it, none after (\(count) records)")
        }
    }

    /// A replay that ends early (an apply that throws) stops the thread without draining it.
    func testFinishingEarly() throws {
        let decoding = ReplayDecoding(records: try records(ReplayDecoding.threadFromRecords * 4))
        XCTAssertEqual(decoding.next()?.entries.count, ReplayDecoding.batchSize)
        decoding.finish()
        decoding.finish()
    }
}

