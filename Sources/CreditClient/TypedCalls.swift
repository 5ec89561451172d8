import CreditProto

// Typed wrappers, one per method of the contract, named by the generated method table
// (MethodTable). Each throws RPCError for a server status, ClientError otherwise.

extension CreditClient {
    /// Calls `method` of the method table with a typed request.
    public func call<Req, Res>(_ method: TypedMethod<Req, Res>, _ request: Req, timeout: Duration? = nil,
                               metadata: [(String, String)] = []) async throws -> Res {
        try await call(service: method.service, method: method.method, request: request, timeout: timeout, metadata: metadata)
    }

    // MARK: creditd.v1.Credits

    public func createSubscription(_ request: Creditd_V1_CreateSubscriptionRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_CreateSubscriptionResponse {
        try await call(MethodTable.Credits.createSubscription, request, timeout: timeout, metadata: metadata)
    }

    public func getSubscription(_ request: Creditd_V1_GetSubscriptionRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_GetSubscriptionResponse {
        try await call(MethodTable.Credits.getSubscription, request, timeout: timeout, metadata: metadata)
    }

    public func listSubscriptions(_ request: Creditd_V1_ListSubscriptionsRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_ListSubscriptionsResponse {
        try await call(MethodTable.Credits.listSubscriptions, request, timeout: timeout, metadata: metadata)
    }

    public func cancelSubscription(_ request: Creditd_V1_CancelSubscriptionRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_CancelSubscriptionResponse {
        try await call(MethodTable.Credits.cancelSubscription, request, timeout: timeout, metadata: metadata)
    }

    public func resumeSubscription(_ request: Creditd_V1_ResumeSubscriptionRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_ResumeSubscriptionResponse {
        try await call(MethodTable.Credits.resumeSubscription, request, timeout: timeout, metadata: metadata)
    }

    public func changeSeats(_ request: Creditd_V1_ChangeSeatsRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_ChangeSeatsResponse {
        try await call(MethodTable.Credits.changeSeats, request, timeout: timeout, metadata: metadata)
    }

    public func getRefundStatus(_ request: Creditd_V1_GetRefundStatusRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_GetRefundStatusResponse {
        try await call(MethodTable.Credits.getRefundStatus, request, timeout: timeout, metadata: metadata)
    }

    public func listInvoices(_ request: Creditd_V1_ListInvoicesRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_ListInvoicesResponse {
        try await call(MethodTable.Credits.listInvoices, request, timeout: timeout, metadata: metadata)
    }

    public func recordRefundOutcome(_ request: Creditd_V1_RecordRefundOutcomeRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_RecordRefundOutcomeResponse {
        try await call(MethodTable.Credits.recordRefundOutcome, request, timeout: timeout, metadata: metadata)
    }

    public func importSubscription(_ request: Creditd_V1_ImportSubscriptionRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_ImportSubscriptionResponse {
        try await call(MethodTable.Credits.importSubscription, request, timeout: timeout, metadata: metadata)
    }

    public func listCredits(_ request: Creditd_V1_ListCreditsRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_ListCreditsResponse {
        try await call(MethodTable.Credits.listCredits, request, timeout: timeout, metadata: metadata)
    }

    /// ListEvents. A long poll (`waitSeconds` > 0) needs a deadline past the wait: without an
    /// explicit `timeout`, this one allows `waitSeconds` + 10 s (not the client's default).
    public func listEvents(_ request: Creditd_V1_ListEventsRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_ListEventsResponse {
        let deadline = timeout ?? (request.waitSeconds > 0 ? .seconds(Int64(request.waitSeconds) + 10) : nil)
        return try await call(MethodTable.Credits.listEvents, request, timeout: deadline, metadata: metadata)
    }

    // MARK: creditd.v1.Admin

    public func getStats(_ request: Creditd_V1_GetStatsRequest = .init(), timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_GetStatsResponse {
        try await call(MethodTable.Admin.getStats, request, timeout: timeout, metadata: metadata)
    }

    public func takeSnapshot(_ request: Creditd_V1_TakeSnapshotRequest = .init(), timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_TakeSnapshotResponse {
        try await call(MethodTable.Admin.takeSnapshot, request, timeout: timeout, metadata: metadata)
    }

    public func getClock(_ request: Creditd_V1_GetClockRequest = .init(), timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_GetClockResponse {
        try await call(MethodTable.Admin.getClock, request, timeout: timeout, metadata: metadata)
    }

    public func advanceClock(_ request: Creditd_V1_AdvanceClockRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_AdvanceClockResponse {
        try await call(MethodTable.Admin.advanceClock, request, timeout: timeout, metadata: metadata)
    }

    public func reload(_ request: Creditd_V1_ReloadRequest = .init(), timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_ReloadResponse {
        try await call(MethodTable.Admin.reload, request, timeout: timeout, metadata: metadata)
    }

    public func getMetrics(_ request: Creditd_V1_GetMetricsRequest = .init(), timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_GetMetricsResponse {
        try await call(MethodTable.Admin.getMetrics, request, timeout: timeout, metadata: metadata)
    }

    // MARK: grpc.health.v1.Health

    /// Health/Check; `service` "" asks for the whole server.
    public func healthCheck(service: String = "", timeout: Duration? = nil) async throws -> Grpc_Health_V1_HealthCheckResponse.ServingStatus {
        var request = Grpc_Health_V1_HealthCheckRequest()
        request.service = service
        let response: Grpc_Health_V1_HealthCheckResponse = try await call(MethodTable.Health.check, request, timeout: timeout)
        return response.status
    }

    public func healthCheck(_ request: Grpc_Health_V1_HealthCheckRequest, timeout: Duration? = nil) async throws -> Grpc_Health_V1_HealthCheckResponse {
        try await call(MethodTable.Health.check, request, timeout: timeout)
    }

    public func healthList(timeout: Duration? = nil) async throws -> Grpc_Health_V1_HealthListResponse {
        try await call(MethodTable.Health.list, Grpc_Health_V1_HealthListRequest(), timeout: timeout)
    }

    /// Health/Watch: `onStatus` gets the current status at once, then each change, on the
    /// connection's event loop. Returns when the server ends the stream (at shutdown).
    public func healthWatch(service: String = "", timeout: Duration? = nil,
                            onStatus: @escaping @Sendable (Grpc_Health_V1_HealthCheckResponse.ServingStatus) -> Void) async throws {
        try await serverStream(MethodTable.Health.watch, .with { $0.service = service }, timeout: timeout) { onStatus($0.status) }
    }

    /// Calls the server-streaming `method` with a typed request; `onMessage` gets each message.
    public func serverStream<Req, Res>(_ method: TypedMethod<Req, Res>, _ request: Req, timeout: Duration? = nil,
                                       onMessage: @escaping @Sendable (Res) -> Void) async throws {
        try await callServerStreaming(service: method.service, method: method.method,
                                      payload: try request.serializedBytes(), timeout: timeout) { bytes in
            let message: Res
            do {
                message = try Res(serializedBytes: bytes)
            } catch {
                throw ClientError.invalidResponse("stream message is not a \(Res.protoMessageName): \(error)")
            }
            onMessage(message)
        }
    }
}
