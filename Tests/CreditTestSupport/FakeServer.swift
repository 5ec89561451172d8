import CreditProto
import Foundation
import SwiftProtobuf

#if canImport(Glibc)
import Glibc
#endif

/// A one-connection ttrpc server on a real Unix socket, for answers the real daemon cannot be
/// made to give (the C client's and creditctl's handling of them). Its script runs on
/// a dedicated thread because it uses blocking socket calls, which must not
/// occupy the test's own thread while the C library waits for an answer.
public final class FakeServer: Sendable {
    public let path: String
    private let directory: String
    private let listenFD: Int32
    private let finished = DispatchSemaphore(value: 0)

    public init(script: @escaping @Sendable (ServerConnection) -> Void) throws {
        directory = try TemporaryDirectory.makePath("cclient")
        path = directory + "/s.sock"
        listenFD = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard listenFD >= 0 else { throw POSIXError(.init(rawValue: errno) ?? .EIO) }
        guard UnixSocketAddress(path).bind(listenFD) == 0, listen(listenFD, 4) == 0 else {
            close(listenFD)
            throw POSIXError(.init(rawValue: errno) ?? .EIO)
        }
        let fd = listenFD
        let finished = self.finished
        let thread = Thread {
            let connection = accept(fd, nil, nil)
            if connection >= 0 {
                script(ServerConnection(fd: connection))
                close(connection)
            }
            finished.signal()
        }
        thread.start()
    }

    /// Waits for the script to end (close the client first), then cleans up.
    public func join() {
        finished.wait()
        close(listenFD)
        TemporaryDirectory.remove(atPath: directory)
    }
}

/// What the fake server saw of one request.
public struct ReceivedRequest: Sendable {
    public var streamID: UInt32
    public var flags: UInt8
    public var envelope: Ttrpc_Request
}

/// The server's side of the connection; all calls block.
public struct ServerConnection: Sendable {
    public let fd: Int32

    public func readExactly(_ count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var have = 0
        while have < count {
            let n = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + have, count - have, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            have += n
        }
        return bytes
    }

    /// The next Request frame, or nil at EOF or on anything else.
    public func readRequest() -> ReceivedRequest? {
        guard let header = readExactly(10), header[8] == 0x01 else { return nil }
        let length = Int(bigEndian32(header, 0))
        guard length <= 4 << 20, let body = length == 0 ? [] : readExactly(length),
              let envelope = try? Ttrpc_Request(serializedBytes: body) else { return nil }
        return ReceivedRequest(streamID: bigEndian32(header, 4), flags: header[9], envelope: envelope)
    }

    public func write(_ bytes: [UInt8]) {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return } // the client left; the test checks its side
            sent += n
        }
    }

    public static func header(length: UInt32, streamID: UInt32, type: UInt8, flags: UInt8 = 0) -> [UInt8] {
        [UInt8(length >> 24), UInt8((length >> 16) & 0xFF), UInt8((length >> 8) & 0xFF), UInt8(length & 0xFF),
         UInt8(streamID >> 24), UInt8((streamID >> 16) & 0xFF), UInt8((streamID >> 8) & 0xFF), UInt8(streamID & 0xFF),
         type, flags]
    }

    public func sendFrame(streamID: UInt32, type: UInt8, body: [UInt8]) {
        write(Self.header(length: UInt32(body.count), streamID: streamID, type: type) + body)
    }

    public func sendResponse(streamID: UInt32, _ response: Ttrpc_Response) {
        sendFrame(streamID: streamID, type: 0x02, body: (try? response.serializedBytes()) ?? [])
    }

    public func sendPayload(streamID: UInt32, _ message: some SwiftProtobuf.Message) {
        var response = Ttrpc_Response()
        response.payload = (try? message.serializedData()) ?? Data()
        sendResponse(streamID: streamID, response)
    }

    /// Keeps the connection open until the client closes it.
    public func waitForClose() {
        var sink = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = sink.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
        }
    }

    private func bigEndian32(_ bytes: [UInt8], _ at: Int) -> UInt32 {
        UInt32(bytes[at]) << 24 | UInt32(bytes[at + 1]) << 16 | UInt32(bytes[at + 2]) << 8 | UInt32(bytes[at + 3])
    }
}

/// Requests the server saw, handed from its thread to the test.
public final class RequestLog: @unchecked Sendable {
    // A lock rather than an actor: the server thread is synchronous.
    private let lock = NSLock()
    private var entries: [ReceivedRequest] = []

    public init() {}

    public func append(_ request: ReceivedRequest) { lock.withLock { entries.append(request) } }
    public var requests: [ReceivedRequest] { lock.withLock { entries } }
}
