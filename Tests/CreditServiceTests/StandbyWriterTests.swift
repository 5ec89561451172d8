import CreditDomain
import CreditProto
import CreditStore
import Foundation
import Logging
import Synchronization
import XCTest

@testable import CreditService

/// The ledger writer on a shared store, with a scripted store in place of PostgreSQL: a standby
/// refuses writes and replays what it is handed, a promotion lets it write, and a refused append
/// rolls it back to its last durable point and makes it a standby again (not a sticky fault).
final class StandbyWriterTests: XCTestCase {
    static let start = Instant(rfc3339: "2025-04-01T09:00:00Z")!

    /// Appends succeed until `refusal` is set; records what was appended.
    final class ScriptedStore: ReplicatedJournalStore, @unchecked Sendable {
        let lock = NSLock()
        var refusal: AppendRefusal?
        var appended: [[UInt8]] = []
        var resynchronizedAfter: [UInt64] = []

        func appendDurably(_ payloads: [[UInt8]], after lastSequence: UInt64,
                           whenDurable: @escaping @Sendable (UInt64) -> Void) throws -> UInt64 {
            let last = try lock.withLock {
                if let refusal { throw refusal }
                appended += payloads
                return lastSequence + UInt64(payloads.count)
            }
            whenDurable(last)
            return last
        }
        func writeSnapshot(sequence: UInt64, encode: @escaping @Sendable () throws -> any SnapshotPayload) async throws -> SnapshotInfo {
            SnapshotInfo(sequence: sequence, name: "scripted", bytes: Int64(try encode().joined().count), unixMillis: 0)
        }
        var stats: StoreStats {
            StoreStats(lastSequence: 0, lastDurableSequence: 0, lastSnapshotSequence: nil, lastSnapshotUnixMillis: nil,
                       snapshotsWritten: 0, commits: 0, recordsWritten: 0)
        }
        var fault: StoreFault? { nil }
        var location: String { "scripted" }
        func close() async {}
        /// Names the holder its refusal names, as the PostgreSQL store does (both come from
        /// the lease row it last read).
        var replication: ReplicationStatus {
            lock.withLock {
                guard case .fenced(let holder) = refusal else { return ReplicationStatus(role: .standby) }
                return ReplicationStatus(role: .standby, activeHolder: holder)
            }
        }
        func run(after sequence: UInt64, follower: any ReplicationFollower) async {}
        func resynchronize(after sequence: UInt64) { lock.withLock { resynchronizedAfter.append(sequence) } }
    }

    func makeWriter(_ store: ScriptedStore) -> LedgerWriter {
        let writer = LedgerWriter(ledger: Ledger(), store: store, clock: DaemonClock(mode: .manual, start: Self.start),
                                  lastSequence: 0, snapshotPolicy: .init(everyRecords: 1_000_000, interval: .seconds(86_400)),
                                  logger: Logger(label: "test"), startsActive: false)
        writer.start()
        return writer
    }

    static func record(_ sequence: UInt64, creating id: String) throws -> JournalRecord {
        let entry = JournalEntry.command(LedgerWriterTests.create(id), at: start, callerUID: 0, maxSeats: 0)
        return JournalRecord(sequence: sequence, payload: try entry.encoded(requestBytes: nil))
    }

    func testStandbyRefusesWritesReplaysThenWritesOncePromoted() async throws {
        let store = ScriptedStore()
        let writer = makeWriter(store)
        do {
            _ = try await writer.execute(LedgerWriterTests.create("a"), callerUID: 0)
            XCTFail("a standby took a write")
        } catch {
            XCTAssertEqual(error, .notActive(activeHolder: ""))
        }
        await writer.replicate([try Self.record(1, creating: "r1"), try Self.record(2, creating: "r2")])
        await writer.replicate([try Self.record(2, creating: "r2")])  // seen again: skipped
        writer.promote(epoch: 7)
        let executed = try await writer.execute(LedgerWriterTests.create("a"), callerUID: 0)
        XCTAssertNotNil(executed.subscription)
        XCTAssertEqual(writer.committed.sequence, 3)
        XCTAssertEqual(writer.committed.ledger.subscriptionCount, 3)
        XCTAssertEqual(store.lock.withLock { store.appended.count }, 1)
        await writer.close()
    }

