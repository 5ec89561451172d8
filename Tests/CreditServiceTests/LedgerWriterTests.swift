import CreditDomain
import CreditProto
import CreditStore
import CreditTestSupport
import CreditWire
import Foundation
import Logging
import Synchronization
import XCTest

@testable import CreditService

/// The ledger writer on real files: replay reproduces the live state, group
/// commit shares fsyncs, and a failed fsync rolls back exactly what was not
/// durable.
final class LedgerWriterTests: XCTestCase {
    var directory: String!
    let logger = Logger(label: "test")
    static let start = Instant(rfc3339: "2025-04-01T09:00:00Z")!

    override func setUpWithError() throws {
        directory = try makeTemporaryDirectory("writer").path
    }

    func open(_ operations: (any FileOperations)? = nil, segmentSize: Int? = nil) throws -> CreditApplication {
        var options = StoreOptions()
        if let operations { options.fileOperations = operations }
        if let segmentSize { options.segmentSize = segmentSize }
        return try CreditApplication(configuration: ApplicationConfiguration(
            stateDirectory: directory, clockMode: .manual, manualStart: Self.start, storeOptions: options), logger: logger)
    }

    static func create(_ id: String, seats: Int64 = 10) -> JournalEntry.WireCommand {
        var request = Creditd_V1_CreateSubscriptionRequest()
        request.subscriptionID = id
        request.seats = seats
        request.unitPriceMinor = 1000
        request.currency = "USD"
        request.interval = .monthly
        request.timeZone = "America/New_York"
        return .create(request)
    }

    static func seats(_ id: String, _ count: Int64, key: String = "") -> JournalEntry.WireCommand {
        var request = Creditd_V1_ChangeSeatsRequest()
        request.subscriptionID = id
        request.newSeats = count
        request.idempotencyKey = key
        return .changeSeats(request)
    }

    static func cancel(_ id: String) -> JournalEntry.WireCommand {
        var request = Creditd_V1_CancelSubscriptionRequest()
        request.subscriptionID = id
        return .cancel(request)
    }

    /// The writer's whole ledger at a durable point (idempotency table included).
    func ledger(_ application: CreditApplication) async throws -> Ledger {
        let capture = try await application.writer.captureForSnapshot()
        application.writer.snapshotFinished()
        return capture.ledger
    }

    /// Closes without a final snapshot: what follows must come from the journal.
    func close(_ application: CreditApplication) async {
        await application.writer.close()
        await application.store.close()
    }

    func testJournalReplayAndSnapshotReproduceTheLiveState() async throws {
        let first = try open()
        let writer = first.writer
        _ = try await writer.execute(Self.create("a"), callerUID: 0)
        _ = try await writer.execute(Self.create("b", seats: 3), callerUID: 0)
        _ = try await writer.advanceClock(to: Instant(rfc3339: "2025-04-11T15:00:00Z")!)
        _ = try await writer.execute(Self.seats("a", 7, key: "k1"), callerUID: 0)
        _ = try await first.takeSnapshot()
        _ = try await writer.execute(Self.cancel("b"), callerUID: 0)
        _ = try await writer.advanceClock(to: Instant(rfc3339: "2025-05-02T00:00:00Z")!)
        let live = try await ledger(first)
        await close(first)  // no final snapshot: the tail must come from the journal

        let second = try open()
        let recovered = try await ledger(second)
        XCTAssertEqual(recovered, live)
        XCTAssertEqual(second.writer.clock.now(), Instant(rfc3339: "2025-05-02T00:00:00Z")!, "the manual clock resumes")
        // A keyed retry after the restart replays instead of changing anything.
        let retry = try await second.writer.execute(Self.seats("a", 7, key: "k1"), callerUID: 0)
        guard case .success(.seatsChanged(let result)) = retry.outcome else { return XCTFail("\(retry.outcome)") }
        XCTAssertEqual(result.outcome, .credit)
        await close(second)
    }

