import CreditDomain
import CreditProto
import CreditService
import CreditWire
import SwiftProtobuf

/// Requests from the wire, dispatched into a fresh ledger the way the daemon's handlers do it.
///
/// Input: ttrpc frames (10-byte header, then data). A length past the end of the input takes
/// the rest, so mutations that break a length still reach the envelope. Every Request frame is
/// decoded, looked up by service and method, its payload decoded as that method's message and
/// run against the ledger on a manual clock that starts at a fixed instant.
///
/// Besides "no crash", three properties of the daemon's durability are checked:
/// - every journal record decodes back to itself;
/// - replaying the journal (as recovery does) rebuilds an equal ledger after every call;
/// - a snapshot decodes back to an equal ledger with the same schedule and id order.
enum DispatchFuzzing {
    /// 2025-04-01T09:00:00Z, the clock's reading when the input starts.
    static let start = Instant(nanosecondsSinceEpoch: 1_743_498_000_000_000_000)

    struct Session {
        var ledger = Ledger()
        var replica = Ledger()
        var now = DispatchFuzzing.start
        var journal: [JournalEntry] = []

        /// Journals a change exactly as the ledger writer does, and replays it into the replica.
        mutating func record(_ entry: JournalEntry, requestBytes: [UInt8]? = nil) {
            let bytes: [UInt8]
            do {
                bytes = try entry.encoded(requestBytes: requestBytes)
            } catch {
                fail("journal record does not encode: \(error)")
            }
            let decoded: JournalEntry
            do {
                decoded = try JournalEntry(decoding: bytes)
            } catch {
                fail("journal record does not decode: \(error)")
            }
            check(decoded == entry, "journal record does not round-trip")
            CreditApplication.replay(decoded, into: &replica)
            journal.append(decoded)
            check(replica == ledger, "journal replay diverges from the live ledger after \(entry)")
        }
    }

