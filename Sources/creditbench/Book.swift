#if canImport(Glibc)
import Glibc
#endif
import CreditProto
import CreditWire
import Foundation
import Histogram
import NIOCore
import SwiftProtobuf

// The book section (`--only book`): the whole-book calls and the migration tools at the sizes
// their targets name (BENCHMARKS.md "The book, the feed, import and export"):
//   - ListCredits pages (Q1) at 1M subscriptions / 5M credits;
//   - `creditctl export credits` of those 5M credits: rows/s, and both sides' memory;
//   - the ListEvents long poll (E4): how long after the commit the parked call answers;
//   - WatchEvents (E6) beside the durable write load: does the stream keep up, and does the
//     write rate stay what it is without a watcher;
//   - `creditctl import` of 100,000 subscriptions (O5) into an empty daemon, next to the raw
//     fdatasync group-commit rate of the same run.

struct LatencyFigure: Codable {
    var name: String
    var calls: Int
    var p50Micros: Double
    var p90Micros: Double
    var p99Micros: Double
    var p999Micros: Double
    var meanItems: Double

    init(name: String, histogram: Histogram<UInt64>, items: Int) {
        self.name = name
        calls = Int(histogram.totalCount)
        p50Micros = histogram.micros(50)
        p90Micros = histogram.micros(90)
        p99Micros = histogram.micros(99)
        p999Micros = histogram.micros(99.9)
        meanItems = Double(items) / Double(max(calls, 1))
    }
}

struct BookResult: Codable {
    var subscriptions: Int
    var credits: Int
    var startSeconds: Double
    var rssMiB: Double
    var listCredits: [LatencyFigure] = []
    /// The first ListCredits phase again, while the daemon writes a snapshot (TakeSnapshot).
    var listCreditsDuringSnapshot: LatencyFigure?
    // export credits
    var exportRows = 0
    var exportSeconds = 0.0
    var exportRowsPerSecond = 0.0
    var exportClientPeakRSSMiB = 0.0
    var exportDaemonRSSGrowthMiB = 0.0
    // long poll: receipt of the parked ListEvents answer minus receipt of the write's own answer
    var longPollSamples = 0
    var longPollAfterWriteAckMedianMicros = 0.0
    var longPollAfterWriteAckP90Micros = 0.0
    var longPollFromSendMedianMicros = 0.0
    var writeAckFromSendMedianMicros = 0.0
    var longPollBackgroundWritesPerSecond = 0.0
    // WatchEvents beside the write load
    var writesPerSecondWithoutWatcher = 0.0
    var writesPerSecondWithWatcher = 0.0
    var eventsCommittedPerSecond = 0.0
    var eventsDeliveredPerSecond = 0.0
    var watcherLagAtEnd = 0
    var watcherCatchUpSeconds = 0.0
    var watcherEnded: String?
    // import
    var importLines = 0
    var importSeconds = 0.0
    var importsPerSecond = 0.0
    var importGroupCommitPerSecond = 0.0
}

