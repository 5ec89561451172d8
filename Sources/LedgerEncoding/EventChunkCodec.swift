import CreditDomain

/// One sealed chunk of the event feed as the event archive stores it: a part of event records
/// with its tables, exactly as a snapshot's events part (Overview.swift), so the archive and
/// the snapshot share one event encoding and one reader.
public enum EventChunkCodec {
    /// The chunk's events as a part.
    public static func encode(_ events: [LedgerEvent]) -> [UInt8] {
        var encoder = TaggedEncoder(capacity: 256 + events.count * 320)
        // Through the buffer, each event is read where it is: `for event in events` copied
        // each one out (retaining its strings and payload) on the archiving thread.
        events.withUnsafeBufferPointer { buffer in
            for index in buffer.indices { encoder.eventRecord(buffer[index]) }
        }
        let section = encoder.finish()
        defer { section.deallocate() }
        return Array(section)
    }

    /// The events of a part written by `encode`, with seqs from `firstSeq`; exactly
    /// `EventFeed.chunkSize` of them.
    public static func decode(_ bytes: [UInt8], firstSeq: UInt64) throws(LedgerCodecError) -> [LedgerEvent] {
        let result: Result<[LedgerEvent], LedgerCodecError> = bytes.withUnsafeBufferPointer { buffer in
            do throws(LedgerCodecError) {
                var decoder = try TaggedDecoder(buffer, part: 0..<buffer.count)
                guard decoder.records.count == EventFeed.chunkSize else {
                    throw LedgerCodecError(.badCount, offset: 0, field: "archived chunk of \(decoder.records.count) events")
                }
                if let short = decoder.records.first(where: { $0.count < TaggedLedger.minimumEventBytes }) {
                    throw LedgerCodecError(.badCount, offset: short.lowerBound, field: "event record of \(short.count) bytes")
                }
                var events: [LedgerEvent] = []
                events.reserveCapacity(EventFeed.chunkSize)
                for record in 0..<decoder.records.count {
                    events.append(try decoder.event(record: record, seq: firstSeq + UInt64(record)))
                }
                return .success(events)
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }
}
