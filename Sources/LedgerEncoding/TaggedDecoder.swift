import ProtoWire
import CreditDomain

/// Reads one part of the tagged encoding (format version 3), checking every value as it goes.
/// Unknown fields are skipped; a known field with another wire type is an error.
struct TaggedDecoder {
    var reader: ByteReader
    private(set) var zones: [TimeZoneRules] = []
    private(set) var currencies: [Currency] = []
    /// Where the part's records are, found by `init` (records are decoded afterwards, once the
    /// tables, written last, are known).
    private(set) var records: [Range<Int>] = []

    /// The part in `range`: reads its tables and finds its records.
    init(_ buffer: UnsafeBufferPointer<UInt8>, part range: Range<Int>) throws(LedgerCodecError) {
        reader = ByteReader(buffer, range)
        var tables: [Range<Int>] = []
        while let (number, wire) = try reader.field() {
            switch number {
            case TaggedField.Part.record: records.append(try reader.lengthDelimited("record", wire))
            case TaggedField.Part.tables: tables.append(try reader.lengthDelimited("tables", wire))
            default: try reader.skip(wire)
            }
        }
        for table in tables {
            reader = reader.within(table)
            while let (number, wire) = try reader.field() {
                let start = reader.offset
                switch number {
                case TaggedField.Tables.zone:
                    let identifier = try reader.stringValue(wire, "zone id")
                    guard let rules = TimeZoneRules(identifier: identifier) else {
                        throw LedgerCodecError(.unknownTimeZone, offset: start, field: "zone id \"\(identifier)\"")
                    }
                    zones.append(rules)
                case TaggedField.Tables.currency:
                    let code = try reader.stringValue(wire, "currency code")
                    guard let currency = Currency(code: code) else {
                        throw LedgerCodecError(.invalidValue, offset: start, field: "currency code \"\(code)\"")
                    }
                    currencies.append(currency)
                default: try reader.skip(wire)
                }
            }
        }
    }

    /// Runs `body` on the message in a length-delimited field, then stands after it.
    @inline(__always)
    private mutating func message<Value>(_ wire: UInt8, _ field: StaticString,
                                         _ body: (inout TaggedDecoder) throws(LedgerCodecError) -> Value) throws(LedgerCodecError) -> Value {
        let range = try reader.lengthDelimited(field, wire)
        let outer = reader
        reader = outer.within(range)
        let value = try body(&self)
        reader = outer
        return value
    }

    // MARK: records

    /// Decodes record `index` of the part as a subscription.
    mutating func subscription(record index: Int) throws(LedgerCodecError) -> Subscription {
        reader = reader.within(records[index])
        return try subscription()
    }

    mutating func keyEntry(record index: Int) throws(LedgerCodecError) -> (IdempotencyTable.Scope, IdempotencyTable.Stored) {
        reader = reader.within(records[index])
        return try keyEntry()
    }

    mutating func event(record index: Int, seq: UInt64) throws(LedgerCodecError) -> LedgerEvent {
        reader = reader.within(records[index])
        return try event(seq: seq)
    }

    // MARK: small values

    @inline(__always)
    mutating func instant(_ wire: UInt8, _ field: StaticString, _ base: CodecBase) throws(LedgerCodecError) -> Instant {
        if wire == WireType.fixed64.rawValue {
            return Instant(nanosecondsSinceEpoch: base.instant &+ Int64(bitPattern: try reader.fixed64(field)))
        }
        let start = reader.offset
        let raw = try reader.uintValue(wire, field)
        let value = Int64(bitPattern: (raw >> 3) ^ (0 &- ((raw >> 2) & 1)))
        let delta: Int64
        switch raw & 3 {
        case 2: delta = value &* CodecBase.nanosecondsPerMinute
        case 1: delta = value &* Instant.nanosecondsPerSecond
        case 0: delta = value
        default: throw reader.failure(.invalidValue, field, at: start)
        }
        return Instant(nanosecondsSinceEpoch: base.instant &+ delta)
    }

    @inline(__always)
    mutating func date(_ wire: UInt8, _ field: StaticString, _ base: CodecBase) throws(LedgerCodecError) -> CivilDate {
        CivilDate(epochDay: base.day &+ (try reader.int32Value(wire, field)))
    }

    /// An enum's raw value (0 when the field is absent, which no stored enum uses).
    func enumValue<Value: RawRepresentable>(_ raw: UInt64, _ field: StaticString, _: Value.Type) throws(LedgerCodecError) -> Value
    where Value.RawValue == Int32 {
        guard let narrow = Int32(exactly: raw), let value = Value(rawValue: narrow) else {
            throw reader.failure(.invalidValue, field)
        }
        return value
    }

    mutating func int8(_ wire: UInt8, _ field: StaticString) throws(LedgerCodecError) -> Int8 {
        let start = reader.offset
        guard let value = UInt8(exactly: try reader.uintValue(wire, field)) else { throw reader.failure(.invalidValue, field, at: start) }
        return Int8(bitPattern: value)
    }

    func schedule(_ interval: UInt64, _ anchorMonth: Int8, _ anchorDay: Int8) throws(LedgerCodecError) -> BillingSchedule {
        guard let narrow = Int32(exactly: interval), let interval = BillingInterval(rawValue: narrow) else {
            throw reader.failure(.invalidValue, "interval")
        }
        let monthValid = interval == .monthly ? anchorMonth == 0 : (1...12).contains(anchorMonth)
        guard monthValid, (1...31).contains(anchorDay) else { throw reader.failure(.invalidValue, "billing anchor") }
        return BillingSchedule(interval: interval, storedAnchorMonth: anchorMonth, storedAnchorDay: anchorDay)
    }

