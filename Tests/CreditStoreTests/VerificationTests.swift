import CreditStore
import Foundation
import XCTest

/// `verifyStateDirectory` (creditd verify-state) reports each condition of issue 11.
final class VerificationTests: StoreDirectoryTestCase {
    func testReportsEachCondition() async throws {
        var options = StoreOptions()
        options.segmentSize = 120
        try await populate(directory, count: 12, options: options)
        let segments = segmentFiles(in: directory)
        let last = directory + "/" + segments.last!
        let original = try readBytes(last)

        // Healthy: every segment format 3, all but the newest sealed and naming the next one.
        let healthy = try verifyStateDirectory(directory)
        XCTAssertTrue(healthy.isClean, healthy.description)
        XCTAssertEqual(Set(healthy.segments.map(\.formatVersion)), [3])
        XCTAssertNil(healthy.segments.last?.sealedNextSequence)
        for (segment, next) in zip(healthy.segments.dropLast(), healthy.segments.dropFirst()) {
            XCTAssertEqual(segment.sealedNextSequence, next.firstSequence)
        }
        XCTAssertTrue(healthy.description.contains("sealed (next segment starts at seq"), healthy.description)

        // Torn tail: recoverable, a warning.
        try writeBytes(Array(original.dropLast(3)), to: last)
        let torn = try verifyStateDirectory(directory)
        XCTAssertTrue(torn.recoverable)
        XCTAssertEqual(torn.segments.last?.damage, .torn)
        XCTAssertTrue(torn.warnings.contains { $0.contains("torn tail") }, torn.description)

        // Corrupt last record: not recoverable; says what --repair would do.
        var damaged = original
        damaged[damaged.count - 2] ^= 0x01
        try writeBytes(damaged, to: last)
        let corrupt = try verifyStateDirectory(directory)
        XCTAssertFalse(corrupt.recoverable)
        XCTAssertEqual(corrupt.segments.last?.damage, .corrupt)
        XCTAssertTrue(corrupt.repairActions.contains { $0.contains("truncate it at byte") }, corrupt.description)
        XCTAssertTrue(corrupt.description.contains("--repair would:"), corrupt.description)
        XCTAssertEqual(try readBytes(last), damaged, "read-only")

        // Newest segment missing: not recoverable; --repair would accept the loss.
        try FileManager.default.removeItem(atPath: last)
        let missing = try verifyStateDirectory(directory)
        XCTAssertFalse(missing.recoverable)
        XCTAssertTrue(missing.problems[0].contains("\(segments.last!) is missing"), missing.description)
        XCTAssertTrue(missing.repairActions.contains { $0.contains("is missing") }, missing.description)
        try writeBytes(original, to: last)

        // Unknown version: even --repair refuses.
        var future = original
        future[8] = 7
        try writeBytes(future, to: last)
        let unknown = try verifyStateDirectory(directory)
        XCTAssertEqual(unknown.segments.last?.damage, .unsupportedVersion)
        XCTAssertNotNil(unknown.repairRefusal, unknown.description)
        try writeBytes(original, to: last)

        // Skipped snapshot: a warning.
        let (store, _) = try DurableStore.open(directory: directory, options: options)
        _ = try await store.writeSnapshot(sequence: 5, payload: state(5))
        _ = try await store.writeSnapshot(sequence: 12, payload: state(12))
        await store.close()
        try flipBit(in: directory + "/snapshot-00000000000000000012.snap", at: 50)
        let skipped = try verifyStateDirectory(directory)
        XCTAssertTrue(skipped.recoverable)
        XCTAssertTrue(skipped.warnings.contains { $0.contains("snapshot-00000000000000000012.snap") }, skipped.description)
    }
}
