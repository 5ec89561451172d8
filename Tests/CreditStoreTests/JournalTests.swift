import CreditStore
import Foundation
import XCTest

final class JournalTests: StoreDirectoryTestCase {
    func testRoundTrip() async throws {
        let (store, recovery) = try DurableStore.open(directory: directory)
        XCTAssertNil(recovery.snapshot)
        XCTAssertEqual(recovery.records, [])
        XCTAssertEqual(recovery.nextSequence, 1)
        for index in UInt64(1)...50 {
            let sequence = try await store.appendAndWait(payload(index))
            XCTAssertEqual(sequence, index)
        }
        let empty = try await store.appendAndWait([])
        XCTAssertEqual(empty, 51)
        let stats = store.stats
        XCTAssertEqual(stats.lastSequence, 51)
        XCTAssertEqual(stats.lastDurableSequence, 51)
        XCTAssertEqual(stats.recordsWritten, 51)
        XCTAssertEqual(stats.segmentCount, 1)
        XCTAssertNil(stats.fault)
        XCTAssertEqual(stats.journalBytes, try FileManager.default.attributesOfItem(
            atPath: directory + "/" + segmentFiles(in: directory)[0])[.size] as? Int64)
        await store.close()

        XCTAssertEqual(segmentFiles(in: directory), ["journal-00000000000000000001.log"])
        let again = try await reopen(directory)
        XCTAssertEqual(again.records.count, 51)
        XCTAssertEqual(again.records.first, JournalRecord(sequence: 1, payload: payload(1)))
        XCTAssertEqual(again.records[49], JournalRecord(sequence: 50, payload: payload(50)))
        XCTAssertEqual(again.records.last, JournalRecord(sequence: 51, payload: []))
        XCTAssertEqual(again.nextSequence, 52)
        XCTAssertTrue(again.report.truncations.isEmpty)
    }

    func testWaitDurableEdgeCases() async throws {
        let (store, _) = try DurableStore.open(directory: directory)
        try await store.waitDurable(upTo: 0)  // nothing to wait for
        do {
            try await store.waitDurable(upTo: 5)
            XCTFail("seq 5 was never assigned")
        } catch {
            XCTAssertEqual(error, .invalidSequence(5))
        }
        var options = StoreOptions()
        options.maxRecordSize = 8
        await store.close()
        XCTAssertThrowsError(try store.append([1])) { XCTAssertEqual($0 as? StoreError, .closed) }

        let (small, _) = try DurableStore.open(directory: directory, options: options)
        XCTAssertThrowsError(try small.append([UInt8](repeating: 0, count: 9))) {
            XCTAssertEqual($0 as? StoreError, .recordTooLarge(size: 9, limit: 8))
        }
        await small.close()
    }

