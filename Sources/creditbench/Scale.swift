import CreditProto
import Foundation

/// Memory, snapshot and recovery of the real daemon at one state size.
struct ScaleResult: Codable {
    var subscriptions: Int
    var credits: Int
    /// Records in the generated journal (a create and 5 seat decreases per subscription).
    var journalRecords: Int
    var buildSeconds: Double
    /// Start to SERVING, replaying the whole generated journal (no snapshot yet).
    var journalReplaySeconds: Double
    var rssAfterReplayMiB: Double
    /// The first TakeSnapshot after the replay, which also moves the replayed events (every
    /// sealed chunk of the feed) into the event archive.
    var firstSnapshotSeconds: Double
    /// TakeSnapshot of the same state once the archive holds those events (one more write in
    /// between), as the client sees it and as the daemon reports it: what every later snapshot
    /// costs, and the target's figure.
    var snapshotSeconds: Double
    var snapshotServerSeconds: Double
    var snapshotBytes: UInt64
    /// Start to SERVING from that snapshot alone.
    var snapshotRecoverySeconds: Double
    /// VmRSS once serving from the snapshot, and the peak (VmHWM) during that recovery.
    var rssMiB: Double
    var peakRSSMiB: Double
    /// GetStats on the recovered state, one call after another on one connection, as the client
    /// times them: the median, the 99th percentile and the slowest.
    var getStatsP50Micros: Double
    var getStatsP99Micros: Double
    var getStatsMaxMicros: Double
    /// Records appended after the snapshot (seat decreases), and start to SERVING from the
    /// snapshot plus them.
    var journalTailRecords: Int
    var snapshotPlusJournalRecoverySeconds: Double
    var rssAfterTailMiB: Double
    /// Start to SERVING from the same snapshot and records once more, after that recovery was
    /// killed: its replay archived the tail's events, as a daemon that wrote them archives them
    /// in the background, and this start takes those blocks as they are. The target's figure
    /// stays the start above, whose tail has no archived events at all.
    var snapshotPlusArchivedJournalRecoverySeconds: Double
}

/// GetStats calls timed on each recovered state.
private let getStatsCalls = 500

