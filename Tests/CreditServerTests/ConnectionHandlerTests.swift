@testable import CreditServer
import CreditProto
import CreditWire
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import SwiftProtobuf
import XCTest

/// Holds every write without completing it, as a socket whose peer never reads would, and
/// counts the `read` requests that reach the head of the pipeline.
final class StalledSocket: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer

    /// The writes held, each one or more encoded frames (the handler coalesces answers).
    var writes: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    var reads = 0

    /// The frames held, in the order written.
    var held: [TTRPCFrame] {
        var parser = TTRPCFrameParser()
        var frames: [TTRPCFrame] = []
        for (bytes, _) in writes {
            var buffer = bytes
            while let inbound = parser.next(from: &buffer) {
                guard case .frame(let frame) = inbound else { preconditionFailure("oversize frame written") }
                frames.append(frame)
            }
            precondition(buffer.readableBytes == 0, "a write ends inside a frame")
        }
        return frames
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        writes.append((unwrapOutboundIn(data), promise))
    }

    func read(context: ChannelHandlerContext) {
        reads += 1
    }

    /// The peer reads everything written so far.
    func drain() {
        let written = writes
        writes.removeAll()
        for (_, promise) in written { promise?.succeed() }
    }
}

/// A socket whose peer has reset the connection: every write fails, and the failure closes
/// the channel, as NIO does on ECONNRESET or EPIPE.
final class ResetOnWrite: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        promise?.fail(IOError(errnoCode: ECONNRESET, reason: "writev(descriptor:iovecs:)"))
        context.close(promise: nil)
    }
}

/// Keeps the request payloads of every burst it is shown.
final class RecordingLookAhead: RequestLookAhead, @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [[[UInt8]]] = []

    var bursts: [[[UInt8]]] { lock.withLock { seen } }

    func warm(_ requests: UnsafeBufferPointer<UnsafeRawBufferPointer>) {
        let burst = requests.map { Array($0) }
        lock.withLock { seen.append(burst) }
    }
}

/// In-process tests of `TTRPCConnectionHandler`'s limits (issue 13) on an EmbeddedChannel.
final class ConnectionHandlerTests: XCTestCase {
    /// A server core serving Debug/Big (a reply of `value` bytes) and Health.
    func makeCore(_ settings: ServerSettings) -> ServerCore {
        let big = RPCService(name: MethodTable.Debug.serviceName, methods: [
            .immediate(MethodTable.Debug.big) { request, _ in
                var response = Google_Protobuf_BytesValue()
                response.value = Data(repeating: 0x42, count: Int(request.value))
                return response
            },
        ])
        let health = HealthStatus(initial: .serving)
        let core = ServerCore(services: [big.name: big, HealthStatus.serviceName: health.service()], settings: settings,
                              health: health, observer: NoServerObserver(), logger: Logger(label: "test"))
        core.setReady()
        return core
    }

    func bigRequest(_ id: UInt32, bytes: UInt64) throws -> TTRPCInbound {
        var size = Google_Protobuf_UInt64Value()
        size.value = bytes
        let request = Ttrpc_Request(service: MethodTable.Debug.serviceName, method: MethodTable.Debug.big.method,
                                    payload: try size.serializedBytes())
        return .frame(TTRPCFrame(streamID: id, type: .request,
                                 payload: try TTRPCEnvelope.encode(request, allocator: ByteBufferAllocator())))
    }

    /// The responders of calls a test answers when it chooses.
    final class DeferredResponders: @unchecked Sendable {
        let lock = NSLock()
        var list: [TypedResponder<Google_Protobuf_BytesValue>] = []
        var count: Int { lock.withLock { list.count } }
    }

