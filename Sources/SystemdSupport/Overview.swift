// SystemdSupport: systemd's daemon protocols, without libsystemd.
//
// What it owns. sd_notify datagrams (SystemdNotifier), the watchdog's timing (Watchdog),
// socket activation (ListenFDs), journald-friendly logging with priority prefixes and escaped
// lines (JournaldLogHandler), and reading the service's environment (Environment).
// Conventions: docs/operations.md §5 (systemd) and §6 (logging).
//
// Invariants.
//   - Without $NOTIFY_SOCKET nothing is sent; send failures are ignored, never fatal.
//   - Activated fds are taken only when LISTEN_PID is this process, checked to be listening
//     AF_UNIX stream sockets, marked close-on-exec, and the variables cleared before any thread
//     starts. An activated socket is never unlinked.
//   - The watchdog is active only when WATCHDOG_USEC is set for this pid; the daemon pings
//     only after a round trip through the server and the writer thread.
//   - One log record is one line on stderr; timestamps are left out when stderr is the journal.
//
// Entry points.
//   - SystemdNotifier(environment:) with ready / status / stopping / reloading / watchdog,
//     ListenFDs.takeFromProcessEnvironment(),
//     WatchdogConfiguration, JournaldLogHandler.bootstrap(level:).
