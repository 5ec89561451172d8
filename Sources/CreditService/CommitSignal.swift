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
        var waiters: [(after: UInt64, id: UInt64, wake: @Sendable (_ open: Bool) -> Void)] = []
        var nextID: UInt64 = 1
        /// The `next` calls not yet woken; one cancelled before it registered its waiter is
        /// taken out, and `wait` then answers false at once.
        var unwoken: Set<UInt64> = []
    }

    private let state: Mutex<State>

    init(sequence: UInt64) {
        state = Mutex(State(sequence: sequence))
    }

    /// A waiter of `wait`, to drop with `cancelWait`.
    public struct WaitID: Sendable {
        fileprivate let value: UInt64
    }

    /// Calls `wake(true)` once the committed sequence is past `sequence` (at once if it already
    /// is), or `wake(false)` once the signal is closed (shutdown).
    @discardableResult
    public func wait(after sequence: UInt64, _ wake: @escaping @Sendable (_ open: Bool) -> Void) -> WaitID {
        let id = newID(cancellable: false)
        register(after: sequence, id: id, cancellable: false, wake)
        return WaitID(value: id)
    }

    /// A waiter id; a `next` call's (`cancellable`) is tracked in `unwoken` until it is woken.
    private func newID(cancellable: Bool) -> UInt64 {
        state.withLock { state in
            defer { state.nextID += 1 }
            if cancellable { state.unwoken.insert(state.nextID) }
            return state.nextID
        }
    }

    /// Removes the waiter `id` if it is still registered, and returns its wake.
    private static func removeWaiter(_ id: UInt64, from state: inout State) -> (@Sendable (Bool) -> Void)? {
        guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
        return state.waiters.remove(at: index).wake
    }

    /// Drops a waiter whose call ended another way (a long poll answered at its time limit),
    /// without waking it. Until the next commit it held its call (and the request) otherwise:
    /// on a book with no writes for hours, one per poll.
    public func cancelWait(_ id: WaitID) {
        _ = state.withLock { Self.removeWaiter(id.value, from: &$0) }
    }

    /// `cancellable`: a `next` call, which its task's cancellation may have taken out of
    /// `unwoken` before it got here.
    private func register(after sequence: UInt64, id: UInt64, cancellable: Bool, _ wake: @escaping @Sendable (_ open: Bool) -> Void) {
        let now: Bool? = state.withLock { state in
            if state.closed || (cancellable && !state.unwoken.contains(id)) {
                state.unwoken.remove(id)
                return false
            }
            if state.sequence > sequence {
                state.unwoken.remove(id)
                return true
            }
            state.waiters.append((sequence, id, wake))
            return nil
        }
        if let now { wake(now) }
    }

    /// `wait` for async code: returns true for a new commit, false once closed or once the
    /// calling task is cancelled. A stream whose client has gone is cancelled; without this it
    /// waited here until the next commit, and one that had nothing to send (a filter that
    /// matches nothing) never learned it was gone and lived until shutdown.
    public func next(after sequence: UInt64) async -> Bool {
        let id = newID(cancellable: true)
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                register(after: sequence, id: id, cancellable: true) { continuation.resume(returning: $0) }
            }
        } onCancel: {
            let wake = state.withLock { state -> (@Sendable (Bool) -> Void)? in
                // Not registered yet: `wait` sees it gone. Already woken: nothing to do.
                guard state.unwoken.remove(id) != nil else { return nil }
                return Self.removeWaiter(id, from: &state)
            }
            wake?(false)
        }
    }

    /// Waiters registered now, and `next` calls not yet woken (tests).
    var waiterCount: Int { state.withLock { $0.waiters.count } }
    var unwokenCount: Int { state.withLock { $0.unwoken.count } }

    func published(_ sequence: UInt64) {
        let ready = state.withLock { state -> [@Sendable (Bool) -> Void] in
            state.sequence = max(state.sequence, sequence)
            var ready: [@Sendable (Bool) -> Void] = []
            state.waiters.removeAll { waiter in
                guard waiter.after < state.sequence else { return false }
                ready.append(waiter.wake)
                state.unwoken.remove(waiter.id)
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
            state.unwoken = []
            defer { state.waiters = [] }
            return state.waiters.map(\.wake)
        }
        for wake in all { wake(false) }
    }
}
