import CCreditClient
import CreditProto
import CreditTestSupport
import Foundation
import SwiftProtobuf
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// The C library as Swift sees it, against a fake ttrpc server on a real
/// Unix socket.
final class FakeServerTests: XCTestCase {
    func testHealthCheckThroughTheTypedAPI() throws {
        let log = RequestLog()
        let server = try FakeServer { connection in
            guard let request = connection.readRequest() else { return }
            log.append(request)
            var reply = Grpc_Health_V1_HealthCheckResponse()
            reply.status = .serving
            connection.sendPayload(streamID: request.streamID, reply)
            connection.waitForClose()
        }
        do {
            let client = try CClient(socketPath: server.path)
            var request = Grpc__Health__V1__HealthCheckRequest()
            grpc__health__v1__health_check_request__init(&request)
            let service = strdup("creditd.v1.Credits")
            defer { free(service) }
            request.service = service
            var response: UnsafeMutablePointer<Grpc__Health__V1__HealthCheckResponse>?
            var err = creditd_error()
            let rc = creditd_health_check(client.pointer, &request, &response, 5000, &err)
            XCTAssertEqual(rc, CREDITD_OK.rawValue32, CCallError(err).message)
            XCTAssertEqual(response?.pointee.status.rawValue,
                           GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING.rawValue)
            creditd_message_free(response)
        }
        server.join()

        let seen = log.requests
        XCTAssertEqual(seen.count, 1)
        XCTAssertEqual(seen.first?.streamID, 1)
        XCTAssertEqual(seen.first?.flags, 0)
        XCTAssertEqual(seen.first?.envelope.service, "grpc.health.v1.Health")
        XCTAssertEqual(seen.first?.envelope.method, "Check")
        let timeout = try XCTUnwrap(seen.first?.envelope.timeoutNano)
        XCTAssertGreaterThan(timeout, 0)
        XCTAssertLessThanOrEqual(timeout, 5_000_000_000)
        let payload = try Grpc_Health_V1_HealthCheckRequest(serializedBytes: seen[0].envelope.payload)
        XCTAssertEqual(payload.service, "creditd.v1.Credits")
    }

    /// protobuf-c's decoding (re-encoded) and the raw bytes both match what
    /// SwiftProtobuf sent.
    func testTypedAndByteCallsReturnWhatTheServerSent() throws {
        let sent = Self.sampleRefundStatus()
        let log = RequestLog()
        let server = try FakeServer { connection in
            for _ in 0..<2 {
                guard let request = connection.readRequest() else { return }
                log.append(request)
                connection.sendPayload(streamID: request.streamID, sent)
            }
            connection.waitForClose()
        }
        do {
            let client = try CClient(socketPath: server.path)
            var request = Creditd__V1__GetRefundStatusRequest()
            creditd__v1__get_refund_status_request__init(&request)
            let id = strdup("sub-1")
            defer { free(id) }
            request.subscription_id = id
            var response: UnsafeMutablePointer<Creditd__V1__GetRefundStatusResponse>?
            var err = creditd_error()
            let rc = creditd_get_refund_status(client.pointer, &request, &response, 5000, &err)
            XCTAssertEqual(rc, CREDITD_OK.rawValue32, CCallError(err).message)
            let typed = try XCTUnwrap(response)
            XCTAssertEqual(typed.pointee.n_credits, 1)
            XCTAssertEqual(typed.pointee.credits[0]!.pointee.amount_minor, 1333)
            let reencoded = packedBytes(UnsafeRawPointer(typed).assumingMemoryBound(to: ProtobufCMessage.self))
            XCTAssertEqual(try Creditd_V1_GetRefundStatusResponse(serializedBytes: reencoded), sent)
            creditd_message_free(response)

            var bytesRequest = Creditd_V1_GetRefundStatusRequest()
            bytesRequest.subscriptionID = "sub-1"
            let result = client.callBytes(service: "creditd.v1.Credits", method: "GetRefundStatus",
                                          request: try bytesRequest.serializedBytes())
            XCTAssertEqual(try Creditd_V1_GetRefundStatusResponse(serializedBytes: result.get()), sent)
        }
        server.join()
        XCTAssertEqual(log.requests.map(\.streamID), [1, 3])
        XCTAssertEqual(log.requests.map(\.envelope.method), ["GetRefundStatus", "GetRefundStatus"])
        for request in log.requests {
            XCTAssertEqual(try Creditd_V1_GetRefundStatusRequest(serializedBytes: request.envelope.payload).subscriptionID,
                           "sub-1")
        }
    }

