import CreditDomain
import CreditService

/// What recovery reads from disk, on arbitrary bytes: a journal record, a snapshot payload and
/// an RFC 3339 instant (the `--now` flag, the manual clock). Corrupt state files must be
/// refused with an error, never crash the daemon.
///
/// Whatever decodes is then used as recovery uses it (replayed, reloaded, re-encoded), and
/// must round-trip.
enum StateFuzzing {
    static func run(_ input: [UInt8]) {
        journalRecord(input)
        snapshot(input)
        instant(input)
    }

    static func journalRecord(_ bytes: [UInt8]) {
        guard let entry = try? JournalEntry(decoding: bytes) else { return }
        var ledger = Ledger()
        CreditApplication.replay(entry, into: &ledger)
        _ = ledger.nextDueInstant()
        let encoded: [UInt8]
        do {
            encoded = try entry.encoded()
        } catch {
            fail("a decoded journal record does not encode: \(error)")
        }
        check((try? JournalEntry(decoding: encoded)) == entry, "journal record does not round-trip")
    }

    static func snapshot(_ bytes: [UInt8]) {
        guard let (ledger, clock) = try? SnapshotCodec.decode(bytes) else { return }
        // Recovery goes on to read the ledger: the derived indexes must hold up.
        _ = ledger.nextDueInstant()
        _ = try? ledger.listSubscriptions(pageSize: 0, pageToken: "")
        for subscription in ledger.subscriptions {
            check((try? ledger.subscription(id: subscription.id)) != nil, "a stored subscription cannot be found by id")
        }
        let encoded: [UInt8]
        do {
            encoded = try SnapshotCodec.encode(ledger, clock: clock)
        } catch {
            fail("a decoded snapshot does not encode: \(error)")
        }
        guard let again = try? SnapshotCodec.decode(encoded) else { fail("a re-encoded snapshot does not decode") }
        check(again.ledger == ledger && again.clock == clock, "snapshot does not round-trip")
    }

    static func instant(_ bytes: [UInt8]) {
        if let nanos = RFC3339.parse(String(decoding: bytes, as: UTF8.self)) {
            check(RFC3339.parse(RFC3339.format(unixNanos: nanos)) == nanos, "a parsed instant does not format back")
        }
        guard bytes.count >= 8 else { return }
        let nanos = bytes[0..<8].reduce(Int64(0)) { $0 << 8 | Int64($1) }
        check(RFC3339.parse(RFC3339.format(unixNanos: nanos)) == nanos, "RFC 3339 does not round-trip \(nanos)")
    }

    static func check(_ condition: Bool, _ message: @autoclosure () -> String) {
        if !condition { fail(message()) }
    }

    static func fail(_ message: String) -> Never {
        fatalError("FuzzState: \(message)")
    }
}
