import CreditDomain
import CreditStore
import LedgerEncoding
import Synchronization

/// The file store's event archive (E5 keeps 45 days of events; at 1M subscriptions that is
/// ~12M events, several GiB as values): it moves sealed chunks of the committed feed into
/// `EventArchiveFiles` and reads them back when a call reaches them.
///
/// Archiving changes where a chunk's events are, never what they are, so it works on the
/// committed ledger the readers share, off the writer: the writer never waits for it. Chunks go
/// oldest first, so the archived ones are always a prefix of the sealed chunks (the snapshot
/// encoding relies on it). A snapshot first archives what is left and syncs the files, then
/// names the blocks; until then the journal still holds those events.
final class EventArchiver: EventArchive, Sendable {
    let files: EventArchiveFiles
    /// Recently read chunks: a reader paging through old events reads each block once.
    private let recent = Mutex<[(firstSeq: UInt64, events: [LedgerEvent])]>([])
    private static let recentChunks = 8
    /// One archiving pass at a time (the background pass and a snapshot's).
    private let archiving = Mutex<Void>(())

    init(files: EventArchiveFiles) {
        self.files = files
    }

    func events(of chunk: ArchivedEventChunk) throws -> [LedgerEvent] {
        if let hit = recent.withLock({ recent in recent.first { $0.firstSeq == chunk.firstSeq }?.events }) { return hit }
        let events: [LedgerEvent]
        do {
            let payload = try files.read(.init(file: chunk.file, offset: chunk.offset, length: chunk.length), firstSeq: chunk.firstSeq)
            events = try EventChunkCodec.decode(payload, firstSeq: chunk.firstSeq)
        } catch {
            throw EventArchiveReadError("cannot read archived events from seq \(chunk.firstSeq): \(error)")
        }
        recent.withLock { recent in
            recent.removeAll { $0.firstSeq == chunk.firstSeq }
            recent.insert((chunk.firstSeq, events), at: 0)
            if recent.count > Self.recentChunks { recent.removeLast() }
        }
        return events
    }

    /// Sealed chunks of `ledger` still in memory.
    static func residentChunks(of ledger: Ledger) -> Int {
        residentChunks(of: ledger.feed.sealedChunks)
    }

    /// Chunks of `chunks` still in memory.
    static func residentChunks(of chunks: [SealedEventChunk]) -> Int {
        chunks.count - firstResident(in: chunks)
    }

    /// The index of the first chunk of `chunks` still in memory (`chunks.count` when none is).
    /// The archived chunks are a prefix (archiving goes oldest first), so a binary search finds
    /// it: the background pass asks every 256 records, and a walk over every sealed chunk (about
    /// 11,700 at 1M subscriptions, each behind its lock) cost the writes about a microsecond each.
    static func firstResident(in chunks: [SealedEventChunk]) -> Int {
        var low = 0, high = chunks.count
        while low < high {
            let middle = low + (high - low) / 2
            if chunks[middle].isResident { high = middle } else { low = middle + 1 }
        }
        return low
    }

    /// Moves every sealed chunk of `ledger` (a committed, durable state) still in memory into
    /// the archive; `sync` also makes the files durable. Returns how many chunks moved.
    /// Blocking I/O: call it on a thread of its own.
    @discardableResult
    func archive(_ ledger: Ledger, sync: Bool) throws -> Int {
        try archive(ledger.feed.sealedChunks, sync: sync)
    }

    /// Moves the chunks of `chunks` still in memory into the archive (the chunks are shared
    /// with the ledger they came from, which sees them archived too). The events each moved
    /// chunk let go of go to `release`; by default they are freed on this thread.
    @discardableResult
    func archive(_ chunks: [SealedEventChunk], sync: Bool,
                 release: ([LedgerEvent]) -> Void = { _ in }) throws -> Int {
        try archiving.withLock { _ in
            var moved = 0
            for chunk in chunks[Self.firstResident(in: chunks)...] {
                guard let events = chunk.residentEvents else { continue }
                let block = try files.append(firstSeq: chunk.firstSeq, payload: EventChunkCodec.encode(events))
                let released = chunk.markArchived(
                    ArchivedEventChunk(firstSeq: chunk.firstSeq, file: block.file, offset: block.offset,
                                       length: block.length, newestRecordedAt: chunk.newestRecordedAt),
                    in: self)
                if let released { release(released) }
                moved += 1
            }
            if sync { try files.sync() }
            return moved
        }
    }

    /// The blocks an earlier run archived after the recovered snapshot's (`referenced`) for the
    /// chunks the replay of the journal rebuilds, from `ledger`'s open chunk on. Recovery hands
    /// them to the replay (`Ledger.planEventAdoption`), which then counts those chunks' events
    /// instead of building and archiving them again: at 1M records, building the tail's events
    /// and archiving them was about two fifths of the replay. None when a sealed chunk of
    /// `ledger` is still in memory (archived chunks must stay a prefix).
    func adoptableBlocks(for ledger: Ledger, after referenced: [EventArchiveFiles.Block]) -> [AdoptableEventBlock] {
        guard Self.residentChunks(of: ledger) == 0 else { return [] }
        return files.unreferencedBlocks(after: referenced, from: ledger.feed.openChunkFirstSeq,
                                        seqsPerBlock: UInt64(EventFeed.chunkSize)).map { found in
            AdoptableEventBlock(firstSeq: found.firstSeq, file: found.block.file, offset: found.block.offset,
                                length: found.block.length)
        }
    }

    /// The snapshots the file store keeps once `written` is durable, with the blocks each
    /// names: `written` and the newest earlier one (the store's fallback). A snapshot at the
    /// same sequence as an earlier one replaces it.
    static func snapshotsKept(_ saved: [(sequence: UInt64, blocks: [EventArchiveFiles.Block])],
                              after written: (sequence: UInt64, blocks: [EventArchiveFiles.Block]))
        -> [(sequence: UInt64, blocks: [EventArchiveFiles.Block])] {
        let fallback = saved.filter { $0.sequence < written.sequence }.max { $0.sequence < $1.sequence }
        return (fallback.map { [$0] } ?? []) + [written]
    }

    /// The blocks a snapshot of `ledger` names.
    static func blocks(of ledger: Ledger) -> [EventArchiveFiles.Block] {
        ledger.feed.sealedChunks.compactMap { chunk in
            chunk.archivedLocation.map { .init(file: $0.file, offset: $0.offset, length: $0.length) }
        }
    }
}
