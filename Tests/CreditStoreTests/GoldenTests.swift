import CreditStore
import Foundation
import XCTest

/// Golden state directories written by each on-disk format version this build must read.
///
/// `Golden/v<N>/` holds a journal of several segments and one snapshot, written by the release
/// whose segment format version is N. Every later release keeps reading them: a format change
/// bumps the version in `Format.swift`, keeps a reader for the previous version (N−1), and adds
/// `Golden/v<N+1>/` generated with `testWriteGoldenFiles` (see `Sources/CreditStore/Overview.swift`).
final class GoldenTests: XCTestCase {
    static let recordCount: UInt64 = 12
    static let snapshotSequence: UInt64 = 6
    // Golden/v1 was written with 120 (two records per segment); v2 adds a 32-byte seal.
    static let segmentSize = 170
    // v3: the newest segment ends in zeros written ahead of its records (up to segmentSize).
    static let zeroFillBytes = 100

    static func goldenPayload(_ sequence: UInt64) -> [UInt8] { Array("golden-record-\(sequence)".utf8) }
    static func goldenSnapshot(_ sequence: UInt64) -> [UInt8] { Array("golden-snapshot-after-\(sequence)".utf8) }

    static var goldenRoot: String {
        URL(fileURLWithPath: #filePath).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("Golden").path
    }

    var directory = ""

    override func setUpWithError() throws {
        directory = try TemporaryDirectory.makePath("store")
    }

    override func tearDown() {
        TemporaryDirectory.remove(atPath: directory)
    }

    /// Copies `Golden/<version>/` into the test's directory (opening a state directory writes to it).
    func copyGolden(_ version: String, includingSnapshot: Bool = true) throws -> [String] {
        let source = Self.goldenRoot + "/" + version
        let names = files(in: source).filter { includingSnapshot || !$0.hasSuffix(".snap") }
        XCTAssertFalse(names.isEmpty, "no golden files in \(source)")
        for name in names { try writeBytes(try readBytes(source + "/" + name), to: directory + "/" + name) }
        return names
    }

    func expectedRecords(_ range: ClosedRange<UInt64>) -> [JournalRecord] {
        range.map { JournalRecord(sequence: $0, payload: Self.goldenPayload($0)) }
    }

    /// Every format version this build must read, recovered to the exact state it was written with.
    func testRecoversEveryGoldenVersion() async throws {
        for version in ["v1", "v2", "v3"] {
            TemporaryDirectory.remove(atPath: directory)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let names = try copyGolden(version)
            XCTAssertGreaterThan(names.filter { $0.hasPrefix("journal-") }.count, 2, version)

            let verification = try verifyStateDirectory(directory)
            XCTAssertTrue(verification.isClean, "\(version): \(verification.description)")
            XCTAssertEqual(verification.recordCount, Int(Self.recordCount), version)

            let recovery = try await reopen(directory)
            XCTAssertEqual(recovery.snapshot?.sequence, Self.snapshotSequence, version)
            XCTAssertEqual(recovery.snapshot?.payload, Self.goldenSnapshot(Self.snapshotSequence), version)
            XCTAssertEqual(recovery.snapshot?.fileName, StoreFormatNames.snapshot(Self.snapshotSequence), version)
            XCTAssertEqual(recovery.records, expectedRecords((Self.snapshotSequence + 1)...Self.recordCount), version)
            XCTAssertEqual(recovery.nextSequence, Self.recordCount + 1, version)
            XCTAssertEqual(recovery.report.severity, .info, "\(version): \(recovery.report.messages)")

            // The journal alone replays every record from seq 1.
            TemporaryDirectory.remove(atPath: directory)
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            _ = try copyGolden(version, includingSnapshot: false)
            let journalOnly = try await reopen(directory)
            XCTAssertNil(journalOnly.snapshot, version)
            XCTAssertEqual(journalOnly.records, expectedRecords(1...Self.recordCount), version)

            // Appending continues (in a current-format segment) and reads back.
            let (store, _) = try DurableStore.open(directory: directory)
            let next = try await store.appendAndWait(Self.goldenPayload(Self.recordCount + 1))
            XCTAssertEqual(next, Self.recordCount + 1)
            await store.close()
            let after = try await reopen(directory)
            XCTAssertEqual(after.records, expectedRecords(1...(Self.recordCount + 1)), version)
            XCTAssertTrue(try verifyStateDirectory(directory).isClean, version)
        }
    }

    /// This build writes the current golden version byte for byte (the snapshot header's wall
    /// time and its CRC aside). When this fails, the format changed: bump the version in
    /// Format.swift, keep reading the old one, and add a new Golden/v<N> directory.
    func testWriterProducesCurrentGoldenBytes() async throws {
        try await Self.writeGoldenDirectory(directory)
        let golden = Self.goldenRoot + "/v3"
        let written = files(in: directory).filter { $0 != "LOCK" }
        XCTAssertEqual(written, files(in: golden))
        for name in written {
            let mine = try readBytes(directory + "/" + name)
            let theirs = try readBytes(golden + "/" + name)
            if name.hasSuffix(".snap") {
                XCTAssertEqual(Array(mine[0..<32]), Array(theirs[0..<32]), name)
                XCTAssertEqual(Array(mine[40..<44]), Array(theirs[40..<44]), name)
                XCTAssertEqual(Array(mine[48...]), Array(theirs[48...]), name)
            } else {
                XCTAssertEqual(mine, theirs, name)
            }
        }
    }

    /// Writes a golden directory with this build's format into `$CREDITSTORE_WRITE_GOLDEN`
    /// (skipped otherwise). Run once per format version:
    /// `CREDITSTORE_WRITE_GOLDEN=$PWD/Tests/CreditStoreTests/Golden/vN swift test --filter GoldenTests/testWriteGoldenFiles`
    func testWriteGoldenFiles() async throws {
        guard let target = ProcessInfo.processInfo.environment["CREDITSTORE_WRITE_GOLDEN"] else {
            throw XCTSkip("set CREDITSTORE_WRITE_GOLDEN to a directory to write golden files")
        }
        try await Self.writeGoldenDirectory(directory)
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        for name in files(in: directory) where name != "LOCK" {
            try writeBytes(try readBytes(directory + "/" + name), to: target + "/" + name)
        }
    }

    static func writeGoldenDirectory(_ directory: String) async throws {
        var options = StoreOptions()
        options.segmentSize = segmentSize
        options.zeroFillBytes = zeroFillBytes
        let (store, _) = try DurableStore.open(directory: directory, options: options)
        for sequence in 1...snapshotSequence { _ = try await store.appendAndWait(goldenPayload(sequence)) }
        _ = try await store.writeSnapshot(sequence: snapshotSequence, payload: goldenSnapshot(snapshotSequence))
        for sequence in (snapshotSequence + 1)...recordCount { _ = try await store.appendAndWait(goldenPayload(sequence)) }
        await store.close()
    }
}

enum StoreFormatNames {
    static func snapshot(_ sequence: UInt64) -> String {
        let digits = String(sequence)
        return "snapshot-" + String(repeating: "0", count: 20 - digits.count) + digits + ".snap"
    }
}
