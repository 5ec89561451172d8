import Logging
import NIOCore
import PostgresNIO
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

    /// Blocks until the wait is settled, or for `limit` at most (nil: no timer), after which it
    /// fails with `StepTimedOut` naming `what`. `whenTimerFires` runs on the event loop when the
    /// timer fires, whether or not the wait was still open (closing a connection whose reply is
    /// overdue).
    func wait(_ what: String, atMost limit: Duration?, whenTimerFires: @escaping @Sendable () -> Void = {}) throws -> Value {
        let timer = startTimer(what, limit, whenTimerFires: whenTimerFires)
        defer { timer?.cancel() }
        return try promise.futureResult.wait()
    }

    /// `wait(_:atMost:whenTimerFires:)` for a task: suspends instead of blocking.
    func value(_ what: String, atMost limit: Duration?, whenTimerFires: @escaping @Sendable () -> Void = {}) async throws -> Value {
        let timer = startTimer(what, limit, whenTimerFires: whenTimerFires)
        defer { timer?.cancel() }
        return try await promise.futureResult.get()
    }

    private func startTimer(_ what: String, _ limit: Duration?, whenTimerFires: @escaping @Sendable () -> Void) -> Scheduled<Void>? {
        limit.map { limit in
            promise.futureResult.eventLoop.scheduleTask(in: TimeAmount(limit)) {
                if self.claim() { self.promise.fail(StepTimedOut(what: what, limit: limit)) }
                whenTimerFires()
            }
        }
    }
}

extension BoundedWait where Value == PostgresConnection {
    /// A connection being made, to wait for with a limit: a handshake with a database going
    /// down or coming up can hang with no timeout of its own. A connection made after the wait
    /// ended is closed.
    static func connecting(_ info: PostgresConnectionInfo, on loop: any EventLoop, id: Int,
                           logger: Logger) -> BoundedWait<PostgresConnection> {
        let outcome = BoundedWait<PostgresConnection>(on: loop)
        PostgresConnection.connect(on: loop, configuration: info.configuration, id: id, logger: logger).whenComplete { result in
            if !outcome.settle(result), case .success(let late) = result {
                closeInBackground(late)
            }
        }
        return outcome
    }
}

/// A step of a task's conversation with the database that may not take longer than `limit`.
///
/// postgres-nio sends a query without learning whether the send failed, and a query sent on a
/// connection the server has just closed (a database shut down or crashed) can be dropped with
/// its reply never coming: the `await` never returns, and cancelling the task does not end it.
/// The lease and standby loop waited that way once, and the host never took the lease again
/// after a database restart. So the step runs in a task of its own that this wait can leave
/// behind: at `limit` the wait fails with `StepTimedOut`, the task is cancelled and the
/// connection closed, and the caller goes on with a new connection. A step left behind stays
/// parked on its dropped query: at most one per loop and database incident.
func boundedStep<Value: Sendable>(_ what: String, within limit: Duration, closing connection: PostgresConnection,
                                  _ operation: @escaping @Sendable () async throws -> Value) async throws -> Value {
    let wait = BoundedWait<Value>(on: connection.eventLoop)
    let step = Task {
        do {
            wait.settle(.success(try await operation()))
        } catch {
            wait.settle(.failure(error))
        }
    }
    return try await withTaskCancellationHandler {
        try await wait.value(what, atMost: limit, whenTimerFires: {
            step.cancel()
            closeInBackground(connection)
        })
    } onCancel: {
        step.cancel()
    }
}

/// A database step that did not finish within its limit (`BoundedWait`, `boundedStep`). For an
/// append, its outcome is unknown.
struct StepTimedOut: Error, CustomStringConvertible {
    let what: String
    let limit: Duration
    var description: String { "\(what): no answer from the database within \(limit)" }
}