    func zone(_ index: UInt64) throws(LedgerCodecError) -> TimeZoneRules {
        guard index < UInt64(zones.count) else { throw reader.failure(.invalidValue, "zone index") }
        return zones[Int(index)]
    }

    func currency(_ index: UInt64) throws(LedgerCodecError) -> Currency {
        guard index < UInt64(currencies.count) else { throw reader.failure(.invalidValue, "currency index") }
        return currencies[Int(index)]
    }

    // MARK: values

    mutating func subscription() throws(LedgerCodecError) -> Subscription {
        typealias F = TaggedField.Subscription
        var id = "", customer = "", plan = ""
        var createdAt = Instant(nanosecondsSinceEpoch: 0)
        var startDate = CivilDate(epochDay: 0)
        var zoneIndex: UInt64?, currencyIndex: UInt64?
        var status: UInt64 = 0, refundPolicy: UInt64 = 0, interval: UInt64 = 0
        var anchorMonth: Int8 = 0, anchorDay: Int8 = 0
        var unitPriceMinor: Int64 = 0, purchaseSeats: Int32 = 0, purchaseInvoiceSerial: UInt64 = 0, seats: Int64 = 0
        var chargedMinor: Int64 = 0, chargedSeats: Int64 = 0
        var cumulativeLow: UInt64 = 0, cumulativeHigh: UInt64 = 0
        var scheduledSeats: Int64 = 0, unbilledChargesMinor: Int64 = 0, lastEventSeq: UInt64 = 0
        // Fields relative to the base (created instant and start date) are decoded once both
        // are known (this build writes them first); any read before both are kept until then.
        var createdAtSeen = false, startDateSeen = false
        var parts = RelativeParts()
        var early: [(number: UInt32, wire: UInt8, offset: Int)] = []
        let whole = reader
        while let (number, wire) = try reader.field() {
            switch number {
            case F.id: id = try reader.stringValue(wire, "id")
            case F.customer: customer = try reader.stringValue(wire, "customer")
            case F.plan: plan = try reader.stringValue(wire, "plan")
            case F.createdAt:
                guard !createdAtSeen else { throw reader.failure(.invalidValue, "createdAt repeated") }
                createdAt = try instant(wire, "createdAt", .zero)
                createdAtSeen = true
            case F.startDate:
                guard !startDateSeen else { throw reader.failure(.invalidValue, "startDate repeated") }
                startDate = try date(wire, "startDate", .zero)
                startDateSeen = true
            case F.zone: zoneIndex = try reader.uintValue(wire, "zone index")
            case F.currency: currencyIndex = try reader.uintValue(wire, "currency index")
            case F.status: status = try reader.uintValue(wire, "status")
            case F.refundPolicy: refundPolicy = try reader.uintValue(wire, "refundPolicy")
            case F.interval: interval = try reader.uintValue(wire, "interval")
            case F.anchorMonth: anchorMonth = try int8(wire, "anchorMonth")
            case F.anchorDay: anchorDay = try int8(wire, "anchorDay")
            case F.unitPriceMinor: unitPriceMinor = try reader.sintValue(wire, "unitPriceMinor")
            case F.seats: seats = try reader.sintValue(wire, "seats")
            case F.periodChargedMinor: chargedMinor = try reader.sintValue(wire, "period chargedMinor")
            case F.periodChargedSeats: chargedSeats = try reader.sintValue(wire, "period chargedSeats")
            case F.purchaseSeats: purchaseSeats = try reader.int32Value(wire, "purchase seats")
            case F.purchaseInvoiceSerial: purchaseInvoiceSerial = try reader.uintValue(wire, "purchase invoice serial")
            case F.cumulativeLow: cumulativeLow = try reader.uintValue(wire, "cumulative numerator")
            case F.cumulativeHigh: cumulativeHigh = try reader.uintValue(wire, "cumulative numerator")
            case F.scheduledSeats: scheduledSeats = try reader.sintValue(wire, "scheduled seats")
            case F.unbilledChargesMinor: unbilledChargesMinor = try reader.sintValue(wire, "unbilledChargesMinor")
            case F.lastEventSeq: lastEventSeq = try reader.uintValue(wire, "lastEventSeq")
            case F.credit, F.periodStart, F.periodEnd, F.nextDue, F.block, F.periodLine, F.laterInvoice, F.cancellation:
                if createdAtSeen && startDateSeen {
                    try relativeField(number, wire, CodecBase(createdAt, startDate), into: &parts)
                } else {
                    early.append((number, wire, reader.offset))
                    try reader.skip(wire)
                }
            default: try reader.skip(wire)
            }
        }
        let end = reader
        let base = CodecBase(createdAt, startDate)
        if !early.isEmpty {
            let late = parts
            parts = RelativeParts()
            for (number, wire, offset) in early {
                reader = whole
                reader.offset = offset
                try relativeField(number, wire, base, into: &parts)
            }
            parts.append(late: late)
        }
        if parts.periodStart == nil { parts.periodStart = CivilDate(epochDay: base.day) }
        if parts.periodEnd == nil { parts.periodEnd = CivilDate(epochDay: base.day) }
        reader = end
        guard let zoneIndex, let currencyIndex else { throw reader.failure(.invalidValue, "zone or currency missing") }
        return Subscription(
            id: id, customer: customer, plan: plan, unitPriceMinor: unitPriceMinor, createdAt: createdAt,
            timeZone: try zone(zoneIndex), seats: seats,
            period: BillingPeriod(start: parts.periodStart!, end: parts.periodEnd!, chargedMinor: chargedMinor, chargedSeats: chargedSeats),
            cumulativeHigh: Int64(truncatingIfNeeded: int128(zigzagLow: cumulativeLow, high: cumulativeHigh) >> 64),
            cumulativeLow: UInt64(truncatingIfNeeded: int128(zigzagLow: cumulativeLow, high: cumulativeHigh)),
            storedScheduledSeats: scheduledSeats, unbilledChargesMinor: unbilledChargesMinor, blocks: exact(parts.blocks),
            periodLines: exact(parts.periodLines), credits: CreditList(parts.credits), purchaseInvoiceSerial: purchaseInvoiceSerial,
            laterInvoices: exact(parts.laterInvoices), cancellationSlot: parts.cancellationSlot, lastEventSeq: lastEventSeq,
            nextDue: parts.nextDue,
            status: try enumValue(status, "status", SubscriptionStatus.self),
            currency: try currency(currencyIndex),
            refundPolicy: try enumValue(refundPolicy, "refundPolicy", RefundPolicy.self),
            schedule: try schedule(interval, anchorMonth, anchorDay), startDate: startDate,
            storedPurchaseSeats: purchaseSeats)
    }

