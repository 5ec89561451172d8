import CreditStore
@_exported import CreditTestSupport
import Foundation
import XCTest

func payload(_ index: UInt64) -> [UInt8] {
    Array("entry-\(index)-".utf8) + [UInt8](repeating: UInt8(truncatingIfNeeded: index), count: Int(index % 7))
}

func files(in directory: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted()
}

func segmentFiles(in directory: String) -> [String] {
    files(in: directory).filter { $0.hasPrefix("journal-") && $0.hasSuffix(".log") }
}

func snapshotFiles(in directory: String) -> [String] {
    files(in: directory).filter { $0.hasPrefix("snapshot-") && $0.hasSuffix(".snap") }
}

func readBytes(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

func writeBytes(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func flipBit(in path: String, at offset: Int, mask: UInt8 = 0x10) throws {
    var bytes = try readBytes(path)
    bytes[offset] ^= mask
    try writeBytes(bytes, to: path)
}

/// Opens, appends `count` records (each awaited), closes.
func populate(_ directory: String, count: UInt64, options: StoreOptions = StoreOptions()) async throws {
    let (store, recovery) = try DurableStore.open(directory: directory, options: options)
    for index in 0..<count {
        let sequence = try await store.appendAndWait(payload(recovery.nextSequence + index))
        XCTAssertEqual(sequence, recovery.nextSequence + index)
    }
    await store.close()
}

func assertThrowsStoreError(
    _ body: () throws -> Void, file: StaticString = #filePath, line: UInt = #line,
    _ check: (StoreError) -> Bool
) {
    do {
        try body()
        XCTFail("expected a StoreError", file: file, line: line)
    } catch let error as StoreError {
        XCTAssertTrue(check(error), "unexpected error: \(error)", file: file, line: line)
    } catch {
        XCTFail("unexpected error type: \(error)", file: file, line: line)
    }
}

/// Opens and immediately closes, returning the recovery.
func reopen(_ directory: String, options: StoreOptions = StoreOptions()) async throws -> Recovery {
    let (store, recovery) = try DurableStore.open(directory: directory, options: options)
    await store.close()
    return recovery
}

/// A test case with a fresh store directory for each test, removed afterwards.
class StoreDirectoryTestCase: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        directory = try TemporaryDirectory.makePath("store")
    }

    override func tearDown() {
        TemporaryDirectory.remove(atPath: directory)
    }
}
