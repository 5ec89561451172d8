import Foundation

/// The environment the tests give the processes they start: this process's environment without
/// the variables through which a service manager (or an outer creditd test run) would change
/// where a child listens, logs or notifies.
public enum TestEnvironment {
    /// systemd's variables (sd_listen_fds, sd_notify, the watchdog, directories, the journal)
    /// and creditd's own.
    public static let scrubbedVariables: [String] = [
        "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES",
        "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
        "RUNTIME_DIRECTORY", "STATE_DIRECTORY", "JOURNAL_STREAM",
        "CREDITD_SOCKET", "CREDITD_TEST_SERVICE",
    ]

    /// This process's environment without `scrubbedVariables`, then `overrides` on top.
    public static func scrubbed(_ overrides: [String: String] = [:]) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        for key in scrubbedVariables {
            environment.removeValue(forKey: key)
        }
        // A crashing child still prints its backtrace, but quickly and without waiting for a
        // debugger: full symbolication of a debug binary can take minutes, during which the
        // backtracer holds the child's stderr open and a test reading it to the end waits.
        if environment["SWIFT_BACKTRACE"] == nil {
            environment["SWIFT_BACKTRACE"] = "interactive=no,symbolicate=fast"
        }
        environment.merge(overrides) { _, new in new }
        return environment
    }
}
