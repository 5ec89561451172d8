import CreditDomain
/// Reads one section of the positional format (versions 1 and 2, written by earlier releases),
/// checking every value as it goes. Kept only to read those files: this build writes version 4.
struct PositionalDecoder {
    var reader: ByteReader
    private(set) var zones: [TimeZoneRules] = []
    var currencies: [Currency] = []

    // Smallest encodings, for capping counts by the bytes left.
    static let minimumSubscriptionBytes = 30
    private static let minimumCreditBytes = 11
    private static let minimumLineBytes = 10
    private static let minimumInvoiceBytes = 7
    private static let minimumInvoiceLineBytes = 5
    private static let minimumBlockBytes = 3
    private static let minimumPortionBytes = 3
    private static let minimumHistoryEntryBytes = 2
    private static let minimumEntryBytes = 10

    /// The section in `range`: reads its tables, then stands before its first item.
    init(_ buffer: UnsafeBufferPointer<UInt8>, section range: Range<Int>) throws(LedgerCodecError) {
        var head = ByteReader(buffer, range)
        let tablesOffset = try head.varint("section tables offset")
        guard tablesOffset >= UInt64(head.offset - range.lowerBound), tablesOffset <= UInt64(range.count) else {
            throw head.failure(.invalidValue, "section tables offset", at: range.lowerBound)
        }
        let tablesStart = range.lowerBound + Int(tablesOffset)
        var tables = ByteReader(buffer, tablesStart..<range.upperBound)
        let zoneCount = try tables.count("zone count", minimumBytes: 1)
        for _ in 0..<zoneCount {
            let start = tables.offset
            let identifier = try tables.string("zone id")
            guard let rules = TimeZoneRules(identifier: identifier) else {
                throw LedgerCodecError(.unknownTimeZone, offset: start, field: "zone id \"\(identifier)\"")
            }
            zones.append(rules)
        }
        let currencyCount = try tables.count("currency count", minimumBytes: 1)
        for _ in 0..<currencyCount {
            let start = tables.offset
            let code = try tables.string("currency code")
            guard let currency = Currency(code: code) else {
                throw LedgerCodecError(.invalidValue, offset: start, field: "currency code \"\(code)\"")
            }
            currencies.append(currency)
        }
        guard tables.remaining == 0 else { throw tables.failure(.trailingBytes, "section tables") }
        reader = ByteReader(buffer, head.offset..<tablesStart)
    }

    /// Initializes `count` subscriptions at `target`; returns how many it initialized (all of
    /// them unless it throws; the caller deinitializes those on failure).
    mutating func subscriptions(into target: DecodedSubscriptions.Target, count: Int, firstIndex: Int,
                                initialized: inout Int) throws(LedgerCodecError) {
        try target.decode(first: firstIndex, count: count) { index throws(LedgerCodecError) in
            do throws(LedgerCodecError) {
                return try subscription()
            } catch {
                throw error.within("subscription \(firstIndex + index)")
            }
        }
        initialized = count
        guard reader.remaining == 0 else { throw reader.failure(.trailingBytes, "end of subscriptions part") }
    }

    /// The key table.
    mutating func keys() throws(LedgerCodecError) -> IdempotencyTable {
        let entryCount = try reader.count("idempotency entry count", minimumBytes: PositionalDecoder.minimumEntryBytes)
        var table = IdempotencyTable()
        table.reserveCapacity(entryCount)
        for index in 0..<entryCount {
            do throws(LedgerCodecError) {
                let (scope, stored) = try idempotencyEntry()
                table.restore(scope, stored)
            } catch {
                throw error.within("idempotency entry \(index)")
            }
        }
        guard reader.remaining == 0 else { throw reader.failure(.trailingBytes, "end of keys") }
        return table
    }

