import CreditDomain
import CreditProto
import CreditServer
import CreditWire

/// The bound on a subscription's free text (O2 `customer` and `plan`, not interpreted).
///
/// Every event of a subscription carries its customer twice (the event's and its subscription's
/// or credit's) and its plan once, and an event is one message of at most 4 MiB (E4, E6; the
/// ttrpc limit). A customer of 2.1 MB was accepted, its creation event came to 4.2 MB, and
/// from then on ListEvents answered RESOURCE_EXHAUSTED at that seq whatever the limit, and
/// WatchEvents failed from its start: every consumer of the feed was stuck for good. With
/// customer and plan at most 1 MiB together, every event and every answer that holds them fits.
///
/// Checked here, where requests arrive, and not in the domain's O2 checks, which journal replay
/// runs again: a subscription accepted before the bound must still replay.
enum FreeText {
    static let maxBytes = 1 << 20

    static func refusal(customer: String, plan: String) -> DomainError? {
        let bytes = customer.utf8.count + plan.utf8.count
        guard bytes > maxBytes else { return nil }
        return DomainError(.invalidRequest,
            "customer and plan are \(bytes) bytes of UTF-8 together, at most \(maxBytes): every event that carries them must fit in one message")
    }
}

/// `creditd.v1.Credits`: the handler edge, where protobuf meets the domain.
enum CreditsService {
    static func make(gate: ApplicationGate) -> RPCService {
        let methods = MethodTable.Credits.self
        return RPCService(name: methods.serviceName, methods: [
            .deferred(methods.createSubscription) { request, context, respond in
                if let refused = FreeText.refusal(customer: request.customer, plan: request.plan) {
                    return respond(.failure(refused.rpcError))
                }
                writeEncoded(gate, .create(request), context, respond) { outcome, _, _ in
                    guard case .created(let created) = outcome else { throw unexpected(outcome) }
                    return ResponseEncoding.createSubscription(created.subscription, purchaseInvoice: created.purchaseInvoice)
                }
            },
            .immediateEncoded(methods.getSubscription) { request, _ in
                try read(gate) { ledger, _ throws(DomainError) in
                    var encoded: [UInt8] = []
                    try ledger.withSubscription(id: request.subscriptionID) { encoded = ResponseEncoding.getSubscription($0) }
                    return encoded
                }
            },
            .immediateEncoded(methods.listSubscriptions) { request, _ in
                try read(gate) { ledger, _ throws(DomainError) in
                    try PageFitting.fitted(requested: request.pageSize, read: { (size) throws(DomainError) in
                        try ledger.listSubscriptions(
                            pageSize: size, pageToken: request.pageToken, customer: request.customer,
                            statuses: request.statuses.map { EnumField(wireValue: Int32($0.rawValue)) })
                    }, count: \.subscriptions.count, encode: ResponseEncoding.listSubscriptions).encoded
                }
            },
            .deferred(methods.cancelSubscription) { request, context, respond in
                writeEncoded(gate, .cancel(request), context, respond) { outcome, subscription, dryRun in
                    guard case .cancelled(let record) = outcome, let subscription else { throw unexpected(outcome) }
                    return ResponseEncoding.cancelSubscription(record, subscription, dryRun: dryRun)
                }
            },
            .deferred(methods.resumeSubscription) { request, context, respond in
                write(gate, .resume(request), context, respond) { outcome, _ in
                    guard case .resumed(let subscription) = outcome else { throw unexpected(outcome) }
                    var response = Creditd_V1_ResumeSubscriptionResponse()
                    response.subscription = ProtoMapping.subscription(subscription)
                    return response
                }
            },
            .deferred(methods.changeSeats) { request, context, respond in
                writeEncoded(gate, .changeSeats(request), context, respond) { outcome, subscription, dryRun in
                    guard case .seatsChanged(let result) = outcome, let subscription else { throw unexpected(outcome) }
                    return ResponseEncoding.changeSeats(result, subscription, dryRun: dryRun)
                }
            },
            .immediateEncoded(methods.getRefundStatus) { request, _ in
                let (status, timeZone, customer) = try read(gate) { ledger, now throws(DomainError) in
                    // One lookup and one copy for both: the id lookup is the costliest step of a
                    // read, and this call used to look the subscription up twice.
                    let subscription = try ledger.subscription(id: request.subscriptionID)
                    let status = try subscription.refundStatus(creditId: request.creditID.isEmpty ? nil : request.creditID,
                                                               asOf: now)
                    return (status, subscription.timeZone, subscription.customer)
                }
                return ResponseEncoding.refundStatus(status, timeZone: timeZone, customer: customer)
            },
            .immediate(methods.listInvoices) { request, _ in
                let subscription = try read(gate) { ledger, _ throws(DomainError) in
                    try ledger.subscription(id: request.subscriptionID)
                }
                var response = Creditd_V1_ListInvoicesResponse()
                response.invoices = subscription.invoices.map { ProtoMapping.invoice($0, subscription) }
                return response
            },
            .deferred(methods.recordRefundOutcome) { request, context, respond in
                write(gate, .recordRefundOutcome(request), context, respond) { outcome, subscription in
                    guard case .refundOutcomeRecorded(let result) = outcome, let subscription else { throw unexpected(outcome) }
                    return ProtoMapping.refundOutcome(result, .init(subscription))
                }
            },
            .deferred(methods.importSubscription) { request, context, respond in
                if let refused = FreeText.refusal(customer: request.customer, plan: request.plan) {
                    return respond(.failure(refused.rpcError))
                }
                write(gate, .importSubscription(request), context, respond) { outcome, _ in
                    guard case .imported(let imported) = outcome else { throw unexpected(outcome) }
                    var response = Creditd_V1_ImportSubscriptionResponse()
                    response.subscription = ProtoMapping.subscription(imported.subscription)
                    response.openingInvoice = ProtoMapping.invoice(imported.openingInvoice, imported.subscription)
                    response.dryRun = request.dryRun
                    return response
                }
            },
            .immediateEncoded(methods.listCredits) { request, _ in
                try read(gate) { ledger, now throws(DomainError) in
                    let filter = CreditFilter(
                        states: request.states.map { EnumField(wireValue: Int32($0.rawValue)) },
                        overdueOnly: request.overdueOnly, refundOverdueOnly: request.refundOverdueOnly,
                        customer: request.customer, subscriptionId: request.subscriptionID, currency: request.currency)
                    let summary = request.view == .summary
                    return try PageFitting.fitted(requested: request.pageSize, read: { (size) throws(DomainError) in
                        try ledger.listCredits(filter: filter, pageSize: size, pageToken: request.pageToken, asOf: now)
                    }, count: \.credits.count, encode: { ResponseEncoding.listCredits($0, asOf: now, summary: summary) }).encoded
                }
            },
            .deferred(methods.listEvents, cancellable: true) { request, context, respond in
                EventLongPoll.start(gate: gate, request: request, context: context, respond: respond)
            },
            .serverStreaming(methods.watchEvents) { request, _, stream in
                try await EventStream.run(gate: gate, request: request, stream: stream)
            },
        ])
    }

