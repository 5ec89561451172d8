import CCreditClient
import CreditProto
import Foundation
import SwiftProtobuf

/// One RPC of creditd's API with the C library's typed function for it.
struct InteropMethod<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message> {
    let service: String
    let method: String
    /// Calls the typed C function with an encoded request; returns the
    /// protobuf-c response encoded again.
    let callC: (CClient, [UInt8]) -> Result<[UInt8], CCallError>
    /// A read changes nothing, so it may be issued twice.
    let isRead: Bool
    /// Clears what differs between two daemons for reasons other than the
    /// client (wall-clock durations, paths of their private directories).
    let normalize: (Response) -> Response

    var fullName: String { "\(service)/\(method)" }

    init<CRequest, CResponse>(
        _ service: String, _ method: String,
        _ function: @escaping CTypedFunction<CRequest, CResponse>,
        _ initRequest: @escaping (UnsafeMutablePointer<CRequest>?) -> Void,
        isRead: Bool,
        normalize: @escaping (Response) -> Response = { $0 }
    ) {
        self.service = service
        self.method = method
        self.isRead = isRead
        self.normalize = normalize
        callC = { client, request in
            client.callTyped(function, initRequest: initRequest, request: request)
        }
    }
}

/// Every method the C library wraps.
enum API {
    static let credits = "creditd.v1.Credits"
    static let admin = "creditd.v1.Admin"
    static let health = "grpc.health.v1.Health"

    static var allMethodNames: Set<String> {
        Set([
            createSubscription.fullName, getSubscription.fullName, listSubscriptions.fullName,
            cancelSubscription.fullName, resumeSubscription.fullName, changeSeats.fullName,
            getRefundStatus.fullName, listInvoices.fullName, recordRefundOutcome.fullName,
            importSubscription.fullName, listCredits.fullName, listEvents.fullName,
            getStats.fullName, takeSnapshot.fullName, getClock.fullName, advanceClock.fullName,
            reload.fullName, getMetrics.fullName, healthCheck.fullName,
        ])
    }

    // MARK: creditd.v1.Credits

    static var createSubscription: InteropMethod<Creditd_V1_CreateSubscriptionRequest, Creditd_V1_CreateSubscriptionResponse> {
        .init(credits, "CreateSubscription", creditd_create_subscription,
              creditd__v1__create_subscription_request__init, isRead: false)
    }
    static var getSubscription: InteropMethod<Creditd_V1_GetSubscriptionRequest, Creditd_V1_GetSubscriptionResponse> {
        .init(credits, "GetSubscription", creditd_get_subscription,
              creditd__v1__get_subscription_request__init, isRead: true)
    }
    static var listSubscriptions: InteropMethod<Creditd_V1_ListSubscriptionsRequest, Creditd_V1_ListSubscriptionsResponse> {
        .init(credits, "ListSubscriptions", creditd_list_subscriptions,
              creditd__v1__list_subscriptions_request__init, isRead: true)
    }
    static var cancelSubscription: InteropMethod<Creditd_V1_CancelSubscriptionRequest, Creditd_V1_CancelSubscriptionResponse> {
        .init(credits, "CancelSubscription", creditd_cancel_subscription,
              creditd__v1__cancel_subscription_request__init, isRead: false)
    }
    static var resumeSubscription: InteropMethod<Creditd_V1_ResumeSubscriptionRequest, Creditd_V1_ResumeSubscriptionResponse> {
        .init(credits, "ResumeSubscription", creditd_resume_subscription,
              creditd__v1__resume_subscription_request__init, isRead: false)
    }
    static var changeSeats: InteropMethod<Creditd_V1_ChangeSeatsRequest, Creditd_V1_ChangeSeatsResponse> {
        .init(credits, "ChangeSeats", creditd_change_seats,
              creditd__v1__change_seats_request__init, isRead: false)
    }
    static var getRefundStatus: InteropMethod<Creditd_V1_GetRefundStatusRequest, Creditd_V1_GetRefundStatusResponse> {
        .init(credits, "GetRefundStatus", creditd_get_refund_status,
              creditd__v1__get_refund_status_request__init, isRead: true)
    }
    static var listInvoices: InteropMethod<Creditd_V1_ListInvoicesRequest, Creditd_V1_ListInvoicesResponse> {
        .init(credits, "ListInvoices", creditd_list_invoices,
              creditd__v1__list_invoices_request__init, isRead: true)
    }
    static var recordRefundOutcome: InteropMethod<Creditd_V1_RecordRefundOutcomeRequest, Creditd_V1_RecordRefundOutcomeResponse> {
        .init(credits, "RecordRefundOutcome", creditd_record_refund_outcome,
              creditd__v1__record_refund_outcome_request__init, isRead: false)
    }