    /// The whole input of version 1 or 2: header, then the sections, decoded concurrently.
    static func decodeLedger(_ buffer: UnsafeBufferPointer<UInt8>, version: UInt32) throws(LedgerCodecError) -> Ledger {
        var reader = ByteReader(buffer, 8..<buffer.count)
        let maxSeats = try reader.signed("maxSeats")
        let counters = SerialCounters(nextCreditSerial: try reader.varint("nextCreditSerial"),
                                      nextInvoiceSerial: try reader.varint("nextInvoiceSerial"))
        let subscriptionCount = try reader.count("subscription count", minimumBytes: minimumSubscriptionBytes)
        let partStart = reader.offset
        let partCount = try reader.count("part count", minimumBytes: 2)
        guard partCount >= 1 else { throw reader.failure(.invalidValue, "part count", at: partStart) }
        // Sections follow the header back to back; their lengths must add up to the input.
        var parts: [(count: Int, range: Range<Int>)] = []
        var lengths: [Int] = []
        var counted = 0
        for _ in 0..<partCount {
            let count = try reader.count("part subscription count", minimumBytes: minimumSubscriptionBytes)
            parts.append((count, 0..<0))
            lengths.append(Int(clamping: try reader.varint("part length")))
            counted += count
        }
        guard counted == subscriptionCount else { throw reader.failure(.invalidValue, "part subscription counts") }
        lengths.append(Int(clamping: try reader.varint("id order length")))
        lengths.append(Int(clamping: try reader.varint("keys length")))
        if version >= 2 { lengths.append(Int(clamping: try reader.varint("events length"))) }
        var sectionStart = reader.offset
        var ranges: [Range<Int>] = []
        for length in lengths {
            guard length <= buffer.count - sectionStart else {
                throw LedgerCodecError(.truncated, offset: buffer.count, field: "section \(ranges.count) of \(lengths.count)")
            }
            ranges.append(sectionStart..<(sectionStart + length))
            sectionStart += length
        }
        guard sectionStart == buffer.count else {
            throw LedgerCodecError(.trailingBytes, offset: sectionStart, field: "end")
        }
        for index in parts.indices {
            parts[index].range = ranges[index]
            // Every subscription takes bytes, so a part's count is capped by its length.
            guard parts[index].count <= ranges[index].count / minimumSubscriptionBytes else {
                throw LedgerCodecError(.badCount, offset: ranges[index].lowerBound, field: "part \(index) subscription count")
            }
        }

        // Parts and keys at once, each into its own result.
        struct PartResult {
            var initialized = 0
            var error: LedgerCodecError?
            var zones: [TimeZoneRules] = []
        }
        let results = Unchecked(UnsafeMutableBufferPointer<PartResult>.allocate(capacity: partCount))
        results.value.initialize(repeating: PartResult())
        defer {
            results.value.deinitialize()
            results.value.deallocate()
        }
        let keysResult = Unchecked(UnsafeMutablePointer<Result<IdempotencyTable, LedgerCodecError>>.allocate(capacity: 1))
        keysResult.value.initialize(to: .success(IdempotencyTable()))
        // Version 2: the event feed, decoded beside the parts.
        let eventsResult = Unchecked(UnsafeMutablePointer<Result<EventFeed, LedgerCodecError>>.allocate(capacity: 1))
        eventsResult.value.initialize(to: .success(EventFeed()))
        let eventsRange: Range<Int>? = version >= 2 ? ranges[partCount + 2] : nil
        defer {
            eventsResult.value.deinitialize(count: 1)
            eventsResult.value.deallocate()
        }
        defer {
            keysResult.value.deinitialize(count: 1)
            keysResult.value.deallocate()
        }
        let input = Unchecked(buffer)
        let keysRange = ranges[partCount + 1]
        let partList = parts
        var slots = DecodedSubscriptions(count: subscriptionCount)
        do {
            let target = slots.target
            runConcurrently(partCount + 2) { index in
                if index == partCount + 1 {
                    if let eventsRange {
                        do throws(LedgerCodecError) {
                            var decoder = try PositionalDecoder(input.value, section: eventsRange)
                            eventsResult.value.pointee = .success(try decoder.events())
                        } catch {
                            eventsResult.value.pointee = .failure(error)
                        }
                    }
                    return
                }
                if index == partCount {
                    do throws(LedgerCodecError) {
                        var decoder = try PositionalDecoder(input.value, section: keysRange)
                        keysResult.value.pointee = .success(try decoder.keys())
                    } catch {
                        keysResult.value.pointee = .failure(error)
                    }
                    return
                }
                let first = partList[..<index].reduce(0) { $0 + $1.count }
                var initialized = 0
                do throws(LedgerCodecError) {
                    var decoder = try PositionalDecoder(input.value, section: partList[index].range)
                    try decoder.subscriptions(into: target, count: partList[index].count, firstIndex: first,
                                              initialized: &initialized)
                    results.value[index].zones = decoder.zones
                } catch {
                    results.value[index].error = error
                }
                results.value[index].initialized = initialized
            }
            if results.value.allSatisfy({ $0.error == nil }) {
                slots.markComplete()
            } else {
                var first = 0
                for index in 0..<partCount {
                    target.deinitialize(first..<(first + results.value[index].initialized))
                    first += partList[index].count
                }
            }
        }
        if let error = results.value.lazy.compactMap(\.error).first { throw error }
        let idempotency = try keysResult.value.pointee.get()
        let feed = try eventsResult.value.pointee.get()

        var zones: [String: TimeZoneRules] = [:]
        for result in results.value {
            for zone in result.zones where zones[zone.identifier] == nil { zones[zone.identifier] = zone }
        }
        return try LedgerAssembly.ledger(buffer, maxSeats: maxSeats, counters: counters, slots: slots, idOrder: ranges[partCount],
                                         idempotency: idempotency, zones: zones, feed: feed)
    }