    /// While one fdatasync is held open, later appends queue up and then go to disk as one batch.
    func testGroupCommitBatchesRecordsBehindAnInFlightSync() async throws {
        let operations = FaultInjectingFileOperations()
        let syncStarted = DispatchSemaphore(value: 0)
        let releaseSync = DispatchSemaphore(value: 0)
        let heldOnce = LockedFlag()
        operations.onDataSync { _ in
            if heldOnce.setIfUnset() {
                syncStarted.signal()
                releaseSync.wait()
            }
        }
        var options = StoreOptions()
        options.fileOperations = operations
        let (store, _) = try DurableStore.open(directory: directory, options: options)

        let first = try store.append(payload(1))
        // The journal thread is now blocked in the first fdatasync (segment creation).
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                syncStarted.wait()
                done.resume()
            }
        }
        let count = 300
        let sequences = try await withThrowingTaskGroup(of: UInt64.self) { group in
            for index in 0..<count {
                group.addTask { try await store.appendAndWait(payload(UInt64(index + 2))) }
            }
            // Let every task enqueue before the sync completes.
            while store.stats.lastSequence < UInt64(count + 1) { await Task.yield() }
            releaseSync.signal()
            var all: [UInt64] = []
            for try await sequence in group { all.append(sequence) }
            return all
        }
        try await store.waitDurable(upTo: first)
        XCTAssertEqual(Set(sequences), Set((2...UInt64(count + 1))))
        let stats = store.stats
        XCTAssertEqual(stats.lastDurableSequence, UInt64(count + 1))
        XCTAssertEqual(stats.recordsWritten, count + 1)
        // Segment header sync, then at most: the first record's batch and the queued batch.
        XCTAssertLessThanOrEqual(stats.fsyncCount, 3)
        XCTAssertLessThanOrEqual(operations.dataSyncCount, 3)
        await store.close()
        let recovery = try await reopen(directory)
        XCTAssertEqual(recovery.records.count, count + 1)
    }

    /// Many concurrent writers: every acknowledged record is durable, with fewer syncs than records.
    func testConcurrentAppendsAllDurable() async throws {
        let (store, _) = try DurableStore.open(directory: directory)
        let count = 400
        try await withThrowingTaskGroup(of: Void.self) { group in
            for index in 0..<count {
                group.addTask { _ = try await store.appendAndWait(payload(UInt64(index))) }
            }
            try await group.waitForAll()
        }
        let stats = store.stats
        XCTAssertEqual(stats.lastDurableSequence, UInt64(count))
        XCTAssertEqual(stats.recordsWritten, count)
        XCTAssertLessThanOrEqual(stats.fsyncCount, count + 1)
        await store.close()
        let recovery = try await reopen(directory)
        XCTAssertEqual(recovery.records.map(\.sequence), Array(1...UInt64(count)))
    }

    func testSegmentsRollAndReadBackInOrder() async throws {
        var options = StoreOptions()
        options.segmentSize = 200
        let (store, _) = try DurableStore.open(directory: directory, options: options)
        for index in UInt64(1)...60 { _ = try store.append(payload(index)) }
        try await store.waitDurable(upTo: 60)
        // A record larger than a segment still gets written (alone in its segment).
        let big = try await store.appendAndWait([UInt8](repeating: 7, count: 500))
        XCTAssertEqual(big, 61)
        let stats = store.stats
        await store.close()

        let segments = segmentFiles(in: directory)
        XCTAssertGreaterThan(segments.count, 5)
        XCTAssertEqual(stats.segmentCount, segments.count)
        XCTAssertEqual(segments.first, "journal-00000000000000000001.log")
        var total: Int64 = 0
        for name in segments {
            let size = try FileManager.default.attributesOfItem(atPath: directory + "/" + name)[.size] as! Int64
            total += size
            if name != segments.last { XCTAssertLessThanOrEqual(size, 200, name) }
        }
        XCTAssertEqual(stats.journalBytes, total)

        let recovery = try await reopen(directory, options: options)
        XCTAssertEqual(recovery.records.map(\.sequence), Array(1...61))
        XCTAssertEqual(Array(recovery.records[59].payload), payload(60))
        XCTAssertEqual(recovery.report.segmentsRead, segments)
        // Each segment's name is the sequence of its first record.
        let firsts = segments.map { UInt64($0.dropFirst(8).prefix(20))! }
        XCTAssertEqual(firsts, firsts.sorted())
        XCTAssertEqual(Set(firsts).count, firsts.count)

        // Appending continues in the last segment after reopening.
        let (again, _) = try DurableStore.open(directory: directory, options: options)
        let next = try await again.appendAndWait(payload(62))
        XCTAssertEqual(next, 62)
        await again.close()
        let final = try await reopen(directory, options: options)
        XCTAssertEqual(final.records.count, 62)
    }

    func testDirectoryLockIsExclusive() async throws {
        let (store, _) = try DurableStore.open(directory: directory)
        assertThrowsStoreError({ _ = try DurableStore.open(directory: self.directory) }) {
            $0 == .locked(directory: self.directory)
        }
        await store.close()
        let (again, _) = try DurableStore.open(directory: directory)
        await again.close()
    }
}

/// A flag that is set exactly once across threads.
final class LockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var set = false

    func setIfUnset() -> Bool {
        lock.withLock {
            if set { return false }
            set = true
            return true
        }
    }
}