    static var importSubscription: InteropMethod<Creditd_V1_ImportSubscriptionRequest, Creditd_V1_ImportSubscriptionResponse> {
        .init(credits, "ImportSubscription", creditd_import_subscription,
              creditd__v1__import_subscription_request__init, isRead: false)
    }
    static var listCredits: InteropMethod<Creditd_V1_ListCreditsRequest, Creditd_V1_ListCreditsResponse> {
        .init(credits, "ListCredits", creditd_list_credits,
              creditd__v1__list_credits_request__init, isRead: true)
    }
    static var listEvents: InteropMethod<Creditd_V1_ListEventsRequest, Creditd_V1_ListEventsResponse> {
        .init(credits, "ListEvents", creditd_list_events,
              creditd__v1__list_events_request__init, isRead: true)
    }

    // MARK: creditd.v1.Admin

    static var getStats: InteropMethod<Creditd_V1_GetStatsRequest, Creditd_V1_GetStatsResponse> {
        .init(admin, "GetStats", creditd_get_stats, creditd__v1__get_stats_request__init, isRead: true) { stats in
            var stats = stats
            // Wall-clock quantities and live connection counts depend on
            // the run, not on the client.
            stats.uptimeSeconds = 0
            stats.connections = 0
            stats.persistence.lastSnapshotAtUnixNanos = 0
            stats.persistence.lastSnapshotAgeSeconds = 0
            return stats
        }
    }
    static var takeSnapshot: InteropMethod<Creditd_V1_TakeSnapshotRequest, Creditd_V1_TakeSnapshotResponse> {
        .init(admin, "TakeSnapshot", creditd_take_snapshot, creditd__v1__take_snapshot_request__init,
              isRead: false) { snapshot in
            var snapshot = snapshot
            // Each daemon has its own state directory; the file name stays.
            snapshot.path = URL(fileURLWithPath: snapshot.path).lastPathComponent
            snapshot.durationSeconds = 0
            return snapshot
        }
    }
    static var getClock: InteropMethod<Creditd_V1_GetClockRequest, Creditd_V1_GetClockResponse> {
        .init(admin, "GetClock", creditd_get_clock, creditd__v1__get_clock_request__init, isRead: true)
    }
    static var advanceClock: InteropMethod<Creditd_V1_AdvanceClockRequest, Creditd_V1_AdvanceClockResponse> {
        .init(admin, "AdvanceClock", creditd_advance_clock, creditd__v1__advance_clock_request__init, isRead: false)
    }
    static var reload: InteropMethod<Creditd_V1_ReloadRequest, Creditd_V1_ReloadResponse> {
        .init(admin, "Reload", creditd_reload, creditd__v1__reload_request__init, isRead: false)
    }
    static var getMetrics: InteropMethod<Creditd_V1_GetMetricsRequest, Creditd_V1_GetMetricsResponse> {
        .init(admin, "GetMetrics", creditd_get_metrics, creditd__v1__get_metrics_request__init, isRead: true) { metrics in
            // Latencies, uptime and readiness probes vary by run, and the C
            // side issues each read twice; the metric families and the
            // count of each Credits write by status do not vary.
            let writes = ["CreateSubscription", "CancelSubscription", "ResumeSubscription", "ChangeSeats",
                          "RecordRefundOutcome"]
            let kept = metrics.prometheusText.split(separator: "\n").filter { line in
                line.hasPrefix("# TYPE ")
                    || (line.hasPrefix("creditd_rpc_requests_total{")
                        && writes.contains { line.contains("method=\"creditd.v1.Credits/\($0)\"") })
            }
            var normalized = Creditd_V1_GetMetricsResponse()
            normalized.prometheusText = kept.sorted().joined(separator: "\n")
            return normalized
        }
    }

    // MARK: grpc.health.v1.Health

    static var healthCheck: InteropMethod<Grpc_Health_V1_HealthCheckRequest, Grpc_Health_V1_HealthCheckResponse> {
        .init(health, "Check", creditd_health_check, grpc__health__v1__health_check_request__init, isRead: true)
    }
}
