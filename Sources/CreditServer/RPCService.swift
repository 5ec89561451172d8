import CreditWire
import SwiftProtobuf

/// The authorization role a method needs (docs/operations.md §1).
public enum MethodRole: String, Sendable, Hashable, CaseIterable {
    /// Any peer that may connect.
    case reader
    /// Peers allowed to change state.
    case writer
}

/// How a method exchanges messages. Decided by the server's method table, never by Request flags.
public enum RPCMethodKind: Sendable, Hashable {
    case unary
    case serverStreaming
}

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

    public init(
        peer: PeerCredentials,
        service: String,
        method: String,
        metadata: [(key: String, value: String)] = [],
        deadline: ContinuousClock.Instant? = nil,
        streamID: UInt32 = 1
    ) {
        self.peer = peer
        self.service = service
        self.method = method
        self.metadata = metadata
        self.deadline = deadline
        self.streamID = streamID
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

/// Sends the messages of a server-streaming call (each one as a Data frame).
public struct ServerStreamWriter: Sendable {
    let sendBytes: @Sendable ([UInt8]) async throws -> Void

    public init(_ sendBytes: @escaping @Sendable ([UInt8]) async throws -> Void) {
        self.sendBytes = sendBytes
    }

    /// Sends one encoded message. Throws `CancellationError` once the stream or connection is gone.
    public func send(bytes: [UInt8]) async throws {
        try await sendBytes(bytes)
    }

    public func send<M: SwiftProtobuf.Message>(_ message: M) async throws {
        try await sendBytes(try message.serializedBytes())
    }
}

/// One method of a service.
public struct RPCMethod: Sendable {
    /// Takes the encoded request, returns the encoded response; throws `RPCError` for a status.
    public typealias UnaryHandler = @Sendable ([UInt8], CallContext) async throws -> [UInt8]
    /// Takes the encoded request and sends messages; returning ends the stream normally,
    /// throwing `RPCError` ends it with that status.
    public typealias ServerStreamingHandler = @Sendable ([UInt8], CallContext, ServerStreamWriter) async throws -> Void

    public enum Handler: Sendable {
        case unary(UnaryHandler)
        case serverStreaming(ServerStreamingHandler)
    }

    public var name: String
    public var role: MethodRole
    public var handler: Handler

    public init(name: String, role: MethodRole, handler: Handler) {
        self.name = name
        self.role = role
        self.handler = handler
    }

    public var kind: RPCMethodKind {
        switch handler {
        case .unary: .unary
        case .serverStreaming: .serverStreaming
        }
    }

    /// A unary method on typed messages. A payload that does not decode as `Req` is answered
    /// with INVALID_ARGUMENT without calling `body`.
    public static func unary<Req: SwiftProtobuf.Message, Res: SwiftProtobuf.Message>(
        _ name: String,
        role: MethodRole,
        request: Req.Type,
        response: Res.Type,
        _ body: @escaping @Sendable (Req, CallContext) async throws -> Res
    ) -> RPCMethod {
        RPCMethod(name: name, role: role, handler: .unary { bytes, context in
            let request = try decodePayload(Req.self, bytes, context)
            let response = try await body(request, context)
            do {
                return try response.serializedBytes()
            } catch {
                throw RPCError.internalError("cannot encode \(Res.protoMessageName): \(error)")
            }
        })
    }

    /// A server-streaming method on typed messages.
    public static func serverStreaming<Req: SwiftProtobuf.Message, Res: SwiftProtobuf.Message>(
        _ name: String,
        role: MethodRole,
        request: Req.Type,
        response: Res.Type,
        _ body: @escaping @Sendable (Req, CallContext, ServerStreamWriter) async throws -> Void
    ) -> RPCMethod {
        RPCMethod(name: name, role: role, handler: .serverStreaming { bytes, context, writer in
            let request = try decodePayload(Req.self, bytes, context)
            try await body(request, context, writer)
        })
    }

    /// An UNIMPLEMENTED placeholder (declared in the contract, not served yet).
    public static func unimplemented(_ name: String, role: MethodRole) -> RPCMethod {
        RPCMethod(name: name, role: role, handler: .unary { _, context in
            throw RPCError.unimplemented("method \(context.method) is not implemented")
        })
    }

    private static func decodePayload<Req: SwiftProtobuf.Message>(
        _ type: Req.Type,
        _ bytes: [UInt8],
        _ context: CallContext
    ) throws -> Req {
        do {
            return try Req(serializedBytes: bytes)
        } catch {
            throw RPCError.invalidArgument(
                "unmarshal payload error: \(context.service)/\(context.method) expects \(Req.protoMessageName): \(error)"
            )
        }
    }
}

/// A service: its fully-qualified proto name and its methods.
public struct RPCService: Sendable {
    public var name: String
    public var methods: [String: RPCMethod]

    public init(name: String, methods: [RPCMethod]) {
        self.name = name
        self.methods = Dictionary(methods.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
    }
}
