import Synchronization

/// Tells long polls and streams that a new batch is committed.
///
/// They wait on "the committed state moved past the one I read", never on the writer: the
/// writer only calls `published` after each durable batch, and a waiter's callback runs on the
/// writer thread, so callbacks must be quick (hop to an event loop, resume a continuation).
public final class CommitSignal: Sendable {
    private struct State {
        var sequence: UInt64
        var closed = false
        var waiters: [(after: UInt64, wake: @Sendable (_ open: Bool) -> Void)] = []
    }

    private let state: Mutex<State>

    init(sequence: UInt64) {
        state = Mutex(State(sequence: sequence))
    }

    /// Calls `wake(true)` once the committed sequence is past `sequence` (at once if it already
    /// is), or `wake(false)` once the signal is closed (shutdown).
    public func wait(after sequence: UInt64, _ wake: @escaping @Sendable (_ open: Bool) -> Void) {
        let now: Bool? = state.withLock { state in
            if state.closed { return false }
            if state.sequence > sequence { return true }
            state.waiters.append((sequence, wake))
            return nil
        }
        if let now { wake(now) }
    }

    /// `wait` for async code: returns true for a new commit, false once closed.
    public func next(after sequence: UInt64) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            wait(after: sequence) { continuation.resume(returning: $0) }
        }
    }

    func published(_ sequence: UInt64) {
        let ready = state.withLock { state -> [@Sendable (Bool) -> Void] in
            state.sequence = max(state.sequence, sequence)
            var ready: [@Sendable (Bool) -> Void] = []
            state.waiters.removeAll { waiter in
                guard waiter.after < state.sequence else { return false }
                ready.append(waiter.wake)
                return true
            }
            return ready
        }
        for wake in ready { wake(true) }
    }

    /// Wakes every waiter with `false`, now and from now on (shutdown: streams end cleanly).
    public func close() {
        let all = state.withLock { state -> [@Sendable (Bool) -> Void] in
            state.closed = true
            defer { state.waiters = [] }
            return state.waiters.map(\.wake)
        }
        for wake in all { wake(false) }
    }
}