    // MARK: small values

    /// See `LedgerEncoder.instant`.
    @inline(__always)
    mutating func instant(_ field: StaticString, _ base: CodecBase) throws(LedgerCodecError) -> Instant {
        let raw = try reader.varint(field)
        let value = Int64(bitPattern: (raw >> 3) ^ (0 &- ((raw >> 2) & 1)))
        let delta: Int64
        switch raw & 3 {
        case 2: delta = value &* CodecBase.nanosecondsPerMinute
        case 1: delta = value &* Instant.nanosecondsPerSecond
        case 0: delta = value
        default:
            guard raw == 3 else { throw reader.failure(.invalidValue, field) }
            delta = try reader.signed(field)
        }
        return Instant(nanosecondsSinceEpoch: base.instant &+ delta)
    }

    @inline(__always)
    mutating func date(_ field: StaticString, _ base: CodecBase) throws(LedgerCodecError) -> CivilDate {
        CivilDate(epochDay: base.day &+ (try reader.int32(field)))
    }

    /// A one-byte enum raw value.
    mutating func enumValue<Value: RawRepresentable>(_ field: StaticString, _: Value.Type) throws(LedgerCodecError) -> Value
    where Value.RawValue == Int32 {
        let start = reader.offset
        guard let value = Value(rawValue: Int32(try reader.byte(field))) else {
            throw reader.failure(.invalidValue, field, at: start)
        }
        return value
    }

    // MARK: values

