import CreditDomain
import CreditService
import CreditStore
import CreditWire
import XCTest

/// Domain errors and write failures become statuses at the service edge only (§10).
final class StatusMappingTests: XCTestCase {
    func testEveryReasonHasItsStatusCode() {
        let expected: [DomainError.Reason: StatusCode] = [
            .invalidRequest: .invalidArgument, .seatsMustBePositive: .invalidArgument,
            .subscriptionNotFound: .notFound, .creditNotFound: .notFound,
            .subscriptionExists: .alreadyExists, .idempotencyKeyReused: .alreadyExists,
            .subscriptionCancelled: .failedPrecondition, .outsideCancellationWindow: .failedPrecondition,
            .amountOverflow: .outOfRange, .eventsPruned: .outOfRange,
        ]
        XCTAssertEqual(Set(expected.keys), Set(DomainError.Reason.allCases))
        for (reason, code) in expected {
            let status = DomainError(reason, "text").rpcError
            XCTAssertEqual(status.code, code, "\(reason)")
            XCTAssertEqual(status.reason, reason.rawValue)
            XCTAssertEqual(status.message, "\(reason.rawValue): text")
        }
    }

    func testPersistenceFaultsNameTheirOutcome() {
        let notApplied = WriteFailure.persistenceFault("disk full", outcome: .notApplied).rpcError
        XCTAssertEqual(notApplied.code, .unavailable)
        XCTAssertEqual(notApplied.reason, "persistence_not_applied")
        let unknown = WriteFailure.persistenceFault("fdatasync failed", outcome: .unknown).rpcError
        XCTAssertEqual(unknown.code, .unavailable)
        XCTAssertEqual(unknown.reason, "persistence_outcome_unknown")
    }
}
