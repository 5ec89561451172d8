import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Private directories for tests: `/tmp/creditd-LABEL-XXXXXX`, short enough for a socket path
/// inside them (`sun_path` holds 108 bytes).
///
/// Every directory made here is removed: by `remove`, else when the test that made it ends,
/// else when the test process exits (`TestCleanup`).
public enum TemporaryDirectory {
    /// A fresh directory `/tmp/creditd-LABEL-XXXXXX`.
    public static func make(_ label: String = "test") throws -> URL {
        URL(fileURLWithPath: try makePath(label))
    }

    /// `make` as a path.
    public static func makePath(_ label: String = "test") throws -> String {
        var template = Array("/tmp/creditd-\(label)-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        let path = String(cString: made)
        TestCleanup.register(directory: path)
        return path
    }

    /// Removes the directory and everything in it (no error if it is gone).
    public static func remove(_ directory: URL) {
        remove(atPath: directory.path)
    }

    public static func remove(atPath path: String) {
        try? FileManager.default.removeItem(atPath: path)
        TestCleanup.forget(directory: path)
    }
}

extension XCTestCase {
    /// A fresh `/tmp/creditd-LABEL-XXXXXX`, removed when the current test ends.
    public func makeTemporaryDirectory(_ label: String = "test") throws -> URL {
        let directory = try TemporaryDirectory.make(label)
        addTeardownBlock { TemporaryDirectory.remove(directory) }
        return directory
    }
}

/// What a test leaves behind: nothing. Temporary directories and processes registered while
/// a test runs (its setUp, body and tearDown) are removed and killed when that test ends,
/// those registered outside a test (a class `setUp` shared by the tests of a class) when the
/// test process exits (`atexit`). XCTest on Linux keeps test-case objects, and so the daemons
/// in their properties, alive to the end; their deinit cannot be relied on.
public enum TestCleanup {
    private struct Owned {
        var directories: Set<String> = []
        var processes: Set<pid_t> = []
    }

    private static let lock = NSLock()
    /// Everything registered and not yet cleaned up.
    nonisolated(unsafe) private static var all = Owned()
    /// What was registered during the running test; nil between tests (or before the observer
    /// was installed, when it is not known whether a test runs: then only the exit cleans up).
    nonisolated(unsafe) private static var currentTest: Owned?

    private static let installed: Bool = {
        atexit { TestCleanup.runAtExit() }
        XCTestObservationCenter.shared.addTestObserver(Observer())
        return true
    }()

    private final class Observer: XCTestObservation {
        func testCaseWillStart(_ testCase: XCTestCase) { TestCleanup.testWillStart() }
        func testCaseDidFinish(_ testCase: XCTestCase) { TestCleanup.testDidFinish() }
    }

    static func register(directory: String) {
        _ = installed
        lock.withLock {
            all.directories.insert(directory)
            currentTest?.directories.insert(directory)
        }
    }

    static func forget(directory: String) {
        lock.withLock {
            all.directories.remove(directory)
            currentTest?.directories.remove(directory)
        }
    }

    /// A child to SIGKILL when its test ends (or at exit) unless `forget(process:)` is called
    /// when it has been reaped.
    static func register(process pid: pid_t) {
        _ = installed
        lock.withLock {
            all.processes.insert(pid)
            currentTest?.processes.insert(pid)
        }
    }

    static func forget(process pid: pid_t) {
        lock.withLock {
            all.processes.remove(pid)
            currentTest?.processes.remove(pid)
        }
    }

    private static func testWillStart() {
        lock.withLock { currentTest = Owned() }
    }

    private static func testDidFinish() {
        let owned = lock.withLock {
            defer { currentTest = nil }
            return currentTest ?? Owned()
        }
        clean(owned)
    }

    /// Kills the registered processes, then removes the registered directories.
    public static func runAtExit() {
        let owned = lock.withLock {
            defer { currentTest = nil }
            return all
        }
        clean(owned)
    }

    /// True if `pid` is (still) a child of this process: a pid that was reaped and reused by
    /// someone else's process is not killed.
    private static func isOurChild(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        // "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 1 && pid_t(fields[1]) == getpid()
    }

    private static func clean(_ owned: Owned) {
        for pid in owned.processes where isOurChild(pid) {
            kill(pid, SIGKILL)
        }
        for path in owned.directories {
            try? FileManager.default.removeItem(atPath: path)
        }
        lock.withLock {
            all.processes.subtract(owned.processes)
            all.directories.subtract(owned.directories)
        }
    }
}
