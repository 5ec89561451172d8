import Dispatch

/// A value shared by concurrent tasks that touch disjoint parts of it (or only read it).
package struct Unchecked<Value>: @unchecked Sendable {
    package let value: Value

    package init(_ value: Value) {
        self.value = value
    }
}

/// Runs `count` independent tasks on the cores (snapshots of a million subscriptions must be
/// written and read within seconds on two cores). Returns when all are done.
package func runConcurrently(_ count: Int, _ task: @Sendable (Int) -> Void) {
    if count == 1 {
        task(0)
    } else {
        DispatchQueue.concurrentPerform(iterations: count, execute: task)
    }
}

