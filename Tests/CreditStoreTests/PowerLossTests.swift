import CreditStore
import Foundation
import XCTest

/// Issue 11, gap 5: crash cycles through `PowerLossFileOperations`, which on a power loss keeps
/// only fsynced data and only directory entries the directory was fsynced after. Every
/// acknowledged record (and every snapshot whose write returned) must survive, across segment
/// rolls, snapshots and the segment deletions that follow them.
final class PowerLossTests: XCTestCase {
    var directory = ""

    override func setUpWithError() throws {
        directory = try TemporaryDirectory.makePath("store") + "/state"
    }

    override func tearDown() {
        TemporaryDirectory.remove(atPath: URL(fileURLWithPath: directory).deletingLastPathComponent().path)
    }

    func testAcknowledgedRecordsSurvivePowerLossCycles() async throws {
        var options = StoreOptions()
        options.segmentSize = 300
        var acknowledgedEnd: UInt64 = 0
        var acknowledgedSnapshot: UInt64 = 0
        var truncations = 0
        var random = SystemRandomNumberGenerator()
        for cycle in 0..<30 {
            let operations = try PowerLossFileOperations(directory: directory)
            options.fileOperations = operations
            // Every other cycle writes zeros ahead of the records (segment format 3), so power
            // also goes off inside those zeros and while a full segment is cut back to its seal.
            options.zeroFillBytes = cycle % 2 == 0 ? 0 : 128
            let (store, recovery) = try DurableStore.open(directory: directory, options: options)
            try check(recovery, acknowledgedEnd: acknowledgedEnd, cycle: cycle)
            truncations += recovery.report.truncations.count
            XCTAssertGreaterThanOrEqual(recovery.snapshot?.sequence ?? 0, acknowledgedSnapshot,
                                        "cycle \(cycle): a snapshot whose write returned is gone")

            // One writer (so payloads follow from sequence numbers) alternating queued batches
            // (journal thread, group commit) and appendDurably (writer-thread path), a snapshot
            // task alongside, and the power cut after a random number of batches.
            let batches = Int.random(in: 1...12, using: &random)
            let snapshotBox = SequenceBox()
            let snapshots = Task {
                while !Task.isCancelled {
                    let sequence = store.lastDurableSequence
                    if sequence > 0 {
                        do {
                            _ = try await store.writeSnapshot(sequence: sequence, payload: state(sequence))
                            snapshotBox.raise(to: sequence)
                        } catch {
                            return
                        }
                    }
                    try? await Task.sleep(nanoseconds: 300_000)
                }
            }
            var next = recovery.nextSequence
            // Power goes off right after a random write: a record batch, a segment header, a
            // seal or a snapshot, before the sync that would have covered it.
            operations.powerLoss(afterWrites: Int.random(in: 1...batches + 2, using: &random))
            for batch in 0..<10_000 {
                let size = UInt64.random(in: 1...6, using: &random)
                let last = next + size - 1
                do throws(StoreError) {
                    if batch % 2 == 0 {
                        for sequence in next...last { _ = try store.append(payload(sequence)) }
                        try await store.waitDurable(upTo: last)
                    } else {
                        let end = try store.appendDurably((next...last).map { payload($0) })
                        XCTAssertEqual(end, last)
                    }
                    acknowledgedEnd = last
                    next = last + 1
                } catch {
                    guard case .fault = error else { throw error }
                    break
                }
            }
            XCTAssertNotNil(store.fault, "cycle \(cycle): the power loss faults the journal")
            snapshots.cancel()
            _ = await snapshots.result
            await store.close()
            // Alternate the strict model with torn ones: a torn tail must be truncated, never
            // mistaken for corruption.
            let models: [PowerLossFileOperations.UnsyncedData] = [.dropped, .tornPrefix, .tornPrefixThenZeros]
            try operations.restoreDurableState(unsynced: models[cycle % models.count])
            acknowledgedSnapshot = max(acknowledgedSnapshot, snapshotBox.value)
        }
        let recovery = try await reopen(directory, options: options)
        try check(recovery, acknowledgedEnd: acknowledgedEnd, cycle: 30)
        print("power-loss cycles: 30, acknowledged through seq \(acknowledgedEnd), torn tails truncated: \(truncations)")
    }

    private func check(_ recovery: Recovery, acknowledgedEnd: UInt64, cycle: Int) throws {
        XCTAssertGreaterThanOrEqual(recovery.nextSequence - 1, acknowledgedEnd, "cycle \(cycle): acknowledged records lost")
        if let snapshot = recovery.snapshot {
            XCTAssertEqual(snapshot.payload, state(snapshot.sequence), "cycle \(cycle)")
        }
        for record in recovery.records {
            XCTAssertEqual(Array(record.payload), payload(record.sequence), "cycle \(cycle), seq \(record.sequence)")
        }
    }
}


final class SequenceBox: @unchecked Sendable {
    private let lock = NSLock()
    private var current: UInt64 = 0
    func raise(to sequence: UInt64) { lock.withLock { current = max(current, sequence) } }
    var value: UInt64 { lock.withLock { current } }
}
