import Foundation

/// Runs the built `creditctl` (next to `creditd` in the build products) to completion, with
/// the scrubbed test environment (`TestEnvironment`; no inherited `$CREDITD_SOCKET`).
///
/// ```swift
/// let result = try CreditctlProcess.run(["get", "sub", "-s", daemon.socketPath])
/// XCTAssertEqual(result.status, 0, result.stderr)
/// ```
public enum CreditctlProcess {
    public static func binaryPath() throws -> String {
        let daemon = try DaemonProcess.binaryPath()
        return URL(fileURLWithPath: daemon).deletingLastPathComponent().appendingPathComponent("creditctl").path
    }

    /// - Parameters:
    ///   - prefix: a command that runs creditctl, such as `OpsTools.asUser(...)`.
    ///   - environment: added to (or replacing) the scrubbed environment.
    public static func run(_ arguments: [String], prefix: [String] = [], environment: [String: String] = [:],
                           stdin: String? = nil, timeout: TimeInterval = 60) throws -> OpsResult {
        try OpsProcess.run(prefix + [try binaryPath()] + arguments, environment: environment, stdin: stdin,
                           timeout: timeout)
    }
}
