#if canImport(Glibc)
import Glibc
#endif
import CreditProto
import CreditStore
import SwiftProtobuf

/// Writes creditd state directories without the RPC round trips: journal records in the
/// daemon's own format (CreditStore's segments holding `creditd.journal.v1.JournalEntry`
/// messages, exactly what the daemon journals for the same calls). The daemon replays them at
/// start, so the resulting ledger is the one the real RPCs would have built.
enum StateBuilder {
    /// 2025-04-10T12:00:00Z: every record is at this instant (mid-period for the seat credits).
    static let instantNanos: Int64 = 1_744_286_400 * 1_000_000_000
    /// Seats at creation; then one decrease per credit.
    static let initialSeats: Int64 = 10
    static let creditsPerSubscription = 5
    /// Seats of a credit subscription once built.
    static var builtSeats: Int64 { initialSeats - Int64(creditsPerSubscription) }

    static func creditSubscriptionID(_ index: Int) -> String { "s" + padded(index) }
    static func cancelSubscriptionID(_ index: Int) -> String { "c" + padded(index) }
    /// Ids no built state holds, for CreateSubscription calls.
    static func newSubscriptionID(_ index: Int) -> String { "n" + padded(index) }

    private static func padded(_ value: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, 7 - digits.count)) + digits
    }

    /// The customer of subscription `id`: one for the whole state (the default), or one per
    /// subscription, which makes the book's customer map as large as the book.
    static func customer(of id: String, ownCustomer: Bool) -> String {
        ownCustomer ? "customer-" + id : "bench-customer"
    }

    static func createRequest(id: String, ownCustomer: Bool = false) -> Creditd_V1_CreateSubscriptionRequest {
        var request = Creditd_V1_CreateSubscriptionRequest()
        request.subscriptionID = id
        request.customer = customer(of: id, ownCustomer: ownCustomer)
        request.plan = "team"
        request.seats = initialSeats
        request.unitPriceMinor = 1000
        request.currency = "USD"
        request.interval = .monthly
        request.timeZone = "UTC"
        request.refundPolicy = .anytime
        return request
    }

    static func seatsRequest(id: String, seats: Int64) -> Creditd_V1_ChangeSeatsRequest {
        var request = Creditd_V1_ChangeSeatsRequest()
        request.subscriptionID = id
        request.newSeats = seats
        request.timing = .now
        return request
    }

    private static func entry(_ fill: (inout Creditd_Journal_V1_JournalEntry) -> Void) throws -> [UInt8] {
        var entry = Creditd_Journal_V1_JournalEntry()
        entry.atUnixNanos = instantNanos
        entry.callerUid = getuid()
        // 0: replay with the daemon's configured seat maximum.
        entry.maxSeats = 0
        fill(&entry)
        return try entry.serializedBytes()
    }

    /// The journal record of one ChangeSeats call, as the daemon writes it (payload only).
    static func seatChangeRecord(id: String, seats: Int64) throws -> [UInt8] {
        try entry { $0.changeSeats = seatsRequest(id: id, seats: seats) }
    }

    /// `creditSubscriptions` subscriptions with `creditsPerSubscription` credits each (a create
    /// and one seat decrease per credit), plus `plainSubscriptions` with no credit; each with a
    /// customer of its own when `ownCustomers`. Returns the number of records written.
    static func build(directory: String, creditSubscriptions: Int, plainSubscriptions: Int,
                      ownCustomers: Bool = false) async throws -> Int {
        let (store, _) = try DurableStore.open(directory: directory)
        var last: UInt64 = 0
        var records = 0
        for index in 0..<creditSubscriptions {
            let id = creditSubscriptionID(index)
            last = try store.append(try entry { $0.createSubscription = createRequest(id: id, ownCustomer: ownCustomers) })
            for step in 1...creditsPerSubscription {
                last = try store.append(try seatChangeRecord(id: id, seats: initialSeats - Int64(step)))
            }
            records += 1 + creditsPerSubscription
            // Keep the writer's queue short: wait now and then.
            if index % 20_000 == 19_999 { try await store.waitDurable(upTo: last) }
        }
        for index in 0..<plainSubscriptions {
            last = try store.append(try entry { $0.createSubscription = createRequest(id: cancelSubscriptionID(index), ownCustomer: ownCustomers)
            })
            records += 1
            if index % 100_000 == 99_999 { try await store.waitDurable(upTo: last) }
        }
        if last > 0 { try await store.waitDurable(upTo: last) }
        await store.close()
        return records
    }

    /// Appends `count` seat decreases (one more credit each) to credit subscriptions 0, 1, ...
    /// after whatever the directory holds (e.g. after a snapshot).
    static func appendSeatDecreases(directory: String, subscriptions: Int, count: Int) async throws {
        let (store, _) = try DurableStore.open(directory: directory)
        var last: UInt64 = 0
        for index in 0..<count {
            let pass = Int64(index / subscriptions)
            let seats = builtSeats - 1 - pass
            guard seats >= 1 else { throw BenchError("too many seat decreases per subscription") }
            last = try store.append(try seatChangeRecord(id: creditSubscriptionID(index % subscriptions), seats: seats))
            if index % 100_000 == 99_999 { try await store.waitDurable(upTo: last) }
        }
        if last > 0 { try await store.waitDurable(upTo: last) }
        await store.close()
    }
}
