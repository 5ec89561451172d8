import CreditDomain
import CreditProto
import CreditServer
import CreditWire
import NIOCore
import NIOPosix

/// ListEvents (E4): answered at once when the feed has a matching event (or the caller does
/// not wait); otherwise it waits, on the connection's event loop, for commits until a matching
/// event arrives or `wait_seconds` ends. It never waits on the writer, only on the commit signal.
final class EventLongPoll: @unchecked Sendable {
    // Confined to `eventLoop`.
    private let eventLoop: any EventLoop
    private let application: CreditApplication
    private var writer: LedgerWriter { application.writer }
    private var request: Creditd_V1_ListEventsRequest
    private let respond: TypedResponder<Creditd_V1_ListEventsResponse>
    private var timer: Scheduled<Void>?
    /// The commit waiter of the current wait, dropped when the poll is answered otherwise.
    private var commitWait: CommitSignal.WaitID?
    /// Counted in `creditd_event_long_polls` until answered.
    private var counted = false
    private var done = false

    /// The longest wait (E4).
    static let maximumWaitSeconds: Int32 = 60

    private init(eventLoop: any EventLoop, application: CreditApplication, request: Creditd_V1_ListEventsRequest,
                 respond: TypedResponder<Creditd_V1_ListEventsResponse>) {
        self.eventLoop = eventLoop
        self.application = application
        self.request = request
        self.respond = respond
    }

    static func start(gate: ApplicationGate, request: Creditd_V1_ListEventsRequest, context: CallContext,
                      respond: TypedResponder<Creditd_V1_ListEventsResponse>) {
        let application: CreditApplication
        do {
            application = try gate.require()
        } catch {
            respond(.failure(error))
            return
        }
        let poll = EventLongPoll(eventLoop: respond.eventLoop, application: application, request: request, respond: respond)
        guard (0...maximumWaitSeconds).contains(request.waitSeconds) else {
            // Validated after the domain's own checks would be: invalid_request either way.
            poll.finish(.failure(DomainError(.invalidRequest,
                "wait_seconds must be 0...\(maximumWaitSeconds), got \(request.waitSeconds)").rpcError))
            return
        }
        if request.waitSeconds > 0 {
            // Answer a little before the call's own deadline, so the caller gets the empty page
            // rather than DEADLINE_EXCEEDED.
            var wait = Duration.seconds(Int64(request.waitSeconds))
            if let remaining = context.timeRemaining { wait = min(wait, remaining - .milliseconds(20)) }
            let millis = max(0, wait.components.seconds * 1_000 + wait.components.attoseconds / 1_000_000_000_000_000)
            poll.timer = poll.eventLoop.assumeIsolated().scheduleTask(in: .milliseconds(millis)) {
                poll.attempt(final: true)
            }
            poll.counted = true
            application.eventLongPolls.add(1, ordering: .relaxed)
            // A poll whose client has gone (connection closed, deadline passed) stops waiting at
            // once: otherwise it held its request and its commit waiter, and ran a scan on every
            // commit, for up to a minute after its caller left.
            let eventLoop = poll.eventLoop
            respond.whenCancelled { [weak poll] in
                guard let poll else { return }
                eventLoop.execute { poll.finish(.failure(CancellationError())) }
            }
        }
        poll.attempt(final: request.waitSeconds == 0)
    }

    private func attempt(final: Bool) {
        guard !done else { return }
        let committed = writer.committed
        let request = self.request
        let read = { @Sendable () throws -> (page: EventPage, encoded: [UInt8]) in
            try PageFitting.fitted(requested: request.limit, read: { limit in
                try EventFeedCalls.page(committed.ledger, afterSeq: request.afterSeq, limit: limit,
                                        types: request.types, subscriptionID: request.subscriptionID)
            }, count: \.events.count, encode: { ResponseEncoding.listEvents($0, in: committed.ledger) })
        }
        guard committed.ledger.eventsStartInArchive(after: request.afterSeq) else {
            answer(Result(catching: read), committed: committed, final: final)
            return
        }
        // Old events are read back from the archive's files: off the event loop.
        NIOThreadPool.singleton.runIfActive(eventLoop: eventLoop, read).whenComplete { [self] result in
            answer(result, committed: committed, final: final)
        }
    }

    private func answer(_ result: Result<(page: EventPage, encoded: [UInt8]), any Error>, committed: CommittedState,
                        final: Bool) {
        guard !done else { return }
        let page: EventPage
        let encoded: [UInt8]
        switch result {
        case .success(let read): (page, encoded) = read
        case .failure(let error):
            finish(.failure(error))
            return
        }
        let reachedEnd = page.nextAfterSeq >= page.lastSeq
        if !page.events.isEmpty || !reachedEnd || final {
            finish(.success(encoded))
            return
        }
        // Nothing yet: go on from where this scan ended once another batch commits.
        request.afterSeq = Int64(page.nextAfterSeq)
        let eventLoop = self.eventLoop
        commitWait = writer.commits.wait(after: committed.sequence) { [self] open in
            eventLoop.execute { self.attempt(final: !open) }
        }
    }

