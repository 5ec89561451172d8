import CreditStore
import Foundation
import XCTest

final class FaultTests: StoreDirectoryTestCase {
    func expectFault(_ sequence: UInt64, in store: DurableStore, operation: String,
                     file: StaticString = #filePath, line: UInt = #line) async {
        do {
            try await store.waitDurable(upTo: sequence)
            XCTFail("seq \(sequence) must not be acknowledged", file: file, line: line)
        } catch {
            guard case .fault(let fault) = error else { return XCTFail("\(error)", file: file, line: line) }
            XCTAssertEqual(fault.errno, EIO, file: file, line: line)
            XCTAssertEqual(fault.operation, operation, file: file, line: line)
        }
    }

    func runFaultScenario(
        operation: String, outcome: WriteOutcome, inject: (FaultInjectingFileOperations) -> Void
    ) async throws -> Recovery {
        let operations = FaultInjectingFileOperations()
        let reported = FaultBox()
        var options = StoreOptions()
        options.fileOperations = operations
        options.onFault = { reported.set($0) }
        let (store, _) = try DurableStore.open(directory: directory, options: options)
        for index in UInt64(1)...5 { _ = try await store.appendAndWait(payload(index)) }

        inject(operations)
        // The first append always gets in; later ones race with the failing batch and are either
        // queued (then their wait fails) or refused outright.
        var pending = [try store.append(payload(6))]
        for index in UInt64(7)...9 {
            do {
                pending.append(try store.append(payload(index)))
            } catch {
                guard case .fault = error else { throw error }
            }
        }
        XCTAssertEqual(pending, Array(6..<UInt64(6 + pending.count)))
        for sequence in pending { await expectFault(sequence, in: store, operation: operation) }

        let fault = try XCTUnwrap(store.fault)
        XCTAssertEqual(fault.firstUnacknowledgedSequence, 6)
        XCTAssertEqual(fault.outcome, outcome, fault.description)
        XCTAssertEqual(fault.outcome(of: 6), outcome)
        XCTAssertEqual(fault.outcome(of: fault.lastAttemptedSequence + 1), .notApplied)
        XCTAssertEqual(reported.value, fault)
        XCTAssertEqual(store.stats.fault, fault)
        XCTAssertEqual(store.stats.lastDurableSequence, 5)
        XCTAssertTrue(store.stats.faultDescription!.contains("Input/output error"), fault.description)
        XCTAssertTrue(fault.description.contains("seq 6"))
        // Sticky: later appends are refused even once the disk "recovers"; acknowledged waits still succeed.
        operations.failWrites(errno: nil)
        operations.failSyncs(errno: nil)
        XCTAssertThrowsError(try store.append(payload(10))) { XCTAssertEqual($0 as? StoreError, .fault(fault)) }
        try await store.waitDurable(upTo: 5)
        await expectFault(6, in: store, operation: operation)
        await store.close()

        let recovery = try await reopen(directory)
        XCTAssertEqual(Array(recovery.records.prefix(5)), (1...5).map { JournalRecord(sequence: $0, payload: payload($0)) })
        return recovery
    }

    func testWriteFailureFaultsAndLosesNothingAcknowledged() async throws {
        let recovery = try await runFaultScenario(operation: "write", outcome: .notApplied) { $0.failWrites(errno: EIO) }
        XCTAssertEqual(recovery.records.count, 5, "the failed write put nothing on disk")
        XCTAssertEqual(recovery.nextSequence, 6)
    }

    /// A failed write whose bytes cannot be cut back off (the truncation's fsync fails too) has
    /// an unknown outcome.
    func testWriteFailureWithFailedCleanupIsUnknown() async throws {
        _ = try await runFaultScenario(operation: "write", outcome: .unknown) {
            $0.failWrites(errno: EIO)
            $0.failSyncs(errno: EIO)
        }
    }

    func testSyncFailureFaultsAndLosesNothingAcknowledged() async throws {
        let recovery = try await runFaultScenario(operation: "fdatasync", outcome: .unknown) { $0.failSyncs(errno: EIO) }
        // The written-but-unsynced batch may or may not be there; never anything acknowledged missing.
        XCTAssertGreaterThanOrEqual(recovery.records.count, 5)
        XCTAssertEqual(recovery.records.map(\.sequence), Array(1...UInt64(recovery.records.count)))
    }

    /// A failure while creating the next segment faults the journal the same way.
    func testFailureDuringSegmentRollFaults() async throws {
        let operations = FaultInjectingFileOperations()
        var options = StoreOptions()
        options.fileOperations = operations
        options.segmentSize = 100
        let (store, _) = try DurableStore.open(directory: directory, options: options)
        var acknowledged: UInt64 = 0
        for index in UInt64(1)...3 { acknowledged = try await store.appendAndWait(payload(index)) }
        operations.failSyncs(errno: EIO)
        var faulted = false
        for index in UInt64(4)...12 {
            do {
                acknowledged = try await store.appendAndWait(payload(index))
            } catch {
                faulted = true
                break
            }
        }
        XCTAssertTrue(faulted)
        XCTAssertNotNil(store.fault)
        await store.close()
        let recovery = try await reopen(directory, options: StoreOptions())
        XCTAssertGreaterThanOrEqual(recovery.nextSequence - 1, acknowledged)
    }

    // MARK: LD_PRELOAD shim

