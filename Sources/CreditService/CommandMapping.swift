import CreditDomain
import CreditProto
import ProtoWire

/// Requests of the wire contract as domain commands: one mapping per message,
/// used by the handlers and by journal replay alike, so that a replayed
/// command is exactly the command that was acknowledged.
public enum CommandMapping {
    public static func command(_ request: Creditd_V1_CreateSubscriptionRequest) -> Command {
        .create(CreateSubscriptionRequest(
            subscriptionId: request.subscriptionID, customer: request.customer, plan: request.plan,
            seats: request.seats, unitPriceMinor: request.unitPriceMinor, currency: request.currency,
            interval: EnumField(wireValue: Int32(request.interval.rawValue)), timeZone: request.timeZone,
            refundPolicy: EnumField(wireValue: Int32(request.refundPolicy.rawValue)), startDate: request.startDate))
    }

    public static func command(_ request: Creditd_V1_ImportSubscriptionRequest) -> Command {
        .importSubscription(ImportSubscriptionRequest(
            subscriptionId: request.subscriptionID, customer: request.customer, plan: request.plan,
            seats: request.seats, unitPriceMinor: request.unitPriceMinor, currency: request.currency,
            interval: EnumField(wireValue: Int32(request.interval.rawValue)), timeZone: request.timeZone,
            refundPolicy: EnumField(wireValue: Int32(request.refundPolicy.rawValue)), startDate: request.startDate,
            currentPeriodChargedMinor: request.currentPeriodChargedSet ? request.currentPeriodChargedMinor : nil))
    }

    public static func command(_ request: Creditd_V1_CancelSubscriptionRequest) -> Command {
        .cancel(CancelRequest(subscriptionId: request.subscriptionID,
                              mode: EnumField(wireValue: Int32(request.mode.rawValue)),
                              idempotencyKey: request.idempotencyKey))
    }

    public static func command(_ request: Creditd_V1_ResumeSubscriptionRequest) -> Command {
        .resume(ResumeRequest(subscriptionId: request.subscriptionID))
    }

    public static func command(_ request: Creditd_V1_ChangeSeatsRequest) -> Command {
        .changeSeats(ChangeSeatsRequest(subscriptionId: request.subscriptionID, newSeats: request.newSeats,
                                        timing: EnumField(wireValue: Int32(request.timing.rawValue)),
                                        idempotencyKey: request.idempotencyKey))
    }

    public static func command(_ request: Creditd_V1_RecordRefundOutcomeRequest) -> Command {
        .recordRefundOutcome(RecordRefundOutcomeRequest(
            subscriptionId: request.subscriptionID, creditId: request.creditID,
            outcome: EnumField(wireValue: Int32(request.outcome.rawValue))))
    }
}

/// One journal record's meaning.
public enum JournalEntry: Equatable, Sendable {
    /// A command as executed: replay calls `Ledger.execute` with the same arguments.
    case command(WireCommand, at: Instant, callerUID: UInt32, maxSeats: Int64)
    /// Time-driven transitions due at `at` (and, for the manual clock, its new reading).
    case tick(at: Instant, manualClock: Bool)

    /// The command in its wire form, which is what the journal stores.
    public enum WireCommand: Equatable, Sendable {
        case create(Creditd_V1_CreateSubscriptionRequest)
        case cancel(Creditd_V1_CancelSubscriptionRequest)
        case resume(Creditd_V1_ResumeSubscriptionRequest)
        case changeSeats(Creditd_V1_ChangeSeatsRequest)
        case recordRefundOutcome(Creditd_V1_RecordRefundOutcomeRequest)
        case importSubscription(Creditd_V1_ImportSubscriptionRequest)

        public var domain: Command {
            switch self {
            case .create(let r): CommandMapping.command(r)
            case .cancel(let r): CommandMapping.command(r)
            case .resume(let r): CommandMapping.command(r)
            case .changeSeats(let r): CommandMapping.command(r)
            case .recordRefundOutcome(let r): CommandMapping.command(r)
            case .importSubscription(let r): CommandMapping.command(r)
            }
        }

        /// The subscription the command is about, read from the request as it is.
        public var subscriptionID: String {
            switch self {
            case .create(let r): r.subscriptionID
            case .cancel(let r): r.subscriptionID
            case .resume(let r): r.subscriptionID
            case .changeSeats(let r): r.subscriptionID
            case .recordRefundOutcome(let r): r.subscriptionID
            case .importSubscription(let r): r.subscriptionID
            }
        }

