import CreditPostgresStore
import CreditStore
import CreditTestSupport
import Foundation
import Logging
import XCTest

/// What every `JournalStore` must do, run against the file store and the PostgreSQL store:
/// batches come back from recovery in order with their sequence numbers, and a snapshot (larger
/// than one PostgreSQL chunk) comes back whole with exactly the records after it.
final class StoreConformanceTests: XCTestCase {
    /// Opens a store of one kind, ready to append (a replicated store holds the lease).
    struct Opened {
        var store: any JournalStore
        var recovery: Recovery
        var close: @Sendable () async -> Void
    }

    typealias Opener = @Sendable () async throws -> Opened

    func testFileStore() async throws {
        let directory = try makeTemporaryDirectory("conf").path + "/state"
        try await conformance {
            let (store, recovery) = try DurableStore.open(directory: directory)
            return Opened(store: store, recovery: recovery, close: { await store.close() })
        }
    }

    func testPostgresStore() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let info = try PostgresConnectionInfo(parsing: cluster.connectionInfo)
        try await conformance {
            try await Self.openActive(info)
        }
    }

    /// A database written by schema version 1 (no `creditd_append` function) is brought up to
    /// date when a store opens it, and keeps its journal; so is one of version 2.
    /// A `creditd_schema` table that records no version is not creditd's (it creates the table
    /// and version 1 in one transaction): refused, and nothing recorded in it. Migrating from
    /// "version 0" recorded versions 2 and 3 for tables that did not exist.
    func testPostgresRefusesAnEmptySchemaTableItDidNotCreate() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        _ = try cluster.sql("CREATE TABLE creditd_schema (version int PRIMARY KEY)")
        let info = try PostgresConnectionInfo(parsing: cluster.connectionInfo)
        XCTAssertThrowsError(try PostgresJournalStore.open(info, logger: Self.logger)) { error in
            XCTAssertTrue("\(error)".contains("creditd_schema exists but records no version"), "\(error)")
        }
        XCTAssertEqual(try cluster.sql("SELECT count(*) FROM creditd_schema").trimmingCharacters(in: .whitespacesAndNewlines), "0")
    }

    func testPostgresUpgradesAVersionOneDatabase() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let info = try PostgresConnectionInfo(parsing: cluster.connectionInfo)
        var opened = try await Self.openActive(info)
        let store = opened.store
        XCTAssertEqual(try blocking { try Self.append(store, [[1], [2]], after: 0) }, 2)
        await opened.close()
        _ = try cluster.sql("DROP FUNCTION creditd_append; DELETE FROM creditd_schema WHERE version > 1")

        opened = try await Self.openActive(info)
        XCTAssertEqual(opened.recovery.records.map(\.sequence), [1, 2])
        XCTAssertEqual(try cluster.sql("SELECT max(version) FROM creditd_schema").trimmingCharacters(in: .whitespacesAndNewlines), "3")
        let upgraded = opened.store
        XCTAssertEqual(try blocking { try Self.append(upgraded, [[3]], after: 2) }, 3)
        await opened.close()

        _ = try cluster.sql("DELETE FROM creditd_schema WHERE version > 2")
        opened = try await Self.openActive(info)
        XCTAssertEqual(try cluster.sql("SELECT max(version) FROM creditd_schema").trimmingCharacters(in: .whitespacesAndNewlines), "3")
        XCTAssertTrue(try cluster.sql("SELECT prosrc FROM pg_proc WHERE proname = 'creditd_append'").contains("clock_timestamp()"))
        let again = opened.store
        XCTAssertEqual(try blocking { try Self.append(again, [[4]], after: 3) }, 4)
        await opened.close()
    }

    /// An append that waits for the lease row (the host's own snapshot transaction holds it
    /// FOR SHARE) renews a whole lease from when it holds the row; and once the lease has run
    /// out during such a wait, the append is refused and stores nothing.
    func testPostgresAppendAfterWaitingForTheLeaseRow() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let info = try PostgresConnectionInfo(parsing: cluster.connectionInfo)
        let (store, loop) = try await Self.openHolder(info, node: "holder", lease: .seconds(6))
        // The store still believes it is active; from here only its appends renew the lease.
        loop.cancel()
        await loop.value

        // A 2.5 s wait within a 6 s lease: the renewed lease runs 6 s from the end of the wait.
        var released = try await Self.holdLeaseRow(cluster, for: 2.5)
        XCTAssertEqual(try blocking { try Self.append(store, [[1]], after: 0) }, 1)
        released.wait()
        XCTAssertEqual(try cluster.sql("""
            SELECT (expires_at > clock_timestamp() + interval '4.5 seconds')::text FROM creditd_leader WHERE id = 1
            """).trimmingCharacters(in: .whitespacesAndNewlines), "true", "a whole lease from the end of the wait")

        // 1 s of lease left and a 2.5 s wait: refused, nothing stored.
        _ = try cluster.sql("UPDATE creditd_leader SET expires_at = clock_timestamp() + interval '1 second' WHERE id = 1")
        released = try await Self.holdLeaseRow(cluster, for: 2.5)
        XCTAssertThrowsError(try blocking { try Self.append(store, [[2]], after: 1) }) { error in
            guard error is AppendRefusal else { return XCTFail("\(error)") }
        }
        released.wait()
        XCTAssertEqual(try cluster.sql("SELECT string_agg(sequence::text, ',' ORDER BY sequence) FROM creditd_journal")
            .trimmingCharacters(in: .whitespacesAndNewlines), "1")
        await store.close()
    }

    /// A second store on the same database takes the lease once the first one's expires, and
    /// from then on the first one's appends are refused: nothing of them is stored.
    func testPostgresFencesTheWriterThatLostItsLease() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let info = try PostgresConnectionInfo(parsing: cluster.connectionInfo)
        let (first, firstLoop) = try await Self.openHolder(info, node: "first")
        XCTAssertEqual(try blocking { try Self.append(first, [[1], [2]], after: 0) }, 2)

        // The second store waits as standby while the first holds the lease...
        var options = PostgresStoreOptions()
        options.node = "second"
        options.lease = .seconds(1)
        let (second, recovery) = try PostgresJournalStore.open(info, options: options, logger: Self.logger)
        XCTAssertEqual(recovery.records.map(\.sequence), [1, 2])
        let follower = RecordingFollower()
        let loop = Task { await second.run(after: 2, follower: follower) }
        try await Task.sleep(for: .milliseconds(500))
        XCTAssertEqual(second.replication.role, .standby)
        XCTAssertEqual(try blocking { try Self.append(first, [[3]], after: 2) }, 3)
        try await follower.waitFor { $0.records.last?.sequence == 3 }

        // ...and takes it once it has run out (the first one stands still, as if paused: its
        // loop no longer renews, but it still believes it is active).
        firstLoop.cancel()
        await firstLoop.value
        _ = try cluster.sql("UPDATE creditd_leader SET expires_at = now() WHERE id = 1")
        try await follower.waitFor { $0.promotedEpoch != nil }
        XCTAssertEqual(second.replication.role, .active)
        XCTAssertThrowsError(try blocking { try Self.append(first, [[99]], after: 3) }) { error in
            guard case .fenced = error as? AppendRefusal else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(try blocking { try Self.append(second, [[4]], after: 3) }, 4)
        XCTAssertEqual(try cluster.sql("SELECT string_agg(sequence::text, ',' ORDER BY sequence) FROM creditd_journal")
            .trimmingCharacters(in: .whitespacesAndNewlines), "1,2,3,4")
        loop.cancel()
        await loop.value
        await second.close()
        await first.close()
    }

    /// Two stores that leave `node` to its default, in one process on one host: what two
    /// containers sharing a hostname, each running creditd as pid 1, looked like. Named
    /// `<hostname>:<pid>`, they took the lease from each other in turn (each takes it again when
    /// the row names its own node) and neither could append. Now one holds it, and keeps it.
    func testTwoStoresOfOneHostAndPidElectOneWriterThatKeepsTheLease() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let info = try PostgresConnectionInfo(parsing: cluster.connectionInfo)
        // The default lease: with one name the two took the lease from each other within a
        // standby poll (100 ms), whatever the lease; a longer one keeps a slow machine's late
        // renewal from passing it on.
        let (first, _) = try PostgresJournalStore.open(info, options: PostgresStoreOptions(), logger: Self.logger)
        let (second, _) = try PostgresJournalStore.open(info, options: PostgresStoreOptions(), logger: Self.logger)
        XCTAssertNotEqual(first.options.node, second.options.node)
        XCTAssertTrue(first.options.node.hasPrefix("\(ProcessInfo.processInfo.hostName):\(getpid())."), first.options.node)
        let followers = [RecordingFollower(), RecordingFollower()]
        let loops = [Task { await first.run(after: 0, follower: followers[0]) },
                     Task { await second.run(after: 0, follower: followers[1]) }]
        let end = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < end, first.replication.role != .active, second.replication.role != .active {
            try await Task.sleep(for: .milliseconds(20))
        }
        let epoch = try cluster.sql("SELECT epoch FROM creditd_leader WHERE id = 1")
        // Three seconds later: the same epoch, one active store, and it appends.
        try await Task.sleep(for: .seconds(3))
        XCTAssertEqual(try cluster.sql("SELECT epoch FROM creditd_leader WHERE id = 1"), epoch, "the lease changed hands")
        let roles = [first.replication.role, second.replication.role]
        XCTAssertEqual(roles.filter { $0 == .active }.count, 1, "roles: \(roles)")
        let active = first.replication.role == .active ? first : second
        XCTAssertEqual(try blocking { try Self.append(active, [[1]], after: 0) }, 1)
        for loop in loops { loop.cancel() }
        for loop in loops { await loop.value }
        await first.close()
        await second.close()
    }

    /// A standby names the host writes go to only while it can read the lease: once it has not
    /// for a lease (the database out of reach), the host it last saw may have lost the lease
    /// (and, here, cannot reach the database either), so it names none; it names the holder
    /// again once it reads the lease.
    func testStandbyNamesNoActiveHostWhileItCannotReadTheLease() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let info = try PostgresConnectionInfo(parsing: cluster.connectionInfo)
        let (first, firstLoop) = try await Self.openHolder(info, node: "first", lease: .seconds(1))
        var options = PostgresStoreOptions()
        options.node = "second"
        options.lease = .seconds(1)
        let (second, _) = try PostgresJournalStore.open(info, options: options, logger: Self.logger)
        let follower = RecordingFollower()
        let loop = Task { await second.run(after: 0, follower: follower) }
        try await Self.waitUntil { second.replication.activeHolder == "first" }

        cluster.freeze()
        try await Task.sleep(for: .milliseconds(1_500))
        let whileFrozen = second.replication
        XCTAssertEqual(whileFrozen.role, .standby)
        XCTAssertEqual(whileFrozen.activeHolder, "", "the lease it saw has run out since")
        XCTAssertThrowsError(try blocking { try Self.append(second, [[1]], after: 0) }) { error in
            XCTAssertEqual(error as? AppendRefusal, .fenced(activeHolder: ""))
        }
        cluster.thaw()
        try await Self.waitUntil(timeout: .seconds(15)) {
            let holder = second.replication.activeHolder
            return !holder.isEmpty || second.replication.role == .active
        }
        firstLoop.cancel()
        loop.cancel()
        await firstLoop.value
        await loop.value
        await second.close()
        await first.close()
    }

    /// An active host that loses the database stands by, and its lag counts from when its
    /// state was last known current (its last append or lease renewal: holding the lease, no one
    /// else wrote), not from its last catch-up as a standby before it took the lease: 13.5 s was
    /// reported 3 s into an outage. Here the host appends once, then idles for three leases.
    func testLagAfterStandingDownCountsFromTheLastAppendOrRenewal() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let info = try PostgresConnectionInfo(parsing: cluster.connectionInfo)
        let (store, loop) = try await Self.openHolder(info, node: "first", lease: .seconds(1))
        XCTAssertEqual(try blocking { try Self.append(store, [[1]], after: 0) }, 1)
        try await Task.sleep(for: .seconds(3))
        cluster.freeze()
        try await Self.waitUntil { store.replication.role == .standby }
        let lag = store.replication.lagSeconds
        cluster.thaw()
        // About 2 s (the renewal's 1.5 s limit, then the demotion); counted from the append
        // instead, it is over 4.5 s.
        XCTAssertLessThan(lag, 3.5, "lag \(lag) s: counted from an earlier point than the last renewal")
        loop.cancel()
        await loop.value
        await store.close()
    }

    static func waitUntil(timeout: Duration = .seconds(10), _ condition: () -> Bool) async throws {
        let end = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < end else { return XCTFail("the condition did not hold within \(timeout)") }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// A takeover that had to wait for the lease row (a paused holder's snapshot transaction
    /// holds it FOR SHARE) still gets a whole lease from the moment it takes over. By the
    /// transaction's start time, the expiry it set was already past when the wait ended, and the
    /// paused host, once resumed, took the lease straight back.
    func testTakeoverAfterWaitingForTheLeaseRowGetsAWholeLease() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let info = try PostgresConnectionInfo(parsing: cluster.connectionInfo)
        let (first, firstLoop) = try await Self.openHolder(info, node: "first")
        firstLoop.cancel()
        await firstLoop.value

        // The lease has run out, and another session holds its row, as the first host's
        // snapshot transaction would while the host is paused.
        _ = try cluster.sql("UPDATE creditd_leader SET expires_at = now() WHERE id = 1")
        let held = try await Self.holdLeaseRow(cluster, for: 2.5)
        var options = PostgresStoreOptions()
        options.node = "second"
        options.lease = .seconds(1)
        let (second, _) = try PostgresJournalStore.open(info, options: options, logger: Self.logger)
        let follower = RecordingFollower()
        let loop = Task { await second.run(after: 0, follower: follower) }
        try await follower.waitFor { $0.promotedEpoch != nil }
        held.wait()
        let row = try cluster.sql("""
            SELECT holder || ' ' || (expires_at > clock_timestamp() + interval '500 milliseconds')::text
            FROM creditd_leader WHERE id = 1
            """).trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertEqual(row, "second true", "the new holder's lease runs a whole lease from the takeover")
        loop.cancel()
        await loop.value
        await second.close()
        await first.close()
    }

    // MARK: the contract

    private func conformance(_ open: Opener) async throws {
        var opened = try await open()
        XCTAssertNil(opened.recovery.snapshot)
        XCTAssertEqual(opened.recovery.records, [])
        XCTAssertEqual(opened.recovery.nextSequence, 1)
        let store = opened.store
        XCTAssertEqual(try blocking { try Self.append(store, [[1], [2, 2], [3, 3, 3]], after: 0) }, 3)
        XCTAssertEqual(try blocking { try Self.append(store, [], after: 3) }, 3)
        XCTAssertEqual(try blocking { try Self.append(store, [[4]], after: 3) }, 4)
        XCTAssertEqual(store.stats.lastDurableSequence, 4)
        await opened.close()

        opened = try await open()
        XCTAssertEqual(opened.recovery.records, [
            JournalRecord(sequence: 1, payload: [1]), JournalRecord(sequence: 2, payload: [2, 2]),
            JournalRecord(sequence: 3, payload: [3, 3, 3]), JournalRecord(sequence: 4, payload: [4]),
        ])
        XCTAssertEqual(opened.recovery.nextSequence, 5)
        // 2.5 MiB: several chunks in PostgreSQL.
        let big = (0..<(5 << 19)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        // Encoding yields the cores to serving: it runs at the snapshot priority.
        let encodedAt = LockedResult<Int32>()
        let info = try await opened.store.writeSnapshot(sequence: 4) {
            encodedAt.set(.success(SnapshotPriority.currentThreadNiceness()))
            return big
        }
        XCTAssertEqual(try encodedAt.get(), SnapshotPriority.niceness)
        XCTAssertEqual(info.sequence, 4)
        let reopenedStore = opened.store
        XCTAssertEqual(try blocking { try Self.append(reopenedStore, [[5]], after: 4) }, 5)
        await opened.close()

        opened = try await open()
        XCTAssertEqual(opened.recovery.snapshot?.sequence, 4)
        XCTAssertEqual(opened.recovery.snapshot?.payload, big)
        XCTAssertEqual(opened.recovery.records, [JournalRecord(sequence: 5, payload: [5])])
        XCTAssertEqual(opened.recovery.nextSequence, 6)
        await opened.close()
    }

    // MARK: helpers

    static let logger = Logger(label: "test")

    /// Opens a PostgreSQL store and runs its loop until it holds the lease.
    static func openActive(_ info: PostgresConnectionInfo) async throws -> Opened {
        var options = PostgresStoreOptions()
        options.lease = .seconds(1)
        let (store, recovery) = try PostgresJournalStore.open(info, options: options, logger: logger)
        let follower = RecordingFollower()
        let loop = Task { await store.run(after: recovery.nextSequence - 1, follower: follower) }
        try await follower.waitFor { $0.promotedEpoch != nil }
        return Opened(store: store, recovery: recovery, close: {
            loop.cancel()
            await loop.value
            await store.close()
        })
    }

    /// A store named `node` on an empty database, with its loop running until it holds the lease.
    static func openHolder(_ info: PostgresConnectionInfo, node: String, lease: Duration? = nil) async throws
        -> (PostgresJournalStore, Task<Void, Never>) {
        var options = PostgresStoreOptions()
        options.node = node
        if let lease { options.lease = lease }
        let (store, _) = try PostgresJournalStore.open(info, options: options, logger: logger)
        let follower = RecordingFollower()
        let loop = Task { await store.run(after: 0, follower: follower) }
        try await follower.waitFor { $0.promotedEpoch != nil }
        return (store, loop)
    }

    /// Holds the lease row FOR SHARE from another session for `seconds`, as a host's snapshot
    /// transaction does; returns once the lock is held, with a semaphore signalled when it is
    /// released.
    static func holdLeaseRow(_ cluster: PostgresCluster, for seconds: Double) async throws -> DispatchSemaphore {
        let released = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            _ = try? cluster.sql("BEGIN; SELECT 1 FROM creditd_leader WHERE id = 1 FOR SHARE; SELECT pg_sleep(\(seconds)); COMMIT;")
            released.signal()
        }
        let lockQuery = """
            SELECT count(*) FROM pg_locks JOIN pg_class ON pg_locks.relation = pg_class.oid
            WHERE pg_class.relname = 'creditd_leader' AND pg_locks.mode = 'RowShareLock'
            """
        while try cluster.sql(lockQuery).trimmingCharacters(in: .whitespacesAndNewlines) == "0" {
            try await Task.sleep(for: .milliseconds(20))
        }
        return released
    }

    /// Runs a blocking store call on a thread of its own (as the ledger writer does).
    /// `appendDurably`, checking its promise about `whenDurable`: it ran exactly once, with the
    /// sequence number returned, before the call returned; and not at all when the call threw.
    private static func append(_ store: any JournalStore, _ payloads: [[UInt8]], after last: UInt64) throws -> UInt64 {
        let reported = LockedResult<[UInt64]>()
        reported.set(.success([]))
        do {
            let returned = try store.appendDurably(payloads, after: last) { sequence in
                reported.update { $0 + [sequence] }
            }
            XCTAssertEqual(try reported.get(), [returned], "whenDurable runs once, before appendDurably returns")
            return returned
        } catch {
            XCTAssertEqual(try reported.get(), [], "whenDurable does not run when appendDurably throws")
            throw error
        }
    }

    private func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        let result = LockedResult<T>()
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            result.set(Result { try body() })
            done.signal()
        }
        done.wait()
        return try result.get()
    }
}

