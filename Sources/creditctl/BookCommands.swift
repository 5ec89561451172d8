import ArgumentParser
import CreditClient
import CreditProto
import CreditWire
import Foundation
import SwiftProtobuf

// The whole book (Q1-Q3) and the event feed (E1-E6): `credits` and `events`.

/// `--state`: a credit state by its proto snake name (`refund_pending`).
struct CreditStateArgument: ExpressibleByArgument {
    let proto: Creditd_V1_CreditState

    init?(argument: String) {
        let wanted = argument.lowercased().replacingOccurrences(of: "-", with: "_")
        guard let found = Creditd_V1_CreditState.allCases.first(where: { $0 != .unspecified && snakeName($0) == wanted })
        else { return nil }
        proto = found
    }

    static var allValueStrings: [String] {
        Creditd_V1_CreditState.allCases.filter { $0 != .unspecified }.map { snakeName($0) }
    }
}

/// `--type`: an event type by its proto snake name (`credit_state_changed`).
struct EventTypeArgument: ExpressibleByArgument {
    let proto: Creditd_V1_EventType

    init?(argument: String) {
        let wanted = argument.lowercased().replacingOccurrences(of: "-", with: "_")
        guard let found = Creditd_V1_EventType.allCases.first(where: { $0 != .unspecified && snakeName($0) == wanted })
        else { return nil }
        proto = found
    }

    static var allValueStrings: [String] {
        Creditd_V1_EventType.allCases.filter { $0 != .unspecified }.map { snakeName($0) }
    }
}

/// The ListCredits filters, shared by `credits` and `export credits`.
struct CreditFilterOptions: ParsableArguments {
    @Option(name: .customLong("state"), help: "Only credits in this state (repeatable): pending, applied, consumed, refund_pending, refunded.")
    var states: [CreditStateArgument] = []
    @Flag(name: .customLong("overdue"), help: "Only overdue credits (past expected_by, still pending).") var overdue = false
    @Flag(name: .customLong("refund-overdue"), help: "Only credits whose refund is overdue.") var refundOverdue = false
    @Option(help: "Only this customer (exact match).") var customer: String = ""
    @Option(name: .customLong("subscription"), help: "Only this subscription.") var subscription: String = ""
    @Option(help: "Only this currency (ISO 4217).") var currency: String = ""

    func request(pageSize: Int32, pageToken: String, view: Creditd_V1_CreditView = .full) -> Creditd_V1_ListCreditsRequest {
        var request = Creditd_V1_ListCreditsRequest()
        request.view = view
        request.states = states.map(\.proto)
        request.overdueOnly = overdue
        request.refundOverdueOnly = refundOverdue
        request.customer = customer
        request.subscriptionID = subscription
        request.currency = currency.uppercased()
        request.pageSize = pageSize
        request.pageToken = pageToken
        return request
    }
}

