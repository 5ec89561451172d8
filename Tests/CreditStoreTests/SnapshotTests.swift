import CreditStore
import Foundation
import XCTest

final class SnapshotTests: StoreDirectoryTestCase {

    func appendDurably(_ store: DurableStore, _ range: ClosedRange<UInt64>) async throws {
        for index in range { XCTAssertEqual(try store.append(payload(index)), index) }
        try await store.waitDurable(upTo: range.upperBound)
    }

    func testSnapshotThenJournalRecovery() async throws {
        let (store, _) = try DurableStore.open(directory: directory)
        try await appendDurably(store, 1...10)
        let encodedOn = ThreadNameBox()
        let info = try await store.writeSnapshot(sequence: 10) {
            encodedOn.record()
            return state(10)
        }
        XCTAssertEqual(encodedOn.name, "creditd-snap")
        XCTAssertEqual(info.sequence, 10)
        XCTAssertEqual(info.fileName, "snapshot-00000000000000000010.snap")
        XCTAssertEqual(info.bytes, Int64(48 + state(10).count))
        try await appendDurably(store, 11...15)
        let stats = store.stats
        XCTAssertEqual(stats.lastSnapshotSequence, 10)
        XCTAssertEqual(stats.lastSnapshotUnixMillis, info.unixMillis)
        XCTAssertEqual(stats.snapshotsWritten, 1)
        await store.close()

        let recovery = try await reopen(directory)
        XCTAssertEqual(recovery.snapshot?.sequence, 10)
        XCTAssertEqual(recovery.snapshot?.payload, state(10))
        XCTAssertEqual(recovery.snapshot?.unixMillis, info.unixMillis)
        XCTAssertEqual(recovery.records.map(\.sequence), Array(11...15))
        XCTAssertEqual(recovery.nextSequence, 16)
        XCTAssertEqual(recovery.report.usedSnapshot, info.fileName)
        let verification = try verifyStateDirectory(directory)
        XCTAssertTrue(verification.isClean, verification.description)
        XCTAssertEqual(verification.usableSnapshot, info.fileName)
    }

    /// Snapshot files are written with O_DIRECT in block-sized pieces through a staging buffer
    /// and cut to their length: payloads around block and staging boundaries come back exact.
    func testSnapshotPayloadsOfEverySizeComeBackExact() async throws {
        var (store, _) = try DurableStore.open(directory: directory)
        var generator = SystemRandomNumberGenerator()
        var sequence: UInt64 = 0
        for size in [0, 1, 4_048, 4_049, 4_096, 8_191, (8 << 20) - 48, (8 << 20) - 47, (8 << 20) + 12_345] {
            sequence += 1
            try await appendDurably(store, sequence...sequence)
            let payload = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let info = try await store.writeSnapshot(sequence: sequence, payload: payload)
            XCTAssertEqual(info.bytes, Int64(48 + size))
            let onDisk = try FileManager.default.attributesOfItem(atPath: directory + "/" + info.fileName)[.size] as? Int
            XCTAssertEqual(onDisk, 48 + size, "size \(size)")
            await store.close()
            let recovery = try await reopen(directory)
            XCTAssertEqual(recovery.snapshot?.payload, payload, "size \(size)")
            (store, _) = try DurableStore.open(directory: directory)
        }
        await store.close()
    }

