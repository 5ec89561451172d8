import CreditProto
import CreditWire
import NIOCore
import SwiftProtobuf

/// What a handler knows about its call.
public struct CallContext: Sendable {
    public var peer: PeerCredentials
    /// Fully-qualified service name, e.g. "creditd.v1.Credits".
    public var service: String
    /// Bare method name, e.g. "GetClock".
    public var method: String
    /// Request metadata with keys lowercased; a key may repeat.
    public var metadata: [(key: String, value: String)]
    /// When the client stops waiting (timeout_nano, or the server default); nil for none.
    public var deadline: ContinuousClock.Instant?
    /// The call's ttrpc stream id on its connection.
    public var streamID: UInt32
    /// The request message exactly as received (the journal records it as is).
    public var requestBytes: [UInt8]

    public init(
        peer: PeerCredentials,
        service: String,
        method: String,
        metadata: [(key: String, value: String)] = [],
        deadline: ContinuousClock.Instant? = nil,
        streamID: UInt32 = 1,
        requestBytes: [UInt8] = []
    ) {
        self.peer = peer
        self.service = service
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.streamID = streamID
        self.requestBytes = requestBytes
    }

    /// All values of a (lowercase) metadata key, in the order received.
    public func metadataValues(_ key: String) -> [String] {
        let key = key.lowercased()
        return metadata.compactMap { $0.key == key ? $0.value : nil }
    }

    /// True once the deadline has passed. Writers check it before committing anything.
    public var isPastDeadline: Bool {
        guard let deadline else { return false }
        return ContinuousClock.now >= deadline
    }

    /// Time left until the deadline; nil when there is none.
    public var timeRemaining: Duration? {
        deadline.map { $0 - ContinuousClock.now }
    }
}

/// Completes one unary call with its encoded response or an error (`RPCError` for a status).
/// Call it exactly once, from any thread: the reply is written on the connection's event loop,
/// directly when already there, else with one hop (shared with the other replies of a
/// `ReplyBatch` when one is collecting on the calling thread).
public struct UnaryResponder: Sendable {
    let eventLoop: any EventLoop
    let complete: @Sendable (Result<[UInt8], any Error>) -> Void
    /// Set for methods that wait on their own (`RPCMethod.deferred(_:cancellable:_:)`); nil for
    /// the rest, so a write allocates nothing for it.
    let cancellation: CallCancellation?

    public init(eventLoop: any EventLoop, cancellation: CallCancellation? = nil,
                complete: @escaping @Sendable (Result<[UInt8], any Error>) -> Void) {
        self.eventLoop = eventLoop
        self.cancellation = cancellation
        self.complete = complete
    }

    public func callAsFunction(_ result: Result<[UInt8], any Error>) {
        if eventLoop.inEventLoop {
            complete(result)
        } else if !ReplyBatch.add(result, on: eventLoop, complete: complete) {
            eventLoop.execute { [complete] in complete(result) }
        }
    }

    /// A responder for typed messages, encoded on the thread that answers, before the hop.
    public func typed<Response: SwiftProtobuf.Message>(_ type: Response.Type) -> TypedResponder<Response> {
        TypedResponder(base: self)
    }
}

/// A `UnaryResponder` that takes the response message (or an error) instead of bytes.
public struct TypedResponder<Response: SwiftProtobuf.Message>: Sendable {
    let base: UnaryResponder

    /// The connection's event loop, where the call was dispatched.
    public var eventLoop: any EventLoop { base.eventLoop }

    /// Calls `handler` once if the call ends before it is answered: its connection closed, or
    /// its deadline passed. Only a method declared cancellable is told; for others this does
    /// nothing. The answer given after that is dropped.
    public func whenCancelled(_ handler: @escaping @Sendable () -> Void) {
        base.cancellation?.whenCancelled(handler)
    }

    public func callAsFunction(_ result: Result<Response, any Error>) {
        callAsFunction(encoded: result.flatMap { RPCMethod.encode($0) })
    }