struct ListCredits: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "credits",
        abstract: "Credits across all subscriptions, filtered, in creation order (ListCredits).",
        discussion: """
            Examples: `creditctl credits --state refund_pending`, `creditctl credits --overdue --customer acme --all`. \
            Without --all, one page is printed and the next page's token is named on the last line.
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @OptionGroup var filters: CreditFilterOptions
    @Option(name: .customLong("page-size"), help: "Credits per page (1-1000).") var pageSize: Int32 = 100
    @Option(name: .customLong("page-token"), help: "Continue from a previous page.") var pageToken: String = ""
    @Flag(name: .customLong("all"), help: "Follow every page to the end.") var all = false

    func run() async throws {
        let filters = self.filters, pageSize = self.pageSize, all = self.all
        var token = pageToken
        let response: Creditd_V1_ListCreditsResponse = try await withSession(connection) { session in
            var merged = Creditd_V1_ListCreditsResponse()
            repeat {
                let page = try await session.call(MethodTable.Credits.listCredits, filters.request(pageSize: pageSize, pageToken: token))
                merged.credits += page.credits
                merged.asOfUnixNanos = page.asOfUnixNanos
                merged.nextPageToken = page.nextPageToken
                token = page.nextPageToken
            } while all && !token.isEmpty
            return merged
        }
        try emit(response, output.output) { Render.bookCredits(response) }
    }
}

struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events",
        abstract: "The event feed (ListEvents): every change, in sequence order; --follow keeps printing like tail -F.",
        discussion: """
            Every line starts with the event's sequence number; to resume after an interruption, \
            pass the last one printed as --after. Without --follow, prints what is in the feed now \
            and names the --after for next time on stderr. With -o json, one JSON object per line. \
            --follow rides out a restart of creditd: once it has read from the feed, a lost \
            connection is retried (saying so on stderr) and the feed resumes after the last event \
            printed.
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Option(help: "Start after this sequence number (0: from the oldest kept event).") var after: Int64 = 0
    @Option(name: .customLong("type"), help: "Only events of this type (repeatable), e.g. credit_state_changed.") var types: [EventTypeArgument] = []
    @Option(name: .customLong("subscription"), help: "Only events of this subscription.") var subscription: String = ""
    @Flag(name: [.customShort("f"), .customLong("follow")], help: "Keep waiting for new events (long polls) until interrupted.") var follow = false
    @Option(name: .customLong("limit"), help: "Events per call (1-1000).") var limit: Int32 = 1000
    @Option(name: .customLong("wait"), help: "Seconds each long poll waits with --follow (1-60).") var wait: Int32 = 30

    static var jsonOptions: JSONEncodingOptions {
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        return options
    }

    /// Where `--after 0` starts once the feed was pruned: before the oldest kept event, from
    /// the events_pruned answer to the first call; nil for any other answer or position.
    static func startsOver(after current: Int64, asked: Int64, _ error: RPCError) -> Int64? {
        guard asked == 0, current == 0, error.reason == "events_pruned",
              let oldest = error.errorReason?.metadata["oldest_seq"].flatMap(Int64.init), oldest > 1 else { return nil }
        return oldest - 1
    }

    func validate() throws {
        guard after >= 0 else { throw ValidationError("--after must be 0 or more") }
        guard (1...1000).contains(limit) else { throw ValidationError("--limit must be 1-1000") }
        guard (1...60).contains(wait) else { throw ValidationError("--wait must be 1-60") }
    }

    func run() async throws {
        var request = Creditd_V1_ListEventsRequest()
        request.afterSeq = after
        request.limit = limit
        request.types = types.map(\.proto)
        request.subscriptionID = subscription
        var header = output.output == .table
        var printedOnce = false
        var retryDelay = Events.firstRetryDelay
        while true {
            do {
                let next: UInt64 = try await withSession(connection) { session in
                    if retryDelay > Events.firstRetryDelay {
                        FileHandle.standardError.write(Data("creditctl: events: connected again; resuming after seq \(request.afterSeq)\n".utf8))
                        retryDelay = Events.firstRetryDelay
                    }
                    return try await read(session, &request, header: &header, answered: &printedOnce)
                }
                if output.output == .table {
                    FileHandle.standardError.write(Data("creditctl: resume with --after \(next)\n".utf8))
                }
                return
            } catch let failure as CommandFailure where follow && printedOnce && Events.isOutage(failure) {
                // creditd is restarting (or stopped): a follower waits for it, as `tail -F` waits
                // for its file, rather than end a consumer's pipeline. Only after a first answer:
                // a follower that never got one is more likely pointed at the wrong socket.
                if retryDelay == Events.firstRetryDelay {
                    let reason = (failure.codeName.map { "\($0): " } ?? "") + terminalSafe(failure.message)
                    FileHandle.standardError.write(Data("creditctl: events: \(reason); reconnecting, resuming after seq \(request.afterSeq)\n".utf8))
                }
                try await Task.sleep(for: retryDelay)
                retryDelay = min(retryDelay * 2, Events.longestRetryDelay)
            }
        }
    }

    /// Prints pages on one connection, moving `request.afterSeq` past each page printed; returns
    /// where the feed ended (without --follow), or throws when the connection fails.
    private func read(_ session: Session, _ request: inout Creditd_V1_ListEventsRequest, header: inout Bool,
                      answered: inout Bool) async throws -> UInt64 {
        let format = output.output
        while true {
            request.waitSeconds = follow ? wait : 0
            let timeout = follow ? Duration.seconds(Int64(wait)) + session.timeout : session.timeout
            let page: Creditd_V1_ListEventsResponse
            do {
                page = try await session.client.listEvents(request, timeout: timeout)
            } catch let error as RPCError where Events.startsOver(after: request.afterSeq, asked: after, error) != nil {
                // `--after 0` is "from the oldest kept event": once the feed has been pruned
                // (E5), seq 0 is gone and the daemon answers events_pruned with the oldest
                // seq it keeps. Nothing was printed yet; start there.
                request.afterSeq = Events.startsOver(after: request.afterSeq, asked: after, error)!
                continue
            }
            answered = true
            var text = ""
            for event in page.events {
                switch format {
                // One line per event; unset payload messages stay out (E2: the type says which are set).
                case .json: text += try event.jsonString(options: Events.jsonOptions) + "\n"
                case .table:
                    if header {
                        text += "SEQ\tTYPE\tDATE\tSUBSCRIPTION\tCUSTOMER\tDETAIL\n"
                        header = false
                    }
                    text += Render.eventLine(event) + "\n"
                }
            }
            if !text.isEmpty {
                try OutputWriter.write(text)
            }
            request.afterSeq = Int64(page.nextAfterSeq)
            // Without --follow, stop once the feed's end (as of this answer) is reached.
            // A short page, even an empty one, is not the end of the feed (E4, Q1): only
            // reaching lastSeq is.
            if !follow && page.nextAfterSeq >= page.lastSeq { return page.nextAfterSeq }
        }
    }

    static let firstRetryDelay: Duration = .milliseconds(250)
    static let longestRetryDelay: Duration = .seconds(5)

    /// A failure that a restart of creditd explains: the connection closed or refused, the
    /// socket gone, no answer, or UNAVAILABLE (draining, recovering, stopping).
    static func isOutage(_ failure: CommandFailure) -> Bool {
        failure.exitCode == CtlExit.unavailable || failure.exitCode == CtlExit.timeout
    }
}

