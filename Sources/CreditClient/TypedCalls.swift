import CreditProto

// Typed wrappers, one per method of the contract (proto/creditd/v1/credits.proto and
// grpc/health/v1/health.proto). Each throws RPCError for a server status, ClientError otherwise.

extension CreditClient {
    public static let creditsService = "creditd.v1.Credits"
    public static let adminService = "creditd.v1.Admin"
    public static let healthService = "grpc.health.v1.Health"

    // MARK: creditd.v1.Credits

    public func createSubscription(_ request: Creditd_V1_CreateSubscriptionRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_CreateSubscriptionResponse {
        try await call(service: Self.creditsService, method: "CreateSubscription", request: request, timeout: timeout, metadata: metadata)
    }

    public func getSubscription(_ request: Creditd_V1_GetSubscriptionRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_GetSubscriptionResponse {
        try await call(service: Self.creditsService, method: "GetSubscription", request: request, timeout: timeout, metadata: metadata)
    }

    public func listSubscriptions(_ request: Creditd_V1_ListSubscriptionsRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_ListSubscriptionsResponse {
        try await call(service: Self.creditsService, method: "ListSubscriptions", request: request, timeout: timeout, metadata: metadata)
    }

    public func cancelSubscription(_ request: Creditd_V1_CancelSubscriptionRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_CancelSubscriptionResponse {
        try await call(service: Self.creditsService, method: "CancelSubscription", request: request, timeout: timeout, metadata: metadata)
    }

    public func resumeSubscription(_ request: Creditd_V1_ResumeSubscriptionRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_ResumeSubscriptionResponse {
        try await call(service: Self.creditsService, method: "ResumeSubscription", request: request, timeout: timeout, metadata: metadata)
    }

    public func changeSeats(_ request: Creditd_V1_ChangeSeatsRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_ChangeSeatsResponse {
        try await call(service: Self.creditsService, method: "ChangeSeats", request: request, timeout: timeout, metadata: metadata)
    }

    public func getRefundStatus(_ request: Creditd_V1_GetRefundStatusRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_GetRefundStatusResponse {
        try await call(service: Self.creditsService, method: "GetRefundStatus", request: request, timeout: timeout, metadata: metadata)
    }

    public func listInvoices(_ request: Creditd_V1_ListInvoicesRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_ListInvoicesResponse {
        try await call(service: Self.creditsService, method: "ListInvoices", request: request, timeout: timeout, metadata: metadata)
    }

    public func recordRefundOutcome(_ request: Creditd_V1_RecordRefundOutcomeRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_RecordRefundOutcomeResponse {
        try await call(service: Self.creditsService, method: "RecordRefundOutcome", request: request, timeout: timeout, metadata: metadata)
    }

    // MARK: creditd.v1.Admin

    public func getStats(_ request: Creditd_V1_GetStatsRequest = .init(), timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_GetStatsResponse {
        try await call(service: Self.adminService, method: "GetStats", request: request, timeout: timeout, metadata: metadata)
    }

    public func takeSnapshot(_ request: Creditd_V1_TakeSnapshotRequest = .init(), timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_TakeSnapshotResponse {
        try await call(service: Self.adminService, method: "TakeSnapshot", request: request, timeout: timeout, metadata: metadata)
    }

    public func getClock(_ request: Creditd_V1_GetClockRequest = .init(), timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_GetClockResponse {
        try await call(service: Self.adminService, method: "GetClock", request: request, timeout: timeout, metadata: metadata)
    }

    public func advanceClock(_ request: Creditd_V1_AdvanceClockRequest, timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_AdvanceClockResponse {
        try await call(service: Self.adminService, method: "AdvanceClock", request: request, timeout: timeout, metadata: metadata)
    }

    public func reload(_ request: Creditd_V1_ReloadRequest = .init(), timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_ReloadResponse {
        try await call(service: Self.adminService, method: "Reload", request: request, timeout: timeout, metadata: metadata)
    }

    public func getMetrics(_ request: Creditd_V1_GetMetricsRequest = .init(), timeout: Duration? = nil, metadata: [(String, String)] = []) async throws -> Creditd_V1_GetMetricsResponse {
        try await call(service: Self.adminService, method: "GetMetrics", request: request, timeout: timeout, metadata: metadata)
    }

    // MARK: grpc.health.v1.Health

    /// Health/Check; `service` "" asks for the whole server.
    public func healthCheck(service: String = "", timeout: Duration? = nil) async throws -> Grpc_Health_V1_HealthCheckResponse.ServingStatus {
        var request = Grpc_Health_V1_HealthCheckRequest()
        request.service = service
        let response: Grpc_Health_V1_HealthCheckResponse = try await call(
            service: Self.healthService, method: "Check", request: request, timeout: timeout
        )
        return response.status
    }

    public func healthCheck(_ request: Grpc_Health_V1_HealthCheckRequest, timeout: Duration? = nil) async throws -> Grpc_Health_V1_HealthCheckResponse {
        try await call(service: Self.healthService, method: "Check", request: request, timeout: timeout)
    }

    public func healthList(timeout: Duration? = nil) async throws -> Grpc_Health_V1_HealthListResponse {
        try await call(service: Self.healthService, method: "List", request: Grpc_Health_V1_HealthListRequest(), timeout: timeout)
    }
}
