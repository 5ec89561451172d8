import CreditWire
import NIOCore

/// Shown the requests of a read burst before they are dispatched one by one, so that what they
/// will read can be brought into the cache together. Dispatched one after another, each call
/// waits for its own cache misses; warmed together, the misses overlap. At 64 calls in flight on
/// one connection the id lookup of a GetSubscription was a sixth of the event loop's time, most
/// of it three dependent misses.
///
/// Only a hint: `warm` must not fail, block or change anything, and a request it does not
/// understand is skipped (dispatch decodes and reports it as usual).
public protocol RequestLookAhead: Sendable {
    /// `requests` are the encoded `Ttrpc_Request`s of the burst's complete request frames, in
    /// order, at least two and at most `requestLookAheadFrames`. Valid only during the call.
    func warm(_ requests: UnsafeBufferPointer<UnsafeRawBufferPointer>)
}

/// How many frames one look-ahead covers: enough for the misses to overlap, few enough for what
/// they bring in to stay in the cache until the calls run (as the writer's batches and the
/// replay prefetch, `Ledger.prefetchGroup`).
public let requestLookAheadFrames = 16

extension BudgetedFrameDecoder {
    /// Shows `lookAhead` the request frames complete in `buffer` from its reader index, up to
    /// `requestLookAheadFrames` frames. Returns how many frames it looked at: the decoder looks
    /// again once it has passed them all.
    static func lookAhead(_ lookAhead: any RequestLookAhead, over buffer: ByteBuffer) -> Int {
        buffer.withUnsafeReadableBytes { bytes in
            withUnsafeTemporaryAllocation(of: UnsafeRawBufferPointer.self, capacity: requestLookAheadFrames) { requests in
                var count = 0
                let frames = TTRPCFrameParser.scanCompleteFrames(in: bytes, limit: requestLookAheadFrames) { type, data in
                    guard type == .request else { return }
                    requests[count] = data
                    count += 1
                }
                if count > 1 { lookAhead.warm(UnsafeBufferPointer(rebasing: requests[..<count])) }
                return frames
            }
        }
    }
}
