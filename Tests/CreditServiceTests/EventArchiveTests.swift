import CreditDomain
import CreditStore
import CreditTestSupport
import Foundation
import Logging
import XCTest

@testable import CreditService

/// The file store's event archive: snapshots move sealed event chunks into archive files and
/// name their blocks; recovery reads them back; what no snapshot names is discarded.
final class EventArchiveTests: XCTestCase {
    /// A state with more than two sealed chunks of events (creates and seat decreases).
    func makeState(_ directory: String) async throws -> (CreditApplication, Ledger) {
        let application = try StateGoldenTests.open(directory)
        for index in 0..<700 {
            _ = try await application.writer.execute(LedgerWriterTests.create("arch-\(index)", seats: 10), callerUID: 1000)
            _ = try await application.writer.execute(LedgerWriterTests.seats("arch-\(index)", 9), callerUID: 1000)
        }
        let ledger = try await StateGoldenTests.ledger(application)
        XCTAssertGreaterThan(ledger.eventCount, 2 * EventFeed.chunkSize)
        return (application, ledger)
    }

    /// Flips one bit of the byte at `offset` (negative: from the end) of the file at `path`.
    func flipBit(in path: String, at offset: Int) throws {
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[offset >= 0 ? offset : bytes.count + offset] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    func archiveFiles(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("events-") }.sorted()
    }

    /// Archived chunks are a prefix of the sealed ones: the count of resident chunks (which
    /// the background pass checks every few hundred records) is found by a binary search, and
    /// an archiving pass starts where the prefix ends.
    func testResidentChunksAreTheChunksAfterTheArchivedPrefix() async throws {
        let directory = try makeTemporaryDirectory("archive-prefix").path
        let (application, ledger) = try await makeState(directory)
        await StateGoldenTests.close(application)
        let chunks = ledger.feed.sealedChunks
        XCTAssertGreaterThanOrEqual(chunks.count, 2)
        XCTAssertEqual(EventArchiver.firstResident(in: chunks), 0)
        XCTAssertEqual(EventArchiver.residentChunks(of: chunks), chunks.count)
        XCTAssertEqual(EventArchiver.firstResident(in: []), 0)

        let archiver = EventArchiver(files: EventArchiveFiles(directory: try makeTemporaryDirectory("archive-files").path))
        var released = 0
        XCTAssertEqual(try archiver.archive(Array(chunks.prefix(1)), sync: false) { released += $0.count }, 1)
        XCTAssertEqual(released, EventFeed.chunkSize, "the events come back to the caller to free")
        XCTAssertEqual(EventArchiver.firstResident(in: chunks), 1)
        XCTAssertEqual(EventArchiver.residentChunks(of: chunks), chunks.count - 1)
        // A pass over all of them moves only the rest.
        XCTAssertEqual(try archiver.archive(chunks, sync: false), chunks.count - 1)
        XCTAssertEqual(EventArchiver.residentChunks(of: chunks), 0)
        XCTAssertEqual(EventArchiver.firstResident(in: chunks), chunks.count)
        XCTAssertEqual(try chunks[0].events().first?.seq, chunks[0].firstSeq, "archived events read back")
    }

    func testSnapshotArchivesSealedChunksAndRecoveryReadsThemBack() async throws {
        let directory = try makeTemporaryDirectory("archive").path
        var (application, expected) = try await makeState(directory)
        XCTAssertEqual(try archiveFiles(directory), [])
        _ = try await application.takeSnapshot()
        XCTAssertEqual(try archiveFiles(directory).count, 1)
        let afterSnapshot = try await StateGoldenTests.ledger(application)
        XCTAssertEqual(EventArchiver.residentChunks(of: afterSnapshot), 0, "every sealed chunk left memory")
        XCTAssertEqual(EventArchiver.blocks(of: afterSnapshot).count, afterSnapshot.eventCount / EventFeed.chunkSize)
        XCTAssertEqual(try afterSnapshot.events, try expected.events)
        // More events after the snapshot, in the journal only.
        _ = try await application.writer.execute(LedgerWriterTests.seats("arch-1", 8), callerUID: 1000)
        expected = try await StateGoldenTests.ledger(application)
        await StateGoldenTests.close(application)

        application = try StateGoldenTests.open(directory)
        let recovered = try await StateGoldenTests.ledger(application)
        XCTAssertGreaterThan(EventArchiver.blocks(of: recovered).count, 1, "the snapshot names blocks")
        XCTAssertEqual(recovered, expected)
        XCTAssertEqual(try recovered.events, try expected.events)
        let page = try recovered.listEvents(afterSeq: 5, limit: 1_000)
        XCTAssertEqual(page.events.map(\.seq), Array(6...1_005))
        XCTAssertTrue(recovered.eventsStartInArchive(after: 5))
        XCTAssertFalse(recovered.eventsStartInArchive(after: Int64(recovered.lastEventSeq) - 1))
        await StateGoldenTests.close(application)
    }

