import XCTest
import Foundation
@testable import CreditDomain
@testable import LedgerEncoding

/// Snapshots written by format version 1 (before the event feed) still decode.
final class GoldenTests: XCTestCase {
    func testVersion1SnapshotDecodes() throws {
        XCTAssertEqual(Array(GoldenV1.snapshot[4..<8]), [1, 0, 0, 0])
        let decoded = try LedgerCodec.decode(GoldenV1.snapshot)
        let expected = try LedgerCodec.decode(GoldenV1.expectedLedger)
        XCTAssertEqual(decoded, expected)
        XCTAssertEqual(decoded.subscriptionCount, 3)
        XCTAssertEqual(decoded.idempotencyEntryCount, 2)
        XCTAssertGreaterThan(decoded.subscriptions.flatMap(\.credits).count, 0)
        // No feed before version 2: it starts empty, and the first new event gets seq 1.
        XCTAssertEqual(decoded.lastEventSeq, 0)
        XCTAssertEqual(decoded.oldestEventSeq, 1)
        XCTAssertEqual(try decoded.listEvents(afterSeq: 0, limit: 10).events, [])
        BookChecks.check(decoded)
        // It behaves as before and records events from now on; re-encoded, it is this build's version.
        var ledger = decoded
        let result = ledger.execute(.changeSeats(ChangeSeatsRequest(subscriptionId: "g-b", newSeats: 10)),
                                    at: utc("2025-06-12T08:00:00Z"), callerUID: 1, dryRun: false)
        XCTAssertNil(result.error)
        XCTAssertEqual(try ledger.events.first?.seq, 1)
        let bytes = LedgerCodec.encode(ledger)
        XCTAssertEqual(Array(bytes[4..<8]), [UInt8(LedgerCodec.formatVersion), 0, 0, 0])
        XCTAssertEqual(try LedgerCodec.decode(bytes), ledger)
        // The key table of version 1 still answers replays.
        let replay = ledger.execute(.changeSeats(ChangeSeatsRequest(subscriptionId: "g-a", newSeats: 7, idempotencyKey: "k1")),
                                    at: utc("2025-06-12T09:00:00Z"), callerUID: 1000, dryRun: false)
        XCTAssertTrue(replay.replayed)
    }
}
