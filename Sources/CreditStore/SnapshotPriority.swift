import Foundation

/// The scheduling priority of snapshot work, in both stores.
///
/// A snapshot of a large ledger is seconds of encoding (and, in the file store, a write of its
/// whole size): it yields the cores to the threads serving calls by running at nice 10. On
/// Linux the nice value is per thread, and threads inherit their creator's, so the encoding
/// threads `runConcurrently` starts from a niced thread yield as well. Raising the value needs
/// no privilege; if the kernel refuses, the work runs at the normal priority.
public enum SnapshotPriority {
    public static let niceness: Int32 = 10

    /// Lowers the calling thread to the snapshot priority.
    static func lowerCurrentThread() {
        #if os(Linux)
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, niceness)
        #endif
    }

    /// The calling thread's nice value (tests check where snapshot work runs).
    public static func currentThreadNiceness() -> Int32 {
        #if os(Linux)
        errno = 0
        return getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        #else
        return 0
        #endif
    }

    /// Runs `body` on a thread of its own at the snapshot priority and returns its result: for
    /// a store whose snapshots are rare, a thread per snapshot instead of a shared pool's
    /// worker, whose priority must not change.
    public static func run<T: Sendable>(threadName: String, _ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread {
                nameCurrentThread(threadName)
                lowerCurrentThread()
                continuation.resume(with: Result { try body() })
            }.start()
        }
    }
}
