import CreditClient
import CreditProto
import CreditWire
import Foundation
import SwiftProtobuf
import XCTest

/// Q1-Q3 and E1-E6 (issue 14) against the real daemon: ListCredits paging under writes, the
/// feed across restarts and snapshots, the long poll, WatchEvents on raw ttrpc 1.2 frames,
/// bad arguments, and creditctl's `credits`, `events` and `check`.
final class BookFeedEndToEndTests: XCTestCase {
    var daemon: DaemonProcess!
    var client: CreditClient!
    static let arguments = ["--clock", "manual", "--now", "2025-04-01T09:00:00Z"]

    override func setUp() async throws {
        daemon = try DaemonProcess.start(arguments: Self.arguments)
        client = try await CreditClient.connect(socketPath: daemon.socketPath)
    }

    override func tearDown() async throws {
        await client?.close()
        if let daemon, daemon.isRunning { XCTAssertEqual(try daemon.stop(), 0, daemon.stderr) }
    }

    func restart() async throws {
        await client.close()
        XCTAssertEqual(try daemon.stop(), 0, daemon.stderr)
        daemon = try DaemonProcess.start(arguments: Self.arguments, directory: daemon.directory)
        client = try await CreditClient.connect(socketPath: daemon.socketPath)
    }

    /// The requests of `create` and `seats`, for tasks that do not capture the test case.
    static func createRequest(_ id: String, customer: String = "acme", seats: Int64 = 10,
                              currency: String = "USD") -> Creditd_V1_CreateSubscriptionRequest {
        var request = Creditd_V1_CreateSubscriptionRequest()
        request.subscriptionID = id
        request.customer = customer
        request.seats = seats
        request.unitPriceMinor = 1000
        request.currency = currency
        request.interval = .monthly
        request.timeZone = "UTC"
        return request
    }

    static func seatsRequest(_ id: String, _ n: Int64) -> Creditd_V1_ChangeSeatsRequest {
        var request = Creditd_V1_ChangeSeatsRequest()
        request.subscriptionID = id
        request.newSeats = n
        request.timing = .now
        return request
    }

    @discardableResult
    func create(_ id: String, customer: String = "acme", seats: Int64 = 10, currency: String = "USD",
                on client: CreditClient? = nil) async throws -> Creditd_V1_Subscription {
        try await (client ?? self.client).createSubscription(
            Self.createRequest(id, customer: customer, seats: seats, currency: currency)).subscription
    }

    func seats(_ id: String, _ n: Int64, on client: CreditClient? = nil) async throws {
        _ = try await (client ?? self.client).changeSeats(Self.seatsRequest(id, n))
    }

    func cancel(_ id: String) async throws {
        var request = Creditd_V1_CancelSubscriptionRequest()
        request.subscriptionID = id
        _ = try await client.cancelSubscription(request)
    }

    func allEvents() async throws -> [Creditd_V1_Event] {
        var request = Creditd_V1_ListEventsRequest()
        request.limit = 1000
        var events: [Creditd_V1_Event] = []
        while true {
            let page = try await client.listEvents(request)
            events += page.events
            request.afterSeq = Int64(page.nextAfterSeq)
            if page.nextAfterSeq >= page.lastSeq { return events }
        }
    }

