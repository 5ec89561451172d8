@testable import CreditStore
import Foundation
import XCTest

final class RecoveryTests: StoreDirectoryTestCase {
    let headerSize = 32
    let recordHeaderSize = 16

    var firstSegment: String { directory + "/journal-00000000000000000001.log" }

    /// Cutting the last record at every byte offset loses only that record; the file is truncated
    /// back to the previous record's end and appending continues with the lost sequence number.
    func testTornTailTruncatedAtEveryOffset() async throws {
        try await populate(directory, count: 5)
        let original = try readBytes(firstSegment)
        let lastRecordSize = recordHeaderSize + payload(5).count
        let lastStart = original.count - lastRecordSize
        for cut in lastStart..<original.count {
            try writeBytes(Array(original[0..<cut]), to: firstSegment)
            let (store, recovery) = try DurableStore.open(directory: directory)
            XCTAssertEqual(recovery.records.map(\.sequence), [1, 2, 3, 4], "cut at \(cut)")
            XCTAssertEqual(recovery.records.last.map { Array($0.payload) }, payload(4))
            XCTAssertEqual(recovery.nextSequence, 5)
            if cut == lastStart {
                XCTAssertTrue(recovery.report.truncations.isEmpty)
            } else {
                XCTAssertEqual(recovery.report.truncations.count, 1)
                let truncation = try XCTUnwrap(recovery.report.truncations.first)
                XCTAssertEqual(truncation.segment, "journal-00000000000000000001.log")
                XCTAssertEqual(truncation.offset, Int64(lastStart))
                XCTAssertEqual(truncation.removedBytes, Int64(cut - lastStart))
                XCTAssertEqual(store.stats.tornTailTruncations, 1)
                XCTAssertTrue(recovery.report.messages.contains { $0.contains("byte \(lastStart)") })
            }
            XCTAssertEqual(try readBytes(firstSegment).count, lastStart)
            let sequence = try await store.appendAndWait(payload(5))
            XCTAssertEqual(sequence, 5)
            await store.close()
            XCTAssertEqual(try readBytes(firstSegment), original, "rewritten journal matches, cut at \(cut)")
        }
    }

    /// Issue 11, gap 2: a flipped byte inside the last complete record is corruption, not a torn
    /// write (etcd's rule): refuse to start and point to --repair, leaving the file alone. Only a
    /// flip that makes the length field reach past the end of the file looks like a short (torn)
    /// record and is truncated.
    func testFlippedByteInLastRecordIsCorruptionNotTornTail() async throws {
        try await populate(directory, count: 5)
        let original = try readBytes(firstSegment)
        let lastStart = original.count - (recordHeaderSize + payload(5).count)
        for offset in lastStart..<original.count {
            var damaged = original
            damaged[offset] ^= 0x04
            try writeBytes(damaged, to: firstSegment)
            let length = Int(damaged[lastStart]) | Int(damaged[lastStart + 1]) << 8
                | Int(damaged[lastStart + 2]) << 16 | Int(damaged[lastStart + 3]) << 24
            if lastStart + recordHeaderSize + length > original.count {
                let recovery = try await reopen(directory)
                XCTAssertEqual(recovery.records.map(\.sequence), [1, 2, 3, 4], "flip at \(offset)")
                XCTAssertEqual(recovery.report.truncations.first?.offset, Int64(lastStart))
                try writeBytes(original, to: firstSegment)
                continue
            }
            assertThrowsStoreError({ _ = try DurableStore.open(directory: self.directory) }) {
                guard case .corruptJournal(let segment, let at, let reason) = $0 else { return false }
                return segment == "journal-00000000000000000001.log" && at == Int64(lastStart)
                    && reason.contains("not a torn write") && $0.description.contains("--repair")
            }
            XCTAssertEqual(try readBytes(firstSegment), damaged, "refusing leaves the file alone (flip at \(offset))")
            let verification = try verifyStateDirectory(directory)
            XCTAssertFalse(verification.recoverable, verification.description)
            XCTAssertTrue(verification.description.contains("corrupt record at byte \(lastStart)"), verification.description)
        }
        // --repair keeps a copy and cuts the journal off at the corrupt record.
        var damaged = original
        damaged[lastStart + recordHeaderSize + 1] ^= 0x04
        try writeBytes(damaged, to: firstSegment)
        var options = StoreOptions()
        options.repair = true
        let repaired = try await reopen(directory, options: options)
        XCTAssertEqual(repaired.records.map(\.sequence), [1, 2, 3, 4])
        XCTAssertEqual(repaired.report.repairs.count, 1)
        XCTAssertEqual(repaired.report.severity, .error)
    }

