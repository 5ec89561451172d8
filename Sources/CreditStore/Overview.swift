// CreditStore: the on-disk format and the rules recovery follows.
//
// This file holds no code; it documents what `Format.swift`, `DurableStore.swift`,
// `Recovery.swift`, `Verification.swift` and `EventArchiveFiles.swift` implement, in the manner
// of a Go doc.go.
//
// # The state directory
//
//   LOCK                                  flock(2)ed exclusively by the running store
//   journal-<firstSeq, 20 digits>.log     journal segments, named after their first record
//   snapshot-<lastSeq, 20 digits>.snap    the newest snapshot and the one before it
//   snapshot-<seq>.snap.tmp               a snapshot being written (removed by recovery)
//   events-<firstSeq, 20 digits>.arch     the event archive: sealed event chunks, named after
//                                         the first seq the file holds
//   <name>.corrupt-<unix ms>              copies and moved-aside segments left by --repair
//
// All integers are little-endian. Checksums are CRC32C (Castagnoli), `CRC32C.swift`.
//
// # Journal segment (segment format version 3; versions 1 and 2 are still read)
//
//   header, 32 bytes:
//     0  magic "CREDJRNL"
//     8  version u32            3 (2: no zeros written ahead; 1: no seals either)
//    12  reserved u32           0
//    16  firstSeq u64           equals the number in the file name
//    24  CRC32C of bytes 0..<24 u32
//    28  reserved u32           0
//
//   then records, back to back:
//     0  length u32             payload bytes
//     4  CRC32C u32             over length (bytes 0..<4), seq and payload (bytes 8...)
//     8  seq u64                firstSeq, firstSeq + 1, ... without gaps
//    16  payload                `length` bytes, opaque to the store (the service's journal entry)
//
//   and, from version 2 on, when the segment is full, one seal, its last record:
//     a record with seq 0 and the 16-byte payload "CREDSEAL" + nextFirstSeq u64, where
//     nextFirstSeq is the sequence number the next segment starts with.
//
//   and, from version 3 on, zeros to the end of the file after the last record (or the seal):
//     space written ahead (`StoreOptions.zeroFillBytes` at a time, never past `segmentSize`,
//     in the same write as the records that first pass the zeros written so far). Later
//     records overwrite them, so the fdatasync after a batch writes data and not the inode;
//     the file grows, and the inode is written, once per stretch. A record header is never
//     all zeros (its CRC covers the length and seq), so a zero header with only zeros after it
//     ends the records; the writer reopening the segment continues there. Rolling cuts a full
//     segment back to its seal (recovery accepts zeros after a seal: a crash may come first).
//     On ENOSPC the records are written again without the zeros, so a full disk still takes
//     records into space written before.
//
// Sequence numbers run on across segments: segment N+1 starts right after segment N's last
// record. A segment is rolled when the next record (plus room for the seal) would take it past
// `StoreOptions.segmentSize`; a larger record gets a segment of its own.
//
// Rolling, in this order (each step durable before the next):
//   1. create journal-<next>.log (O_EXCL), write its header, fdatasync it, fsync the directory;
//   2. append the seal to the old segment and fdatasync it;
//   3. write records to the new segment.
// So a sealed newest segment always means its successor was lost (recovery refuses to start),
// and a torn seal can only be followed by a successor that holds no record yet (recovery treats
// it as a torn tail). Version 1 segments have no seals; the store never appends to a segment of
// an older version (it starts a current one instead), so the chain is self-checking from the
// first v2 segment, and zeros after the records are read as space written ahead only in v3.
//
// # Event archive file (archive format version 1)
//
//   header, 32 bytes:
//     0  magic "CREDEVTS"
//     8  version u32            1
//    12  reserved u32           0
//    16  firstSeq u64           equals the number in the file name
//    24  CRC32C of bytes 0..<24 u32
//    28  reserved u32           0
//
//   then blocks, back to back, one per sealed chunk of the event feed:
//     0  length u32             payload bytes
//     4  CRC32C u32             of the payload
//     8  firstSeq u64           the seq of the chunk's first event
//    16  CRC32C of bytes 0..<16 u32
//    20  reserved u32           0
//    24  payload                opaque to the store (the service writes the chunk's 1,024 events
//                               as one events part of the ledger encoding, `EventChunkCodec`)
//
// A file takes blocks until it passes 64 MiB; the next block starts a new file. Blocks are
// written without an fdatasync: nothing depends on them until a snapshot names them (file,
// offset, length), and the service syncs the archive (files, then the directory for new files)
// before it writes that snapshot. Until then the events are also in the journal or in an older
// snapshot. So at open, for the snapshot recovery loaded, the store checks that every named
// block is within its file (else it refuses to start). The blocks after the last named one
// that read back whole and hold the next chunks in order (`unreferencedBlocks`) may be kept:
// recovery's replay takes them instead of archiving the same events again. The store then cuts
// the last kept file back to the end of its last kept block and removes every file after it;
// recovery replays those events from the journal and archives them again. Kept blocks are
// synced with the next snapshot, like new ones. After each snapshot, files older than every file
// the new snapshot and the one before it name are removed (the fallback snapshot keeps its
// events). A block is read back with its header checked (CRCs, length, first seq); a damaged
// one is an error for the call that reaches it, never other events.
//
// # Snapshot (snapshot format version 1)
//
//   header, 48 bytes:
//     0  magic "CREDSNAP"
//     8  version u32            1
//    12  reserved u32           0
//    16  lastSeq u64            the last journal record the snapshot includes (= file name)
//    24  payload length u64
//    32  wall time i64          Unix milliseconds when it was written
//    40  CRC32C of the payload u32
//    44  CRC32C of bytes 0..<44 u32
//   then the payload: opaque to the store (the service's encoded ledger, `SnapshotCodec`).
//
// The payload reaches the store in pieces (`SnapshotPayload`: the ledger's parts, encoded as
// they are asked for) and is written and checksummed piece by piece, never joined in memory:
// the payload goes in after room for the header, and the header, whose length and checksum
// are known only then, is written last.
// Written to `<name>.tmp`, fsynced, renamed, and the directory fsynced before `writeSnapshot`
// returns. Afterwards the store keeps that snapshot and the previous one, and deletes the
// segments the previous one fully covers, so a damaged newest snapshot still has a fallback.
//
// # Durability
//
// A record is acknowledged (`waitDurable`, `appendDurably` return) only after the write and an
// fdatasync that covers it. Every create, rename and unlink that recovery relies on is followed
// by an fsync of the directory before anything depending on it is acknowledged: a new segment
// before records go into it, a snapshot's rename before `writeSnapshot` returns, the state
// directory itself (its parent is fsynced at open), a repair copy before the original is cut.
// Deleting covered segments and old snapshots is fsynced too, but a crash that undoes it only
// brings back files that recovery skips.
//
// When a journal write fails, the segment is truncated back to its length after the last
// successful fdatasync and fsynced, and the store enters a sticky fault (`StoreFault`) that
// refuses every later append until it is reopened. The fault's `outcome` says what became of the
// refused records: `.notApplied` (the write failed and was cut back off, or the records were
// never written) or `.unknown` (fdatasync failed, or the cut-back failed: they may reappear).
//
// # Recovery (`StoreCore.open`, `analyzeStateDirectory`)
//
// 1. Snapshots, newest first: use the first that verifies; skip (warning) those that do not.
//    An unknown snapshot version stops everything (a newer build wrote it).
// 2. Replay the segments from the one holding lastSeq + 1 on, checking headers and continuity.
// 3. Damage, told apart as etcd's WAL does:
//    - not damage (v3): zeros from a record boundary, or from the seal, to the end of the file;
//    - torn (a crash mid-write; truncated, logged at warning): in the newest segment (or in a
//      torn seal, see above), a record shorter than its header or its length, or a record whose
//      bytes are zero from a 512-byte sector boundary to the end of the file, with no valid
//      record after it; a newest segment shorter than its header (removed);
//    - corrupt (refuse to start; `--repair` cuts there): a full-length record with non-zero
//      bytes whose CRC fails, any damage followed by valid records, a bad header elsewhere,
//      a sequence gap, a sealed newest segment (`missingSegment`), a snapshot newer than the
//      journal's end that does not verify (`acknowledgedStateLost`), an unknown version.
//    A flipped bit in the last record's length field that makes it reach past the end of the
//    file cannot be told from a torn write and is truncated (as in etcd).
//    - covered (read past, logged at warning, the file left as it is): a damaged or
//      out-of-sequence record in the segment that holds the snapshot's point, when the first
//      valid record after it carries at most snapshot + 1: everything the damage could hold is
//      in the snapshot and never replayed (`resumedPastCoveredDamage`). The writer appends
//      after the last valid record; each later start reads past the same bytes, as long as a
//      snapshot covers them. Covered damage in earlier segments is not read at all.
// 4. `repair: true` (`creditd --repair`): copy the damaged segment to `<name>.corrupt-<ms>`,
//    truncate it at the first bad record, move every later segment aside, accept a missing
//    newest segment or an unverifiable newest snapshot; each action is reported at error level
//    because the changes after the damage are lost. It cannot invent missing history (a journal
//    that starts after the snapshot, or after seq 1 without a snapshot).
//
// `RecoveryReport.events` carries each finding with its `RecoverySeverity`; `StoreStats` counts
// them (`tornTailTruncations`, `skippedSnapshots`, `repairs`, `recoveryWarnings`).
// `verifyStateDirectory` runs the same analysis read-only (`creditd verify-state`).
//
// # Changing the format
//
// Any change to the bytes written bumps the version of that file kind in `Format.swift`
// (`segmentVersion`, `snapshotVersion`), keeps a reader for the previous version (N−1) and adds
// `Tests/CreditStoreTests/Golden/v<N>/`, generated with `GoldenTests.testWriteGoldenFiles`.
// The golden directories of earlier versions stay and must keep recovering exactly
// (`GoldenTests.testRecoversEveryGoldenVersion`); `testWriterProducesCurrentGoldenBytes` fails
// as soon as the writer's bytes change without that. The snapshot payload (the ledger encoding)
// belongs to the service and needs the same discipline there.
