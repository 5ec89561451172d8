@testable import CreditStore
import XCTest

final class CRC32CTests: XCTestCase {
    /// RFC 3720, appendix B.4.
    func testRFC3720Vectors() {
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        XCTAssertEqual(CRC32C.checksum((0..<32).reversed().map { UInt8($0) }), 0x113F_DB5C)
        let readCommand: [UInt8] = [
            0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
            0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ]
        XCTAssertEqual(CRC32C.checksum(readCommand), 0xD996_3A56)
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
    }

    /// Slicing-by-8 against a bit-at-a-time reference, over lengths that exercise the tail loop,
    /// and incremental updates at every split point.
    func testMatchesBitwiseReferenceAndIncrementalUpdate() {
        func reference(_ bytes: [UInt8]) -> UInt32 {
            var crc: UInt32 = 0xFFFF_FFFF
            for byte in bytes {
                crc ^= UInt32(byte)
                for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            }
            return ~crc
        }
        var generator = SystemRandomNumberGenerator()
        for length in 0..<70 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            XCTAssertEqual(CRC32C.checksum(bytes), reference(bytes), "length \(length)")
            for split in 0...length {
                XCTAssertEqual(CRC32C.update(CRC32C.checksum(bytes[0..<split]), bytes[split...]), reference(bytes))
            }
        }
    }

    /// The crc32 instruction and the tables agree, at every alignment and length (the
    /// instruction's loop has an unaligned head, 8-byte words and a tail).
    func testHardwareAndTablesAgree() throws {
        guard CRC32C.hardware else { throw XCTSkip("no crc32 instruction on this CPU") }
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<4_200).map { _ in UInt8.random(in: 0...255, using: &generator) }
        bytes.withUnsafeBytes { whole in
            for start in 0..<9 {
                for length in [0, 1, 7, 8, 9, 15, 16, 63, 64, 65, 4_000] {
                    let slice = UnsafeRawBufferPointer(rebasing: whole[start..<(start + length)])
                    for seed: UInt32 in [0, 0xDEAD_BEEF] {
                        XCTAssertEqual(CRC32C.update(seed, slice), CRC32C.softwareUpdate(seed, slice), "start \(start) length \(length)")
                    }
                }
            }
        }
    }
}