    /// `array` in storage of its own size: appending one by one leaves up to twice the room
    /// (5 credits of 136 bytes in room for 8), and a decoded ledger is held for the life of the
    /// process (at 1M subscriptions, ~400 MB of the recovered RSS).
    private func exact<Element>(_ array: [Element]) -> [Element] {
        guard array.capacity > array.count, !array.isEmpty else { return array }
        return [Element](unsafeUninitializedCapacity: array.count) { buffer, initialized in
            initialized = buffer.initialize(fromContentsOf: array)
        }
    }

    /// A subscription's fields relative to its base.
    struct RelativeParts {
        var periodStart: CivilDate?
        var periodEnd: CivilDate?
        var nextDue: Instant?
        var credits: [Credit] = []
        var blocks: [SeatBlock] = []
        var periodLines: [LedgerLine] = []
        var laterInvoices: [Invoice] = []
        var cancellationSlot = CancellationSlot.none

        /// Adds the fields read after `self`'s (repeated fields keep their order; later
        /// single fields win, as in protobuf).
        mutating func append(late: RelativeParts) {
            periodStart = late.periodStart ?? periodStart
            periodEnd = late.periodEnd ?? periodEnd
            nextDue = late.nextDue ?? nextDue
            credits += late.credits
            blocks += late.blocks
            periodLines += late.periodLines
            laterInvoices += late.laterInvoices
            if case .recorded = late.cancellationSlot { cancellationSlot = late.cancellationSlot }
        }
    }

    private mutating func relativeField(_ number: UInt32, _ wire: UInt8, _ base: CodecBase,
                                        into parts: inout RelativeParts) throws(LedgerCodecError) {
        typealias F = TaggedField.Subscription
        switch number {
        case F.periodStart: parts.periodStart = try date(wire, "period start", base)
        case F.periodEnd: parts.periodEnd = try date(wire, "period end", base)
        case F.nextDue: parts.nextDue = try instant(wire, "nextDue", base)
        case F.credit:
            parts.credits.append(try message(wire, "credit") { (decoder) throws(LedgerCodecError) in try decoder.credit(base) })
        case F.block:
            parts.blocks.append(try message(wire, "block") { (decoder) throws(LedgerCodecError) in try decoder.seatBlock(base) })
        case F.periodLine:
            parts.periodLines.append(try message(wire, "period line") { (decoder) throws(LedgerCodecError) in try decoder.ledgerLine(base) })
        case F.laterInvoice:
            parts.laterInvoices.append(try message(wire, "invoice") { (decoder) throws(LedgerCodecError) in try decoder.invoice(base) })
        default:
            parts.cancellationSlot = .recorded(try message(wire, "cancellation") { (decoder) throws(LedgerCodecError) in
                try decoder.cancellation(base)
            })
        }
    }

    mutating func seatBlock(_ base: CodecBase) throws(LedgerCodecError) -> SeatBlock {
        var seats: Int64 = 0
        var windowStart = Instant(nanosecondsSinceEpoch: base.instant)
        var startDate = CivilDate(epochDay: base.day)
        while let (number, wire) = try reader.field() {
            switch number {
            case TaggedField.SeatBlock.seats: seats = try reader.sintValue(wire, "block seats")
            case TaggedField.SeatBlock.windowStart: windowStart = try instant(wire, "block windowStart", base)
            case TaggedField.SeatBlock.startDate: startDate = try date(wire, "block startDate", base)
            default: try reader.skip(wire)
            }
        }
        return SeatBlock(seats: seats, windowStart: windowStart, startDate: startDate)
    }

