import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Private directories for tests: `/tmp/creditd-LABEL-XXXXXX`, short enough for a socket path
/// inside them (`sun_path` holds 108 bytes).
///
/// Every directory made here is removed: by `remove`, by the teardown of the test that made it
/// (`XCTestCase.makeTemporaryDirectory`), and in any case when the test process exits, after
/// the daemons it started are killed (`TestCleanup`). XCTest on Linux keeps test-case objects
/// (and so the daemons in their properties) alive until the end, so deinit alone is not enough.
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

/// What the test process leaves behind when it exits: nothing. Daemons still running are
/// killed and temporary directories still present are removed by an `atexit` handler.
public enum TestCleanup {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var directories: Set<String> = []
    nonisolated(unsafe) private static var processes: Set<pid_t> = []

    private static let installed: Bool = {
        atexit { TestCleanup.runAtExit() }
        return true
    }()

    static func register(directory: String) {
        _ = installed
        lock.withLock { _ = directories.insert(directory) }
    }

    static func forget(directory: String) {
        lock.withLock { _ = directories.remove(directory) }
    }

    /// A child to SIGKILL at exit unless `forget(process:)` is called when it is reaped.
    static func register(process pid: pid_t) {
        _ = installed
        lock.withLock { _ = processes.insert(pid) }
    }

    static func forget(process pid: pid_t) {
        lock.withLock { _ = processes.remove(pid) }
    }

    /// Kills the registered processes, then removes the registered directories.
    public static func runAtExit() {
        let (pids, paths) = lock.withLock {
            defer {
                processes.removeAll()
                directories.removeAll()
            }
            return (processes, directories)
        }
        for pid in pids {
            kill(pid, SIGKILL)
        }
        for path in paths {
            try? FileManager.default.removeItem(atPath: path)
        }
    }
}