        public var dryRun: Bool {
            switch self {
            case .cancel(let r): r.dryRun
            case .changeSeats(let r): r.dryRun
            case .importSubscription(let r): r.dryRun
            default: false
            }
        }
    }

    /// The subscription a command record is about; nil for a tick.
    public var subscriptionID: String? {
        if case .command(let command, _, _, _) = self { command.subscriptionID } else { nil }
    }

    public var instant: Instant {
        switch self {
        case .command(_, let at, _, _): at
        case .tick(let at, _): at
        }
    }

    /// The record's bytes. With `requestBytes` (the command's request exactly as the client
    /// sent it, already decoded once), the entry is framed around those bytes instead of
    /// encoding the message again: protobuf encodes an embedded message as its field tag, its
    /// length and its bytes, so the result decodes as the same `JournalEntry`.
    public func encoded(requestBytes: [UInt8]?) throws -> [UInt8] {
        guard let requestBytes, case .command(let command, let at, let uid, let maxSeats) = self else {
            return try encoded()
        }
        let field: UInt64 = switch command {
        case .create: 10
        case .cancel: 11
        case .changeSeats: 12
        case .resume: 13
        case .recordRefundOutcome: 14
        case .importSubscription: 16
        }
        var out = ByteWriter(capacity: requestBytes.count + 32)
        // Fields in number order, zero values omitted, as swift-protobuf writes them.
        if at.nanosecondsSinceEpoch != 0 { out.varint(1 << 3); out.varint(UInt64(bitPattern: at.nanosecondsSinceEpoch)) }
        if uid != 0 { out.varint(2 << 3); out.varint(UInt64(uid)) }
        if maxSeats != 0 { out.varint(3 << 3); out.varint(UInt64(bitPattern: maxSeats)) }
        out.varint(field << 3 | 2)
        out.varint(requestBytes.count)
        requestBytes.withUnsafeBufferPointer { out.bytes($0) }
        return out.array()
    }

    public func encoded() throws -> [UInt8] {
        var entry = Creditd_Journal_V1_JournalEntry()
        switch self {
        case .command(let command, let at, let uid, let maxSeats):
            entry.atUnixNanos = at.nanosecondsSinceEpoch
            entry.callerUid = uid
            entry.maxSeats = maxSeats
            switch command {
            case .create(let r): entry.createSubscription = r
            case .cancel(let r): entry.cancelSubscription = r
            case .resume(let r): entry.resumeSubscription = r
            case .changeSeats(let r): entry.changeSeats = r
            case .recordRefundOutcome(let r): entry.recordRefundOutcome = r
            case .importSubscription(let r): entry.importSubscription = r
            }
        case .tick(let at, let manual):
            entry.atUnixNanos = at.nanosecondsSinceEpoch
            var tick = Creditd_Journal_V1_Tick()
            tick.manualClock = manual
            entry.tick = tick
        }
        return try entry.serializedBytes()
    }

    public struct DecodeError: Error, CustomStringConvertible {
        public let description: String
    }

    public init(decoding bytes: [UInt8]) throws {
        try self.init(decoding: bytes[...])
    }

    /// Decodes the entry where its bytes lie (a record recovery read, in its segment's bytes).
    public init(decoding bytes: ArraySlice<UInt8>) throws {
        let entry = try Creditd_Journal_V1_JournalEntry(serializedBytes: bytes.span.bytes)
        let at = Instant(nanosecondsSinceEpoch: entry.atUnixNanos)
        let command: WireCommand
        switch entry.command {
        case .createSubscription(let r): command = .create(r)
        case .cancelSubscription(let r): command = .cancel(r)
        case .resumeSubscription(let r): command = .resume(r)
        case .changeSeats(let r): command = .changeSeats(r)
        case .recordRefundOutcome(let r): command = .recordRefundOutcome(r)
        case .importSubscription(let r): command = .importSubscription(r)
        case .tick(let tick):
            self = .tick(at: at, manualClock: tick.manualClock)
            return
        case nil:
            throw DecodeError(description: "journal entry without a command (written by a newer creditd?)")
        }
        self = .command(command, at: at, callerUID: entry.callerUid, maxSeats: entry.maxSeats)
    }
}
