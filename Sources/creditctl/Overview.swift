// creditctl: the operators' CLI for creditd and its monitoring probe (also `check_creditd`).
//
// What it owns. One subcommand per RPC (SubscriptionCommands, CreditCommands, AdminCommands,
// BookCommands: `credits` and `events`), bulk `import` and `export` (ImportExport),
// the probes `health`, `check` and `metrics` (ProbeCommands, AdminCommands), connection and
// output options (Options), argument normalization: common options before the subcommand,
// negative numbers, the check_creditd name (Invocation), table and JSON output (Output,
// JSONOutput), and the mapping of failures to stderr lines and exit codes (Session, Failure).
// Conventions: docs/operations.md §7 (and §2, §3 for the probes); manual pages in docs/man/.
//
// Invariants.
//   - Results on stdout, errors on stderr as `creditctl: error: <GRPC_CODE>: <reason>: <text>`
//     (usage errors: `creditctl: error: usage: <text>`).
//   - Exit codes: 0 ok, 1 call failed, 2 usage, 69 unavailable, 75 timeout, 77 permission denied;
//     `health` and `check` keep grpc_health_probe's and Nagios' codes; `import` exits 65 for a
//     file with bad lines (nothing written) and 1 when any line was refused.
//   - The output format never switches on the terminal; only JSON indentation does, and
//     `import`'s progress on stderr (a bar on a terminal, periodic lines otherwise).
//   - No validation the server does: numbers, ids and dates go to creditd as given. The one
//     exception is `import`, which checks a whole file before writing any of it (issue 15).
//
// Entry points. main.swift (parsing with the exit codes above), CreditCtl (the command tree).
