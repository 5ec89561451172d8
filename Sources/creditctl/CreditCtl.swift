import ArgumentParser

struct CreditCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "creditctl",
        abstract: "Operate creditd: subscriptions, credits and refunds, and monitoring probes.",
        discussion: """
            Common options go before or after the subcommand: -s/--socket PATH (or \
            unix:PATH, unix:///PATH; default $CREDITD_SOCKET, then /run/creditd/creditd.sock), \
            -o/--output table|json, --timeout SECONDS (default 5).

            Exit codes: 0 ok, 1 RPC failed, 2 usage, 69 unavailable, 75 timeout, \
            77 permission denied; for the files of `import` and `export`: 65 bad data, 66 cannot \
            read, 73 cannot create, 74 I/O error; 141 (SIGPIPE) when the reader of standard \
            output has gone. `health` and `check` use their own probe codes.

            Errors go to stderr as `creditctl: error: <GRPC_CODE>: <reason>: <text>`; usage \
            errors as `creditctl: error: usage: <text>`. Manual pages: docs/man/; shell \
            completion: `creditctl --generate-completion-script bash|zsh|fish`.
            """,
        version: "0.1.0",
        subcommands: [
            CreateSubscription.self, GetSubscription.self, ListSubscriptions.self,
            CancelSubscription.self, ResumeSubscription.self, ChangeSeats.self,
            RefundStatusCommand.self, ListInvoices.self, RecordRefundOutcome.self,
            Stats.self, TakeSnapshot.self, Clock.self, AdvanceClock.self, Reload.self,
            Metrics.self, Health.self, Check.self,
            ListCredits.self, Events.self, Import.self, Export.self,
        ]
    )
}
