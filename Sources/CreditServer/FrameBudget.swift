import CreditWire
import NIOCore

/// Told to the connection handler by `BudgetedFrameDecoder`.
enum FrameProgressEvent: Sendable {
    /// The first bytes of a frame arrived and the rest has not (yet).
    case partialFrameStarted
    /// The partial frame completed.
    case partialFrameEnded
    /// A large frame was skipped because the memory for partial frames was spent.
    case largeFrameRefused(streamID: UInt32, length: Int)
}

/// Bytes of `ServerCore`'s partial-frame budget held for one frame; released when dropped.
final class PartialFrameReservation {
    let core: ServerCore
    let bytes: Int

    init(core: ServerCore, bytes: Int) {
        self.core = core
        self.bytes = bytes
    }

    deinit { core.releasePartialFrame(bytes) }
}

/// The server's frame decoder: `TTRPCFrameParser` plus a global bound on the memory held for
/// partially received large frames. A frame over `largeFrameThreshold` whose data has not all
/// arrived reserves its length from the budget (`ServerSettings.maxPartialFrameBytes`); when the
/// budget is spent, its bytes are skipped as they arrive and the handler answers it
/// RESOURCE_EXHAUSTED. Small frames need no reservation: one read's worth at most.
struct BudgetedFrameDecoder: ByteToMessageDecoder {
    typealias InboundOut = TTRPCInbound

    static let largeFrameThreshold = 64 << 10

    private let core: ServerCore
    private var parser = TTRPCFrameParser()
    private var reservation: PartialFrameReservation?
    private var skipping: (streamID: UInt32, length: Int, remaining: Int)?
    private var partial = false
    /// Frames the last look-ahead covered that are not yet passed on.
    private var lookedAhead = 0

    init(core: ServerCore) {
        self.core = core
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if var skip = skipping {
            let count = min(buffer.readableBytes, skip.remaining)
            buffer.moveReaderIndex(forwardBy: count)
            skip.remaining -= count
            guard skip.remaining == 0 else {
                skipping = skip
                return .needMoreData
            }
            skipping = nil
            partialEnded(context)
            context.fireUserInboundEventTriggered(FrameProgressEvent.largeFrameRefused(streamID: skip.streamID, length: skip.length))
            return .continue
        }
        if reservation == nil, !parser.isDiscarding, buffer.readableBytes >= TTRPCLimits.headerLength,
           let length = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self).map(Int.init),
           length > Self.largeFrameThreshold, length <= TTRPCLimits.maxMessageLength,
           buffer.readableBytes < TTRPCLimits.headerLength + length {
            if core.reservePartialFrame(length, limit: core.settings.maxPartialFrameBytes) {
                reservation = PartialFrameReservation(core: core, bytes: length)
                // The whole frame's room at once: the buffer then grows by one copy of each
                // read rather than by doublings, each copying all that came before.
                buffer.reserveCapacity(minimumWritableBytes: TTRPCLimits.headerLength + length - buffer.readableBytes)
            } else {
                let streamID = buffer.getInteger(at: buffer.readerIndex + 4, endianness: .big, as: UInt32.self) ?? 0
                buffer.moveReaderIndex(forwardBy: TTRPCLimits.headerLength)
                skipping = (streamID, length, length)
                partialStarted(context)
                return .continue
            }
        }
        if lookedAhead == 0, let lookAhead = core.lookAhead, !parser.isDiscarding {
            lookedAhead = Self.lookAhead(lookAhead, over: buffer)
        }
        guard let inbound = parser.next(from: &buffer) else {
            if buffer.readableBytes > 0 || parser.isDiscarding { partialStarted(context) }
            return .needMoreData
        }
        reservation = nil
        partialEnded(context)
        lookedAhead = max(0, lookedAhead - 1)
        context.fireChannelRead(Self.wrapInboundOut(inbound))
        return .continue
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while case .continue = try decode(context: context, buffer: &buffer) {}
        // A frame cut short by the peer going away is dropped silently: it can never complete.
        buffer.moveReaderIndex(to: buffer.writerIndex)
        reservation = nil
        return .needMoreData
    }

    private mutating func partialStarted(_ context: ChannelHandlerContext) {
        guard !partial else { return }
        partial = true
        context.fireUserInboundEventTriggered(FrameProgressEvent.partialFrameStarted)
    }

    private mutating func partialEnded(_ context: ChannelHandlerContext) {
        guard partial else { return }
        partial = false
        context.fireUserInboundEventTriggered(FrameProgressEvent.partialFrameEnded)
    }
}

/// A connection refused by a limit: answers its first request RESOURCE_EXHAUSTED with the
/// reason, then closes; closes anyway after `patience`. Reads only the first frame header and
/// throws every other byte away, so a refused connection holds no frame in memory.
final class RefusedConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let message: String
    private let patience: TimeAmount
    private var header: [UInt8] = []
    private var answered = false
    private var timer: Scheduled<Void>?

    init(message: String, patience: TimeAmount = .seconds(2)) {
        self.message = message
        self.patience = patience
    }

    func handlerAdded(context: ChannelHandlerContext) {
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: patience) {
            context.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        var bytes = unwrapInboundIn(data)
        if let more = bytes.readBytes(length: min(bytes.readableBytes, TTRPCLimits.headerLength - header.count)) {
            header += more
        }
        guard header.count == TTRPCLimits.headerLength else { return }
        answered = true
        let streamID = header[4..<8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let response = TTRPCEnvelope.errorResponse(RPCError.resourceExhausted(message))
        let payload = (try? TTRPCEnvelope.encode(response, allocator: context.channel.allocator)) ?? ByteBuffer()
        var out = context.channel.allocator.buffer(capacity: TTRPCLimits.headerLength + payload.readableBytes)
        TTRPCFrame(streamID: streamID, type: .response, payload: payload).encode(into: &out)
        context.writeAndFlush(wrapOutboundOut(out)).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