    mutating func subscription() throws(LedgerCodecError) -> Subscription {
        let id = try reader.string("id")
        let customer = try reader.string("customer")
        let plan = try reader.string("plan")
        let createdAt = try instant("createdAt", .zero)
        let startDate = try date("startDate", .zero)
        let base = CodecBase(createdAt, startDate)
        let timeZone = zones[try reader.index("zone index", below: zones.count)]
        let currency = currencies[try reader.index("currency index", below: currencies.count)]
        let status = try enumValue("status", SubscriptionStatus.self)
        let refundPolicy = try enumValue("refundPolicy", RefundPolicy.self)
        let interval = try enumValue("interval", BillingInterval.self)
        let scheduleStart = reader.offset
        let anchorMonth = Int8(bitPattern: try reader.byte("anchorMonth"))
        let anchorDay = Int8(bitPattern: try reader.byte("anchorDay"))
        let monthValid = interval == .monthly ? anchorMonth == 0 : (1...12).contains(anchorMonth)
        guard monthValid, (1...31).contains(anchorDay) else {
            throw reader.failure(.invalidValue, "billing anchor", at: scheduleStart)
        }
        let schedule = BillingSchedule(interval: interval, storedAnchorMonth: anchorMonth, storedAnchorDay: anchorDay)
        let unitPriceMinor = try reader.signed("unitPriceMinor")
        let purchaseSeats = try reader.int32("purchase seats")
        let purchaseInvoiceSerial = try reader.varint("purchase invoice serial")
        let seats = try reader.signed("seats")
        let period = BillingPeriod(start: try date("period start", base), end: try date("period end", base),
                                   chargedMinor: try reader.signed("period chargedMinor"),
                                   chargedSeats: try reader.signed("period chargedSeats"))
        let cumulative = try reader.signed128("cumulative numerator")
        let scheduledSeats = try reader.signed("scheduled seats")
        let unbilledChargesMinor = try reader.signed("unbilledChargesMinor")
        let lastEventSeq = try reader.varint("lastEventSeq")
        let nextDue: Instant? = try reader.bool("nextDue present") ? try instant("nextDue", base) : nil

        let blockCount = try reader.count("block count", minimumBytes: PositionalDecoder.minimumBlockBytes)
        var blocks: [SeatBlock] = []
        blocks.reserveCapacity(blockCount)
        for _ in 0..<blockCount {
            blocks.append(SeatBlock(seats: try reader.signed("block seats"), windowStart: try instant("block windowStart", base),
                                    startDate: try date("block startDate", base)))
        }
        let lineCount = try reader.count("period line count", minimumBytes: PositionalDecoder.minimumLineBytes)
        var periodLines: [LedgerLine] = []
        periodLines.reserveCapacity(lineCount)
        for _ in 0..<lineCount {
            periodLines.append(try ledgerLine(base))
        }
        let creditCount = try reader.count("credit count", minimumBytes: PositionalDecoder.minimumCreditBytes)
        var credits: [Credit] = []
        credits.reserveCapacity(creditCount)
        var previousSerial: UInt64 = 0
        for _ in 0..<creditCount {
            let credit = try credit(base, previousSerial: previousSerial, explanation: nil)
            credits.append(credit)
            previousSerial = credit.serial
        }
        let invoiceCount = try reader.count("invoice count", minimumBytes: PositionalDecoder.minimumInvoiceBytes)
        var laterInvoices: [Invoice] = []
        laterInvoices.reserveCapacity(invoiceCount)
        for _ in 0..<invoiceCount {
            laterInvoices.append(try invoice(base))
        }
        let cancellationSlot: CancellationSlot = try reader.bool("cancellation present") ? .recorded(try cancellation(base)) : .none

        return Subscription(
            id: id, customer: customer, plan: plan, unitPriceMinor: unitPriceMinor, createdAt: createdAt,
            timeZone: timeZone, seats: seats, period: period,
            cumulativeHigh: Int64(truncatingIfNeeded: cumulative >> 64), cumulativeLow: UInt64(truncatingIfNeeded: cumulative),
            storedScheduledSeats: scheduledSeats, unbilledChargesMinor: unbilledChargesMinor, blocks: blocks,
            periodLines: periodLines, credits: CreditList(credits), purchaseInvoiceSerial: purchaseInvoiceSerial,
            laterInvoices: laterInvoices, cancellationSlot: cancellationSlot, lastEventSeq: lastEventSeq, nextDue: nextDue,
            status: status, currency: currency, refundPolicy: refundPolicy, schedule: schedule, startDate: startDate,
            storedPurchaseSeats: purchaseSeats)
    }

