import CreditProto
import CreditWire
import Foundation
import SwiftProtobuf
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Garbage on the socket (docs/wire-protocol.md §4: "creditd never crashes, never stops reading other
/// streams, and never changes state because of a malformed frame"), end to end: many
/// connections of random bytes, random frames and random payloads to every method, then the
/// daemon must still answer and its state, live and after a restart, must be unchanged.
final class FuzzRegressionTests: XCTestCase {
    /// Deterministic bytes, so a failure reproduces with the same traffic.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return state
        }
        mutating func bytes(_ count: Int) -> [UInt8] {
            (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) }
        }
    }

    static let methods: [(String, String)] = [
        ("creditd.v1.Credits", "CreateSubscription"), ("creditd.v1.Credits", "GetSubscription"),
        ("creditd.v1.Credits", "ListSubscriptions"), ("creditd.v1.Credits", "CancelSubscription"),
        ("creditd.v1.Credits", "ResumeSubscription"), ("creditd.v1.Credits", "ChangeSeats"),
        ("creditd.v1.Credits", "GetRefundStatus"), ("creditd.v1.Credits", "ListInvoices"),
        ("creditd.v1.Credits", "RecordRefundOutcome"), ("creditd.v1.Admin", "GetStats"),
        ("creditd.v1.Admin", "GetClock"), ("creditd.v1.Admin", "GetMetrics"),
        ("grpc.health.v1.Health", "Check"), ("grpc.health.v1.Health", "Watch"),
        ("creditd.v9.Nope", "Check"), ("", ""),
    ]

    /// Everything a reader can see of the state, as raw response bytes.
    private func fingerprint(_ socket: String) throws -> [[UInt8]] {
        let c = try RawTTRPCConnection(path: socket)
        defer { c.close() }
        var id: UInt32 = 1
        func read(_ method: String, _ message: some SwiftProtobuf.Message) throws -> [UInt8] {
            defer { id += 2 }
            return try c.call(id: id, service: "creditd.v1.Credits", method: method, payload: try message.serializedBytes()).get()
        }
        var get = Creditd_V1_GetSubscriptionRequest()
        get.subscriptionID = "acme-1"
        var refunds = Creditd_V1_GetRefundStatusRequest()
        refunds.subscriptionID = "acme-1"
        var invoices = Creditd_V1_ListInvoicesRequest()
        invoices.subscriptionID = "acme-1"
        return [
            try read("GetSubscription", get),
            try read("GetRefundStatus", refunds),
            try read("ListInvoices", invoices),
            try read("ListSubscriptions", Creditd_V1_ListSubscriptionsRequest()),
        ]
    }

    /// One connection's worth of garbage, of one of four kinds.
    private func garbage(_ random: inout Generator) -> [UInt8] {
        var out: [UInt8] = []
        switch Int.random(in: 0..<4, using: &random) {
        case 0:
            out = random.bytes(Int.random(in: 0...4096, using: &random))
        case 1:
            for _ in 0..<Int.random(in: 1...16, using: &random) {
                let data = random.bytes(Int.random(in: 0...256, using: &random))
                out += RawTTRPCConnection.encodeFrame(
                    id: UInt32.random(in: 0...9, using: &random) | (Bool.random(using: &random) ? 0 : 0x8000_0000),
                    type: UInt8.random(in: 0...4, using: &random), flags: UInt8.random(in: 0...255, using: &random),
                    data: data)
            }
        case 2:
            var id: UInt32 = 1
            for _ in 0..<Int.random(in: 1...16, using: &random) {
                let (service, method) = Self.methods[Int.random(in: 0..<Self.methods.count, using: &random)]
                let envelope = RawTTRPCConnection.requestBytes(
                    service: service, method: method, payload: random.bytes(Int.random(in: 0...64, using: &random)),
                    timeoutNano: Int64.random(in: -1...1_000_000_000, using: &random),
                    metadata: [(String(decoding: random.bytes(3), as: UTF8.self), "v")])
                out += RawTTRPCConnection.encodeFrame(id: id, type: 1, flags: UInt8.random(in: 0...3, using: &random), data: envelope)
                if Bool.random(using: &random) {
                    out += RawTTRPCConnection.encodeFrame(id: id, type: 3, flags: UInt8.random(in: 0...7, using: &random),
                                                          data: random.bytes(Int.random(in: 0...8, using: &random)))
                }
                id += UInt32.random(in: 0...2, using: &random)
            }
        default:
            // A header that promises more than ever comes (oversize or merely truncated).
            let declared = Bool.random(using: &random) ? UInt32(5 << 20) : UInt32.random(in: 1...4096, using: &random)
            out = RawTTRPCConnection.encodeFrame(id: 1, type: 1, data: random.bytes(Int.random(in: 0...512, using: &random)),
                                                 declaredLength: declared)
        }
        return out
    }

    /// Half-closes and reads until the daemon closes, so every byte has been processed.
    /// Returns how many bytes the daemon answered with.
    private func drain(_ c: RawTTRPCConnection) -> Int {
        shutdown(c.fd, Int32(SHUT_WR))
        c.setReceiveTimeout(5)
        var buffer = [UInt8](repeating: 0, count: 4096)
        var total = 0
        while true {
            let got = buffer.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, $0.count, 0) }
            if got > 0 {
                total += got
                continue
            }
            if got < 0 && errno == EINTR { continue }
            return total
        }
    }

    func testDaemonSurvivesRandomGarbageWithStateIntact() throws {
        let daemon = try DaemonProcess.start(arguments: ["--clock", "manual", "--now", "2025-04-01T09:00:00Z"])
        try createSubscription(daemon.socketPath)
        let before = try fingerprint(daemon.socketPath)

        var random = Generator(state: 0x9E37_79B9_7F4A_7C15)
        // A few connections stay open with partial frames while the others come and go.
        var held: [RawTTRPCConnection] = []
        var answered = 0
        for round in 0..<300 {
            let c = try RawTTRPCConnection(path: daemon.socketPath)
            // The daemon may close a connection mid-garbage; that is an allowed answer.
            try? c.send(garbage(&random))
            if round % 50 == 0 {
                held.append(c)
            } else if round % 3 == 0 {
                c.close()
            } else {
                answered += drain(c)
                c.close()
            }
        }
        XCTAssertGreaterThan(answered, 0, "the daemon answered none of the garbage")
        let live = try RawTTRPCConnection(path: daemon.socketPath)
        XCTAssertEqual(try live.healthCheck(id: 1), .serving)
        for c in held { c.close() }
        XCTAssertEqual(try fingerprint(daemon.socketPath), before, "garbage changed the state")
        XCTAssertEqual(try live.healthCheck(id: 3), .serving)
        live.close()

        XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)
        let restarted = try DaemonProcess.start(arguments: ["--clock", "manual", "--now", "2025-04-01T09:00:00Z"],
                                                directory: daemon.directory)
        XCTAssertEqual(try fingerprint(restarted.socketPath), before, "garbage changed the durable state")
        XCTAssertEqual(try restarted.stop(), 0, restarted.stderr)
    }

    /// FuzzDispatch, seed "far-future": Admin/AdvanceClock to the last representable instant
    /// made the renewal loop run forever (billing dates past April 2262 saturate to that
    /// instant) until a trap killed the daemon.
    func testAdvanceClockToTheLastInstantKeepsServing() throws {
        let daemon = try DaemonProcess.start(arguments: ["--clock", "manual", "--now", "2025-04-01T09:00:00Z"])
        try createSubscription(daemon.socketPath)
        let c = try RawTTRPCConnection(path: daemon.socketPath, receiveTimeout: 60)
        var advance = Creditd_V1_AdvanceClockRequest()
        advance.toUnixNanos = .max
        let answer = try Creditd_V1_AdvanceClockResponse(serializedBytes: try c.call(
            id: 1, service: "creditd.v1.Admin", method: "AdvanceClock", payload: try advance.serializedBytes()).get())
        XCTAssertEqual(answer.now, "2262-04-11T23:47:16.854775807Z")
        XCTAssertGreaterThan(answer.transitions, 2_800, "monthly renewals up to April 2262")
        XCTAssertEqual(try c.healthCheck(id: 3), .serving)
        var get = Creditd_V1_GetSubscriptionRequest()
        get.subscriptionID = "acme-1"
        let subscription = try Creditd_V1_GetSubscriptionResponse(serializedBytes: try c.call(
            id: 5, service: "creditd.v1.Credits", method: "GetSubscription", payload: try get.serializedBytes()).get()).subscription
        XCTAssertEqual(subscription.currentPeriod.periodStart, "2262-04-01")
        c.close()
        XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)
        // The journaled tick replays at start-up without looping either.
        let restarted = try DaemonProcess.start(arguments: ["--clock", "manual"], directory: daemon.directory)
        XCTAssertEqual(try restarted.stop(), 0, restarted.stderr)
    }

    /// acme-1: 10 seats of 10.00 USD a month, then 7.
    private func createSubscription(_ socket: String) throws {
        var create = Creditd_V1_CreateSubscriptionRequest()
        create.subscriptionID = "acme-1"
        create.customer = "acme"
        create.seats = 10
        create.unitPriceMinor = 1000
        create.currency = "USD"
        create.interval = .monthly
        create.timeZone = "Europe/Oslo"
        let c = try RawTTRPCConnection(path: socket)
        defer { c.close() }
        _ = try c.call(id: 1, service: "creditd.v1.Credits", method: "CreateSubscription",
                       payload: try create.serializedBytes()).get()
        var seats = Creditd_V1_ChangeSeatsRequest()
        seats.subscriptionID = "acme-1"
        seats.newSeats = 7
        _ = try c.call(id: 3, service: "creditd.v1.Credits", method: "ChangeSeats", payload: try seats.serializedBytes()).get()
    }
}
