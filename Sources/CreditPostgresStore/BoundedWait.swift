import NIOCore
import Synchronization

/// A result that one thread blocks for and an event loop delivers, with a timer that can end the
/// wait first. The writer's thread waits for the database this way (a connection, an append's
/// reply): nothing the database does or fails to do may hold it past the lease, because a writer
/// held there refuses nothing and acknowledges nothing. Whichever of the result and the timer
/// comes first settles the wait; the other is ignored, and the deliverer learns that it was late
/// from `settle`.
final class BoundedWait<Value: Sendable>: Sendable {
    private let promise: EventLoopPromise<Value>
    private let settled = Mutex(false)

    init(on loop: any EventLoop) {
        promise = loop.makePromise(of: Value.self)
    }

    private func claim() -> Bool {
        settled.withLock { done in
            defer { done = true }
            return !done
        }
    }

    /// Ends the wait with `result`, running `first` just before, unless the timer or another
    /// result ended it already: then nothing runs and the answer is false.
    @discardableResult
    func settle(_ result: Result<Value, any Error>, first: () -> Void = {}) -> Bool {
        guard claim() else { return false }
        first()
        promise.completeWith(result)
        return true
    }

    /// Blocks until the wait is settled, or for `timeout` at most (nil: no timer), after which it
    /// fails with `timedOut`. `whenTimerFires` runs on the event loop when the timer fires, whether
    /// or not the wait was still open (closing a connection whose reply is overdue).
    func wait(atMost timeout: TimeAmount?, timedOut: @escaping @Sendable () -> any Error,
              whenTimerFires: @escaping @Sendable () -> Void = {}) throws -> Value {
        let timer = timeout.map { timeout in
            promise.futureResult.eventLoop.scheduleTask(in: timeout) {
                if self.claim() { self.promise.fail(timedOut()) }
                whenTimerFires()
            }
        }
        defer { timer?.cancel() }
        return try promise.futureResult.wait()
    }
}
