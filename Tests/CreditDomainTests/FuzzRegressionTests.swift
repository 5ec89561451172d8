import CreditDomain
import LedgerEncoding
import XCTest

/// Inputs found by the fuzz targets (FUZZING.md), kept as tests once fixed.
final class FuzzRegressionTests: XCTestCase {
    private static let start = Instant(nanosecondsSinceEpoch: 1_743_498_000_000_000_000) // 2025-04-01T09:00:00Z
    private static let end = Instant(nanosecondsSinceEpoch: .max) // 2262-04-11T23:47:16.854775807Z

    private func ledgerWithSubscriptions() -> Ledger {
        var ledger = Ledger()
        for (id, interval) in [("monthly", BillingInterval.monthly), ("annual", .annual)] {
            let result = ledger.execute(.create(CreateSubscriptionRequest(
                subscriptionId: id, seats: 3, unitPriceMinor: 1000, currency: "USD",
                interval: .known(interval), timeZone: "Europe/Oslo")), at: Self.start, callerUID: 1, dryRun: false)
            XCTAssertNil(result.error)
        }
        return ledger
    }

    /// FuzzDispatch, seed "far-future": Admin/AdvanceClock to the last representable instant.
    /// Billing dates past April 2262 have no instant (startOfDay saturates to Int64.max, which
    /// is <= now), so the renewal loop never ended; it grew the ledger until CivilDate's
    /// Int32 day number trapped, killing a manual-clock daemon.
    func testAdvancingToTheLastInstantTerminates() throws {
        var ledger = ledgerWithSubscriptions()
        let transitions = ledger.advance(to: Self.end)
        // Every renewal up to April 2262 runs; none after.
        XCTAssertGreaterThan(transitions, 237 * 12)
        XCTAssertNil(ledger.nextDueInstant(), "nothing can fall due after the last instant")
        for id in ["monthly", "annual"] {
            let subscription = try ledger.subscription(id: id)
            XCTAssertEqual(subscription.status, .active)
            XCTAssertNil(subscription.nextDue)
        }
        // Time stays put at the end; more advancing and commands there must not trap either.
        XCTAssertEqual(ledger.advance(to: Self.end), 0)
        let cancel = ledger.execute(.cancel(CancelRequest(subscriptionId: "monthly", mode: .known(.immediate), idempotencyKey: "")),
                                    at: Self.end, callerUID: 1, dryRun: false)
        _ = cancel.outcome
        // A snapshot of that state reads back equal (recovery).
        XCTAssertEqual(try LedgerCodec.decode(LedgerCodec.encode(ledger)), ledger)
    }

    /// The same through a command: execute runs the transitions due first (T6).
    func testCommandAtTheLastInstantTerminates() throws {
        var ledger = ledgerWithSubscriptions()
        let result = ledger.execute(.changeSeats(ChangeSeatsRequest(subscriptionId: "annual", newSeats: 5,
                                                                   timing: .known(.now), idempotencyKey: "")),
                                    at: Self.end, callerUID: 1, dryRun: false)
        XCTAssertGreaterThan(result.transitions, 200)
        XCTAssertNil(result.error)
        XCTAssertNil(try ledger.subscription(id: "annual").nextDue)
    }
}