    mutating func explanation(_ base: CodecBase) throws(LedgerCodecError) -> LineExplanation {
        typealias F = TaggedField.Explanation
        var chargedMinor: Int64 = 0, low: UInt64 = 0, high: UInt64 = 0
        var chargedSeats: Int32 = 0, seatsDelta: Int32 = 0
        var periodDays: Int16 = 0, unusedDays: Int16 = 0
        var portions: [SeatBlockPortion] = []
        while let (number, wire) = try reader.field() {
            switch number {
            case F.chargedMinor: chargedMinor = try reader.sintValue(wire, "explanation chargedMinor")
            case F.cumulativeLow: low = try reader.uintValue(wire, "explanation cumulative numerator")
            case F.cumulativeHigh: high = try reader.uintValue(wire, "explanation cumulative numerator")
            case F.chargedSeats: chargedSeats = try reader.int32Value(wire, "explanation chargedSeats")
            case F.seatsDelta: seatsDelta = try reader.int32Value(wire, "explanation seatsDelta")
            case F.periodDays: periodDays = try int16(wire, "explanation periodDays")
            case F.unusedDays: unusedDays = try int16(wire, "explanation unusedDays")
            case F.portion:
                portions.append(try message(wire, "explanation block") { (decoder) throws(LedgerCodecError) in
                    var seats: Int64 = 0, startDate = CivilDate(epochDay: base.day), unused: Int32 = 0
                    while let (number, wire) = try decoder.reader.field() {
                        switch number {
                        case TaggedField.Portion.seats: seats = try decoder.reader.sintValue(wire, "portion seats")
                        case TaggedField.Portion.startDate: startDate = try decoder.date(wire, "portion startDate", base)
                        case TaggedField.Portion.unusedDays: unused = try decoder.reader.int32Value(wire, "portion unusedDays")
                        default: try decoder.reader.skip(wire)
                        }
                    }
                    return SeatBlockPortion(seats: seats, startDate: startDate, unusedDays: unused)
                })
            default: try reader.skip(wire)
            }
        }
        return LineExplanation(chargedMinor: chargedMinor, cumulativeNumerator: int128(zigzagLow: low, high: high), blocks: portions,
                               storedChargedSeats: chargedSeats, storedSeatsDelta: seatsDelta,
                               storedPeriodDays: periodDays, storedUnusedDays: unusedDays)
    }

    private mutating func int16(_ wire: UInt8, _ field: StaticString) throws(LedgerCodecError) -> Int16 {
        let start = reader.offset
        guard let value = Int16(exactly: try reader.sintValue(wire, field)) else { throw reader.failure(.invalidValue, field, at: start) }
        return value
    }

    mutating func ledgerLine(_ base: CodecBase) throws(LedgerCodecError) -> LedgerLine {
        var amountMinor: Int64 = 0, effectiveDate = CivilDate(epochDay: base.day), eventSeq: UInt64 = 0
        var explanation: LineExplanation?
        while let (number, wire) = try reader.field() {
            switch number {
            case TaggedField.Line.amountMinor: amountMinor = try reader.sintValue(wire, "line amountMinor")
            case TaggedField.Line.effectiveDate: effectiveDate = try date(wire, "line effectiveDate", base)
            case TaggedField.Line.eventSeq: eventSeq = try reader.uintValue(wire, "line eventSeq")
            case TaggedField.Line.explanation:
                explanation = try message(wire, "line explanation") { (decoder) throws(LedgerCodecError) in try decoder.explanation(base) }
            default: try reader.skip(wire)
            }
        }
        guard let explanation else { throw reader.failure(.invalidValue, "line explanation missing") }
        return LedgerLine(amountMinor: amountMinor, effectiveDate: effectiveDate, eventSeq: eventSeq, explanation: explanation)
    }

    mutating func credit(_ base: CodecBase) throws(LedgerCodecError) -> Credit {
        typealias F = TaggedField.Credit
        var serial: UInt64 = 0, createdAt = Instant(nanosecondsSinceEpoch: base.instant)
        var effectiveDate = CivilDate(epochDay: base.day)
        var amountMinor: Int64 = 0, remainingMinor: Int64 = 0, consumedMinor: Int64 = 0
        var eventSeq: UInt32 = 0, dueDateOffset: UInt16 = 0, refundExpectedByOffset: UInt8 = 0
        var source: UInt64 = 0, state: UInt64 = 0, hadRefundFailure = false
        var explanation: LineExplanation?
        var history = CreditHistory()
        while let (number, wire) = try reader.field() {
            switch number {
            case F.serial: serial = try reader.uintValue(wire, "credit serial")
            case F.createdAt: createdAt = try instant(wire, "credit createdAt", base)
            case F.effectiveDate: effectiveDate = try date(wire, "credit effectiveDate", base)
            case F.amountMinor: amountMinor = try reader.sintValue(wire, "credit amountMinor")
            case F.remainingMinor: remainingMinor = try reader.sintValue(wire, "credit remainingMinor")
            case F.consumedMinor: consumedMinor = try reader.sintValue(wire, "credit consumedMinor")
            case F.eventSeq: eventSeq = try reader.uint32Value(wire, "credit eventSeq")
            case F.dueDateOffset:
                let start = reader.offset
                guard let value = UInt16(exactly: try reader.uintValue(wire, "credit dueDate offset")) else {
                    throw reader.failure(.invalidValue, "credit dueDate offset", at: start)
                }
                dueDateOffset = value
            case F.refundExpectedByOffset:
                let start = reader.offset
                guard let value = UInt8(exactly: try reader.uintValue(wire, "credit refundExpectedBy offset")) else {
                    throw reader.failure(.invalidValue, "credit refundExpectedBy offset", at: start)
                }
                refundExpectedByOffset = value
            case F.source: source = try reader.uintValue(wire, "credit source")
            case F.state: state = try reader.uintValue(wire, "credit state")
            case F.hadRefundFailure: hadRefundFailure = try reader.boolValue(wire, "credit hadRefundFailure")
            case F.explanation:
                explanation = try message(wire, "credit explanation") { (decoder) throws(LedgerCodecError) in try decoder.explanation(base) }
            case F.history:
                let (entryState, at) = try message(wire, "credit history") { (decoder) throws(LedgerCodecError) in
                    var entryState: UInt64 = 0, at = Instant(nanosecondsSinceEpoch: base.instant)
                    while let (number, wire) = try decoder.reader.field() {
                        switch number {
                        case TaggedField.HistoryEntry.state: entryState = try decoder.reader.uintValue(wire, "credit history state")
                        case TaggedField.HistoryEntry.at: at = try decoder.instant(wire, "credit history instant", base)
                        default: try decoder.reader.skip(wire)
                        }
                    }
                    return (try decoder.enumValue(entryState, "credit history state", CreditState.self), at)
                }
                history.append(entryState, at: at)
            default: try reader.skip(wire)
            }
        }
        guard let explanation else { throw reader.failure(.invalidValue, "credit explanation missing") }
        return Credit(serial: serial, createdAt: createdAt, amountMinor: amountMinor, remainingMinor: remainingMinor,
                      consumedMinor: consumedMinor, explanation: explanation, storedEventSeq: eventSeq, laterHistory: history,
                      effectiveDate: effectiveDate, dueDateOffset: dueDateOffset, refundExpectedByOffset: refundExpectedByOffset,
                      source: try enumValue(source, "credit source", CreditSource.self),
                      state: try enumValue(state, "credit state", CreditState.self), hadRefundFailure: hadRefundFailure)
    }