    /// A last record whose bytes are zero from a sector boundary to the end of the file was cut
    /// short by a crash (the file grew, the data never arrived): torn, truncated.
    func testZeroFilledLastRecordIsTorn() async throws {
        let (store, _) = try DurableStore.open(directory: directory)
        for index in UInt64(1)...3 { _ = try await store.appendAndWait(payload(index)) }
        _ = try await store.appendAndWait([UInt8](repeating: 0x33, count: 2000))
        await store.close()
        let original = try readBytes(firstSegment)
        let lastStart = original.count - (recordHeaderSize + 2000)
        let sector = (lastStart / 512 + 2) * 512
        var damaged = original
        for index in sector..<damaged.count { damaged[index] = 0 }
        try writeBytes(damaged, to: firstSegment)
        let recovery = try await reopen(directory)
        XCTAssertEqual(recovery.records.map(\.sequence), [1, 2, 3])
        XCTAssertEqual(recovery.report.truncations.first?.offset, Int64(lastStart))
        XCTAssertEqual(recovery.report.severity, .warning)

        // The same zeros, but not reaching the end of the file: corruption.
        damaged = original
        for index in sector..<(sector + 512) { damaged[index] = 0 }
        try writeBytes(damaged, to: firstSegment)
        assertThrowsStoreError({ _ = try DurableStore.open(directory: self.directory) }) {
            if case .corruptJournal(_, let at, _) = $0 { return at == Int64(lastStart) }
            return false
        }
    }

    /// Issue 11, gap 3: deleting the newest segment is noticed, because the one before it is
    /// sealed and names it; --repair accepts the loss and continues at the missing sequence.
    func testMissingNewestSegmentRefused() async throws {
        var options = StoreOptions()
        options.segmentSize = 120
        try await populate(directory, count: 12, options: options)
        let segments = segmentFiles(in: directory)
        XCTAssertGreaterThan(segments.count, 2)
        let newest = segments.last!
        let newestFirst = UInt64(newest.dropFirst(8).prefix(20))!
        try FileManager.default.removeItem(atPath: directory + "/" + newest)
        assertThrowsStoreError({ _ = try DurableStore.open(directory: self.directory, options: options) }) {
            $0 == .missingSegment(sealedSegment: segments[segments.count - 2], expectedFirstSequence: newestFirst)
                && $0.description.contains("--repair") && $0.description.contains(newest)
        }
        let verification = try verifyStateDirectory(directory)
        XCTAssertFalse(verification.recoverable)
        XCTAssertTrue(verification.description.contains("\(newest) is missing"), verification.description)

        options.repair = true
        let (store, recovery) = try DurableStore.open(directory: directory, options: options)
        XCTAssertEqual(recovery.records.map(\.sequence), Array(1..<newestFirst))
        XCTAssertEqual(recovery.nextSequence, newestFirst)
        XCTAssertEqual(recovery.report.severity, .error)
        XCTAssertEqual(store.stats.repairs, 1)
        let appended = try await store.appendAndWait(payload(newestFirst))
        XCTAssertEqual(appended, newestFirst)
        await store.close()
        XCTAssertEqual(segmentFiles(in: directory).last, newest)
        let after = try await reopen(directory)
        XCTAssertEqual(after.records.map(\.sequence), Array(1...newestFirst))
        XCTAssertTrue(try verifyStateDirectory(directory).isClean)
    }

    /// The repair of a missing newest segment holds even when nothing is written before the
    /// daemon stops: the segment that continues the journal is made at the repair, not at the
    /// first append, so the next start without --repair finds no sealed segment without successor.
    func testRepairOfAMissingSegmentHoldsWithoutAWrite() async throws {
        var options = StoreOptions()
        options.segmentSize = 120
        try await populate(directory, count: 12, options: options)
        let newest = segmentFiles(in: directory).last!
        let newestFirst = UInt64(newest.dropFirst(8).prefix(20))!
        try FileManager.default.removeItem(atPath: directory + "/" + newest)

        options.repair = true
        let (store, _) = try DurableStore.open(directory: directory, options: options)
        await store.close()
        XCTAssertEqual(segmentFiles(in: directory).last, newest, "the successor exists again, empty")
        options.repair = false
        let (again, recovery) = try DurableStore.open(directory: directory, options: options)
        XCTAssertEqual(recovery.nextSequence, newestFirst)
        XCTAssertEqual(recovery.report.repairs, [])
        let appended = try await again.appendAndWait(payload(newestFirst))
        XCTAssertEqual(appended, newestFirst)
        await again.close()
        XCTAssertTrue(try verifyStateDirectory(directory).isClean)
    }

