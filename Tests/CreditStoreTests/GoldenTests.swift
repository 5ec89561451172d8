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
    static let segmentSize = 120

    static func goldenPayload(_ sequence: UInt64) -> [UInt8] { Array("golden-record-\(sequence)".utf8) }
    static func goldenSnapshot(_ sequence: UInt64) -> [UInt8] { Array("golden-snapshot-after-\(sequence)".utf8) }

    static var goldenRoot: String {
        URL(fileURLWithPath: #filePath).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("Golden").path
    }

    var directory = ""

    override func setUpWithError() throws {
        directory = try makeTemporaryDirectory()
    }

    override func tearDown() {
        removeTemporaryDirectory(directory)
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
        let (store, _) = try DurableStore.open(directory: directory, options: options)
        for sequence in 1...snapshotSequence { _ = try await store.appendAndWait(goldenPayload(sequence)) }
        _ = try await store.writeSnapshot(sequence: snapshotSequence, payload: goldenSnapshot(snapshotSequence))
        for sequence in (snapshotSequence + 1)...recordCount { _ = try await store.appendAndWait(goldenPayload(sequence)) }
        await store.close()
    }
}
