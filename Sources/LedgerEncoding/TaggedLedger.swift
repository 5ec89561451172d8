import ProtoWire
import CreditDomain

/// The tagged ledger encoding, format version 3 (see Overview.swift): the magic and version,
/// then protobuf fields. Parts of subscriptions and of events are written and read on all cores.
enum TaggedLedger {
    /// Subscription sections of a ledger of `count` subscriptions. Small ledgers are one
    /// section (so their bytes, and the golden files, do not depend on the core count); larger
    /// ones at least four, so that two cores share the decoding, and sections of at most
    /// `subscriptionsPerSection`, so that the few a snapshot holds in memory at once stay small.
    static func subscriptionSections(_ count: Int) -> Int {
        count < 16_384 ? 1 : max(4, (count + subscriptionsPerSection - 1) / subscriptionsPerSection)
    }

    /// About 10 MB of encoding each.
    static let subscriptionsPerSection = 32_768

    /// Event sections, by the same rule, in whole chunks of `EventFeed.chunkSize` events.
    static func eventSections(events: Int, chunks: Int) -> Int {
        events < 16_384 ? 1 : min(max(4, (chunks + chunksPerEventSection - 1) / chunksPerEventSection), chunks)
    }

    /// 65,536 events, about 7 MB of encoding.
    static let chunksPerEventSection = 64

    /// Sections encoded at once while a snapshot is written. The memory a snapshot takes over
    /// the ledger is two sets of this many section buffers (~10 MB each), so it is bounded here
    /// rather than by the host's core count: at one section per core, 64 cores would have held
    /// over a gigabyte. Two cores already write a 1M snapshot in under a second
    /// (BENCHMARKS.md).
    static let maxEncodingWidth = 4

    /// One top-level section of the encoding, in the order they are written.
    private enum Section {
        case subscriptions(Range<Int>)
        case idOrder
        case keys
        case events(Range<Int>)
    }