    static func run(_ input: [UInt8]) {
        var session = Session()
        var offset = 0
        while input.count - offset >= TTRPCLimits.headerLength {
            let length = input[offset..<offset + 4].reduce(0) { $0 << 8 | Int($1) }
            let streamID = input[offset + 4..<offset + 8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            let type = input[offset + 8]
            offset += TTRPCLimits.headerLength
            let end = min(input.count, offset + length)
            let data = Array(input[offset..<end])
            offset = end
            guard type == TTRPCFrameType.request.rawValue,
                  let request = try? TTRPCEnvelope.decodeRequest(bytes: data)
            else { continue }
            dispatch(request, callerUID: streamID % 3, &session)
        }
        checkSnapshot(session)
    }

    static func dispatch(_ request: Ttrpc_Request, callerUID: UInt32, _ session: inout Session) {
        let payload = [UInt8](request.payload)
        let method = MethodTable.all.first { $0.service == request.service && $0.method == request.method }
        switch method {
        case MethodTable.Credits.createSubscription.descriptor:
            guard let message = try? Creditd_V1_CreateSubscriptionRequest(serializedBytes: payload) else { return }
            write(.create(message), payload, callerUID: callerUID, &session)
        case MethodTable.Credits.cancelSubscription.descriptor:
            guard let message = try? Creditd_V1_CancelSubscriptionRequest(serializedBytes: payload) else { return }
            write(.cancel(message), payload, callerUID: callerUID, &session)
        case MethodTable.Credits.resumeSubscription.descriptor:
            guard let message = try? Creditd_V1_ResumeSubscriptionRequest(serializedBytes: payload) else { return }
            write(.resume(message), payload, callerUID: callerUID, &session)
        case MethodTable.Credits.changeSeats.descriptor:
            guard let message = try? Creditd_V1_ChangeSeatsRequest(serializedBytes: payload) else { return }
            write(.changeSeats(message), payload, callerUID: callerUID, &session)
        case MethodTable.Credits.recordRefundOutcome.descriptor:
            guard let message = try? Creditd_V1_RecordRefundOutcomeRequest(serializedBytes: payload) else { return }
            write(.recordRefundOutcome(message), payload, callerUID: callerUID, &session)
        case MethodTable.Credits.getSubscription.descriptor:
            guard let message = try? Creditd_V1_GetSubscriptionRequest(serializedBytes: payload) else { return }
            answer { () throws(DomainError) in _ = try session.ledger.subscription(id: message.subscriptionID) }
        case MethodTable.Credits.listSubscriptions.descriptor:
            guard let message = try? Creditd_V1_ListSubscriptionsRequest(serializedBytes: payload) else { return }
            answer { () throws(DomainError) in
                let page = try session.ledger.listSubscriptions(pageSize: message.pageSize, pageToken: message.pageToken)
                let limit = message.pageSize == 0 ? 100 : min(Int(message.pageSize), 1_000)
                check(page.subscriptions.count <= limit, "a page larger than its size")
            }
        case MethodTable.Credits.getRefundStatus.descriptor:
            guard let message = try? Creditd_V1_GetRefundStatusRequest(serializedBytes: payload) else { return }
            answer { () throws(DomainError) in
                _ = try session.ledger.refundStatus(subscriptionId: message.subscriptionID,
                                                    creditId: message.creditID.isEmpty ? nil : message.creditID,
                                                    asOf: session.now)
            }
        case MethodTable.Credits.listInvoices.descriptor:
            guard let message = try? Creditd_V1_ListInvoicesRequest(serializedBytes: payload) else { return }
            answer { () throws(DomainError) in _ = try session.ledger.invoices(subscriptionId: message.subscriptionID) }
        case MethodTable.Admin.advanceClock.descriptor:
            guard let message = try? Creditd_V1_AdvanceClockRequest(serializedBytes: payload) else { return }
            advanceClock(message, &session)
        case MethodTable.Admin.takeSnapshot.descriptor:
            checkSnapshot(session)
        case MethodTable.Health.check.descriptor, MethodTable.Health.watch.descriptor:
            _ = try? Grpc_Health_V1_HealthCheckRequest(serializedBytes: payload)
        default:
            // UNIMPLEMENTED on the wire; the ledger is untouched.
            break
        }
    }

    /// The writer's step without the files (`LedgerWriter.apply`): apply, then journal the
    /// request as received when the state changed.
    static func write(_ command: JournalEntry.WireCommand, _ requestBytes: [UInt8], callerUID: UInt32, _ session: inout Session) {
        let before = session.ledger
        let (executed, entry) = LedgerWriter.apply(command, to: &session.ledger, at: session.now, callerUID: callerUID)
        if let entry {
            session.record(entry, requestBytes: requestBytes)
        } else {
            check(session.ledger == before, "the ledger changed but the command says it did not")
        }
        if case .failure(let error) = executed.outcome {
            let status = error.rpcError
            check(status.code != .ok, "a domain error mapped to OK")
            check(RPCError(status: status.status).reason == error.code, "the stable reason does not survive the wire")
        }
    }

    /// Admin/AdvanceClock on a manual clock, with the handler's argument rules.
    static func advanceClock(_ request: Creditd_V1_AdvanceClockRequest, _ session: inout Session) {
        let target: Instant
        switch (request.byNanos, request.toUnixNanos) {
        case (let by, 0) where by > 0:
            let (sum, overflow) = session.now.nanosecondsSinceEpoch.addingReportingOverflow(by)
            guard !overflow else { return }
            target = Instant(nanosecondsSinceEpoch: sum)
        case (0, let to) where to != 0:
            target = Instant(nanosecondsSinceEpoch: to)
        default:
            return
        }
        guard target >= session.now else { return }
        _ = target.rfc3339
        session.now = target
        session.ledger.advance(to: target)
        session.record(.tick(at: target, manualClock: true))
    }

    /// A read: a domain error is a normal answer.
    static func answer(_ body: () throws(DomainError) -> Void) {
        do {
            try body()
        } catch {
            _ = error.rpcError
        }
    }

    /// Admin/TakeSnapshot and recovery: the snapshot must decode to the same state.
    static func checkSnapshot(_ session: Session) {
        let bytes: [UInt8]
        do {
            bytes = try SnapshotCodec.encode(session.ledger, clock: session.now)
        } catch {
            fail("snapshot does not encode: \(error)")
        }
        let decoded: (ledger: Ledger, clock: Instant)
        do {
            decoded = try SnapshotCodec.decode(bytes)
        } catch {
            fail("snapshot does not decode: \(error)")
        }
        check(decoded.clock == session.now, "snapshot clock differs")
        check(decoded.ledger == session.ledger, "snapshot does not round-trip the ledger")
        check(decoded.ledger.nextDueInstant() == session.ledger.nextDueInstant(), "snapshot loses the schedule")
        let ids = { (ledger: Ledger) in
            (try? ledger.listSubscriptions(pageSize: 1_000, pageToken: ""))?.subscriptions.map(\.id) ?? []
        }
        check(ids(decoded.ledger) == ids(session.ledger), "snapshot changes the id order")
    }

    static func check(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { fail(message()) }
    }

    static func fail(_ message: String) -> Never {
        fatalError("FuzzDispatch: \(message)")
    }
}
