import CreditProto
import SwiftProtobuf

/// A non-OK call result: a status code, a message and the status details, preserved end to end.
///
/// Domain errors carry a stable reason twice (docs/billing-rules.md §10): as the prefix of `message`
/// ("subscription_not_found: no subscription s-1") and as a `creditd.v1.ErrorReason` detail.
public struct RPCError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The `type_url` of the ErrorReason detail.
    public static let errorReasonTypeURL = "type.googleapis.com/creditd.v1.ErrorReason"

    public var code: StatusCode
    public var message: String
    public var details: [Google_Protobuf_Any]

    public init(code: StatusCode, message: String, details: [Google_Protobuf_Any] = []) {
        self.code = code
        self.message = message
        self.details = details
    }

    /// Reads a wire status. Unknown code values read as UNKNOWN.
    public init(status: Google_Rpc_Status) {
        self.init(code: StatusCode(wireValue: status.code), message: status.message, details: status.details)
    }

    /// The wire form of this error.
    public var status: Google_Rpc_Status {
        var status = Google_Rpc_Status()
        status.code = code.rawValue
        status.message = message
        status.details = details
        return status
    }

    /// A domain error: message "<reason>: <text>" plus the ErrorReason detail.
    public static func domain(
        _ code: StatusCode,
        reason: String,
        _ text: String,
        metadata: [String: String] = [:]
    ) -> RPCError {
        var detail = Creditd_V1_ErrorReason()
        detail.reason = reason
        detail.metadata = metadata
        let message = text.isEmpty ? reason : "\(reason): \(text)"
        return RPCError(code: code, message: message, details: [Self.packReason(detail)])
    }

    /// Packs an ErrorReason into an Any with the creditd type URL.
    public static func packReason(_ reason: Creditd_V1_ErrorReason) -> Google_Protobuf_Any {
        var any = Google_Protobuf_Any()
        any.typeURL = errorReasonTypeURL
        // Serializing a proto3 message of strings and a string map cannot fail.
        any.value = (try? reason.serializedData()) ?? .init()
        return any
    }

    /// The first ErrorReason detail, if any decodes.
    public var errorReason: Creditd_V1_ErrorReason? {
        for detail in details where detail.typeURL == Self.errorReasonTypeURL {
            if let reason = try? Creditd_V1_ErrorReason(serializedBytes: [UInt8](detail.value)) {
                return reason
            }
        }
        return nil
    }

    /// The stable reason: from the ErrorReason detail, else from a "<reason>: " message prefix
    /// made of lower-case letters, digits and underscores.
    public var reason: String? {
        if let detail = errorReason, !detail.reason.isEmpty { return detail.reason }
        return Self.reasonPrefix(of: message)
    }

    /// Extracts "<reason>" from "<reason>: text" (or a bare "<reason>"), or nil.
    public static func reasonPrefix(of message: String) -> String? {
        let candidate: Substring
        if let colon = message.firstIndex(of: ":") {
            let rest = message[message.index(after: colon)...]
            guard rest.isEmpty || rest.hasPrefix(" ") else { return nil }
            candidate = message[..<colon]
        } else {
            candidate = message[...]
        }
        guard !candidate.isEmpty,
              candidate.utf8.allSatisfy({ ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F }),
              let first = candidate.utf8.first, first >= 0x61 && first <= 0x7A
        else { return nil }
        return String(candidate)
    }

    public var description: String { "\(code.name): \(message)" }
}

extension RPCError {
    public static func invalidArgument(_ message: String) -> RPCError { RPCError(code: .invalidArgument, message: message) }
    public static func unimplemented(_ message: String) -> RPCError { RPCError(code: .unimplemented, message: message) }
    public static func unavailable(_ message: String) -> RPCError { RPCError(code: .unavailable, message: message) }
    public static func deadlineExceeded(_ message: String) -> RPCError { RPCError(code: .deadlineExceeded, message: message) }
    public static func internalError(_ message: String) -> RPCError { RPCError(code: .internal, message: message) }
    public static func resourceExhausted(_ message: String) -> RPCError { RPCError(code: .resourceExhausted, message: message) }
    public static func permissionDenied(_ message: String) -> RPCError { RPCError(code: .permissionDenied, message: message) }
    public static func failedPrecondition(_ message: String) -> RPCError { RPCError(code: .failedPrecondition, message: message) }
    public static func notFound(_ message: String) -> RPCError { RPCError(code: .notFound, message: message) }
}

/// An error that knows the status it is answered with. Handlers throw such errors; the edge
/// converts them (grpc-swift v2's `RPCErrorConvertible` is the model), so inner modules never
/// build wire statuses themselves.
public protocol RPCErrorConvertible: Error {
    var rpcError: RPCError { get }
}
