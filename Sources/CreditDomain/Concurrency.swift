import Foundation
import Synchronization

/// A value shared by concurrent tasks that touch disjoint parts of it (or only read it).
package struct Unchecked<Value>: @unchecked Sendable {
    package let value: Value

    package init(_ value: Value) {
        self.value = value
    }
}

/// Runs `count` independent tasks on the cores (snapshots of a million subscriptions must be
/// written and read within seconds on two cores). Returns when all are done.
///
/// The helpers are threads of its own, started from the calling thread, not Dispatch's workers:
/// a new thread inherits its creator's scheduling priority, so work started on a thread that
/// yields to the serving threads (the snapshot writer runs niced) yields on every core it uses.
/// Dispatch's `concurrentPerform` ran most of the work on its default-priority workers.
package func runConcurrently(_ count: Int, _ task: @Sendable (Int) -> Void) {
    guard count > 1 else {
        if count == 1 { task(0) }
        return
    }
    let helpers = min(count, max(ProcessInfo.processInfo.activeProcessorCount, 1)) - 1
    withoutActuallyEscaping(task) { task in
        let next = Mutex(0)
        let finished = DispatchSemaphore(value: 0)
        @Sendable func work() {
            while true {
                let index = next.withLock { next in
                    defer { next += 1 }
                    return next
                }
                guard index < count else { return }
                task(index)
            }
        }
        for _ in 0..<helpers {
            Thread {
                work()
                finished.signal()
            }.start()
        }
        work()
        for _ in 0..<helpers { finished.wait() }
    }
}
