import CreditProto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore
import SwiftProtobuf

/// Encoding and decoding of the ttrpc envelope messages (docs/wire-protocol.md §3).
///
/// SwiftProtobuf cannot read a `ByteBuffer`, so frame data is copied once into `[UInt8]`.
public enum TTRPCEnvelope {
    /// Decodes a Request frame's data. Zero bytes decode as an empty Request.
    public static func decodeRequest(_ data: ByteBuffer) throws -> Ttrpc_Request {
        try decodeRequest(bytes: Array(data.readableBytesView))
    }

    public static func decodeRequest(bytes: [UInt8]) throws -> Ttrpc_Request {
        try Ttrpc_Request(serializedBytes: bytes)
    }

    /// Decodes a Response frame's data. Zero bytes decode as a successful empty Response.
    public static func decodeResponse(_ data: ByteBuffer) throws -> Ttrpc_Response {
        try Ttrpc_Response(serializedBytes: Array(data.readableBytesView))
    }

    /// A success Response: `status` is omitted entirely, and an empty payload is absent.
    public static func successResponse(payload: [UInt8]) -> Ttrpc_Response {
        var response = Ttrpc_Response()
        response.payload = Data(payload)
        return response
    }

    /// An error Response: `status` present with the error's non-zero code, empty payload.
    public static func errorResponse(_ error: RPCError) -> Ttrpc_Response {
        var response = Ttrpc_Response()
        response.status = error.status
        return response
    }

    /// Reads a Response as the call's result: a missing status or code 0 is success.
    public static func result(of response: Ttrpc_Response) -> Result<[UInt8], RPCError> {
        if response.hasStatus, response.status.code != 0 {
            return .failure(RPCError(status: response.status))
        }
        return .success(Array(response.payload))
    }

    /// Serializes any message into a new buffer.
    public static func encode<M: SwiftProtobuf.Message>(_ message: M, allocator: ByteBufferAllocator) throws -> ByteBuffer {
        let bytes: [UInt8] = try message.serializedBytes()
        var buffer = allocator.buffer(capacity: bytes.count)
        buffer.writeBytes(bytes)
        return buffer
    }

    /// A Request frame for `request` on `streamID` (flags 0: unary).
    public static func requestFrame(
        streamID: UInt32,
        request: Ttrpc_Request,
        flags: TTRPCFrameFlags = [],
        allocator: ByteBufferAllocator
    ) throws -> TTRPCFrame {
        TTRPCFrame(streamID: streamID, type: .request, flags: flags, payload: try encode(request, allocator: allocator))
    }

    /// A Response frame for `response` on `streamID`.
    public static func responseFrame(
        streamID: UInt32,
        response: Ttrpc_Response,
        allocator: ByteBufferAllocator
    ) throws -> TTRPCFrame {
        TTRPCFrame(streamID: streamID, type: .response, payload: try encode(response, allocator: allocator))
    }
}

extension Ttrpc_Request {
    /// Convenience initializer for building envelopes.
    public init(
        service: String,
        method: String,
        payload: [UInt8] = [],
        timeoutNano: Int64 = 0,
        metadata: [(String, String)] = []
    ) {
        self.init()
        self.service = service
        self.method = method
        self.payload = Data(payload)
        self.timeoutNano = timeoutNano
        self.metadata = metadata.map { key, value in
            var entry = Ttrpc_KeyValue()
            entry.key = key
            entry.value = value
            return entry
        }
    }
}

extension RequestEnvelope {
    /// The same envelope as SwiftProtobuf's message (tests and the differential fuzzer).
    public init(_ request: Ttrpc_Request) {
        self.init()
        service = request.service
        method = request.method
        payload = [UInt8](request.payload)
        timeoutNano = request.timeoutNano
        metadata = request.metadata.prefix(Self.maxMetadataEntries).map { (key: $0.key, value: $0.value) }
        metadataCount = request.metadata.count
    }
}
