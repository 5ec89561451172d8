import CreditDomain
import CreditProto
import CreditServer
import CreditWire

/// `creditd.v1.Credits`: the handler edge, where protobuf meets the domain.
enum CreditsService {
    static let name = "creditd.v1.Credits"

    static func make(gate: ApplicationGate) -> RPCService {
        RPCService(name: name, methods: [
            .unary("CreateSubscription", role: .writer,
                   request: Creditd_V1_CreateSubscriptionRequest.self, response: Creditd_V1_CreateSubscriptionResponse.self) { request, context in
                let (outcome, _) = try await write(gate, .create(request), context)
                guard case .created(let created) = outcome else { throw unexpected(outcome) }
                var response = Creditd_V1_CreateSubscriptionResponse()
                response.subscription = ProtoMapping.subscription(created.subscription)
                response.purchaseInvoice = ProtoMapping.invoice(created.purchaseInvoice, created.subscription)
                return response
            },
            .unary("GetSubscription", role: .reader,
                   request: Creditd_V1_GetSubscriptionRequest.self, response: Creditd_V1_GetSubscriptionResponse.self) { request, _ in
                let subscription = try await read(gate) { ledger, _ throws(DomainError) in
                    try ledger.subscription(id: request.subscriptionID)
                }
                var response = Creditd_V1_GetSubscriptionResponse()
                response.subscription = ProtoMapping.subscription(subscription)
                return response
            },
            .unary("ListSubscriptions", role: .reader,
                   request: Creditd_V1_ListSubscriptionsRequest.self, response: Creditd_V1_ListSubscriptionsResponse.self) { request, _ in
                let page = try await read(gate) { ledger, _ throws(DomainError) in
                    try ledger.listSubscriptions(pageSize: request.pageSize, pageToken: request.pageToken)
                }
                var response = Creditd_V1_ListSubscriptionsResponse()
                response.subscriptions = page.subscriptions.map(ProtoMapping.subscription)
                response.nextPageToken = page.nextPageToken
                return response
            },
            .unary("CancelSubscription", role: .writer,
                   request: Creditd_V1_CancelSubscriptionRequest.self, response: Creditd_V1_CancelSubscriptionResponse.self) { request, context in
                let (outcome, subscription) = try await write(gate, .cancel(request), context)
                guard case .cancelled(let record) = outcome, let subscription else { throw unexpected(outcome) }
                var response = Creditd_V1_CancelSubscriptionResponse()
                response.cancellation = ProtoMapping.cancellation(record, .init(subscription))
                response.dryRun = request.dryRun
                return response
            },
            .unary("ResumeSubscription", role: .writer,
                   request: Creditd_V1_ResumeSubscriptionRequest.self, response: Creditd_V1_ResumeSubscriptionResponse.self) { request, context in
                let (outcome, _) = try await write(gate, .resume(request), context)
                guard case .resumed(let subscription) = outcome else { throw unexpected(outcome) }
                var response = Creditd_V1_ResumeSubscriptionResponse()
                response.subscription = ProtoMapping.subscription(subscription)
                return response
            },
            .unary("ChangeSeats", role: .writer,
                   request: Creditd_V1_ChangeSeatsRequest.self, response: Creditd_V1_ChangeSeatsResponse.self) { request, context in
                let (outcome, subscription) = try await write(gate, .changeSeats(request), context)
                guard case .seatsChanged(let result) = outcome, let subscription else { throw unexpected(outcome) }
                var response = ProtoMapping.seatChange(result, .init(subscription))
                response.dryRun = request.dryRun
                return response
            },
            .unary("GetRefundStatus", role: .reader,
                   request: Creditd_V1_GetRefundStatusRequest.self, response: Creditd_V1_GetRefundStatusResponse.self) { request, _ in
                let (status, subscription) = try await read(gate) { ledger, now throws(DomainError) in
                    let status = try ledger.refundStatus(subscriptionId: request.subscriptionID,
                                                         creditId: request.creditID.isEmpty ? nil : request.creditID, asOf: now)
                    return (status, try ledger.subscription(id: request.subscriptionID))
                }
                return ProtoMapping.refundStatus(status, subscription)
            },
            .unary("ListInvoices", role: .reader,
                   request: Creditd_V1_ListInvoicesRequest.self, response: Creditd_V1_ListInvoicesResponse.self) { request, _ in
                let (subscription, invoices) = try await read(gate) { ledger, _ throws(DomainError) in
                    let subscription = try ledger.subscription(id: request.subscriptionID)
                    return (subscription, subscription.invoices)
                }
                var response = Creditd_V1_ListInvoicesResponse()
                response.invoices = invoices.map { ProtoMapping.invoice($0, subscription) }
                return response
            },
            .unary("RecordRefundOutcome", role: .writer,
                   request: Creditd_V1_RecordRefundOutcomeRequest.self, response: Creditd_V1_RecordRefundOutcomeResponse.self) { request, context in
                let (outcome, subscription) = try await write(gate, .recordRefundOutcome(request), context)
                guard case .refundOutcomeRecorded(let result) = outcome, let subscription else { throw unexpected(outcome) }
                return ProtoMapping.refundOutcome(result, .init(subscription))
            },
        ])
    }

    /// Runs a command through the keeper; domain errors become statuses (docs/billing-rules.md §10).
    private static func write(_ gate: ApplicationGate, _ command: JournalEntry.WireCommand,
                              _ context: CallContext) async throws -> (CommandResponse, Subscription?) {
        // Past the deadline before anything starts: no side effects (docs/wire-protocol.md §5).
        if context.isPastDeadline { throw RPCError.deadlineExceeded("deadline exceeded before the call started") }
        let executed = try await gate.keeper().execute(command, callerUID: context.peer.uid)
        switch executed.outcome {
        case .success(let response): return (response, executed.subscription)
        case .failure(let error): throw status(of: error)
        }
    }

    private static func read<T: Sendable>(_ gate: ApplicationGate,
                                          _ body: @Sendable (Ledger, Instant) throws(DomainError) -> T) async throws -> T {
        switch try await gate.keeper().read(body) {
        case .success(let value): return value
        case .failure(let error): throw status(of: error)
        }
    }

    /// The one mapping from domain errors to statuses: code plus stable reason.
    static func status(of error: DomainError) -> RPCError {
        RPCError.domain(StatusCode(wireValue: error.grpcStatusCode), reason: error.code, error.message)
    }

    private static func unexpected(_ outcome: CommandResponse) -> RPCError {
        RPCError.internalError("unexpected outcome \(outcome)")
    }
}