    /// A periodic capture its consumer never took (the scheduler's task was cancelled at
    /// shutdown, the capture dropped with the stream's buffer) does not hold off the final
    /// snapshot: it was refused as "a snapshot is already being written".
    func testAPeriodicCaptureNeverTakenDoesNotRefuseTheFinalSnapshot() async throws {
        let application = try CreditApplication(configuration: ApplicationConfiguration(
            stateDirectory: directory, clockMode: .manual, manualStart: Self.start, snapshotEveryRecords: 1), logger: logger)
        // One record: the writer yields a periodic capture, which nobody takes yet.
        _ = try await application.writer.execute(Self.create("a"), callerUID: 0)
        // The scheduler starts already cancelled, as at a shutdown that came first.
        await withTaskGroup(of: Void.self) { group in
            group.cancelAll()
            group.addTask { await application.runScheduler() }
        }
        _ = try await application.writer.execute(Self.create("b"), callerUID: 0)
        let final = try await application.takeSnapshot()
        XCTAssertEqual(final.sequence, 2)
        await close(application)
    }

    func testConcurrentWritesShareFsyncs() async throws {
        let operations = FaultInjectingFileOperations()
        let application = try open(operations)
        let writer = application.writer
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<64 {
                group.addTask { _ = try? await writer.execute(Self.create("s\(index)"), callerUID: 0) }
            }
        }
        let count = try await ledger(application).subscriptionCount
        XCTAssertEqual(count, 64)
        XCTAssertLessThan(operations.dataSyncCount, 64, "group commit: fewer fsyncs than records")
        await close(application)
    }

    func testFailedFsyncRollsBackWhatWasNotDurable() async throws {
        let operations = FaultInjectingFileOperations()
        let application = try open(operations)
        let writer = application.writer
        _ = try await writer.execute(Self.create("a"), callerUID: 0)
        let before = try await ledger(application)

        operations.failSyncs(errno: EIO)
        // Several changes in flight when the fsync fails: none is acknowledged, all are undone.
        let results = await withTaskGroup(of: Bool.self) { group in
            group.addTask { (try? await writer.execute(Self.seats("a", 4, key: "k"), callerUID: 0)) != nil }
            group.addTask { (try? await writer.execute(Self.create("b"), callerUID: 0)) != nil }
            group.addTask { (try? await writer.execute(Self.cancel("a"), callerUID: 0)) != nil }
            var acknowledged: [Bool] = []
            for await result in group { acknowledged.append(result) }
            return acknowledged
        }
        XCTAssertEqual(results, [false, false, false])
        let after = application.writer.committed.ledger
        XCTAssertEqual(Array(after.subscriptions), Array(before.subscriptions), "reads show exactly the durable state")
        let fault = writer.persistenceFault
        XCTAssertNotNil(fault)

        // Writes stay refused even once the disk works again (no retry after a failed fsync).
        operations.failSyncs(errno: nil)
        do {
            _ = try await writer.execute(Self.create("c"), callerUID: 0)
            XCTFail("writes are refused after a fault")
        } catch {
            guard case .persistenceFault = error else { return XCTFail("\(error)") }
        }
        await close(application)
    }

    /// The disk fills while concurrent writes cross segment rolls, so that a batch may be
    /// split: a part synced into the old segment, the rest refused. Whatever the split, a write
    /// refused as "not applied" must be absent after a restart, and an acknowledged one present.
    func testNoWriteRefusedAsNotAppliedComesBackAfterAFullDisk() async throws {
        for budget in [600, 1_500, 2_600, 3_900] {
            directory = try makeTemporaryDirectory("writer").path
            let operations = FaultInjectingFileOperations()
            let application = try open(operations, segmentSize: 1_024)
            let writer = application.writer
            _ = try await writer.execute(Self.create("first"), callerUID: 0)
            operations.failWrites(afterBytes: budget, errno: ENOSPC)
            let results = await withTaskGroup(of: (String, Result<Void, WriteFailure>).self) { group in
                for index in 0..<64 {
                    group.addTask {
                        do throws(WriteFailure) {
                            _ = try await writer.execute(Self.create("s\(index)"), callerUID: 0)
                            return ("s\(index)", .success(()))
                        } catch {
                            return ("s\(index)", .failure(error))
                        }
                    }
                }
                var all: [(String, Result<Void, WriteFailure>)] = []
                for await result in group { all.append(result) }
                return all
            }
            await close(application)
            operations.failWrites(afterBytes: nil)

            let recovered = try open()
            let ledger = try await ledger(recovered)
            for (id, result) in results {
                let present = (try? ledger.subscription(id: id)) != nil
                switch result {
                case .success:
                    XCTAssertTrue(present, "budget \(budget): \(id) was acknowledged")
                case .failure(.persistenceFault(let fault, outcome: .notApplied)):
                    XCTAssertFalse(present, "budget \(budget): \(id) was refused as not applied, yet it came back: \(fault)")
                case .failure:
                    break
                }
            }
            await close(recovered)
        }
    }

    func testDryRunChangesNothingAndEqualsCommit() async throws {
        let application = try open()
        let writer = application.writer
        _ = try await writer.execute(Self.create("a"), callerUID: 0)
        _ = try await writer.advanceClock(to: Instant(rfc3339: "2025-04-16T12:00:00Z")!)
        var dry = Creditd_V1_ChangeSeatsRequest()
        dry.subscriptionID = "a"
        dry.newSeats = 6
        dry.dryRun = true
        let before = try await ledger(application)
        let preview = try await writer.execute(.changeSeats(dry), callerUID: 0)
        let unchanged = try await ledger(application)
        XCTAssertEqual(unchanged, before)
        dry.dryRun = false
        let commit = try await writer.execute(.changeSeats(dry), callerUID: 0)
        XCTAssertEqual(try preview.outcome.get(), try commit.outcome.get())
        await close(application)
    }
}