    private func finish(_ result: Result<[UInt8], any Error>) {
        guard !done else { return }
        done = true
        timer?.cancel()
        if let commitWait { writer.commits.cancelWait(commitWait) }
        if counted { application.eventLongPolls.subtract(1, ordering: .relaxed) }
        respond(encoded: result)
    }
}

/// WatchEvents (E6): the backlog, then each event as it commits. Once it has sent the backlog,
/// a consumer that falls more than `lagLimit` unsent events behind is ended with
/// RESOURCE_EXHAUSTED (it goes on with ListEvents); writers never wait for it. The stream ends
/// OK when creditd shuts down.
///
/// The backlog does not count as falling behind: E5 keeps at least a million events, and a
/// stream from an old position was ended before it sent anything. Nor do the events its filters
/// skip, which it never sends: a filtered stream was ended whenever the whole book wrote
/// 10,000 events between two of its pages.
enum EventStream {
    static let lagLimit: UInt64 = 10_000

    static func run(gate: ApplicationGate, request: Creditd_V1_WatchEventsRequest, stream: ServerStreamWriter) async throws {
        let application = try gate.require()
        let writer = application.writer
        application.eventStreams.add(1, ordering: .relaxed)
        defer { application.eventStreams.subtract(1, ordering: .relaxed) }
        var after = request.afterSeq
        var sentBacklog = false
        let filtered = !request.types.isEmpty || !request.subscriptionID.isEmpty
        while true {
            let committed = writer.committed
            let from = after
            let read = { @Sendable () throws -> EventPage in
                try EventFeedCalls.page(committed.ledger, afterSeq: from, limit: 1_000,
                                        types: request.types, subscriptionID: request.subscriptionID)
            }
            // Old events are read back from the archive's files: off the event loop.
            let page = committed.ledger.eventsStartInArchive(after: after)
                ? try await NIOThreadPool.singleton.runIfActive(read) : try read()
            var unsent = page.lastSeq - UInt64(max(after, 0))
            if sentBacklog, unsent > lagLimit, filtered {
                let count = { @Sendable () throws -> Int in
                    try EventFeedCalls.count(committed.ledger, afterSeq: from, types: request.types,
                                             subscriptionID: request.subscriptionID, upTo: Int(lagLimit) + 1)
                }
                unsent = UInt64(committed.ledger.eventsStartInArchive(after: after)
                    ? try await NIOThreadPool.singleton.runIfActive(count) : try count())
            }
            if sentBacklog, unsent > lagLimit {
                throw RPCError.domain(.resourceExhausted, reason: "consumer_too_slow",
                    "the stream is more than \(lagLimit) unsent events behind; go on with ListEvents after seq \(after)",
                    metadata: ["after_seq": String(after)])
            }
            // A page in batches of up to 64 events and about 1 MiB: few hand-offs to the
            // connection, while what the connection buffers for a stream stays small (a batch
            // is written before the next). An event may take about 2 MiB (its customer twice
            // and its plan, bounded at 1 MiB together: FreeText), so 64 of them could have held
            // 128 MiB for one stream.
            var batch: [[UInt8]] = []
            var batchBytes = 0
            for event in page.events {
                let encoded = ResponseEncoding.event(event, in: committed.ledger)
                batch.append(encoded)
                batchBytes += encoded.count
                if batch.count == 64 || batchBytes >= 1 << 20 {
                    try await stream.send(encoded: batch)
                    batch.removeAll(keepingCapacity: true)
                    batchBytes = 0
                }
            }
            if !batch.isEmpty { try await stream.send(encoded: batch) }
            after = Int64(page.nextAfterSeq)
            if page.nextAfterSeq >= page.lastSeq {
                // At the end of the feed: wait for the next commit, or end cleanly at shutdown.
                sentBacklog = true
                guard await writer.commits.next(after: committed.sequence) else { return }
            }
        }
    }
}

enum EventFeedCalls {
    static func page(_ ledger: Ledger, afterSeq: Int64, limit: Int32, types: [Creditd_V1_EventType],
                     subscriptionID: String) throws -> EventPage {
        try mappingErrors {
            try ledger.listEvents(afterSeq: afterSeq, limit: limit, types: domainTypes(types), subscriptionId: subscriptionID)
        }
    }

    /// How many events after `afterSeq` the filters match, up to `limit` (`Ledger.countEvents`).
    static func count(_ ledger: Ledger, afterSeq: Int64, types: [Creditd_V1_EventType], subscriptionID: String,
                      upTo limit: Int) throws -> Int {
        try mappingErrors {
            try ledger.countEvents(afterSeq: UInt64(max(afterSeq, 0)), types: domainTypes(types),
                                   subscriptionId: subscriptionID, upTo: limit)
        }
    }

    private static func domainTypes(_ types: [Creditd_V1_EventType]) -> [EnumField<EventType>] {
        types.map { EnumField(wireValue: Int32($0.rawValue)) }
    }

    private static func mappingErrors<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as DomainError {
            throw error.rpcError
        } catch {
            // A kept event that cannot be read back (EventArchiveReadError): the archive's
            // file is missing or damaged.
            throw RPCError.domain(.dataLoss, reason: "event_archive_unreadable", "\(error)")
        }
    }
}
