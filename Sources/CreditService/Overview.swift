// CreditService: creditd's application layer, between the server and the domain.
//
// What it owns. The ledger keeper, the single writer of the state (LedgerKeeper), the Credits and
// Admin handlers (CreditsService, AdminService), the mapping between protobuf and domain values
// (CommandMapping for requests, ProtoMapping for responses), the journal entry format and replay
// (JournalEntry, CreditApplication.replay), ledger snapshots (SnapshotCodec), start-up and the
// scheduler of time-driven transitions (CreditApplication, ApplicationGate), the clock (DaemonClock)
// and the daemon's metrics (DaemonMetrics).
//
// Invariants (docs/architecture.md).
//   - Nothing is acknowledged before its journal record is durable; reads wait for records in
//     flight, so they never show a change a crash could undo.
//   - One writer: the LedgerKeeper actor applies commands one at a time; while an fdatasync runs
//     further commands join the next batch (group commit) and are acknowledged in order.
//   - After a journal fault the keeper rolls back what was not durable, refuses writes
//     (UNAVAILABLE) and keeps serving reads; health turns NOT_SERVING.
//   - Time-driven transitions go through the keeper as ticks and are journaled like requests.
//   - Protobuf stops here: the domain sees only its own values, and domain errors become a status
//     with a stable reason in one place (docs/billing-rules.md §10).
//
// Entry points.
//   - CreditApplication(configuration:logger:) recovers the state and builds the keeper;
//     CreditApplication.services(gate:hooks:) returns the RPC services for the server;
//     runScheduler(), takeSnapshot(), shutdown().