    mutating func explanation(_ base: CodecBase) throws(LedgerCodecError) -> LineExplanation {
        let chargedMinor = try reader.signed("explanation chargedMinor")
        let cumulative = try reader.signed128("explanation cumulative numerator")
        let chargedSeats = try reader.int32("explanation chargedSeats")
        let seatsDelta = try reader.int32("explanation seatsDelta")
        let periodDays = try reader.int16("explanation periodDays")
        let unusedDays = try reader.int16("explanation unusedDays")
        let portionCount = try reader.count("explanation block count", minimumBytes: PositionalDecoder.minimumPortionBytes)
        var portions: [SeatBlockPortion] = []
        portions.reserveCapacity(portionCount)
        for _ in 0..<portionCount {
            portions.append(SeatBlockPortion(seats: try reader.signed("portion seats"), startDate: try date("portion startDate", base),
                                             unusedDays: try reader.int32("portion unusedDays")))
        }
        return LineExplanation(chargedMinor: chargedMinor, cumulativeNumerator: cumulative, blocks: portions,
                               storedChargedSeats: chargedSeats, storedSeatsDelta: seatsDelta,
                               storedPeriodDays: periodDays, storedUnusedDays: unusedDays)
    }

    mutating func ledgerLine(_ base: CodecBase) throws(LedgerCodecError) -> LedgerLine {
        LedgerLine(amountMinor: try reader.signed("line amountMinor"), effectiveDate: try date("line effectiveDate", base),
                   eventSeq: try reader.varint("line eventSeq"), explanation: try explanation(base))
    }

    /// `explanation` is the one already read when the credit shares it with a line.
    mutating func credit(_ base: CodecBase, previousSerial: UInt64,
                                 explanation shared: LineExplanation?) throws(LedgerCodecError) -> Credit {
        let serial = previousSerial &+ UInt64(bitPattern: try reader.signed("credit serial"))
        let createdAt = try instant("credit createdAt", base)
        let effectiveDate = try date("credit effectiveDate", base)
        let amountMinor = try reader.signed("credit amountMinor")
        let remainingMinor = try reader.signed("credit remainingMinor")
        let consumedMinor = try reader.signed("credit consumedMinor")
        let eventSeq = try reader.uint32("credit eventSeq")
        let dueStart = reader.offset
        guard let dueDateOffset = UInt16(exactly: try reader.varint("credit dueDate offset")) else {
            throw reader.failure(.invalidValue, "credit dueDate offset", at: dueStart)
        }
        let refundExpectedByOffset = try reader.byte("credit refundExpectedBy offset")
        let flagsStart = reader.offset
        let flags = try reader.byte("credit source/state")
        guard flags & 0xC0 == 0, let source = CreditSource(rawValue: Int32(flags & 0x03)),
              let state = CreditState(rawValue: Int32((flags >> 2) & 0x07)) else {
            throw reader.failure(.invalidValue, "credit source/state", at: flagsStart)
        }
        let explanation: LineExplanation
        if let shared { explanation = shared } else { explanation = try self.explanation(base) }
        let historyCount = try reader.count("credit history count", minimumBytes: PositionalDecoder.minimumHistoryEntryBytes)
        var history = CreditHistory()
        for _ in 0..<historyCount {
            let entryState = try enumValue("credit history state", CreditState.self)
            history.append(entryState, at: try instant("credit history instant", base))
        }
        return Credit(serial: serial, createdAt: createdAt, amountMinor: amountMinor, remainingMinor: remainingMinor,
                      consumedMinor: consumedMinor, explanation: explanation, storedEventSeq: eventSeq, laterHistory: history,
                      effectiveDate: effectiveDate, dueDateOffset: dueDateOffset, refundExpectedByOffset: refundExpectedByOffset,
                      source: source, state: state, hadRefundFailure: flags & 0x20 != 0)
    }

