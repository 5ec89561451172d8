import CreditProto
import CreditWire
import Synchronization

/// Cancels a call from its connection's event loop: when the connection closes, or the call's
/// stream ends early (its deadline, an error).
///
/// An awaiting call (async handler or stream) runs as a child task of the server's job group,
/// which the connection cannot cancel directly; `run` races the handler against this signal
/// inside a task group of its own, so cancellation stays structured: the handler task is
/// cancelled and awaited, never leaked. A deferred unary call that waits on its own (the
/// ListEvents long poll) registers a handler with `whenCancelled` instead.
public final class CallCancellation: Sendable {
    private struct State {
        var cancelled = false
        var waiter: CheckedContinuation<Void, Never>?
        var handler: (@Sendable () -> Void)?
    }

    private let state = Mutex(State())

    func cancel() {
        let (waiter, handler) = state.withLock { state -> (CheckedContinuation<Void, Never>?, (@Sendable () -> Void)?) in
            state.cancelled = true
            defer { state.waiter = nil; state.handler = nil }
            return (state.waiter, state.handler)
        }
        waiter?.resume()
        handler?()
    }

    /// Calls `handler` once when the call is cancelled: at once if it already was. It may run on
    /// the connection's event loop or on the caller's thread; a second registration replaces
    /// the first.
    public func whenCancelled(_ handler: @escaping @Sendable () -> Void) {
        let now = state.withLock { state -> Bool in
            if state.cancelled { return true }
            state.handler = handler
            return false
        }
        if now { handler() }
    }

    /// Returns once `cancel` was called (at once if it was already). Cancelling the waiting
    /// task also ends the wait.
    private func cancelled() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state -> Bool in
                    if state.cancelled || Task.isCancelled { return true }
                    state.waiter = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume()
        }
    }

    /// Runs `body` until it returns or the call is cancelled (then: `CancellationError`).
    func run<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async -> Result<T, any Error> {
        await withTaskGroup(of: Result<T, any Error>?.self) { group in
            group.addTask {
                do {
                    return .success(try await body())
                } catch {
                    return .failure(error)
                }
            }
            group.addTask {
                await self.cancelled()
                return nil
            }
            var outcome: Result<T, any Error> = .failure(CancellationError())
            for await next in group {
                if let next { outcome = next }
                group.cancelAll()
                break
            }
            return outcome
        }
    }
}