final class LockedResult<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<T, any Error>?
    func set(_ result: Result<T, any Error>) { lock.withLock { value = result } }
    func get() throws -> T { try lock.withLock { value! }.get() }
    func update(_ change: (T) -> T) { lock.withLock { value = value.map { $0.map(change) } } }
}

/// Remembers what a store's loop told it.
final class RecordingFollower: ReplicationFollower, @unchecked Sendable {
    struct Seen {
        var records: [JournalRecord] = []
        var promotedEpoch: UInt64?
        var demotions: [String] = []
    }

    private let lock = NSLock()
    private var seen = Seen()

    func replicate(_ records: [JournalRecord]) { lock.withLock { seen.records += records } }
    func restore(_ snapshot: RecoveredSnapshot) { lock.withLock { seen.records = [] } }
    func promote(epoch: UInt64) { lock.withLock { seen.promotedEpoch = epoch } }
    func demote(activeHolder: String) { lock.withLock { seen.demotions.append(activeHolder) } }

    func waitFor(timeout: Duration = .seconds(10), _ condition: (Seen) -> Bool) async throws {
        let end = ContinuousClock.now + timeout
        while ContinuousClock.now < end {
            if lock.withLock({ condition(seen) }) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        XCTFail("the store's loop did not get there within \(timeout): \(lock.withLock { seen })")
        throw CancellationError()
    }
}
