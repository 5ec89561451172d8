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
}

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