    /// Calls `body` with the encoding of `ledger` in pieces, in order: the head, then each
    /// section's tag and length and its bytes, then the end marker.
    ///
    /// The sections are encoded a few at a time (one per core, at most `maxEncodingWidth`, in
    /// parallel) while `body` takes the few before them, and their buffers are reused. Encoded
    /// all at once, a 1M-subscription snapshot held its whole 300 MB encoding in memory on top
    /// of the ledger, and wrote every byte of it into memory touched for the first time, which
    /// on the benchmark machine (whose host takes freed memory back) cost about as much as the
    /// encoding itself.
    static func forEachPiece<Failure: Error>(of ledger: Ledger, subscriptionSections requested: Int,
                                             _ body: (UnsafeRawBufferPointer) throws(Failure) -> Void) throws(Failure) {
        let subscriptionCount = ledger.subscriptionCount
        let feed = ledger.feed
        // The event archive's chunks are written as where they are (version 4); the archive
        // moves chunks out oldest first, so they are a prefix of the sealed chunks. The rest,
        // and the open events, are written as records.
        let sealed = feed.sealedChunks
        let archived = sealed.prefix { $0.archivedLocation != nil }.map { $0.archivedLocation! }
        var recordChunks: [[LedgerEvent]] = sealed[archived.count...].map { chunk in
            if let resident = chunk.residentEvents { return resident }
            // Only a chunk archived out of order (which the archive never does) lands here.
            guard let loaded = try? chunk.events() else {
                preconditionFailure("archived event chunk \(chunk.firstSeq) is unreadable and not in the archived prefix")
            }
            return loaded
        }
        let open = feed.openEvents
        if !open.isEmpty { recordChunks.append(open) }
        let events = recordChunks
        let recordEvents = feed.count - archived.count * EventFeed.chunkSize
        let subscriptionParts = max(requested, 1)
        let eventParts = eventSections(events: recordEvents, chunks: events.count)
        var sections: [Section] = (0..<subscriptionParts).map { part in
            .subscriptions((subscriptionCount * part / subscriptionParts)..<(subscriptionCount * (part + 1) / subscriptionParts))
        }
        sections.append(.idOrder)
        sections.append(.keys)
        for part in 0..<eventParts {
            sections.append(.events((events.count * part / eventParts)..<(events.count * (part + 1) / eventParts)))
        }

        var head = ByteWriter(capacity: 64)
        for byte in [LedgerCodec.magic.0, LedgerCodec.magic.1, LedgerCodec.magic.2, LedgerCodec.magic.3] { head.byte(byte) }
        head.uint32LE(LedgerCodec.formatVersion)
        let header = head.beginMessage(TaggedField.Ledger.header)
        head.sintField(TaggedField.Header.maxSeats, ledger.maxSeats)
        head.uintField(TaggedField.Header.nextCreditSerial, ledger.counters.nextCreditSerial)
        head.uintField(TaggedField.Header.nextInvoiceSerial, ledger.counters.nextInvoiceSerial)
        head.uintField(TaggedField.Header.firstEventSeq, feed.firstSeq)
        head.endMessage(header)
        for chunk in archived {
            let entry = head.beginMessage(TaggedField.Ledger.archivedEvents)
            head.uintField(TaggedField.ArchivedChunk.file, chunk.file)
            head.uintField(TaggedField.ArchivedChunk.offset, chunk.offset)
            head.uintField(TaggedField.ArchivedChunk.length, chunk.length)
            head.sintField(TaggedField.ArchivedChunk.newestRecordedAt, chunk.newestRecordedAt)
            head.endMessage(entry)
        }
        try write(head, to: body)

        // Sections are encoded a wave at a time, one per core, on at most
        // `maxEncodingWidth` cores. Two sets of buffers: while the helpers encode the next
        // wave into one, the calling thread hands over the last wave from the other (the store
        // checksums it, copies it and waits for the disk).
        let width = min(sections.count, concurrentTaskWidth, Self.maxEncodingWidth)
        let waves = stride(from: 0, to: sections.count, by: width).map { $0..<min($0 + width, sections.count) }
        let buffers = Unchecked(UnsafeMutableBufferPointer<(storage: UnsafeMutableBufferPointer<UInt8>, written: Int)>
            .allocate(capacity: 2 * width))
        buffers.value.initialize(repeating: (UnsafeMutableBufferPointer(start: nil, count: 0), 0))
        defer {
            for buffer in buffers.value { buffer.storage.deallocate() }
            buffers.value.deallocate()
        }
        let all = sections
        /// Encodes `wave`'s section `index` into buffer `index` of set `set`, reusing what it holds.
        let encodeSection: @Sendable (Range<Int>, Int, Int) -> Void = { wave, set, index in
            let section = all[wave.lowerBound + index]
            // Generous: capacity a section does not use is never touched, so it costs no memory.
            let capacity = switch section {
            case .subscriptions(let range): 256 + range.count * 1_280
            case .idOrder: 16 + subscriptionCount * 5
            case .keys: 256 + ledger.idempotencyEntryCount * 512
            case .events(let chunks): 256 + chunks.count * EventFeed.chunkSize * 320
            }
            let slot = set * width + index
            let previous = buffers.value[slot].storage
            let writer: ByteWriter
            if previous.count >= capacity {
                writer = ByteWriter(reusing: previous)
            } else {
                previous.deallocate()
                writer = ByteWriter(capacity: capacity)
            }
            buffers.value[slot] = encode(section, of: ledger, events: events, into: writer).takeStorage()
        }
        func handOver(_ wave: Range<Int>, from set: Int) throws(Failure) {
            for index in 0..<wave.count {
                let tag = switch all[wave.lowerBound + index] {
                case .subscriptions: fieldTag(TaggedField.Ledger.subscriptions)
                case .idOrder: fieldTag(TaggedField.Ledger.idOrder)
                case .keys: fieldTag(TaggedField.Ledger.keys)
                case .events: fieldTag(TaggedField.Ledger.events)
                }
                let (storage, written) = buffers.value[set * width + index]
                var prefix = ByteWriter(capacity: 16)
                prefix.byte(tag)
                prefix.varint(UInt64(written))
                try write(prefix, to: body)
                try body(UnsafeRawBufferPointer(UnsafeMutableBufferPointer(rebasing: storage[..<written])))
            }
        }
        if let first = waves.first {
            runConcurrently(first.count) { encodeSection(first, 0, $0) }
        }
        for (number, wave) in waves.enumerated() {
            let set = number % 2
            if number + 1 < waves.count {
                let next = waves[number + 1]
                try runConcurrently(next.count, { encodeSection(next, 1 - set, $0) }, whileCalling: { () throws(Failure) in
                    try handOver(wave, from: set)
                })
            } else {
                try handOver(wave, from: set)
            }
        }
        // Written even when zero: its absence means the file was cut short.
        var end = ByteWriter(capacity: 16)
        end.tag(TaggedField.Ledger.end, .varint)
        end.varint(UInt64(subscriptionCount + ledger.idempotencyEntryCount + recordEvents + archived.count))
        try write(end, to: body)
    }