    /// A payload handed over in pieces (as the ledger encoder's parts are) is written as its
    /// joined bytes, with its header (written last) in front: pieces empty, of one byte, ending
    /// inside the first block, exactly filling the staging buffer, and crossing the staging
    /// buffer's and the blocks' boundaries; with O_DIRECT here, and with plain writes on tmpfs,
    /// which refuses it.
    func testSnapshotPayloadInPiecesIsWrittenAsItsJoinedBytes() async throws {
        struct Pieces: SnapshotPayload {
            let pieces: [[UInt8]]
            func forEachPiece<Failure: Error>(_ body: (UnsafeRawBufferPointer) throws(Failure) -> Void) throws(Failure) {
                for piece in pieces { try piece.forEachPiece(body) }
            }
        }
        var generator = SystemRandomNumberGenerator()
        var pool = [UInt8](repeating: 0, count: 9 << 20)
        pool.withUnsafeMutableBytes { bytes in
            for word in 0..<(bytes.count / 8) { bytes.storeBytes(of: generator.next(), toByteOffset: word * 8, as: UInt64.self) }
        }
        var used = 0
        func random(_ count: Int) -> [UInt8] {
            used = (used + 4_099) % (pool.count - count + 1)
            return Array(pool[used..<(used + count)])
        }
        let layouts: [[Int]] = [
            [],
            [0],
            [1, 0, 1, 4_047, 1],
            [4_048, 4_096, 0, 3],
            [(8 << 20) - 48, 1, 0, 4_096],
            [3_000_000, 5_400_000, 7, 100_001],
            [100],
            [4_048],
            [(8 << 20) - 48],
            [9 << 20, 9 << 20, 1],
        ]
        var directories = [directory]
        let tmpfs = "/dev/shm/creditd-snapshot-pieces-\(getpid())"
        if FileManager.default.fileExists(atPath: "/dev/shm") {
            try FileManager.default.createDirectory(atPath: tmpfs, withIntermediateDirectories: true)
            directories.append(tmpfs)
        }
        defer { try? FileManager.default.removeItem(atPath: tmpfs) }
        for directory in directories {
            var (store, _) = try DurableStore.open(directory: directory)
            var sequence: UInt64 = 0
            for layout in layouts {
                sequence += 1
                try await appendDurably(store, sequence...sequence)
                let payload = Pieces(pieces: layout.map(random))
                let joined = payload.joined()
                XCTAssertEqual(joined, payload.pieces.flatMap { $0 })
                // As rows (the PostgreSQL store): whole chunks, then the rest, at least one.
                for size in joined.count < 100_000 ? [1, 7, 4_096] : [4_096, 1 << 20] {
                    let chunks = payload.chunked(into: size)
                    XCTAssertEqual(chunks.flatMap { $0 }, joined, "\(layout) in chunks of \(size)")
                    XCTAssertEqual(chunks.count, max(1, (joined.count + size - 1) / size), "\(layout) in chunks of \(size)")
                    XCTAssertTrue(chunks.dropLast().allSatisfy { $0.count == size }, "\(layout) in chunks of \(size)")
                }
                let info = try await store.writeSnapshot(sequence: sequence) { payload }
                XCTAssertEqual(info.bytes, Int64(48 + joined.count))
                let onDisk = try FileManager.default.attributesOfItem(atPath: directory + "/" + info.fileName)[.size] as? Int
                XCTAssertEqual(onDisk, 48 + joined.count, "\(layout) in \(directory)")
                await store.close()
                let recovery = try await reopen(directory)
                XCTAssertEqual(recovery.snapshot?.payload, joined, "\(layout) in \(directory)")
                (store, _) = try DurableStore.open(directory: directory)
            }
            await store.close()
        }
    }

    func testSnapshotMustBeDurableAndNotOlderThanNewest() async throws {
        let (store, _) = try DurableStore.open(directory: directory)
        try await appendDurably(store, 1...5)
        do {
            _ = try await store.writeSnapshot(sequence: 6, payload: state(6))
            XCTFail("seq 6 is not durable")
        } catch let error as StoreError {
            guard case .invalidSnapshotSequence(6, _) = error else { return XCTFail("\(error)") }
        }
        _ = try await store.writeSnapshot(sequence: 5, payload: state(5))
        do {
            _ = try await store.writeSnapshot(sequence: 4, payload: state(4))
            XCTFail("older than the newest snapshot")
        } catch let error as StoreError {
            guard case .invalidSnapshotSequence(4, _) = error else { return XCTFail("\(error)") }
        }
        struct EncodingFailed: Error {}
        do {
            _ = try await store.writeSnapshot(sequence: 5) { throw EncodingFailed() }
            XCTFail("encoder error must surface")
        } catch is EncodingFailed {}
        XCTAssertEqual(snapshotFiles(in: directory), ["snapshot-00000000000000000005.snap"])
        XCTAssertFalse(files(in: directory).contains { $0.hasSuffix(".tmp") })
        await store.close()
    }

