import CreditDomain

/// Ledgers built by random commands and clock ticks, drawn from the ledger's current state so
/// that they reach every state the domain has: refund-failure loops, window_72h seat blocks,
/// cancellations of each mode, stored idempotent errors. Seeded, so a failure names its seed.
///
/// Shared by the tests that must hold for any ledger: the snapshot codec's round trips
/// (CreditDomainTests) and the response encoders against the generated messages
/// (CreditServiceTests).
public struct RandomLedger {
    /// One random command (or tick) at an instant.
    public struct Step: Sendable {
        public enum Action: Sendable {
            case command(Command, uid: UInt32, dryRun: Bool)
            case tick
        }
        public let action: Action
        public let at: Instant
    }

    public enum StepResult: Equatable {
        case command(CommandResult)
        case tick(Int)
    }

    static let zones = ["UTC", "America/Los_Angeles", "Europe/Berlin", "America/Santiago", "Australia/Lord_Howe",
                        "Asia/Kolkata", "Pacific/Chatham", "Asia/Tokyo", "America/St_Johns", "Etc/GMT+5"]
    static let ids = ["a", "b", "c", "sub-0123456789abcdef-long", "ü-ß", "子プラン", "🎉", "d"]
    static let prices: [Int64] = [0, 1, 7, 999, 1_000, 12_345, 9_999_999, 1_000_000_000_000]

    var random: SplitMix64
    public private(set) var now: Instant
    var keyCounter = 0

    public init(seed: UInt64) {
        random = SplitMix64(seed: seed)
        now = Instant(utc: CivilDate(year: 2024, month: 12, day: 20)!)
            .adding(nanoseconds: Int64.random(in: 0..<(86_400 * 1_000_000_000), using: &random))
    }

    /// A ledger after `steps` random steps, and the generator to go on with.
    public static func make(seed: UInt64, steps: Int) -> (Ledger, RandomLedger) {
        var generator = RandomLedger(seed: seed)
        var ledger = Ledger(maxSeats: seed % 3 == 0 ? 30 : Ledger.defaultMaxSeats)
        for _ in 0..<steps {
            apply(generator.next(ledger), to: &ledger)
        }
        return (ledger, generator)
    }

    @discardableResult
    public static func apply(_ step: Step, to ledger: inout Ledger) -> StepResult {
        switch step.action {
        case .command(let command, let uid, let dryRun):
            return .command(ledger.execute(command, at: step.at, callerUID: uid, dryRun: dryRun))
        case .tick:
            return .tick(ledger.advance(to: step.at))
        }
    }

    mutating func key() -> String {
        guard Int.random(in: 0..<3, using: &random) > 0 else { return "" }
        keyCounter += 1
        // Reuse a recent key now and then, with the same or another body.
        return "key-\(Int.random(in: max(1, keyCounter - 4)...keyCounter, using: &random))"
    }

    public mutating func next(_ ledger: Ledger) -> Step {
        // Mostly small steps, sometimes weeks, so periods renew and credits settle.
        let hours: Int64 = Int.random(in: 0..<10, using: &random) == 0 ? Int64.random(in: 24...(40 * 24), using: &random)
                                                                           : Int64.random(in: 0...30, using: &random)
        now = now.adding(hours: hours).adding(nanoseconds: Int64.random(in: 0..<3_600_000_000_000, using: &random))
        if Int.random(in: 0..<6, using: &random) == 0 { return Step(action: .tick, at: now) }
        let id = RandomLedger.ids.randomElement(using: &random)!
        let uid = UInt32.random(in: 1...3, using: &random)
        let dryRun = Int.random(in: 0..<8, using: &random) == 0
        let command: Command
        switch Int.random(in: 0..<24, using: &random) {
        case 0..<4:
            command = .create(CreateSubscriptionRequest(
                subscriptionId: id, customer: ["", "cust", "Kunde ä", "顧客"].randomElement(using: &random)!,
                plan: ["", "team", "enterprise-annual-plan-name"].randomElement(using: &random)!,
                seats: Int64.random(in: 1...20, using: &random),
                unitPriceMinor: RandomLedger.prices.randomElement(using: &random)!,
                currency: Currency.allCases.randomElement(using: &random)!.code,
                interval: .known(Bool.random(using: &random) ? .monthly : .annual),
                timeZone: RandomLedger.zones.randomElement(using: &random)!,
                refundPolicy: Int.random(in: 0..<4, using: &random) == 0 ? .unspecified
                    : .known(RefundPolicy.allCases.randomElement(using: &random)!)))
        case 4..<11:
            command = .changeSeats(ChangeSeatsRequest(subscriptionId: id, newSeats: Int64.random(in: 0...25, using: &random),
                                                      timing: .known(.now), idempotencyKey: key()))
        case 11..<13:
            command = .changeSeats(ChangeSeatsRequest(subscriptionId: id, newSeats: Int64.random(in: 1...25, using: &random),
                                                      timing: .known(.atRenewal), idempotencyKey: key()))
        case 13..<15:
            command = .cancel(CancelRequest(subscriptionId: id,
                                            mode: .known(Bool.random(using: &random) ? .immediate : .endOfPeriod),
                                            idempotencyKey: key()))
        case 15:
            command = .resume(ResumeRequest(subscriptionId: id))
        case 16..<21:
            // Mostly credits that exist, so refund outcomes (and refund_failed loops) happen.
            let credits = (try? ledger.subscription(id: id).credits) ?? []
            let creditId = credits.isEmpty || Int.random(in: 0..<5, using: &random) == 0
                ? "cr_\(Int.random(in: 1...40, using: &random))" : credits.randomElement(using: &random)!.id
            command = .recordRefundOutcome(RecordRefundOutcomeRequest(
                subscriptionId: id, creditId: creditId,
                outcome: Int.random(in: 0..<3, using: &random) == 0 ? .known(.failed) : .known(.succeeded)))
        case 21:
            // Keyed requests for unknown subscriptions store their error (I3).
            command = .cancel(CancelRequest(subscriptionId: "missing-\(id)", idempotencyKey: key()))
        case 22:
            command = .changeSeats(ChangeSeatsRequest(subscriptionId: id, newSeats: 5, timing: .unrecognized(9),
                                                      idempotencyKey: key()))
        default:
            command = .changeSeats(ChangeSeatsRequest(subscriptionId: id, newSeats: 0, idempotencyKey: "zero-\(uid)"))
        }
        return Step(action: .command(command, uid: uid, dryRun: dryRun), at: now)
    }
}

/// A small deterministic PRNG (SplitMix64) for seeded property tests.
public struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
