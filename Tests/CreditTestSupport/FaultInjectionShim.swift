import Foundation
import XCTest

/// Tests/Fixtures/faultinject/faultinject.c, the LD_PRELOAD shim that fails write or fdatasync
/// on a directory (CREDITD_FAULTINJECT_DIR), compiled with the system C compiler.
public enum FaultInjectionShim {
    /// The shim's source in this repository.
    public static var source: String {
        URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
            .deletingLastPathComponent()  // CreditTestSupport
            .deletingLastPathComponent()  // Tests
            .appendingPathComponent("Fixtures/faultinject/faultinject.c").path
    }

    /// Compiles the shim to `directory/faultinject.so` and returns that path; skips the test
    /// (XCTSkip) when there is no working C compiler.
    public static func build(into directory: String) throws -> String {
        guard FileManager.default.fileExists(atPath: source) else { throw XCTSkip("shim source not found at \(source)") }
        let output = directory + "/faultinject.so"
        let result = try OpsProcess.run(["/usr/bin/env", "cc", "-shared", "-fPIC", "-o", output, source, "-ldl"])
        guard result.status == 0 else { throw XCTSkip("cannot build the fault-injection shim with cc:\n\(result.stderr)") }
        return output
    }
}
