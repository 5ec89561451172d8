import CCreditClient
import CreditClient
import CreditProto
import CreditTestSupport
import Foundation
import SwiftProtobuf
import XCTest

/// The C library against the real creditd binary on a real Unix socket.
/// The same script runs twice, each time against a fresh daemon on the
/// manual clock at the same instant: once through the C library, once
/// through the Swift client. Every answer must be equal.
final class InteropTests: XCTestCase {
    func testEveryCallAnswersAsTheSwiftClient() async throws {
        let cSteps = try await Self.runScriptWithTheCLibrary()
        let swiftSteps = try await Self.runScriptWithTheSwiftClient()

        XCTAssertEqual(cSteps.map(\.name), swiftSteps.map(\.name))
        for (c, swift) in zip(cSteps, swiftSteps) {
            XCTAssertTrue(c.sameResult(as: swift),
                          "\(c.name): C library got \(c.resultText)\nSwift client got \(swift.resultText)")
        }
        XCTAssertEqual(Set(cSteps.map(\.method)), API.allMethodNames, "the script must call every method")

        // The script's answers are what the billing rules say, not merely
        // the same twice.
        let health = try Self.success(cSteps, "health", as: Grpc_Health_V1_HealthCheckResponse.self)
        XCTAssertEqual(health.status, .serving)
        let refunds = try Self.success(cSteps, "refunds of acme-1 after cancel", as: Creditd_V1_GetRefundStatusResponse.self)
        XCTAssertEqual(refunds.credits.map(\.amountMinor), [2000, 4667],
                       "seat change credit 20.00, cancel credit 46.67 (README example session)")
        XCTAssertEqual(refunds.credits.map(\.expectedBy), ["2025-05-01", "2025-05-01"])
        let done = try Self.success(cSteps, "refund succeeded", as: Creditd_V1_RecordRefundOutcomeResponse.self)
        XCTAssertEqual(done.state, .refunded)
        XCTAssertFalse(try Self.success(cSteps, "refund failed", as: Creditd_V1_RecordRefundOutcomeResponse.self).ignored)
        XCTAssertTrue(try Self.success(cSteps, "late refund report", as: Creditd_V1_RecordRefundOutcomeResponse.self).ignored)

        let metrics = try Self.success(cSteps, "metrics", as: Creditd_V1_GetMetricsResponse.self)
        XCTAssertTrue(metrics.prometheusText.contains("method=\"creditd.v1.Credits/ChangeSeats\",code=\"OK\"} 4"),
                      metrics.prometheusText)

        // Statuses and reasons come through the C library intact.
        Self.assertStatus(cSteps, "get an unknown subscription", code: CREDITD_CODE_NOT_FOUND, reason: "subscription_not_found")
        Self.assertStatus(cSteps, "seats to 0", code: CREDITD_CODE_INVALID_ARGUMENT, reason: "seats_must_be_positive")
        Self.assertStatus(cSteps, "seats key reused for 6", code: CREDITD_CODE_ALREADY_EXISTS, reason: "idempotency_key_reused")
        Self.assertStatus(cSteps, "seats on a cancelled subscription", code: CREDITD_CODE_FAILED_PRECONDITION,
                          reason: "subscription_cancelled")
        Self.assertStatus(cSteps, "resume a cancelled subscription", code: CREDITD_CODE_FAILED_PRECONDITION,
                          reason: "subscription_cancelled")
        Self.assertStatus(cSteps, "create acme-1 again", code: CREDITD_CODE_ALREADY_EXISTS, reason: "subscription_exists")
        Self.assertStatus(cSteps, "refunds of an unknown credit", code: CREDITD_CODE_NOT_FOUND, reason: "credit_not_found")
        Self.assertStatus(cSteps, "refund report without an outcome", code: CREDITD_CODE_INVALID_ARGUMENT,
                          reason: "invalid_request")
    }

    /// A status without an ErrorReason detail would leave the Swift side's
    /// reason empty; the C library must not invent one either.
    func testStatusWithoutReasonDetailMatchesTheSwiftClient() async throws {
        let daemon = try Self.startDaemon()
        let c = CLibraryDriver(client: try CClient(socketPath: daemon.socketPath))
        let swiftClient = try await CreditClient.connect(socketPath: daemon.socketPath)
        let swift = SwiftClientDriver(client: swiftClient)
        let request = Grpc_Health_V1_HealthCheckRequest.with { $0.service = "no.such.Service" }
        let fromC = try await c.call(API.healthCheck, request)
        let fromSwift = try await swift.call(API.healthCheck, request)
        XCTAssertEqual(fromC, fromSwift)
        if case .failure(let status) = fromC {
            XCTAssertEqual(status.code, Int32(CREDITD_CODE_NOT_FOUND))
            XCTAssertEqual(status.reason, "", status.description)
        } else {
            XCTFail("Health/Check of an unknown service answered \(fromC)")
        }
        await swiftClient.close()
        XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)
    }

    // MARK: helpers

    /// The instant every daemon of these tests starts at, so that two
    /// daemons driven by the same script give the same answers.
    static let startInstant = "2025-04-01T09:00:00Z"

    /// A real creditd on the manual clock at `startInstant`, without the test service.
    static func startDaemon() throws -> DaemonProcess {
        try DaemonProcess.start(arguments: ["--clock", "manual", "--now", startInstant], testService: false)
    }

    static func runScriptWithTheCLibrary() async throws -> [InteropStep] {
        let daemon = try Self.startDaemon()
        let steps = try await InteropScript.run(CLibraryDriver(client: try CClient(socketPath: daemon.socketPath)))
        let status = try daemon.stop()
        guard status == 0 else { throw InteropMismatch(description: "creditd exited with \(status):\n\(daemon.stderr)") }
        return steps
    }

    static func runScriptWithTheSwiftClient() async throws -> [InteropStep] {
        let daemon = try Self.startDaemon()
        let client = try await CreditClient.connect(socketPath: daemon.socketPath)
        let steps = try await InteropScript.run(SwiftClientDriver(client: client))
        await client.close()
        let status = try daemon.stop()
        guard status == 0 else { throw InteropMismatch(description: "creditd exited with \(status):\n\(daemon.stderr)") }
        return steps
    }

    static func success<Response: SwiftProtobuf.Message>(
        _ steps: [InteropStep], _ name: String, as type: Response.Type
    ) throws -> Response {
        let step = try XCTUnwrap(steps.first { $0.name == name }, "no step \(name)")
        guard case .success(let message) = step.result, let response = message as? Response else {
            throw InteropMismatch(description: "\(name): \(step.resultText)")
        }
        return response
    }

    static func assertStatus(_ steps: [InteropStep], _ name: String, code: Int, reason: String,
                             file: StaticString = #filePath, line: UInt = #line) {
        guard let step = steps.first(where: { $0.name == name }) else {
            XCTFail("no step \(name)", file: file, line: line)
            return
        }
        guard case .failure(let status) = step.result else {
            XCTFail("\(name) succeeded: \(step.resultText)", file: file, line: line)
            return
        }
        XCTAssertEqual(status.code, Int32(code), "\(name): \(status)", file: file, line: line)
        XCTAssertEqual(status.reason, reason, "\(name): \(status)", file: file, line: line)
        XCTAssertTrue(status.message.hasPrefix("\(reason): ") || status.message == reason,
                      "\(name): message \(status.message)", file: file, line: line)
    }
}
