import ArgumentParser
import CreditProto

extension Creditd_V1_RefundOutcome: ExpressibleByArgument {
    public init?(argument: String) {
        switch argument.lowercased() {
        case "succeeded": self = .succeeded
        case "failed": self = .failed
        default: return nil
        }
    }
    public static var allValueStrings: [String] { ["succeeded", "failed"] }
}

struct RefundStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "refunds",
        abstract: "Where every credit of a subscription stands: state, dates, overdue flags, totals.",
        aliases: ["refund-status"])

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Subscription id.") var id: String
    @Option(name: .customLong("credit"), help: "Only this credit.") var creditID: String = ""

    func run() async throws {
        var request = Creditd_V1_GetRefundStatusRequest()
        request.subscriptionID = id
        request.creditID = creditID
        let response: Creditd_V1_GetRefundStatusResponse = try await withSession(connection) {
            try await $0.call(MethodTable.Credits.getRefundStatus, request)
        }
        try emit(response, output.output) { Render.refundStatus(response) }
    }
}

struct ListInvoices: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "invoices", abstract: "The invoices of a subscription, in order of issue.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Subscription id.") var id: String

    func run() async throws {
        var request = Creditd_V1_ListInvoicesRequest()
        request.subscriptionID = id
        let response: Creditd_V1_ListInvoicesResponse = try await withSession(connection) {
            try await $0.call(MethodTable.Credits.listInvoices, request)
        }
        try emit(response, output.output) { Render.invoices(response.invoices) }
    }
}

struct RecordRefundOutcome: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "refund-outcome", abstract: "Report a refund attempt as succeeded or failed.")

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "Subscription id.") var id: String
    @Argument(help: "Credit id.") var creditID: String
    @Argument(help: "succeeded or failed.") var outcome: Creditd_V1_RefundOutcome

    func run() async throws {
        var request = Creditd_V1_RecordRefundOutcomeRequest()
        request.subscriptionID = id
        request.creditID = creditID
        request.outcome = outcome
        let response: Creditd_V1_RecordRefundOutcomeResponse = try await withSession(
            connection, change: UnansweredChange(idempotencyKey: "", lookup: "creditctl refunds \(id)")) {
            try await $0.call(MethodTable.Credits.recordRefundOutcome, request)
        }
        try emit(response, output.output) {
            fieldList([
                ("credit", creditID),
                ("ignored", RecordRefundOutcome.ignoredText(response)),
                ("state", snakeName(response.state)),
                ("remaining", Money.format(response.remainingMinor, response.credit.currency)),
                ("refunded", Money.format(response.refundedMinor, response.credit.currency)),
            ])
        }
    }
}

extension RecordRefundOutcome {
    /// L9: only a `refund_pending` credit takes a report; any other is ignored, and says why.
    static func ignoredText(_ response: Creditd_V1_RecordRefundOutcomeResponse) -> String {
        guard response.ignored else { return "false" }
        let state = snakeName(response.state)
        let why = response.state == .refunded
            ? "the credit is already refunded (a late report)"
            : "the credit is \(state), and only a refund_pending credit takes a refund outcome"
        return "true: \(why); nothing changed"
    }
}

/// Text renderings of creditd's messages.
enum Render {
    static func subscription(_ sub: Creditd_V1_Subscription) -> String {
        let period = sub.currentPeriod
        var pairs: [(String, String)] = [
            ("subscription", sub.subscriptionID),
            ("customer", orDash(sub.customer)),
            ("plan", orDash(sub.plan)),
            ("status", snakeName(sub.status)),
            ("seats", String(sub.seats)),
            ("unit price", Money.format(sub.unitPriceMinor, sub.currency)),
            ("interval", snakeName(sub.interval)),
            ("anchor", sub.interval == .annual ? "month \(sub.anchorMonth) day \(sub.anchorDay)" : "day \(sub.anchorDay)"),
            ("time zone", sub.timeZone),
            ("refund policy", snakeName(sub.refundPolicy)),
            ("start date", sub.startDate),
            ("period", "\(period.periodStart) .. \(period.periodEnd) (\(period.periodDays) days)"),
            ("charged", "\(Money.format(period.chargedMinor, sub.currency)) for \(period.chargedSeats) seats"),
            ("next billing date", orDash(sub.nextBillingDate)),
        ]
        if sub.scheduledSeats > 0 { pairs.append(("scheduled seats", "\(sub.scheduledSeats) at \(period.periodEnd)")) }
        if !sub.cancelEffectiveDate.isEmpty { pairs.append(("cancel effective", sub.cancelEffectiveDate)) }
        return fieldList(pairs)
    }

    static func line(_ line: Creditd_V1_LedgerLine, _ currency: String) -> [(String, String)] {
        let x = line.explanation
        var pairs: [(String, String)] = [
            ("line", Money.format(line.amountMinor, currency)),
            ("unit price p", rational(x.unitPrice)),
            ("seats delta", String(x.seatsDelta)),
            ("unused days", x.unusedDaysDiffer ? "differ per block" : "\(x.unusedDays) of \(x.periodDays)"),
            ("exact", rational(x.exact)),
            ("cumulative exact", rational(x.cumulativeExact)),
            ("carry", rational(x.carry)),
        ]
        for block in x.blocks {
            pairs.append(("block", "\(block.seats) seats from \(block.startDate), \(block.unusedDays) unused days"))
        }
        return pairs
    }

