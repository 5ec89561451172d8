import CreditDomain
import CreditProto
import XCTest

@testable import CreditService

/// A journal record framed around the request's bytes as the client sent them is the record
/// that encoding the entry gives, byte for byte, so replay reads it as the same entry.
final class JournalFramingTests: XCTestCase {
    func testFramedRecordEqualsTheEncodedEntry() throws {
        var seats = Creditd_V1_ChangeSeatsRequest()
        seats.subscriptionID = "sub-ü-1"
        seats.newSeats = 300
        seats.idempotencyKey = "key"
        var create = Creditd_V1_CreateSubscriptionRequest()
        create.subscriptionID = "sub-2"
        create.seats = 4
        create.unitPriceMinor = 1_250
        create.currency = "EUR"
        create.timeZone = "Europe/Berlin"
        var cancel = Creditd_V1_CancelSubscriptionRequest()
        cancel.subscriptionID = "sub-3"
        let at = Instant(utc: CivilDate(year: 2025, month: 6, day: 30)!, hour: 23, minute: 59, second: 59)
        let cases: [(JournalEntry.WireCommand, [UInt8])] = [
            (.changeSeats(seats), try seats.serializedBytes()),
            (.create(create), try create.serializedBytes()),
            (.cancel(cancel), try cancel.serializedBytes()),
        ]
        for (command, requestBytes) in cases {
            for (uid, maxSeats) in [(UInt32(0), Int64(0)), (1_000, 500), (UInt32.max, Int64.max)] {
                let entry = JournalEntry.command(command, at: at, callerUID: uid, maxSeats: maxSeats)
                let framed = try entry.encoded(requestBytes: requestBytes)
                XCTAssertEqual(framed, try entry.encoded(), "\(command) uid \(uid)")
                XCTAssertEqual(try JournalEntry(decoding: framed), entry)
            }
        }
    }
}
