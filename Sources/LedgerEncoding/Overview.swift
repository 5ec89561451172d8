// LedgerEncoding: the binary form of the whole ledger that snapshots carry.
//
// This file holds no code; it documents what `LedgerCodec.swift` and the Tagged*, Positional*
// files implement, in the manner of a Go doc.go. The snapshot file around it (header, CRC,
// sequence) is CreditStore's (Sources/CreditStore/Overview.swift); the service puts a small
// protobuf header (`creditd.journal.v1.Snapshot`: clock, ledger_encoding = 1) before these
// bytes (`SnapshotCodec`). The domain's values are reached through `package` initializers and
// properties; CreditDomain itself knows nothing of this format.
//
// # Versions
//
// Every version starts with the magic "CRDL" (4 bytes) and a little-endian u32 version.
//   1  positional, before the event feed                  read (PositionalDecoder)
//   2  positional, with the event feed (E3)               read (PositionalDecoder)
//   3  tagged: protobuf wire format, described below      read
//   4  version 3 plus archived event chunks (field 6)     read and written
// A positional version fixes every field by its place, so it cannot gain one. Version 3 can:
// a later release adds fields under new numbers, and this build skips what it does not know.
// A change that old readers cannot skip (a field's meaning or unit changes) takes a new version;
// the reader of the previous version stays (N−1), proven by the state directories under
// Tests/CreditServiceTests/Golden (StateGoldenTests).
//
// # Versions 3 and 4
//
// Version 4 is version 3 with one more top-level field, `archived_events`. It took a version
// because a version 3 reader would skip it and read a feed with its oldest events missing;
// a version 3 file is read as a version 4 file without archived chunks.
//
// After the 8 bytes of magic and version, the rest of the input is one protobuf message
// (https://protobuf.dev/programming-guides/encoding/): fields of tag varint (number << 3 |
// wire type) and value. Integers are varints; `sint` fields are zigzag varints; a message is a
// length-delimited field. As in proto3, zero, false, the empty string and absent messages are
// not written, and a reader takes an absent field as zero. Unknown field numbers are skipped
// whatever their wire type; a known number with another wire type is an error. Repeated
// messages keep their order. Field numbers (TaggedField.swift) are never reused.
//
//   message Ledger {
//     Header header = 1;
//     repeated Part subscriptions = 2;   // records are Subscription, in creation order
//     bytes id_order = 3;                // per position in id order: the slot, as a zigzag
//                                        // varint delta from the previous slot + 1
//     repeated Part keys = 4;            // records are KeyEntry, in order of first use
//     repeated Part events = 5;          // records are Event, seqs from the first one after
//                                        // the archived chunks, +1, …
//     repeated ArchivedChunk archived_events = 6;   // version 4: the oldest sealed chunks of
//                                        // 1,024 events, from header.first_event_seq, kept in
//                                        // the event archive (CreditStore's Overview.swift)
//     uint64 end = 15;                   // last field; the number of records in all parts
//                                        // plus the archived chunks
//   }
//   message ArchivedChunk { uint64 file = 1; uint64 offset = 2; uint64 length = 3;
//                           sint64 newest_recorded_at = 4; }   // the block, and what pruning needs
//   message Header { sint64 max_seats = 1; uint64 next_credit_serial = 2;
//                    uint64 next_invoice_serial = 3; uint64 first_event_seq = 4; }
//   message Part { repeated bytes record = 1; Tables tables = 15; }
//   message Tables { repeated string zone = 1; repeated string currency = 2; }
//
// A part is what one core writes or reads: large ledgers (16,384 subscriptions or events and
// more) are written as at least four parts of subscriptions and four of events, of at most
// 32,768 subscriptions or 64 event chunks each, decoded concurrently with the key table. A
// part ends with the zone ids and currency codes its records name by index (collected while
// writing, so a part is written in one pass); a reader finds the records and the tables first,
// then decodes the records. A snapshot file is written from the pieces as they are made
// (`LedgerPieces`): one part per core (at most four) is encoded, written, and its buffer
// reused for the next, so the whole encoding is never in memory at once. A reader takes any
// number of parts. `end` makes a file cut short at a field boundary an error instead of a
// smaller ledger; nothing may follow it.
//
// Inside a subscription, instants are relative to its `created_at` rounded down to the
// minute and dates to its `start_date` (days); instants elsewhere, dates of events and of
// idempotency outcomes are absolute. An instant is a varint: a zigzag count in the coarsest
// exact unit shifted left by two, over the unit in the low bits (2 minutes, 1 seconds,
// 0 nanoseconds); a nanosecond delta too large for that is a fixed64 instead. An instant is
// therefore never a zero varint and is always written.
//
//   message Subscription {
//     string id = 1; string customer = 2; string plan = 3;
//     instant created_at = 4; sint32 start_date = 5 (epoch day);
//     uint32 zone = 6; uint32 currency = 7;          // indexes into the part's tables, always written
//     enum status = 8; enum refund_policy = 9; enum interval = 10;
//     uint32 anchor_month = 11; uint32 anchor_day = 12;
//     sint64 unit_price_minor = 13; sint64 seats = 14; repeated Credit credit = 15;
//     sint32 period_start = 16; sint32 period_end = 17;
//     sint64 period_charged_minor = 18; sint64 period_charged_seats = 19;
//     sint32 purchase_seats = 20; uint64 purchase_invoice_serial = 21;
//     uint64 cumulative_low = 22; uint64 cumulative_high = 23;   // the Int128 numerator's zigzag
//     sint64 scheduled_seats = 24; sint64 unbilled_charges_minor = 25; uint64 last_event_seq = 26;
//     instant next_due = 27; repeated SeatBlock block = 28; repeated LedgerLine period_line = 29;
//     repeated Invoice later_invoice = 30; CancellationRecord cancellation = 31;
//   }
//   message SeatBlock { sint64 seats = 1; instant window_start = 2; sint32 start_date = 3; }
//   message LedgerLine { sint64 amount_minor = 1; sint32 effective_date = 2; uint64 event_seq = 3;
//                        Explanation explanation = 4; }
//   message Explanation { sint64 charged_minor = 1; uint64 cumulative_low = 2; uint64 cumulative_high = 3;
//                         sint32 charged_seats = 4; sint32 seats_delta = 5; sint32 period_days = 6;
//                         sint32 unused_days = 7; repeated Portion portion = 8; }
//   message Portion { sint64 seats = 1; sint32 start_date = 2; sint32 unused_days = 3; }
//   message Credit { uint64 serial = 1; instant created_at = 2; sint32 effective_date = 3;
//                    sint64 amount_minor = 4; sint64 remaining_minor = 5; sint64 consumed_minor = 6;
//                    uint32 event_seq = 7; uint32 due_date_offset = 8; uint32 refund_expected_by_offset = 9;
//                    enum source = 10; enum state = 11; bool had_refund_failure = 12;
//                    Explanation explanation = 13; repeated HistoryEntry history = 14; }
//                    // history: the entries after the first (`pending` at created_at)
//   message HistoryEntry { enum state = 1; instant at = 2; }
//   message Invoice { uint64 serial = 1; enum kind = 2; bool settled = 3; instant issued_at = 4;
//                     sint32 issued_date = 5; sint32 period_start = 6; sint32 period_end = 7;
//                     sint32 settles_on = 8 (written when present, even if zero); repeated InvoiceLine line = 9; }
//   message InvoiceLine { enum kind = 1; sint64 amount_minor = 2; uint64 credit_serial = 3;
//                         sint32 effective_date = 4; sint64 seats = 5; }
//   message CancellationRecord { enum mode = 1; bool already_cancelled = 2; sint32 effective_date = 3;
//                                instant requested_at = 4; instant entitlement_ends_at = 5;
//                                LedgerLine line = 6; Credit credit = 7; Invoice final_invoice = 8; }
//   message KeyEntry { uint32 caller_uid = 1; enum operation = 2; string key = 3; instant first_used_at = 4;
//                      oneof fingerprint { CancelFingerprint cancel = 5; SeatsFingerprint change_seats = 6; }
//                      oneof outcome { Response response = 7; Error error = 8; } }
//   message CancelFingerprint { string subscription_id = 1; sint32 mode = 2; }
//   message SeatsFingerprint { string subscription_id = 1; sint64 new_seats = 3; sint32 timing = 4; }
//   message Error { uint32 reason = 1 (DomainError.Reason.codecNumber); string message = 2; }
//   message Response { oneof { Created created = 1; CancellationRecord cancelled = 2;
//                      Subscription resumed = 3; SeatChange seats_changed = 4;
//                      RefundOutcome refund_outcome_recorded = 5; Created imported = 6; } }
//   message Created { Subscription subscription = 1; Invoice invoice = 2; }
//   message SeatChange { enum outcome = 1; sint64 previous_seats = 2; sint64 new_seats = 3;
//                        sint64 seats = 4; sint32 effective_date = 5; LedgerLine line = 6; Credit credit = 7; }
//   message RefundOutcome { bool ignored = 1; bool overdue = 2; bool refund_overdue = 3; Credit credit = 4; }
//   message Event { enum type = 1; instant recorded_at = 2; instant at = 3; sint32 date = 4;
//                   string subscription_id = 5; string customer = 6;
//                   oneof payload { View subscription = 7; ViewAnd seat_change = 8 (detail: SeatChange);
//                                   ViewAnd cancel = 9 (detail: CancellationRecord); Invoice invoice = 10;
//                                   CreditState credit_state = 11; } }
//   message ViewAnd { View view = 1; message detail = 2; }
//   message CreditState { enum state = 1; instant at = 2; Credit credit = 3; }
//   message View { string plan = 1; enum status = 2; enum refund_policy = 3; enum interval = 4;
//                  uint32 anchor_month = 5; uint32 anchor_day = 6; uint32 zone = 7; uint32 currency = 8;
//                  sint64 seats = 9; sint64 unit_price_minor = 10; sint32 start_date = 11;
//                  sint32 period_start = 12; sint32 period_end = 13; sint64 period_charged_minor = 14;
//                  sint64 period_charged_seats = 15; sint64 scheduled_seats = 16; }
//                  // the O3 view without id and customer, which are the event's
//
// Enums are their domain raw values (none is zero). The derived indexes (sorted ids, the id
// table, the due queue, the zone cache) are not stored; `LedgerAssembly` rebuilds them, for
// every version alike.
//
// # Checks
//
// Decoding never traps and never allocates more than a small multiple of its input: lengths
// are checked against the bytes left, enum values and table indexes against their ranges,
// narrow integers against their types, ids against the id order (strictly increasing, each
// slot once). Errors say what and where (`LedgerCodecError`: kind, byte offset, field path).
//
// # Entry points
//
//   - LedgerCodec.encode(_:) writes version 4; LedgerCodec.decode(_:from:archive:) reads
//     versions 1–4 (the archive reads the chunks a version 4 ledger names).
//   - EventChunkCodec writes and reads one archived chunk: an events part (records and tables).
//   - LedgerCodec.formatVersion(of:from:) reads the version alone (creditd verify-state).