func runBookSuite(options: Options, creditd: String, work: String) async throws -> (BookResult, [TargetResult]) {
    let subscriptions = options.bookSubscriptions
    let creditctl = URL(fileURLWithPath: creditd).deletingLastPathComponent().appendingPathComponent("creditctl").path
    guard FileManager.default.isExecutableFile(atPath: creditctl) else {
        throw BenchError("no creditctl at \(creditctl): run `swift build -c release --product creditctl`")
    }

    // Import first, on an empty daemon of its own.
    let imported = try runImport(lines: options.importLines, creditd: creditd, creditctl: creditctl, work: work + "/import")

    let state = work + "/book"
    log("book: building \(subscriptions) subscriptions with 5 credits")
    _ = try await StateBuilder.build(directory: state, creditSubscriptions: subscriptions, plainSubscriptions: 0)
    let daemon = try Daemon(binary: creditd, workDirectory: work, stateDirectory: state)
    defer { daemon.stop() }
    let startSeconds = try daemon.waitUntilServing(timeout: max(120, Double(subscriptions) / 2_000))
    log("book: serving after \(fmt(startSeconds)) s, RSS \(fmt(daemon.rssMiB, 0)) MiB")
    var result = BookResult(subscriptions: subscriptions, credits: subscriptions * StateBuilder.creditsPerSubscription,
                            startSeconds: startSeconds, rssMiB: daemon.rssMiB)
    result.importLines = imported.lines
    result.importSeconds = imported.seconds
    result.importsPerSecond = Double(imported.lines) / imported.seconds
    result.importGroupCommitPerSecond = imported.groupCommitPerSecond

    // 1. ListCredits pages, one client walking the listing page after page.
    func pages(_ name: String, _ fill: (inout Creditd_V1_ListCreditsRequest) -> Void) throws -> LatencyFigure {
        var base = Creditd_V1_ListCreditsRequest()
        fill(&base)
        let socket = try UnixSocket(path: daemon.socketPath)
        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        var items = 0
        var token = ""
        var streamID: UInt32 = 1
        let warmupEnd = monotonicNanos() + UInt64(options.warmup * 1e9)
        let end = warmupEnd + UInt64(options.duration * 1e9)
        while true {
            var request = base
            request.pageToken = token
            let payload: [UInt8] = try request.serializedBytes()
            let started = monotonicNanos()
            guard started < end else { break }
            let answer = try socket.call(streamID: streamID, service: MethodTable.Credits.listCredits.service,
                                         method: MethodTable.Credits.listCredits.method, payload: payload)
            let finished = monotonicNanos()
            streamID &+= 2
            guard case .success(let bytes) = answer else { throw BenchError("ListCredits \(name): \(answer)") }
            let page = try Creditd_V1_ListCreditsResponse(serializedBytes: bytes)
            if started >= warmupEnd {
                _ = histogram.record(finished - started)
                items += page.credits.count
            }
            token = page.nextPageToken
        }
        let figure = LatencyFigure(name: name, histogram: histogram, items: items)
        log("book: ListCredits \(name): p50 \(fmt(figure.p50Micros, 0)) us, p99 \(fmt(figure.p99Micros, 0)) us, \(figure.calls) pages")
        return figure
    }
    // A snapshot of the whole book is tens of seconds of encoding and a write of its whole size
    // at 1M, on the same two cores and disk: measure one ListCredits phase while TakeSnapshot
    // runs (reported, not a target; the snapshot thread yields to serving threads).
    let snapshotDone = DispatchSemaphore(value: 0)
    let snapshotSeconds = LockedValue(0.0)
    let snapshotSocket = daemon.socketPath
    Thread {
        let started = monotonicNanos()
        if let socket = try? UnixSocket(path: snapshotSocket, receiveTimeoutSeconds: 900),
           case .success? = try? socket.call(streamID: 1, service: MethodTable.Admin.takeSnapshot.service,
                                             method: MethodTable.Admin.takeSnapshot.method, payload: []) {
            snapshotSeconds.set(Double(monotonicNanos() - started) / 1e9)
        } else {
            snapshotSeconds.set(-1)
        }
        snapshotDone.signal()
    }.start()
    usleep(200_000)
    result.listCreditsDuringSnapshot = try pages("pending page=100 in snapshot") { $0.states = [.pending]; $0.pageSize = 100 }
    snapshotDone.wait()
    log("book: the snapshot beside that phase took \(fmt(snapshotSeconds.get())) s")
    result.listCredits = [
        try pages("state=pending page=100") { $0.states = [.pending]; $0.pageSize = 100 },
        try pages("customer page=100") { $0.customer = "bench-customer"; $0.pageSize = 100 },
        try pages("no filter page=100") { $0.pageSize = 100 },
        try pages("state=pending page=1000") { $0.states = [.pending]; $0.pageSize = 1000 },
        try pages("overdue page=100 (none)") { $0.overdueOnly = true; $0.pageSize = 100 },
    ]

    // 2. creditctl export credits to standard output, read through a pipe as the next program
    // of a shell pipeline would (so the figure is creditd's and creditctl's, not the disk's),
    // with both processes' memory watched.
    let daemonBefore = daemon.rssMiB
    var daemonPeak = daemonBefore
    let exportLog = work + "/export.log"
    _ = FileManager.default.createFile(atPath: exportLog, contents: nil)
    let exporter = Process()
    exporter.executableURL = URL(fileURLWithPath: creditctl)
    exporter.arguments = ["export", "credits", "--socket", daemon.socketPath]
    let output = Pipe()
    exporter.standardOutput = output
    exporter.standardError = FileHandle(forWritingAtPath: exportLog)
    let rows = LockedValue(0)
    let readerDone = DispatchSemaphore(value: 0)
    let readDescriptor = output.fileHandleForReading.fileDescriptor
    // A page of rows (~330 KB) fits the pipe, as it would a shell pipeline's reader that keeps up.
    _ = fcntl(readDescriptor, 1031 /* F_SETPIPE_SZ, which Glibc does not export */, 1 << 20)
    let exportStart = monotonicNanos()
    try exporter.run()
    Thread {
        rows.set(countLines(descriptor: readDescriptor))
        readerDone.signal()
    }.start()
    var clientPeak = 0.0
    while exporter.isRunning {
        clientPeak = max(clientPeak, Double(ProcFS.statusKiB(pid: exporter.processIdentifier, field: "VmHWM")) / 1024)
        daemonPeak = max(daemonPeak, daemon.rssMiB)
        usleep(20_000)
    }
    exporter.waitUntilExit()
    readerDone.wait()
    let exportSeconds = Double(monotonicNanos() - exportStart) / 1e9
    guard exporter.terminationStatus == 0 else {
        throw BenchError("export failed:\n\((try? String(contentsOfFile: exportLog, encoding: .utf8)) ?? "")")
    }
    result.exportRows = rows.get()
    result.exportSeconds = exportSeconds
    result.exportRowsPerSecond = Double(result.exportRows) / exportSeconds
    result.exportClientPeakRSSMiB = clientPeak
    result.exportDaemonRSSGrowthMiB = daemonPeak - daemonBefore
    log("book: export of \(result.exportRows) credits in \(fmt(exportSeconds)) s (\(Int(result.exportRowsPerSecond)) rows/s), "
        + "creditctl peak \(fmt(clientPeak, 0)) MiB, daemon +\(fmt(daemonPeak - daemonBefore, 0)) MiB")
    guard result.exportRows == result.credits else {
        throw BenchError("export wrote \(result.exportRows) rows, expected \(result.credits)")
    }

    // The write load: ChangeSeats on a range of subscriptions, up one seat on the first pass
    // and back down on the second (every call is a change), 4 connections x 16 in flight as
    // in the RPC section. Each phase has a range of its own.
    var nextID = 1
    func writePool(_ count: Int) throws -> RequestPool {
        let range = nextID..<min(nextID + count, subscriptions)
        nextID = range.upperBound
        guard range.count == count else { throw BenchError("book: too few subscriptions for the write load; raise --book-subscriptions") }
        let ids = range.map(StateBuilder.creditSubscriptionID)
        return try RequestPool(MethodTable.Credits.changeSeats, messages: (0..<(2 * ids.count)).map {
            StateBuilder.seatsRequest(id: ids[$0 % ids.count], seats: StateBuilder.builtSeats + ($0 < ids.count ? 1 : 0))
        })
    }
    let poolSize = min(200_000, (subscriptions - 2) / 3)

    // 3. Long poll under write load.
    let probeID = StateBuilder.creditSubscriptionID(0)
    let load = try writePool(poolSize)
    let backgroundRate = LockedValue(0.0)
    let backgroundDone = DispatchSemaphore(value: 0)
    let socketPath = daemon.socketPath, pid = daemon.pid, duration = options.duration
    Thread {
        if let phase = try? runClosedLoop(system: "creditd", socketPath: socketPath, serverPID: pid,
                                          pool: load, connections: 4, inFlight: 16, warmup: 0.5, duration: duration + 1) {
            backgroundRate.set(phase.callsPerSecond)
        }
        backgroundDone.signal()
    }.start()
    usleep(700_000)
    let probe = try longPollProbe(socketPath: daemon.socketPath, subscriptionID: probeID,
                                  until: monotonicNanos() + UInt64(options.duration * 1e9))
    backgroundDone.wait()
    result.longPollSamples = probe.samples
    result.longPollAfterWriteAckMedianMicros = probe.afterAckMedian
    result.longPollAfterWriteAckP90Micros = probe.afterAckP90
    result.longPollFromSendMedianMicros = probe.fromSendMedian
    result.writeAckFromSendMedianMicros = probe.ackFromSendMedian
    result.longPollBackgroundWritesPerSecond = backgroundRate.get()
    log("book: long poll answered \(fmt(probe.afterAckMedian, 0)) us (median) after the write's own answer, "
        + "\(probe.samples) samples, \(Int(result.longPollBackgroundWritesPerSecond)) background writes/s")

    // 4. The write load without, then with, a WatchEvents consumer.
    let without = try runClosedLoop(system: "creditd", socketPath: daemon.socketPath, serverPID: daemon.pid,
                                    pool: try writePool(poolSize), connections: 4, inFlight: 16,
                                    warmup: options.warmup, duration: options.duration)
    result.writesPerSecondWithoutWatcher = without.callsPerSecond
    let watchFrom = try lastSeq(daemon)
    let watcher = try StreamWatcher(socketPath: daemon.socketPath, afterSeq: watchFrom)
    let watcherThread = Thread { watcher.run() }
    watcherThread.start()
    let seqBefore = watchFrom
    let withWatcher = try runClosedLoop(system: "creditd", socketPath: daemon.socketPath, serverPID: daemon.pid,
                                        pool: try writePool(poolSize), connections: 4, inFlight: 16,
                                        warmup: 0, duration: options.warmup + options.duration)
    let seqAfter = try lastSeq(daemon)
    let seenAtEnd = watcher.lastSeq
    let caughtUpStart = monotonicNanos()
    while watcher.lastSeq < seqAfter && watcher.ended == nil && monotonicNanos() - caughtUpStart < 30_000_000_000 {
        usleep(1_000)
    }
    result.watcherCatchUpSeconds = Double(monotonicNanos() - caughtUpStart) / 1e9
    result.writesPerSecondWithWatcher = withWatcher.callsPerSecond
    let window = options.warmup + options.duration
    result.eventsCommittedPerSecond = Double(seqAfter - seqBefore) / window
    result.eventsDeliveredPerSecond = Double(seenAtEnd - seqBefore) / window
    result.watcherLagAtEnd = Int(seqAfter - seenAtEnd)
    result.watcherEnded = watcher.ended
    watcher.close()
    log("book: writes/s \(Int(without.callsPerSecond)) without a watcher, \(Int(withWatcher.callsPerSecond)) with; events "
        + "\(Int(result.eventsCommittedPerSecond))/s committed, \(Int(result.eventsDeliveredPerSecond))/s delivered, "
        + "lag at end \(result.watcherLagAtEnd), caught up in \(fmt(result.watcherCatchUpSeconds, 3)) s")

    return (result, bookTargets(result))
}

