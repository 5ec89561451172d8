#if canImport(Glibc)
import Glibc
#endif
import CreditProto
import CreditWire
import Foundation
import Histogram
import NIOCore
import SwiftProtobuf

/// A blocking Unix stream socket. The load client uses one thread per connection with blocking
/// reads: the least client CPU per call, so that the server's figures are what is measured.
final class UnixSocket {
    let descriptor: Int32

    init(path: String, receiveTimeoutSeconds: Int = 10) throws {
        descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw BenchError("socket: errno \(errno)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else { throw BenchError("socket path too long: \(path)") }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let code = errno
            Glibc.close(descriptor)
            throw BenchError("connect \(path): errno \(code)")
        }
        var timeout = timeval(tv_sec: receiveTimeoutSeconds, tv_usec: 0)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { Glibc.close(descriptor) }

    func writeAll(_ buffer: inout ByteBuffer) throws {
        while buffer.readableBytes > 0 {
            let written = buffer.withUnsafeReadableBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                throw BenchError("write: errno \(errno)")
            }
            buffer.moveReaderIndex(forwardBy: written)
        }
        buffer.clear()
    }

    /// Appends what the socket has (blocking until at least one byte). Returns false at EOF.
    func read(into buffer: inout ByteBuffer) throws -> Bool {
        while true {
            var got = 0
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 64 * 1024) { raw in
                got = Glibc.read(descriptor, raw.baseAddress, raw.count)
                return max(got, 0)
            }
            if got > 0 { return true }
            if got == 0 { return false }
            if errno == EINTR { continue }
            if errno == EAGAIN { throw BenchError("no answer within the receive timeout") }
            throw BenchError("read: errno \(errno)")
        }
    }

    /// One unary call, for setup and probes (not on the measured path).
    func call(streamID: UInt32, service: String, method: String, payload: [UInt8]) throws -> Result<[UInt8], RPCError> {
        var out = ByteBuffer()
        try TTRPCEnvelope.requestFrame(
            streamID: streamID,
            request: Ttrpc_Request(service: service, method: method, payload: payload),
            allocator: ByteBufferAllocator()
        ).encode(into: &out)
        try writeAll(&out)
        var input = ByteBuffer()
        var parser = TTRPCFrameParser()
        while true {
            guard try read(into: &input) else { throw BenchError("connection closed during \(method)") }
            while let inbound = parser.next(from: &input) {
                guard case .frame(let frame) = inbound, frame.type == .response else { continue }
                guard frame.streamID == streamID else { continue }
                return TTRPCEnvelope.result(of: try TTRPCEnvelope.decodeResponse(frame.payload))
            }
        }
    }
}

/// Pre-encoded ttrpc Request messages (the frame data), so that the measured loop only frames
/// and writes them. Connection `c` of `C` uses entries c, c + C, c + 2C, ... so no two
/// connections send the same entry in a pass (cancels need a fresh subscription each).
struct RequestPool: Sendable {
    let name: String
    let requests: [ByteBuffer]

    init<M, R>(_ method: TypedMethod<M, R>, messages: [M]) throws {
        self.name = method.method
        let allocator = ByteBufferAllocator()
        requests = try messages.map { message in
            let request = Ttrpc_Request(service: method.service, method: method.method, payload: try message.serializedBytes())
            return try TTRPCEnvelope.encode(request, allocator: allocator)
        }
    }

    /// Any bytes as request data (the echo server does not read them).
    init(name: String, requests: [ByteBuffer]) {
        self.name = name
        self.requests = requests
    }
}

/// What one connection saw inside the measured window.
struct ConnectionTally {
    var histogram = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
    var completed = 0
    /// Requests sent, measured or not.
    var sent = 0
    var errors = 0
    var responseBytes = 0
    var firstError: String?
    var failure: String?
}

/// One connection of the closed loop: keeps `inFlight` calls outstanding until `measureEnd`,
/// then drains. Runs on its own thread; the tally is read only after that thread is done.
final class ClosedLoopConnection: @unchecked Sendable {
    private let socketPath: String
    private let pool: RequestPool
    private let stride: Int
    private let inFlight: Int
    private let measureStart: UInt64
    private let measureEnd: UInt64
    private var cursor: Int
    private(set) var tally = ConnectionTally()

    init(socketPath: String, pool: RequestPool, index: Int, connections: Int, inFlight: Int,
         measureStart: UInt64, measureEnd: UInt64) {
        self.socketPath = socketPath
        self.pool = pool
        self.stride = connections
        self.inFlight = inFlight
        self.measureStart = measureStart
        self.measureEnd = measureEnd
        self.cursor = index % max(pool.requests.count, 1)
    }

    func run() {
        do {
            try loop()
        } catch {
            tally.failure = "\(error)"
        }
    }

