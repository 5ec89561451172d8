// CreditDomain: the billing rules of creditd, as pure values.
//
// What it owns. Money in integer minor units and the currency table (Money.swift, M1),
// civil dates, time zones and RFC 3339 instants (CivilDate, TimeZoneRules, Instant, RFC3339;
// T1), billing schedules and anchors (BillingSchedule; T2-T4), exact proration and the one
// rounding function (Subscription.prorate; P1-P7, M2-M5), cancels and seat changes
// (Subscription; C1-C8, S1-S8, W1-W4), credits and invoices (Credit, Invoice; L1-L11),
// idempotency keys (Idempotency, Keys; I1-I7), and the errors with their reasons (Errors; §10).
// In memory, a subscription's credits are a CreditList: packed variable-length records in one
// byte buffer, decoded as `Credit` values when read (at 1M subscriptions, a third of the heap
// saved; the packing is never written to disk).
// The snapshot encoding of the ledger lives in LedgerEncoding; it reaches the stored fields
// through `package` initializers and properties (StoredInitializers.swift and the types).
// Rule ids and bare "§N" in this module refer to docs/billing-rules.md.
//
// Invariants.
//   - No I/O, no clock, no protobuf: every result is a function of (ledger, command, now).
//   - Money never touches floating point; products are formed in Int128 and rounded once, by
//     R(x) = floor(x + 1/2), cumulatively per period (P4), so a period's lines sum to R(A_n).
//   - Ledger.execute is deterministic: replaying the same commands (and advance ticks) on an
//     equal ledger gives an equal ledger. Journal replay and dry runs depend on it.
//   - A failed request changes nothing except the time-driven transitions due before it (T6).
//   - Within a period the lines never sum below -C (M5); property tests check it.
//
// Entry points.
//   - Ledger.execute(_:at:callerUID:dryRun:) for every write (Command -> CommandResult).
//   - Ledger.advance(to:) runs the transitions that fall due (renewals, credit dates, settlements).
//   - Ledger.subscription(id:), listSubscriptions, refundStatus, invoices for reads;
//     nextDueInstant() for the scheduler.
//   - RFC3339.parse/format for instants as text.
