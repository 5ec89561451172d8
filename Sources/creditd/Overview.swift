// creditd: the daemon executable.
//
// What it owns. Flags and the configuration file (CreditdCommand: `creditd [serve]` and
// `creditd verify-state DIR`), start-up and shutdown order, reload on SIGHUP or
// `creditctl reload`, sd_notify and the watchdog (Daemon), and the test-only service mounted
// with CREDITD_TEST_SERVICE=1 (TestService).
// Conventions: docs/operations.md §2 and §5; configuration keys in the README.
//
// Invariants.
//   - Start-up: take the socket (answering NOT_SERVING), recover the state, then SERVING and
//     only then READY=1. Shutdown: NOT_SERVING, STOPPING=1, drain, final snapshot, exit 0.
//   - `--now` applies only with `--clock manual`, and only to a new state directory; otherwise
//     creditd refuses to start (system clock) or warns (existing state).
//   - The executable holds no billing logic: it wires CreditServer, CreditService and
//     SystemdSupport together.
//
// Entry points. CreditdCommand (@main), Serve.run(), Daemon.run(_:).
