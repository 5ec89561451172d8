import NIOCore
import NIOPosix

/// Unary replies completed together off their event loops (a durable batch's acknowledgements)
/// go to each event loop as one task, not one task per reply.
///
/// Each `EventLoop.execute` from the writer takes the loop's task-queue lock and allocates the
/// task's closure there, to be freed on the loop: at 64 writes in flight, the writer spent ~7%
/// of its CPU in lock waits and wake-ups (most of them on that lock or on the loop's malloc
/// arena), and the loops another ~10% waiting for the same locks. With the batch's replies
/// collected per loop, a batch costs one hand-off per loop; each loop then completes them in
/// the order they were collected, so one connection's replies keep their order.
///
/// Collecting is per thread: `collecting(_:)` makes a batch current on the calling thread for
/// the duration of its body, and `UnaryResponder` adds to it when one is current there. A
/// reply completed on another thread, or on its own event loop, is unaffected.
public final class ReplyBatch: @unchecked Sendable {
    // @unchecked: an instance is only touched by the thread that made it current; the tasks
    // handed to the loops take copies of its arrays.
    private static let current = ThreadSpecificVariable<ReplyBatch>()

    private var loops: [any EventLoop] = []
    /// `replies[i]` go to `loops[i]`, in the order they were completed.
    private var replies: [[Reply]] = []

    private struct Reply: Sendable {
        let complete: @Sendable (Result<[UInt8], any Error>) -> Void
        let result: Result<[UInt8], any Error>
    }

    private init() {}

    /// Runs `body` with a batch current on this thread, then hands each event loop its replies
    /// in one task. Nested calls collect into the outermost batch.
    public static func collecting(_ body: () -> Void) {
        if current.currentValue != nil {
            body()
            return
        }
        let batch = ReplyBatch()
        current.currentValue = batch
        body()
        current.currentValue = nil
        batch.handOff()
    }

    /// Adds a reply for `loop` to the batch current on this thread; false when none is.
    static func add(_ result: Result<[UInt8], any Error>, on loop: any EventLoop,
                    complete: @escaping @Sendable (Result<[UInt8], any Error>) -> Void) -> Bool {
        guard let batch = current.currentValue else { return false }
        let reply = Reply(complete: complete, result: result)
        // A handful of loops: a linear search beats hashing.
        if let index = batch.loops.firstIndex(where: { $0 === loop }) {
            batch.replies[index].append(reply)
        } else {
            batch.loops.append(loop)
            batch.replies.append([reply])
        }
        return true
    }

    private func handOff() {
        for (loop, replies) in zip(loops, replies) {
            loop.execute {
                for reply in replies { reply.complete(reply.result) }
            }
        }
    }
}