private func bookTargets(_ r: BookResult) -> [TargetResult] {
    var targets: [TargetResult] = []
    let exact = r.subscriptions == 1_000_000
    if let pending = r.listCredits.first {
        targets.append(TargetResult(target: "ListCredits state filter, page 100, at \(r.subscriptions) subscriptions: p99 <= 2 ms",
                                    measured: "\(fmt(pending.p99Micros, 0)) us", ratio: pending.p99Micros / 2000, threshold: 1,
                                    holds: pending.p99Micros <= 2000, extrapolated: !exact))
    }
    targets.append(TargetResult(target: "ListEvents long poll answers within 1 ms of the commit (median, under write load)",
                                measured: "\(fmt(r.longPollAfterWriteAckMedianMicros, 0)) us after the write's own answer",
                                ratio: r.longPollAfterWriteAckMedianMicros / 1000, threshold: 1,
                                holds: r.longPollAfterWriteAckMedianMicros <= 1000, extrapolated: false))
    let keepsUp = r.watcherEnded == nil && r.eventsDeliveredPerSecond >= 0.95 * r.eventsCommittedPerSecond
    targets.append(TargetResult(target: "WatchEvents keeps up with the durable write rate",
                                measured: "\(Int(r.eventsDeliveredPerSecond)) of \(Int(r.eventsCommittedPerSecond)) events/s, "
                                    + "lag at end \(r.watcherLagAtEnd)" + (r.watcherEnded.map { ", ended: \($0)" } ?? ""),
                                ratio: r.eventsDeliveredPerSecond / max(r.eventsCommittedPerSecond, 1), threshold: 0.95,
                                holds: keepsUp, extrapolated: false))
    let unaffected = r.writesPerSecondWithWatcher / max(r.writesPerSecondWithoutWatcher, 1)
    targets.append(TargetResult(target: "write rate with a watcher >= 0.8x without",
                                measured: "\(Int(r.writesPerSecondWithWatcher)) vs \(Int(r.writesPerSecondWithoutWatcher)) writes/s",
                                ratio: unaffected, threshold: 0.8, holds: unaffected >= 0.8, extrapolated: false))
    targets.append(TargetResult(target: "creditctl import of \(r.importLines) subscriptions >= 5,000/s",
                                measured: "\(Int(r.importsPerSecond))/s (group-commit limit \(Int(r.importGroupCommitPerSecond))/s)",
                                ratio: r.importsPerSecond / 5000, threshold: 1, holds: r.importsPerSecond >= 5000,
                                extrapolated: false))
    targets.append(TargetResult(target: "creditctl export credits of \(r.exportRows) rows >= 200,000 rows/s",
                                measured: "\(Int(r.exportRowsPerSecond)) rows/s; creditctl peak \(fmt(r.exportClientPeakRSSMiB, 0)) MiB, "
                                    + "daemon +\(fmt(r.exportDaemonRSSGrowthMiB, 0)) MiB",
                                ratio: r.exportRowsPerSecond / 200_000, threshold: 1, holds: r.exportRowsPerSecond >= 200_000,
                                extrapolated: !exact))
    return targets
}