    func testRefusedAppendRollsBackAndStandsByInsteadOfFaulting() async throws {
        let store = ScriptedStore()
        let writer = makeWriter(store)
        writer.promote(epoch: 1)
        _ = try await writer.execute(LedgerWriterTests.create("kept"), callerUID: 0)
        store.lock.withLock { store.refusal = .fenced(activeHolder: "other:1") }
        do {
            _ = try await writer.execute(LedgerWriterTests.create("lost"), callerUID: 0)
            XCTFail("a fenced append was acknowledged")
        } catch {
            XCTAssertEqual(error, .notActive(activeHolder: "other:1"))
        }
        XCTAssertNil(writer.persistenceFault)
        XCTAssertFalse(writer.isActive)
        XCTAssertEqual(store.lock.withLock { store.resynchronizedAfter }, [1])
        // The other host's record 2 replays over the rolled-back state: "lost" never existed.
        await writer.replicate([try Self.record(2, creating: "theirs")])
        await writer.ping()
        XCTAssertEqual(writer.committed.sequence, 2)
        XCTAssertNoThrow(try writer.committed.ledger.subscription(id: "theirs"))
        XCTAssertNoThrow(try writer.committed.ledger.subscription(id: "kept"))
        XCTAssertThrowsError(try writer.committed.ledger.subscription(id: "lost"))
        // Promoted again, it writes after the other host's record.
        store.lock.withLock { store.refusal = nil }
        writer.promote(epoch: 3)
        _ = try await writer.execute(LedgerWriterTests.create("again"), callerUID: 0)
        XCTAssertEqual(writer.committed.sequence, 3)
        XCTAssertThrowsError(try writer.committed.ledger.subscription(id: "lost"))
        await writer.close()
    }

    /// The roll back goes to an earlier durable point and replays what became durable since:
    /// replicated records, own appends and the batches past a refresh of that point, exactly.
    func testRollBackReplaysEverythingDurableSinceItsPoint() async throws {
        let store = ScriptedStore()
        let writer = makeWriter(store)
        await writer.replicate([try Self.record(1, creating: "r1"), try Self.record(2, creating: "r2")])
        writer.promote(epoch: 1)
        var durable = ["r1", "r2"]
        // More than one refresh of the point, in batches of a few records each.
        let writes = LedgerWriter.rollbackRefreshRecords + 300
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<writes {
                group.addTask { _ = try await writer.execute(LedgerWriterTests.create("w\(index)"), callerUID: 0) }
                if index % 16 == 15 { try await group.waitForAll() }
            }
            try await group.waitForAll()
        }
        durable += (0..<writes).map { "w\($0)" }
        let before = writer.committed.ledger
        store.lock.withLock { store.refusal = .unavailable("gone", outcome: .notApplied) }
        do {
            _ = try await writer.execute(LedgerWriterTests.create("lost"), callerUID: 0)
            XCTFail("a refused append was acknowledged")
        } catch {
            XCTAssertEqual(error, .storeUnavailable("gone", outcome: .notApplied))
        }
        await writer.replicate([try Self.record(UInt64(durable.count + 1), creating: "theirs")])
        await writer.ping()
        let after = writer.committed.ledger
        XCTAssertEqual(after.subscriptionCount, durable.count + 1)
        XCTAssertEqual(Set(after.subscriptions.map(\.id)), Set(durable + ["theirs"]))
        for id in ["r1", "w0", "w\(writes - 1)"] {
            XCTAssertEqual(try after.subscription(id: id), try before.subscription(id: id))
        }
        await writer.close()
    }

    /// A standby far behind: `replicate` returns at once while few records wait in the inbox,
    /// waits once more than `standbyBacklogLimit` do, and goes on when the writer takes them.
    func testReplicateWaitsWhileTheStandbyBacklogIsFull() async throws {
        let store = ScriptedStore()
        let writer = makeWriter(store)
        // Hold the writer thread in a reply, so that nothing leaves the inbox meanwhile.
        let entered = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        writer.submit(.init(command: LedgerWriterTests.create("held"), callerUID: 0) { _ in
            entered.signal()
            release.wait()
        })
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                entered.wait()
                continuation.resume()
            }
        }
        let page = LedgerWriter.standbyBacklogLimit / 2 + 1
        func records(from first: Int) throws -> [JournalRecord] {
            try (first..<first + page).map { try Self.record(UInt64($0), creating: "r\($0)") }
        }
        await writer.replicate(try records(from: 1))    // under the limit: no wait
        let second = try records(from: 1 + page)
        let started = Mutex(false), returned = Mutex(false)
        let waiting = Task {
            started.withLock { $0 = true }
            await writer.replicate(second)                // over the limit: waits for the writer
            returned.withLock { $0 = true }
        }
        while !started.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(5)) }
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertFalse(returned.withLock { $0 }, "replicate returned while the backlog was over its limit")
        release.signal()
        await waiting.value
        XCTAssertTrue(returned.withLock { $0 })
        await writer.ping()
        XCTAssertEqual(writer.committed.sequence, UInt64(2 * page))
        XCTAssertEqual(writer.committed.ledger.subscriptionCount, 2 * page)
        await writer.close()
    }
}
