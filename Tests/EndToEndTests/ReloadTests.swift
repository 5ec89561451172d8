import CreditClient
import CreditProto
import CreditTestSupport
import Foundation
import XCTest

/// A reload applies every setting that can change at runtime, names what it changed,
/// says which settings need a restart, and says so when there is no config file.
final class ReloadTests: XCTestCase {
    private func create(_ client: CreditClient, _ id: String, seats: Int64) async throws {
        var request = Creditd_V1_CreateSubscriptionRequest()
        request.subscriptionID = id
        request.customer = "acme"
        request.seats = seats
        request.unitPriceMinor = 1000
        request.currency = "USD"
        request.interval = .monthly
        request.timeZone = "UTC"
        request.refundPolicy = .anytime
        _ = try await client.createSubscription(request)
    }

    func testSeatLimitFollowsReloadBothWays() async throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("creditd.json")
        try Data(#"{"max_seats": 5, "event_loops": 3}"#.utf8).write(to: config)
        let daemon = try DaemonProcess.start(arguments: ["--config", config.path], directory: directory)
        let client = try await CreditClient.connect(socketPath: daemon.socketPath)

        do {
            try await create(client, "six-at-5", seats: 6)
            XCTFail("6 seats were accepted at max_seats 5")
        } catch {}

        try Data(#"{"max_seats": 100, "snapshot_every_records": 10, "log_level": "debug", "event_loops": 3}"#.utf8).write(to: config)
        let raised = try await client.reload()
        XCTAssertEqual(raised.message, "configuration reloaded from \(config.path); applied: "
            + "log_level info -> debug, max_seats 5 -> 100, snapshot_every_records 100000 -> 10")
        try await create(client, "six-at-100", seats: 6)

        try Data(#"{"max_seats": 5, "event_loops": 3}"#.utf8).write(to: config)
        let lowered = try await client.reload()
        XCTAssertTrue(lowered.message.contains("max_seats 100 -> 5"), lowered.message)
        do {
            try await create(client, "six-again", seats: 6)
            XCTFail("6 seats were accepted after the reload to max_seats 5")
        } catch {}

        // Restart-only settings are named, and their running values kept.
        try Data(#"{"max_seats": 5, "clock": "manual", "journal_segment_bytes": 8192, "event_loops": 2}"#.utf8).write(to: config)
        let restartOnly = try await client.reload()
        XCTAssertEqual(restartOnly.message, "configuration reloaded from \(config.path); nothing changed; "
            + "needs a restart to take effect (running values kept): clock, journal_segment_bytes, event_loops")
        let clock = try await client.getClock()
        XCTAssertFalse(clock.manual)

        // A broken file is refused, with the line and column, and the daemon says why in its log.
        try Data("{\n  \"max_seats\": 7,\n}\n".utf8).write(to: config)
        do {
            _ = try await client.reload()
            XCTFail("a malformed file was accepted")
        } catch {
            XCTAssertTrue("\(error)".contains("line 3, column 1"), "\(error)")
        }
        await client.close()
        XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)
        XCTAssertTrue(daemon.stderr.contains("warning [creditd] reload refused; keeping the running configuration"), daemon.stderr)
        XCTAssertTrue(daemon.stderr.contains("warning [creditd] these settings change only with a restart"), daemon.stderr)
        XCTAssertTrue(daemon.stderr.contains("event_loops=3"), daemon.stderr)
    }

    /// A reload that turns the idle timeout on applies to the connections already open (their
    /// idle timers were armed only when they opened, so those opened while it was off stayed
    /// for good), and names the connection limits it applies.
    func testIdleTimeoutReloadReachesOpenConnections() async throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = directory.appendingPathComponent("creditd.json")
        try Data(#"{"idle_timeout": 0}"#.utf8).write(to: config)
        let daemon = try DaemonProcess.start(arguments: ["--config", config.path], directory: directory)
        let idle = try (0..<3).map { _ in try RawTTRPCConnection(path: daemon.socketPath) }
        defer { for connection in idle { connection.close() } }

        try Data(#"{"idle_timeout": 1, "max_connections_per_uid": 50}"#.utf8).write(to: config)
        let client = try await CreditClient.connect(socketPath: daemon.socketPath)
        let answer = try await client.reload()
        await client.close()
        XCTAssertEqual(answer.message, "configuration reloaded from \(config.path); applied: "
            + "idle_timeout 0 -> 1, max_connections_per_uid 64 -> 50")

        let deadline = Date().addingTimeInterval(15)
        var open = idle.count
        while open > 0, Date() < deadline {
            try await Task.sleep(for: .milliseconds(200))
            open = idle.filter { !AbuseTests.isClosedByPeer($0) }.count
        }
        XCTAssertEqual(open, 0, "connections opened while the idle timeout was off are closed once idle for the new one")
        XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)
    }

    func testReloadWithoutAConfigFileSaysSo() async throws {
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let daemon = try DaemonProcess.start(directory: directory)
        let client = try await CreditClient.connect(socketPath: daemon.socketPath)
        let answer = try await client.reload()
        XCTAssertEqual(answer.message, "configuration reloaded without a configuration file "
            + "(no --config and no $CONFIGURATION_DIRECTORY): built-in defaults and flags apply; nothing changed")
        await client.close()
        // creditctl takes the common -o here too: the answer as a JSON document.
        let json = try CreditctlProcess.run(["-o", "json", "reload", "-s", daemon.socketPath])
        XCTAssertEqual(json.status, 0, json.stderr)
        XCTAssertEqual(json.stdout, "{\"message\":\"\(answer.message)\"}\n")
        XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)
    }
}
