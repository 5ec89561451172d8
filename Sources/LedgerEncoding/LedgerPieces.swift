import CreditDomain

/// A ledger's encoding as pieces made while they are read: the head, then each section's tag
/// and length and its bytes, then the end marker. Only the sections being encoded and handed
/// over are in memory at a time (`TaggedLedger.forEachPiece`), so a snapshot writes a 300 MB
/// encoding of a million subscriptions through a few buffers of ~10 MB, reused.
///
/// Holds the ledger value (shared with the state it was taken from) until the pieces are read.
/// Read them once, and take the checksum from the bytes as they pass: reading them again
/// encodes the ledger again, and the sealed event chunks it shares are objects the archiver
/// changes in place (their events go once archived), so a second reading need not give the
/// same bytes.
public struct LedgerPieces: Sendable {
    private let ledger: Ledger
    private let subscriptionSections: Int

    init(_ ledger: Ledger, subscriptionSections: Int) {
        self.ledger = ledger
        self.subscriptionSections = subscriptionSections
    }

    /// Calls `body` with each piece, in order; the pointers are valid only during the call.
    public func forEachPiece<Failure: Error>(_ body: (UnsafeRawBufferPointer) throws(Failure) -> Void) throws(Failure) {
        try TaggedLedger.forEachPiece(of: ledger, subscriptionSections: subscriptionSections, body)
    }

    /// The encoding as one array.
    public func joined() -> [UInt8] {
        var bytes: [UInt8] = []
        forEachPiece { bytes.append(contentsOf: $0) }
        return bytes
    }
}
