import CCreditClient
import Foundation

/// The outcome of one call through the C library, copied out of its
/// fixed-size C buffers.
struct CCallError: Error, Equatable {
    var kind: creditd_error_kind
    var code: Int32
    var sysErrno: Int32
    var message: String
    var reason: String

    /// A failure of the test's own plumbing, before the library was called.
    init(kind: creditd_error_kind, message: String) {
        self.kind = kind
        code = 0
        sysErrno = 0
        self.message = message
        reason = ""
    }

    init(_ err: creditd_error) {
        var copy = err
        kind = copy.kind
        code = copy.code
        sysErrno = copy.sys_errno
        message = withUnsafeBytes(of: &copy.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        reason = withUnsafeBytes(of: &copy.reason) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}

/// One connection of the C library. Not Sendable: the library is
/// thread-compatible, so a connection stays on the thread that uses it.
final class CClient {
    private var handle: OpaquePointer?

    init(socketPath: String, timeoutMilliseconds: Int32 = 5000) throws(CCallError) {
        var err = creditd_error()
        var client: OpaquePointer?
        guard creditd_connect(socketPath, timeoutMilliseconds, &client, &err) == CREDITD_OK.rawValue32 else {
            throw CCallError(err)
        }
        handle = client
    }

    deinit { creditd_close(handle) }

    var isUsable: Bool { creditd_is_usable(handle) != 0 }

    /// The raw pointer for calls of the typed C API.
    var pointer: OpaquePointer? { handle }

    /// A unary call on encoded messages (creditd_call_bytes).
    func callBytes(service: String, method: String, request: [UInt8],
                   timeoutMilliseconds: Int32 = 5000) -> Result<[UInt8], CCallError> {
        var err = creditd_error()
        var response: UnsafeMutablePointer<UInt8>?
        var responseLength = 0
        let rc = request.withUnsafeBufferPointer { buffer in
            creditd_call_bytes(handle, service, method, buffer.baseAddress, buffer.count,
                               &response, &responseLength, timeoutMilliseconds, &err)
        }
        defer { creditd_bytes_free(response) }
        guard rc == CREDITD_OK.rawValue32 else { return .failure(CCallError(err)) }
        guard let response else { return .success([]) }
        return .success(Array(UnsafeBufferPointer(start: response, count: responseLength)))
    }

    /// A call through one of the typed per-method functions of the C API
    /// (creditd_get_subscription, ...). The request arrives encoded; it is
    /// decoded into the protobuf-c struct the function takes, and the
    /// protobuf-c response it returns is encoded again
    /// (protobuf_c_message_pack), so that SwiftProtobuf can read exactly
    /// what the C library decoded.
    /// - Parameter initRequest: the generated *_init function of the
    ///   request type; it supplies the descriptor the function checks.
    func callTyped<CRequest, CResponse>(
        _ function: CTypedFunction<CRequest, CResponse>,
        initRequest: (UnsafeMutablePointer<CRequest>?) -> Void,
        request: [UInt8],
        timeoutMilliseconds: Int32 = 5000
    ) -> Result<[UInt8], CCallError> {
        let scratch = UnsafeMutablePointer<CRequest>.allocate(capacity: 1)
        defer { scratch.deallocate() }
        initRequest(scratch)
        // Every protobuf-c message starts with its ProtobufCMessage base,
        // whose first field is the descriptor.
        guard let descriptor = UnsafeRawPointer(scratch)
            .load(as: UnsafePointer<ProtobufCMessageDescriptor>?.self) else {
            return .failure(CCallError(kind: CREDITD_ERR_INVALID_ARGUMENT, message: "no descriptor"))
        }
        // unpack wants a valid pointer even for an empty message.
        let bytes = request.isEmpty ? [0] : request
        let unpacked = bytes.withUnsafeBufferPointer {
            protobuf_c_message_unpack(descriptor, nil, request.count, $0.baseAddress)
        }
        guard let unpacked else {
            return .failure(CCallError(kind: CREDITD_ERR_INVALID_ARGUMENT, message: "protobuf-c cannot decode the request"))
        }
        defer { protobuf_c_message_free_unpacked(unpacked, nil) }

        var err = creditd_error()
        var response: UnsafeMutablePointer<CResponse>?
        let rc = function(handle, UnsafeRawPointer(unpacked).assumingMemoryBound(to: CRequest.self),
                          &response, timeoutMilliseconds, &err)
        defer { creditd_message_free(response) }
        guard rc == CREDITD_OK.rawValue32 else { return .failure(CCallError(err)) }
        guard let response else {
            return .failure(CCallError(kind: CREDITD_ERR_PROTOCOL, message: "CREDITD_OK without a response"))
        }
        return .success(packedBytes(UnsafeRawPointer(response).assumingMemoryBound(to: ProtobufCMessage.self)))
    }
}

/// The shape of every typed per-method function of the C API.
typealias CTypedFunction<CRequest, CResponse> = (
    OpaquePointer?, UnsafePointer<CRequest>?, UnsafeMutablePointer<UnsafeMutablePointer<CResponse>?>?,
    Int32, UnsafeMutablePointer<creditd_error>?
) -> Int32

extension creditd_error_kind {
    /// The kind as the Int32 the C functions return.
    var rawValue32: Int32 { Int32(bitPattern: rawValue) }
}

/// Encodes a protobuf-c message, so that a response decoded by the C
/// library can be compared with SwiftProtobuf's reading of the same bytes.
func packedBytes(_ message: UnsafePointer<ProtobufCMessage>) -> [UInt8] {
    let size = protobuf_c_message_get_packed_size(message)
    var bytes = [UInt8](repeating: 0, count: size)
    bytes.withUnsafeMutableBufferPointer { buffer in
        _ = protobuf_c_message_pack(message, buffer.baseAddress)
    }
    return bytes
}