/// Builds the state, then lets the real daemon replay it, snapshot it and recover from it.
func runScale(subscriptions: Int, tailRecords: Int, creditd: String, log: (String) -> Void) async throws -> ScaleResult {
    let work = try makeTemporaryDirectory(prefix: "creditbench-scale")
    defer { try? FileManager.default.removeItem(atPath: work) }
    let state = work + "/state"
    let timeout = max(60, Double(subscriptions) / 2_000)

    var started = monotonicNanos()
    let records = try await StateBuilder.build(directory: state, creditSubscriptions: subscriptions, plainSubscriptions: 0)
    let buildSeconds = Double(monotonicNanos() - started) / 1e9
    log("  \(subscriptions): journal of \(records) records built in \(fmt(buildSeconds)) s")

    // 1. Replay the journal, then snapshot.
    let first = try Daemon(binary: creditd, workDirectory: work, stateDirectory: state)
    let replaySeconds = try first.waitUntilServing(timeout: timeout)
    let rssAfterReplay = first.rssMiB
    try checkCredits(first, expected: StateBuilder.creditsPerSubscription)
    let firstSnapshot = try first.takeSnapshot()
    var seats = Creditd_V1_ChangeSeatsRequest()
    seats.subscriptionID = StateBuilder.creditSubscriptionID(1)
    seats.newSeats = 1
    _ = try first.call(MethodTable.Credits.changeSeats, seats)
    let snapshot = try first.takeSnapshot()
    first.kill()
    // For profiling recovery by hand: a copy of the state as the snapshot left it.
    if let keep = ProcessInfo.processInfo.environment["CREDITBENCH_KEEP_STATE"] {
        try? FileManager.default.removeItem(atPath: keep)
        try FileManager.default.copyItem(atPath: state, toPath: keep)
    }
    log("  \(subscriptions): replay \(fmt(replaySeconds)) s, first snapshot \(fmt(firstSnapshot.clientSeconds)) s "
        + "(\(firstSnapshot.bytes) bytes), next snapshot \(fmt(snapshot.clientSeconds)) s (\(snapshot.bytes) bytes)")

    // 2. Recover from the snapshot alone.
    let second = try Daemon(binary: creditd, workDirectory: work, stateDirectory: state)
    let recoverySeconds = try second.waitUntilServing(timeout: timeout)
    usleep(200_000)
    let rss = second.rssMiB
    let peak = second.peakRSSMiB
    let stats = try second.timedCalls(MethodTable.Admin.getStats, Creditd_V1_GetStatsRequest(), count: getStatsCalls)
    second.kill()
    // The counts come from counters kept as the state changes (no scan of the book per call);
    // check that they describe the whole state, not an empty one.
    guard let counted = stats.responses.last, counted.subscriptions == UInt64(subscriptions) else {
        throw BenchError("GetStats counted \(stats.responses.last?.subscriptions ?? 0) subscriptions, expected \(subscriptions)")
    }
    let statsP50 = percentile(stats.micros, 50), statsP99 = percentile(stats.micros, 99)
    let statsMax = stats.micros.max() ?? 0
    log("  \(subscriptions): snapshot recovery \(fmt(recoverySeconds)) s, RSS \(fmt(rss)) MiB (peak \(fmt(peak)))")
    log("  \(subscriptions): GetStats \(getStatsCalls) calls: p50 \(fmt(statsP50, 0)) us, p99 \(fmt(statsP99, 0)) us, "
        + "max \(fmt(statsMax, 0)) us")

    // 3. Recover from the snapshot plus a journal tail.
    started = monotonicNanos()
    try await StateBuilder.appendSeatDecreases(directory: state, subscriptions: subscriptions, count: tailRecords)
    log("  \(subscriptions): \(tailRecords) journal records appended in \(fmt(Double(monotonicNanos() - started) / 1e9)) s")
    if let keep = ProcessInfo.processInfo.environment["CREDITBENCH_KEEP_STATE"] {
        try? FileManager.default.removeItem(atPath: keep + "-tail")
        try FileManager.default.copyItem(atPath: state, toPath: keep + "-tail")
    }
    let third = try Daemon(binary: creditd, workDirectory: work, stateDirectory: state)
    let tailSeconds = try third.waitUntilServing(timeout: timeout)
    let rssAfterTail = third.rssMiB
    try checkCredits(third, expected: StateBuilder.creditsPerSubscription + (tailRecords >= subscriptions ? 1 : 0))
    third.kill()
    log("  \(subscriptions): snapshot + \(tailRecords) records recovery \(fmt(tailSeconds)) s")

    // 4. The same once more, with the events the last start archived as it replayed.
    let fourth = try Daemon(binary: creditd, workDirectory: work, stateDirectory: state)
    let archivedTailSeconds = try fourth.waitUntilServing(timeout: timeout)
    try checkCredits(fourth, expected: StateBuilder.creditsPerSubscription + (tailRecords >= subscriptions ? 1 : 0))
    fourth.kill()
    log("  \(subscriptions): snapshot + \(tailRecords) records recovery, their events archived \(fmt(archivedTailSeconds)) s")

    return ScaleResult(
        subscriptions: subscriptions, credits: subscriptions * StateBuilder.creditsPerSubscription,
        journalRecords: records, buildSeconds: buildSeconds,
        journalReplaySeconds: replaySeconds, rssAfterReplayMiB: rssAfterReplay,
        firstSnapshotSeconds: firstSnapshot.clientSeconds, snapshotSeconds: snapshot.clientSeconds, snapshotServerSeconds: snapshot.serverSeconds, snapshotBytes: snapshot.bytes,
        snapshotRecoverySeconds: recoverySeconds, rssMiB: rss, peakRSSMiB: peak,
        getStatsP50Micros: statsP50, getStatsP99Micros: statsP99, getStatsMaxMicros: statsMax,
        journalTailRecords: tailRecords, snapshotPlusJournalRecoverySeconds: tailSeconds, rssAfterTailMiB: rssAfterTail,
        snapshotPlusArchivedJournalRecoverySeconds: archivedTailSeconds)
}

/// The built state is what it should be: the last subscription has `expected` credits.
private func checkCredits(_ daemon: Daemon, expected: Int) throws {
    var request = Creditd_V1_GetRefundStatusRequest()
    request.subscriptionID = StateBuilder.creditSubscriptionID(0)
    let response = try daemon.call(MethodTable.Credits.getRefundStatus, request)
    guard response.credits.count == expected else {
        throw BenchError("\(request.subscriptionID) has \(response.credits.count) credits, expected \(expected)")
    }
}

func fmt(_ value: Double, _ digits: Int = 2) -> String {
    String(format: "%.\(digits)f", value)
}
