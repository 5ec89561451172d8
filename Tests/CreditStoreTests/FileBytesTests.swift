@testable import CreditStore
import Foundation
import XCTest

/// Large files are mapped, small ones read; both read back the file exactly, and a mapping
/// goes when the last value using it does (counted by `FileBytes.liveMappings`: /proc/self/maps,
/// read in pieces while other threads map and unmap, can miss a line).
final class FileBytesTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "filebytes-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    func testLargeFilesAreMappedSmallOnesReadAndBothReadBackExactly() throws {
        let operations = POSIXFileOperations()
        var generator = SystemRandomNumberGenerator()
        let before = FileBytes.liveMappings.load(ordering: .relaxed)
        for size in [0, 1, FileBytes.mappingThreshold - 1, FileBytes.mappingThreshold, 3 * FileBytes.mappingThreshold + 17] {
            let path = directory + "/file-\(size)"
            let content = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
            try Data(content).write(to: URL(fileURLWithPath: path))
            do {
                let bytes = try operations.mapFile(path)
                XCTAssertEqual(bytes.isMapped, size >= FileBytes.mappingThreshold, "size \(size)")
                XCTAssertEqual(FileBytes.liveMappings.load(ordering: .relaxed) - before, size >= FileBytes.mappingThreshold ? 1 : 0)
                XCTAssertEqual(bytes.count, size)
                XCTAssertEqual(bytes.array, content, "size \(size)")
                XCTAssertEqual(bytes, FileBytes(content), "size \(size)")
                let tail = bytes.dropFirst(48)
                XCTAssertEqual(tail.array, Array(content.dropFirst(48)), "size \(size)")
                XCTAssertEqual(tail.withUnsafeBufferPointer { $0.count }, max(size - 48, 0))
                if size > 48 {
                    var changed = content
                    changed[size - 1] &+= 1
                    XCTAssertNotEqual(bytes, FileBytes(changed), "size \(size)")
                }
            }
            XCTAssertEqual(FileBytes.liveMappings.load(ordering: .relaxed) - before, 0, "size \(size): still mapped after its last use")
        }
    }

    /// A file removed while mapped still reads back whole (what a snapshot pruned meanwhile does).
    func testAMappedFileRemovedMeanwhileStillReads() throws {
        let path = directory + "/removed"
        let content = [UInt8](repeating: 7, count: 2 * FileBytes.mappingThreshold)
        try Data(content).write(to: URL(fileURLWithPath: path))
        let bytes = try POSIXFileOperations().mapFile(path)
        try FileManager.default.removeItem(atPath: path)
        XCTAssertEqual(bytes.array, content)
    }
}