    /// The archive keeps the blocks of the snapshots the store keeps: the newest and the one it
    /// falls back to. A second snapshot at the same sequence replaces the first, and the
    /// fallback stays the one before both (it was the first one's blocks that were kept, and
    /// the fallback's archive files could be deleted).
    func testTheArchiveKeepsTheBlocksOfTheSnapshotTheStoreFallsBackTo() {
        func block(_ file: UInt64) -> EventArchiveFiles.Block { .init(file: file, offset: 0, length: 1) }
        var kept = [(sequence: UInt64(10), blocks: [block(1)])]
        kept = EventArchiver.snapshotsKept(kept, after: (20, [block(2)]))
        XCTAssertEqual(kept.map(\.sequence), [10, 20])
        kept = EventArchiver.snapshotsKept(kept, after: (20, [block(3)]))
        XCTAssertEqual(kept.map(\.sequence), [10, 20], "the same sequence again: the fallback stays seq 10")
        XCTAssertEqual(kept.flatMap(\.blocks).map(\.file), [1, 3])
        kept = EventArchiver.snapshotsKept(kept, after: (30, [block(4)]))
        XCTAssertEqual(kept.map(\.sequence), [20, 30])
        XCTAssertEqual(kept.flatMap(\.blocks).map(\.file), [3, 4])
    }

    /// After a failed fdatasync the kernel may have dropped the dirty pages, so a later sync that
    /// succeeds proves nothing: the failure stays, and no snapshot names an archive block again
    /// in this process.
    func testAFailedArchiveSyncIsNeverRetried() throws {
        let operations = FaultInjectingFileOperations(pathSuffix: ".arch")
        let files = EventArchiveFiles(directory: try makeTemporaryDirectory("archive-sync").path, operations: operations)
        _ = try files.append(firstSeq: 1, payload: [1, 2, 3])
        operations.failSyncs(errno: EIO)
        XCTAssertThrowsError(try files.sync())
        operations.failSyncs(errno: nil)
        _ = try files.append(firstSeq: 1_025, payload: [4, 5])
        XCTAssertThrowsError(try files.sync()) { error in
            XCTAssertEqual((error as? FileOperationError)?.errno, EIO, "the first failure, again: \(error)")
        }
        XCTAssertEqual(operations.dataSyncCount, 0, "no fdatasync after the failed one")
    }

    func testADamagedArchiveBlockIsAnErrorNotWrongEvents() async throws {
        let directory = try makeTemporaryDirectory("archive-damaged").path
        let (application, _) = try await makeState(directory)
        _ = try await application.takeSnapshot()
        await StateGoldenTests.close(application)
        let path = directory + "/" + (try archiveFiles(directory)[0])
        try flipBit(in: path, at: 200)

        let reopened = try StateGoldenTests.open(directory)
        let recovered = try await StateGoldenTests.ledger(reopened)
        XCTAssertThrowsError(try recovered.listEvents(afterSeq: 0, limit: 10)) { error in
            XCTAssertTrue(error is EventArchiveReadError, "\(error)")
            XCTAssertTrue("\(error)".contains("damaged"), "\(error)")
        }
        await StateGoldenTests.close(reopened)
    }