extension Render {
    static func bookCredits(_ response: Creditd_V1_ListCreditsResponse) -> String {
        var table = TextTable("CREDIT", "SUBSCRIPTION", "CUSTOMER", "STATE", "AMOUNT", "REMAINING",
                              "EXPECTED BY", "REFUND BY", "OVERDUE")
        for c in response.credits {
            var overdue: [String] = []
            if c.overdue { overdue.append("credit") }
            if c.refundOverdue { overdue.append("refund") }
            table.add(c.creditID, c.subscriptionID, orDash(c.customer), snakeName(c.state),
                      Money.format(c.amountMinor, c.currency), Money.format(c.remainingMinor, c.currency),
                      orDash(c.expectedBy), orDash(c.refundExpectedBy), overdue.isEmpty ? "no" : overdue.joined(separator: ","))
        }
        var text = response.credits.isEmpty ? "no credits\n" : table.rendered
        if !response.nextPageToken.isEmpty { text += "next page: --page-token \(response.nextPageToken)\n" }
        return text
    }

    /// One tab-separated line of `creditctl events`.
    static func eventLine(_ e: Creditd_V1_Event) -> String {
        var detail = ""
        if e.hasCredit {
            let c = e.credit
            // The credit as it stands after the whole command (E2), so "remaining" may already be later.
            detail = "credit \(c.creditID) -> \(snakeName(e.creditState.state)), \(Money.format(c.amountMinor, c.currency)) (now \(snakeName(c.state)), remaining \(Money.format(c.remainingMinor, c.currency)))"
        } else if e.hasInvoice {
            let i = e.invoice
            detail = "invoice \(i.invoiceID) \(snakeName(i.kind)) \(Money.format(i.totalMinor, i.currency))\(i.settled ? " settled" : "")"
        } else if e.hasSubscription {
            let s = e.subscription
            detail = "\(snakeName(s.status)) seats \(s.seats) period \(s.currentPeriod.periodStart)..\(s.currentPeriod.periodEnd)"
        }
        return [String(e.seq), snakeName(e.type), e.date, e.subscriptionID, orDash(e.customer), detail]
            .map(terminalSafe).joined(separator: "\t")
    }
}
