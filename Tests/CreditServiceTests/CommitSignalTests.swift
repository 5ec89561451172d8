import Synchronization
import XCTest

@testable import CreditService

/// The commit signal that long polls and event streams wait on: a waiter that is no longer
/// wanted leaves nothing behind, whether its call was answered another way or cancelled.
final class CommitSignalTests: XCTestCase {
    func testACancelledWaitIsDroppedAndNeverWoken() {
        let signal = CommitSignal(sequence: 5)
        let woken = Atomic<Int>(0)
        let id = signal.wait(after: 5) { _ in woken.add(1, ordering: .relaxed) }
        signal.wait(after: 5) { _ in woken.add(10, ordering: .relaxed) }
        XCTAssertEqual(signal.waiterCount, 2)
        signal.cancelWait(id)
        XCTAssertEqual(signal.waiterCount, 1)
        signal.published(6)
        XCTAssertEqual(woken.load(ordering: .relaxed), 10, "only the waiter still wanted is woken")
        XCTAssertEqual(signal.waiterCount, 0)
        signal.cancelWait(id)  // after the fact: nothing to do
    }

    func testNextReturnsFalseOnceItsTaskIsCancelledAndLeavesNoWaiter() async {
        let signal = CommitSignal(sequence: 1)
        // Cancelled while waiting.
        let waiting = Task { await signal.next(after: 1) }
        while signal.waiterCount == 0 { await Task.yield() }
        waiting.cancel()
        let result = await waiting.value
        XCTAssertFalse(result)
        XCTAssertEqual(signal.waiterCount, 0)
        // Cancelled before it registers.
        let early = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return await signal.next(after: 1)
        }
        let earlyResult = await early.value
        XCTAssertFalse(earlyResult)
        XCTAssertEqual(signal.waiterCount, 0)
        // Woken by a commit as before.
        let woken = Task { await signal.next(after: 1) }
        while signal.waiterCount == 0 { await Task.yield() }
        signal.published(2)
        let wokenResult = await woken.value
        XCTAssertTrue(wokenResult)
        XCTAssertEqual(signal.unwokenCount, 0, "no bookkeeping left for finished calls")
    }
}
