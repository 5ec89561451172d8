import ArgumentParser
import Foundation
import CreditProto

// Option values are small String enums rather than the generated proto enums: ArgumentParser
// shows the default of a RawRepresentable Int enum as its number (`default: 1`).

/// `--interval`.
enum IntervalArgument: String, ExpressibleByArgument, CaseIterable {
    case monthly, annual

    init?(argument: String) {
        switch argument.lowercased() {
        case "monthly": self = .monthly
        case "annual", "yearly": self = .annual
        default: return nil
        }
    }

    var proto: Creditd_V1_BillingInterval { self == .annual ? .annual : .monthly }
}

/// `--policy`.
enum PolicyArgument: String, ExpressibleByArgument, CaseIterable {
    case anytime, window_7d, window_72h

    init?(argument: String) {
        self.init(rawValue: argument.lowercased().replacingOccurrences(of: "-", with: "_"))
    }

    var proto: Creditd_V1_RefundPolicy {
        switch self {
        case .anytime: return .anytime
        case .window_7d: return .window7D
        case .window_72h: return .window72H
        }
    }
}

/// `cancel --mode`.
enum CancelModeArgument: String, ExpressibleByArgument, CaseIterable {
    case immediate, end_of_period

    init?(argument: String) {
        self.init(rawValue: argument.lowercased().replacingOccurrences(of: "-", with: "_"))
    }

    var proto: Creditd_V1_CancelMode { self == .end_of_period ? .endOfPeriod : .immediate }
}

struct CreateSubscription: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create a subscription and charge its first period.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Subscription id (1-255 characters).") var id: String
    @Option(help: "Customer reference.") var customer: String = ""
    @Option(help: "Plan name.") var plan: String = ""
    @Option(help: "Seats (at least 1).") var seats: Int64
    @Option(name: .customLong("price"), help: "Unit price per seat and period, in minor units (cents).") var priceMinor: Int64
    @Option(help: "ISO 4217 currency code, e.g. USD.") var currency: String
    @Option(help: "Billing interval: monthly or annual.") var interval: IntervalArgument = .monthly
    @Option(name: .customLong("time-zone"), help: "IANA time zone, e.g. Europe/Oslo.") var timeZone: String = "UTC"
    @Option(name: .customLong("policy"), help: "Refund policy: anytime, window_7d or window_72h.") var policy: PolicyArgument = .anytime
    @Option(name: .customLong("start-date"), help: "Optional check: must equal today's date in the time zone.") var startDate: String?

    func run() async throws {
        var request = Creditd_V1_CreateSubscriptionRequest()
        request.subscriptionID = id
        request.customer = customer
        request.plan = plan
        request.seats = seats
        request.unitPriceMinor = priceMinor
        request.currency = currency
        request.interval = interval.proto
        request.timeZone = timeZone
        request.refundPolicy = policy.proto
        request.startDate = startDate ?? ""
        let response: Creditd_V1_CreateSubscriptionResponse = try await withSession(
            connection, change: UnansweredChange(idempotencyKey: "", lookup: "creditctl get \(id)")) {
            try await $0.call(MethodTable.Credits.createSubscription, request)
        }
        try emit(response, output.output) {
            Render.subscription(response.subscription) + "\n" + Render.invoices([response.purchaseInvoice])
        }
    }
}

struct GetSubscription: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "Show one subscription.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Subscription id.") var id: String

    func run() async throws {
        var request = Creditd_V1_GetSubscriptionRequest()
        request.subscriptionID = id
        let response: Creditd_V1_GetSubscriptionResponse = try await withSession(connection) {
            try await $0.call(MethodTable.Credits.getSubscription, request)
        }
        try emit(response, output.output) { Render.subscription(response.subscription) }
    }
}

struct ListSubscriptions: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List subscriptions in id order.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Option(name: .customLong("page-size"), help: "Subscriptions per page (at most 1000).") var pageSize: Int32 = 100
    @Option(name: .customLong("page-token"), help: "Continue from a previous page (with the same filters).") var pageToken: String = ""
    @Option(help: "Only this customer's subscriptions (exact match, Q2).") var customer: String = ""
    @Option(name: .customLong("status"), help: "Only these statuses (repeatable): active, cancel_pending, cancelled, ended.")
    var statuses: [StatusArgument] = []

    func run() async throws {
        var request = Creditd_V1_ListSubscriptionsRequest()
        request.pageSize = pageSize
        request.pageToken = pageToken
        request.customer = customer
        request.statuses = statuses.map(\.proto)
        let response: Creditd_V1_ListSubscriptionsResponse = try await withSession(connection) {
            try await $0.call(MethodTable.Credits.listSubscriptions, request)
        }
        try emit(response, output.output) {
            var table = TextTable("ID", "STATUS", "SEATS", "PRICE", "INTERVAL", "PERIOD", "NEXT BILL", "TIME ZONE")
            for sub in response.subscriptions {
                table.add(sub.subscriptionID, snakeName(sub.status), String(sub.seats),
                          Money.format(sub.unitPriceMinor, sub.currency), snakeName(sub.interval),
                          "\(sub.currentPeriod.periodStart)..\(sub.currentPeriod.periodEnd)",
                          orDash(sub.nextBillingDate), sub.timeZone)
            }
            var text = table.rendered
            if !response.nextPageToken.isEmpty { text += "next page: --page-token \(response.nextPageToken)\n" }
            return text
        }
    }
}