    /// verify-state reads every archive block: a healthy archive is listed, a damaged block is
    /// a warning naming the file and the offset.
    func testVerifyStateChecksTheArchive() async throws {
        let directory = try makeTemporaryDirectory("archive-verify").path
        let (application, expected) = try await makeState(directory)
        _ = try await application.takeSnapshot()
        await StateGoldenTests.close(application)
        let healthy = try verifyStateDirectory(directory)
        XCTAssertTrue(healthy.isClean, healthy.description)
        XCTAssertEqual(healthy.archiveFiles.count, 1)
        XCTAssertEqual(healthy.archiveFiles[0].blocks, expected.eventCount / EventFeed.chunkSize)
        XCTAssertEqual(healthy.archiveFiles[0].firstSeq, 1)
        XCTAssertTrue(healthy.description.contains("event archive events-"), healthy.description)

        let path = directory + "/" + (try archiveFiles(directory)[0])
        try flipBit(in: path, at: -10)
        let damaged = try verifyStateDirectory(directory)
        XCTAssertTrue(damaged.recoverable, "a damaged block does not stop a start")
        XCTAssertNotNil(damaged.archiveFiles[0].problem)
        XCTAssertTrue(damaged.warnings.contains { $0.contains("is damaged") && $0.contains("DATA_LOSS") }, damaged.description)
    }

    func testAMissingArchiveFileRefusesToStart() async throws {
        let directory = try makeTemporaryDirectory("archive-missing").path
        let (application, _) = try await makeState(directory)
        _ = try await application.takeSnapshot()
        await StateGoldenTests.close(application)
        try FileManager.default.removeItem(atPath: directory + "/" + (try archiveFiles(directory)[0]))
        XCTAssertThrowsError(try StateGoldenTests.open(directory)) { error in
            XCTAssertTrue("\(error)".contains("archived events are missing"), "\(error)")
        }
    }

    func testArchiveFilesNoSnapshotNamesAreDiscarded() async throws {
        let directory = try makeTemporaryDirectory("archive-unreferenced").path
        let (application, expected) = try await makeState(directory)
        await StateGoldenTests.close(application)
        // Left by a run that archived events and stopped before its snapshot.
        let stray = directory + "/" + EventArchiveFiles.fileName(1)
        try Data("not an archive".utf8).write(to: URL(fileURLWithPath: stray))
        try Data().write(to: URL(fileURLWithPath: stray + ".tmp"))

        let reopened = try StateGoldenTests.open(directory)
        XCTAssertEqual(try archiveFiles(directory), [])
        let recovered = try await StateGoldenTests.ledger(reopened)
        XCTAssertEqual(recovered, expected)
        // The next snapshot archives the events again.
        _ = try await reopened.takeSnapshot()
        XCTAssertEqual(try archiveFiles(directory), [EventArchiveFiles.fileName(1)])
        await StateGoldenTests.close(reopened)
        let again = try StateGoldenTests.open(directory)
        let recoveredAgain = try await StateGoldenTests.ledger(again)
        XCTAssertEqual(recoveredAgain, expected)
        await StateGoldenTests.close(again)
    }