    mutating func invoice(_ base: CodecBase) throws(LedgerCodecError) -> Invoice {
        let serial = try reader.varint("invoice serial")
        let flagsStart = reader.offset
        let flags = try reader.byte("invoice kind/flags")
        guard flags & 0xE0 == 0, let kind = InvoiceKind(rawValue: Int32(flags >> 2)) else {
            throw reader.failure(.invalidValue, "invoice kind/flags", at: flagsStart)
        }
        let issuedAt = try instant("invoice issuedAt", base)
        let issuedDate = try date("invoice issuedDate", base)
        let periodStart = try date("invoice periodStart", base)
        let periodEnd = try date("invoice periodEnd", base)
        let settlesOn: CivilDate? = flags & 2 != 0 ? try date("invoice settlesOn", base) : nil
        let lineCount = try reader.count("invoice line count", minimumBytes: PositionalDecoder.minimumInvoiceLineBytes)
        var lines: [InvoiceLine] = []
        lines.reserveCapacity(lineCount)
        for _ in 0..<lineCount {
            lines.append(InvoiceLine(kind: try enumValue("invoice line kind", InvoiceLineKind.self),
                                     amountMinor: try reader.signed("invoice line amountMinor"),
                                     creditSerial: try reader.varint("invoice line creditSerial"),
                                     effectiveDate: try date("invoice line effectiveDate", base),
                                     seats: try reader.signed("invoice line seats")))
        }
        return Invoice(serial: serial, kind: kind, issuedAt: issuedAt, issuedDate: issuedDate, periodStart: periodStart,
                       periodEnd: periodEnd, lines: lines, settlesOn: settlesOn, settled: flags & 1 != 0)
    }

    mutating func cancellation(_ base: CodecBase) throws(LedgerCodecError) -> CancellationRecord {
        let mode = try enumValue("cancellation mode", CancelMode.self)
        let flagsStart = reader.offset
        let flags = try reader.byte("cancellation flags")
        guard flags & 0xE0 == 0, flags & 0x16 != 0x14 else {
            throw reader.failure(.invalidValue, "cancellation flags", at: flagsStart)
        }
        let effectiveDate = try date("cancellation effectiveDate", base)
        let requestedAt = try instant("cancellation requestedAt", base)
        let entitlementEndsAt = try instant("cancellation entitlementEndsAt", base)
        let line = flags & 2 != 0 ? try ledgerLine(base) : nil
        let credit = flags & 4 != 0 ? try credit(base, previousSerial: 0, explanation: flags & 16 != 0 ? line?.explanation : nil) : nil
        let finalInvoice = flags & 8 != 0 ? try invoice(base) : nil
        return CancellationRecord(mode: mode, effectiveDate: effectiveDate, requestedAt: requestedAt,
                                  entitlementEndsAt: entitlementEndsAt, line: line, credit: credit,
                                  finalInvoice: finalInvoice, alreadyCancelled: flags & 1 != 0)
    }

    private mutating func idempotencyEntry() throws(LedgerCodecError) -> (IdempotencyTable.Scope, IdempotencyTable.Stored) {
        let callerUID = try reader.uint32("callerUID")
        let operation = try enumValue("operation", IdempotentOperation.self)
        let key = try reader.string("key")
        let firstUsedAt = Instant(nanosecondsSinceEpoch: try reader.signed("firstUsedAt"))
        let fingerprintStart = reader.offset
        let fingerprint: RequestFingerprint
        switch try reader.byte("fingerprint tag") {
        case CodecTag.fingerprintCancel:
            fingerprint = .cancel(subscriptionId: ScalarString(try reader.string("fingerprint subscriptionId")),
                                  mode: try reader.int32("fingerprint mode"))
        case CodecTag.fingerprintChangeSeats:
            fingerprint = .changeSeats(subscriptionId: ScalarString(try reader.string("fingerprint subscriptionId")),
                                       newSeats: try reader.signed("fingerprint newSeats"),
                                       timing: try reader.int32("fingerprint timing"))
        default:
            throw reader.failure(.invalidValue, "fingerprint tag", at: fingerprintStart)
        }
        let outcomeStart = reader.offset
        let outcome: StoredOutcome
        switch try reader.byte("outcome tag") {
        case CodecTag.outcomeResponse:
            outcome = .response(try commandResponse())
        case CodecTag.outcomeError:
            let reasonStart = reader.offset
            guard let reason = DomainError.Reason(codecNumber: try reader.byte("error reason")) else {
                throw reader.failure(.invalidValue, "error reason", at: reasonStart)
            }
            outcome = .error(DomainError(reason, try reader.string("error message")))
        default:
            throw reader.failure(.invalidValue, "outcome tag", at: outcomeStart)
        }
        return (IdempotencyTable.Scope(callerUID: callerUID, operation: operation, key: ScalarString(key)),
                IdempotencyTable.Stored(fingerprint: fingerprint, outcome: outcome, firstUsedAt: firstUsedAt))
    }