    static func rational(_ r: Creditd_V1_Rational) -> String {
        r.denominator == "1" || r.denominator.isEmpty ? orDash(r.numerator) : "\(r.numerator)/\(r.denominator)"
    }

    static func cancellation(_ response: Creditd_V1_CancelSubscriptionResponse) -> String {
        let record = response.cancellation
        let currency = record.finalInvoice.currency.isEmpty ? record.credit.currency : record.finalInvoice.currency
        var pairs: [(String, String)] = [
            ("mode", snakeName(record.mode)),
            ("effective date", record.effectiveDate),
            ("requested at", Instants.format(record.requestedAtUnixNanos)),
            ("entitlement ends", Instants.format(record.entitlementEndsAtUnixNanos)),
            ("already cancelled", String(record.alreadyCancelled)),
        ]
        if response.dryRun { pairs.append(("dry run", "true (nothing was changed)")) }
        if record.hasLine { pairs += line(record.line, currency) }
        var text = fieldList(pairs)
        if record.hasCredit { text += "\n" + credits([record.credit]) }
        if record.hasFinalInvoice { text += "\n" + invoices([record.finalInvoice]) }
        return text
    }

    static func seatChange(_ response: Creditd_V1_ChangeSeatsResponse) -> String {
        var pairs: [(String, String)] = [
            ("outcome", snakeName(response.outcome)),
            ("seats", "\(response.previousSeats) -> \(response.newSeats) (in force: \(response.seats))"),
            ("effective date", response.effectiveDate),
        ]
        if response.dryRun { pairs.append(("dry run", "true (nothing was changed)")) }
        if response.hasLine { pairs += line(response.line, response.currency) }
        var text = fieldList(pairs)
        if response.hasCredit { text += "\n" + credits([response.credit]) }
        return text
    }

    static func credits(_ credits: [Creditd_V1_Credit]) -> String {
        var table = TextTable("CREDIT", "SOURCE", "STATE", "AMOUNT", "REMAINING", "CONSUMED", "REFUNDED",
                              "DUE", "DEADLINE", "EXPECTED BY", "REFUND BY", "OVERDUE")
        for c in credits {
            var overdue: [String] = []
            if c.overdue { overdue.append("credit") }
            if c.refundOverdue { overdue.append("refund") }
            table.add(c.creditID, snakeName(c.source), snakeName(c.state),
                      Money.format(c.amountMinor, c.currency), Money.format(c.remainingMinor, c.currency),
                      Money.format(c.consumedMinor, c.currency), Money.format(c.refundedMinor, c.currency),
                      orDash(c.dueDate), orDash(c.deadline), orDash(c.expectedBy), orDash(c.refundExpectedBy),
                      overdue.isEmpty ? "no" : overdue.joined(separator: ","))
        }
        return table.rendered
    }

    static func refundStatus(_ response: Creditd_V1_GetRefundStatusResponse) -> String {
        let currency = response.currency
        var text = "subscription \(terminalSafe(response.subscriptionID)), as of \(response.asOfDate)\n\n"
        text += response.credits.isEmpty ? "no credits\n" : credits(response.credits)
        var history = TextTable("CREDIT", "STATE", "DATE", "AT")
        for credit in response.credits {
            for change in credit.history {
                history.add(credit.creditID, snakeName(change.state), change.date, Instants.format(change.atUnixNanos))
            }
        }
        if !response.credits.isEmpty { text += "\nhistory\n" + history.rendered }
        let t = response.totals
        text += "\ntotals\n" + fieldList([
            ("pending", Money.format(t.pendingMinor, currency)),
            ("applied", Money.format(t.appliedMinor, currency)),
            ("consumed", Money.format(t.consumedMinor, currency)),
            ("refund pending", Money.format(t.refundPendingMinor, currency)),
            ("refunded", Money.format(t.refundedMinor, currency)),
        ])
        return text
    }

    static func invoices(_ invoices: [Creditd_V1_Invoice]) -> String {
        var text = ""
        for invoice in invoices {
            text += "invoice \(invoice.invoiceID) (\(snakeName(invoice.kind))), issued \(invoice.issuedDate)"
            if !invoice.periodStart.isEmpty { text += ", period \(invoice.periodStart)..\(invoice.periodEnd)" }
            if !invoice.settlesOn.isEmpty { text += ", settles \(invoice.settlesOn)\(invoice.settled ? " (settled)" : "")" }
            text += "\n"
            var table = TextTable("  LINE", "AMOUNT", "CREDIT", "DATE", "DESCRIPTION")
            for line in invoice.lines {
                table.add("  " + snakeName(line.kind), Money.format(line.amountMinor, invoice.currency),
                          orDash(line.creditID), orDash(line.effectiveDate), line.description_p)
            }
            table.add("  total", Money.format(invoice.totalMinor, invoice.currency), "", "", "")
            text += table.rendered + "\n"
        }
        return text.isEmpty ? "no invoices\n" : text
    }
}
