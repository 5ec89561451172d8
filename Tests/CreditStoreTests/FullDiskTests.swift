import CreditStore
import Foundation
import XCTest

/// Issue 11, gap 1: writes refused because the disk filled up must not come back after a restart.
final class FullDiskTests: StoreDirectoryTestCase {
    /// 16 concurrent writers, the disk fills after a few records' worth of bytes: a write that
    /// ends short leaves whole records of the batch in the segment. Every refused record must be
    /// `.notApplied` and absent after a restart; every acknowledged one present.
    func testFullDiskDuringConcurrentWritesLeavesNoRefusedRecord() async throws {
        let operations = FaultInjectingFileOperations()
        var options = StoreOptions()
        options.fileOperations = operations
        let (store, _) = try DurableStore.open(directory: directory, options: options)
        for index in UInt64(1)...5 { _ = try await store.appendAndWait(payload(index)) }

        // Room for about three records of the next batch, then ENOSPC mid-record.
        operations.failWrites(afterBytes: 3 * (16 + payload(10).count) + 7, errno: ENOSPC)
        let results = await concurrentAppends(store, (0..<16).map { index in payload(UInt64(100 + index)) })
        let acknowledged = Set(results.compactMap { try? $0.get() })
        let refused: [StoreError] = results.compactMap {
            if case .failure(let error) = $0 { return error }
            return nil
        }
        XCTAssertFalse(refused.isEmpty, "the disk filled up: some writes must be refused")
        let fault = try XCTUnwrap(store.fault)
        XCTAssertEqual(fault.errno, ENOSPC)
        XCTAssertEqual(fault.outcome, .notApplied, fault.description)
        XCTAssertTrue(fault.description.contains("truncated back"), fault.description)
        for error in refused {
            guard case .fault(let reported) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(reported, fault)
        }
        for sequence in fault.firstUnacknowledgedSequence...(fault.lastAttemptedSequence + 3) {
            XCTAssertEqual(fault.outcome(of: sequence), .notApplied)
        }
        await store.close()

        operations.failWrites(afterBytes: nil)
        let recovery = try await reopen(directory)
        XCTAssertEqual(Set(recovery.records.map(\.sequence)), Set(UInt64(1)...5).union(acknowledged),
                       "after a restart exactly the acknowledged records exist")
        XCTAssertTrue(recovery.report.truncations.isEmpty, "the failed write was cut off before the restart")
    }

    /// The writer-thread path: `appendDurably` refuses the whole batch and leaves none of it.
    func testAppendDurablyOnFullDiskLeavesNothing() async throws {
        let operations = FaultInjectingFileOperations()
        var options = StoreOptions()
        options.fileOperations = operations
        let (store, _) = try DurableStore.open(directory: directory, options: options)
        XCTAssertEqual(try store.appendDurably((1...4).map { payload($0) }), 4)
        operations.failWrites(afterBytes: 5 * (16 + payload(10).count), errno: ENOSPC)
        do {
            _ = try store.appendDurably((5...20).map { payload($0) })
            XCTFail("the batch does not fit")
        } catch {
            guard case .fault(let fault) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(fault.firstUnacknowledgedSequence, 5)
            XCTAssertEqual(fault.lastAttemptedSequence, 20)
            XCTAssertEqual(fault.outcome, .notApplied, fault.description)
        }
        XCTAssertThrowsError(try store.appendDurably([payload(21)]))
        // `stats` and the metrics name the newest record in the journal, not a refused seq.
        XCTAssertEqual(store.stats.lastSequence, 4)
        XCTAssertEqual(store.stats.pendingRecords, 0)
        await store.close()
        operations.failWrites(afterBytes: nil)
        let recovery = try await reopen(directory)
        XCTAssertEqual(recovery.records.map(\.sequence), [1, 2, 3, 4])
    }