// MARK: - Pieces

/// A value one thread sets and another reads.
private final class LockedValue<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value
    init(_ value: Value) { self.value = value }
    func set(_ newValue: Value) { lock.withLock { value = newValue } }
    func get() -> Value { lock.withLock { value } }
}

private func lastSeq(_ daemon: Daemon) throws -> UInt64 {
    var request = Creditd_V1_ListEventsRequest()
    request.limit = 1
    request.afterSeq = 0
    let response = try daemon.call(MethodTable.Credits.listEvents, request)
    return UInt64(response.lastSeq)
}

/// Lines read from `descriptor` until end of file.
private func countLines(descriptor: Int32) -> Int {
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    var lines = 0
    while true {
        let got = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
        if got < 0, errno == EINTR { continue }
        if got <= 0 { break }
        for index in 0..<got where buffer[index] == 0x0A { lines += 1 }
    }
    return lines
}

/// One subscription's long poll against its own writes: the poller parks a ListEvents filtered to
/// the probe subscription, the writer changes that subscription's seats, and both answers are
/// timed on one clock. Both leave the daemon after the same durable batch, so the gap between
/// their receipts is how much later than the write itself the waiting reader hears of it.
private func longPollProbe(socketPath: String, subscriptionID: String, until: UInt64)
    throws -> (samples: Int, afterAckMedian: Double, afterAckP90: Double, fromSendMedian: Double, ackFromSendMedian: Double) {
    let poller = try UnixSocket(path: socketPath, receiveTimeoutSeconds: 15)
    let writer = try UnixSocket(path: socketPath, receiveTimeoutSeconds: 15)
    var afterAck: [Double] = [], fromSend: [Double] = [], ackFromSend: [Double] = []
    var streamID: UInt32 = 1
    var seats = StateBuilder.builtSeats
    var after = try {
        var request = Creditd_V1_ListEventsRequest()
        request.limit = 1
        let bytes = try poller.call(streamID: 1, service: MethodTable.Credits.listEvents.service,
                                    method: MethodTable.Credits.listEvents.method, payload: try request.serializedBytes()).get()
        return try Creditd_V1_ListEventsResponse(serializedBytes: bytes).lastSeq
    }()
    while monotonicNanos() < until {
        streamID &+= 2
        var poll = Creditd_V1_ListEventsRequest()
        poll.afterSeq = Int64(after)
        poll.limit = 1000
        poll.waitSeconds = 10
        poll.subscriptionID = subscriptionID
        var out = ByteBuffer()
        try TTRPCEnvelope.requestFrame(streamID: streamID, request: Ttrpc_Request(
            service: MethodTable.Credits.listEvents.service, method: MethodTable.Credits.listEvents.method,
            payload: try poll.serializedBytes()), allocator: ByteBufferAllocator()).encode(into: &out)
        try poller.writeAll(&out)
        // Let the poll park before the write it waits for.
        usleep(3_000)
        seats = seats == StateBuilder.builtSeats ? seats + 1 : StateBuilder.builtSeats
        let sent = monotonicNanos()
        let written = try writer.call(streamID: streamID, service: MethodTable.Credits.changeSeats.service,
                                      method: MethodTable.Credits.changeSeats.method,
                                      payload: try StateBuilder.seatsRequest(id: subscriptionID, seats: seats).serializedBytes())
        let acked = monotonicNanos()
        guard case .success = written else { throw BenchError("probe ChangeSeats: \(written)") }
        var input = ByteBuffer()
        var parser = TTRPCFrameParser()
        var answer: Creditd_V1_ListEventsResponse?
        var answeredAt: UInt64 = 0
        while answer == nil {
            guard try poller.read(into: &input) else { throw BenchError("poller connection closed") }
            answeredAt = monotonicNanos()
            while let inbound = parser.next(from: &input) {
                guard case .frame(let frame) = inbound, frame.type == .response, frame.streamID == streamID else { continue }
                let bytes = try TTRPCEnvelope.result(of: try TTRPCEnvelope.decodeResponse(frame.payload)).get()
                answer = try Creditd_V1_ListEventsResponse(serializedBytes: bytes)
            }
        }
        guard let answer, !answer.events.isEmpty else { throw BenchError("the long poll answered without the probe's events") }
        after = answer.nextAfterSeq
        afterAck.append((Double(answeredAt) - Double(acked)) / 1000)
        fromSend.append(Double(answeredAt - sent) / 1000)
        ackFromSend.append(Double(acked - sent) / 1000)
    }
    func percentile(_ values: [Double], _ p: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }
    return (afterAck.count, percentile(afterAck, 0.5), percentile(afterAck, 0.9),
            percentile(fromSend, 0.5), percentile(ackFromSend, 0.5))
}

