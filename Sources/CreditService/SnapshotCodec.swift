import CreditDomain
import CreditProto
import Foundation

/// The payload of a snapshot file: the clock reading and the whole ledger.
public enum SnapshotCodec {
    /// Ledger encodings this creditd reads; the newest is written.
    enum LedgerEncoding: UInt32 {
        case json = 1
    }

    public struct DecodeError: Error, CustomStringConvertible {
        public let description: String
    }

    public static func encode(_ ledger: Ledger, clock: Instant) throws -> [UInt8] {
        var snapshot = Creditd_Journal_V1_Snapshot()
        snapshot.clockUnixNanos = clock.nanosecondsSinceEpoch
        snapshot.ledgerEncoding = LedgerEncoding.json.rawValue
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        snapshot.ledger = try encoder.encode(ledger)
        return try snapshot.serializedBytes()
    }

    public static func decode(_ bytes: [UInt8]) throws -> (ledger: Ledger, clock: Instant) {
        let snapshot = try Creditd_Journal_V1_Snapshot(serializedBytes: bytes)
        guard let encoding = LedgerEncoding(rawValue: snapshot.ledgerEncoding) else {
            throw DecodeError(description: "snapshot ledger encoding \(snapshot.ledgerEncoding) is unknown to this creditd")
        }
        switch encoding {
        case .json:
            let ledger = try JSONDecoder().decode(Ledger.self, from: snapshot.ledger)
            return (ledger, Instant(nanosecondsSinceEpoch: snapshot.clockUnixNanos))
        }
    }
}