    /// A ready core serving `methods` (Debug's, of BytesValue) that keep each call open until
    /// the test answers it through the returned responders.
    func makeDeferredCore(maxQueuedWrites: Int,
                          _ methods: [TypedMethod<Google_Protobuf_BytesValue, Google_Protobuf_BytesValue>])
        -> (ServerCore, DeferredResponders) {
        let responders = DeferredResponders()
        var settings = ServerSettings(authorizer: .allowAll)
        settings.maxQueuedWritesPerConnection = maxQueuedWrites
        let service = RPCService(name: MethodTable.Debug.serviceName, methods: methods.map { method in
            .deferred(method) { _, _, respond in responders.lock.withLock { responders.list.append(respond) } }
        })
        let core = ServerCore(services: [service.name: service], settings: settings, health: HealthStatus(initial: .serving),
                              observer: NoServerObserver(), logger: Logger(label: "test"))
        core.setReady()
        return (core, responders)
    }

    func makeChannel(_ core: ServerCore) throws -> (EmbeddedChannel, StalledSocket) {
        let socket = StalledSocket()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([
            socket, TTRPCConnectionHandler(core: core, peer: PeerCredentials(pid: 1, uid: 1000, gid: 1000)),
        ])
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/test.sock")).wait()
        return (channel, socket)
    }

    /// Over `maxBufferedResponseBytes` of unwritten answers, requests wait unread and `read`
    /// is held back; once the peer reads, the rest are answered and reading resumes.
    func testUnwrittenResponsesStopReading() throws {
        var settings = ServerSettings()
        settings.maxBufferedResponseBytes = 64 << 10
        let core = makeCore(settings)
        let (channel, socket) = try makeChannel(core)
        defer { _ = try? channel.finish() }

        for index in 0..<10 {
            channel.pipeline.fireChannelRead(try bigRequest(UInt32(2 * index + 1), bytes: 32 << 10))
        }
        channel.pipeline.fireChannelReadComplete()
        channel.embeddedEventLoop.run()
        XCTAssertEqual(socket.held.count, 2, "answers stop once more than 64 KiB are unwritten")
        XCTAssertEqual(core.stats.inFlightCalls, 2, "answered but unwritten calls are still in flight")
        XCTAssertGreaterThan(core.detailedStats.bufferedResponseBytes, 64 << 10)

        let readsBefore = socket.reads
        channel.read()
        XCTAssertEqual(socket.reads, readsBefore, "reading waits while the connection is over its bound")
        XCTAssertEqual(core.detailedStats.throttledNow, 1)

        var answered = 0
        while !socket.held.isEmpty {
            answered += socket.held.count
            socket.drain()
            channel.embeddedEventLoop.run()
        }
        XCTAssertEqual(answered, 10)
        XCTAssertEqual(socket.reads, readsBefore + 1, "the held read is issued once everything is written")
        XCTAssertEqual(core.stats.inFlightCalls, 0)
        XCTAssertEqual(core.detailedStats.bufferedResponseBytes, 0)
        XCTAssertEqual(core.detailedStats.throttledNow, 0)
    }

    /// One read burst dispatches at most `maxCallsPerTurn` requests; the rest go on later
    /// turns of the loop, behind other work.
    func testBurstIsDispatchedInTurns() throws {
        var settings = ServerSettings()
        settings.maxCallsPerTurn = 4
        let core = makeCore(settings)
        let (channel, socket) = try makeChannel(core)
        defer { _ = try? channel.finish() }

        for index in 0..<10 {
            channel.pipeline.fireChannelRead(try bigRequest(UInt32(2 * index + 1), bytes: 8))
        }
        channel.pipeline.fireChannelReadComplete()
        XCTAssertEqual(socket.held.count, 4, "four dispatched in this turn")
        XCTAssertEqual(socket.writes.count, 1, "their answers written together")
        socket.drain()
        channel.embeddedEventLoop.run()
        socket.drain()
        channel.embeddedEventLoop.run()
        XCTAssertEqual(core.stats.finishedCalls, 10, "the rest on later turns")
    }