    /// Answers with a response its caller encoded itself, straight from domain values
    /// (CreditService's `ResponseEncoding`). The bytes must be the encoding of `Response`.
    public func callAsFunction(encoded result: Result<[UInt8], any Error>) {
        base.callAsFunction(result)
    }
}

/// Sends the messages of a server-streaming call (each one as a Data frame).
public struct ServerStreamWriter: Sendable {
    let sendBatch: @Sendable ([[UInt8]]) async throws -> Void

    /// `sendBatch` writes the encoded messages in order and returns once they are written to
    /// the socket.
    public init(_ sendBatch: @escaping @Sendable ([[UInt8]]) async throws -> Void) {
        self.sendBatch = sendBatch
    }

    /// Sends one message. Throws `CancellationError` once the stream or connection is gone.
    public func send<M: SwiftProtobuf.Message>(_ message: M) async throws {
        try await sendBatch([try message.serializedBytes()])
    }

    /// Sends several messages with one hand-off to the connection and one flush: a stream
    /// with a backlog pays the round trip to the event loop once per batch, not per message.
    public func send<M: SwiftProtobuf.Message>(_ messages: [M]) async throws {
        try await send(encoded: try messages.map { try $0.serializedBytes() })
    }

    /// Sends several messages its caller encoded itself (each must be the encoding of the
    /// stream's message type), as `send(_:)` does.
    public func send(encoded messages: [[UInt8]]) async throws {
        guard !messages.isEmpty else { return }
        try await sendBatch(messages)
    }
}

/// One method of a service: its descriptor from the method table, and how it is answered.
public struct RPCMethod: Sendable {
    /// Takes the encoded request; answers through the responder, exactly once.
    public typealias UnaryHandler = @Sendable ([UInt8], CallContext, UnaryResponder) -> Void
    /// Runs as a child task of the server's task group (`TTRPCServer.run`): for the few calls
    /// that must await (reload, health watch). Returns the encoded response.
    public typealias AsyncUnaryHandler = @Sendable ([UInt8], CallContext) async throws -> [UInt8]
    /// Takes the encoded request and sends messages; returning ends the stream normally,
    /// throwing `RPCError` ends it with that status. Runs as a child task of the server.
    public typealias ServerStreamingHandler = @Sendable ([UInt8], CallContext, ServerStreamWriter) async throws -> Void

    public enum Handler: Sendable {
        /// Answered on the event loop, at once or later through the responder.
        case unary(UnaryHandler)
        case asyncUnary(AsyncUnaryHandler)
        case serverStreaming(ServerStreamingHandler)
    }

    public let descriptor: MethodDescriptor
    public let handler: Handler
    /// Whether the call must wait until the server is ready (state recovered). Health does not.
    public let needsReadiness: Bool
    /// Whether a unary handler is told when its call ends unanswered (`deferred`).
    public let cancellable: Bool
    /// Set by the server from its observer when it builds its table.
    var recorder: any CallRecorder = NoCallRecorder()

    public init(descriptor: MethodDescriptor, cancellable: Bool = false, handler: Handler, needsReadiness: Bool = true) {
        precondition((descriptor.kind == .serverStreaming) == { if case .serverStreaming = handler { true } else { false } }(),
                     "handler kind of \(descriptor) does not match the method table")
        self.descriptor = descriptor
        self.cancellable = cancellable
        self.handler = handler
        self.needsReadiness = needsReadiness
    }

    public var name: String { descriptor.method }
    public var role: MethodRole { descriptor.role }
    public var kind: RPCMethodKind { descriptor.kind }

    /// A unary method answered on the event loop from what `body` returns: reads of committed
    /// state, which never wait.
    ///
    /// These constructors are inlinable so that each method's handler is specialized for its
    /// message types where it is declared: a generic handler looked up the metadata of its
    /// `Result` types at run time on every call (5% of a GetSubscription's CPU).
    @inlinable
    public static func immediate<Req, Res>(
        _ method: TypedMethod<Req, Res>, needsReadiness: Bool = true,
        _ body: @escaping @Sendable (Req, CallContext) throws -> Res
    ) -> RPCMethod {
        RPCMethod(descriptor: method.descriptor, handler: .unary { bytes, context, respond in
            respond(Result { try decode(Req.self, bytes, context) }
                .flatMap { request in Result { try body(request, context) } }
                .flatMap { encode($0) })
        }, needsReadiness: needsReadiness)
    }

