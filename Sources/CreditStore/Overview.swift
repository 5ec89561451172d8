// CreditStore: creditd's durable state on real files.
//
// What it owns. The journal (segments `journal-<firstSeq>.log` of length + CRC32C + sequence +
// payload records), snapshots (`snapshot-<lastSeq>.snap`, header + CRC32C + payload), the
// LOCK file that keeps a second daemon out, recovery at open, offline verification
// (`creditd verify-state`), and a file-operations seam with fault injection for tests.
// The on-disk layout is written out in Format.swift; the README ("Durability and recovery")
// and docs/architecture.md describe how the daemon uses it.
//
// Invariants.
//   - append + waitDurable returns only after the record is fdatasync'ed; records appended
//     while a sync runs share the next one (group commit).
//   - After any write or fsync error the store enters a fault state and refuses every later
//     append: it never retries, because a failed fsync may have lost dirty pages.
//   - Snapshots are written to a temporary file, fsynced, renamed, and the directory fsynced.
//   - Recovery truncates only a torn last record (counted in the stats); any other damage, a
//     sequence gap or an unknown version refuses to open, naming the file and the offset.
//   - Payloads are opaque bytes: the store knows nothing of the ledger or of protobuf.
//
// Entry points.
//   - DurableStore.open(directory:options:) -> (store, Recovery with snapshot and records).
//   - DurableStore.append / waitDurable / appendAndWait, writeSnapshot, stats, close.
//   - verifyStateDirectory(_:) for the offline check.