    /// A long read burst's answers go out in writes of `answersPerEarlyWrite`, the first ones
    /// before the burst ends; what is left goes out at its end.
    func testLongBurstIsWrittenInParts() throws {
        var settings = ServerSettings()
        settings.maxCallsPerTurn = 100
        let core = makeCore(settings)
        let (channel, socket) = try makeChannel(core)
        defer { _ = try? channel.finish() }

        let each = TTRPCConnectionHandler.answersPerEarlyWrite
        let count = 2 * each + 6
        for index in 0..<count {
            channel.pipeline.fireChannelRead(try bigRequest(UInt32(2 * index + 1), bytes: 8))
        }
        XCTAssertEqual(socket.writes.map { framesIn($0.0) }, [each, each], "written before the burst ends")
        channel.pipeline.fireChannelReadComplete()
        XCTAssertEqual(socket.writes.map { framesIn($0.0) }, [each, each, 6], "the rest at its end")
        XCTAssertEqual(socket.held.map(\.streamID), (0..<count).map { UInt32(2 * $0 + 1) }, "in order")
        socket.drain()
        channel.embeddedEventLoop.run()
        XCTAssertEqual(core.stats.inFlightCalls, 0)
    }

    func framesIn(_ bytes: ByteBuffer) -> Int {
        var parser = TTRPCFrameParser()
        var buffer = bytes
        var frames = 0
        while parser.next(from: &buffer) != nil { frames += 1 }
        return frames
    }

    /// Answers still in the outgoing buffer when the connection goes away are released: the
    /// calls stop counting as in flight and their bytes leave the global count.
    func testAnswersNotYetWrittenAreReleasedWhenTheConnectionCloses() throws {
        let core = makeCore(ServerSettings())
        let (channel, _) = try makeChannel(core)
        for index in 0..<3 {
            channel.pipeline.fireChannelRead(try bigRequest(UInt32(2 * index + 1), bytes: 100))
        }
        XCTAssertEqual(core.stats.inFlightCalls, 3, "answered, not yet written")
        XCTAssertGreaterThan(core.detailedStats.bufferedResponseBytes, 300)
        channel.pipeline.fireChannelInactive()
        XCTAssertEqual(core.stats.inFlightCalls, 0)
        XCTAssertEqual(core.detailedStats.bufferedResponseBytes, 0)
        XCTAssertEqual(core.stats.finishedCalls, 3)
        _ = try? channel.finish()
    }

    /// A write that fails (the peer reset the connection) closes the channel in the middle of a
    /// read burst, and the frame decoder then delivers the rest of the frames it had read after
    /// channelInactive. Nothing of theirs may stay counted: before, their answers sat in an
    /// outbox no read completion would flush, and the calls stayed in flight for good.
    func testFramesDeliveredAfterAResetCloseHoldNothing() throws {
        var settings = ServerSettings()
        settings.maxCallsPerTurn = 1_000
        let core = makeCore(settings)
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([
            ResetOnWrite(),
            ByteToMessageHandler(BudgetedFrameDecoder(core: core)),
            TTRPCConnectionHandler(core: core, peer: PeerCredentials(pid: 1, uid: 1000, gid: 1000)),
        ])
        try channel.connect(to: SocketAddress(unixDomainSocketPath: "/tmp/test.sock")).wait()

        // One read holding more requests than one early write answers: the early write fails
        // and closes the channel while the decoder still holds the rest.
        var bytes = ByteBuffer()
        let count = TTRPCConnectionHandler.answersPerEarlyWrite + 20
        for index in 0..<count {
            guard case .frame(let frame) = try bigRequest(UInt32(2 * index + 1), bytes: 1_000) else { return XCTFail() }
            frame.encode(into: &bytes)
        }
        channel.pipeline.fireChannelRead(bytes)
        channel.embeddedEventLoop.run()
        XCTAssertFalse(channel.isActive)
        XCTAssertEqual(core.stats.inFlightCalls, 0, "no call of a closed connection stays in flight")
        XCTAssertEqual(core.detailedStats.bufferedResponseBytes, 0, "no answer of a closed connection stays counted")
        XCTAssertEqual(core.stats.finishedCalls, UInt64(TTRPCConnectionHandler.answersPerEarlyWrite),
                       "the frames delivered after the close are not dispatched")
    }