    /// The same for a segment in the middle that is gone or has a bad header: repair moves it
    /// and every later one aside, and the sealed segment before them names a successor that is
    /// no longer there. That successor is made at the repair too; it used to wait for the first
    /// append, and the next start without --repair refused over the same sealed segment.
    func testRepairOfADamagedMiddleSegmentHoldsWithoutAWrite() async throws {
        for damage in ["missing", "bad header"] {
            try? FileManager.default.removeItem(atPath: directory)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var options = StoreOptions()
            options.segmentSize = 120
            try await populate(directory, count: 12, options: options)
            let segments = segmentFiles(in: directory)
            XCTAssertGreaterThan(segments.count, 2)
            let middle = segments[1]
            let middleFirst = UInt64(middle.dropFirst(8).prefix(20))!
            if damage == "missing" {
                try FileManager.default.removeItem(atPath: directory + "/" + middle)
            } else {
                var bytes = try readBytes(directory + "/" + middle)
                bytes[24] ^= 0xFF  // the header's CRC32C
                try writeBytes(bytes, to: directory + "/" + middle)
            }
            options.repair = true
            let (store, repaired) = try DurableStore.open(directory: directory, options: options)
            XCTAssertEqual(repaired.nextSequence, middleFirst, damage)
            await store.close()
            options.repair = false
            let (again, recovery) = try DurableStore.open(directory: directory, options: options)
            XCTAssertEqual(recovery.nextSequence, middleFirst, damage)
            XCTAssertEqual(recovery.report.repairs, [], damage)
            let appended = try await again.appendAndWait(payload(middleFirst))
            XCTAssertEqual(appended, middleFirst, damage)
            await again.close()
            XCTAssertTrue(try verifyStateDirectory(directory).isClean, damage)
        }
    }

    /// A crash while a full segment was being sealed: the successor exists but holds nothing yet,
    /// and the seal is torn. That is a torn tail, truncated; appending continues in the successor.
    func testTornSealBeforeEmptySuccessorIsTruncated() async throws {
        var options = StoreOptions()
        options.segmentSize = 120
        try await populate(directory, count: 12, options: options)
        let segments = segmentFiles(in: directory)
        let sealed = directory + "/" + segments[segments.count - 2]
        let newest = directory + "/" + segments.last!
        let newestFirst = UInt64(segments.last!.dropFirst(8).prefix(20))!
        try writeBytes(Array(try readBytes(newest).prefix(headerSize)), to: newest)
        let sealedBytes = try readBytes(sealed)
        try writeBytes(Array(sealedBytes.dropLast(20)), to: sealed)
        let (store, recovery) = try DurableStore.open(directory: directory, options: options)
        XCTAssertEqual(recovery.records.last?.sequence, newestFirst - 1)
        XCTAssertEqual(recovery.report.truncations.map(\.segment), [segments[segments.count - 2]])
        XCTAssertEqual(try readBytes(sealed).count, sealedBytes.count - 32)
        let appended = try await store.appendAndWait(payload(newestFirst))
        XCTAssertEqual(appended, newestFirst)
        await store.close()
        XCTAssertEqual(segmentFiles(in: directory), segments)
        let after = try await reopen(directory, options: options)
        XCTAssertEqual(after.records.last?.sequence, newestFirst)
    }

