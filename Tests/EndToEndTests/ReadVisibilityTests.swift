import CreditClient
import CreditProto
import CreditWire
import Foundation
import XCTest

/// Reads are answered from the committed state, on the event loop: with the journal's fdatasync
/// held back (an LD_PRELOAD shim), a write in flight is invisible to reads on other
/// connections, those reads do not wait for it, and it becomes visible once durable.
final class ReadVisibilityTests: XCTestCase {
    func testPendingWriteIsInvisibleUntilDurable() async throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let shim = try PersistenceFaultTests.buildShim(into: directory)
        let trigger = directory.appendingPathComponent("hold-syncs").path
        let stateDirectory = directory.appendingPathComponent("state").path
        let daemon = try DaemonProcess.start(arguments: ["--clock", "manual", "--now", "2025-04-01T09:00:00Z"],
                                             directory: directory, environment: [
            "LD_PRELOAD": shim,
            "CREDITD_FAULTINJECT_DIR": stateDirectory,
            "CREDITD_FAULTINJECT_TRIGGER": trigger,
            "CREDITD_FAULTINJECT_OPS": "hold",
        ])
        let writer = try await CreditClient.connect(socketPath: daemon.socketPath)
        let reader = try await CreditClient.connect(socketPath: daemon.socketPath)
        _ = try await writer.createSubscription(PersistenceFaultTests.create("durable"))

        // Hold every fdatasync, then write on one connection.
        XCTAssertTrue(FileManager.default.createFile(atPath: trigger, contents: nil))
        let pending = Task { try await writer.createSubscription(PersistenceFaultTests.create("pending")) }
        try await Task.sleep(for: .milliseconds(300))

        // The other connection reads at once, without the pending write.
        var get = Creditd_V1_GetSubscriptionRequest()
        get.subscriptionID = "durable"
        let started = ContinuousClock.now
        _ = try await reader.getSubscription(get, timeout: .seconds(2))
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(1), "a read does not wait for an fsync in flight")
        get.subscriptionID = "pending"
        do {
            _ = try await reader.getSubscription(get, timeout: .seconds(2))
            XCTFail("a write that is not durable must not be visible")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .notFound, "\(error)")
        }
        let listed = try await reader.listSubscriptions(Creditd_V1_ListSubscriptionsRequest(), timeout: .seconds(2))
        XCTAssertEqual(listed.subscriptions.map(\.subscriptionID), ["durable"])

        // Once the fsync goes through, the write is acknowledged and visible.
        try FileManager.default.removeItem(atPath: trigger)
        let created = try await pending.value
        XCTAssertEqual(created.subscription.subscriptionID, "pending")
        let seen = try await reader.getSubscription(get, timeout: .seconds(2))
        XCTAssertEqual(seen.subscription.subscriptionID, "pending")

        await writer.close()
        await reader.close()
        XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)
    }

    /// A read whose deadline has already passed when it is dispatched is answered
    /// DEADLINE_EXCEEDED (docs/wire-protocol.md, deadlines), every time.
    func testReadPastItsDeadlineAtDispatchIsRefused() async throws {
        let daemon = try DaemonProcess.start(arguments: ["--clock", "manual", "--now", "2025-04-01T09:00:00Z"])
        let connection = try RawTTRPCConnection(path: daemon.socketPath)
        for attempt in 0..<40 {
            let result = try connection.call(id: UInt32(2 * attempt + 1), service: MethodTable.Credits.listSubscriptions.service,
                                             method: MethodTable.Credits.listSubscriptions.method, timeoutNano: 1)
            guard case .failure(let error) = result else { return XCTFail("attempt \(attempt) answered OK") }
            XCTAssertEqual(error.code, .deadlineExceeded, "\(error)")
        }
        connection.close()
        XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)
    }
}