/// A WatchEvents consumer reading as fast as it can; it reads each event's `seq` (field 1, the
/// first field the daemon writes) without decoding the rest.
private final class StreamWatcher: @unchecked Sendable {
    private let socket: UnixSocket
    private let lock = NSLock()
    private var seen: UInt64
    private var endedWith: String?

    init(socketPath: String, afterSeq: UInt64) throws {
        socket = try UnixSocket(path: socketPath, receiveTimeoutSeconds: 60)
        seen = afterSeq
        var request = Creditd_V1_WatchEventsRequest()
        request.afterSeq = Int64(afterSeq)
        let envelope = Ttrpc_Request(service: MethodTable.Credits.watchEvents.service,
                                     method: MethodTable.Credits.watchEvents.method, payload: try request.serializedBytes())
        var out = ByteBuffer()
        TTRPCFrame(streamID: 1, type: .request, flags: .remoteClosed,
                   payload: try TTRPCEnvelope.encode(envelope, allocator: ByteBufferAllocator())).encode(into: &out)
        try socket.writeAll(&out)
    }

    var lastSeq: UInt64 { lock.withLock { seen } }
    var ended: String? { lock.withLock { endedWith } }

    func close() { shutdown(socket.descriptor, Int32(SHUT_RDWR)) }

    func run() {
        var input = ByteBufferAllocator().buffer(capacity: 1 << 20)
        var parser = TTRPCFrameParser()
        do {
            while try socket.read(into: &input) {
                var newest: UInt64 = 0
                while let inbound = parser.next(from: &input) {
                    guard case .frame(let frame) = inbound else { continue }
                    if frame.type == .response {
                        let status = (try? TTRPCEnvelope.decodeResponse(frame.payload)).map { "\(TTRPCEnvelope.result(of: $0))" }
                        lock.withLock { endedWith = status ?? "unreadable response" }
                        return
                    }
                    if let seq = Self.firstFieldVarint(frame.payload) { newest = seq }
                }
                if newest > 0 { lock.withLock { seen = newest } }
                if input.readerIndex > 512 * 1024 { input.discardReadBytes() }
            }
        } catch {
            // Closed by `close()` at the end of the measurement, or a receive timeout.
        }
    }

