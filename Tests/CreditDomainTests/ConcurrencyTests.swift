@testable import CreditDomain
import Foundation
import Synchronization
import XCTest

/// `runConcurrently` runs every task exactly once, and the tasks never outlive the call: a
/// helper thread that still held the closure when the call returned stopped the process with
/// "non-escaping closure has escaped" (seen once in a snapshot of the PostgreSQL store).
final class ConcurrencyTests: XCTestCase {
    func testEveryTaskRunsOnceAndNoneOutlivesTheCall() {
        for count in [0, 1, 2, 3, 7, 64] {
            let runs = Mutex([Int](repeating: 0, count: count))
            runConcurrently(count) { index in runs.withLock { $0[index] += 1 } }
            XCTAssertEqual(runs.withLock { $0 }, [Int](repeating: 1, count: count), "count \(count)")
        }
        // Many short calls: the window in which a helper could still hold the closure is small.
        let total = Mutex(0)
        for _ in 0..<3_000 {
            runConcurrently(2) { _ in total.withLock { $0 += 1 } }
        }
        XCTAssertEqual(total.withLock { $0 }, 6_000)
    }

    /// With `whileCalling`, the caller's work runs on the calling thread while helpers run the
    /// tasks; the call returns the caller's result (or throws its error) only once every task
    /// has run.
    func testTasksRunWhileTheCallerWorks() {
        struct Refused: Error {}
        let caller = pthread_self()
        for count in [0, 1, 2, 5] {
            let runs = Mutex([Int](repeating: 0, count: count))
            let answer = runConcurrently(count, { index in
                usleep(1_000)
                runs.withLock { $0[index] += 1 }
            }, whileCalling: { () -> Int in
                XCTAssertNotEqual(pthread_equal(pthread_self(), caller), 0, "the caller's work runs on the calling thread")
                return 42
            })
            XCTAssertEqual(answer, 42)
            XCTAssertEqual(runs.withLock { $0 }, [Int](repeating: 1, count: count), "count \(count)")
        }
        let runs = Mutex(0)
        XCTAssertThrowsError(try runConcurrently(4, { _ in
            usleep(2_000)
            runs.withLock { $0 += 1 }
        }, whileCalling: { () throws(Refused) in throw Refused() })) { error in
            XCTAssertTrue(error is Refused)
        }
        XCTAssertEqual(runs.withLock { $0 }, 4, "every task ran before the error came back")
    }
}
