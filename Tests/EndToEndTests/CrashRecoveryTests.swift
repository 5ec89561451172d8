import CreditClient
import CreditDomain
import CreditProto
import CreditWire
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// `kill -9` at random moments under concurrent writes: after every restart,
/// every acknowledged change is there and the state equals a replay of the
/// acknowledged history through the domain (plus, at most, the one change per
/// writer that was in flight when the daemon died).
///
/// CREDITD_CRASH_CYCLES sets the number of kills (default 50; more for a soak).
final class CrashRecoveryTests: XCTestCase {
    static let start = "2025-04-01T09:00:00Z"
    static let startInstant = Instant(secondsSinceEpoch: 1_743_498_000)

    /// What a writer was told: the commands acknowledged per subscription, in order.
    struct History: Sendable {
        var acknowledged: [String: [Command]] = [:]
        var inFlight: [String: Command] = [:]
    }

    func testKillNineNeverLosesAcknowledgedChanges() async throws {
        let cycles = Int(ProcessInfo.processInfo.environment["CREDITD_CRASH_CYCLES"] ?? "") ?? 50
        let directory = try DaemonProcess.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        // Small segments and frequent snapshots so that recovery crosses both.
        let arguments = ["--clock", "manual", "--now", Self.start, "--snapshot-every-records", "150",
                         "--journal-segment-bytes", "65536"]
        var history = History()
        var generator = SystemRandomNumberGenerator()

        for cycle in 0..<cycles {
            let daemon = try DaemonProcess.start(arguments: arguments, directory: directory)
            try await verify(history: &history, socketPath: daemon.socketPath, cycle: cycle)

            let writers = 4
            let killAfter = Duration.milliseconds(Int64.random(in: 30...250, using: &generator))
            let results = await withTaskGroup(of: History.self) { group in
                for writer in 0..<writers {
                    group.addTask {
                        await Self.write(socketPath: daemon.socketPath, writer: writer, cycle: cycle, until: killAfter)
                    }
                }
                try? await Task.sleep(for: killAfter)
                daemon.kill()
                var merged: [History] = []
                for await result in group { merged.append(result) }
                return merged
            }
            for result in results {
                for (id, commands) in result.acknowledged { history.acknowledged[id, default: []] += commands }
                for (id, command) in result.inFlight { history.inFlight[id] = command }
            }
        }
        let daemon = try DaemonProcess.start(arguments: arguments, directory: directory)
        try await verify(history: &history, socketPath: daemon.socketPath, cycle: cycles)
        XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)
        let acknowledged = history.acknowledged.values.reduce(0) { $0 + $1.count }
        XCTAssertGreaterThan(acknowledged, cycles, "the writers made progress")
        print("crash test: \(cycles) kills, \(acknowledged) acknowledged changes, 0 lost")
    }

    /// One writer: creates its own subscriptions and changes their seats until killed.
    static func write(socketPath: String, writer: Int, cycle: Int, until limit: Duration) async -> History {
        var history = History()
        guard let client = try? await CreditClient.connect(socketPath: socketPath, timeout: .seconds(5)) else { return history }
        defer { Task { await client.close() } }
        var generator = SystemRandomNumberGenerator()
        var mine: [String] = []
        var step = 0
        let deadline = ContinuousClock.now + limit + .seconds(2)
        while ContinuousClock.now < deadline {
            step += 1
            let id: String
            let wire: Command
            do {
                if mine.isEmpty || Int.random(in: 0..<5, using: &generator) == 0 {
                    id = "w\(writer)-c\(cycle)-\(step)"
                    let seats = Int64.random(in: 1...20, using: &generator)
                    var request = Creditd_V1_CreateSubscriptionRequest()
                    request.subscriptionID = id
                    request.seats = seats
                    request.unitPriceMinor = Int64.random(in: 100...5000, using: &generator)
                    request.currency = "EUR"
                    request.interval = Bool.random(using: &generator) ? .monthly : .annual
                    request.timeZone = "Europe/Oslo"
                    wire = .create(CreateSubscriptionRequest(
                        subscriptionId: id, seats: seats, unitPriceMinor: request.unitPriceMinor, currency: "EUR",
                        interval: EnumField(wireValue: Int32(request.interval.rawValue)), timeZone: "Europe/Oslo"))
                    history.inFlight[id] = wire
                    _ = try await client.createSubscription(request)
                    mine.append(id)
                } else {
                    id = mine.randomElement(using: &generator)!
                    if Int.random(in: 0..<12, using: &generator) == 0 {
                        var request = Creditd_V1_CancelSubscriptionRequest()
                        request.subscriptionID = id
                        wire = .cancel(CancelRequest(subscriptionId: id))
                        history.inFlight[id] = wire
                        _ = try await client.cancelSubscription(request)
                        mine.removeAll { $0 == id }
                    } else {
                        var request = Creditd_V1_ChangeSeatsRequest()
                        request.subscriptionID = id
                        request.newSeats = Int64.random(in: 1...20, using: &generator)
                        wire = .changeSeats(ChangeSeatsRequest(subscriptionId: id, newSeats: request.newSeats))
                        history.inFlight[id] = wire
                        _ = try await client.changeSeats(request)
                    }
                }
            } catch {
                // Killed mid-call: this command may or may not have become durable.
                return history
            }
            history.inFlight[id] = nil
            history.acknowledged[id, default: []].append(wire)
        }
        return history
    }

    /// Compares the daemon's state with a replay of the acknowledged history.
    func verify(history: inout History, socketPath: String, cycle: Int) async throws {
        let client = try await CreditClient.connect(socketPath: socketPath)
        defer { Task { await client.close() } }
        let ids = Set(history.acknowledged.keys).union(history.inFlight.keys)
        for id in ids.sorted() {
            let acknowledged = history.acknowledged[id] ?? []
            let expected = Self.replay(acknowledged)
            let withInFlight = history.inFlight[id].map { Self.replay(acknowledged + [$0]) }
            let actual = try await Self.observe(client, id)
            if actual == expected {
                history.inFlight[id] = nil
            } else if let withInFlight, actual == withInFlight {
                // The change in flight at the kill was durable: it is part of history now.
                history.acknowledged[id, default: []].append(history.inFlight[id]!)
                history.inFlight[id] = nil
            } else {
                XCTFail("cycle \(cycle): \(id) is \(String(describing: actual)), expected \(String(describing: expected)) from \(acknowledged.count) acknowledged changes")
                return
            }
        }
    }

    /// What is checked of a subscription: status, seats and every credit's amount and state.
    struct Observed: Equatable, CustomStringConvertible {
        var status: Int32
        var seats: Int64
        var credits: [Int64]
        var invoices: [Int64]
        var description: String { "status \(status), seats \(seats), credits \(credits), invoices \(invoices)" }
    }

    static func replay(_ commands: [Command]) -> Observed? {
        var ledger = Ledger()
        for command in commands {
            _ = ledger.execute(command, at: startInstant, callerUID: getuid(), dryRun: false)
        }
        guard let id = commands.first?.subscriptionId, let subscription = try? ledger.subscription(id: id) else { return nil }
        return Observed(status: subscription.status.rawValue, seats: subscription.seats,
                        credits: subscription.credits.map(\.amountMinor), invoices: subscription.invoices.map(\.totalMinor))
    }

    static func observe(_ client: CreditClient, _ id: String) async throws -> Observed? {
        var get = Creditd_V1_GetSubscriptionRequest()
        get.subscriptionID = id
        let subscription: Creditd_V1_Subscription
        do {
            subscription = try await client.getSubscription(get).subscription
        } catch let error as RPCError where error.code == .notFound {
            return nil
        }
        var refunds = Creditd_V1_GetRefundStatusRequest()
        refunds.subscriptionID = id
        let credits = try await client.getRefundStatus(refunds).credits
        var list = Creditd_V1_ListInvoicesRequest()
        list.subscriptionID = id
        let invoices = try await client.listInvoices(list).invoices
        return Observed(status: Int32(subscription.status.rawValue), seats: subscription.seats,
                        credits: credits.map(\.amountMinor), invoices: invoices.map(\.totalMinor))
    }
}
