import ProtoWire
import CreditDomain

/// The tagged ledger encoding, format version 3 (see Overview.swift): the magic and version,
/// then protobuf fields. Parts of subscriptions and of events are written and read on all cores.
enum TaggedLedger {
    /// Small ledgers are one part; large ones are split so two cores share the work.
    static func partCount(_ items: Int) -> Int {
        items < 16_384 ? 1 : 4
    }

    static func encode(_ ledger: Ledger, parts requested: Int) -> EncodedLedger {
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
        let eventParts = partCount(recordEvents)
        // Tasks: subscription parts, event parts, then id order and keys.
        let taskCount = subscriptionParts + eventParts + 2
        let sections = Unchecked(UnsafeMutableBufferPointer<UnsafeMutableBufferPointer<UInt8>>.allocate(capacity: taskCount))
        defer { sections.value.deallocate() }
        runConcurrently(taskCount) { index in
            let section: UnsafeMutableBufferPointer<UInt8>
            if index < subscriptionParts {
                let range = (subscriptionCount * index / subscriptionParts)..<(subscriptionCount * (index + 1) / subscriptionParts)
                // Generous: unused capacity is never touched, so it costs no memory.
                var encoder = TaggedEncoder(capacity: 256 + range.count * 1_280)
                ledger.forEachSubscription(inSlots: range) { encoder.subscriptionRecord($0) }
                section = encoder.finish()
            } else if index < subscriptionParts + eventParts {
                // Whole chunks per part, in seq order.
                let part = index - subscriptionParts
                let chunks = (events.count * part / eventParts)..<(events.count * (part + 1) / eventParts)
                var encoder = TaggedEncoder(capacity: 256 + chunks.count * EventFeed.chunkSize * 320)
                for chunk in events[chunks] {
                    for event in chunk { encoder.eventRecord(event) }
                }
                section = encoder.finish()
            } else if index == subscriptionParts + eventParts {
                var writer = ByteWriter(capacity: 16 + subscriptionCount * 5)
                var previous = -1
                for slot in ledger.slotsInIDOrder {
                    writer.signed(Int64(slot) - Int64(previous) - 1)
                    previous = Int(slot)
                }
                section = writer.take()
            } else {
                var encoder = TaggedEncoder(capacity: 256 + ledger.idempotencyEntryCount * 512)
                ledger.forEachIdempotencyEntry { scope, stored in encoder.keyRecord(scope, stored) }
                section = encoder.finish()
            }
            sections.value.initializeElement(at: index, to: section)
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
        let headBytes = head.take()

        // Each section becomes one top-level field: its tag and length, then its bytes, which
        // stay where their part encoded them.
        var order: [(tag: UInt8, section: UnsafeMutableBufferPointer<UInt8>)] = []
        for index in 0..<subscriptionParts { order.append((fieldTag(TaggedField.Ledger.subscriptions), sections.value[index])) }
        order.append((fieldTag(TaggedField.Ledger.idOrder), sections.value[subscriptionParts + eventParts]))
        order.append((fieldTag(TaggedField.Ledger.keys), sections.value[subscriptionParts + eventParts + 1]))
        for index in 0..<eventParts { order.append((fieldTag(TaggedField.Ledger.events), sections.value[subscriptionParts + index])) }
        var pieces = [headBytes]
        for (tag, section) in order {
            var prefix = ByteWriter(capacity: 16)
            prefix.byte(tag)
            prefix.varint(UInt64(section.count))
            pieces.append(prefix.take())
            pieces.append(section)
        }
        // Written even when zero: its absence means the file was cut short.
        var end = ByteWriter(capacity: 16)
        end.tag(TaggedField.Ledger.end, .varint)
        end.varint(UInt64(subscriptionCount + ledger.idempotencyEntryCount + recordEvents + archived.count))
        pieces.append(end.take())
        return EncodedLedger(taking: pieces)
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
            let target = Unchecked(slots.baseAddress)
            // Subscription parts, the keys as one task (their order is the table's), event parts.
            runConcurrently(keyIndex + 1 + eventParts.count) { task in
                if task < keyIndex {
                    guard case .success(var decoder) = decoders.value[task], let base = target.value else { return }
                    let first = partCounts[..<task].reduce(0, +)
                    for record in 0..<partCounts[task] {
                        do throws(LedgerCodecError) {
                            (base + first + record).initialize(to: try decoder.subscription(record: record))
                            initialized.value[task] += 1
                        } catch {
                            errors.value[task] = error.within("subscription \(first + record)")
                            return
                        }
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
                    if let base = target.value { (base + first).deinitialize(count: initialized.value[part]) }
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