    mutating func invoice(_ base: CodecBase) throws(LedgerCodecError) -> Invoice {
        typealias F = TaggedField.Invoice
        var serial: UInt64 = 0, kind: UInt64 = 0, settled = false
        var issuedAt = Instant(nanosecondsSinceEpoch: base.instant)
        let day = CivilDate(epochDay: base.day)
        var issuedDate = day, periodStart = day, periodEnd = day
        var settlesOn: CivilDate?
        var lines: [InvoiceLine] = []
        while let (number, wire) = try reader.field() {
            switch number {
            case F.serial: serial = try reader.uintValue(wire, "invoice serial")
            case F.kind: kind = try reader.uintValue(wire, "invoice kind")
            case F.settled: settled = try reader.boolValue(wire, "invoice settled")
            case F.issuedAt: issuedAt = try instant(wire, "invoice issuedAt", base)
            case F.issuedDate: issuedDate = try date(wire, "invoice issuedDate", base)
            case F.periodStart: periodStart = try date(wire, "invoice periodStart", base)
            case F.periodEnd: periodEnd = try date(wire, "invoice periodEnd", base)
            case F.settlesOn: settlesOn = try date(wire, "invoice settlesOn", base)
            case F.line:
                lines.append(try message(wire, "invoice line") { (decoder) throws(LedgerCodecError) in
                    typealias L = TaggedField.InvoiceLine
                    var kind: UInt64 = 0, amountMinor: Int64 = 0, creditSerial: UInt64 = 0, seats: Int64 = 0
                    var effectiveDate = CivilDate(epochDay: base.day)
                    while let (number, wire) = try decoder.reader.field() {
                        switch number {
                        case L.kind: kind = try decoder.reader.uintValue(wire, "invoice line kind")
                        case L.amountMinor: amountMinor = try decoder.reader.sintValue(wire, "invoice line amountMinor")
                        case L.creditSerial: creditSerial = try decoder.reader.uintValue(wire, "invoice line creditSerial")
                        case L.effectiveDate: effectiveDate = try decoder.date(wire, "invoice line effectiveDate", base)
                        case L.seats: seats = try decoder.reader.sintValue(wire, "invoice line seats")
                        default: try decoder.reader.skip(wire)
                        }
                    }
                    return InvoiceLine(kind: try decoder.enumValue(kind, "invoice line kind", InvoiceLineKind.self),
                                       amountMinor: amountMinor, creditSerial: creditSerial, effectiveDate: effectiveDate, seats: seats)
                })
            default: try reader.skip(wire)
            }
        }
        return Invoice(serial: serial, kind: try enumValue(kind, "invoice kind", InvoiceKind.self), issuedAt: issuedAt,
                       issuedDate: issuedDate, periodStart: periodStart, periodEnd: periodEnd, lines: lines,
                       settlesOn: settlesOn, settled: settled)
    }

    mutating func cancellation(_ base: CodecBase) throws(LedgerCodecError) -> CancellationRecord {
        typealias F = TaggedField.Cancellation
        var mode: UInt64 = 0, alreadyCancelled = false
        var effectiveDate = CivilDate(epochDay: base.day)
        var requestedAt = Instant(nanosecondsSinceEpoch: base.instant), entitlementEndsAt = requestedAt
        var line: LedgerLine?, credit: Credit?, finalInvoice: Invoice?
        while let (number, wire) = try reader.field() {
            switch number {
            case F.mode: mode = try reader.uintValue(wire, "cancellation mode")
            case F.alreadyCancelled: alreadyCancelled = try reader.boolValue(wire, "cancellation alreadyCancelled")
            case F.effectiveDate: effectiveDate = try date(wire, "cancellation effectiveDate", base)
            case F.requestedAt: requestedAt = try instant(wire, "cancellation requestedAt", base)
            case F.entitlementEndsAt: entitlementEndsAt = try instant(wire, "cancellation entitlementEndsAt", base)
            case F.line: line = try message(wire, "cancellation line") { (decoder) throws(LedgerCodecError) in try decoder.ledgerLine(base) }
            case F.credit: credit = try message(wire, "cancellation credit") { (decoder) throws(LedgerCodecError) in try decoder.credit(base) }
            case F.finalInvoice:
                finalInvoice = try message(wire, "cancellation invoice") { (decoder) throws(LedgerCodecError) in try decoder.invoice(base) }
            default: try reader.skip(wire)
            }
        }
        return CancellationRecord(mode: try enumValue(mode, "cancellation mode", CancelMode.self), effectiveDate: effectiveDate,
                                  requestedAt: requestedAt, entitlementEndsAt: entitlementEndsAt, line: line, credit: credit,
                                  finalInvoice: finalInvoice, alreadyCancelled: alreadyCancelled)
    }