    static let childDirectoryVariable = "CREDITSTORE_SHIM_CHILD_DIR"

    /// Runs only as the child of `testPreloadShimFaultsRealProcess`: appends under the shim, pulls
    /// the trigger, and prints what the store reported.
    func testShimChildProcess() async throws {
        guard let childDirectory = ProcessInfo.processInfo.environment[Self.childDirectoryVariable],
              let trigger = ProcessInfo.processInfo.environment["CREDITD_FAULTINJECT_TRIGGER"] else {
            throw XCTSkip("runs only as a child process of testPreloadShimFaultsRealProcess")
        }
        let (store, _) = try DurableStore.open(directory: childDirectory)
        for index in UInt64(1)...3 { _ = try await store.appendAndWait(payload(index)) }
        print("CHILD ACKED 3")
        XCTAssertTrue(FileManager.default.createFile(atPath: trigger, contents: Data()))
        do {
            _ = try await store.appendAndWait(payload(4))
            print("CHILD UNEXPECTED ACK")
        } catch {
            if case .fault(let fault) = error { print("CHILD FAULT op=\(fault.operation) errno=\(fault.errno)") }
        }
        await store.close()
    }

    /// Compiles Tests/Fixtures/faultinject/faultinject.c into the test directory.
    func buildShim() throws -> String {
        try FaultInjectionShim.build(into: directory)
    }

    /// Runs one test of this class in a child process with `environment` added; returns its output.
    func runChild(_ test: String, environment extra: [String: String]) throws -> String {
        let child = try OpsProcess.run([CommandLine.arguments[0], "CreditStoreTests.FaultTests/\(test)"], environment: extra)
        return child.stdout + child.stderr
    }

    static let budgetChildVariable = "CREDITSTORE_BUDGET_CHILD_DIR"

    /// Runs only as the child of `testPreloadShimFullDiskRealProcess`: 16 concurrent appends on a
    /// "disk" that fills up, printing what was acknowledged and what was refused.
    func testBudgetChildProcess() async throws {
        guard let childDirectory = ProcessInfo.processInfo.environment[Self.budgetChildVariable],
              let trigger = ProcessInfo.processInfo.environment["CREDITD_FAULTINJECT_TRIGGER"] else {
            throw XCTSkip("runs only as a child process of testPreloadShimFullDiskRealProcess")
        }
        let (store, _) = try DurableStore.open(directory: childDirectory)
        for index in UInt64(1)...3 { _ = try await store.appendAndWait(payload(index)) }
        XCTAssertTrue(FileManager.default.createFile(atPath: trigger, contents: Data()))
        // One batch of 16 through appendDurably (deterministic: several whole records fit), then
        // nothing else is accepted.
        do throws(StoreError) {
            _ = try store.appendDurably((4...19).map { payload($0) })
            print("CHILD UNEXPECTED ACK")
        } catch {
            if case .fault(let fault) = error {
                print("CHILD FAULT errno=\(fault.errno) outcome=\(fault.outcome) last=\(fault.lastAttemptedSequence)")
            }
        }
        await store.close()
    }

    /// Gap 1 in a real process under the LD_PRELOAD shim's budget mode (no root needed): the
    /// write that runs out of space leaves whole records of the batch in the segment unless
    /// they are cut back off.
    func testPreloadShimFullDiskRealProcess() async throws {
        let library = try buildShim()
        let state = directory + "/state"
        let recordBytes = 16 + payload(10).count
        let text = try runChild("testBudgetChildProcess", environment: [
            "LD_PRELOAD": library, "CREDITD_FAULTINJECT_DIR": state,
            "CREDITD_FAULTINJECT_TRIGGER": directory + "/trigger", "CREDITD_FAULTINJECT_OPS": "write",
            "CREDITD_FAULTINJECT_BUDGET": String(5 * recordBytes + 3), Self.budgetChildVariable: state,
        ])
        XCTAssertTrue(text.contains("CHILD FAULT errno=\(ENOSPC) outcome=not_applied last=19"), text)
        XCTAssertFalse(text.contains("UNEXPECTED"), text)
        let recovery = try await reopen(state)
        XCTAssertEqual(recovery.records.map(\.sequence), [1, 2, 3], "none of the refused batch is back")
        XCTAssertTrue(recovery.report.truncations.isEmpty)
    }

    func testPreloadShimFaultsRealProcess() throws {
        let library = try buildShim()

        let state = directory + "/state"
        let text = try runChild("testShimChildProcess", environment: [
            "LD_PRELOAD": library, "CREDITD_FAULTINJECT_DIR": state,
            "CREDITD_FAULTINJECT_TRIGGER": directory + "/trigger", "CREDITD_FAULTINJECT_OPS": "fsync",
            Self.childDirectoryVariable: state,
        ])
        XCTAssertTrue(text.contains("CHILD ACKED 3"), text)
        XCTAssertTrue(text.contains("CHILD FAULT op=fdatasync errno=\(EIO)"), text)
        XCTAssertFalse(text.contains("UNEXPECTED"), text)

        let verification = try verifyStateDirectory(state)
        XCTAssertTrue(verification.recoverable, verification.description)
        XCTAssertGreaterThanOrEqual(verification.recordCount, 3)
    }
}

final class FaultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var fault: StoreFault?
    func set(_ value: StoreFault) { lock.withLock { fault = value } }
    var value: StoreFault? { lock.withLock { fault } }
}
