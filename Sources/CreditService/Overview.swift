// CreditService: creditd's application layer, between the server and the domain.
//
// What it owns. The single writer of the state (LedgerWriter, a dedicated thread) and the
// committed state it publishes (CommittedState, CommitSignal); the Credits and Admin handlers
// (CreditsService, AdminService, EventFeedCalls for ListEvents/WatchEvents), the mapping between
// protobuf and domain values (CommandMapping for requests, ProtoMapping for responses), the
// journal entry format and replay (JournalEntry, CreditApplication.replay), ledger snapshots
// (SnapshotCodec), start-up (CreditApplication, ApplicationGate), the clock (DaemonClock) and
// the daemon's metrics (DaemonMetrics).
//
// The path of a call (docs/architecture.md).
//   - A read runs on the connection's event loop against `LedgerWriter.committed`: the ledger
//     after the last durable batch. It never waits for the writer or an fsync. The reads of one
//     read burst have their subscriptions brought into the cache together first (ReadLookAhead).
//   - A write is handed to the writer thread (one hop). The writer takes every command waiting,
//     applies each to its working ledger, journals the request bytes as received, makes the
//     whole batch durable with one write and one fdatasync (DurableStore.appendDurably),
//     publishes the new committed state, and completes each call on its event loop (second hop,
//     one task per loop for the batch: ReplyBatch).
//
// Invariants.
//   - Nothing is acknowledged before its journal record is durable, and no read shows a change
//     that is not durable.
//   - One writer: commands are applied one at a time, in one order; replay applies the same
//     step (LedgerWriter.apply) to the same records.
//   - After a journal fault the writer abandons its working ledger, answers UNAVAILABLE with
//     persistence_not_applied or persistence_outcome_unknown, refuses writes until restart and
//     reads keep the last committed state; health turns NOT_SERVING.
//   - Time is a command: on the system clock the writer sleeps until the next due instant and
//     journals a tick; with the manual clock AdvanceClock does.
//   - Protobuf stops here: the domain sees only its own values, and domain errors become a status
//     with a stable reason in one place (StatusMapping.swift, docs/billing-rules.md §10).
//
// Entry points.
//   - CreditApplication(configuration:logger:) recovers the state and starts the writer;
//     CreditApplication.services(gate:hooks:) returns the RPC services for the server;
//     runScheduler() (snapshots the writer asks for), takeSnapshot(), shutdown().
