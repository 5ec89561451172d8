import CreditProto
import CreditWire
import NIOCore
import NIOPosix
import SwiftProtobuf
#if canImport(Glibc)
import Glibc
#endif

/// An async ttrpc client for creditd over a Unix socket. Many calls may run at once on one
/// connection; each gets its own odd stream id (1, 3, 5, ...).
///
/// Errors: `RPCError` for a status from the server (its `reason` reads the ErrorReason detail
/// or the "<reason>: " message prefix), `ClientError` for everything else.
public final class CreditClient: Sendable {
    public let socketPath: String
    /// Used by calls that pass no timeout; nil means no deadline.
    public let defaultCallTimeout: Duration?
    private let channel: any Channel

    private init(socketPath: String, channel: any Channel, defaultCallTimeout: Duration?) {
        self.socketPath = socketPath
        self.channel = channel
        self.defaultCallTimeout = defaultCallTimeout
    }

    /// Connects to a creditd socket.
    /// - Parameters:
    ///   - timeout: bound on connect().
    ///   - defaultCallTimeout: deadline of calls that pass none.
    public static func connect(
        socketPath: String,
        timeout: Duration = .seconds(5),
        defaultCallTimeout: Duration? = nil,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> CreditClient {
        let deadline = ContinuousClock.now + timeout
        func bootstrap() -> ClientBootstrap {
            ClientBootstrap(group: eventLoopGroup)
                .connectTimeout(TimeAmount.nanoseconds(clampedNanoseconds(max(deadline - .now, .zero))))
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandlers([
                            ByteToMessageHandler(TTRPCFrameDecoder()),
                            MessageToByteHandler(TTRPCFrameEncoder()),
                            ClientConnectionHandler(),
                        ])
                    }
                }
        }
        do {
            while true {
                do {
                    let channel = try await bootstrap().connect(unixDomainSocketPath: socketPath).get()
                    return CreditClient(socketPath: socketPath, channel: channel, defaultCallTimeout: defaultCallTimeout)
                } catch let error as IOError where error.errnoCode == EAGAIN {
                    // The listen backlog is full: a busy server, not an absent one. Like a
                    // connection queued in the backlog, wait for room until the deadline (the C
                    // client does the same).
                    guard ContinuousClock.now + .milliseconds(20) < deadline else { throw ChannelError.connectTimeout(.zero) }
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
        } catch let error as IOError {
            throw ClientError.connectFailed(path: socketPath, errno: error.errnoCode)
        } catch ChannelError.connectTimeout {
            throw ClientError.connectTimedOut(path: socketPath)
        } catch let error as SocketAddressError {
            _ = error
            throw ClientError.connectFailed(path: socketPath, errno: ENAMETOOLONG)
        }
    }

    /// Closes the connection; pending calls fail with `ClientError.connectionClosed`.
    public func close() async {
        try? await channel.close()
    }

    /// True while the connection is open.
    public var isConnected: Bool { channel.isActive }

    /// Calls a unary method with encoded bytes and returns the encoded response.
    /// - Parameters:
    ///   - timeout: the call's deadline (nil: `defaultCallTimeout`); sent as timeout_nano and
    ///     enforced locally with `ClientError.timedOut`.
    ///   - metadata: sent with lowercased keys; a key may repeat.
    ///   - rawTimeoutNano: sends this timeout_nano verbatim (protocol tests); the local
    ///     deadline still follows `timeout`.
    public func callRaw(
        service: String,
        method: String,
        payload: [UInt8],
        timeout: Duration? = nil,
        metadata: [(String, String)] = [],
        rawTimeoutNano: Int64? = nil
    ) async throws -> [UInt8] {
        let request = Ttrpc_Request(
            service: service,
            method: method,
            payload: payload,
            metadata: metadata.map { ($0.0.lowercased(), $0.1) }
        )
        let response = try await send(request, timeout: timeout ?? defaultCallTimeout, rawTimeoutNano: rawTimeoutNano)
        switch TTRPCEnvelope.result(of: response) {
        case .success(let bytes): return bytes
        case .failure(let error): throw error
        }
    }

    /// Calls a unary method on typed messages.
    public func call<Req: SwiftProtobuf.Message, Res: SwiftProtobuf.Message>(
        service: String,
        method: String,
        request: Req,
        responseType: Res.Type = Res.self,
        timeout: Duration? = nil,
        metadata: [(String, String)] = []
    ) async throws -> Res {
        let bytes = try await callRaw(
            service: service,
            method: method,
            payload: try request.serializedBytes(),
            timeout: timeout,
            metadata: metadata
        )
        do {
            return try Res(serializedBytes: bytes)
        } catch {
            throw ClientError.invalidResponse("payload is not a \(Res.protoMessageName): \(error)")
        }
    }

    /// Calls a server-streaming method: `onMessage` gets the payload of each message the server
    /// sends, in order, on the connection's event loop (hand it on; do not block there). Returns
    /// when the stream ends OK; throws `RPCError` for the status that ended it otherwise, or
    /// what `onMessage` threw.
    ///   - timeout: bounds the whole stream; nil for none (a watch that runs until stopped).
    public func callServerStreaming(
        service: String,
        method: String,
        payload: [UInt8],
        timeout: Duration? = nil,
        onMessage: @escaping @Sendable ([UInt8]) throws -> Void
    ) async throws {
        let request = Ttrpc_Request(service: service, method: method, payload: payload, metadata: [])
        let response = try await send(request, timeout: timeout, rawTimeoutNano: nil, onMessage: onMessage)
        if case .failure(let error) = TTRPCEnvelope.result(of: response) { throw error }
    }

    private func send(_ request: Ttrpc_Request, timeout: Duration?, rawTimeoutNano: Int64?,
                      onMessage: (@Sendable ([UInt8]) throws -> Void)? = nil) async throws -> Ttrpc_Response {
        let promise = channel.eventLoop.makePromise(of: Ttrpc_Response.self)
        let deadline = timeout.map { NIODeadline.now() + .nanoseconds(Self.clampedNanoseconds($0)) }
        let call = OutgoingCall(request: request, deadline: deadline, rawTimeoutNano: rawTimeoutNano, promise: promise,
                                onMessage: onMessage)
        channel.writeAndFlush(call).whenFailure { error in
            // Never reached the handler (connection already closed) or the socket write failed.
            promise.fail(error is ClientError ? error : ClientError.connectionClosed)
        }
        return try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            promise.fail(CancellationError())
        }
    }

    static func clampedNanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (nanos, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (total, overflow2) = nanos.addingReportingOverflow(attoseconds / 1_000_000_000)
        return overflow2 ? .max : total
    }
}
