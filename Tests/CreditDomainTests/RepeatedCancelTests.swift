import XCTest
@testable import CreditDomain

/// C3 (as clarified): a repeated cancel without a key keeps the original line and dates but
/// shows the credit and the final invoice as they stand now; a keyed replay (I3) stays byte for byte.
final class RepeatedCancelTests: XCTestCase {
    func testRepeatedCancelShowsCreditAndInvoiceAsTheyStandNow() throws {
        var harness = Harness.setupA()
        let first = try harness.cancel(at: utc("2025-04-11")).get()
        XCTAssertEqual(first.credit?.state, .pending)
        XCTAssertEqual(first.finalInvoice?.settled, false)

        // E1: on 05-01 the final invoice settles and the credit awaits its refund.
        harness.tick(to: utc("2025-05-01"))
        let afterSettlement = try harness.cancel(at: utc("2025-05-02")).get()
        XCTAssertTrue(afterSettlement.alreadyCancelled)
        XCTAssertEqual(afterSettlement.credit?.state, .refundPending)
        XCTAssertEqual(afterSettlement.finalInvoice?.settled, true)
        XCTAssertEqual(afterSettlement.line, first.line)
        XCTAssertEqual(afterSettlement.effectiveDate, first.effectiveDate)
        XCTAssertEqual(afterSettlement.requestedAt, first.requestedAt)

        let creditID = try XCTUnwrap(first.credit?.id)
        _ = try harness.report(credit: creditID, outcome: .succeeded, at: utc("2025-06-03")).get()
        let afterRefund = try harness.cancel(mode: .endOfPeriod, at: utc("2025-06-04")).get()
        XCTAssertEqual(afterRefund.credit?.state, .refunded)
        XCTAssertEqual(afterRefund.credit?.remainingMinor, 0)
        XCTAssertEqual(afterRefund.credit?.refundedMinor, 6667)
        XCTAssertEqual(harness.credits().count, 1)
    }

    func testKeyedReplayStaysByteForByte() throws {
        var harness = Harness.setupA()
        let first = try harness.cancel(key: "k1", at: utc("2025-04-11")).get()
        harness.tick(to: utc("2025-05-01"))
        let replay = try harness.cancel(key: "k1", at: utc("2025-05-02")).get()
        XCTAssertEqual(replay, first)
        XCTAssertEqual(replay.credit?.state, .pending)
    }
}
