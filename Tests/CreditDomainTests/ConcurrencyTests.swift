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
}