    mutating func commandResponse() throws(LedgerCodecError) -> CommandResponse {
        let base = CodecBase.zero
        let tagStart = reader.offset
        switch try reader.byte("response tag") {
        case CodecTag.responseCreated:
            let subscription = try subscription()
            return .created(CreatedSubscription(subscription: subscription, purchaseInvoice: try invoice(base)))
        case CodecTag.responseCancelled:
            return .cancelled(try cancellation(base))
        case CodecTag.responseResumed:
            return .resumed(try subscription())
        case CodecTag.responseSeatsChanged:
            let outcome = try enumValue("seat change outcome", SeatChangeOutcome.self)
            let flagsStart = reader.offset
            let flags = try reader.byte("seat change flags")
            guard flags & 0xF8 == 0, flags & 5 != 4 else {
                throw reader.failure(.invalidValue, "seat change flags", at: flagsStart)
            }
            let previousSeats = try reader.signed("previousSeats")
            let newSeats = try reader.signed("newSeats")
            let seats = try reader.signed("seats")
            let effectiveDate = try date("seat change effectiveDate", base)
            let line = flags & 1 != 0 ? try ledgerLine(base) : nil
            let credit = flags & 2 != 0 ? try credit(base, previousSerial: 0, explanation: flags & 4 != 0 ? line?.explanation : nil) : nil
            return .seatsChanged(SeatChangeResult(outcome: outcome, previousSeats: previousSeats, newSeats: newSeats,
                                                  seats: seats, effectiveDate: effectiveDate, line: line, credit: credit))
        case CodecTag.responseRefundOutcomeRecorded:
            let flagsStart = reader.offset
            let flags = try reader.byte("refund outcome flags")
            guard flags & 0xF8 == 0 else { throw reader.failure(.invalidValue, "refund outcome flags", at: flagsStart) }
            let credit = try credit(base, previousSerial: 0, explanation: nil)
            return .refundOutcomeRecorded(RefundOutcomeResult(
                ignored: flags & 1 != 0,
                credit: CreditStatus(credit: credit, overdue: flags & 2 != 0, refundOverdue: flags & 4 != 0)))
        case CodecTag.responseImported:
            let subscription = try subscription()
            return .imported(ImportedSubscription(subscription: subscription, openingInvoice: try invoice(base)))
        default:
            throw reader.failure(.invalidValue, "response tag", at: tagStart)
        }
    }
}

/// Tags of the enums with payloads in the positional format.
enum CodecTag {
    static let fingerprintCancel: UInt8 = 1
    static let fingerprintChangeSeats: UInt8 = 2
    static let outcomeResponse: UInt8 = 1
    static let outcomeError: UInt8 = 2
    static let responseCreated: UInt8 = 1
    static let responseCancelled: UInt8 = 2
    static let responseResumed: UInt8 = 3
    static let responseSeatsChanged: UInt8 = 4
    static let responseRefundOutcomeRecorded: UInt8 = 5
    static let responseImported: UInt8 = 6
    static let payloadSubscription: UInt8 = 1
    static let payloadSeatChange: UInt8 = 2
    static let payloadCancel: UInt8 = 3
    static let payloadInvoice: UInt8 = 4
    static let payloadCreditState: UInt8 = 5
}