    /// One section's bytes, written by `writer`, which is handed back.
    private static func encode(_ section: Section, of ledger: Ledger, events: [[LedgerEvent]],
                               into writer: consuming ByteWriter) -> ByteWriter {
        switch section {
        case .subscriptions(let range):
            var encoder = TaggedEncoder(writingInto: writer)
            ledger.forEachSubscription(inSlots: range) { encoder.subscriptionRecord($0) }
            return encoder.finishWriter()
        case .events(let chunks):
            var encoder = TaggedEncoder(writingInto: writer)
            for chunk in events[chunks] {
                for event in chunk { encoder.eventRecord(event) }
            }
            return encoder.finishWriter()
        case .idOrder:
            var previous = -1
            for slot in ledger.slotsInIDOrder {
                writer.signed(Int64(slot) - Int64(previous) - 1)
                previous = Int(slot)
            }
            return writer
        case .keys:
            var encoder = TaggedEncoder(writingInto: writer)
            ledger.forEachIdempotencyEntry { scope, stored in encoder.keyRecord(scope, stored) }
            return encoder.finishWriter()
        }
    }

    /// Hands what `writer` wrote to `body`, then frees it.
    private static func write<Failure: Error>(_ writer: consuming ByteWriter,
                                              to body: (UnsafeRawBufferPointer) throws(Failure) -> Void) throws(Failure) {
        let bytes = writer.take()
        defer { bytes.deallocate() }
        try body(UnsafeRawBufferPointer(bytes))
    }

    /// The one-byte tag of a length-delimited top-level field.
    private static func fieldTag(_ field: UInt32) -> UInt8 {
        UInt8(field << 3 | UInt32(WireType.lengthDelimited.rawValue))
    }

    // MARK: decoding

    // The smallest valid records: the fields written even when zero (instants, table indexes)
    // and the enums, whose raw values are never zero, each a tag and at least one byte.
    /// created_at, zone, currency, status, refund policy, interval, anchor day.
    static let minimumSubscriptionBytes = 14
    /// operation, first_used_at, a fingerprint and an outcome (tag and length each).
    static let minimumKeyBytes = 8
    /// type, recorded_at, at, a payload (tag and length).
    static let minimumEventBytes = 8

