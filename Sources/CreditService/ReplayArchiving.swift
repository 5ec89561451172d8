import CreditDomain
import Foundation
import Logging
import Synchronization

/// Archives sealed event chunks on the other core while recovery replays the journal.
///
/// Replaying a long tail records several events per record; kept in memory until the daemon
/// serves, a 1M-record tail grew the process by about a gigabyte, and clearing those fresh
/// pages was over a third of the replay's time. The replay offers its ledger every
/// `offerEveryRecords` records; this thread archives the offered value's sealed chunks, which
/// frees their events in the replay's ledger too (the chunks are shared), so the replay reuses
/// that memory instead of growing. The archive files are not synced here: until a snapshot
/// names their blocks, the journal still holds those events (as in the background pass).
final class ReplayArchiving: Sendable {
    /// Records between two offers. An offer shares the ledger, so the replay copies each chunk
    /// it next changes (as the writer does after publishing): offering every 2,048 records, a
    /// 6M-record replay took 68 s against 45 s without offers. Every 8,192 records, the events
    /// waiting between two passes stay around 20 MB.
    static let offerEveryRecords = 8_192

    private struct State {
        var offered: Ledger?
        var finished = false
    }
    private let state = Mutex(State())
    private let stopped = DispatchSemaphore(value: 0)

    init(archiver: EventArchiver, threshold: Int, logger: Logger) {
        let thread = Thread { [self] in
            run(archiver: archiver, threshold: threshold, logger: logger)
            stopped.signal()
        }
        thread.name = "creditd-archive"
        thread.start()
    }

    /// The replay's ledger as it stands; replaces an offer the thread has not taken yet.
    func offer(_ ledger: Ledger) {
        state.withLock { $0.offered = ledger }
    }

    /// Stops the thread after its current pass and waits for it; later calls return at once.
    func finish() {
        let first = state.withLock { state in
            defer { state.finished = true }
            return !state.finished
        }
        if first { stopped.wait() }
    }

    private func run(archiver: EventArchiver, threshold: Int, logger: Logger) {
        while true {
            let (ledger, finished) = state.withLock { state in
                defer { state.offered = nil }
                return (state.offered, state.finished)
            }
            if finished { return }
            guard let ledger else {
                usleep(2_000)
                continue
            }
            guard EventArchiver.residentChunks(of: ledger) >= threshold else { continue }
            do {
                try archiver.archive(ledger, sync: false)
            } catch {
                // The events stay in memory; the background pass and the next snapshot retry.
                logger.error("archiving events during recovery failed", metadata: ["error": "\(error)"])
                return
            }
        }
    }
}