    /// A journal tail long enough for recovery to archive as it replays (16 writers, 10,000
    /// records, over twelve chunks of events), closed without a snapshot.
    func makeLongTail(_ directory: String) async throws -> Ledger {
        let application = try StateGoldenTests.open(directory)
        let writer = application.writer
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<16 {
                group.addTask {
                    for index in stride(from: worker, to: 5_000, by: 16) {
                        _ = try await writer.execute(LedgerWriterTests.create("replay-\(index)", seats: 10), callerUID: 1000)
                        _ = try await writer.execute(LedgerWriterTests.seats("replay-\(index)", 9), callerUID: 1000)
                    }
                }
            }
            try await group.waitForAll()
        }
        let expected = try await StateGoldenTests.ledger(application)
        XCTAssertGreaterThan(expected.eventCount, 12 * EventFeed.chunkSize)
        await StateGoldenTests.close(application)
        XCTAssertEqual(try archiveFiles(directory), [])
        return expected
    }

    /// Recovery archives sealed chunks while it replays a long journal tail (on a thread of its
    /// own), so the tail's events do not all stay in memory; what it archived reads back exactly.
    /// A later start takes those blocks as they are (no snapshot names them yet) instead of
    /// building and archiving their events again, and recovers the same events.
    func testALongReplayArchivesAsItGoesAndALaterStartAdoptsTheBlocks() async throws {
        let directory = try makeTemporaryDirectory("archive-replay").path
        let expected = try await makeLongTail(directory)

        let first = try StateGoldenTests.open(directory)
        XCTAssertEqual(first.adoptedEventChunks, 0)
        XCTAssertFalse(try archiveFiles(directory).isEmpty, "archived during the replay")
        let recovered = try await StateGoldenTests.ledger(first)
        let archived = EventArchiver.blocks(of: recovered)
        XCTAssertGreaterThan(archived.count, 0)
        XCTAssertEqual(recovered, expected)
        XCTAssertEqual(try recovered.events, try expected.events)
        await StateGoldenTests.close(first)

        for _ in 0..<2 {
            let again = try StateGoldenTests.open(directory)
            XCTAssertEqual(again.adoptedEventChunks, archived.count, "every block the first replay archived")
            let recoveredAgain = try await StateGoldenTests.ledger(again)
            XCTAssertEqual(EventArchiver.blocks(of: recoveredAgain), archived, "the same blocks, not new ones")
            XCTAssertEqual(recoveredAgain, expected)
            XCTAssertEqual(try recoveredAgain.events, try expected.events)
            // A snapshot now names the adopted blocks; the next start reads them through it.
            await StateGoldenTests.close(again)
        }
        let snapshotting = try StateGoldenTests.open(directory)
        _ = try await snapshotting.takeSnapshot()
        await StateGoldenTests.close(snapshotting)
        let fromSnapshot = try StateGoldenTests.open(directory)
        XCTAssertEqual(fromSnapshot.adoptedEventChunks, 0, "nothing after the snapshot to adopt")
        let recoveredFromSnapshot = try await StateGoldenTests.ledger(fromSnapshot)
        XCTAssertEqual(recoveredFromSnapshot, expected)
        XCTAssertEqual(try recoveredFromSnapshot.events, try expected.events)
        await StateGoldenTests.close(fromSnapshot)
    }

    /// A run that wrote a snapshot and then archived more chunks (its background pass) appends
    /// them to the file the snapshot's blocks end in: recovery adopts them from there on.
    func testBlocksArchivedAfterTheSnapshotInItsOwnFileAreAdopted() async throws {
        let directory = try makeTemporaryDirectory("archive-adopt-same-file").path
        let (application, _) = try await makeState(directory)
        _ = try await application.takeSnapshot()
        let named = EventArchiver.blocks(of: try await StateGoldenTests.ledger(application))
        for index in 0..<700 {
            _ = try await application.writer.execute(LedgerWriterTests.create("after-\(index)", seats: 10), callerUID: 1000)
            _ = try await application.writer.execute(LedgerWriterTests.seats("after-\(index)", 9), callerUID: 1000)
        }
        let expected = try await StateGoldenTests.ledger(application)
        // The background pass: the chunks sealed since the snapshot, after its blocks.
        XCTAssertGreaterThanOrEqual(try application.archiver!.archive(expected, sync: false), 1)
        let archived = EventArchiver.blocks(of: expected)
        XCTAssertEqual(Set(archived.dropFirst(named.count).map(\.file)), [named.last!.file], "in the snapshot's last file")
        await StateGoldenTests.close(application)

        let reopened = try StateGoldenTests.open(directory)
        XCTAssertEqual(reopened.adoptedEventChunks, archived.count - named.count)
        let recovered = try await StateGoldenTests.ledger(reopened)
        XCTAssertEqual(EventArchiver.blocks(of: recovered), archived)
        XCTAssertEqual(recovered, expected)
        XCTAssertEqual(try recovered.events, try expected.events)
        await StateGoldenTests.close(reopened)
    }

    /// A damaged block among those a run archived after its snapshot ends what recovery adopts:
    /// the blocks before it are taken, the events from it on are built again from the journal
    /// and archived anew, and the events are the same.
    func testADamagedUnreferencedBlockEndsTheAdoption() async throws {
        let directory = try makeTemporaryDirectory("archive-adopt-damaged").path
        let expected = try await makeLongTail(directory)
        let first = try StateGoldenTests.open(directory)
        let archived = EventArchiver.blocks(of: try await StateGoldenTests.ledger(first))
        await StateGoldenTests.close(first)
        XCTAssertGreaterThan(archived.count, 3)
        let damaged = archived[2]
        try flipBit(in: directory + "/" + EventArchiveFiles.fileName(damaged.file), at: Int(damaged.offset) + 100)

        let reopened = try StateGoldenTests.open(directory)
        XCTAssertEqual(reopened.adoptedEventChunks, 2)
        let recovered = try await StateGoldenTests.ledger(reopened)
        let rearchived = EventArchiver.blocks(of: recovered)
        XCTAssertEqual(Array(rearchived.prefix(2)), Array(archived.prefix(2)))
        XCTAssertGreaterThan(rearchived.count, 2, "the chunks from the damaged one on are archived again")
        XCTAssertEqual(recovered, expected)
        XCTAssertEqual(try recovered.events, try expected.events)
        await StateGoldenTests.close(reopened)
        XCTAssertTrue(try EventArchiveFiles.check(directory: directory, operations: POSIXFileOperations())
            .allSatisfy { $0.problem == nil }, "the damaged block is gone")

        let again = try StateGoldenTests.open(directory)
        XCTAssertEqual(again.adoptedEventChunks, rearchived.count, "with what the last start archived again")
        let recoveredAgain = try await StateGoldenTests.ledger(again)
        XCTAssertEqual(try recoveredAgain.events, try expected.events)
        await StateGoldenTests.close(again)
    }

    /// When the archive holds more than the journal (a repair cut the journal back), recovery
    /// adopts the blocks the replay rebuilds in full, reads back the part of the last one that
    /// the shorter journal still produces, and drops the rest: the same state and events as a
    /// recovery of that journal with no archive at all.
    func testAnArchiveLongerThanTheRepairedJournalIsCutBackToIt() async throws {
        let directory = try makeTemporaryDirectory("archive-adopt-short").path
        _ = try await makeLongTail(directory)
        let first = try StateGoldenTests.open(directory)
        let archived = EventArchiver.blocks(of: try await StateGoldenTests.ledger(first))
        await StateGoldenTests.close(first)
        XCTAssertGreaterThan(archived.count, 4)
        // Damage a record about two thirds into the journal; repair cuts the journal there.
        let segments = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("journal-") }.sorted()
        XCTAssertEqual(segments.count, 1)
        let segment = directory + "/" + segments[0]
        let size = try FileManager.default.attributesOfItem(atPath: segment)[.size] as! Int
        try flipBit(in: segment, at: size * 2 / 3)
        // The reference: the same cut journal recovered with no archive at all.
        let reference = try makeTemporaryDirectory("archive-adopt-short-reference").path
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) where !name.hasPrefix("events-") {
            try FileManager.default.copyItem(atPath: directory + "/" + name, toPath: reference + "/" + name)
        }
        func openRepairing(_ path: String) throws -> CreditApplication {
            try CreditApplication(configuration: ApplicationConfiguration(
                stateDirectory: path, clockMode: .manual, manualStart: StateGoldenTests.start, repair: true),
                logger: Logger(label: "archive"))
        }
        let fresh = try openRepairing(reference)
        XCTAssertEqual(fresh.adoptedEventChunks, 0)
        let expected = try await StateGoldenTests.ledger(fresh)
        await StateGoldenTests.close(fresh)
        XCTAssertLessThan(expected.eventCount, Int(archived.count) * EventFeed.chunkSize, "the cut journal ends inside the archive")
        XCTAssertNotEqual(expected.eventCount % EventFeed.chunkSize, 0, "and inside a chunk")

        let repaired = try openRepairing(directory)
        XCTAssertEqual(repaired.adoptedEventChunks, expected.eventCount / EventFeed.chunkSize)
        let recovered = try await StateGoldenTests.ledger(repaired)
        XCTAssertEqual(recovered, expected)
        XCTAssertEqual(try recovered.events, try expected.events)
        await StateGoldenTests.close(repaired)
        let blocks = try EventArchiveFiles.check(directory: directory, operations: POSIXFileOperations()).reduce(0) { $0 + $1.blocks }
        XCTAssertEqual(blocks, expected.eventCount / EventFeed.chunkSize, "the blocks past the journal are gone")
    }
}
