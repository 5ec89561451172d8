import Foundation
import Synchronization

/// A value shared by concurrent tasks that touch disjoint parts of it (or only read it).
package struct Unchecked<Value>: @unchecked Sendable {
    package let value: Value

    package init(_ value: Value) {
        self.value = value
    }
}

/// How many tasks `runConcurrently` runs at once: one per core.
package var concurrentTaskWidth: Int { max(ProcessInfo.processInfo.activeProcessorCount, 1) }

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
    // The calling thread takes tasks as well.
    withHelperThreads(min(count, concurrentTaskWidth) - 1, taking: count, task) { takeTasks in takeTasks() }
}

/// `runConcurrently`, with `body` running on the calling thread meanwhile: the tasks run on
/// helper threads of their own (one per core), so that the caller can hand over what earlier
/// tasks made while these make the next. Returns `body`'s result once every task is done too.
package func runConcurrently<Result, Failure: Error>(_ count: Int, _ task: @Sendable (Int) -> Void,
                                                     whileCalling body: () throws(Failure) -> Result) throws(Failure) -> Result {
    let result: Swift.Result<Result, Failure> = withHelperThreads(min(count, concurrentTaskWidth), taking: count, task) { _ in
        do throws(Failure) {
            return .success(try body())
        } catch {
            return .failure(error)
        }
    }
    return try result.get()
}

/// Starts `helpers` threads that take the tasks `0..<count` in turn, calls `caller` with a
/// function by which the calling thread takes tasks too, then joins the threads. Every task
/// runs: what no thread took (one could not be started) the calling thread runs at the end.
private func withHelperThreads<Result>(_ helpers: Int, taking count: Int, _ task: @Sendable (Int) -> Void,
                                       _ caller: (() -> Void) -> Result) -> Result {
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
        for _ in 0..<max(helpers, 0) {
            var thread = pthread_t()
            let context = Unmanaged.passRetained(work).toOpaque()
            let started = pthread_create(&thread, nil, { context in
                Unmanaged<HelperWork>.fromOpaque(context!).takeRetainedValue().run()
                return nil
            }, context)
            if started == 0 {
                threads.append(thread)
            } else {
                Unmanaged<HelperWork>.fromOpaque(context).release()
            }
        }
        let result = caller(work.run)
        work.run()
        for thread in threads { pthread_join(thread, nil) }
        return result
    }
}

/// What a helper thread of `runConcurrently` runs.
private final class HelperWork: @unchecked Sendable {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}
