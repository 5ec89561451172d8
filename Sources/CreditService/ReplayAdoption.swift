import CreditDomain
import CreditStore

/// Recovery's use of the archive blocks a run wrote after its snapshot and before it stopped:
/// the replay takes them for the chunks it rebuilds instead of building and archiving the same
/// events again (`EventArchiver.adoptableBlocks`, `EventFeed.planAdoption`).
///
/// The archive files keep those blocks until the adoption ends; then they keep the ones the
/// replay took and lose the rest, before anything is archived anew (the replay's own archiving
/// starts only once chunks are sealed in memory, which happens only after the adoption).
struct ReplayAdoption {
    private let archiver: EventArchiver?
    /// The blocks the recovered snapshot names.
    private let referenced: [EventArchiveFiles.Block]
    /// Whether the adoption has not been finished yet.
    private var open: Bool
    /// Chunks the replay took from the archive.
    private(set) var adoptedChunks = 0

    /// Plans the adoption on `ledger` (the recovered snapshot's state) before a replay of
    /// `records` records, and makes the archive files keep what it may take.
    init(archiver: EventArchiver?, referenced: [EventArchiveFiles.Block], ledger: inout Ledger,
         records: Int) throws {
        self.archiver = archiver
        self.referenced = referenced
        let adoptable = records == 0 ? [] : archiver?.adoptableBlocks(for: ledger, after: referenced) ?? []
        try archiver?.files.discardUnreferenced(keeping: referenced + adoptable.map(EventArchiveFiles.Block.init))
        if let archiver { ledger.planEventAdoption(adoptable, from: archiver) }
        open = !adoptable.isEmpty
        // A plan the feed did not take (its first block is not the open chunk's) ends here.
        try finishIfOver(&ledger)
    }

    /// After each replayed record: finishes the adoption once the blocks ran out.
    @inline(__always)
    mutating func finishIfOver(_ ledger: inout Ledger) throws {
        if open, !ledger.feed.isAdopting { try finish(&ledger) }
    }

    /// Ends the adoption (at the latest when the replay is over): the feed reads back what it
    /// counted into a chunk it did not fill, and the files keep only the blocks taken. Blocks
    /// an earlier run wrote may not be durable yet: the next snapshot syncs their files.
    mutating func finish(_ ledger: inout Ledger) throws {
        guard open else { return }
        open = false
        let adopted = try ledger.finishEventAdoption().map(EventArchiveFiles.Block.init)
        try archiver?.files.discardUnreferenced(keeping: referenced + adopted)
        archiver?.files.adopt(adopted)
        adoptedChunks = adopted.count
    }
}

extension EventArchiveFiles.Block {
    /// Where an adoptable chunk's block is.
    init(_ adoptable: AdoptableEventBlock) {
        self.init(file: adoptable.file, offset: adoptable.offset, length: adoptable.length)
    }
}
