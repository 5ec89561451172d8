import CreditDomain
import CreditStore
import Foundation
import Logging
import Synchronization

/// Archives sealed event chunks on the other core while recovery replays the journal.
///
/// Replaying a long tail records several events per record; kept in memory until the daemon
/// serves, a 1M-record tail grew the process by about a gigabyte, and clearing those fresh
/// pages was over a third of the replay's time. The replay offers its ledger every
/// `offerEveryRecords` records; this thread archives those sealed chunks, which frees their
/// events in the replay's ledger too (the chunks are objects the ledger shares), so the replay
/// reuses that memory instead of growing. Only the chunk list is offered, never the ledger: a
/// shared ledger made the replay copy every part of it that it next changed, which cost a
/// 1M-record replay about a quarter of its time. The archive files are not synced here: until a snapshot
/// names their blocks, the journal still holds those events (as in the background pass).
///
/// The events an archived chunk lets go of come back to the replay, which frees them at its
/// next offer: glibc's malloc gives each thread its own arena, and a free from another thread
/// takes the owning arena's lock. Freed here, they made the replay's every allocation contend
/// for that lock (futex wake-ups were about a quarter of the replay's time at 1M records).
final class ReplayArchiving: Sendable {
    /// Records between two offers. Every 8,192 records, the events waiting between two passes
    /// stay around 20 MB.
    static let offerEveryRecords = 8_192

    private struct State {
        var offered: [SealedEventChunk]?
        /// Events of archived chunks, for the replay's thread to free.
        var released: [[LedgerEvent]] = []
        var finished = false
    }
    private let state = Mutex(State())
    private let stopped = DispatchSemaphore(value: 0)

    init(archiver: EventArchiver, threshold: Int, logger: Logger) {
        let thread = Thread { [self] in
            nameCurrentThread("creditd-archive")
            run(archiver: archiver, threshold: threshold, logger: logger)
            stopped.signal()
        }
        thread.start()
    }

    /// The sealed chunks of the replay's ledger as it stands; replaces an offer the thread has
    /// not taken yet. Frees the events of the chunks archived since the last offer.
    func offer(_ ledger: Ledger) {
        let chunks = ledger.feed.sealedChunks
        state.withLock { $0.offered = chunks }
        freeReleased()
    }

    /// Stops the thread after its current pass and waits for it; later calls return at once.
    func finish() {
        let first = state.withLock { state in
            defer { state.finished = true }
            return !state.finished
        }
        guard first else { return }
        stopped.wait()
        freeReleased()
    }

    /// Frees the released events on the caller's thread (the replay's), outside the lock.
    private func freeReleased() {
        let released = state.withLock { state in
            defer { state.released = [] }
            return state.released
        }
        _ = consume released
    }

    private func run(archiver: EventArchiver, threshold: Int, logger: Logger) {
        while true {
            let (chunks, finished) = state.withLock { state in
                defer { state.offered = nil }
                return (state.offered, state.finished)
            }
            if finished { return }
            guard let chunks else {
                usleep(2_000)
                continue
            }
            guard EventArchiver.residentChunks(of: chunks) >= threshold else { continue }
            do {
                try archiver.archive(chunks, sync: false) { events in
                    state.withLock { $0.released.append(events) }
                }
            } catch {
                // The events stay in memory; the background pass and the next snapshot retry.
                logger.error("archiving events during recovery failed", metadata: ["error": "\(error)"])
                return
            }
        }
    }
}