    /// Hands a command to the writer. The answer is mapped and encoded on the caller's event
    /// loop once the change is durable; domain errors become statuses (docs/billing-rules.md §10).
    private static func write<Response>(
        _ gate: ApplicationGate, _ command: JournalEntry.WireCommand, _ context: CallContext,
        _ respond: TypedResponder<Response>,
        _ map: @escaping @Sendable (CommandResponse, Subscription?) throws -> Response
    ) {
        writeEncoded(gate, command, context, respond) { outcome, subscription, _ in
            try map(outcome, subscription).serializedBytes()
        }
    }

    /// `write` for an answer encoded straight from the domain values (`ResponseEncoding`).
    /// `encode` is given the request's `dry_run` so that it need capture nothing: a closure
    /// that captured the request took an allocation per write, on top of the completion's.
    private static func writeEncoded<Response>(
        _ gate: ApplicationGate, _ command: JournalEntry.WireCommand, _ context: CallContext,
        _ respond: TypedResponder<Response>,
        _ encode: @escaping @Sendable (CommandResponse, Subscription?, _ dryRun: Bool) throws -> [UInt8]
    ) {
        let application: CreditApplication
        do {
            application = try gate.require()
        } catch {
            respond(.failure(error))
            return
        }
        let dryRun = command.dryRun
        application.writer.submit(LedgerWriter.WriteCommand(
            command: command, requestBytes: context.requestBytes, callerUID: context.peer.uid,
            deadline: context.deadline
        ) { result in
            // Encoded here, on the thread that completes the batch, where the command's result
            // was just made; only the bytes cross to the event loop. Mapped and encoded on the
            // loop instead, each write's result (its subscription and answer, a dozen
            // references) was copied across threads and released there: at 64 writes in
            // flight CreateSubscription cost 12-22% more server CPU, CancelSubscription 5-11%
            // (BENCHMARKS.md, "Earlier results: answers encoded as
            // the batch completes").
            respond(encoded: Result {
                let executed = try result.mapError(\.rpcError).get()
                switch executed.outcome {
                case .success(let response): return try encode(response, executed.subscription, dryRun)
                case .failure(let error): throw error.rpcError
                }
            })
        })
    }

    /// Runs `body` on the latest committed state, on the calling event loop.
    static func read<T>(_ gate: ApplicationGate,
                                _ body: (borrowing Ledger, Instant) throws(DomainError) -> T) throws -> T {
        let application = try gate.require()
        let committed = application.writer.committed
        do {
            return try body(committed.ledger, application.writer.clock.now())
        } catch {
            throw error.rpcError
        }
    }

    private static func unexpected(_ outcome: CommandResponse) -> RPCError {
        RPCError.internalError("unexpected outcome \(outcome)")
    }
}
