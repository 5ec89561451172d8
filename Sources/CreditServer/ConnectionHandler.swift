import CreditProto
import CreditWire
import Logging
import NIOCore

/// One client connection: validates frames, dispatches calls, and writes their results back in
/// completion order.
///
/// Everything here runs on the channel's event loop. Reads of committed state are answered
/// right here, during dispatch; writes come back from the writer thread through
/// `eventLoop.execute` (the call's second and last hand-off); the few calls that await run as
/// child tasks of the server. Replies are encoded into one outgoing buffer (`outbox`), which
/// is handed to the channel as a single write, with a single completion, per read burst
/// (channelReadComplete) or per batch of completions (a flush queued behind them on the loop):
/// one syscall and one promise for many calls in flight. A long burst writes every
/// `answersPerEarlyWrite` answers as well, so the client need not wait for its end.
///
/// Limits (issue 13): requests wait unread in `pending`, and the socket is not read (the
/// handler holds back `read`), while the connection's unwritten response bytes exceed
/// `maxBufferedResponseBytes`, while it has `maxQueuedWritesPerConnection` calls at the writer,
/// or once it has had `maxCallsPerTurn` requests dispatched in this event-loop turn; the rest
/// are dispatched on a later turn, behind the other connections. A call counts as in flight
/// until its response has been written to the socket.
final class TTRPCConnectionHandler: ChannelDuplexHandler {
    typealias InboundIn = TTRPCInbound
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private struct OpenStream {
        var descriptor: MethodDescriptor
        var recorder: any CallRecorder
        var started: ContinuousClock.Instant
        /// Cancels the child task of an async call or a stream.
        var cancellation: CallCancellation?
        var deadlineTimer: Scheduled<Void>?
        /// A call of the writer role: counted in `queuedWrites` until it ends.
        var isWrite = false
        /// Its handler was started (not parked, not refused at dispatch): a completion will come.
        var handlerStarted = false
        var service: String { descriptor.service }
        var method: String { descriptor.method }
        var kind: RPCMethodKind { descriptor.kind }
    }

    private let core: ServerCore
    private let peer: PeerCredentials
    private var logger: Logger
    private var context: ChannelHandlerContext?
    private var lastRequestID: UInt32 = 0
    private var streams: [UInt32: OpenStream] = [:]
    private var idleTimer: Scheduled<Void>?
    private var unwritableTimer: Scheduled<Void>?
    private var inReadBurst = false
    private var needsFlush = false
    private var flushQueued = false
    private var draining = false
    /// channelInactive has run: the connection is gone, and anything still delivered is dropped.
    private var closed = false
    private var lastWrite: EventLoopFuture<Void>?
    /// Encoded frames not yet handed to the channel, and the calls whose answers they end.
    private var outbox: ByteBuffer?
    private var outboxCalls = 0

    // Backpressure and fairness.
    /// Requests read but not yet dispatched, in arrival order.
    /// Frames read but not dispatched yet, each with when it was read: a request's deadline
    /// counts from receipt (wire spec §5), not from its turn.
    private var pending = CircularBuffer<(inbound: TTRPCInbound, receivedAt: ContinuousClock.Instant)>()
    /// Bytes written to the channel and not yet to the socket.
    private var bufferedBytes = 0
    /// Calls answered whose response is not yet on the socket; still in flight.
    private var unwrittenCalls = 0
    /// Calls of the writer role open on this connection.
    private var queuedWrites = 0
    /// Write calls answered early (a Data frame ended the stream) whose command may still wait
    /// at the writer: they count in `queuedWrites` and the in-flight limit until their
    /// completion comes back, or a client could queue writes without limit that way.
    private var detachedWrites = Set<UInt32>()
    /// Requests dispatched in the current event-loop turn.
    private var dispatchedThisTurn = 0
    private var drainQueued = false
    /// A `read` was held back; it is issued when the connection may be read again.
    private var readHeld = false
    private var reportedIdle = true
    private var lastActivity = NIODeadline.now()
    private var partialFrameSince: NIODeadline?
    private var frameTimer: Scheduled<Void>?
    private var lastTouch = NIODeadline.uptimeNanoseconds(0)
    /// The per-connection bounds, copied from the settings once per read burst (a reload
    /// applies from the next one) so the per-frame checks take no lock.
    private var bounds = Bounds(ServerSettings())

    private struct Bounds {
        var maxBufferedResponseBytes: Int
        var maxQueuedWrites: Int
        var maxCallsPerTurn: Int

        init(_ settings: ServerSettings) {
            maxBufferedResponseBytes = settings.maxBufferedResponseBytes
            maxQueuedWrites = settings.maxQueuedWritesPerConnection
            maxCallsPerTurn = max(1, settings.maxCallsPerTurn)
        }
    }

