import SwiftProtobuf

/// The peer role a method needs (docs/operations.md §1).
public enum MethodRole: String, Sendable, Hashable, CaseIterable {
    /// Any peer that may connect.
    case reader
    /// Peers allowed to change state.
    case writer
}

/// How a method exchanges messages. Decided by the method table, never by Request flags.
public enum RPCMethodKind: Sendable, Hashable {
    case unary
    case serverStreaming
}

/// One rpc of the contract, as the method table describes it (method_table.swift, generated
/// from proto/ by scripts/gen-method-table.py).
public struct MethodDescriptor: Sendable, Hashable, CustomStringConvertible {
    /// Fully-qualified service name, e.g. "creditd.v1.Credits".
    public let service: String
    /// Bare method name, e.g. "GetSubscription".
    public let method: String
    public let role: MethodRole
    public let kind: RPCMethodKind

    /// "Service/Method", as logs, metrics and authorization name a method. Stored: the server
    /// reads it on every call.
    public let fullName: String

    public init(service: String, method: String, role: MethodRole, kind: RPCMethodKind) {
        self.service = service
        self.method = method
        self.role = role
        self.kind = kind
        fullName = "\(service)/\(method)"
    }

    public var description: String { fullName }
}

/// A method descriptor with its message types, so that servers and clients are typed by it.
public struct TypedMethod<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>: Sendable {
    public let descriptor: MethodDescriptor

    public init(service: String, method: String, role: MethodRole, kind: RPCMethodKind) {
        descriptor = MethodDescriptor(service: service, method: method, role: role, kind: kind)
    }

    public var service: String { descriptor.service }
    public var method: String { descriptor.method }
}