    /// Field 1 as a varint when it comes first (tag byte 0x08).
    private static func firstFieldVarint(_ buffer: ByteBuffer) -> UInt64? {
        var copy = buffer
        guard copy.readInteger(as: UInt8.self) == 0x08 else { return nil }
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while let byte = copy.readInteger(as: UInt8.self), shift < 64 {
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
        }
        return nil
    }
}

/// `creditctl import` of `lines` generated subscriptions into an empty daemon, and the raw
/// group-commit rate of records of the same size at the same number in flight (64, the
/// command's default).
private func runImport(lines: Int, creditd: String, creditctl: String, work: String) throws
    -> (lines: Int, seconds: Double, groupCommitPerSecond: Double) {
    try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
    let file = work + "/book.csv"
    var text = "subscription_id,customer,plan,seats,unit_price_minor,currency,interval,time_zone,refund_policy,start_date,current_period_charged_minor\n"
    text.reserveCapacity(lines * 80)
    let zones = ["UTC", "Europe/Oslo", "America/New_York", "Asia/Tokyo"]
    for index in 0..<lines {
        let day = 1 + index % 28
        text += "m\(index),customer-\(index % 5000),team,\(1 + index % 40),\(500 + index % 7 * 100),USD,"
            + (index % 10 == 0 ? "annual" : "monthly") + ",\(zones[index % zones.count]),anytime,2024-0\(1 + index % 9)-\(day < 10 ? "0" : "")\(day),\n"
    }
    try text.write(toFile: file, atomically: false, encoding: .utf8)
    let daemon = try Daemon(binary: creditd, workDirectory: work, stateDirectory: work + "/state",
                            extraArguments: ["--now", "2025-04-10T12:00:00Z"])
    defer { daemon.stop() }
    try daemon.waitUntilServing(timeout: 60)
    let started = monotonicNanos()
    let importer = try ChildProcess(executable: creditctl, arguments: ["import", file, "--socket", daemon.socketPath],
                                    logPath: work + "/import.log")
    importer.process.waitUntilExit()
    let seconds = Double(monotonicNanos() - started) / 1e9
    guard importer.process.terminationStatus == 0 else { throw BenchError("import failed:\n\(importer.log)") }
    log("book: import of \(lines) subscriptions in \(fmt(seconds)) s (\(Int(Double(lines) / seconds))/s)")
    // A journal record of one ImportSubscription, as the daemon frames it: header + entry.
    var entry = Creditd_Journal_V1_JournalEntry()
    entry.atUnixNanos = StateBuilder.instantNanos
    entry.callerUid = getuid()
    var sample = Creditd_V1_ImportSubscriptionRequest()
    sample.subscriptionID = "m\(lines - 1)"
    sample.customer = "customer-4999"
    sample.plan = "team"
    sample.seats = 40
    sample.unitPriceMinor = 1100
    sample.currency = "USD"
    sample.interval = .monthly
    sample.timeZone = "America/New_York"
    sample.startDate = "2024-09-28"
    entry.importSubscription = sample
    let recordBytes = 16 + (try entry.serializedBytes() as [UInt8]).count
    let limit = try runGroupCommitLimit(directory: work, recordBytes: recordBytes, inFlight: 64, warmup: 0.5, duration: 2)
    log("book: fdatasync group commit of \(recordBytes)-byte records at 64 in flight: \(Int(limit.callsPerSecond))/s")
    return (lines, seconds, limit.callsPerSecond)
}