    /// Issue 11, gap 4: recovery problems come with a severity for the log and are counted.
    func testRecoveryProblemsAreWarningsAndCounted() async throws {
        let (store, clean) = try DurableStore.open(directory: directory)
        XCTAssertEqual(clean.report.severity, .info)
        XCTAssertEqual(clean.report.events.map(\.kind), [.noSnapshot], "a new directory has no snapshot to start from")
        for index in UInt64(1)...6 { _ = try await store.appendAndWait(payload(index)) }
        _ = try await store.writeSnapshot(sequence: 3, payload: state(3))
        _ = try await store.writeSnapshot(sequence: 6, payload: state(6))
        _ = try await store.appendAndWait(payload(7))
        await store.close()

        try flipBit(in: directory + "/snapshot-00000000000000000006.snap", at: 50)
        let bytes = try readBytes(firstSegment)
        try writeBytes(Array(bytes.dropLast(2)), to: firstSegment)
        try writeBytes([1, 2], to: directory + "/snapshot-00000000000000000009.snap.tmp")
        let (again, recovery) = try DurableStore.open(directory: directory)
        let report = recovery.report
        XCTAssertEqual(report.severity, .warning)
        XCTAssertEqual(report.events.map(\.kind), [.snapshotUsed, .snapshotSkipped, .tailTruncated, .leftoverRemoved])
        XCTAssertEqual(report.events.map(\.severity), [.info, .warning, .warning, .notice])
        XCTAssertEqual(report.messages.count, 4)
        let stats = again.stats
        XCTAssertEqual(stats.skippedSnapshots, 1)
        XCTAssertEqual(stats.tornTailTruncations, 1)
        XCTAssertEqual(stats.repairs, 0)
        XCTAssertEqual(stats.recoveryWarnings, 2)
        await again.close()
    }

    /// (Zeros after the last record are space written ahead, not garbage: `ZeroFillTests`.)
    func testGarbageAfterLastRecordIsTruncated() async throws {
        try await populate(directory, count: 3)
        let original = try readBytes(firstSegment)
        try writeBytes(original + [UInt8](repeating: 0xFF, count: 4096), to: firstSegment)
        let recovery = try await reopen(directory)
        XCTAssertEqual(recovery.records.count, 3)
        XCTAssertEqual(recovery.report.truncations.first?.removedBytes, 4096)
        XCTAssertEqual(try readBytes(firstSegment), original)
    }

    /// Damage followed by valid records is not a torn tail: refuse; repair keeps a copy and truncates.
    func testMidJournalCorruptionRefusedThenRepaired() async throws {
        try await populate(directory, count: 10)
        let original = try readBytes(firstSegment)
        var offset = headerSize
        for index in UInt64(1)..<5 { offset += recordHeaderSize + payload(index).count }
        let fifthRecord = offset
        try flipBit(in: firstSegment, at: fifthRecord + recordHeaderSize + 2)
        let damaged = try readBytes(firstSegment)

        assertThrowsStoreError({ _ = try DurableStore.open(directory: self.directory) }) {
            guard case .corruptJournal(let segment, let at, _) = $0 else { return false }
            return segment == "journal-00000000000000000001.log" && at == Int64(fifthRecord)
        }
        XCTAssertEqual(try readBytes(firstSegment), damaged, "refusing leaves the file alone")
        let verification = try verifyStateDirectory(directory)
        XCTAssertFalse(verification.recoverable)
        XCTAssertEqual(verification.segments.first?.records, 4)
        XCTAssertTrue(verification.description.contains("NOT RECOVERABLE"))

        var options = StoreOptions()
        options.repair = true
        // A disk too full for the copy: the repair stops, the segment stays as it was, and no
        // empty or partial copy is left to pass for a kept one.
        let full = FaultInjectingFileOperations(pathSuffix: "")   // every file: the copy too
        full.failWrites(afterBytes: 10, errno: ENOSPC)
        var fullOptions = options
        fullOptions.fileOperations = full
        XCTAssertThrowsError(try DurableStore.open(directory: directory, options: fullOptions))
        XCTAssertEqual(try readBytes(firstSegment), damaged)
        XCTAssertEqual(files(in: directory).filter { $0.contains(".corrupt-") }, [])

        let (store, recovery) = try DurableStore.open(directory: directory, options: options)
        XCTAssertEqual(recovery.records.map(\.sequence), [1, 2, 3, 4])
        XCTAssertEqual(recovery.nextSequence, 5)
        XCTAssertEqual(recovery.report.repairs.count, 1)
        let copies = files(in: directory).filter { $0.hasPrefix("journal-00000000000000000001.log.corrupt-") }
        XCTAssertEqual(copies.count, 1)
        // verify-state names the kept copy (and anything else recovery ignores).
        XCTAssertTrue(FileManager.default.createFile(atPath: directory + "/notes.txt", contents: Data("x".utf8)))
        XCTAssertEqual(try verifyStateDirectory(directory).otherFiles, [copies[0], "notes.txt"])
        XCTAssertTrue(try verifyStateDirectory(directory).description
            .contains("other files (recovery ignores them): \(copies[0]), notes.txt"))
        XCTAssertEqual(try readBytes(directory + "/" + copies[0]), damaged)
        XCTAssertEqual(try readBytes(firstSegment), Array(original[0..<fifthRecord]))
        _ = try await store.appendAndWait(payload(5))
        await store.close()
        let after = try await reopen(directory)
        XCTAssertEqual(after.records.map(\.sequence), [1, 2, 3, 4, 5])
    }