    /// Like `immediate`, for a response the body encodes itself: the large reads, written
    /// straight from domain values without building a message (CreditService's
    /// `ResponseEncoding`). The bytes must be the encoding of `Res`.
    @inlinable
    public static func immediateEncoded<Req, Res>(
        _ method: TypedMethod<Req, Res>,
        _ body: @escaping @Sendable (Req, CallContext) throws -> [UInt8]
    ) -> RPCMethod {
        RPCMethod(descriptor: method.descriptor, handler: .unary { bytes, context, respond in
            respond(Result { try decode(Req.self, bytes, context) }
                .flatMap { request in Result { try body(request, context) } })
        })
    }

    /// A unary method answered later, through the typed responder (writes: the writer thread
    /// completes them once durable). A `cancellable` method's responder reports when the call
    /// ends unanswered (`TypedResponder.whenCancelled`): for a call that waits on its own and
    /// holds something meanwhile.
    @inlinable
    public static func deferred<Req, Res>(
        _ method: TypedMethod<Req, Res>, cancellable: Bool = false,
        _ body: @escaping @Sendable (Req, CallContext, TypedResponder<Res>) -> Void
    ) -> RPCMethod {
        RPCMethod(descriptor: method.descriptor, cancellable: cancellable, handler: .unary { bytes, context, respond in
            let request: Req
            do {
                request = try decode(Req.self, bytes, context)
            } catch {
                respond(.failure(error))
                return
            }
            body(request, context, respond.typed(Res.self))
        })
    }

    /// A unary method that awaits; it runs as a child task of the server.
    @inlinable
    public static func async<Req, Res>(
        _ method: TypedMethod<Req, Res>,
        _ body: @escaping @Sendable (Req, CallContext) async throws -> Res
    ) -> RPCMethod {
        RPCMethod(descriptor: method.descriptor, handler: .asyncUnary { bytes, context in
            let request = try decode(Req.self, bytes, context)
            return try encode(try await body(request, context)).get()
        })
    }

    /// A server-streaming method on typed messages.
    @inlinable
    public static func serverStreaming<Req, Res>(
        _ method: TypedMethod<Req, Res>, needsReadiness: Bool = true,
        _ body: @escaping @Sendable (Req, CallContext, ServerStreamWriter) async throws -> Void
    ) -> RPCMethod {
        RPCMethod(descriptor: method.descriptor, handler: .serverStreaming { bytes, context, writer in
            let request = try decode(Req.self, bytes, context)
            try await body(request, context, writer)
        }, needsReadiness: needsReadiness)
    }

    @inlinable
    static func decode<Req: SwiftProtobuf.Message>(_ type: Req.Type, _ bytes: [UInt8], _ context: CallContext) throws -> Req {
        do {
            return try Req(serializedBytes: bytes)
        } catch {
            throw RPCError.invalidArgument(
                "unmarshal payload error: \(context.service)/\(context.method) expects \(Req.protoMessageName): \(error)"
            )
        }
    }

    @inlinable
    static func encode<Res: SwiftProtobuf.Message>(_ response: Res) -> Result<[UInt8], any Error> {
        do {
            return .success(try response.serializedBytes())
        } catch {
            return .failure(RPCError.internalError("cannot encode \(Res.protoMessageName): \(error)"))
        }
    }
}

/// A service: its fully-qualified proto name and its methods.
public struct RPCService: Sendable {
    public var name: String
    public var methods: [String: RPCMethod]

    public init(name: String, methods: [RPCMethod]) {
        precondition(methods.allSatisfy { $0.descriptor.service == name }, "a method of another service in \(name)")
        self.name = name
        self.methods = Dictionary(methods.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
    }
}