    /// At most `maxQueuedWritesPerConnection` of a connection's writes wait for the writer;
    /// the next is dispatched when one of them ends.
    func testQueuedWritesPerConnectionAreBounded() throws {
        let (core, responders) = makeDeferredCore(maxQueuedWrites: 2, [MethodTable.Debug.echoWrite])
        let (channel, socket) = try makeChannel(core)
        defer { _ = try? channel.finish() }

        for index in 0..<5 {
            let request = Ttrpc_Request(service: MethodTable.Debug.serviceName, method: MethodTable.Debug.echoWrite.method,
                                        payload: [])
            channel.pipeline.fireChannelRead(TTRPCInbound.frame(TTRPCFrame(
                streamID: UInt32(2 * index + 1), type: .request,
                payload: try TTRPCEnvelope.encode(request, allocator: ByteBufferAllocator()))))
        }
        channel.pipeline.fireChannelReadComplete()
        channel.embeddedEventLoop.run()
        XCTAssertEqual(responders.count, 2, "two writes at the writer, three waiting unread")

        responders.lock.withLock { responders.list[0] }(.success(Google_Protobuf_BytesValue()))
        channel.embeddedEventLoop.run()
        socket.drain()
        channel.embeddedEventLoop.run()
        XCTAssertEqual(responders.count, 3, "one ended, the next is dispatched")
    }

    /// When the shutdown grace ends, every call still open is answered before the connection
    /// closes: a write the writer holds as UNAVAILABLE `persistence_outcome_unknown` (it may
    /// still be applied), a read and a request never dispatched as plain UNAVAILABLE. Before,
    /// the connection was closed under them and the client saw only EOF.
    func testCallsOpenAtTheGraceEndAreAnswered() throws {
        let (core, responders) = makeDeferredCore(maxQueuedWrites: 2, [MethodTable.Debug.echoWrite, MethodTable.Debug.echo])
        let (channel, socket) = try makeChannel(core)
        defer { _ = try? channel.finish() }

        // 1 and 5 are writes at the writer, 3 a read; 7 waits undispatched (two writes queued).
        for (id, method) in [(1, MethodTable.Debug.echoWrite.method), (3, MethodTable.Debug.echo.method),
                             (5, MethodTable.Debug.echoWrite.method), (7, MethodTable.Debug.echoWrite.method)] {
            let request = Ttrpc_Request(service: MethodTable.Debug.serviceName, method: method, payload: [])
            channel.pipeline.fireChannelRead(TTRPCInbound.frame(TTRPCFrame(
                streamID: UInt32(id), type: .request, payload: try TTRPCEnvelope.encode(request, allocator: ByteBufferAllocator()))))
        }
        channel.pipeline.fireChannelReadComplete()
        channel.embeddedEventLoop.run()
        XCTAssertEqual(responders.count, 3)

        channel.pipeline.fireUserInboundEventTriggered(DrainConnectionEvent())
        channel.embeddedEventLoop.run()
        XCTAssertTrue(channel.isActive, "the drain waits for the open calls")
        channel.pipeline.fireUserInboundEventTriggered(ShutdownGraceEndedEvent(grace: .seconds(10)))
        channel.embeddedEventLoop.run()

        var answers: [UInt32: RPCError] = [:]
        for frame in socket.held {
            guard case .failure(let error) = TTRPCEnvelope.result(of: try TTRPCEnvelope.decodeResponse(frame.payload)) else {
                return XCTFail("call \(frame.streamID) succeeded")
            }
            answers[frame.streamID] = error
        }
        XCTAssertEqual(answers.keys.sorted(), [1, 3, 5, 7])
        for id: UInt32 in [1, 5] {
            XCTAssertEqual(answers[id]?.code, .unavailable)
            XCTAssertEqual(answers[id]?.reason, "persistence_outcome_unknown")
            XCTAssertEqual(answers[id]?.message, "persistence_outcome_unknown: creditd stopped before this call's change "
                + "was made durable (its shutdown grace of 10 s ended); it may or may not have taken effect: read it "
                + "back after the restart (a write retried with the same idempotency key applies at most once)")
        }
        XCTAssertEqual(answers[3]?.code, .unavailable)
        XCTAssertNil(answers[3]?.reason)
        XCTAssertEqual(answers[3]?.message, "server is shutting down (its shutdown grace of 10 s ended before this call finished)")
        XCTAssertEqual(answers[7]?.code, .unavailable)
        XCTAssertEqual(answers[7]?.message, "server is shutting down (its shutdown grace of 10 s ended before this call started)")
        XCTAssertEqual(responders.count, 3, "the undispatched write never reached the writer")

        XCTAssertTrue(channel.isActive, "closed once the answers are written")
        socket.drain()
        channel.embeddedEventLoop.run()
        XCTAssertFalse(channel.isActive)
        // The writer finishing a write afterwards writes nothing and ends its count.
        responders.lock.withLock { responders.list[0] }(.success(Google_Protobuf_BytesValue()))
        channel.embeddedEventLoop.run()
        XCTAssertEqual(socket.writes.count, 0)
    }

