import CreditProto
import CreditWire
import Synchronization

/// Cancels an awaiting call (async handler or stream) from its connection's event loop.
///
/// The call runs as a child task of the server's job group, which the connection cannot cancel
/// directly; `run` races the handler against this signal inside a task group of its own, so
/// cancellation stays structured: the handler task is cancelled and awaited, never leaked.
final class CallCancellation: Sendable {
    private struct State {
        var cancelled = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    private let state = Mutex(State())

    func cancel() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.cancelled = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
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