    /// Damage in records the snapshot already holds, in the segment that goes on past the
    /// snapshot, is read past with a warning: nothing it held is replayed. Before, the start
    /// was refused, and `--repair` cut the segment at the damage, losing every acknowledged
    /// change after the snapshot though they were intact. Damage that may hold the first record
    /// after the snapshot is still refused.
    func testDamageTheSnapshotCoversIsReadPast() async throws {
        let (store, _) = try DurableStore.open(directory: directory)
        for index in UInt64(1)...10 { _ = try await store.appendAndWait(payload(index)) }
        _ = try await store.writeSnapshot(sequence: 6, payload: state(6))
        await store.close()
        func recordOffset(_ sequence: UInt64) -> Int {
            var offset = headerSize
            for index in UInt64(1)..<sequence { offset += recordHeaderSize + payload(index).count }
            return offset
        }
        let intact = try readBytes(firstSegment)

        // Record 7, the first one after the snapshot: refused as before.
        try flipBit(in: firstSegment, at: recordOffset(7) + recordHeaderSize + 2)
        assertThrowsStoreError({ _ = try DurableStore.open(directory: self.directory) }) {
            guard case .corruptJournal(_, let at, _) = $0 else { return false }
            return at == Int64(recordOffset(7))
        }
        try writeBytes(intact, to: firstSegment)

        // Records 5 and 6 (the snapshot's own): read past.
        try flipBit(in: firstSegment, at: recordOffset(5) + recordHeaderSize + 2)
        try flipBit(in: firstSegment, at: recordOffset(6) + 3)
        let damaged = try readBytes(firstSegment)
        let verification = try verifyStateDirectory(directory)
        XCTAssertTrue(verification.recoverable, verification.description)
        XCTAssertTrue(verification.warnings.contains { $0.contains("holding seq 5...6, all covered by the snapshot at seq 6") },
                      verification.description)
        // The segment's own line says why its range holds fewer records than it spans.
        XCTAssertEqual(verification.segments.first?.records, 8)
        XCTAssertEqual(verification.segments.first?.coveredDamage,
                       [CoveredDamage(bytes: recordOffset(5)..<recordOffset(7), sequences: 5...6)])
        let segmentLine = verification.description.split(separator: "\n").first { $0.contains("segment journal-") } ?? ""
        XCTAssertTrue(segmentLine.contains("seq 1...10, 8 records"), String(segmentLine))
        XCTAssertTrue(segmentLine.contains("damaged bytes \(recordOffset(5))..<\(recordOffset(7)) read past "
                                           + "(seq 5...6, covered by the snapshot)"), String(segmentLine))
        let (again, recovery) = try DurableStore.open(directory: directory)
        XCTAssertEqual(recovery.snapshot?.sequence, 6)
        XCTAssertEqual(recovery.records.map(\.sequence), [7, 8, 9, 10], "every change after the snapshot")
        XCTAssertEqual(recovery.records.map(\.payload).map(Array.init), (UInt64(7)...10).map(payload))
        XCTAssertEqual(recovery.report.severity, .warning)
        XCTAssertEqual(again.stats.recoveryWarnings, 1)
        XCTAssertEqual(again.stats.repairs, 0)
        XCTAssertEqual(try readBytes(firstSegment), damaged, "nothing on disk is changed")
        _ = try await again.appendAndWait(payload(11))
        await again.close()
        let after = try await reopen(directory)
        XCTAssertEqual(after.records.map(\.sequence), [7, 8, 9, 10, 11], "appends go after the last record")
    }