/// Snapshots are values: writing one of a large ledger does not stop the
/// writer from serving reads and writes.
final class SnapshotWhileServingTests: XCTestCase {
    func testServesReadsAndWritesWhileA100kSnapshotIsWritten() async throws {
        let directory = try makeTemporaryDirectory("snapshot").path
        let start = Instant(rfc3339: "2025-04-01T09:00:00Z")!

        // 100,000 subscriptions, written as the starting snapshot.
        var ledger = Ledger()
        for index in 0..<100_000 {
            let result = ledger.execute(.create(CreateSubscriptionRequest(
                subscriptionId: "sub-\(index)", seats: 5, unitPriceMinor: 1200, currency: "EUR",
                interval: .known(.monthly), timeZone: "Europe/Berlin")), at: start, callerUID: 0, dryRun: false)
            XCTAssertTrue(result.stateChanged)
        }
        do {
            let (store, _) = try DurableStore.open(directory: directory)
            let frozen = ledger
            _ = try await store.writeSnapshot(sequence: 0) { try SnapshotCodec.encode(frozen, clock: start) }
            await store.close()
        }

        let application = try CreditApplication(configuration: ApplicationConfiguration(
            stateDirectory: directory, clockMode: .manual, manualStart: start), logger: Logger(label: "test"))
        let writer = application.writer
        let finished = Flag()
        let snapshot = Task {
            defer { finished.set() }
            return try await application.takeSnapshot()
        }
        var reads = 0
        var writes = 0
        var index = 0
        while true {
            // Alternate writes and reads until the snapshot is durable.
            let id = "sub-\(index % 100_000)"
            let seats = Int64(1 + index % 4)
            index += 1
            let executed = try await writer.execute(LedgerWriterTests.seats(id, seats), callerUID: 0)
            XCTAssertNotNil(try? executed.outcome.get())
            writes += 1
            let seen = try application.writer.committed.ledger.subscription(id: id).seats
            XCTAssertEqual(seen, seats)
            reads += 1
            if finished.isSet { break }
        }
        let info = try await snapshot.value
        print("served \(writes) writes and \(reads) reads while a snapshot of 100,000 subscriptions (\(info.bytes) bytes) was written")
        XCTAssertGreaterThan(writes, 1, "writes went on during the snapshot")
        await application.writer.close()
        await application.store.close()
    }
}

/// Set once, read from another task.
final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}