    private func loop() throws {
        let socket = try UnixSocket(path: socketPath)
        var output = ByteBufferAllocator().buffer(capacity: 64 * 1024)
        var input = ByteBufferAllocator().buffer(capacity: 256 * 1024)
        var parser = TTRPCFrameParser()
        // Send instants by stream id; ids increase, and no call outlives 32768 later ones.
        let slots = 1 << 15
        var sentAt = [UInt64](repeating: 0, count: slots)
        var nextStreamID: UInt32 = 1
        var outstanding = 0

        func send(at now: UInt64) {
            let streamID = nextStreamID
            nextStreamID &+= 2
            sentAt[Int(streamID >> 1) & (slots - 1)] = now
            TTRPCFrame(streamID: streamID, type: .request, payload: pool.requests[cursor]).encode(into: &output)
            cursor += stride
            if cursor >= pool.requests.count { cursor %= pool.requests.count }
            outstanding += 1
            tally.sent += 1
        }

        let start = monotonicNanos()
        for _ in 0..<inFlight { send(at: start) }
        try socket.writeAll(&output)
        while outstanding > 0 {
            guard try socket.read(into: &input) else { throw BenchError("server closed the connection") }
            let now = monotonicNanos()
            let measuring = now >= measureStart && now < measureEnd
            while let inbound = parser.next(from: &input) {
                guard case .frame(let frame) = inbound, frame.type == .response else {
                    throw BenchError("unexpected frame from the server: \(inbound)")
                }
                outstanding -= 1
                let data = frame.payload
                // A ttrpc Response lists `status` (field 1, tag 0x0A) first, and only on failure.
                let failed = data.readableBytes > 0 && data.getInteger(at: data.readerIndex, as: UInt8.self) == 0x0A
                if measuring {
                    tally.completed += 1
                    tally.responseBytes += data.readableBytes
                    _ = tally.histogram.record(now &- sentAt[Int(frame.streamID >> 1) & (slots - 1)])
                    if failed { tally.errors += 1 }
                }
                if failed && tally.firstError == nil, let response = try? TTRPCEnvelope.decodeResponse(data) {
                    tally.firstError = "\(RPCError(status: response.status))"
                }
                if now < measureEnd { send(at: now) }
            }
            if output.readableBytes > 0 { try socket.writeAll(&output) }
            if input.readerIndex > 128 * 1024 { input.discardReadBytes() }
        }
    }
}

extension Histogram where Count == UInt64 {
    /// The value at `percentile`, in microseconds (the histograms count nanoseconds); 0 when empty.
    func micros(_ percentile: Double) -> Double {
        totalCount == 0 ? 0 : Double(valueAtPercentile(percentile)) / 1000
    }
}

/// The figures of one measured configuration.
struct PhaseResult: Codable {
    var system: String
    var method: String
    var connections: Int
    var inFlight: Int
    var seconds: Double
    var calls: Int
    var callsPerSecond: Double
    var p50Micros: Double
    var p90Micros: Double
    var p99Micros: Double
    var p999Micros: Double
    var serverCPUMicrosPerCall: Double
    var clientCPUMicrosPerCall: Double
    var othersCPUShare: Double
    var errors: Int
    var meanResponseBytes: Double
    var firstError: String?
    /// Entries of the request pool used from its start (cancels use each subscription once).
    var poolEntriesUsed = 0

    init(system: String, method: String, connections: Int, inFlight: Int, seconds: Double,
         histogram: Histogram<UInt64>, calls: Int, errors: Int, responseBytes: Int,
         usage: CPUWindow.Usage, firstError: String?) {
        self.system = system
        self.method = method
        self.connections = connections
        self.inFlight = inFlight
        self.seconds = seconds
        self.calls = calls
        callsPerSecond = Double(calls) / seconds
        p50Micros = histogram.micros(50)
        p90Micros = histogram.micros(90)
        p99Micros = histogram.micros(99)
        p999Micros = histogram.micros(99.9)
        let divisor = Double(max(calls, 1))
        serverCPUMicrosPerCall = usage.serverSeconds * 1e6 / divisor
        clientCPUMicrosPerCall = usage.clientSeconds * 1e6 / divisor
        othersCPUShare = usage.othersShare
        self.errors = errors
        meanResponseBytes = Double(responseBytes) / divisor
        self.firstError = firstError
    }
}

/// Runs `connections` x `inFlight` closed-loop calls against `socketPath` for `warmup` then
/// `duration` seconds, measuring only the second part.
func runClosedLoop(system: String, socketPath: String, serverPID: Int32, pool: RequestPool,
                   connections: Int, inFlight: Int, warmup: Double, duration: Double) throws -> PhaseResult {
    let measureStart = monotonicNanos() + UInt64(warmup * 1e9)
    let measureEnd = measureStart + UInt64(duration * 1e9)
    let drivers = (0..<connections).map {
        ClosedLoopConnection(socketPath: socketPath, pool: pool, index: $0, connections: connections,
                             inFlight: inFlight, measureStart: measureStart, measureEnd: measureEnd)
    }
    let done = DispatchGroup()
    for driver in drivers {
        done.enter()
        Thread {
            driver.run()
            done.leave()
        }.start()
    }
    sleepUntil(measureStart)
    let window = CPUWindow(serverPID: serverPID)
    sleepUntil(measureEnd)
    let usage = window.finish()
    done.wait()

    var histogram = Histogram<UInt64>(highestTrackableValue: 120_000_000_000, numberOfSignificantValueDigits: .three)
    var calls = 0, errors = 0, bytes = 0
    var firstError: String?
    var poolEntriesUsed = 0
    for driver in drivers {
        poolEntriesUsed = max(poolEntriesUsed, driver.tally.sent * connections)
        if let failure = driver.tally.failure { throw BenchError("\(system) \(pool.name) \(connections)x\(inFlight): \(failure)") }
        histogram.add(driver.tally.histogram)
        calls += driver.tally.completed
        errors += driver.tally.errors
        bytes += driver.tally.responseBytes
        firstError = firstError ?? driver.tally.firstError
    }
    var result = PhaseResult(system: system, method: pool.name, connections: connections, inFlight: inFlight,
                             seconds: duration, histogram: histogram, calls: calls, errors: errors,
                             responseBytes: bytes, usage: usage, firstError: firstError)
    result.poolEntriesUsed = poolEntriesUsed
    return result
}

func sleepUntil(_ instant: UInt64) {
    let now = monotonicNanos()
    if instant > now { usleep(UInt32((instant - now) / 1000)) }
}
