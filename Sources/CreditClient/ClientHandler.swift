import CreditProto
import CreditWire
import NIOCore

/// One call handed to the connection's pipeline.
struct OutgoingCall: Sendable {
    var request: Ttrpc_Request
    /// Sent as the remaining time when the frame is written; nil sends timeout_nano 0.
    var deadline: NIODeadline?
    /// When set, sent as timeout_nano verbatim (protocol tests), regardless of `deadline`.
    var rawTimeoutNano: Int64?
    var promise: EventLoopPromise<Ttrpc_Response>
    /// A server-streaming call: the payload of each Data frame on its stream, in order, on the
    /// connection's event loop, before the Response that ends the stream; an error it throws
    /// ends the call with that error. Nil for a unary call.
    var onMessage: (@Sendable ([UInt8]) throws -> Void)? = nil
}

/// Client side of one connection: allocates odd increasing stream ids, matches Responses to
/// their calls, enforces deadlines locally and fails everything pending when the connection ends.
final class ClientConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = TTRPCInbound
    typealias OutboundIn = OutgoingCall
    typealias OutboundOut = TTRPCFrame

    private struct Pending {
        var promise: EventLoopPromise<Ttrpc_Response>
        var timer: Scheduled<Void>?
        var onMessage: (@Sendable ([UInt8]) throws -> Void)?
    }

    private var nextStreamID: UInt32 = 1
    private var pending: [UInt32: Pending] = [:]
    private var closed = false

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let call = unwrapOutboundIn(data)
        guard !closed else {
            call.promise.fail(ClientError.connectionClosed)
            promise?.fail(ClientError.connectionClosed)
            return
        }
        var request = call.request
        if let raw = call.rawTimeoutNano {
            request.timeoutNano = raw
        } else if let deadline = call.deadline {
            let left = deadline - .now()
            guard left.nanoseconds > 0 else {
                call.promise.fail(ClientError.timedOut)
                promise?.succeed()
                return
            }
            request.timeoutNano = left.nanoseconds
        }
        guard nextStreamID != 0, nextStreamID & 1 == 1 else {
            call.promise.fail(ClientError.streamIDsExhausted)
            promise?.succeed()
            return
        }
        let id = nextStreamID
        // Wraps to 0 after 2^32 - 1, which is then refused above: ids never repeat.
        nextStreamID = nextStreamID &+ 2

        let frame: TTRPCFrame
        do {
            // A server-streaming request says at once that the client sends nothing more
            // (ttrpc 1.2: remote closed on the Request).
            frame = try TTRPCEnvelope.requestFrame(streamID: id, request: request,
                                                   flags: call.onMessage == nil ? [] : .remoteClosed,
                                                   allocator: context.channel.allocator)
        } catch {
            call.promise.fail(ClientError.invalidResponse("cannot encode request: \(error)"))
            promise?.succeed()
            return
        }
        guard frame.payload.readableBytes <= TTRPCLimits.maxMessageLength else {
            call.promise.fail(ClientError.requestTooLarge(length: frame.payload.readableBytes))
            promise?.succeed()
            return
        }
        var entry = Pending(promise: call.promise, onMessage: call.onMessage)
        if let deadline = call.deadline {
            entry.timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) { [self] in
                // A Response arriving later for this id is dropped.
                self.pending.removeValue(forKey: id)?.promise.fail(ClientError.timedOut)
            }
        }
        pending[id] = entry
        context.write(wrapOutboundOut(frame), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .oversize(let streamID, _, let length):
            complete(streamID, .failure(RPCError.resourceExhausted(
                "message length \(length) exceed maximum message size of \(TTRPCLimits.maxMessageLength)"
            )))
        case .frame(let frame) where frame.type == .data:
            // A message of a server stream; Data on a stream that is not one (or is gone) is
            // dropped, as the wire spec's client does. The server may end the stream OK with
            // its last Data frame instead of a Response (docs/wire-protocol.md §6): remote
            // closed, with a last message or with none (no data).
            guard let onMessage = pending[frame.streamID]?.onMessage else { return }
            if !frame.flags.contains(.noData) {
                do {
                    try onMessage(Array(frame.payload.readableBytesView))
                } catch {
                    complete(frame.streamID, .failure(error))  // later frames of the stream are dropped
                    return
                }
            }
            if frame.flags.contains(.remoteClosed) {
                complete(frame.streamID, .success(Ttrpc_Response()))  // no status: OK
            }
        case .frame(let frame):
            guard frame.type == .response else { return }
            do {
                let response = try TTRPCEnvelope.decodeResponse(frame.payload)
                complete(frame.streamID, .success(response))
            } catch {
                complete(frame.streamID, .failure(ClientError.invalidResponse("undecodable Response: \(error)")))
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        let all = pending
        pending.removeAll()
        for (_, entry) in all {
            entry.timer?.cancel()
            entry.promise.fail(ClientError.connectionClosed)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    private func complete(_ id: UInt32, _ result: Result<Ttrpc_Response, any Error>) {
        guard let entry = pending.removeValue(forKey: id) else { return }
        entry.timer?.cancel()
        entry.promise.completeWith(result)
    }
}