    /// Records cut out of a segment (not damaged: gone) that the snapshot covers are read past
    /// too, and the segment's line says they are missing rather than naming an empty range
    /// of damaged bytes.
    func testMissingRecordsTheSnapshotCoversAreNamedAsMissing() async throws {
        let (store, _) = try DurableStore.open(directory: directory)
        for index in UInt64(1)...10 { _ = try await store.appendAndWait(payload(index)) }
        _ = try await store.writeSnapshot(sequence: 6, payload: state(6))
        await store.close()
        var fifth = headerSize
        for index in UInt64(1)...4 { fifth += recordHeaderSize + payload(index).count }
        let bytes = try readBytes(firstSegment)
        try writeBytes(Array(bytes[..<fifth]) + Array(bytes[(fifth + recordHeaderSize + payload(5).count)...]), to: firstSegment)

        let verification = try verifyStateDirectory(directory)
        XCTAssertTrue(verification.recoverable, verification.description)
        let segmentLine = verification.description.split(separator: "\n").first { $0.contains("segment journal-") } ?? ""
        XCTAssertTrue(segmentLine.contains("seq 5...5 missing at byte \(fifth) (covered by the snapshot)"), String(segmentLine))
        XCTAssertFalse(segmentLine.contains("damaged bytes"), String(segmentLine))
        XCTAssertTrue(verification.warnings.contains { $0.contains("seq 5...5 missing at byte \(fifth)") }, verification.description)
        let (_, recovery) = try DurableStore.open(directory: directory)
        XCTAssertEqual(recovery.records.map(\.sequence), [7, 8, 9, 10])
    }

    /// Bytes inside a damaged record that form a well-formed record (free text may hold any
    /// bytes) never pass for the records after it. A review built such a record 7, holding a
    /// valid "record 7" in its payload, and flipped a bit of its CRC: with the snapshot at 6 the
    /// start replayed the inner record as seq 7. With the inner record claiming seq 8 and the
    /// snapshot at 7, reading on from it meets the real record 8 out of sequence. Both are
    /// refused, as all damage was before covered damage was read past.
    func testARecordInsideDamagedBytesIsNeverReadAsTheNextOne() async throws {
        for (snapshot, inner) in [(UInt64(6), UInt64(7)), (7, 8)] {
            let directory = self.directory + "/snapshot-\(snapshot)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var innerRecord: [UInt8] = []
            StoreFormat.appendRecord(sequence: inner, payload: Array("forged".utf8), to: &innerRecord)
            let (store, _) = try DurableStore.open(directory: directory)
            for index in UInt64(1)...6 { _ = try await store.appendAndWait(payload(index)) }
            _ = try await store.appendAndWait(Array("customer:".utf8) + innerRecord)
            for index in UInt64(8)...10 { _ = try await store.appendAndWait(payload(index)) }
            _ = try await store.writeSnapshot(sequence: snapshot, payload: state(snapshot))
            await store.close()
            var seventh = headerSize
            for index in UInt64(1)...6 { seventh += recordHeaderSize + payload(index).count }
            try flipBit(in: directory + "/journal-00000000000000000001.log", at: seventh + 4)  // its CRC

            assertThrowsStoreError({ _ = try DurableStore.open(directory: directory) }) {
                guard case .corruptJournal(_, let at, _) = $0 else { return false }
                return at == Int64(seventh)
            }
            XCTAssertFalse(try verifyStateDirectory(directory).recoverable, "snapshot at \(snapshot)")
        }
    }

    /// A bad last record in a segment that is followed by another segment is mid-journal damage.
    func testCorruptionAtEndOfNonLastSegmentRefused() async throws {
        var options = StoreOptions()
        options.segmentSize = 120
        try await populate(directory, count: 12, options: options)
        let segments = segmentFiles(in: directory)
        XCTAssertGreaterThan(segments.count, 2)
        let first = directory + "/" + segments[0]
        let size = try readBytes(first).count
        try flipBit(in: first, at: size - 1)
        assertThrowsStoreError({ _ = try DurableStore.open(directory: self.directory, options: options) }) {
            if case .corruptJournal(let segment, _, _) = $0 { return segment == segments[0] }
            return false
        }

        options.repair = true
        let recovery = try await reopen(directory, options: options)
        let moved = files(in: directory).filter { $0.contains(".corrupt-") }
        XCTAssertEqual(moved.count, segments.count, "one copy of the damaged segment plus every later segment")
        XCTAssertEqual(recovery.records.last?.sequence, recovery.nextSequence - 1)
        XCTAssertEqual(segmentFiles(in: directory), [segments[0]])
    }