    /// `buffer` starts at the magic; the version (3 or 4) has been checked. Archived event
    /// chunks (version 4) are read through `archive`.
    static func decode(_ buffer: UnsafeBufferPointer<UInt8>, version: UInt32,
                       archive: (any EventArchive)?) throws(LedgerCodecError) -> Ledger {
        var reader = ByteReader(buffer, 8..<buffer.count)
        var archivedRanges: [Range<Int>] = []
        var header: Range<Int>?
        var subscriptionParts: [Range<Int>] = []
        var eventParts: [Range<Int>] = []
        var keyParts: [Range<Int>] = []
        var idOrder: Range<Int>?
        var recordCount: UInt64?
        while let (number, wire) = try reader.field() {
            switch number {
            case TaggedField.Ledger.end:
                recordCount = try reader.uintValue(wire, "end")
                guard reader.remaining == 0 else { throw reader.failure(.trailingBytes, "end") }
            case TaggedField.Ledger.header: header = try reader.lengthDelimited("header", wire)
            case TaggedField.Ledger.subscriptions: subscriptionParts.append(try reader.lengthDelimited("subscriptions", wire))
            case TaggedField.Ledger.idOrder: idOrder = try reader.lengthDelimited("id order", wire)
            case TaggedField.Ledger.keys: keyParts.append(try reader.lengthDelimited("keys", wire))
            case TaggedField.Ledger.events: eventParts.append(try reader.lengthDelimited("events", wire))
            case TaggedField.Ledger.archivedEvents where version >= 4:
                archivedRanges.append(try reader.lengthDelimited("archived events", wire))
            default: try reader.skip(wire)
            }
        }
        guard let recordCount else { throw LedgerCodecError(.truncated, offset: buffer.count, field: "end missing") }
        var maxSeats: Int64 = 0, nextCreditSerial: UInt64 = 0, nextInvoiceSerial: UInt64 = 0, firstEventSeq: UInt64 = 1
        if let header {
            var fields = reader.within(header)
            while let (number, wire) = try fields.field() {
                switch number {
                case TaggedField.Header.maxSeats: maxSeats = try fields.sintValue(wire, "maxSeats")
                case TaggedField.Header.nextCreditSerial: nextCreditSerial = try fields.uintValue(wire, "nextCreditSerial")
                case TaggedField.Header.nextInvoiceSerial: nextInvoiceSerial = try fields.uintValue(wire, "nextInvoiceSerial")
                case TaggedField.Header.firstEventSeq: firstEventSeq = try fields.uintValue(wire, "first event seq")
                default: try fields.skip(wire)
                }
            }
        } else {
            throw LedgerCodecError(.invalidValue, offset: 8, field: "header missing")
        }
        guard firstEventSeq >= 1 else { throw LedgerCodecError(.invalidValue, offset: header!.lowerBound, field: "first event seq") }
        var archivedChunks: [SealedEventChunk] = []
        if !archivedRanges.isEmpty {
            guard let archive else {
                throw LedgerCodecError(.invalidValue, offset: archivedRanges[0].lowerBound,
                                       field: "archived events, but no event archive to read them from")
            }
            guard UInt64(archivedRanges.count) <= (UInt64.max - firstEventSeq) / UInt64(EventFeed.chunkSize) else {
                throw LedgerCodecError(.badCount, offset: archivedRanges[0].lowerBound, field: "archived events")
            }
            archivedChunks.reserveCapacity(archivedRanges.count)
            for (index, range) in archivedRanges.enumerated() {
                var fields = reader.within(range)
                var file: UInt64 = 0, offset: UInt64 = 0, length: UInt64 = 0, newest: Int64 = 0
                while let (number, wire) = try fields.field() {
                    switch number {
                    case TaggedField.ArchivedChunk.file: file = try fields.uintValue(wire, "archived chunk file")
                    case TaggedField.ArchivedChunk.offset: offset = try fields.uintValue(wire, "archived chunk offset")
                    case TaggedField.ArchivedChunk.length: length = try fields.uintValue(wire, "archived chunk length")
                    case TaggedField.ArchivedChunk.newestRecordedAt: newest = try fields.sintValue(wire, "archived chunk newest")
                    default: try fields.skip(wire)
                    }
                }
                let location = ArchivedEventChunk(firstSeq: firstEventSeq + UInt64(index * EventFeed.chunkSize), file: file,
                                                  offset: offset, length: length, newestRecordedAt: newest)
                archivedChunks.append(SealedEventChunk(archived: location, in: archive))
            }
        }
        let firstRecordSeq = firstEventSeq + UInt64(archivedChunks.count * EventFeed.chunkSize)

        // 1. Every part's tables and record boundaries, at once.
        let parts = subscriptionParts + keyParts + eventParts
        let decoders = Unchecked(UnsafeMutableBufferPointer<Result<TaggedDecoder, LedgerCodecError>>.allocate(capacity: parts.count))
        decoders.value.initialize(repeating: .failure(LedgerCodecError(.truncated, offset: 0, field: "part")))
        defer {
            decoders.value.deinitialize()
            decoders.value.deallocate()
        }
        let input = Unchecked(buffer)
        runConcurrently(parts.count) { index in
            do throws(LedgerCodecError) {
                decoders.value[index] = .success(try TaggedDecoder(input.value, part: parts[index]))
            } catch {
                decoders.value[index] = .failure(error)
            }
        }
        // Records shorter than the fields every valid one has are refused before anything is
        // allocated for them, so a corrupt input cannot make the decoder reserve much more
        // memory than its own size.
        var counts: [Int] = []
        for (index, result) in decoders.value.enumerated() {
            let records = try result.get().records
            let minimum = index < subscriptionParts.count ? minimumSubscriptionBytes
                : index < subscriptionParts.count + keyParts.count ? minimumKeyBytes : minimumEventBytes
            if let short = records.first(where: { $0.count < minimum }) {
                throw LedgerCodecError(.badCount, offset: short.lowerBound, field: "record of \(short.count) bytes")
            }
            counts.append(records.count)
        }
        guard UInt64(counts.reduce(0, +) + archivedChunks.count) == recordCount else {
            throw LedgerCodecError(.invalidValue, offset: buffer.count,
                                   field: "record count (\(counts.reduce(0, +) + archivedChunks.count), end says \(recordCount))")
        }
        let subscriptionCount = counts[..<subscriptionParts.count].reduce(0, +)
        let eventCounts = Array(counts[(subscriptionParts.count + keyParts.count)...])
        guard firstRecordSeq <= UInt64.max - UInt64(eventCounts.reduce(0, +)) else {
            throw LedgerCodecError(.invalidValue, offset: header!.lowerBound, field: "event count")
        }

        // 2. The records: subscriptions into one array, keys, and events per part, at once.
        let keyIndex = subscriptionParts.count
        let firstEventIndex = keyIndex + keyParts.count
        let errors = Unchecked(UnsafeMutableBufferPointer<LedgerCodecError?>.allocate(capacity: parts.count + 1))
        errors.value.initialize(repeating: nil)
        let initialized = Unchecked(UnsafeMutableBufferPointer<Int>.allocate(capacity: max(subscriptionParts.count, 1)))
        initialized.value.initialize(repeating: 0)
        let eventResults = Unchecked(UnsafeMutableBufferPointer<[LedgerEvent]>.allocate(capacity: max(eventParts.count, 1)))
        eventResults.value.initialize(repeating: [])
        let keysResult = Unchecked(UnsafeMutablePointer<IdempotencyTable>.allocate(capacity: 1))
        keysResult.value.initialize(to: IdempotencyTable())
        defer {
            errors.value.deallocate()
            initialized.value.deallocate()
            eventResults.value.deinitialize()
            eventResults.value.deallocate()
            keysResult.value.deinitialize(count: 1)
            keysResult.value.deallocate()
        }
        let partCounts = counts
        let eventSeqStart = firstRecordSeq
        var slots = DecodedSubscriptions(count: subscriptionCount)
        do {
            let target = slots.target
            // Subscription parts, the keys as one task (their order is the table's), event parts.
            runConcurrently(keyIndex + 1 + eventParts.count) { task in
                if task < keyIndex {
                    guard case .success(var decoder) = decoders.value[task] else { return }
                    let first = partCounts[..<task].reduce(0, +)
                    do throws(LedgerCodecError) {
                        try target.decode(first: first, count: partCounts[task]) { record throws(LedgerCodecError) in
                            do throws(LedgerCodecError) {
                                return try decoder.subscription(record: record)
                            } catch {
                                throw error.within("subscription \(first + record)")
                            }
                        }
                        initialized.value[task] = partCounts[task]
                    } catch {
                        errors.value[task] = error
                    }
                } else if task == keyIndex {
                    var table = IdempotencyTable()
                    table.reserveCapacity(partCounts[keyIndex..<firstEventIndex].reduce(0, +))
                    var entry = 0
                    for part in keyIndex..<firstEventIndex {
                        guard case .success(var decoder) = decoders.value[part] else { return }
                        for record in 0..<partCounts[part] {
                            do throws(LedgerCodecError) {
                                let (scope, stored) = try decoder.keyEntry(record: record)
                                table.restore(scope, stored)
                            } catch {
                                errors.value[part] = error.within("idempotency entry \(entry)")
                                return
                            }
                            entry += 1
                        }
                    }
                    keysResult.value.pointee = table
                } else {
                    let eventPart = task - keyIndex - 1
                    guard case .success(var decoder) = decoders.value[firstEventIndex + eventPart] else { return }
                    var seq = eventSeqStart + UInt64(eventCounts[..<eventPart].reduce(0, +))
                    var events: [LedgerEvent] = []
                    events.reserveCapacity(eventCounts[eventPart])
                    for record in 0..<eventCounts[eventPart] {
                        do throws(LedgerCodecError) {
                            events.append(try decoder.event(record: record, seq: seq))
                        } catch {
                            errors.value[firstEventIndex + eventPart] = error.within("event \(seq)")
                            return
                        }
                        seq += 1
                    }
                    eventResults.value[eventPart] = events
                }
            }
            if errors.value.allSatisfy({ $0 == nil }) {
                slots.markComplete()
            } else {
                var first = 0
                for part in 0..<keyIndex {
                    target.deinitialize(first..<(first + initialized.value[part]))
                    first += partCounts[part]
                }
            }
        }
        if let error = errors.value.lazy.compactMap({ $0 }).first { throw error }

        var zones: [String: TimeZoneRules] = [:]
        for part in 0..<keyIndex {
            for zone in try decoders.value[part].get().zones where zones[zone.identifier] == nil { zones[zone.identifier] = zone }
        }
        let feed = EventFeed(firstSeq: firstEventSeq, archived: archivedChunks,
                             parts: Array(eventResults.value.prefix(eventParts.count)))
        return try LedgerAssembly.ledger(buffer, maxSeats: maxSeats,
                                         counters: SerialCounters(nextCreditSerial: nextCreditSerial, nextInvoiceSerial: nextInvoiceSerial),
                                         slots: slots, idOrder: idOrder ?? buffer.count..<buffer.count,
                                         idempotency: keysResult.value.pointee, zones: zones, feed: feed)
    }
}
