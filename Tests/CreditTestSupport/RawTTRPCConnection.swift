import CreditProto
import CreditWire
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A blocking Unix-socket connection for hand-made ttrpc frames: no client logic at all, so
/// tests can send what a well-behaved client never would.
public final class RawTTRPCConnection {
    public struct Frame: Equatable {
        public var streamID: UInt32
        public var type: UInt8
        public var flags: UInt8
        public var data: [UInt8]

        public init(streamID: UInt32, type: UInt8, flags: UInt8, data: [UInt8]) {
            self.streamID = streamID
            self.type = type
            self.flags = flags
            self.data = data
        }
    }

    public enum Failure: Error {
        case connect(errno: Int32)
        case io(errno: Int32)
        case closedByPeer
        case timedOut
        case unexpected(String)
    }

    public private(set) var fd: Int32

    /// - Parameter receiveTimeout: seconds a read may block before `Failure.timedOut`.
    public init(path: String, receiveTimeout: Double = 10) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure.connect(errno: errno) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: Array(path.utf8).prefix(raw.count - 1))
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            Glibc.close(fd)
            throw Failure.connect(errno: code)
        }
        setReceiveTimeout(receiveTimeout)
    }

    deinit { close() }

    public func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    public func setReceiveTimeout(_ seconds: Double) {
        var value = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &value, socklen_t(MemoryLayout<timeval>.size))
    }

    // MARK: sending

    public func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent < 0 {
                if errno == EINTR { continue }
                throw Failure.io(errno: errno)
            }
            offset += sent
        }
    }

    public static func encodeFrame(id: UInt32, type: UInt8, flags: UInt8 = 0, data: [UInt8], declaredLength: UInt32? = nil) -> [UInt8] {
        let length = declaredLength ?? UInt32(data.count)
        var out: [UInt8] = []
        out.reserveCapacity(10 + data.count)
        for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8((length >> UInt32(shift)) & 0xFF)) }
        for shift in stride(from: 24, through: 0, by: -8) { out.append(UInt8((id >> UInt32(shift)) & 0xFF)) }
        out.append(type)
        out.append(flags)
        out += data
        return out
    }

    public func sendFrame(id: UInt32, type: UInt8, flags: UInt8 = 0, data: [UInt8]) throws {
        try send(Self.encodeFrame(id: id, type: type, flags: flags, data: data))
    }

    public static func requestBytes(
        service: String,
        method: String,
        payload: [UInt8] = [],
        timeoutNano: Int64 = 0,
        metadata: [(String, String)] = []
    ) -> [UInt8] {
        let request = Ttrpc_Request(service: service, method: method, payload: payload, timeoutNano: timeoutNano, metadata: metadata)
        return (try? request.serializedBytes()) ?? []
    }

    public func sendRequest(
        id: UInt32,
        service: String,
        method: String,
        payload: [UInt8] = [],
        timeoutNano: Int64 = 0,
        metadata: [(String, String)] = [],
        flags: UInt8 = 0
    ) throws {
        try sendFrame(id: id, type: 0x01, flags: flags, data: Self.requestBytes(
            service: service, method: method, payload: payload, timeoutNano: timeoutNano, metadata: metadata
        ))
    }

    // MARK: receiving

    private func readExactly(_ count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var offset = 0
        while offset < count {
            let got = out[offset...].withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if got == 0 { throw Failure.closedByPeer }
            if got < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw Failure.timedOut }
                if errno == ECONNRESET { throw Failure.closedByPeer }
                throw Failure.io(errno: errno)
            }
            offset += got
        }
        return out
    }

    public func readFrame() throws -> Frame {
        let header = try readExactly(10)
        let length = header[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let id = header[4..<8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let data = try readExactly(Int(length))
        return Frame(streamID: id, type: header[8], flags: header[9], data: data)
    }

    /// Reads one frame that must be a Response, and decodes it as the call's result.
    public func readResponse() throws -> (streamID: UInt32, result: Result<[UInt8], RPCError>) {
        let frame = try readFrame()
        guard frame.type == 0x02 else { throw Failure.unexpected("expected a Response, got type \(frame.type) on \(frame.streamID)") }
        let response = try Ttrpc_Response(serializedBytes: frame.data)
        return (frame.streamID, TTRPCEnvelope.result(of: response))
    }

    /// Sends a Request and reads its Response (which must be on `id`).
    public func call(
        id: UInt32,
        service: String,
        method: String,
        payload: [UInt8] = [],
        timeoutNano: Int64 = 0,
        metadata: [(String, String)] = []
    ) throws -> Result<[UInt8], RPCError> {
        try sendRequest(id: id, service: service, method: method, payload: payload, timeoutNano: timeoutNano, metadata: metadata)
        let (streamID, result) = try readResponse()
        guard streamID == id else { throw Failure.unexpected("response on \(streamID), expected \(id)") }
        return result
    }

    /// Health/Check("") as a liveness probe on this connection.
    public func healthCheck(id: UInt32) throws -> Grpc_Health_V1_HealthCheckResponse.ServingStatus {
        let result = try call(id: id, service: "grpc.health.v1.Health", method: "Check")
        return try Grpc_Health_V1_HealthCheckResponse(serializedBytes: try result.get()).status
    }

    /// True if the peer closes the connection within `seconds` (reads and drops any frames).
    public func waitForPeerClose(within seconds: Double) -> Bool {
        setReceiveTimeout(seconds)
        defer { setReceiveTimeout(10) }
        do {
            while true { _ = try readFrame() }
        } catch Failure.closedByPeer {
            return true
        } catch {
            return false
        }
    }
}