    init(core: ServerCore, peer: PeerCredentials) {
        self.core = core
        self.peer = peer
        bounds = Bounds(core.settings)
        var logger = core.logger
        logger[metadataKey: "peer.pid"] = "\(peer.pid)"
        logger[metadataKey: "peer.uid"] = "\(peer.uid)"
        self.logger = logger
    }

    // MARK: channel events

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { armIdleTimer() }
    }

    func channelActive(context: ChannelHandlerContext) {
        armIdleTimer()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // EOF or a read error: cancel every handler of this connection. Committed writes stay
        // committed; their late results are dropped because the streams are gone.
        closed = true
        let open = streams
        streams.removeAll()
        for (_, stream) in open {
            stream.deadlineTimer?.cancel()
            stream.cancellation?.cancel()
            core.callsEnded(1)
            stream.recorder.callFinished(code: .cancelled, duration: ContinuousClock.now - stream.started)
        }
        // Answers not yet handed to the channel never will be: release them as written.
        if let unsent = outbox {
            outbox = nil
            bufferedBytes -= unsent.readableBytes
            core.addBufferedBytes(-unsent.readableBytes)
            callsWritten(outboxCalls)
            outboxCalls = 0
        }
        inReadBurst = false
        needsFlush = false
        idleTimer?.cancel()
        idleTimer = nil
        unwritableTimer?.cancel()
        unwritableTimer = nil
        frameTimer?.cancel()
        frameTimer = nil
        pending.removeAll()
        if readHeld {
            readHeld = false
            core.throttled(false)
        }
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("connection error, closing", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is DrainConnectionEvent {
            draining = true
            closeIfDrained()
            return
        }
        if let ended = event as? ShutdownGraceEndedEvent {
            if !closed { endAtGraceEnd(ended.grace) }
            return
        }
        if event is IdleTimeoutChangedEvent {
            // A timer due now judges the connection by the new timeout, counted from its last
            // activity, and re-arms for the rest; with the timeout off it only cancels.
            if !closed { armIdleTimer(in: .zero) }
            return
        }
        if let progress = event as? FrameProgressEvent {
            guard !closed else { return }
            frameProgress(progress, context: context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            unwritableTimer?.cancel()
            unwritableTimer = nil
        } else if unwritableTimer == nil {
            let limit = core.settings.unwritableTimeout
            unwritableTimer = context.eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(clamping: limit)) { [self] in
                logger.notice("closing connection: socket unwritable", metadata: ["limit": "\(limit)"])
                self.context?.close(promise: nil)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // A write that fails (the peer reset the connection) closes the channel in the middle of
        // a read burst; the frame decoder then hands over the rest of what it had read after
        // channelInactive. Those requests are not dispatched: no answer can reach the peer, and
        // nothing would release what they hold (no read completes on a closed channel, so their
        // answers would never be flushed, and their calls would stay in flight).
        guard !closed else { return }
        // Activity is for the idle timeout (seconds): once per read burst is exact enough, and
        // saves a clock read per frame.
        if !inReadBurst { lastActivity = .now() }
        inReadBurst = true
        let inbound = unwrapInboundIn(data)
        if pending.isEmpty, mayDispatch, dispatchedThisTurn < bounds.maxCallsPerTurn {
            dispatchedThisTurn += 1
            process(inbound, receivedAt: nil, context: context)
        } else {
            pending.append((inbound, ContinuousClock.now))
        }
        updateIdle()
    }

    /// Requests may be dispatched: the connection is under its response-bytes and writer bounds.
    private var mayDispatch: Bool {
        bufferedBytes <= bounds.maxBufferedResponseBytes && queuedWrites < bounds.maxQueuedWrites
    }

    /// Reading the socket waits until every request read so far is dispatched and the
    /// connection is under its bounds.
    private var mayRead: Bool { pending.isEmpty && mayDispatch }

    func read(context: ChannelHandlerContext) {
        guard mayRead else {
            if !readHeld {
                readHeld = true
                core.throttled(true)
            }
            return
        }
        context.read()
    }

    /// Dispatches waiting requests, at most `maxCallsPerTurn` per turn, and reads again once
    /// they are all out and the connection is under its bounds.
    private func drainPending() {
        guard let context else { return }
        dispatchedThisTurn = 0
        let budget = bounds.maxCallsPerTurn
        while !pending.isEmpty, mayDispatch, dispatchedThisTurn < budget {
            dispatchedThisTurn += 1
            let next = pending.removeFirst()
            process(next.inbound, receivedAt: next.receivedAt, context: context)
        }
        dispatchedThisTurn = 0
        if needsFlush {
            needsFlush = false
            flush(context)
        }
        resumeIfPossible()
    }

    /// Called when a bound may have been freed (a write reached the socket, a write call ended).
    private func resumeIfPossible() {
        guard let context else { return }
        if !pending.isEmpty {
            if mayDispatch { queueDrain() }
        } else if readHeld, mayDispatch {
            readHeld = false
            core.throttled(false)
            context.read()
        }
        updateIdle()
    }

    private func queueDrain() {
        guard !drainQueued, let context else { return }
        drainQueued = true
        // Behind the work already queued on the loop, so other connections get their turn.
        context.eventLoop.assumeIsolated().execute { [self] in
            self.drainQueued = false
            self.inReadBurst = true
            self.drainPending()
            self.inReadBurst = false
        }
    }

    /// Reports idle (nothing open, queued or unwritten) to the core, for idle-first eviction.
    private func updateIdle() {
        let idle = streams.isEmpty && pending.isEmpty && unwrittenCalls == 0 && detachedWrites.isEmpty
        guard idle != reportedIdle, let context else { return }
        reportedIdle = idle
        core.setIdle(context.channel, idle)
    }

    /// `receivedAt`: when the frame was read, if it waited in `pending` (nil: just now).
    private func process(_ inbound: TTRPCInbound, receivedAt: ContinuousClock.Instant?, context: ChannelHandlerContext) {
        switch inbound {
        case .oversize(let streamID, _, let length):
            core.observer.protocolError(code: .resourceExhausted)
            reply(streamID, Self.oversizeError(length))
        case .frame(let frame):
            guard frame.streamID & 1 == 1 else {
                core.observer.protocolError(code: .invalidArgument)
                reply(frame.streamID, RPCError.invalidArgument("StreamID must be odd for client initiated streams"))
                return
            }
            switch frame.type {
            case .request: handleRequest(frame, receivedAt: receivedAt ?? ContinuousClock.now, context: context)
            case .data: handleData(frame)
            default: break  // Response frames from a client and unknown types are ignored.
            }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        inReadBurst = false
        dispatchedThisTurn = 0
        bounds = Bounds(core.settings)
        if needsFlush {
            needsFlush = false
            flush(context)
        }
        if !pending.isEmpty, mayDispatch { queueDrain() }
        context.fireChannelReadComplete()
    }

    // MARK: frames in progress

    private func frameProgress(_ event: FrameProgressEvent, context: ChannelHandlerContext) {
        switch event {
        case .partialFrameStarted:
            let now = NIODeadline.now()
            partialFrameSince = now
            // Bytes arriving on an idle connection: not a candidate for eviction (at most one
            // report per half second).
            if reportedIdle, now - lastTouch > .milliseconds(500) {
                lastTouch = now
                core.touch(context.channel)
            }
            if frameTimer == nil { armFrameTimer(in: TimeAmount(clamping: core.settings.frameReadTimeout)) }
        case .partialFrameEnded:
            partialFrameSince = nil
        case .largeFrameRefused(let streamID, let length):
            core.observer.protocolError(code: .resourceExhausted)
            core.logLimiter.log(logger, .notice, key: "large-frame:\(peer.uid)", "large frame refused: partial-frame memory in use",
                                metadata: ["uid": "\(peer.uid)", "length": "\(length)", "limit": "\(core.settings.maxPartialFrameBytes)"])
            reply(streamID, RPCError.resourceExhausted(
                "frame of \(length) bytes refused: the server's memory for partial frames (\(core.settings.maxPartialFrameBytes) bytes) is in use; retry later"
            ))
            if !inReadBurst { scheduleFlush() }
        }
    }

    /// A frame whose bytes have not all arrived within `frameReadTimeout` closes the connection
    /// (time spent not reading it because of backpressure does not count).
    private func armFrameTimer(in delay: TimeAmount) {
        guard let context else { return }
        frameTimer = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            self.frameTimer = nil
            guard let since = self.partialFrameSince else { return }
            let limit = TimeAmount(clamping: self.core.settings.frameReadTimeout)
            if self.readHeld {
                self.partialFrameSince = .now()
                self.armFrameTimer(in: limit)
                return
            }
            let elapsed = NIODeadline.now() - since
            guard elapsed >= limit else {
                self.armFrameTimer(in: limit - elapsed)
                return
            }
            self.core.frameTimedOut()
            self.core.logLimiter.log(self.logger, .notice, key: "frame-timeout:\(self.peer.uid)", "closing connection: frame not received in time",
                                     metadata: ["uid": "\(self.peer.uid)", "limit": "\(self.core.settings.frameReadTimeout)"])
            self.context?.close(promise: nil)
        }
    }

    // MARK: requests

    private func handleRequest(_ frame: TTRPCFrame, receivedAt received: ContinuousClock.Instant, context: ChannelHandlerContext) {
        let id = frame.streamID
        guard id > lastRequestID else {
            core.observer.protocolError(code: .invalidArgument)
            reply(id, RPCError.invalidArgument("StreamID cannot be re-used and must increment"))
            return
        }
        lastRequestID = id

        let request: RequestEnvelope
        do {
            request = try RequestEnvelope(decoding: frame.payload)
        } catch {
            core.observer.protocolError(code: .invalidArgument)
            reply(id, RPCError.invalidArgument("unmarshal request error: \(error)"))
            return
        }
        guard request.metadataCount <= RequestEnvelope.maxMetadataEntries else {
            core.observer.protocolError(code: .resourceExhausted)
            reply(id, RPCError.resourceExhausted(
                "request metadata has \(request.metadataCount) entries, at most \(RequestEnvelope.maxMetadataEntries)"))
            return
        }
        guard let service = core.services[request.service] else {
            core.observer.protocolError(code: .unimplemented)
            reply(id, RPCError.unimplemented("service \(request.service)"))
            return
        }
        guard let method = service.methods[request.method] else {
            core.observer.protocolError(code: .unimplemented)
            reply(id, RPCError.unimplemented("method \(request.method)"))
            return
        }
        let settings = core.settings
        let descriptor = method.descriptor

        if draining || core.isDraining, service.name != HealthStatus.serviceName {
            rejectCall(id, method, received, RPCError.unavailable("server is shutting down"))
            return
        }
        guard settings.authorizer.authorize(peer, method.role, descriptor.fullName) else {
            // The connection's logger already carries peer.pid and peer.uid.
            core.logLimiter.log(logger, .warning, key: "denied:\(peer.uid)", "permission denied", metadata: [
                "peer.gid": "\(peer.gid)", "method": "\(descriptor.fullName)", "role": "\(method.role.rawValue)",
            ])
            rejectCall(id, method, received, RPCError.permissionDenied(
                "permission denied: \(descriptor.fullName) needs the \(method.role.rawValue) role (uid \(peer.uid))"
            ))
            return
        }
        var deadline: ContinuousClock.Instant?
        if request.timeoutNano < 0 {
            rejectCall(id, method, received, RPCError.deadlineExceeded("deadline exceeded before the call started"))
            return
        } else if request.timeoutNano > 0 {
            deadline = received + .nanoseconds(request.timeoutNano)
        } else if method.kind == .unary, let fallback = settings.defaultDeadline {
            deadline = received + fallback
        }
        guard streams.count + unwrittenCalls + detachedWrites.count < settings.maxInFlightPerConnection else {
            rejectCall(id, method, received, RPCError.resourceExhausted(
                "too many calls in flight on this connection (limit \(settings.maxInFlightPerConnection))"
            ))
            return
        }

        let callContext = CallContext(
            peer: peer,
            service: service.name,
            method: method.name,
            metadata: request.metadata.map { (key: $0.key.lowercased(), value: $0.value) },
            deadline: deadline,
            streamID: id,
            requestBytes: request.payload
        )
        core.callStarted()
        streams[id] = OpenStream(descriptor: descriptor, recorder: method.recorder, started: received,
                                 isWrite: method.role == .writer)
        if method.role == .writer { queuedWrites += 1 }
        guard !method.needsReadiness || core.isReady else {
            park(id, method, callContext, context: context)
            return
        }
        start(id, method, callContext, context: context)
    }

    /// Holds a call that arrived while the state is still being recovered (socket activation
    /// queues clients rather than failing them): it starts once the server is ready, ends
    /// with DEADLINE_EXCEEDED when its deadline passes first, or with UNAVAILABLE at once when
    /// recovery fails.
    private func park(_ id: UInt32, _ method: RPCMethod, _ callContext: CallContext, context: ChannelHandlerContext) {
        let eventLoop = context.eventLoop
        let handler = NIOLoopBound(self, eventLoop: eventLoop)
        if let deadline = callContext.deadline {
            streams[id]?.deadlineTimer = eventLoop.assumeIsolated().scheduleTask(
                in: TimeAmount(clamping: deadline - ContinuousClock.now)
            ) { [self] in
                self.endStream(id, RPCError.deadlineExceeded("deadline exceeded while creditd was recovering its state"))
            }
        }
        switch core.parkUntilReady(on: eventLoop, { refusal in handler.value.resumeParked(id, method, callContext, refusal) }) {
        case .ready: resumeParked(id, method, callContext, nil)
        case .refused(let refusal): resumeParked(id, method, callContext, refusal)
        case .parked: break
        }
    }

    private func resumeParked(_ id: UInt32, _ method: RPCMethod, _ callContext: CallContext, _ refusal: RPCError?) {
        guard let context, streams[id] != nil else { return }  // ended meanwhile
        streams[id]?.deadlineTimer?.cancel()
        streams[id]?.deadlineTimer = nil
        if let refusal {
            endStream(id, refusal)
            return
        }
        start(id, method, callContext, context: context)
    }

    private func start(_ id: UInt32, _ method: RPCMethod, _ callContext: CallContext, context: ChannelHandlerContext) {
        // A deadline already past when the call is dispatched: answer without running it, so a
        // write has no side effect and a read is not answered late (ttrpc wire, deadlines).
        if callContext.isPastDeadline {
            endStream(id, RPCError.deadlineExceeded("deadline exceeded before the call started"))
            return
        }
        let eventLoop = context.eventLoop
        let handler = NIOLoopBound(self, eventLoop: eventLoop)
        let payload = callContext.requestBytes
        streams[id]?.handlerStarted = true

        switch method.handler {
        case .unary(let body):
            var cancellation: CallCancellation?
            if method.cancellable {
                cancellation = CallCancellation()
                streams[id]?.cancellation = cancellation
            }
            let responder = UnaryResponder(eventLoop: eventLoop, cancellation: cancellation) { result in
                handler.value.finishUnary(id, result)
            }
            body(payload, callContext, responder)
            abandonAtDeadline(id, method, callContext, eventLoop)
        case .asyncUnary(let body):
            let cancellation = CallCancellation()
            streams[id]?.cancellation = cancellation
            core.submit {
                let result: Result<[UInt8], any Error> = await cancellation.run {
                    try await body(payload, callContext)
                }
                eventLoop.execute { handler.value.finishUnary(id, result) }
            }
            abandonAtDeadline(id, method, callContext, eventLoop)
        case .serverStreaming(let body):
            let cancellation = CallCancellation()
            streams[id]?.cancellation = cancellation
            let writer = ServerStreamWriter { messages in
                // Returns once the messages are written to the socket: a consumer that does not
                // read holds its stream back, never the daemon's memory.
                try await eventLoop.flatSubmit { handler.value.sendStreamMessages(id, messages, on: eventLoop) }.get()
            }
            core.submit {
                let result: Result<Void, any Error> = await cancellation.run {
                    try await body(payload, callContext, writer)
                }
                eventLoop.execute { handler.value.finishStream(id, result) }
            }
        }
    }

    /// A read still unanswered at its deadline is abandoned. A write is never cut off here:
    /// once committed it returns its real result, late or not.
    private func abandonAtDeadline(_ id: UInt32, _ method: RPCMethod, _ callContext: CallContext, _ eventLoop: any EventLoop) {
        guard method.role == .reader, streams[id] != nil, let deadline = callContext.deadline else { return }
        streams[id]?.deadlineTimer = eventLoop.assumeIsolated().scheduleTask(
            in: TimeAmount(clamping: deadline - ContinuousClock.now)
        ) { [self] in
            self.abandon(id)
        }
    }

    /// Answers a call to a served method that is refused before its handler starts.
    private func rejectCall(_ id: UInt32, _ method: RPCMethod, _ received: ContinuousClock.Instant, _ error: RPCError) {
        reply(id, error)
        method.recorder.callFinished(code: error.code, duration: ContinuousClock.now - received)
    }

    // MARK: data from the client

    private func handleData(_ frame: TTRPCFrame) {
        let id = frame.streamID
        guard let stream = streams[id] else {
            core.observer.protocolError(code: .invalidArgument)
            reply(id, RPCError.invalidArgument("StreamID is no longer active"))
            return
        }
        let emptyClose = frame.flags.contains(.remoteClosed) && frame.flags.contains(.noData) && frame.payload.readableBytes == 0
        if stream.kind == .serverStreaming && emptyClose {
            return  // the client closing its (unused) send side
        }
        let message = stream.kind == .unary
            ? "data frame on unary stream \(id)"
            : "server-streaming stream \(id) takes no data from the client"
        endStream(id, RPCError.invalidArgument(message))
    }

    // MARK: completions (on the event loop)

    private func finishUnary(_ id: UInt32, _ result: Result<[UInt8], any Error>) {
        guard let stream = streams.removeValue(forKey: id) else {  // ended early, or connection gone
            writeDone(ifDetached: id)
            return
        }
        stream.deadlineTimer?.cancel()
        let code: StatusCode
        switch result {
        case .success(let payload):
            code = writeSuccess(id, payload)
        case .failure(let error):
            let status = statusError(error, stream)
            writeResponse(id, TTRPCEnvelope.errorResponse(status))
            code = status.code
        }
        streamEnded(stream, code: code)
    }

    private func finishStream(_ id: UInt32, _ result: Result<Void, any Error>) {
        guard let stream = streams.removeValue(forKey: id) else {
            writeDone(ifDetached: id)
            return
        }
        let code: StatusCode
        switch result {
        case .success:
            write(TTRPCFrame(streamID: id, type: .data, flags: [.remoteClosed, .noData], payload: ByteBuffer()))
            code = .ok
        case .failure(let error):
            let status = statusError(error, stream)
            writeResponse(id, TTRPCEnvelope.errorResponse(status))
            code = status.code
        }
        streamEnded(stream, code: code)
    }

    private func sendStreamMessages(_ id: UInt32, _ messages: [[UInt8]], on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        guard streams[id] != nil, context != nil else {
            return eventLoop.makeFailedFuture(CancellationError())
        }
        if let tooLong = messages.first(where: { $0.count > TTRPCLimits.maxMessageLength }) {
            return eventLoop.makeFailedFuture(RPCError.resourceExhausted(
                "stream message length \(tooLong.count) exceeds maximum message size of \(TTRPCLimits.maxMessageLength)"
            ))
        }
        for bytes in messages {
            write(TTRPCFrame(streamID: id, type: .data, payload: ByteBuffer(bytes: bytes)))
        }
        // The future of the write that carries these messages (the flush is queued).
        writeOutbox()
        return lastWrite ?? eventLoop.makeSucceededVoidFuture()
    }

    /// The deadline of a running read passed: answer now and cancel the handler.
    private func abandon(_ id: UInt32) {
        guard streams[id] != nil else { return }
        endStream(id, RPCError.deadlineExceeded("deadline exceeded"))
    }

    /// Ends an open stream with an error reply and cancels its handler. A write whose handler
    /// was started stays counted until its completion comes back (`detachedWrites`).
    private func endStream(_ id: UInt32, _ error: RPCError) {
        guard let stream = streams.removeValue(forKey: id) else { return }
        stream.deadlineTimer?.cancel()
        stream.cancellation?.cancel()
        reply(id, error)
        let detached = stream.isWrite && stream.handlerStarted
        if detached { detachedWrites.insert(id) }
        streamEnded(stream, code: error.code, writeDetached: detached)
    }

    /// The completion of a call whose stream is gone: a detached write leaves the writer.
    private func writeDone(ifDetached id: UInt32) {
        guard detachedWrites.remove(id) != nil else { return }
        queuedWrites -= 1
        resumeIfPossible()
    }

    private func streamEnded(_ stream: OpenStream, code: StatusCode, writeDetached: Bool = false) {
        stream.recorder.callFinished(code: code, duration: ContinuousClock.now - stream.started)
        if stream.isWrite, !writeDetached { queuedWrites -= 1 }
        // In flight until the answer is on the socket (or the connection is gone).
        unwrittenCalls += 1
        if outbox != nil {
            outboxCalls += 1
            if inReadBurst, outboxCalls >= Self.answersPerEarlyWrite, let context {
                needsFlush = false
                flush(context)
            }
        } else if let lastWrite, context != nil {
            lastWrite.assumeIsolated().whenComplete { [self] _ in self.callsWritten(1) }
        } else {
            callsWritten(1)
        }
        if streams.isEmpty {
            closeIfDrained()
        }
        if stream.isWrite { resumeIfPossible() }
    }

    /// A long read burst's answers go out in writes of this many, not all at its end, so that
    /// the client works on the first answers (and sends its next requests) while the rest are
    /// computed: the two sides overlap on two cores instead of taking turns. One connection with
    /// 64 calls in flight, all answered at the end of each burst, kept the event loop at ~80%
    /// of a core, idle while the client caught up; with a write every 32 answers it used the
    /// whole core and answered 10-30% more calls per second (BENCHMARKS.md). Writes of 8 or 16
    /// answers overlapped as well but cost more syscalls and wake-ups than they saved.
    static let answersPerEarlyWrite = 32

    private func callsWritten(_ count: Int) {
        unwrittenCalls -= count
        core.callsEnded(count)
        updateIdle()
    }

    private func statusError(_ error: any Error, _ stream: OpenStream) -> RPCError {
        switch error {
        case let error as RPCError:
            return error
        case is CancellationError:
            return RPCError(code: .cancelled, message: "call cancelled")
        default:
            logger.error("handler failed", metadata: [
                "method": "\(stream.service)/\(stream.method)", "error": "\(String(reflecting: error))",
            ])
            return RPCError.internalError("internal error")
        }
    }

    // MARK: writing

    private func reply(_ id: UInt32, _ error: RPCError) {
        writeResponse(id, TTRPCEnvelope.errorResponse(error))
    }

    /// Writes a successful Response, or RESOURCE_EXHAUSTED if it would exceed the frame limit.
    /// Returns the status code actually sent.
    private func writeSuccess(_ id: UInt32, _ payload: [UInt8]) -> StatusCode {
        guard context != nil, !closed else { return .cancelled }
        let length = RequestEnvelope.successResponseLength(payloadCount: payload.count)
        guard length <= TTRPCLimits.maxMessageLength else {
            return writeResponse(id, TTRPCEnvelope.errorResponse(RPCError.resourceExhausted(
                "response message length \(length) exceeds maximum message size of \(TTRPCLimits.maxMessageLength)"
            )))
        }
        // Header and Response data go straight into the outbox: no buffer of their own.
        append(frameLength: TTRPCLimits.headerLength + length) { outbox in
            TTRPCFrame.writeHeader(dataLength: length, streamID: id, type: .response, flags: [], into: &outbox)
            RequestEnvelope.writeSuccessResponse(payload: payload, into: &outbox)
        }
        return .ok
    }

    /// Writes a Response, replacing it with RESOURCE_EXHAUSTED if it would exceed the frame
    /// limit. Returns the status code actually sent.
    @discardableResult
    private func writeResponse(_ id: UInt32, _ response: Ttrpc_Response) -> StatusCode {
        guard let context, !closed else { return .cancelled }
        var sent = response
        var buffer: ByteBuffer
        do {
            buffer = try TTRPCEnvelope.encode(response, allocator: context.channel.allocator)
        } catch {
            sent = TTRPCEnvelope.errorResponse(RPCError.internalError("cannot encode response: \(error)"))
            buffer = (try? TTRPCEnvelope.encode(sent, allocator: context.channel.allocator)) ?? ByteBuffer()
        }
        if buffer.readableBytes > TTRPCLimits.maxMessageLength {
            sent = TTRPCEnvelope.errorResponse(RPCError.resourceExhausted(
                "response message length \(buffer.readableBytes) exceeds maximum message size of \(TTRPCLimits.maxMessageLength)"
            ))
            buffer = (try? TTRPCEnvelope.encode(sent, allocator: context.channel.allocator)) ?? ByteBuffer()
        }
        write(TTRPCFrame(streamID: id, type: .response, payload: buffer))
        return sent.hasStatus ? StatusCode(wireValue: sent.status.code) : .ok
    }

    private func write(_ frame: TTRPCFrame) {
        append(frameLength: frame.encodedLength) { frame.encode(into: &$0) }
    }

    /// Adds a frame of `size` bytes, written by `encode`, to the outbox. Its bytes count
    /// against the connection's bound from now.
    private func append(frameLength size: Int, _ encode: (inout ByteBuffer) -> Void) {
        // Nothing is written once the connection is gone: channelInactive released the outbox,
        // and bytes counted now would never be released.
        guard let context, !closed else { return }
        bufferedBytes += size
        core.addBufferedBytes(size)
        if outbox == nil {
            outbox = context.channel.allocator.buffer(capacity: max(size, 4_096))
        }
        encode(&outbox!)
        scheduleFlush()
    }

    /// Hands the outbox to the channel as one write. Its completion releases its bytes and
    /// ends the calls it answered.
    private func writeOutbox() {
        guard let buffer = outbox, let context else { return }
        outbox = nil
        lastActivity = .now()
        let size = buffer.readableBytes
        let calls = outboxCalls
        outboxCalls = 0
        let promise = context.eventLoop.makePromise(of: Void.self)
        context.write(wrapOutboundOut(buffer), promise: promise)
        lastWrite = promise.futureResult
        promise.futureResult.assumeIsolated().whenComplete { [self] _ in
            self.bufferedBytes -= size
            self.core.addBufferedBytes(-size)
            if calls > 0 { self.callsWritten(calls) }
            if self.readHeld || !self.pending.isEmpty { self.resumeIfPossible() }
        }
    }

    private func flush(_ context: ChannelHandlerContext) {
        writeOutbox()
        context.flush()
    }

    private func scheduleFlush() {
        if inReadBurst {
            needsFlush = true  // channelReadComplete flushes
            return
        }
        guard !flushQueued, let context else { return }
        flushQueued = true
        // Queued behind the completions already waiting on the loop, so they share one flush.
        context.eventLoop.assumeIsolated().execute { [self] in
            self.flushQueued = false
            if let context = self.context { self.flush(context) }
        }
    }

    // MARK: idle and drain

    /// Closes the connection once nothing was read or written for the idle timeout while no
    /// unary call is open: open streams that stay silent (Health/Watch) do not keep it alive,
    /// but each is ended with UNAVAILABLE before the close.
    private func armIdleTimer(in delay: TimeAmount? = nil) {
        idleTimer?.cancel()
        idleTimer = nil
        guard let context, let timeout = core.settings.idleTimeout else { return }
        let limit = TimeAmount(clamping: timeout)
        idleTimer = context.eventLoop.assumeIsolated().scheduleTask(in: delay ?? limit) { [self] in
            self.idleTimer = nil
            let quiet = NIODeadline.now() - self.lastActivity
            let unaryOpen = self.streams.values.contains { $0.kind != .serverStreaming }
            guard quiet >= limit, !unaryOpen, self.pending.isEmpty, self.unwrittenCalls == 0, self.detachedWrites.isEmpty else {
                self.armIdleTimer(in: unaryOpen || quiet >= limit ? limit : limit - quiet)
                return
            }
            self.logger.debug("closing idle connection", metadata: ["open_streams": "\(self.streams.count)"])
            // A stream ends with a final frame (wire spec §6): each silent stream gets
            // UNAVAILABLE (a health client retries), and the connection closes once that is out.
            for id in Array(self.streams.keys) {
                self.endStream(id, RPCError.unavailable("idle connection closed after \(timeout)"))
            }
            self.closeAfterWrites()
        }
    }

    private func closeIfDrained() {
        guard draining, streams.isEmpty else { return }
        refusePending("server is shutting down")
        closeAfterWrites()
    }

    /// Answers every request read but not dispatched (held back by the connection's bounds),
    /// before a close that would drop them: none was applied, so each gets plain UNAVAILABLE,
    /// or the RESOURCE_EXHAUSTED any oversize frame gets.
    private func refusePending(_ message: String) {
        while !pending.isEmpty {
            switch pending.removeFirst().inbound {
            case .oversize(let streamID, _, let length):
                core.observer.protocolError(code: .resourceExhausted)
                reply(streamID, Self.oversizeError(length))
            case .frame(let frame):
                guard frame.type == .request, frame.streamID & 1 == 1 else { continue }
                reply(frame.streamID, RPCError.unavailable(message))
            }
        }
    }

    /// The answer to a request frame over the message limit (containerd's wording).
    private static func oversizeError(_ length: UInt32) -> RPCError {
        RPCError.resourceExhausted("message length \(length) exceed maximum message size of \(TTRPCLimits.maxMessageLength)")
    }

    /// The shutdown's grace ended with calls still open (a write behind an fdatasync that does
    /// not return, a slow read): each gets an answer before the connection closes. Closed
    /// without one, the client saw the connection drop, as at a crash, and could not tell a
    /// write that may still be applied from one that never started.
    /// - a call of the writer role the writer has: UNAVAILABLE `persistence_outcome_unknown`,
    ///   because the writer may still apply it before the process exits;
    /// - any other open call, and each request read but not dispatched: UNAVAILABLE, nothing
    ///   applied.
    private func endAtGraceEnd(_ grace: Duration) {
        draining = true
        let seconds = grace.components.attoseconds == 0 ? "\(grace.components.seconds)"
            : "\(Double(grace.components.seconds) + Double(grace.components.attoseconds) / 1e18)"
        let graceText = "its shutdown grace of \(seconds) s ended"
        // Requests first: the last open call to end starts the close.
        refusePending("server is shutting down (\(graceText) before this call started)")
        for id in streams.keys.sorted() {
            guard let stream = streams[id] else { continue }
            if stream.isWrite && stream.handlerStarted {
                endStream(id, RPCError.domain(
                    .unavailable, reason: "persistence_outcome_unknown",
                    "creditd stopped before this call's change was made durable (\(graceText)); it may or may "
                        + "not have taken effect: read it back after the restart (a write retried with the same "
                        + "idempotency key applies at most once)"))
            } else {
                endStream(id, RPCError.unavailable("server is shutting down (\(graceText) before this call finished)"))
            }
        }
        closeAfterWrites()
    }

    /// Flushes, and closes once everything written so far has reached the socket.
    private func closeAfterWrites() {
        guard let context else { return }
        flush(context)
        let channel = context.channel
        if let lastWrite {
            lastWrite.whenComplete { _ in channel.close(promise: nil) }
        } else {
            context.close(promise: nil)
        }
    }
}
