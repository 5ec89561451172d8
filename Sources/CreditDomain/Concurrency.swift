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
/// Dispatch's `concurrentPerform` ran most of the work on its default-priority workers. The
/// helpers are joined, not just waited for: `task` may not outlive this call, and a thread
/// holds what it ran until it has exited.
package func runConcurrently(_ count: Int, _ task: @Sendable (Int) -> Void) {
    guard count > 1 else {
        if count == 1 { task(0) }
        return
    }
    let helpers = min(count, max(ProcessInfo.processInfo.activeProcessorCount, 1)) - 1
    withoutActuallyEscaping(task) { task in
        let next = Mutex(0)
        let work = HelperWork {
            while true {
                let index = next.withLock { next in
                    defer { next += 1 }
                    return next
                }
                guard index < count else { return }
                task(index)
            }
        }
        var threads: [pthread_t] = []
        for _ in 0..<helpers {
            var thread = pthread_t()
            let context = Unmanaged.passRetained(work).toOpaque()
            let started = pthread_create(&thread, nil, { context in
                Unmanaged<HelperWork>.fromOpaque(context!).takeRetainedValue().run()
                return nil
            }, context)
            if started == 0 {
                threads.append(thread)
            } else {
                // No thread: the calling thread does that share itself.
                Unmanaged<HelperWork>.fromOpaque(context).release()
            }
        }
        work.run()
        for thread in threads { pthread_join(thread, nil) }
    }
}

/// What a helper thread of `runConcurrently` runs.
private final class HelperWork: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