    /// A batch that a segment roll splits: its first part is written and synced into the old
    /// segment, then the new segment cannot be written. The batch fails as a whole, but the first
    /// part is on disk and comes back after a restart, so its records must not be reported as
    /// not applied (a client would retry them and apply them twice).
    func testAppendDurablyBatchSplitByAFailedRollReportsItsSyncedPartUnknown() async throws {
        let operations = FaultInjectingFileOperations()
        var options = StoreOptions()
        options.fileOperations = operations
        options.segmentSize = 200
        let (store, _) = try DurableStore.open(directory: directory, options: options)
        XCTAssertEqual(try store.appendDurably([payload(1)]), 1)
        // Room for the records that still fit into the first segment, not for the next segment.
        operations.failWrites(afterBytes: (2...5).reduce(0) { $0 + 16 + payload(UInt64($1)).count }, errno: ENOSPC)
        let synced: UInt64
        do {
            _ = try store.appendDurably((2...10).map { payload(UInt64($0)) })
            return XCTFail("the new segment cannot be written")
        } catch {
            guard case .fault(let fault) = error else { return XCTFail("\(error)") }
            synced = fault.firstUnacknowledgedSequence - 1
            XCTAssertGreaterThan(synced, 1, "part of the batch went into the first segment: \(fault)")
            for sequence in UInt64(2)...synced {
                XCTAssertEqual(fault.outcome(of: sequence), .unknown, "seq \(sequence) is on disk: \(fault)")
            }
            XCTAssertEqual(fault.outcome(of: 10), .notApplied, fault.description)
            // The log line and `stats` show this text: it must not let "not applied" cover them.
            XCTAssertTrue(fault.description.contains("seq 2...\(synced) were refused (outcome unknown) but had been made "
                                                     + "durable before the failure: they appear after a restart"),
                          fault.description)
        }
        await store.close()
        operations.failWrites(afterBytes: nil)
        let recovery = try await reopen(directory)
        XCTAssertEqual(recovery.records.map(\.sequence), Array(1...synced))
    }

    /// appendDurably after a failed fdatasync: the outcome is unknown.
    func testAppendDurablySyncFailureIsUnknown() async throws {
        let operations = FaultInjectingFileOperations()
        var options = StoreOptions()
        options.fileOperations = operations
        let (store, _) = try DurableStore.open(directory: directory, options: options)
        _ = try store.appendDurably([payload(1)])
        operations.failSyncs(errno: EIO)
        do {
            _ = try store.appendDurably([payload(2), payload(3)])
            XCTFail("the sync fails")
        } catch {
            guard case .fault(let fault) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(fault.outcome, .unknown)
            XCTAssertEqual(fault.outcome(of: 3), .unknown)
            XCTAssertEqual(fault.outcome(of: 4), .notApplied)
            XCTAssertTrue(fault.description.contains("outcome unknown"), fault.description)
        }
        await store.close()
    }

    /// The reproduction on a real file system: a 2 MiB tmpfs that fills up while 16
    /// writers append. Needs root (mount); skipped otherwise.
    func testRealFullTmpfsLeavesNoRefusedRecord() async throws {
        try await withFullTmpfs { state, store in
            let results = await self.concurrentAppends(store, (0..<16).map { [UInt8](repeating: 0x5A, count: 400) + payload($0) })
            let acknowledged = Set(results.compactMap { try? $0.get() })
            XCTAssertLessThan(acknowledged.count, 16, "the file system is full")
            let fault = try XCTUnwrap(store.fault)
            XCTAssertEqual(fault.errno, ENOSPC, fault.description)
            XCTAssertEqual(fault.outcome, .notApplied, fault.description)
            return { recovery in
                XCTAssertEqual(Set(recovery.records.map(\.sequence)), Set(UInt64(1)...5).union(acknowledged))
            }
        }
    }

    /// The same with one batch of 16 through `appendDurably`: several whole records of it fit in
    /// the segment's last page before ENOSPC, and none of them may come back.
    func testRealFullTmpfsAppendDurablyLeavesNothing() async throws {
        try await withFullTmpfs { state, store in
            XCTAssertThrowsError(try store.appendDurably((0..<16).map { [UInt8](repeating: 0x5A, count: 400) + payload($0) })) {
                guard case .fault(let fault) = $0 as? StoreError else { return XCTFail("\($0)") }
                XCTAssertEqual(fault.errno, ENOSPC, fault.description)
                XCTAssertEqual(fault.outcome, .notApplied, fault.description)
            }
            return { recovery in XCTAssertEqual(recovery.records.map(\.sequence), Array(1...5)) }
        }
    }

    /// With zeros written ahead (segment format 3), a full disk still takes records into those
    /// zeros; past them the store faults, and nothing refused comes back.
    func testRealFullTmpfsStillTakesRecordsIntoZerosWrittenAhead() async throws {
        var options = StoreOptions()
        options.zeroFillBytes = 64 << 10
        try await withFullTmpfs(options: options) { state, store in
            let record = [UInt8](repeating: 0x5A, count: 1_000)
            // Records 6...20 (about 15 KiB) fit in the 64 KiB of zeros written with record 1.
            for index in 6...20 { XCTAssertEqual(try store.appendDurably([record + payload(UInt64(index))]), UInt64(index)) }
            var acknowledged = 20
            var failure: StoreFault?
            while failure == nil && acknowledged < 200 {
                do throws(StoreError) {
                    acknowledged = Int(try store.appendDurably([record + payload(UInt64(acknowledged + 1))]))
                } catch {
                    guard case .fault(let fault) = error else { XCTFail("\(error)"); return { _ in } }
                    failure = fault
                }
            }
            let fault = try XCTUnwrap(failure, "the zeros run out and the disk is full")
            XCTAssertGreaterThan(acknowledged, 60, "about 64 KiB of records went into the zeros")
            XCTAssertEqual(fault.errno, ENOSPC, fault.description)
            XCTAssertEqual(fault.outcome, .notApplied, fault.description)
            return { recovery in XCTAssertEqual(recovery.records.map(\.sequence), Array(1...UInt64(acknowledged))) }
        }
    }