    mutating func keyEntry() throws(LedgerCodecError) -> (IdempotencyTable.Scope, IdempotencyTable.Stored) {
        typealias F = TaggedField.KeyEntry
        typealias P = TaggedField.Fingerprint
        var callerUID: UInt32 = 0, operation: UInt64 = 0, key = ""
        var firstUsedAt = Instant(nanosecondsSinceEpoch: 0)
        var fingerprint: RequestFingerprint?
        var outcome: StoredOutcome?
        while let (number, wire) = try reader.field() {
            switch number {
            case F.callerUID: callerUID = try reader.uint32Value(wire, "callerUID")
            case F.operation: operation = try reader.uintValue(wire, "operation")
            case F.key: key = try reader.stringValue(wire, "key")
            case F.firstUsedAt: firstUsedAt = try instant(wire, "firstUsedAt", .zero)
            case F.cancelFingerprint:
                fingerprint = try message(wire, "cancel fingerprint") { (decoder) throws(LedgerCodecError) in
                    var id = "", mode: Int32 = 0
                    while let (number, wire) = try decoder.reader.field() {
                        switch number {
                        case P.subscriptionId: id = try decoder.reader.stringValue(wire, "fingerprint subscriptionId")
                        case P.mode: mode = try decoder.sint32(wire, "fingerprint mode")
                        default: try decoder.reader.skip(wire)
                        }
                    }
                    return .cancel(subscriptionId: ScalarString(id), mode: mode)
                }
            case F.changeSeatsFingerprint:
                fingerprint = try message(wire, "seat change fingerprint") { (decoder) throws(LedgerCodecError) in
                    var id = "", newSeats: Int64 = 0, timing: Int32 = 0
                    while let (number, wire) = try decoder.reader.field() {
                        switch number {
                        case P.subscriptionId: id = try decoder.reader.stringValue(wire, "fingerprint subscriptionId")
                        case P.newSeats: newSeats = try decoder.reader.sintValue(wire, "fingerprint newSeats")
                        case P.timing: timing = try decoder.sint32(wire, "fingerprint timing")
                        default: try decoder.reader.skip(wire)
                        }
                    }
                    return .changeSeats(subscriptionId: ScalarString(id), newSeats: newSeats, timing: timing)
                }
            case F.response:
                outcome = .response(try message(wire, "response") { (decoder) throws(LedgerCodecError) in try decoder.commandResponse() })
            case F.error:
                outcome = try message(wire, "error") { (decoder) throws(LedgerCodecError) in
                    var reason: UInt64 = 0, message = ""
                    while let (number, wire) = try decoder.reader.field() {
                        switch number {
                        case TaggedField.Error.reason: reason = try decoder.reader.uintValue(wire, "error reason")
                        case TaggedField.Error.message: message = try decoder.reader.stringValue(wire, "error message")
                        default: try decoder.reader.skip(wire)
                        }
                    }
                    guard let narrow = UInt8(exactly: reason), let known = DomainError.Reason(codecNumber: narrow) else {
                        throw decoder.reader.failure(.invalidValue, "error reason")
                    }
                    return .error(DomainError(known, message))
                }
            default: try reader.skip(wire)
            }
        }
        guard let fingerprint else { throw reader.failure(.invalidValue, "fingerprint missing") }
        guard let outcome else { throw reader.failure(.invalidValue, "outcome missing") }
        return (IdempotencyTable.Scope(callerUID: callerUID, operation: try enumValue(operation, "operation", IdempotentOperation.self),
                                       key: ScalarString(key)),
                IdempotencyTable.Stored(fingerprint: fingerprint, outcome: outcome, firstUsedAt: firstUsedAt))
    }

    private mutating func sint32(_ wire: UInt8, _ field: StaticString) throws(LedgerCodecError) -> Int32 {
        let start = reader.offset
        guard let value = Int32(exactly: try reader.sintValue(wire, field)) else { throw reader.failure(.invalidValue, field, at: start) }
        return value
    }

    /// A command response: the last of its oneof fields wins, as in protobuf.
    mutating func commandResponse() throws(LedgerCodecError) -> CommandResponse {
        typealias F = TaggedField.Response
        let base = CodecBase.zero
        var response: CommandResponse?
        while let (number, wire) = try reader.field() {
            switch number {
            case F.created:
                let (subscription, invoice) = try message(wire, "created") { (decoder) throws(LedgerCodecError) in try decoder.subscriptionAndInvoice() }
                response = .created(CreatedSubscription(subscription: subscription, purchaseInvoice: invoice))
            case F.cancelled:
                response = .cancelled(try message(wire, "cancelled") { (decoder) throws(LedgerCodecError) in try decoder.cancellation(base) })
            case F.resumed:
                response = .resumed(try message(wire, "resumed") { (decoder) throws(LedgerCodecError) in try decoder.subscription() })
            case F.seatsChanged:
                response = .seatsChanged(try message(wire, "seats changed") { (decoder) throws(LedgerCodecError) in try decoder.seatChange() })
            case F.refundOutcomeRecorded:
                response = try message(wire, "refund outcome") { (decoder) throws(LedgerCodecError) in
                    typealias R = TaggedField.RefundOutcome
                    var ignored = false, overdue = false, refundOverdue = false, credit: Credit?
                    while let (number, wire) = try decoder.reader.field() {
                        switch number {
                        case R.ignored: ignored = try decoder.reader.boolValue(wire, "refund outcome ignored")
                        case R.overdue: overdue = try decoder.reader.boolValue(wire, "refund outcome overdue")
                        case R.refundOverdue: refundOverdue = try decoder.reader.boolValue(wire, "refund outcome refundOverdue")
                        case R.credit:
                            credit = try decoder.message(wire, "refund outcome credit") { (inner) throws(LedgerCodecError) in try inner.credit(base) }
                        default: try decoder.reader.skip(wire)
                        }
                    }
                    guard let credit else { throw decoder.reader.failure(.invalidValue, "refund outcome credit missing") }
                    return .refundOutcomeRecorded(RefundOutcomeResult(
                        ignored: ignored, credit: CreditStatus(credit: credit, overdue: overdue, refundOverdue: refundOverdue)))
                }
            case F.imported:
                let (subscription, invoice) = try message(wire, "imported") { (decoder) throws(LedgerCodecError) in try decoder.subscriptionAndInvoice() }
                response = .imported(ImportedSubscription(subscription: subscription, openingInvoice: invoice))
            default: try reader.skip(wire)
            }
        }
        guard let response else { throw reader.failure(.invalidValue, "response missing") }
        return response
    }

