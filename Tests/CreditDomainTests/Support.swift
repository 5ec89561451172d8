import XCTest
@testable import CreditDomain
@_exported import LedgerScenarios

/// `YYYY-MM-DD`.
func day(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> CivilDate {
    guard let date = CivilDate(text) else {
        XCTFail("bad date \(text)", file: file, line: line)
        return CivilDate(epochDay: 0)
    }
    return date
}

/// `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ`.
func utc(_ text: String) -> Instant {
    let date = CivilDate(String(text.prefix(10)))!
    guard text.count > 10 else { return Instant(utc: date) }
    let time = Array(text.dropFirst(11).prefix(8)).split(separator: ":").map { Int(String($0))! }
    return Instant(utc: date, hour: time[0], minute: time[1], second: time.count > 2 ? time[2] : 0)
}

/// Drives a ledger the way the daemon would: every call is a command at an instant.
struct Harness {
    var ledger = Ledger()
    var uid: UInt32 = 1000
    var log: [(Command, Instant, UInt32, Bool)] = []

    @discardableResult
    mutating func run(_ command: Command, at instant: Instant, dryRun: Bool = false) -> CommandResult {
        let result = ledger.execute(command, at: instant, callerUID: uid, dryRun: dryRun)
        if result.stateChanged { log.append((command, instant, uid, dryRun)) }
        return result
    }

    mutating func create(_ id: String = "sub", seats: Int64 = 10, price: Int64 = 1000, currency: String = "USD",
                         interval: BillingInterval = .monthly, zone: String = "UTC",
                         policy: RefundPolicy = .anytime, customer: String = "c", at instant: Instant,
                         file: StaticString = #filePath, line: UInt = #line) {
        let result = run(.create(CreateSubscriptionRequest(
            subscriptionId: id, customer: customer, plan: "p", seats: seats, unitPriceMinor: price, currency: currency,
            interval: .known(interval), timeZone: zone, refundPolicy: .known(policy))), at: instant)
        if let error = result.error { XCTFail("create failed: \(error)", file: file, line: line) }
    }

    mutating func cancel(_ id: String = "sub", mode: CancelMode = .immediate, key: String = "", at instant: Instant,
                         dryRun: Bool = false) -> Result<CancellationRecord, DomainError> {
        let result = run(.cancel(CancelRequest(subscriptionId: id, mode: .known(mode), idempotencyKey: key)),
                         at: instant, dryRun: dryRun)
        return result.outcome.map { response in
            guard case .cancelled(let record) = response else { fatalError("unexpected \(response)") }
            return record
        }
    }

    mutating func changeSeats(_ id: String = "sub", to seats: Int64, timing: SeatChangeTiming = .now, key: String = "",
                              at instant: Instant, dryRun: Bool = false) -> Result<SeatChangeResult, DomainError> {
        let result = run(.changeSeats(ChangeSeatsRequest(subscriptionId: id, newSeats: seats, timing: .known(timing),
                                                         idempotencyKey: key)), at: instant, dryRun: dryRun)
        return result.outcome.map { response in
            guard case .seatsChanged(let change) = response else { fatalError("unexpected \(response)") }
            return change
        }
    }

    mutating func resume(_ id: String = "sub", at instant: Instant) -> Result<Subscription, DomainError> {
        run(.resume(ResumeRequest(subscriptionId: id)), at: instant).outcome.map { response in
            guard case .resumed(let subscription) = response else { fatalError("unexpected \(response)") }
            return subscription
        }
    }

    mutating func report(_ id: String = "sub", credit: String, outcome: RefundOutcome,
                         at instant: Instant) -> Result<RefundOutcomeResult, DomainError> {
        run(.recordRefundOutcome(RecordRefundOutcomeRequest(subscriptionId: id, creditId: credit, outcome: .known(outcome))),
            at: instant).outcome.map { response in
            guard case .refundOutcomeRecorded(let result) = response else { fatalError("unexpected \(response)") }
            return result
        }
    }

    func subscription(_ id: String = "sub") -> Subscription {
        try! ledger.subscription(id: id)
    }

    func credits(_ id: String = "sub") -> [Credit] {
        Array(subscription(id).credits)
    }

    /// Advances like the daemon's scheduler (a tick).
    @discardableResult
    mutating func tick(to instant: Instant) -> Int {
        ledger.advance(to: instant)
    }

    /// Setup A: USD 1000/seat/month, anchor 1, UTC; 10 seats renewed on 2025-04-01.
    static func setupA(policy: RefundPolicy = .anytime, seats: Int64 = 10, price: Int64 = 1000) -> Harness {
        var harness = Harness()
        harness.create(seats: seats, price: price, policy: policy, at: utc("2025-03-01"))
        harness.tick(to: utc("2025-04-01"))
        return harness
    }
}

extension Result {
    var value: Success? { try? get() }
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

func XCTAssertReason<T>(_ result: Result<T, DomainError>, _ reason: DomainError.Reason,
                        file: StaticString = #filePath, line: UInt = #line) {
    switch result {
    case .success(let value): XCTFail("expected \(reason.rawValue), got \(value)", file: file, line: line)
    case .failure(let error): XCTAssertEqual(error.reason, reason, file: file, line: line)
    }
}