    func testSequenceGapBetweenSegmentsRefused() async throws {
        var options = StoreOptions()
        options.segmentSize = 120
        try await populate(directory, count: 12, options: options)
        let segments = segmentFiles(in: directory)
        try FileManager.default.removeItem(atPath: directory + "/" + segments[1])
        assertThrowsStoreError({ _ = try DurableStore.open(directory: self.directory, options: options) }) {
            if case .sequenceGap(let segment, _, _) = $0 { return segment == segments[2] }
            return false
        }
        XCTAssertFalse(try verifyStateDirectory(directory).recoverable)
    }

    func testJournalStartingAfterOneWithoutSnapshotRefused() async throws {
        var options = StoreOptions()
        options.segmentSize = 120
        try await populate(directory, count: 12, options: options)
        try FileManager.default.removeItem(atPath: directory + "/" + segmentFiles(in: directory)[0])
        assertThrowsStoreError({ _ = try DurableStore.open(directory: self.directory, options: options) }) {
            if case .missingSnapshot = $0 { return true }
            return false
        }
        // Repair cannot invent the missing history either.
        options.repair = true
        assertThrowsStoreError({ _ = try DurableStore.open(directory: self.directory, options: options) }) {
            if case .missingSnapshot = $0 { return true }
            return false
        }
    }

    func testUnknownSegmentVersionRefused() async throws {
        try await populate(directory, count: 3)
        var bytes = try readBytes(firstSegment)
        bytes[8] = 9  // version u32 little-endian at offset 8
        try writeBytes(bytes, to: firstSegment)
        assertThrowsStoreError({ _ = try DurableStore.open(directory: self.directory) }) {
            $0 == .unsupportedVersion(file: "journal-00000000000000000001.log", version: 9, supported: 3)
        }
        XCTAssertTrue(StoreError.unsupportedVersion(file: "x", version: 9, supported: 1).description.contains("version 9"))
        var options = StoreOptions()
        options.repair = true
        assertThrowsStoreError({ _ = try DurableStore.open(directory: self.directory, options: options) }) {
            if case .unsupportedVersion = $0 { return true }
            return false
        }
    }

    /// A crash while creating a segment leaves a file shorter than its header: removed at open.
    func testSegmentTornDuringCreationRemoved() async throws {
        try await populate(directory, count: 3)
        let torn = directory + "/journal-00000000000000000004.log"
        try writeBytes(Array("CREDJR".utf8), to: torn)
        let (store, recovery) = try DurableStore.open(directory: directory)
        XCTAssertEqual(recovery.records.count, 3)
        XCTAssertEqual(recovery.report.removedFiles.count, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: torn))
        let sequence = try await store.appendAndWait(payload(4))
        XCTAssertEqual(sequence, 4)
        await store.close()
        let after = try await reopen(directory)
        XCTAssertEqual(after.records.count, 4)
    }

    func testVerifyReportsWithoutModifying() async throws {
        var options = StoreOptions()
        options.segmentSize = 150
        try await populate(directory, count: 10, options: options)
        let healthy = try verifyStateDirectory(directory)
        XCTAssertTrue(healthy.isClean, healthy.description)
        XCTAssertEqual(healthy.recordCount, 10)
        XCTAssertEqual(healthy.firstSequence, 1)
        XCTAssertEqual(healthy.lastSequence, 10)
        XCTAssertEqual(healthy.nextSequence, 11)
        XCTAssertEqual(healthy.segments.count, segmentFiles(in: directory).count)
        XCTAssertFalse(healthy.inUse)

        let last = directory + "/" + segmentFiles(in: directory).last!
        let bytes = try readBytes(last)
        try writeBytes(Array(bytes.dropLast(3)), to: last)
        let torn = try verifyStateDirectory(directory)
        XCTAssertTrue(torn.recoverable)
        XCTAssertFalse(torn.isClean)
        XCTAssertEqual(torn.recordCount, 9)
        XCTAssertTrue(torn.warnings.contains { $0.contains("torn tail") }, torn.description)
        XCTAssertEqual(try readBytes(last).count, bytes.count - 3, "verification is read-only")

        let (store, _) = try DurableStore.open(directory: directory, options: options)
        XCTAssertTrue(try verifyStateDirectory(directory).inUse)
        await store.close()
    }
}