    /// A drain that closes the connection once its last open call ends first answers the
    /// requests it never dispatched (held back by the writer bound): UNAVAILABLE, nothing
    /// applied. They were dropped with the connection, and their client saw only EOF.
    func testDrainAnswersRequestsItNeverDispatched() throws {
        let (core, responders) = makeDeferredCore(maxQueuedWrites: 1, [MethodTable.Debug.echoWrite])
        let (channel, socket) = try makeChannel(core)
        defer { _ = try? channel.finish() }
        for id in [1, 3] {
            let request = Ttrpc_Request(service: MethodTable.Debug.serviceName, method: MethodTable.Debug.echoWrite.method,
                                        payload: [])
            channel.pipeline.fireChannelRead(TTRPCInbound.frame(TTRPCFrame(
                streamID: UInt32(id), type: .request, payload: try TTRPCEnvelope.encode(request, allocator: ByteBufferAllocator()))))
        }
        channel.pipeline.fireChannelReadComplete()
        channel.embeddedEventLoop.run()
        XCTAssertEqual(responders.count, 1, "the second write waits for the first")

        channel.pipeline.fireUserInboundEventTriggered(DrainConnectionEvent())
        responders.lock.withLock { responders.list[0] }(.success(Google_Protobuf_BytesValue()))
        channel.embeddedEventLoop.run()
        let frames = socket.held
        XCTAssertEqual(frames.map(\.streamID).sorted(), [1, 3])
        let waiting = try XCTUnwrap(frames.first { $0.streamID == 3 })
        guard case .failure(let error) = TTRPCEnvelope.result(of: try TTRPCEnvelope.decodeResponse(waiting.payload)) else {
            return XCTFail("the undispatched write succeeded")
        }
        XCTAssertEqual(error.code, .unavailable)
        XCTAssertEqual(error.message, "server is shutting down")
        XCTAssertEqual(responders.count, 1, "it never reached the writer")
        socket.drain()
        channel.embeddedEventLoop.run()
        XCTAssertFalse(channel.isActive)
    }

    /// The decoder shows the look-ahead the request frames complete in a read, up to
    /// `requestLookAheadFrames`, before passing the first on; it looks again once it has passed
    /// them all. A lone request is not shown (nothing to overlap with).
    func testDecoderShowsTheLookAheadEachBurstsRequests() throws {
        let recorder = RecordingLookAhead()
        let core = ServerCore(services: [:], settings: ServerSettings(), health: HealthStatus(initial: .serving),
                              observer: NoServerObserver(), logger: Logger(label: "test"), lookAhead: recorder)
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(BudgetedFrameDecoder(core: core)))
        defer { _ = try? channel.finish() }

        func frame(_ id: UInt32, _ type: TTRPCFrameType, _ payload: [UInt8]) -> ByteBuffer {
            var buffer = ByteBuffer()
            TTRPCFrame(streamID: id, type: type, payload: ByteBuffer(bytes: payload)).encode(into: &buffer)
            return buffer
        }
        var burst = ByteBuffer()
        for index in 0..<3 { burst.writeImmutableBuffer(frame(UInt32(2 * index + 1), .request, [UInt8(index)])) }
        burst.writeImmutableBuffer(frame(7, .data, [9]))
        burst.writeImmutableBuffer(frame(9, .request, [3]))
        var partial = frame(11, .request, [4, 4])
        burst.writeImmutableBuffer(partial.readSlice(length: 5)!)
        try channel.writeInbound(burst)
        XCTAssertEqual(recorder.bursts, [[[0], [1], [2], [3]]], "the complete requests, data frames left out")
        var passed = 0
        while try channel.readInbound(as: TTRPCInbound.self) != nil { passed += 1 }
        XCTAssertEqual(passed, 5)

