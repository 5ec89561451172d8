import CreditStore
import Foundation

/// Decodes the journal's records for recovery's replay, on a thread of its own a few batches
/// ahead of it, so that the replay thread only applies them.
///
/// At 1M records, decoding the protobuf entries took ~0.45 s of a ~3.8 s replay on one core;
/// on the other core (which the archiving thread leaves mostly idle) it overlaps with the
/// applying. A short journal is decoded on the replay's thread as it goes: no thread for a
/// few records.
///
/// Decoded entries are freed by the thread that decoded them: the replay hands each applied
/// batch back, and the decoding thread drops it before decoding the next one. glibc's malloc
/// gives each thread its own arena, and a free from another thread takes the owning arena's
/// lock (the same reason `ReplayArchiving` hands archived events back).
final class ReplayDecoding: @unchecked Sendable {
    /// Entries per batch; with `batchesAhead`, what is decoded and not yet applied stays at a
    /// few megabytes.
    static let batchSize = 1_024
    static let batchesAhead = 8
    /// From this many records, decoding gets its own thread.
    static let threadFromRecords = 8_192

    /// Consecutive records' entries, and the reason the record after them could not be decoded.
    struct Batch {
        var entries: [JournalEntry]
        var failure: (sequence: UInt64, reason: String)?
    }

    private let records: [JournalRecord]
    private let threaded: Bool
    /// Guards everything below; signalled whenever any of it changes.
    private let condition = NSCondition()
    /// Decoded batches not handed out yet, in order.
    private var ready: [Batch] = []
    /// Applied batches, for the decoding thread to free.
    private var applied: [[JournalEntry]] = []
    /// Every batch has been decoded (or decoding stopped at a failure).
    private var allDecoded = false
    /// The replay is over; the decoding thread stops.
    private var finished = false
    private var threadExited = false
    /// Without a thread: where the next batch starts.
    private var nextInline = 0

    init(records: [JournalRecord]) {
        self.records = records
        threaded = records.count >= Self.threadFromRecords
        guard threaded else { return }
        let thread = Thread { [self] in
            nameCurrentThread("creditd-decode")
            run()
            condition.withLock {
                threadExited = true
                condition.broadcast()
            }
        }
        thread.start()
    }

    /// The next batch in journal order; nil once every record was handed out (or after a
    /// batch with a failure).
    func next() -> Batch? {
        guard threaded else {
            guard nextInline < records.count else { return nil }
            let end = min(nextInline + Self.batchSize, records.count)
            let batch = Self.decode(records[nextInline..<end])
            nextInline = batch.failure == nil ? end : records.count
            return batch
        }
        return condition.withLock {
            while ready.isEmpty && !allDecoded { condition.wait() }
            guard !ready.isEmpty else { return nil }
            condition.broadcast()
            return ready.removeFirst()
        }
    }

    /// Takes an applied batch's entries, for the decoding thread to free. They move into the
    /// hand-back list under the lock, so no reference stays with the caller: had the caller
    /// kept one past the decoding thread's release, the caller's thread would free them.
    func recycle(_ batch: inout Batch) {
        guard threaded else {
            batch.entries = []
            return
        }
        condition.withLock {
            applied.append([])
            swap(&applied[applied.count - 1], &batch.entries)
            condition.broadcast()
        }
    }

    /// Stops the decoding thread (at once if the replay ended early) and waits for it.
    func finish() {
        guard threaded else { return }
        var leftovers: ([Batch], [[JournalEntry]]) = ([], [])
        condition.withLock {
            finished = true
            condition.broadcast()
            while !threadExited { condition.wait() }
            swap(&leftovers.0, &ready)
            swap(&leftovers.1, &applied)
        }
        // Freed here, outside the lock: only after a failure or an early end, and that thread
        // has exited.
        leftovers = ([], [])
    }

    /// Decodes batch after batch while fewer than `batchesAhead` wait, and frees what the
    /// replay hands back, until the replay finishes.
    private func run() {
        var start = 0
        while true {
            var toFree: [[JournalEntry]] = []
            let (stop, decodeNext) = condition.withLock {
                while !finished && applied.isEmpty && (allDecoded || ready.count >= Self.batchesAhead) {
                    condition.wait()
                }
                swap(&toFree, &applied)
                return (finished, !allDecoded && ready.count < Self.batchesAhead)
            }
            toFree = []   // here, outside the lock
            if stop { return }
            guard decodeNext else { continue }
            let end = min(start + Self.batchSize, records.count)
            let batch = Self.decode(records[start..<end])
            start = end
            condition.withLock {
                allDecoded = batch.failure != nil || start == records.count
                ready.append(batch)
                condition.broadcast()
            }
        }
    }

    /// The entries of `records` up to the first that does not decode, and why it does not.
    private static func decode(_ records: ArraySlice<JournalRecord>) -> Batch {
        var batch = Batch(entries: [])
        batch.entries.reserveCapacity(records.count)
        for record in records {
            do {
                batch.entries.append(try JournalEntry(decoding: record.payload))
            } catch {
                batch.failure = (record.sequence, "\(error)")
                break
            }
        }
        return batch
    }
}