    /// Keeps the new snapshot and the previous one; deletes segments the previous one covers, so
    /// a corrupt newest snapshot still falls back to a complete history.
    func testSnapshotRetentionPruningAndFallback() async throws {
        var options = StoreOptions()
        options.segmentSize = 150
        let (store, _) = try DurableStore.open(directory: directory, options: options)
        try await appendDurably(store, 1...30)
        let first = try await store.writeSnapshot(sequence: 20, payload: state(20))
        XCTAssertEqual(first.removedSegments, [], "no fallback yet: the journal from seq 1 is the fallback")
        let segmentsBefore = segmentFiles(in: directory)

        try await appendDurably(store, 31...60)
        let second = try await store.writeSnapshot(sequence: 50, payload: state(50))
        XCTAssertFalse(second.removedSegments.isEmpty)
        XCTAssertEqual(second.removedSnapshots, [])
        XCTAssertEqual(snapshotFiles(in: directory), ["snapshot-00000000000000000020.snap", "snapshot-00000000000000000050.snap"])
        // Every remaining segment holds a record after 20, and the first one reaches back to 21.
        let remaining = segmentFiles(in: directory)
        XCTAssertTrue(remaining.allSatisfy { segmentsBefore.contains($0) || !segmentsBefore.contains($0) })
        let firsts = remaining.map { UInt64($0.dropFirst(8).prefix(20))! }
        XCTAssertLessThanOrEqual(firsts[0], 21)
        XCTAssertGreaterThan(firsts.count > 1 ? firsts[1] : 61, 21)
        XCTAssertEqual(store.stats.segmentCount, remaining.count)

        try await appendDurably(store, 61...70)
        let third = try await store.writeSnapshot(sequence: 65, payload: state(65))
        XCTAssertEqual(third.removedSnapshots, ["snapshot-00000000000000000020.snap"])
        XCTAssertEqual(snapshotFiles(in: directory), ["snapshot-00000000000000000050.snap", "snapshot-00000000000000000065.snap"])
        await store.close()

        let recovery = try await reopen(directory, options: options)
        XCTAssertEqual(recovery.snapshot?.sequence, 65)
        XCTAssertEqual(recovery.records.map(\.sequence), Array(66...70))

        // Newest snapshot damaged: fall back to the previous one and replay the journal after it.
        let newest = directory + "/snapshot-00000000000000000065.snap"
        try flipBit(in: newest, at: 50)
        let fallback = try await reopen(directory, options: options)
        XCTAssertEqual(fallback.snapshot?.sequence, 50)
        XCTAssertEqual(fallback.snapshot?.payload, state(50))
        XCTAssertEqual(fallback.records.map(\.sequence), Array(51...70))
        XCTAssertEqual(fallback.records.first.map { Array($0.payload) }, payload(51))
        XCTAssertEqual(fallback.report.skippedSnapshots.count, 1)
        XCTAssertTrue(fallback.report.skippedSnapshots[0].contains("snapshot-00000000000000000065.snap"))
        let verification = try verifyStateDirectory(directory)
        XCTAssertTrue(verification.recoverable)
        XCTAssertEqual(verification.snapshots.map(\.verified), [false, true])

        // Both damaged, and the journal no longer reaches back: the refusal names each snapshot
        // and why it was passed over (it said only "no snapshot verifies").
        try flipBit(in: directory + "/snapshot-00000000000000000050.snap", at: 50)
        do {
            _ = try DurableStore.open(directory: directory, options: options)
            XCTFail("no snapshot and no journal from seq 1")
        } catch {
            let text = "\(error)"
            XCTAssertTrue(text.contains("no snapshot verifies (snapshot-00000000000000000065.snap: payload CRC mismatch; "
                                        + "snapshot-00000000000000000050.snap: payload CRC mismatch)"), text)
        }
    }

    /// A snapshot at the seq the start recovered (a stop with nothing written since the start
    /// writes one) keeps the fallback snapshot before it. Retention knew only the recovered
    /// snapshot, so it deleted the fallback: after a start and a stop with no writes in
    /// between, the directory held one snapshot instead of two.
    func testSnapshotAtTheRecoveredSeqKeepsTheFallback() async throws {
        let (store, _) = try DurableStore.open(directory: directory)
        try await appendDurably(store, 1...10)
        _ = try await store.writeSnapshot(sequence: 5, payload: state(5))
        _ = try await store.writeSnapshot(sequence: 10, payload: state(10))
        await store.close()
        let both = ["snapshot-00000000000000000005.snap", "snapshot-00000000000000000010.snap"]
        XCTAssertEqual(snapshotFiles(in: directory), both)

        let (again, recovery) = try DurableStore.open(directory: directory)
        XCTAssertEqual(recovery.snapshot?.sequence, 10)
        let same = try await again.writeSnapshot(sequence: 10, payload: state(10))
        XCTAssertEqual(same.removedSnapshots, [])
        XCTAssertEqual(snapshotFiles(in: directory), both)
        try await appendDurably(again, 11...12)
        let next = try await again.writeSnapshot(sequence: 12, payload: state(12))
        XCTAssertEqual(next.removedSnapshots, ["snapshot-00000000000000000005.snap"], "then retention goes on as usual")
        await again.close()
        XCTAssertEqual(snapshotFiles(in: directory), ["snapshot-00000000000000000010.snap", "snapshot-00000000000000000012.snap"])
    }

