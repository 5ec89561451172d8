import CreditClient
import CreditProto
import CreditWire
import Foundation
import SwiftProtobuf
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// containerd's Go ttrpc client (Debian's golang-github-containerd-ttrpc-dev, v1.1.1, gogo
/// codec) against the real daemon; results must match what the Swift client gets.
final class GoInteropTests: XCTestCase {
    nonisolated(unsafe) static var daemon: DaemonProcess?
    nonisolated(unsafe) static var goClient: String?
    nonisolated(unsafe) static var buildDirectory: URL?
    nonisolated(unsafe) static var skipReason: String?
    nonisolated(unsafe) static var setupFailure: String?

    struct SetupFailure: Error, CustomStringConvertible {
        var description: String
    }

    struct GoResult: Decodable, Equatable {
        var code: Int
        var message: String
        var payload: String
        var details: Int
    }

    override class func setUp() {
        super.setUp()
        guard let go = OpsTools.find("go") else {
            skipReason = "go is not installed (apt-get install golang-go golang-github-containerd-ttrpc-dev)"
            return
        }
        do {
            let directory = try DaemonProcess.makeTemporaryDirectory()
            buildDirectory = directory
            chmod(directory.path, 0o755)
            let output = directory.appendingPathComponent("ttrpc-interop").path
            let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("Interop/go/ttrpc-interop")
            var environment = ["GOPATH": "/usr/share/gocode", "GO111MODULE": "off", "GOFLAGS": "", "GOPROXY": "off"]
            let inherited = ProcessInfo.processInfo.environment
            if inherited["HOME"] == nil || inherited["GOCACHE"] == nil && inherited["HOME"] == "/" {
                environment["GOCACHE"] = directory.appendingPathComponent("gocache").path
            }
            let build = try OpsProcess.run([go, "build", "-o", output, "."], environment: environment,
                                           currentDirectory: source.path, timeout: 300)
            guard build.status == 0 else {
                setupFailure = "go build of the interop client failed:\n\(build.stdout)\(build.stderr)"
                return
            }
            goClient = output
            daemon = try DaemonProcess.start(arguments: ["--clock", "manual", "--now", "2025-04-01T00:00:00Z"])
        } catch {
            setupFailure = "interop setup failed: \(error)"
        }
    }

    override class func tearDown() {
        if let daemon { XCTAssertEqual(try? daemon.stop(), 0) }
        daemon = nil
        if let buildDirectory { try? FileManager.default.removeItem(at: buildDirectory) }
        super.tearDown()
    }

    override func setUpWithError() throws {
        if let reason = Self.skipReason { throw XCTSkip(reason) }
        if let failure = Self.setupFailure { throw SetupFailure(description: failure) }
    }

    var socket: String { Self.daemon!.socketPath }

    /// Runs the Go client; `prefix` (e.g. setpriv) wraps the command.
    func go(_ service: String, _ method: String, payload: [UInt8] = [], extra: [String] = [], socketPath: String? = nil, prefix: [String] = []) throws -> GoResult {
        let command = prefix + [Self.goClient!, "-socket", socketPath ?? socket, "-service", service, "-method", method,
                                "-payload", hex(payload)] + extra
        let result = try OpsProcess.run(command)
        XCTAssertEqual(result.status, 0, result.stderr)
        return try JSONDecoder().decode(GoResult.self, from: Data(result.stdout.utf8))
    }

    func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    /// The Swift client's outcome in the Go client's shape.
    func swift(_ service: String, _ method: String, payload: [UInt8] = [], rawTimeoutNano: Int64? = nil,
               metadata: [(String, String)] = []) async throws -> GoResult {
        let client = try await CreditClient.connect(socketPath: socket)
        defer { Task { await client.close() } }
        do {
            let bytes = try await client.callRaw(service: service, method: method, payload: payload, timeout: .seconds(5),
                                                 metadata: metadata, rawTimeoutNano: rawTimeoutNano)
            return GoResult(code: 0, message: "", payload: hex(bytes), details: 0)
        } catch let error as RPCError {
            return GoResult(code: Int(error.code.rawValue), message: error.message, payload: "", details: error.details.count)
        }
    }

    func testHealthCheck() async throws {
        let fromGo = try go("grpc.health.v1.Health", "Check")
        XCTAssertEqual(fromGo, GoResult(code: 0, message: "", payload: "0801", details: 0))
        let fromSwift = try await swift("grpc.health.v1.Health", "Check")
        XCTAssertEqual(fromGo, fromSwift)
    }

    func testGetClock() async throws {
        let fromGo = try go("creditd.v1.Admin", "GetClock")
        XCTAssertEqual(fromGo.code, 0)
        let clock = try Creditd_V1_GetClockResponse(serializedBytes: hexBytes(fromGo.payload))
        XCTAssertEqual(clock.now, "2025-04-01T00:00:00Z")
        XCTAssertTrue(clock.manual)
        let fromSwift = try await swift("creditd.v1.Admin", "GetClock")
        XCTAssertEqual(fromGo, fromSwift)
    }

    func testUnknownMethodAndService() async throws {
        let method = try go("creditd.v1.Admin", "Nope")
        XCTAssertEqual(method, GoResult(code: 12, message: "method Nope", payload: "", details: 0))
        let methodFromSwift = try await swift("creditd.v1.Admin", "Nope")
        XCTAssertEqual(method, methodFromSwift)
        let service = try go("creditd.v9.Nope", "Check")
        XCTAssertEqual(service, GoResult(code: 12, message: "service creditd.v9.Nope", payload: "", details: 0))
    }