    func testErrorStatusCarriesCodeMessageAndReason() throws {
        let server = try FakeServer { connection in
            guard let request = connection.readRequest() else { return }
            var reason = Creditd_V1_ErrorReason()
            reason.reason = "subscription_not_found"
            reason.metadata = ["subscription_id": "sub-9"]
            var detail = Google_Protobuf_Any()
            detail.typeURL = "type.googleapis.com/creditd.v1.ErrorReason"
            detail.value = (try? reason.serializedData()) ?? Data()
            var response = Ttrpc_Response()
            response.status.code = 5
            response.status.message = "subscription_not_found: no subscription sub-9"
            response.status.details = [detail]
            connection.sendResponse(streamID: request.streamID, response)
            connection.waitForClose()
        }
        do {
            let client = try CClient(socketPath: server.path)
            let result = client.callBytes(service: "creditd.v1.Credits", method: "GetSubscription", request: [])
            guard case .failure(let error) = result else { return XCTFail("expected an error") }
            XCTAssertEqual(error.kind, CREDITD_ERR_STATUS)
            XCTAssertEqual(error.code, 5)
            XCTAssertEqual(error.reason, "subscription_not_found")
            XCTAssertEqual(error.message, "subscription_not_found: no subscription sub-9")
            XCTAssertTrue(client.isUsable)
        }
        server.join()
    }

    /// Each bad answer ends the call with a clean error of the expected kind.
    func testMalformedAnswersGiveCleanErrors() throws {
        let cases: [(String, creditd_error_kind, @Sendable (ServerConnection, UInt32) -> Void)] = [
            ("length 0xFFFFFFFF", CREDITD_ERR_PROTOCOL, { c, id in
                c.write(ServerConnection.header(length: 0xFFFF_FFFF, streamID: id, type: 2)); c.waitForClose()
            }),
            ("length 4 MiB + 1", CREDITD_ERR_PROTOCOL, { c, id in
                c.write(ServerConnection.header(length: 4_194_305, streamID: id, type: 2)); c.waitForClose()
            }),
            ("garbage", CREDITD_ERR_PROTOCOL, { c, _ in
                c.write(Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8)); c.waitForClose()
            }),
            ("undecodable envelope", CREDITD_ERR_PROTOCOL, { c, id in
                c.sendFrame(streamID: id, type: 2, body: [0xFF, 0xFF, 0xFF, 0xFF]); c.waitForClose()
            }),
            ("close mid-header", CREDITD_ERR_CLOSED, { c, id in
                c.write(Array(ServerConnection.header(length: 4, streamID: id, type: 2).prefix(6)))
            }),
            ("close mid-body", CREDITD_ERR_CLOSED, { c, id in
                c.write(ServerConnection.header(length: 100, streamID: id, type: 2) + [0x12, 0x40])
            }),
            ("close without reply", CREDITD_ERR_CLOSED, { _, _ in }),
        ]
        for (name, expected, answer) in cases {
            let server = try FakeServer { connection in
                guard let request = connection.readRequest() else { return }
                answer(connection, request.streamID)
            }
            do {
                let client = try CClient(socketPath: server.path)
                let result = client.callBytes(service: "grpc.health.v1.Health", method: "Check", request: [])
                guard case .failure(let error) = result else {
                    XCTFail("\(name): expected an error")
                    continue
                }
                XCTAssertEqual(error.kind, expected, "\(name): \(error.message)")
            }
            server.join()
        }
    }

    func testRepliesForOtherStreamsAreSkipped() throws {
        let server = try FakeServer { connection in
            guard let request = connection.readRequest() else { return }
            var stale = Grpc_Health_V1_HealthCheckResponse()
            stale.status = .notServing
            connection.sendPayload(streamID: 7777, stale)
            connection.sendFrame(streamID: request.streamID, type: 0x03, body: [1, 2, 3])
            var reply = Grpc_Health_V1_HealthCheckResponse()
            reply.status = .serving
            connection.sendPayload(streamID: request.streamID, reply)
            connection.waitForClose()
        }
        do {
            let client = try CClient(socketPath: server.path)
            let result = client.callBytes(service: "grpc.health.v1.Health", method: "Check", request: [])
            XCTAssertEqual(try Grpc_Health_V1_HealthCheckResponse(serializedBytes: result.get()).status, .serving)
        }
        server.join()
    }

    func testConnectFailureReportsErrno() {
        XCTAssertThrowsError(try CClient(socketPath: "/nonexistent-creditd-dir/creditd.sock")) { error in
            let failure = error as? CCallError
            XCTAssertEqual(failure?.kind, CREDITD_ERR_CONNECT)
            XCTAssertEqual(failure?.sysErrno, ENOENT)
            XCTAssertEqual(failure?.code, 14)
        }
    }

    static func sampleRefundStatus() -> Creditd_V1_GetRefundStatusResponse {
        var credit = Creditd_V1_Credit()
        credit.creditID = "cr-1"
        credit.subscriptionID = "sub-1"
        credit.source = .seatChange
        credit.currency = "USD"
        credit.amountMinor = 1333
        credit.remainingMinor = 1333
        credit.state = .pending
        credit.expectedBy = "2025-03-01"
        credit.explanation.unitPrice.numerator = "1000"
        credit.explanation.unitPrice.denominator = "1"
        var change = Creditd_V1_CreditStateChange()
        change.state = .pending
        change.atUnixNanos = 1_740_000_000_000_000_000
        change.date = "2025-02-19"
        credit.history = [change]
        var response = Creditd_V1_GetRefundStatusResponse()
        response.subscriptionID = "sub-1"
        response.asOfDate = "2025-02-19"
        response.currency = "USD"
        response.credits = [credit]
        response.totals.pendingMinor = 1333
        return response
    }
}
