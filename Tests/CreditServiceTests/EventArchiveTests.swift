import CreditDomain
import CreditStore
import CreditTestSupport
import Foundation
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

    /// Recovery archives sealed chunks while it replays a long journal tail (on a thread of its
    /// own), so the tail's events do not all stay in memory; what it archived reads back exactly,
    /// and a later start, which discards the blocks no snapshot names, replays them again.
    func testALongReplayArchivesAsItGoes() async throws {
        let directory = try makeTemporaryDirectory("archive-replay").path
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

        for _ in 0..<2 {
            let reopened = try StateGoldenTests.open(directory)
            XCTAssertFalse(try archiveFiles(directory).isEmpty, "archived during the replay")
            let recovered = try await StateGoldenTests.ledger(reopened)
            XCTAssertGreaterThan(EventArchiver.blocks(of: recovered).count, 0)
            XCTAssertEqual(recovered, expected)
            XCTAssertEqual(try recovered.events, try expected.events)
            await StateGoldenTests.close(reopened)
        }
    }
}