    func testFiveMiBPayloadIsResourceExhausted() throws {
        let size = 5 << 20
        let fromGo = try go("grpc.health.v1.Health", "Check", extra: ["-payload-size", "\(size)", "-timeout", "0"])
        XCTAssertEqual(fromGo.code, 8)
        // The same frame by hand: the Swift client refuses to send it at all.
        let raw = try RawTTRPCConnection(path: socket)
        let result = try raw.call(id: 1, service: "grpc.health.v1.Health", method: "Check", payload: [UInt8](repeating: 0, count: size))
        guard case .failure(let error) = result else { return XCTFail("expected RESOURCE_EXHAUSTED") }
        XCTAssertEqual(fromGo, GoResult(code: Int(error.code.rawValue), message: error.message, payload: "", details: 0))
        XCTAssertEqual(try raw.healthCheck(id: 3), .serving)
    }

    func testGarbagePayloadIsInvalidArgument() async throws {
        let garbage: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF]
        let fromGo = try go("grpc.health.v1.Health", "Check", payload: garbage)
        XCTAssertEqual(fromGo.code, 3)
        let fromSwift = try await swift("grpc.health.v1.Health", "Check", payload: garbage)
        XCTAssertEqual(fromGo, fromSwift)
    }

    func testExpiredTimeoutIsDeadlineExceeded() async throws {
        let fromGo = try go("creditd.v1.Admin", "GetClock", extra: ["-timeout-nano", "-1"])
        XCTAssertEqual(fromGo.code, 4)
        let fromSwift = try await swift("creditd.v1.Admin", "GetClock", rawTimeoutNano: -1)
        XCTAssertEqual(fromGo, fromSwift)
    }

    func testMetadataFromGo() async throws {
        let fromGo = try go("creditd.test.Debug", "Metadata", extra: ["-md", "Trace-ID=t1", "-md", "trace-id=t2"])
        XCTAssertEqual(fromGo.code, 0)
        let fromSwift = try await swift("creditd.test.Debug", "Metadata", metadata: [("Trace-ID", "t1"), ("trace-id", "t2")])
        XCTAssertEqual(fromGo, fromSwift)
        let text = try Google_Protobuf_StringValue(serializedBytes: hexBytes(fromGo.payload)).value
        XCTAssertEqual(text, "trace-id=t1\ntrace-id=t2")
    }

    func testDomainErrorDetailsSurviveGo() async throws {
        var advance = Creditd_V1_AdvanceClockRequest()
        advance.toUnixNanos = 1  // backwards
        let payload: [UInt8] = try advance.serializedBytes()
        let fromGo = try go("creditd.v1.Admin", "AdvanceClock", payload: payload)
        XCTAssertEqual(fromGo.code, 3)
        XCTAssertEqual(fromGo.details, 1)
        XCTAssertTrue(fromGo.message.hasPrefix("invalid_request: "), fromGo.message)
        let fromSwift = try await swift("creditd.v1.Admin", "AdvanceClock", payload: payload)
        XCTAssertEqual(fromGo, fromSwift)
    }

    /// Peer credentials: a non-root peer may read but not write; without permission on the
    /// socket it cannot connect at all (EACCES).
    func testAuthorizationForUnprivilegedPeer() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to act as another user") }
        guard let setpriv = OpsTools.find("setpriv") else { throw XCTSkip("needs setpriv (util-linux)") }
        let daemon = try DaemonProcess.start(arguments: ["--clock", "manual", "--writer-gid", "4242"])
        defer { XCTAssertEqual(try? daemon.stop(), 0) }
        chmod(daemon.directory.path, 0o711)
        let asNobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--"]

        let denied = try go("grpc.health.v1.Health", "Check", socketPath: daemon.socketPath, prefix: asNobody)
        XCTAssertEqual(denied.code, -1)
        XCTAssertTrue(denied.message.contains("permission denied"), denied.message)

        chmod(daemon.socketPath, 0o666)
        let read = try go("creditd.v1.Admin", "GetClock", socketPath: daemon.socketPath, prefix: asNobody)
        XCTAssertEqual(read.code, 0)
        var advance = Creditd_V1_AdvanceClockRequest()
        advance.byNanos = 1
        let write = try go("creditd.v1.Admin", "AdvanceClock", payload: try advance.serializedBytes(),
                           socketPath: daemon.socketPath, prefix: asNobody)
        XCTAssertEqual(write.code, 7)
        let log = daemon.stderr
        XCTAssertTrue(log.contains("permission denied"), log)
        XCTAssertTrue(log.contains("uid=65534"), log)
        XCTAssertTrue(log.contains("method=creditd.v1.Admin/AdvanceClock"), log)

        // A writer group counts as the primary gid and as a supplementary group (SO_PEERGROUPS).
        let asPrimaryWriter = [setpriv, "--reuid=65534", "--regid=4242", "--clear-groups", "--"]
        XCTAssertEqual(try go("creditd.v1.Admin", "AdvanceClock", payload: try advance.serializedBytes(),
                              socketPath: daemon.socketPath, prefix: asPrimaryWriter).code, 0)
        let asSupplementaryWriter = [setpriv, "--reuid=65534", "--regid=65534", "--groups=100,4242", "--"]
        XCTAssertEqual(try go("creditd.v1.Admin", "AdvanceClock", payload: try advance.serializedBytes(),
                              socketPath: daemon.socketPath, prefix: asSupplementaryWriter).code, 0)
    }

    func hexBytes(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            out.append(UInt8(text[index..<next], radix: 16)!)
            index = next
        }
        return out
    }
}
