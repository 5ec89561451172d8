import ArgumentParser

struct CreditCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "creditctl",
        abstract: "Operate creditd: subscriptions, credits and refunds, and monitoring probes.",
        discussion: """
            Exit codes: 0 ok, 1 RPC failed, 2 usage, 69 unavailable, 75 timeout, \
            77 permission denied. `health` and `check` use their own probe codes.
            """,
        version: "0.1.0",
        subcommands: [
            CreateSubscription.self, GetSubscription.self, ListSubscriptions.self,
            CancelSubscription.self, ResumeSubscription.self, ChangeSeats.self,
            RefundStatus.self, ListInvoices.self, RecordRefundOutcome.self,
            Stats.self, TakeSnapshot.self, Clock.self, AdvanceClock.self, Reload.self,
            Metrics.self, Health.self, Check.self,
        ]
    )
}