    /// An event archive block cut short by a full disk gives back the space its part took: the
    /// file ends at its last whole block, and the next append writes there once space is free.
    func testRealFullTmpfsArchiveBlockCutShortLeavesNoPart() throws {
        let mountPoint = try mountTmpfs("archive-tmpfs", size: "1m")
        defer { _ = run("/bin/umount", mountPoint) }
        let files = EventArchiveFiles(directory: mountPoint)
        let first = try files.append(firstSeq: 1, payload: [UInt8](repeating: 1, count: 10_000))
        let path = mountPoint + "/" + EventArchiveFiles.fileName(1)
        func size() throws -> UInt64 { try XCTUnwrap(FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64) }
        // Leave about 64 KiB free, then ask for a block of 256 KiB: part of it is written.
        var info = statvfs()
        XCTAssertEqual(statvfs(mountPoint, &info), 0)
        let free = Int(info.f_bavail) * Int(info.f_frsize)
        XCTAssertTrue(FileManager.default.createFile(atPath: mountPoint + "/filler",
                                                     contents: Data(repeating: 0xAB, count: free - (64 << 10))))
        XCTAssertThrowsError(try files.append(firstSeq: 1025, payload: [UInt8](repeating: 2, count: 256 << 10))) {
            XCTAssertEqual(($0 as? FileOperationError)?.errno, ENOSPC, "\($0)")
        }
        XCTAssertEqual(try size(), first.offset + first.length)

        try FileManager.default.removeItem(atPath: mountPoint + "/filler")
        let second = try files.append(firstSeq: 1025, payload: [UInt8](repeating: 2, count: 256 << 10))
        XCTAssertEqual(second.offset, first.offset + first.length)
        try files.sync()
    }

    /// A tmpfs of `size` mounted at `name` in the test's directory; the caller unmounts it.
    /// Skips the test without root (mount) or where mounting is not allowed.
    private func mountTmpfs(_ name: String, size: String) throws -> String {
        guard getuid() == 0 else { throw XCTSkip("mounting a tmpfs needs root") }
        let mountPoint = directory + "/" + name
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        guard run("/bin/mount", "-t", "tmpfs", "-o", "size=\(size)", "tmpfs", mountPoint) == 0 else {
            throw XCTSkip("cannot mount a tmpfs here")
        }
        return mountPoint
    }

    /// Mounts a 2 MiB tmpfs, opens a store on it, appends records 1...5, fills the file system
    /// (only the segment's partly used last page and any zeros written ahead still take bytes),
    /// runs `body`, frees the space, reopens and hands the recovery to the check `body` returned.
    private func withFullTmpfs(
        options: StoreOptions = StoreOptions(),
        _ body: (String, DurableStore) async throws -> (Recovery) throws -> Void
    ) async throws {
        let mountPoint = try mountTmpfs("tmpfs", size: "2m")
        defer { _ = run("/bin/umount", mountPoint) }
        let state = mountPoint + "/state"
        let (store, _) = try DurableStore.open(directory: state, options: options)
        for index in UInt64(1)...5 { _ = try await store.appendAndWait(payload(index)) }
        XCTAssertTrue(FileManager.default.createFile(atPath: mountPoint + "/filler", contents: nil))
        let filler = try XCTUnwrap(FileHandle(forWritingAtPath: mountPoint + "/filler"))
        let chunk = Data(repeating: 0xAB, count: 4096)
        while (try? filler.write(contentsOf: chunk)) != nil {}
        try? filler.close()
        let check = try await body(state, store)
        await store.close()
        try FileManager.default.removeItem(atPath: mountPoint + "/filler")
        try check(try await reopen(state))
    }

    /// Appends every payload from its own task at once; the results in no particular order.
    private func concurrentAppends(_ store: DurableStore, _ payloads: [[UInt8]]) async -> [Result<UInt64, StoreError>] {
        await withTaskGroup(of: Result<UInt64, StoreError>.self) { group in
            for item in payloads {
                group.addTask {
                    do throws(StoreError) {
                        return .success(try await store.appendAndWait(item))
                    } catch {
                        return .failure(error)
                    }
                }
            }
            var all: [Result<UInt64, StoreError>] = []
            for await result in group { all.append(result) }
            return all
        }
    }

    private func run(_ executable: String, _ arguments: String...) -> Int32 {
        (try? OpsProcess.run([executable] + arguments))?.status ?? -1
    }
}