    func assertInvalid(_ what: String, file: StaticString = #filePath, line: UInt = #line, _ body: () async throws -> Void) async {
        do {
            try await body()
            XCTFail("\(what): expected invalid_request", file: file, line: line)
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .invalidArgument, "\(what): \(error)", file: file, line: line)
            XCTAssertTrue(error.message.hasPrefix("invalid_request"), "\(what): \(error)", file: file, line: line)
        } catch {
            XCTFail("\(what): \(error)", file: file, line: line)
        }
    }

    // MARK: Q1 views

    /// CREDIT_VIEW_SUMMARY answers the same credits, each the full credit without `history`
    /// and `explanation`; the default and CREDIT_VIEW_FULL answer them whole.
    func testListCreditsSummaryViewLeavesOutHistoryAndExplanation() async throws {
        for i in 0..<5 {
            try await create("v\(i)", customer: "acme")
            try await seats("v\(i)", 7)
        }
        var request = Creditd_V1_ListCreditsRequest()
        request.pageSize = 3
        func all(_ view: Creditd_V1_CreditView) async throws -> [Creditd_V1_Credit] {
            var page = request
            page.view = view
            var credits: [Creditd_V1_Credit] = []
            repeat {
                let answer = try await client.listCredits(page)
                credits += answer.credits
                page.pageToken = answer.nextPageToken
            } while !page.pageToken.isEmpty
            return credits
        }
        let full = try await all(.unspecified)
        let explicitFull = try await all(.full)
        XCTAssertEqual(explicitFull, full)
        let summary = try await all(.summary)
        XCTAssertEqual(full.count, 5)
        XCTAssertTrue(full.allSatisfy { !$0.history.isEmpty && $0.hasExplanation })
        XCTAssertEqual(summary, full.map { credit in
            var trimmed = credit
            trimmed.history = []
            trimmed.clearExplanation()
            return trimmed
        })
    }

    // MARK: Q1 paging

    /// Pages of 7 while other connections create credits: no credit twice, none that existed
    /// before the listing skipped, creation order kept.
    func testListCreditsPagingUnderConcurrentWrites() async throws {
        for i in 0..<120 {
            try await create(String(format: "s%03d", i), customer: i % 2 == 0 ? "acme" : "globex")
            try await seats(String(format: "s%03d", i), 9)
        }
        var before = Creditd_V1_ListCreditsRequest()
        before.pageSize = 1000
        let existing = try await client.listCredits(before).credits.map(\.creditID)
        XCTAssertEqual(existing.count, 120)

        let socket = daemon.socketPath
        let writer = Task {
            let other = try await CreditClient.connect(socketPath: socket)
            defer { Task { await other.close() } }
            for i in 0..<120 {
                let id = String(format: "w%03d", i)
                _ = try await other.createSubscription(BookFeedEndToEndTests.createRequest(id))
                for target in [id, String(format: "s%03d", i)] {
                    _ = try await other.changeSeats(BookFeedEndToEndTests.seatsRequest(target, 8))
                }
            }
        }
        var seen: [String] = []
        var request = Creditd_V1_ListCreditsRequest()
        request.pageSize = 7
        repeat {
            let page = try await client.listCredits(request)
            seen += page.credits.map(\.creditID)
            request.pageToken = page.nextPageToken
            try await Task.sleep(for: .milliseconds(2))
        } while !request.pageToken.isEmpty
        try await writer.value
        XCTAssertEqual(Set(seen).count, seen.count, "no duplicates")
        XCTAssertTrue(Set(existing).isSubset(of: Set(seen)), "no skips")
        let all = try await client.listCredits(before).credits.map(\.creditID)
        XCTAssertEqual(all.count, 360)
        XCTAssertEqual(seen, all.filter(Set(seen).contains), "creation order")

        // Filters: one customer, one state; the page token survives a restart.
        var acme = Creditd_V1_ListCreditsRequest()
        acme.customer = "acme"
        acme.states = [.pending]
        acme.pageSize = 50
        let first = try await client.listCredits(acme)
        XCTAssertEqual(first.credits.count, 50)
        XCTAssertTrue(first.credits.allSatisfy { $0.customer == "acme" && $0.state == .pending })
        try await restart()
        acme.pageToken = first.nextPageToken
        acme.pageSize = 1000
        let rest = try await client.listCredits(acme)
        XCTAssertEqual(Set(first.credits.map(\.creditID)).intersection(rest.credits.map(\.creditID)), [])
        // acme: the 60 even s-subscriptions twice, and every w-subscription once.
        XCTAssertEqual(first.credits.count + rest.credits.count, 60 * 2 + 120)
    }

    /// A page that would not fit in one message (4 MiB) is answered shorter (Q1, E4), never
    /// RESOURCE_EXHAUSTED: customers are free text of any length (O2), and 450 subscriptions
    /// with 10 KB customers fill a page of 1,000 past the limit, so such a book could not be
    /// listed or exported at all.
    func testPagesLargerThanOneMessageAreAnsweredShorter() async throws {
        let count = 450
        for i in 0..<count {
            let id = String(format: "big%04d", i)
            try await create(id, customer: String(repeating: "c", count: 10_000) + String(i % 7))
            try await seats(id, 9)
        }
        func pages<Item>(_ read: (String) async throws -> (items: [Item], next: String)) async throws -> [[Item]] {
            var token = ""
            var pages: [[Item]] = []
            repeat {
                let page = try await read(token)
                pages.append(page.items)
                token = page.next
            } while !token.isEmpty
            return pages
        }
        let subscriptions = try await pages { token in
            var request = Creditd_V1_ListSubscriptionsRequest()
            request.pageSize = 1000
            request.pageToken = token
            let page = try await client.listSubscriptions(request)
            return (page.subscriptions.map(\.subscriptionID), page.nextPageToken)
        }
        XCTAssertGreaterThan(subscriptions.count, 1)
        XCTAssertEqual(subscriptions.joined().count, count)
        XCTAssertEqual(Set(subscriptions.joined()).count, count)

        let credits = try await pages { token in
            var request = Creditd_V1_ListCreditsRequest()
            request.pageSize = 1000
            request.pageToken = token
            let page = try await client.listCredits(request)
            return (page.credits.map(\.creditID), page.nextPageToken)
        }
        XCTAssertGreaterThan(credits.count, 1)
        XCTAssertEqual(Set(credits.joined()).count, count)

        var events: [[UInt64]] = []
        var after: UInt64 = 0
        while true {
            var request = Creditd_V1_ListEventsRequest()
            request.afterSeq = Int64(after)
            request.limit = 1000
            let page = try await client.listEvents(request)
            events.append(page.events.map(\.seq))
            after = page.nextAfterSeq
            if after >= page.lastSeq { break }
        }
        XCTAssertGreaterThan(events.count, 2)
        XCTAssertEqual(Array(events.joined()), Array(1...UInt64(events.joined().count)), "every event once, in order")
    }

    /// A subscription's free text is bounded so that every event carrying it fits in one
    /// message: a 2.1 MB customer used to be accepted, its 4.2 MB event then answered
    /// RESOURCE_EXHAUSTED to every ListEvents past it and failed WatchEvents from the start.
    /// At the bound, ListEvents and WatchEvents deliver every event.
    func testFreeTextIsBoundedSoThatEveryEventFits() async throws {
        let bound = 1 << 20
        try await create("before")
        await assertInvalid("customer and plan over 1 MiB") {
            var request = Self.createRequest("too-big", customer: String(repeating: "c", count: bound - 10))
            request.plan = String(repeating: "p", count: 11)
            _ = try await self.client.createSubscription(request)
        }
        await assertInvalid("imported customer over 1 MiB") {
            var request = Creditd_V1_ImportSubscriptionRequest()
            request.subscriptionID = "too-big-import"
            request.customer = String(repeating: "é", count: bound / 2 + 1)  // two bytes each
            request.seats = 1
            request.unitPriceMinor = 100
            request.currency = "USD"
            request.startDate = "2025-01-01"
            _ = try await self.client.importSubscription(request)
        }
        var largest = Self.createRequest("largest", customer: String(repeating: "c", count: bound - 10))
        largest.plan = String(repeating: "p", count: 10)
        _ = try await client.createSubscription(largest)
        try await seats("largest", 4)
        try await cancel("largest")
        try await create("after")

        var listed: [Creditd_V1_Event] = []
        var request = Creditd_V1_ListEventsRequest()
        request.limit = 1000
        while true {
            let page = try await client.listEvents(request)
            listed += page.events
            request.afterSeq = Int64(page.nextAfterSeq)
            if page.nextAfterSeq >= page.lastSeq { break }
        }
        XCTAssertEqual(listed.map(\.seq), Array(1...UInt64(listed.count)), "every event, in order")
        XCTAssertTrue(listed.contains { $0.subscriptionID == "after" })

        let received = LockedBox<[Creditd_V1_Event]>([])
        let watcher = try await CreditClient.connect(socketPath: daemon.socketPath, timeout: .seconds(30))
        let watching = Task { [received] in
            try await watcher.serverStream(MethodTable.Credits.watchEvents, Creditd_V1_WatchEventsRequest()) { event in
                received.update { $0.append(event) }
            }
        }
        let end = ContinuousClock.now + .seconds(30)
        while received.get().count < listed.count, ContinuousClock.now < end { try await Task.sleep(for: .milliseconds(20)) }
        watching.cancel()
        await watcher.close()
        XCTAssertEqual(received.get().map(\.seq), listed.map(\.seq), "WatchEvents sends the same backlog")
    }

    // MARK: E3

    /// `events --follow` rides out a restart of creditd, as `tail -F` rides out a rotated file:
    /// once it has read from the feed, a lost connection is retried, and the feed resumes
    /// after the last event printed, with no gap and nothing twice. It used to exit 69 with
    /// "connection closed", ending the consumer's pipeline.
    func testFollowResumesAcrossARestartWithoutGapOrRepeat() async throws {
        _ = try await client.createSubscription(Self.createRequest("before"))
        let log = daemon.directory.appendingPathComponent("follow-restart.log").path
        let follow = try BackgroundProcess([try CreditctlProcess.binaryPath(), "events", "--follow", "--wait", "5",
                                            "-o", "json", "-s", daemon.socketPath],
                                           environment: TestEnvironment.scrubbed(), logPath: log)
        defer {
            follow.signal(SIGTERM)
            _ = follow.waitForExit(timeout: 10)
        }
        XCTAssertTrue(follow.waitForLog("\"subscription_id\":\"before\"", timeout: 10), follow.log)
        try await restart()
        _ = try await client.createSubscription(Self.createRequest("after"))
        XCTAssertTrue(follow.waitForLog("\"subscription_id\":\"after\"", timeout: 20), follow.log)
        XCTAssertTrue(follow.log.contains("reconnecting, resuming after seq 2"), follow.log)
        XCTAssertTrue(follow.log.contains("connected again; resuming after seq 2"), follow.log)
        let seqs = follow.log.split(separator: "\n").filter { $0.hasPrefix("{") }
            .map { try? Creditd_V1_Event(jsonString: String($0)).seq }
        XCTAssertEqual(seqs, [1, 2, 3, 4], follow.log)
    }

    func testEventsAreIdenticalAfterRestartAndSnapshot() async throws {
        for i in 0..<30 {
            let id = "e\(i)"
            try await create(id)
            try await seats(id, 7)
            if i % 3 == 0 { try await cancel(id) }
        }
        var advance = Creditd_V1_AdvanceClockRequest()
        advance.toUnixNanos = 1_746_057_600_000_000_000  // 2025-05-01: renewals, settlements, refund_pending
        _ = try await client.advanceClock(advance)
        let before = try await allEvents()
        XCTAssertEqual(before.map(\.seq), (1...UInt64(before.count)).map { $0 }, "gap-free from 1")
        XCTAssertTrue(before.contains { $0.type == .creditStateChanged && $0.creditState.state == .refundPending })
        // E1: the credit_state_changed events are exactly every credit's history entries.
        var all = Creditd_V1_ListCreditsRequest()
        all.pageSize = 1000
        let credits = try await client.listCredits(all).credits
        let histories = credits.flatMap { c in c.history.map { "\(c.creditID) \($0.state) \($0.atUnixNanos)" } }
        let fromEvents = before.filter { $0.type == .creditStateChanged }
            .map { "\($0.credit.creditID) \($0.creditState.state) \($0.creditState.atUnixNanos)" }
        XCTAssertEqual(fromEvents.sorted(), histories.sorted())

        try await restart()
        let afterRestart = try await allEvents()
        XCTAssertEqual(afterRestart, before, "after a restart (journal replay)")
        _ = try await client.takeSnapshot()
        let afterSnapshot = try await allEvents()
        XCTAssertEqual(afterSnapshot, before, "after a snapshot")
        try await restart()
        let afterSnapshotRestart = try await allEvents()
        XCTAssertEqual(afterSnapshotRestart, before, "after a restart from the snapshot")
        daemon.kill()
        daemon = try DaemonProcess.start(arguments: Self.arguments, directory: daemon.directory)
        client = try await CreditClient.connect(socketPath: daemon.socketPath)
        let afterKill = try await allEvents()
        XCTAssertEqual(afterKill, before, "after kill -9 and recovery")
    }

    /// More than eight sealed chunks of events: the background pass moves them into the event
    /// archive; ListEvents and WatchEvents read them back (off the event loop), and they are the
    /// same events after a kill -9 that no snapshot named them before (the restart adopts the
    /// blocks), a snapshot, a restart from it, and another kill -9.
    func testArchivedEventsReadBackThroughListWatchAndRestarts() async throws {
        let client = self.client!
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<16 {
                group.addTask {
                    for i in stride(from: lane, to: 3_200, by: 16) {
                        _ = try await client.createSubscription(BookFeedEndToEndTests.createRequest("ar\(i)"))
                        _ = try await client.changeSeats(BookFeedEndToEndTests.seatsRequest("ar\(i)", 7))
                    }
                }
            }
            try await group.waitForAll()
        }
        let archive = { [directory = daemon.stateDirectory] () throws -> [String] in
            try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".arch") }
        }
        let deadline = ContinuousClock.now + .seconds(30)
        while try archive().isEmpty, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
        XCTAssertFalse(try archive().isEmpty, "the background pass archived sealed chunks")

        let before = try await allEvents()
        XCTAssertGreaterThan(before.count, 9 * 1_024)
        XCTAssertEqual(before.map(\.seq), (1...UInt64(before.count)).map { $0 }, "gap-free from 1")
        let c = try RawTTRPCConnection(path: daemon.socketPath)
        // From within the oldest (archived) chunks, less than the 10,000 behind that E6 allows.
        let from = before.count - 9_000
        try watch(c, id: 1, after: Int64(from))
        var watched: [Creditd_V1_Event] = []
        while watched.count < 9_000 {
            let frame = try c.readFrame()
            XCTAssertEqual(frame.type, 0x03)
            watched.append(try Creditd_V1_Event(serializedBytes: frame.data))
        }
        XCTAssertEqual(watched, Array(before[from...]), "WatchEvents reads the archived chunks too")

        // A kill -9 before any snapshot names those chunks: the restart adopts the blocks the
        // background pass wrote instead of building and archiving their events again.
        daemon.kill()
        await client.close()
        daemon = try DaemonProcess.start(arguments: Self.arguments, directory: daemon.directory)
        self.client = try await CreditClient.connect(socketPath: daemon.socketPath)
        let log = daemon.stderr
        let adopted = log.range(of: "adopted_event_chunks=").map { Int(log[$0.upperBound...].prefix { $0.isNumber }) ?? 0 } ?? 0
        XCTAssertGreaterThan(adopted, 0, log)
        let afterAdoption = try await allEvents()
        XCTAssertEqual(afterAdoption, before, "after kill -9, with the archived chunks adopted")

        _ = try await self.client!.takeSnapshot()
        try await restart()
        let afterRestart = try await allEvents()
        XCTAssertEqual(afterRestart, before, "after a restart from a snapshot that names archived chunks")
        try await seats("ar1", 5)
        daemon.kill()
        daemon = try DaemonProcess.start(arguments: Self.arguments, directory: daemon.directory)
        self.client = try await CreditClient.connect(socketPath: daemon.socketPath)
        let afterKill = try await allEvents()
        XCTAssertEqual(Array(afterKill.prefix(before.count)), before, "after kill -9 and recovery")
        XCTAssertEqual(afterKill.count, before.count + 2)
    }

    // MARK: E4 long poll

    func testLongPollAnswersSoonAfterACommit() async throws {
        try await create("before")
        let last = try await client.listEvents(Creditd_V1_ListEventsRequest()).lastSeq
        var request = Creditd_V1_ListEventsRequest()
        request.afterSeq = Int64(last)
        request.waitSeconds = 20
        request.types = [.subscriptionCreated]
        let socket = daemon.socketPath
        let waitingRequest = request
        let poll = Task { () -> (Creditd_V1_ListEventsResponse, ContinuousClock.Instant) in
            let waiter = try await CreditClient.connect(socketPath: socket)
            defer { Task { await waiter.close() } }
            let response = try await waiter.listEvents(waitingRequest)
            return (response, ContinuousClock.now)
        }
        try await Task.sleep(for: .milliseconds(500))
        try await seats("before", 9)  // not a matching type: the poll keeps waiting
        try await Task.sleep(for: .milliseconds(200))
        try await create("after")
        let committed = ContinuousClock.now
        let (response, answered) = try await poll.value
        XCTAssertEqual(response.events.map(\.subscriptionID), ["after"])
        XCTAssertLessThan(answered - committed, .milliseconds(500), "answers right after the commit, not at the end of the wait")

        // Nothing matching: an empty answer after the wait.
        request.afterSeq = Int64(response.lastSeq)
        request.waitSeconds = 1
        let started = ContinuousClock.now
        let empty = try await client.listEvents(request)
        XCTAssertEqual(empty.events, [])
        XCTAssertGreaterThanOrEqual(ContinuousClock.now - started, .milliseconds(900))
    }

    // MARK: E4/E5 bad arguments

    func testBadFeedAndQueryArgumentsAreInvalidAndChangeNothing() async throws {
        try await create("x")
        let stats = try await client.getStats()
        let last = try await client.listEvents(Creditd_V1_ListEventsRequest()).lastSeq
        var r = Creditd_V1_ListEventsRequest()
        r.limit = 1001
        await assertInvalid("limit 1001") { _ = try await self.client.listEvents(r) }
        r = .init(); r.limit = -1
        await assertInvalid("limit -1") { _ = try await self.client.listEvents(r) }
        r = .init(); r.waitSeconds = 61
        await assertInvalid("wait 61") { _ = try await self.client.listEvents(r) }
        r = .init(); r.afterSeq = Int64(last) + 1
        await assertInvalid("after_seq above last_seq") { _ = try await self.client.listEvents(r) }
        r = .init(); r.afterSeq = -1
        await assertInvalid("after_seq -1") { _ = try await self.client.listEvents(r) }
        r = .init(); r.types = [Creditd_V1_EventType(rawValue: 99)!]
        await assertInvalid("unknown type") { _ = try await self.client.listEvents(r) }
        var c = Creditd_V1_ListCreditsRequest()
        c.pageSize = 1001
        await assertInvalid("page size 1001") { _ = try await self.client.listCredits(c) }
        c = .init(); c.pageToken = "not a token"
        await assertInvalid("malformed token") { _ = try await self.client.listCredits(c) }
        for forged in ["not a token", "a", "s61x"] {
            var s = Creditd_V1_ListSubscriptionsRequest()
            s.pageToken = forged
            await assertInvalid("malformed subscriptions token \(forged)") { _ = try await self.client.listSubscriptions(s) }
            s.customer = "acme"
            await assertInvalid("malformed subscriptions token \(forged), filtered") { _ = try await self.client.listSubscriptions(s) }
        }
        c = .init(); c.currency = "XYZ"
        await assertInvalid("unknown currency") { _ = try await self.client.listCredits(c) }
        c = .init(); c.states = [Creditd_V1_CreditState(rawValue: 42)!]
        await assertInvalid("unknown state") { _ = try await self.client.listCredits(c) }

        let after = try await client.getStats()
        XCTAssertEqual(after.persistence.lastSequence, stats.persistence.lastSequence, "nothing was written")
        let lastAfter = try await client.listEvents(Creditd_V1_ListEventsRequest()).lastSeq
        XCTAssertEqual(lastAfter, last)
        // after_seq == last_seq is the normal "nothing new" answer.
        r = .init(); r.afterSeq = Int64(last)
        let none = try await client.listEvents(r)
        XCTAssertEqual(none.events, [])
        XCTAssertEqual(none.oldestSeq, 1)
    }

    // MARK: E6 WatchEvents on raw ttrpc 1.2 frames

    func watch(_ connection: RawTTRPCConnection, id: UInt32, after: Int64) throws {
        var request = Creditd_V1_WatchEventsRequest()
        request.afterSeq = after
        try connection.sendRequest(id: id, service: MethodTable.Credits.serviceName, method: "WatchEvents",
                                   payload: try request.serializedBytes(), flags: 0x01)
    }

    /// Reads stream frames until the Response that ends the stream.
    func readStream(_ connection: RawTTRPCConnection, id: UInt32) throws -> (events: [Creditd_V1_Event], end: Result<[UInt8], RPCError>) {
        var events: [Creditd_V1_Event] = []
        while true {
            let frame = try connection.readFrame()
            XCTAssertEqual(frame.streamID, id)
            switch frame.type {
            case 0x03:
                if !frame.data.isEmpty { events.append(try Creditd_V1_Event(serializedBytes: frame.data)) }
                if frame.flags & 0x01 != 0 { return (events, .success([])) }
            case 0x02:
                return (events, TTRPCEnvelope.result(of: try Ttrpc_Response(serializedBytes: frame.data)))
            default:
                XCTFail("unexpected frame type \(frame.type)")
            }
        }
    }

    /// The Swift client's server streams: every message in order, then the end. creditd ends
    /// WatchEvents OK at shutdown with a bare close (Data, remote closed and no data, wire
    /// protocol §6), which must end the call, with no extra message: the client used to deliver
    /// the empty frame as a message and then wait forever for a Response.
    func testSwiftClientServerStreamEndsWithTheServersBareClose() async throws {
        try await create("a")
        try await seats("a", 4)
        let expected = try await allEvents()
        let received = LockedBox<[Creditd_V1_Event]>([])
        let watcher = try await CreditClient.connect(socketPath: daemon.socketPath, timeout: .seconds(5))
        async let watched: Void = watcher.serverStream(MethodTable.Credits.watchEvents, Creditd_V1_WatchEventsRequest()) { event in
            received.update { $0.append(event) }
        }
        let end = ContinuousClock.now + .seconds(10)
        while received.get().count < expected.count, ContinuousClock.now < end { try await Task.sleep(for: .milliseconds(20)) }
        let stopper = Task.detached { [daemon = daemon!] in try daemon.stop() }
        try await watched  // returns: the stream ended OK
        XCTAssertEqual(received.get(), expected)
        let status = try await stopper.value
        XCTAssertEqual(status, 0)
        daemon = nil
        await watcher.close()
    }

    func testWatchEventsBacklogThenLiveThenOKAtShutdown() async throws {
        try await create("a")
        let backlog = try await allEvents()
        let c = try RawTTRPCConnection(path: daemon.socketPath)
        try watch(c, id: 1, after: 0)
        var got: [Creditd_V1_Event] = []
        for _ in backlog {
            let frame = try c.readFrame()
            XCTAssertEqual(frame.type, 0x03)
            got.append(try Creditd_V1_Event(serializedBytes: frame.data))
        }
        XCTAssertEqual(got, backlog, "the backlog first")
        try await seats("a", 4)
        let live = try await allEvents().dropFirst(backlog.count)
        XCTAssertFalse(live.isEmpty)
        for event in live {
            let frame = try c.readFrame()
            XCTAssertEqual(try Creditd_V1_Event(serializedBytes: frame.data), event, "then each event as it commits")
        }
        // Shutdown ends the stream with OK.
        await client.close()
        let stopper = Task.detached { [daemon = daemon!] in try daemon.stop() }
        let (rest, end) = try readStream(c, id: 1)
        XCTAssertEqual(rest, [])
        if case .failure(let error) = end { XCTFail("expected OK at shutdown, got \(error)") }
        let stopStatus = try await stopper.value
        XCTAssertEqual(stopStatus, 0)
        daemon = nil
    }

    /// The value of an unlabelled gauge, as its metrics line (`"name value"`), once it reads
    /// `expected` or after 5 s.
    func gauge(_ name: String, becomes expected: Int) async throws -> String {
        func read() async throws -> String {
            let text = try await client.getMetrics().prometheusText
            return text.split(separator: "\n").first { $0.hasPrefix("\(name) ") }.map(String.init) ?? "missing"
        }
        let end = ContinuousClock.now + .seconds(5)
        var now = try await read()
        while now != "\(name) \(expected)", ContinuousClock.now < end {
            try await Task.sleep(for: .milliseconds(50))
            now = try await read()
        }
        return now
    }

    /// Three calls of `method`, each on a connection of its own, that have nothing to answer
    /// yet: the gauge `counted` reads 3; one connection closed, 2 (no commit needed); a commit,
    /// then the other two closed, 0.
    func assertEachCallEndsWithItsConnection(method: String, payload: [UInt8], flags: UInt8 = 0, counted: String,
                                             file: StaticString = #filePath, line: UInt = #line) async throws {
        var connections: [RawTTRPCConnection] = []
        for _ in 0..<3 {
            let c = try RawTTRPCConnection(path: daemon.socketPath)
            try c.sendRequest(id: 1, service: MethodTable.Credits.serviceName, method: method, payload: payload, flags: flags)
            connections.append(c)
        }
        let open = try await gauge(counted, becomes: 3)
        XCTAssertEqual(open, "\(counted) 3", file: file, line: line)
        connections[0].close()
        let afterOne = try await gauge(counted, becomes: 2)
        XCTAssertEqual(afterOne, "\(counted) 2", "a call ends with its connection, with no commit", file: file, line: line)
        try await seats("a", 4)  // a commit wakes the others; they have nothing to answer either
        connections[1].close()
        connections[2].close()
        let afterAll = try await gauge(counted, becomes: 0)
        XCTAssertEqual(afterAll, "\(counted) 0", file: file, line: line)
    }

    /// A watcher whose filter matches nothing has nothing to send, so it never learns from a
    /// failed send that its client has gone: closing the connection must end its handler even
    /// so, commits or not. It used to wait for commits until shutdown, holding its request (a
    /// 4 MiB filter each, on as many closed connections as a client cared to open).
    func testWatchEventsWithNothingToSendEndsWhenItsClientGoes() async throws {
        try await create("a")
        var request = Creditd_V1_WatchEventsRequest()
        request.subscriptionID = "no-such-subscription"
        try await assertEachCallEndsWithItsConnection(method: "WatchEvents", payload: try request.serializedBytes(),
                                                      flags: 0x01, counted: "creditd_event_streams")
    }

    /// A ListEvents long poll whose client has gone stops waiting at once. It used to wait out
    /// its `wait_seconds` (up to a minute), holding its request and a commit waiter and reading
    /// the feed again at every commit, so a client that opened connections, asked and closed
    /// them could pile up a minute's worth.
    func testListEventsLongPollEndsWhenItsClientGoes() async throws {
        try await create("a")
        var request = Creditd_V1_ListEventsRequest()
        request.afterSeq = Int64(try await client.listEvents(Creditd_V1_ListEventsRequest()).lastSeq)
        request.waitSeconds = 60
        request.subscriptionID = "no-such-subscription"  // commits below match nothing
        try await assertEachCallEndsWithItsConnection(method: "ListEvents", payload: try request.serializedBytes(),
                                                      counted: "creditd_event_long_polls")

        // One still connected is answered when a matching event commits, and leaves the count.
        request.subscriptionID = "a"
        request.afterSeq = Int64(try await client.listEvents(Creditd_V1_ListEventsRequest()).lastSeq)
        let c = try RawTTRPCConnection(path: daemon.socketPath)
        try c.sendRequest(id: 1, service: MethodTable.Credits.serviceName, method: "ListEvents",
                          payload: try request.serializedBytes())
        let one = try await gauge("creditd_event_long_polls", becomes: 1)
        XCTAssertEqual(one, "creditd_event_long_polls 1")
        try await seats("a", 5)
        let answer = try Creditd_V1_ListEventsResponse(serializedBytes: try c.readResponse().result.get())
        XCTAssertFalse(answer.events.isEmpty)
        let none = try await gauge("creditd_event_long_polls", becomes: 0)
        XCTAssertEqual(none, "creditd_event_long_polls 0")
    }

    /// The backlog is not falling behind (E6 sends it first; E5 keeps at least a million
    /// events), and the events a filter skips are never sent, so they are not unsent either.
    func testWatchEventsSendsALongBacklogAndAFilteredStreamIgnoresOtherEvents() async throws {
        _ = try importing("base")  // 14,000 events
        let last = try await client.listEvents(Creditd_V1_ListEventsRequest()).lastSeq
        let all = try RawTTRPCConnection(path: daemon.socketPath, receiveTimeout: 30)
        try watch(all, id: 1, after: 0)
        var received: UInt64 = 0
        while received < last {
            let frame = try all.readFrame()
            XCTAssertEqual(frame.type, 0x03, "a stream from seq 0 ended after \(received) of \(last) events")
            guard frame.type == 0x03 else { return }
            received = try Creditd_V1_Event(serializedBytes: frame.data).seq
        }
        all.close()

        // A stream for one subscription: its two events, then it stays open while 14,000
        // others commit, and gets the next event of its own.
        let one = try RawTTRPCConnection(path: daemon.socketPath, receiveTimeout: 30)
        var request = Creditd_V1_WatchEventsRequest()
        request.subscriptionID = "base-5"
        try one.sendRequest(id: 1, service: MethodTable.Credits.serviceName, method: "WatchEvents",
                            payload: try request.serializedBytes(), flags: 0x01)
        for _ in 0..<2 {
            let frame = try one.readFrame()
            XCTAssertEqual(frame.type, 0x03)
            XCTAssertEqual(try Creditd_V1_Event(serializedBytes: frame.data).subscriptionID, "base-5")
        }
        try await Task.sleep(for: .milliseconds(200))
        _ = try importing("others")
        try await seats("base-5", 4)
        let next = try one.readFrame()
        XCTAssertEqual(next.type, 0x03, "the filtered stream was ended while others wrote: \(next)")
        if next.type == 0x03 {
            let event = try Creditd_V1_Event(serializedBytes: next.data)
            XCTAssertEqual(event.subscriptionID, "base-5")
            XCTAssertEqual(event.type, .seatsChanged)
        }
        one.close()

        // creditctl events follows short pages to the end of the feed: the only seats_changed
        // event comes after 28,000 others, more than one call examines (E4 allows short pages).
        let listed = try CreditctlProcess.run(["events", "--type", "seats_changed", "-o", "json", "-s", daemon.socketPath])
        XCTAssertEqual(listed.status, 0, listed.stderr)
        XCTAssertTrue(listed.stdout.contains("base-5"), "\(listed.stdout)\n\(listed.stderr)")
    }

    /// A consumer that does not read falls more than 10,000 events behind while an import goes
    /// on: it is ended with RESOURCE_EXHAUSTED and the writers are not held up.
    /// Imports 7,000 subscriptions `PREFIX-0...` with creditctl (14,000 events); returns how
    /// long it took.
    func importing(_ prefix: String) throws -> Duration {
        var csv = "subscription_id,seats,unit_price_minor,currency,interval,time_zone,start_date\n"
        for i in 0..<7000 { csv += "\(prefix)-\(i),1,100,USD,monthly,UTC,2025-03-\(String(format: "%02d", 1 + i % 28))\n" }
        let path = daemon.directory.appendingPathComponent("\(prefix).csv").path
        try csv.write(toFile: path, atomically: true, encoding: .utf8)
        let started = ContinuousClock.now
        let result = try CreditctlProcess.run(["import", path, "-s", daemon.socketPath], timeout: 300)
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertTrue(result.stdout.contains("imported 7000, skipped 0, failed 0"), result.stdout)
        return ContinuousClock.now - started
    }

    func testSlowWatchConsumerIsEndedWithResourceExhausted() async throws {
        // The same import without a watcher, for the write rate.
        let baseline = try importing("base")
        let start = try await client.listEvents(Creditd_V1_ListEventsRequest()).lastSeq
        let c = try RawTTRPCConnection(path: daemon.socketPath, receiveTimeout: 60)
        try watch(c, id: 1, after: Int64(start))
        try await Task.sleep(for: .milliseconds(200))  // at the end of the feed: live from here
        // 7,000 imports = 14,000 events while the watcher reads nothing.
        let lagging = try importing("slow")
        // Writers are not held up by the lagging stream (generous: the machine is shared).
        XCTAssertLessThan(lagging, baseline * 2 + .seconds(2), "baseline \(baseline), with a lagging watcher \(lagging)")
        let (events, end) = try readStream(c, id: 1)
        switch end {
        case .success: XCTFail("expected RESOURCE_EXHAUSTED after \(events.count) events")
        case .failure(let error): XCTAssertEqual(error.code, .resourceExhausted, "\(error)")
        }
        XCTAssertLessThan(events.count, 14_000)
        XCTAssertEqual(events.map(\.seq), (1...UInt64(events.count)).map { start + $0 }, "what was sent is the feed in order")
        // The consumer continues with ListEvents from its last seq.
        var next = Creditd_V1_ListEventsRequest()
        next.afterSeq = Int64(events.last?.seq ?? start)
        next.limit = 1
        let resumedSeq = try await client.listEvents(next).events.first?.seq
        XCTAssertEqual(resumedSeq, (events.last?.seq ?? start) + 1)
        // The connection itself stays usable.
        XCTAssertEqual(try c.healthCheck(id: 3), .serving)
    }

    // MARK: creditctl credits / events / check

    func testCreditctlCreditsEventsAndCheck() async throws {
        try await create("acme-1", customer: "acme")
        try await seats("acme-1", 8)
        try await create("globex-1", customer: "globex", currency: "EUR")
        try await seats("globex-1", 5)
        try await cancel("globex-1")
        let socket = ["-s", daemon.socketPath]

        let table = try CreditctlProcess.run(["credits", "--customer", "acme"] + socket)
        XCTAssertEqual(table.status, 0, table.stderr)
        XCTAssertTrue(table.stdout.contains("acme-1"), table.stdout)
        XCTAssertFalse(table.stdout.contains("globex-1"), table.stdout)
        let json = try CreditctlProcess.run(["credits", "--currency", "eur", "--all", "--page-size", "1", "-o", "json"] + socket)
        XCTAssertEqual(json.status, 0, json.stderr)
        let listed = try Creditd_V1_ListCreditsResponse(jsonString: json.stdout)
        XCTAssertEqual(listed.credits.count, 2, "--all followed every page")
        XCTAssertEqual(listed.nextPageToken, "")

        let events = try CreditctlProcess.run(["events", "--type", "credit_state_changed", "-o", "json"] + socket)
        XCTAssertEqual(events.status, 0, events.stderr)
        let lines = events.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 3)
        let decoded = try lines.map { try Creditd_V1_Event(jsonString: String($0)) }
        XCTAssertTrue(decoded.allSatisfy { $0.type == .creditStateChanged })
        let resumed = try CreditctlProcess.run(["events", "--after", String(decoded[1].seq), "--type", "credit_state_changed"] + socket)
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stdout.hasPrefix("SEQ\tTYPE"), resumed.stdout)
        XCTAssertEqual(resumed.stdout.split(separator: "\n").count, 2, resumed.stdout)
        XCTAssertTrue(resumed.stderr.contains("resume with --after"), resumed.stderr)

        // --follow prints new events as they commit.
        let log = daemon.directory.appendingPathComponent("follow.log").path
        let follow = try BackgroundProcess([try CreditctlProcess.binaryPath(), "events", "--follow", "--wait", "5",
                                            "--after", String(try await client.listEvents(.init()).lastSeq), "-o", "json"] + socket,
                                           environment: TestEnvironment.scrubbed(), logPath: log)
        try await Task.sleep(for: .milliseconds(300))
        try await create("late")
        var saw = false
        for _ in 0..<100 where !saw {
            saw = follow.log.contains("\"subscription_id\":\"late\"")
            try await Task.sleep(for: .milliseconds(50))
        }
        XCTAssertTrue(saw, follow.log)
        follow.signal(SIGTERM)
        _ = follow.waitForExit(timeout: 10)

        // check: refund-overdue thresholds. globex-1's credit becomes refund_pending on 05-01
        // and refund-overdue from 06-02.
        var advance = Creditd_V1_AdvanceClockRequest()
        advance.toUnixNanos = 1_748_822_400_000_000_000  // 2025-06-02T00:00Z
        _ = try await client.advanceClock(advance)
        let overdue = try await client.listCredits({ var r = Creditd_V1_ListCreditsRequest(); r.refundOverdueOnly = true; return r }())
        XCTAssertFalse(overdue.credits.isEmpty)
        let owed = overdue.credits.filter { $0.currency == "EUR" }.map(\.remainingMinor).reduce(0, +)
        let ok = try CreditctlProcess.run(["check", "--refund-overdue-amount-warning", String(owed)] + socket)
        XCTAssertEqual(ok.status, 0, ok.stdout)
        XCTAssertTrue(ok.stdout.contains("'overdue_refund_EUR'=\(owed);\(owed);;0;"), ok.stdout)
        let warn = try CreditctlProcess.run(["check", "--refund-overdue-amount-warning", String(owed - 1)] + socket)
        XCTAssertEqual(warn.status, 1, warn.stdout)
        let crit = try CreditctlProcess.run(["check", "--refund-overdue-critical", "0"] + socket)
        XCTAssertEqual(crit.status, 2, crit.stdout)
        XCTAssertTrue(crit.stdout.contains("refunds overdue"), crit.stdout)
    }
}
