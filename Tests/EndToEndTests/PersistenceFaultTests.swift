import CreditClient
import CreditProto
import CreditWire
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A failing disk under the real daemon (an LD_PRELOAD shim fails write or
/// fdatasync on the state directory): writes get UNAVAILABLE, reads go on,
/// health says NOT_SERVING, and after a restart nothing acknowledged is lost.
final class PersistenceFaultTests: XCTestCase {
    static func buildShim(into directory: URL) throws -> String {
        try FaultInjectionShim.build(into: directory.path)
    }

    func testWriteFailure() async throws { try await run(failing: "write") }

    func testFsyncFailure() async throws { try await run(failing: "fsync") }

    func run(failing operation: String) async throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let shim = try Self.buildShim(into: directory)
        let trigger = directory.appendingPathComponent("fail-now").path
        let stateDirectory = directory.appendingPathComponent("state").path
        let arguments = ["--clock", "manual", "--now", "2025-04-01T09:00:00Z"]
        let daemon = try DaemonProcess.start(arguments: arguments, directory: directory, environment: [
            "LD_PRELOAD": shim,
            "CREDITD_FAULTINJECT_DIR": stateDirectory,
            "CREDITD_FAULTINJECT_TRIGGER": trigger,
            "CREDITD_FAULTINJECT_OPS": operation,
        ])
        let client = try await CreditClient.connect(socketPath: daemon.socketPath)

        for index in 1...5 { _ = try await client.createSubscription(Self.create("ok-\(index)")) }
        var change = Creditd_V1_ChangeSeatsRequest()
        change.subscriptionID = "ok-1"
        change.newSeats = 3
        _ = try await client.changeSeats(change)

        // The disk starts failing.
        XCTAssertTrue(FileManager.default.createFile(atPath: trigger, contents: nil))
        do {
            _ = try await client.createSubscription(Self.create("lost"))
            XCTFail("a write must fail while the journal cannot be made durable")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .unavailable, "\(error)")
        }
        // Later writes are refused too, even after the disk recovers (no retry after a failed fsync).
        try FileManager.default.removeItem(atPath: trigger)
        do {
            change.newSeats = 9
            _ = try await client.changeSeats(change)
            XCTFail("writes stay refused after a persistence fault")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .unavailable, "\(error)")
        }

        // Reads keep working and show only acknowledged state.
        var get = Creditd_V1_GetSubscriptionRequest()
        get.subscriptionID = "ok-1"
        let observed1 = try await client.getSubscription(get).subscription.seats
        XCTAssertEqual(observed1, 3)
        get.subscriptionID = "lost"
        do {
            _ = try await client.getSubscription(get)
            XCTFail("the unacknowledged subscription must not be visible")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .notFound)
        }
        let observed2 = try await client.healthCheck()
        XCTAssertEqual(observed2, .notServing)
        let stats = try await client.getStats()
        XCTAssertFalse(stats.persistence.fault.isEmpty)
        XCTAssertFalse(stats.serving)
        // A snapshot is refused as a snapshot, not as "this change was not applied".
        do {
            _ = try await client.takeSnapshot()
            XCTFail("a snapshot after a persistence fault")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .unavailable, "\(error)")
            XCTAssertEqual(error.reason, "persistence_fault", "\(error)")
            XCTAssertTrue(error.message.contains("no snapshot is taken until creditd is restarted"), "\(error)")
        }
        await client.close()
        daemon.kill()

        // Restart without the shim: everything acknowledged is there.
        let restarted = try DaemonProcess.start(arguments: arguments, directory: directory)
        let again = try await CreditClient.connect(socketPath: restarted.socketPath)
        for index in 1...5 {
            get.subscriptionID = "ok-\(index)"
            let subscription = try await again.getSubscription(get).subscription
            XCTAssertEqual(subscription.seats, index == 1 ? 3 : 4)
        }
        let observed3 = try await again.healthCheck()
        XCTAssertEqual(observed3, .serving)
        await again.close()
        XCTAssertEqual(try restarted.stop(), 0, restarted.stderr)
    }

    static func create(_ id: String) -> Creditd_V1_CreateSubscriptionRequest {
        var request = Creditd_V1_CreateSubscriptionRequest()
        request.subscriptionID = id
        request.seats = 4
        request.unitPriceMinor = 1500
        request.currency = "NOK"
        request.interval = .monthly
        request.timeZone = "Europe/Oslo"
        return request
    }
}