struct CancelSubscription: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cancel", abstract: "Cancel a subscription: immediately (prorated credit) or at period end.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Subscription id.") var id: String
    @Option(help: "immediate or end_of_period.") var mode: CancelModeArgument = .immediate
    @Flag(name: .customLong("dry-run"), help: "Show the result without changing anything.") var dryRun = false
    @Option(name: [.customShort("k"), .customLong("idempotency-key")], help: "Makes retries safe: the same key replays the first answer.") var idempotencyKey: String = ""

    func run() async throws {
        var request = Creditd_V1_CancelSubscriptionRequest()
        request.subscriptionID = id
        request.mode = mode.proto
        request.dryRun = dryRun
        request.idempotencyKey = idempotencyKey
        let change = dryRun ? nil : UnansweredChange(idempotencyKey: idempotencyKey, lookup: "creditctl get \(id)")
        let response: Creditd_V1_CancelSubscriptionResponse = try await withSession(connection, change: change) {
            try await $0.call(MethodTable.Credits.cancelSubscription, request)
        }
        try emit(response, output.output) { Render.cancellation(response) }
    }
}

struct ResumeSubscription: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume", abstract: "Reverse a pending end-of-period cancel.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Subscription id.") var id: String

    func run() async throws {
        var request = Creditd_V1_ResumeSubscriptionRequest()
        request.subscriptionID = id
        var get = Creditd_V1_GetSubscriptionRequest()
        get.subscriptionID = id
        // The answer is the subscription either way (C7); reading it first tells whether an
        // end-of-period cancel was pending, so a no-op says so.
        let (before, response): (Creditd_V1_GetSubscriptionResponse?, Creditd_V1_ResumeSubscriptionResponse) =
            try await withSession(connection) { session in
                let before: Creditd_V1_GetSubscriptionResponse? = try? await session.call(MethodTable.Credits.getSubscription, get)
                return (before, try await session.call(MethodTable.Credits.resumeSubscription, request))
            }
        let wasPending = before.map { $0.subscription.status == .cancelPending } ?? true
        let note = wasPending
            ? "resumed: the end-of-period cancel is withdrawn"
            : "not resumed: \(id) had no pending end-of-period cancel (status \(snakeName(before!.subscription.status))); nothing changed"
        if output.output == .json, !wasPending {
            FileHandle.standardError.write(Data("creditctl: note: \(note)\n".utf8))
        }
        try emit(response, output.output) { note + "\n\n" + Render.subscription(response.subscription) }
    }
}

struct ChangeSeats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seats", abstract: "Change the seat count now (prorated) or at renewal.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Subscription id.") var id: String
    @Argument(help: "The new seat count.") var newSeats: Int64
    @Flag(name: .customLong("at-renewal"), help: "Take effect at the next renewal, without proration.") var atRenewal = false
    @Flag(name: .customLong("dry-run"), help: "Show the result without changing anything.") var dryRun = false
    @Option(name: [.customShort("k"), .customLong("idempotency-key")], help: "Makes retries safe: the same key replays the first answer.") var idempotencyKey: String = ""

    func run() async throws {
        var request = Creditd_V1_ChangeSeatsRequest()
        request.subscriptionID = id
        request.newSeats = newSeats
        request.timing = atRenewal ? .atRenewal : .now
        request.dryRun = dryRun
        request.idempotencyKey = idempotencyKey
        let change = dryRun ? nil : UnansweredChange(idempotencyKey: idempotencyKey, lookup: "creditctl get \(id)")
        let response: Creditd_V1_ChangeSeatsResponse = try await withSession(connection, change: change) {
            try await $0.call(MethodTable.Credits.changeSeats, request)
        }
        try emit(response, output.output) { Render.seatChange(response) }
    }
}
