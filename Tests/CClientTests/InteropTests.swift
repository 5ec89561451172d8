import CCreditClient
import CreditProto
import Foundation
import SwiftProtobuf
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The C library against a running creditd. Skipped unless
/// CREDITD_C_INTEROP_SOCKET names the daemon's socket; end-to-end tests
/// that start their own daemon call `CClientInterop.run(socketPath:)`.
final class InteropTests: XCTestCase {
    func testAgainstRunningDaemon() throws {
        guard let path = ProcessInfo.processInfo.environment["CREDITD_C_INTEROP_SOCKET"] else {
            throw XCTSkip("set CREDITD_C_INTEROP_SOCKET to a running creditd's socket")
        }
        try CClientInterop.run(socketPath: path)
    }
}

/// One pass through the API with the C library. Each answer is read twice:
/// through the typed protobuf-c call (re-encoded and decoded by
/// SwiftProtobuf) and through creditd_call_bytes; both must agree, so a
/// caller can also compare them with the Swift client's results.
enum CClientInterop {
    struct Mismatch: Error, CustomStringConvertible {
        var description: String
    }

    static func run(socketPath: String, subscriptionID: String = "c-interop-\(UUID().uuidString.prefix(8))") throws {
        let client = try CClient(socketPath: socketPath)

        var health = Grpc_Health_V1_HealthCheckRequest()
        health.service = ""
        let healthReply: Grpc_Health_V1_HealthCheckResponse =
            try call(client, "grpc.health.v1.Health", "Check", health)
        try expect(healthReply.status == .serving, "health: \(healthReply.status)")

        var create = Creditd_V1_CreateSubscriptionRequest()
        create.subscriptionID = subscriptionID
        create.customer = "c-interop"
        create.plan = "team"
        create.seats = 5
        create.unitPriceMinor = 1000
        create.currency = "USD"
        create.interval = .monthly
        create.timeZone = "UTC"
        let created: Creditd_V1_CreateSubscriptionResponse =
            try call(client, "creditd.v1.Credits", "CreateSubscription", create)
        try expect(created.subscription.seats == 5, "created: \(created)")

        var seats = Creditd_V1_ChangeSeatsRequest()
        seats.subscriptionID = subscriptionID
        seats.newSeats = 3
        seats.idempotencyKey = "\(subscriptionID)-seats"
        let _: Creditd_V1_ChangeSeatsResponse = try call(client, "creditd.v1.Credits", "ChangeSeats", seats)

        // The typed path: the same read through protobuf-c structs.
        var typedRequest = Creditd__V1__GetSubscriptionRequest()
        creditd__v1__get_subscription_request__init(&typedRequest)
        let id = strdup(subscriptionID)
        defer { free(id) }
        typedRequest.subscription_id = id
        var typedResponse: UnsafeMutablePointer<Creditd__V1__GetSubscriptionResponse>?
        var err = creditd_error()
        let rc = creditd_get_subscription(client.pointer, &typedRequest, &typedResponse, 5000, &err)
        defer { creditd_message_free(typedResponse) }
        try expect(rc == CREDITD_OK.rawValue32, "GetSubscription: \(CCallError(err).message)")
        let typed = try Creditd_V1_GetSubscriptionResponse(serializedBytes: packedBytes(
            UnsafeRawPointer(typedResponse!).assumingMemoryBound(to: ProtobufCMessage.self)))
        var get = Creditd_V1_GetSubscriptionRequest()
        get.subscriptionID = subscriptionID
        let viaBytes: Creditd_V1_GetSubscriptionResponse =
            try call(client, "creditd.v1.Credits", "GetSubscription", get)
        try expect(typed == viaBytes, "typed \(typed) != bytes \(viaBytes)")

        var unknown = Creditd_V1_GetSubscriptionRequest()
        unknown.subscriptionID = "\(subscriptionID)-missing"
        let missing = client.callBytes(service: "creditd.v1.Credits", method: "GetSubscription",
                                       request: try unknown.serializedBytes())
        guard case .failure(let error) = missing else { throw Mismatch(description: "unknown id succeeded") }
        try expect(error.kind == CREDITD_ERR_STATUS && error.code == 5 && error.reason == "subscription_not_found",
                   "unknown id: \(error)")
    }

    /// A call through creditd_call_bytes with SwiftProtobuf messages.
    static func call<Response: SwiftProtobuf.Message>(
        _ client: CClient, _ service: String, _ method: String, _ request: some SwiftProtobuf.Message
    ) throws -> Response {
        let bytes = try client.callBytes(service: service, method: method, request: request.serializedBytes()).get()
        return try Response(serializedBytes: bytes)
    }

    static func expect(_ condition: Bool, _ what: @autoclosure () -> String) throws {
        if !condition { throw Mismatch(description: what()) }
    }
}