    private mutating func subscriptionAndInvoice() throws(LedgerCodecError) -> (Subscription, Invoice) {
        var subscription: Subscription?, invoice: Invoice?
        while let (number, wire) = try reader.field() {
            switch number {
            case TaggedField.Created.subscription:
                subscription = try message(wire, "subscription") { (decoder) throws(LedgerCodecError) in try decoder.subscription() }
            case TaggedField.Created.invoice:
                invoice = try message(wire, "invoice") { (decoder) throws(LedgerCodecError) in try decoder.invoice(.zero) }
            default: try reader.skip(wire)
            }
        }
        guard let subscription, let invoice else { throw reader.failure(.invalidValue, "subscription or invoice missing") }
        return (subscription, invoice)
    }

    mutating func seatChange() throws(LedgerCodecError) -> SeatChangeResult {
        typealias F = TaggedField.SeatChange
        let base = CodecBase.zero
        var outcome: UInt64 = 0, previousSeats: Int64 = 0, newSeats: Int64 = 0, seats: Int64 = 0
        var effectiveDate = CivilDate(epochDay: 0)
        var line: LedgerLine?, credit: Credit?
        while let (number, wire) = try reader.field() {
            switch number {
            case F.outcome: outcome = try reader.uintValue(wire, "seat change outcome")
            case F.previousSeats: previousSeats = try reader.sintValue(wire, "previousSeats")
            case F.newSeats: newSeats = try reader.sintValue(wire, "newSeats")
            case F.seats: seats = try reader.sintValue(wire, "seats")
            case F.effectiveDate: effectiveDate = try date(wire, "seat change effectiveDate", base)
            case F.line: line = try message(wire, "seat change line") { (decoder) throws(LedgerCodecError) in try decoder.ledgerLine(base) }
            case F.credit: credit = try message(wire, "seat change credit") { (decoder) throws(LedgerCodecError) in try decoder.credit(base) }
            default: try reader.skip(wire)
            }
        }
        return SeatChangeResult(outcome: try enumValue(outcome, "seat change outcome", SeatChangeOutcome.self),
                                previousSeats: previousSeats, newSeats: newSeats, seats: seats, effectiveDate: effectiveDate,
                                line: line, credit: credit)
    }

    // MARK: events

