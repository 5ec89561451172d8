import Foundation
import XCTest
import CreditMonitoring
import CreditTestSupport

final class PrometheusTextfileTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try makeTemporaryDirectory("textfile")
    }

    func testWritesAtomicallyWithReadableMode() throws {
        let path = directory.appendingPathComponent("creditd.prom").path
        try PrometheusTextfile.write("a 1\n", to: path)
        try PrometheusTextfile.write("a 2\n", to: path)

        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "a 2\n")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), ["creditd.prom"])
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o644)
    }

    func testMissingDirectoryFailsWithoutLeftovers() {
        let path = directory.appendingPathComponent("missing/creditd.prom").path
        XCTAssertThrowsError(try PrometheusTextfile.write("a 1\n", to: path)) { error in
            XCTAssertEqual((error as? PrometheusTextfile.WriteError)?.operation, "open")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory.path), [])
    }
}
