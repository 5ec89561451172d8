import CreditWire

/// Pages that fit in one answer. A page of ListSubscriptions, ListCredits or ListEvents holds
/// up to 1,000 items, and a subscription's `customer` and `plan` are free text of up to 1 MiB
/// (O2, `FreeText`): a thousand subscriptions with 5 KB of text each encode to 5 MB, above the 4 MiB a
/// ttrpc message may carry (docs/wire-protocol.md), and such a page was answered
/// RESOURCE_EXHAUSTED however often it was asked for, so the book could not be listed or
/// exported at all. A page may hold fewer items than asked (Q1, E4): one that would not fit is
/// read again with fewer, and its token or `nextAfterSeq` then names the last item it holds.
enum PageFitting {
    /// The most a page's encoding may take: one message, less the Response envelope around it
    /// (a tag and a length, `RequestEnvelope.successResponseLength`).
    static let budget = TTRPCLimits.maxMessageLength - 16

    /// Reads a page of `requested` items (as the request gave it: 0 means the default size) and
    /// encodes it; while the encoding exceeds `budget` and the page holds more than one item,
    /// reads it again with fewer, in proportion to the excess. One item always fits: its free
    /// text is at most `FreeText.maxBytes`, a quarter of a message.
    static func fitted<Page, Failure: Error>(
        requested: Int32,
        read: (Int32) throws(Failure) -> Page, count: (Page) -> Int, encode: (Page) -> [UInt8]
    ) throws(Failure) -> (page: Page, encoded: [UInt8]) {
        var page = try read(requested)
        var encoded = encode(page)
        while encoded.count > budget, count(page) > 1 {
            let items = count(page)
            // 90% of the proportional share, so that one more read almost always fits.
            let share = Int(Double(items) * Double(budget) / Double(encoded.count) * 0.9)
            page = try read(Int32(min(items - 1, max(1, share))))
            encoded = encode(page)
        }
        return (page, encoded)
    }
}