        var rest = partial
        for index in 0..<(requestLookAheadFrames + 2) {
            rest.writeImmutableBuffer(frame(UInt32(13 + 2 * index), .request, [UInt8(5 + index)]))
        }
        try channel.writeInbound(rest)
        XCTAssertEqual(recorder.bursts.count, 3, "a full look-ahead, then one for what is left")
        XCTAssertEqual(recorder.bursts[1].count, requestLookAheadFrames)
        XCTAssertEqual(recorder.bursts[1].first, [4, 4], "from the frame that completed")
        XCTAssertEqual(recorder.bursts[2], ((requestLookAheadFrames - 1)...(requestLookAheadFrames + 1)).map { [UInt8(5 + $0)] },
                       "the three frames past the first look-ahead's sixteen")

        try channel.writeInbound(frame(99, .request, [1]))
        XCTAssertEqual(recorder.bursts.count, 3, "a lone request is not shown")
    }

    /// A large frame over the partial-frame budget is skipped and answered RESOURCE_EXHAUSTED.
    func testLargeFrameOverBudgetIsRefused() throws {
        var settings = ServerSettings()
        settings.maxPartialFrameBytes = 1 << 20
        let core = makeCore(settings)
        let socket = StalledSocket()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandlers([
            socket, ByteToMessageHandler(BudgetedFrameDecoder(core: core)),
            TTRPCConnectionHandler(core: core, peer: PeerCredentials(pid: 1, uid: 1000, gid: 1000)),
        ])
        defer { _ = try? channel.finish() }
        XCTAssertTrue(core.reservePartialFrame(1 << 20, limit: 1 << 20), "another connection holds the budget")

        var frame = ByteBuffer()
        TTRPCFrame(streamID: 1, type: .request, payload: ByteBuffer(repeating: 0, count: 2 << 20)).encode(into: &frame)
        try channel.writeInbound(frame.getSlice(at: 0, length: 1 << 20)!)
        XCTAssertEqual(core.detailedStats.partialFrameBytes, 1 << 20, "no more reserved")
        try channel.writeInbound(frame.getSlice(at: 1 << 20, length: frame.readableBytes - (1 << 20))!)
        channel.pipeline.fireChannelReadComplete()
        channel.embeddedEventLoop.run()
        XCTAssertEqual(socket.held.count, 1)
        let response = try TTRPCEnvelope.decodeResponse(socket.held[0].payload)
        guard case .failure(let error) = TTRPCEnvelope.result(of: response) else { return XCTFail("expected an error") }
        XCTAssertEqual(error.code, .resourceExhausted)
        XCTAssertEqual(core.detailedStats.refusedLargeFrames, 1)
        core.releasePartialFrame(1 << 20)
    }

    /// A call parked during recovery ends UNAVAILABLE as soon as recovery fails, and so does
    /// one that arrives afterwards, while the server shuts down. Left parked, such calls held
    /// the shutdown's drain for its whole grace, and creditd logged why it could not start
    /// only after it (a review's repro: 10 s with a corrupt journal).
    func testParkedCallsEndUnavailableWhenRecoveryFails() throws {
        let core = makeCore(ServerSettings())
        let unready = ServerCore(services: core.services, settings: ServerSettings(), health: core.health,
                                 observer: NoServerObserver(), logger: Logger(label: "test"))
        let (channel, socket) = try makeChannel(unready)
        defer { _ = try? channel.finish() }
        func status(_ frame: TTRPCFrame) throws -> RPCError? {
            guard case .failure(let error) = TTRPCEnvelope.result(of: try TTRPCEnvelope.decodeResponse(frame.payload)) else {
                return nil
            }
            return error
        }

        channel.pipeline.fireChannelRead(try bigRequest(1, bytes: 8))
        channel.pipeline.fireChannelReadComplete()
        channel.embeddedEventLoop.run()
        XCTAssertEqual(socket.held.count, 0, "parked while recovering")
        XCTAssertEqual(unready.stats.inFlightCalls, 1)

        unready.refuseUnready(RPCError.unavailable("recovery failed"))
        channel.embeddedEventLoop.run()
        XCTAssertEqual(socket.held.count, 1)
        XCTAssertEqual(try status(socket.held[0])?.code, .unavailable)
        XCTAssertEqual(try status(socket.held[0])?.message, "recovery failed")

        channel.pipeline.fireChannelRead(try bigRequest(3, bytes: 8))
        channel.pipeline.fireChannelReadComplete()
        channel.embeddedEventLoop.run()
        XCTAssertEqual(socket.held.count, 2, "a later call is answered at once")
        XCTAssertEqual(try status(socket.held[1])?.code, .unavailable)
        socket.drain()
        channel.embeddedEventLoop.run()
        XCTAssertEqual(unready.stats.inFlightCalls, 0, "nothing left for the drain to wait for")

        unready.setReady()
        XCTAssertFalse(unready.isReady, "a refusal is final")
    }

    /// Per-uid limit, idle-first eviction and reserved slots, on the admission logic alone.
    func testAdmissionPerUIDEvictionAndReservedSlots() throws {
        var settings = ServerSettings(maxConnections: 4)
        settings.maxConnectionsPerUID = 2
        settings.reservedConnections = 1
        let core = makeCore(settings)
        let channels = (0..<8).map { _ in EmbeddedChannel() }
        func admit(_ index: Int, uid: UInt32, privileged: Bool = false) -> ServerCore.Admission {
            core.admit(channels[index], uid: uid, privileged: privileged, settings: settings)
        }
        XCTAssertEqual(admit(0, uid: 1000), .admitted(openConnections: 1))
        XCTAssertEqual(admit(1, uid: 1000), .admitted(openConnections: 2))
        core.setIdle(channels[0], false)
        core.setIdle(channels[1], false)
        guard case .refused("per_uid", let message) = admit(2, uid: 1000) else { return XCTFail("over the per-uid limit") }
        XCTAssertTrue(message.contains("uid 1000"), message)
        XCTAssertEqual(admit(3, uid: 1001), .admitted(openConnections: 3))
        // The last slot is reserved: another unprivileged uid is refused, root gets in.
        core.setIdle(channels[3], false)
        guard case .refused("full", _) = admit(4, uid: 1002) else { return XCTFail("the reserved slot is not for uid 1002") }
        XCTAssertEqual(admit(5, uid: 0, privileged: true), .admitted(openConnections: 4))
        // A connection silent since it connected makes room for its own uid.
        XCTAssertEqual(admit(6, uid: 0, privileged: true), .admitted(openConnections: 4))
        XCTAssertEqual(core.detailedStats.evictedIdleConnections, 1)
        XCTAssertEqual(core.detailedStats.connectionsByUID, [1000: 2, 1001: 1, 0: 1])
        XCTAssertEqual(core.detailedStats.refusedByReason, ["per_uid": 1, "full": 1])
    }

    func testLogRateLimiterSuppressesRepeatsPerKey() {
        let limiter = LogRateLimiter(interval: .seconds(1))
        let start = ContinuousClock.now
        XCTAssertEqual(limiter.admit("refused:1000", now: start), 0)
        XCTAssertNil(limiter.admit("refused:1000", now: start + .milliseconds(10)))
        XCTAssertNil(limiter.admit("refused:1000", now: start + .milliseconds(20)))
        XCTAssertEqual(limiter.admit("refused:1001", now: start + .milliseconds(30)), 0, "per key")
        XCTAssertEqual(limiter.admit("refused:1000", now: start + .seconds(1)), 2, "the next line carries the count")
        XCTAssertEqual(limiter.suppressedTotal, 2)
    }
}