    mutating func event(seq: UInt64) throws(LedgerCodecError) -> LedgerEvent {
        typealias F = TaggedField.Event
        let base = CodecBase.zero
        var type: UInt64 = 0
        var recordedAt = Instant(nanosecondsSinceEpoch: 0), at = recordedAt
        var date = CivilDate(epochDay: 0)
        var subscriptionId = "", customer = ""
        // The payload refers to the id and customer, which may come after it.
        var payloadField: (number: UInt32, wire: UInt8, offset: Int)?
        let whole = reader
        while let (number, wire) = try reader.field() {
            switch number {
            case F.type: type = try reader.uintValue(wire, "event type")
            case F.recordedAt: recordedAt = try instant(wire, "event recordedAt", base)
            case F.at: at = try instant(wire, "event at", base)
            case F.date: date = try self.date(wire, "event date", base)
            case F.subscriptionId: subscriptionId = try reader.stringValue(wire, "event subscriptionId")
            case F.customer: customer = try reader.stringValue(wire, "event customer")
            case F.subscription, F.seatChange, F.cancel, F.invoice, F.creditState:
                payloadField = (number, wire, reader.offset)
                try reader.skip(wire)
            default: try reader.skip(wire)
            }
        }
        let end = reader
        guard let payloadField else { throw reader.failure(.invalidValue, "event payload missing") }
        reader = whole
        reader.offset = payloadField.offset
        let id = subscriptionId, name = customer
        let payload: EventPayload
        switch payloadField.number {
        case F.subscription:
            payload = .subscription(try message(payloadField.wire, "event view") { (decoder) throws(LedgerCodecError) in
                try decoder.view(id: id, customer: name)
            })
        case F.seatChange:
            payload = try message(payloadField.wire, "event seat change") { (decoder) throws(LedgerCodecError) in
                var view: SubscriptionView?, change: SeatChangeResult?
                while let (number, wire) = try decoder.reader.field() {
                    switch number {
                    case TaggedField.ViewAnd.view:
                        view = try decoder.message(wire, "event view") { (inner) throws(LedgerCodecError) in try inner.view(id: id, customer: name) }
                    case TaggedField.ViewAnd.detail:
                        change = try decoder.message(wire, "event seat change") { (inner) throws(LedgerCodecError) in try inner.seatChange() }
                    default: try decoder.reader.skip(wire)
                    }
                }
                guard let view, let change else { throw decoder.reader.failure(.invalidValue, "event seat change incomplete") }
                return .seatChange(view, change)
            }
        case F.cancel:
            payload = try message(payloadField.wire, "event cancel") { (decoder) throws(LedgerCodecError) in
                var view: SubscriptionView?, record: CancellationRecord?
                while let (number, wire) = try decoder.reader.field() {
                    switch number {
                    case TaggedField.ViewAnd.view:
                        view = try decoder.message(wire, "event view") { (inner) throws(LedgerCodecError) in try inner.view(id: id, customer: name) }
                    case TaggedField.ViewAnd.detail:
                        record = try decoder.message(wire, "event cancellation") { (inner) throws(LedgerCodecError) in try inner.cancellation(base) }
                    default: try decoder.reader.skip(wire)
                    }
                }
                guard let view, let record else { throw decoder.reader.failure(.invalidValue, "event cancel incomplete") }
                return .cancel(view, record)
            }
        case F.invoice:
            payload = .invoice(try message(payloadField.wire, "event invoice") { (decoder) throws(LedgerCodecError) in try decoder.invoice(base) })
        default:
            payload = try message(payloadField.wire, "event credit state") { (decoder) throws(LedgerCodecError) in
                var state: UInt64 = 0, at = Instant(nanosecondsSinceEpoch: 0), credit: Credit?
                while let (number, wire) = try decoder.reader.field() {
                    switch number {
                    case TaggedField.CreditStateEvent.state: state = try decoder.reader.uintValue(wire, "event credit state")
                    case TaggedField.CreditStateEvent.at: at = try decoder.instant(wire, "event credit instant", base)
                    case TaggedField.CreditStateEvent.credit:
                        credit = try decoder.message(wire, "event credit") { (inner) throws(LedgerCodecError) in try inner.credit(base) }
                    default: try decoder.reader.skip(wire)
                    }
                }
                guard let credit else { throw decoder.reader.failure(.invalidValue, "event credit missing") }
                return .creditState(CreditStateChange(state: try decoder.enumValue(state, "event credit state", CreditState.self), at: at),
                                    credit)
            }
        }
        reader = end
        return LedgerEvent(seq: seq, type: try enumValue(type, "event type", EventType.self), at: at, date: date,
                           subscriptionId: subscriptionId, customer: customer, recordedAt: recordedAt, payload: payload)
    }

    private mutating func view(id: String, customer: String) throws(LedgerCodecError) -> SubscriptionView {
        typealias F = TaggedField.View
        let base = CodecBase.zero
        var plan = "", status: UInt64 = 0, refundPolicy: UInt64 = 0, interval: UInt64 = 0
        var anchorMonth: Int8 = 0, anchorDay: Int8 = 0
        var zoneIndex: UInt64?, currencyIndex: UInt64?
        var seats: Int64 = 0, unitPriceMinor: Int64 = 0
        let zeroDay = CivilDate(epochDay: 0)
        var startDate = zeroDay, periodStart = zeroDay, periodEnd = zeroDay
        var chargedMinor: Int64 = 0, chargedSeats: Int64 = 0, scheduledSeats: Int64 = 0
        while let (number, wire) = try reader.field() {
            switch number {
            case F.plan: plan = try reader.stringValue(wire, "view plan")
            case F.status: status = try reader.uintValue(wire, "view status")
            case F.refundPolicy: refundPolicy = try reader.uintValue(wire, "view refundPolicy")
            case F.interval: interval = try reader.uintValue(wire, "view interval")
            case F.anchorMonth: anchorMonth = try int8(wire, "view anchorMonth")
            case F.anchorDay: anchorDay = try int8(wire, "view anchorDay")
            case F.zone: zoneIndex = try reader.uintValue(wire, "view zone index")
            case F.currency: currencyIndex = try reader.uintValue(wire, "view currency index")
            case F.seats: seats = try reader.sintValue(wire, "view seats")
            case F.unitPriceMinor: unitPriceMinor = try reader.sintValue(wire, "view unitPriceMinor")
            case F.startDate: startDate = try date(wire, "view startDate", base)
            case F.periodStart: periodStart = try date(wire, "view period start", base)
            case F.periodEnd: periodEnd = try date(wire, "view period end", base)
            case F.periodChargedMinor: chargedMinor = try reader.sintValue(wire, "view period chargedMinor")
            case F.periodChargedSeats: chargedSeats = try reader.sintValue(wire, "view period chargedSeats")
            case F.scheduledSeats: scheduledSeats = try reader.sintValue(wire, "view scheduledSeats")
            default: try reader.skip(wire)
            }
        }
        guard let zoneIndex, let currencyIndex else { throw reader.failure(.invalidValue, "view zone or currency missing") }
        return SubscriptionView(id: id, customer: customer, plan: plan, status: try enumValue(status, "view status", SubscriptionStatus.self),
                                seats: seats, unitPriceMinor: unitPriceMinor, currency: try currency(currencyIndex),
                                schedule: try schedule(interval, anchorMonth, anchorDay), timeZone: try zone(zoneIndex),
                                refundPolicy: try enumValue(refundPolicy, "view refundPolicy", RefundPolicy.self),
                                startDate: startDate,
                                period: BillingPeriod(start: periodStart, end: periodEnd, chargedMinor: chargedMinor,
                                                      chargedSeats: chargedSeats),
                                scheduledSeats: scheduledSeats == 0 ? nil : scheduledSeats)
    }
}