    /// A start reads only the snapshot it uses (the newest that verifies), not the older ones
    /// (hundreds of megabytes each at scale); `verify-state` still checks and reports them all.
    func testStartReadsOnlyTheSnapshotItUses() async throws {
        let (store, _) = try DurableStore.open(directory: directory)
        try await appendDurably(store, 1...10)
        _ = try await store.writeSnapshot(sequence: 5, payload: state(5))
        _ = try await store.writeSnapshot(sequence: 10, payload: state(10))
        await store.close()
        try flipBit(in: directory + "/snapshot-00000000000000000005.snap", at: 60)
        let recovery = try await reopen(directory)
        XCTAssertEqual(recovery.snapshot?.sequence, 10)
        XCTAssertEqual(recovery.snapshot?.payload, state(10))
        XCTAssertEqual(recovery.report.skippedSnapshots, [], "the older snapshot was not read")
        let verification = try verifyStateDirectory(directory)
        XCTAssertEqual(verification.snapshots.map(\.verified), [true, false])
    }

    func testCorruptSnapshotHeaderFallsBack() async throws {
        let (store, _) = try DurableStore.open(directory: directory)
        try await appendDurably(store, 1...4)
        _ = try await store.writeSnapshot(sequence: 2, payload: state(2))
        _ = try await store.writeSnapshot(sequence: 4, payload: state(4))
        await store.close()
        try flipBit(in: directory + "/snapshot-00000000000000000004.snap", at: 17)  // inside lastSeq
        let recovery = try await reopen(directory)
        XCTAssertEqual(recovery.snapshot?.sequence, 2)
        XCTAssertEqual(recovery.records.map(\.sequence), [3, 4])
    }

    /// The newest snapshot does not verify and the journal no longer reaches its sequence:
    /// recovering would silently lose acknowledged changes.
    func testLostAcknowledgedStateRefused() async throws {
        let (store, _) = try DurableStore.open(directory: directory)
        try await appendDurably(store, 1...6)
        _ = try await store.writeSnapshot(sequence: 6, payload: state(6))
        await store.close()
        try flipBit(in: directory + "/snapshot-00000000000000000006.snap", at: 49)
        // Cut the journal back to 3 records (as if its tail had been lost).
        let segment = directory + "/journal-00000000000000000001.log"
        var bytes = try readBytes(segment)
        var end = 32
        for index in UInt64(1)...3 { end += 16 + payload(index).count }
        bytes = Array(bytes[0..<end])
        try writeBytes(bytes, to: segment)
        assertThrowsStoreError({ _ = try DurableStore.open(directory: self.directory) }) {
            $0 == .acknowledgedStateLost(snapshotSequence: 6, journalEnd: 3)
        }

        // --repair accepts the loss and moves the snapshot aside, so that the repair holds: a
        // start without it after two acknowledged writes must not meet the same snapshot.
        var options = StoreOptions()
        options.repair = true
        let (repaired, recovery) = try DurableStore.open(directory: directory, options: options)
        XCTAssertEqual(recovery.nextSequence, 4)
        XCTAssertTrue(recovery.report.repairs.contains { $0.contains("snapshot-00000000000000000006.snap") && $0.contains("moved to") },
                      "\(recovery.report.repairs)")
        for index in UInt64(4)...5 { _ = try await repaired.appendAndWait(payload(index)) }
        await repaired.close()
        XCTAssertEqual(files(in: directory).filter { $0.hasPrefix("snapshot-00000000000000000006.snap.corrupt-") }.count, 1)
        let after = try await reopen(directory)
        XCTAssertEqual(after.records.map(\.sequence), [1, 2, 3, 4, 5])
    }

