import CreditTestSupport
import Foundation
import XCTest

/// Runs the C robustness suite (clients/c/tests/robustness.c) the way C
/// users build it: `make check` with the system compiler and protobuf-c.
final class RobustnessSuiteTests: XCTestCase {
    func testCRobustnessSuitePasses() throws {
        try runMake(target: "check")
    }

    /// The same suite under AddressSanitizer and UBSan: zero reports.
    /// Opt-in (CREDITD_C_ASAN=1) because it rebuilds the library.
    func testCRobustnessSuiteUnderAddressSanitizer() throws {
        guard ProcessInfo.processInfo.environment["CREDITD_C_ASAN"] == "1" else {
            throw XCTSkip("set CREDITD_C_ASAN=1 to run the suite under AddressSanitizer")
        }
        try runMake(target: "check-asan")
    }

    private func runMake(target: String) throws {
        guard let make = OpsTools.find("make"), OpsTools.find("cc") != nil, OpsTools.find("pkg-config") != nil else {
            throw XCTSkip("make, cc and pkg-config are needed to build the C suite")
        }
        let build = try makeTemporaryDirectory("csuite")

        let result = try OpsProcess.run([make, "-s", "-C", Self.clientDirectory.path, "BUILD=\(build.path)", target],
                                        timeout: 600)
        let text = result.stdout + result.stderr
        XCTAssertEqual(result.status, 0, "make \(target) failed:\n\(text)")
        XCTAssertTrue(text.contains(", 0 failed checks"), text)
        XCTAssertFalse(text.contains("FAIL"), text)
    }

    /// clients/c of the repository this file belongs to.
    static var clientDirectory: URL {
        URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
            .deletingLastPathComponent() // CClientTests
            .deletingLastPathComponent() // Tests
            .deletingLastPathComponent() // repository root
            .appendingPathComponent("clients/c")
    }
}
