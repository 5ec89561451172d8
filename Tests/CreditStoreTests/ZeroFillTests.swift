import CreditStore
import Foundation
import XCTest

/// Segment format 3: the store writes zeros ahead of its records, so that the fdatasync after a
/// batch writes data without the inode; recovery reads zeros after the last record as space
/// written ahead, not as damage.
final class ZeroFillTests: StoreDirectoryTestCase {
    var firstSegment: String { directory + "/journal-00000000000000000001.log" }

    func zeroFilled(_ bytes: Int, segmentSize: Int = 64 << 20) -> StoreOptions {
        var options = StoreOptions()
        options.zeroFillBytes = bytes
        options.segmentSize = segmentSize
        return options
    }

    /// The records are the bytes plain appends write, followed by zeros; a reopened store reads
    /// them cleanly and appends into the zeros, so the file does not grow.
    func testRecordsGoIntoSpaceWrittenAhead() async throws {
        let plainDirectory = directory + "-plain"
        defer { TemporaryDirectory.remove(atPath: plainDirectory) }
        try await populate(plainDirectory, count: 3)
        let plain = try readBytes(plainDirectory + "/journal-00000000000000000001.log")

        let options = zeroFilled(4096)
        try await populate(directory, count: 3, options: options)
        let written = try readBytes(firstSegment)
        let firstRecordEnd = 32 + 16 + payload(1).count
        XCTAssertEqual(written.count, firstRecordEnd + 4096, "one stretch of zeros, written with the first record")
        XCTAssertEqual(Array(written[0..<plain.count]), plain)
        XCTAssertTrue(written[plain.count...].allSatisfy { $0 == 0 })

        let verification = try verifyStateDirectory(directory)
        XCTAssertTrue(verification.isClean, verification.description)
        XCTAssertEqual(verification.segments.first?.validBytes, Int64(plain.count))
        XCTAssertEqual(verification.segments.first?.zeroFilledBytes, Int64(written.count - plain.count))
        XCTAssertTrue(verification.description.contains("bytes zero-filled ahead"), verification.description)

        let recovery = try await reopen(directory, options: options)
        XCTAssertEqual(recovery.records.map(\.sequence), [1, 2, 3])
        XCTAssertEqual(recovery.report.severity, .info, "\(recovery.report.messages)")
        XCTAssertTrue(recovery.report.truncations.isEmpty)
        XCTAssertEqual(try readBytes(firstSegment), written, "recovery leaves the zeros in place")

        try await populate(directory, count: 2, options: options)
        try await populate(plainDirectory, count: 2)
        let longer = try readBytes(plainDirectory + "/journal-00000000000000000001.log")
        let after = try readBytes(firstSegment)
        XCTAssertEqual(after.count, written.count, "records 4 and 5 went into the zeros")
        XCTAssertEqual(Array(after[0..<longer.count]), longer)
        let reopened = try await reopen(directory)
        XCTAssertEqual(reopened.records.map(\.sequence), [1, 2, 3, 4, 5])
    }

    /// Zeros stop at the segment size, and a full segment is cut back to its seal when the next
    /// one starts: only the newest segment carries zeros.
    func testOnlyTheNewestSegmentKeepsZeros() async throws {
        let options = zeroFilled(1_000, segmentSize: 200)
        try await populate(directory, count: 12, options: options)
        let verification = try verifyStateDirectory(directory)
        XCTAssertTrue(verification.isClean, verification.description)
        XCTAssertGreaterThan(verification.segments.count, 2)
        for segment in verification.segments.dropLast() {
            XCTAssertNotNil(segment.sealedNextSequence, segment.fileName)
            XCTAssertEqual(segment.bytes, segment.validBytes, "\(segment.fileName) ends with its seal")
        }
        let newest = try XCTUnwrap(verification.segments.last)
        XCTAssertEqual(newest.bytes, 200, "zeros up to the segment size, no further")
        XCTAssertGreaterThan(newest.zeroFilledBytes, 0)
        let recovery = try await reopen(directory, options: options)
        XCTAssertEqual(recovery.records.map(\.sequence), Array(1...12))
    }

    /// A crash between a seal and cutting off the zeros behind it leaves zeros after the seal:
    /// nothing is lost, so it is clean.
    func testZerosAfterASealAreAccepted() async throws {
        try await populate(directory, count: 12, options: zeroFilled(1_000, segmentSize: 200))
        let sealed = segmentFiles(in: directory)[0]
        try writeBytes(try readBytes(directory + "/" + sealed) + [UInt8](repeating: 0, count: 300), to: directory + "/" + sealed)
        XCTAssertTrue(try verifyStateDirectory(directory).isClean)
        let recovery = try await reopen(directory)
        XCTAssertEqual(recovery.records.map(\.sequence), Array(1...12))
        XCTAssertEqual(recovery.report.severity, .info, "\(recovery.report.messages)")

        // Anything else after a seal is still corruption.
        try writeBytes(try readBytes(directory + "/" + sealed) + [1], to: directory + "/" + sealed)
        XCTAssertThrowsError(try DurableStore.open(directory: directory))
    }

    /// A record cut short inside the zeros (its first sector reached the disk, the rest did not)
    /// is a torn tail: truncated at warning level, and appending continues with its sequence.
    func testRecordTornInsideTheZerosIsTruncated() async throws {
        let options = zeroFilled(4096)
        try await populate(directory, count: 2, options: options)
        _ = try await populateLongRecord(options: options)
        var bytes = try readBytes(firstSegment)
        let lastStart = 32 + 16 + payload(1).count + 16 + payload(2).count
        for index in (lastStart + 512)..<bytes.count { bytes[index] = 0 }
        try writeBytes(bytes, to: firstSegment)

        let (store, recovery) = try DurableStore.open(directory: directory, options: options)
        XCTAssertEqual(recovery.records.map(\.sequence), [1, 2])
        XCTAssertEqual(recovery.report.truncations.first?.offset, Int64(lastStart))
        XCTAssertEqual(recovery.report.severity, .warning)
        let appended = try await store.appendAndWait(payload(3))
        XCTAssertEqual(appended, 3)
        await store.close()
        let reopened = try await reopen(directory)
        XCTAssertEqual(reopened.records.map(\.sequence), [1, 2, 3])
    }

    /// Zeros where a record's header should be, with a valid record after them, are damage:
    /// valid data follows, so it is not space written ahead.
    func testZeroHeaderBeforeValidRecordsIsCorruption() async throws {
        try await populate(directory, count: 3, options: zeroFilled(4096))
        var bytes = try readBytes(firstSegment)
        let second = 32 + 16 + payload(1).count
        for index in second..<(second + 16 + payload(2).count) { bytes[index] = 0 }
        try writeBytes(bytes, to: firstSegment)
        assertThrowsStoreError({ _ = try DurableStore.open(directory: self.directory) }) {
            if case .corruptJournal(_, let offset, _) = $0 { return offset == Int64(second) }
            return false
        }
    }

    /// Appends one record of 2,000 bytes (longer than a sector) as the next record.
    private func populateLongRecord(options: StoreOptions) async throws -> UInt64 {
        let (store, _) = try DurableStore.open(directory: directory, options: options)
        let sequence = try await store.appendAndWait([UInt8](repeating: 0x33, count: 2_000))
        await store.close()
        return sequence
    }
}