    func testUnknownSnapshotVersionRefused() async throws {
        let (store, _) = try DurableStore.open(directory: directory)
        try await appendDurably(store, 1...2)
        _ = try await store.writeSnapshot(sequence: 2, payload: state(2))
        await store.close()
        let name = "snapshot-00000000000000000002.snap"
        var bytes = try readBytes(directory + "/" + name)
        bytes[8] = 3
        try writeBytes(bytes, to: directory + "/" + name)
        assertThrowsStoreError({ _ = try DurableStore.open(directory: self.directory) }) {
            $0 == .unsupportedVersion(file: name, version: 3, supported: 1)
        }
        let verification = try verifyStateDirectory(directory)
        XCTAssertFalse(verification.recoverable)
        XCTAssertTrue(verification.problems[0].contains("version 3"), verification.description)
    }

    func testJournalGapAfterSnapshotRefused() async throws {
        var options = StoreOptions()
        options.segmentSize = 150
        let (store, _) = try DurableStore.open(directory: directory, options: options)
        try await appendDurably(store, 1...30)
        _ = try await store.writeSnapshot(sequence: 5, payload: state(5))
        await store.close()
        // Remove the segment holding seq 6.
        let segments = segmentFiles(in: directory)
        let firsts = segments.map { UInt64($0.dropFirst(8).prefix(20))! }
        let holder = firsts.lastIndex { $0 <= 6 }!
        try FileManager.default.removeItem(atPath: directory + "/" + segments[holder])
        assertThrowsStoreError({ _ = try DurableStore.open(directory: self.directory, options: options) }) {
            if case .journalMissingAfterSnapshot(5, _) = $0 { return true }
            return false
        }
    }

    /// A snapshot and no journal at all (e.g. restored from a backup of the snapshot alone).
    func testSnapshotWithoutJournal() async throws {
        let (store, _) = try DurableStore.open(directory: directory)
        try await appendDurably(store, 1...3)
        _ = try await store.writeSnapshot(sequence: 3, payload: state(3))
        await store.close()
        for segment in segmentFiles(in: directory) { try FileManager.default.removeItem(atPath: directory + "/" + segment) }
        try writeBytes([1, 2, 3], to: directory + "/snapshot-00000000000000000009.snap.tmp")
        let (again, recovery) = try DurableStore.open(directory: directory)
        XCTAssertEqual(recovery.snapshot?.sequence, 3)
        XCTAssertEqual(recovery.nextSequence, 4)
        XCTAssertEqual(recovery.report.removedFiles.count, 1)
        let sequence = try await again.appendAndWait(payload(4))
        XCTAssertEqual(sequence, 4)
        await again.close()
        XCTAssertEqual(segmentFiles(in: directory), ["journal-00000000000000000004.log"])
        let final = try await reopen(directory)
        XCTAssertEqual(final.records.map(\.sequence), [4])
    }

    /// Appends keep flowing while the snapshot encoder runs.
    func testSnapshotDoesNotBlockAppends() async throws {
        let (store, _) = try DurableStore.open(directory: directory)
        try await appendDurably(store, 1...3)
        let encoderStarted = DispatchSemaphore(value: 0)
        let releaseEncoder = DispatchSemaphore(value: 0)
        async let snapshot = store.writeSnapshot(sequence: 3) {
            encoderStarted.signal()
            releaseEncoder.wait()
            return state(3)
        }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                encoderStarted.wait()
                done.resume()
            }
        }
        let sequence = try await store.appendAndWait(payload(4))
        XCTAssertEqual(sequence, 4)
        releaseEncoder.signal()
        let info = try await snapshot
        XCTAssertEqual(info.sequence, 3)
        await store.close()
    }
}

func state(_ sequence: UInt64) -> [UInt8] { Array("state-after-\(sequence)".utf8) }

final class ThreadNameBox: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: String?

    func record() {
        // The kernel's name of the calling thread.
        let comm = (try? String(contentsOfFile: "/proc/thread-self/comm", encoding: .utf8)) ?? ""
        let current = comm.trimmingCharacters(in: .whitespacesAndNewlines)
        lock.withLock { recorded = current }
    }

    var name: String? { lock.withLock { recorded } }
}
