/// A growable byte buffer with LEB128 writers. It owns raw memory rather than an `[UInt8]`
/// so the hot path is a capacity check and a store, without uniqueness checks per byte.
struct ByteWriter: ~Copyable {
    private(set) var base: UnsafeMutablePointer<UInt8>
    private(set) var count = 0
    private var capacity: Int

    init(capacity: Int) {
        self.capacity = max(capacity, 64)
        self.base = UnsafeMutablePointer<UInt8>.allocate(capacity: self.capacity)
    }

    deinit {
        base.deallocate()
    }

    @inline(__always)
    private mutating func reserve(_ extra: Int) {
        if capacity - count < extra { grow(extra) }
    }

    @inline(never)
    private mutating func grow(_ extra: Int) {
        let newCapacity = max(capacity * 2, count + extra)
        let newBase = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
        newBase.update(from: base, count: count)
        base.deallocate()
        base = newBase
        capacity = newCapacity
    }

    @inline(__always)
    mutating func byte(_ value: UInt8) {
        reserve(1)
        base[count] = value
        count += 1
    }

    @inline(__always)
    mutating func bool(_ value: Bool) {
        byte(value ? 1 : 0)
    }

    @inline(__always)
    mutating func uint32LE(_ value: UInt32) {
        reserve(4)
        for shift in stride(from: 0, to: 32, by: 8) {
            base[count] = UInt8(truncatingIfNeeded: value >> UInt32(shift))
            count += 1
        }
    }

    @inline(__always)
    mutating func varint(_ value: UInt64) {
        reserve(10)
        var rest = value
        while rest >= 0x80 {
            base[count] = UInt8(truncatingIfNeeded: rest) | 0x80
            count += 1
            rest >>= 7
        }
        base[count] = UInt8(truncatingIfNeeded: rest)
        count += 1
    }

    @inline(__always)
    mutating func varint(_ value: Int) {
        varint(UInt64(truncatingIfNeeded: value))
    }

    /// Zigzag: small magnitudes of either sign take few bytes.
    @inline(__always)
    mutating func signed(_ value: Int64) {
        varint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    mutating func signed128(_ value: Int128) {
        var rest = UInt128(truncatingIfNeeded: (value << 1) ^ (value >> 127))
        // Most numerators fit 64 bits; take the cheap path then.
        if rest <= UInt128(UInt64.max) {
            varint(UInt64(truncatingIfNeeded: rest))
            return
        }
        reserve(19)
        while rest >= 0x80 {
            base[count] = UInt8(truncatingIfNeeded: rest) | 0x80
            count += 1
            rest >>= 7
        }
        base[count] = UInt8(truncatingIfNeeded: rest)
        count += 1
    }

    mutating func bytes(_ source: UnsafeBufferPointer<UInt8>) {
        reserve(source.count)
        if let address = source.baseAddress, source.count > 0 {
            (base + count).update(from: address, count: source.count)
        }
        count += source.count
    }

    /// The bytes written, handed over to the caller, who deallocates them.
    consuming func take() -> UnsafeMutableBufferPointer<UInt8> {
        let result = UnsafeMutableBufferPointer(start: base, count: count)
        discard self
        return result
    }

    /// Room for a varint written later, as five bytes (values below 2^35).
    mutating func paddedVarintPlaceholder() -> Int {
        reserve(5)
        let position = count
        count += 5
        return position
    }

    /// A varint padded to five bytes, which any LEB128 reader accepts.
    mutating func patchPaddedVarint(at position: Int, _ value: Int) {
        var rest = UInt64(truncatingIfNeeded: value)
        for index in 0..<5 {
            base[position + index] = UInt8(truncatingIfNeeded: rest & 0x7F) | (index < 4 ? 0x80 : 0)
            rest >>= 7
        }
    }

    func copy(to target: UnsafeMutablePointer<UInt8>) {
        target.update(from: base, count: count)
    }

    mutating func string(_ value: String) {
        let written: Void? = value.utf8.withContiguousStorageIfAvailable { utf8 in
            varint(utf8.count)
            bytes(utf8)
        }
        if written == nil {
            let utf8 = Array(value.utf8)
            varint(utf8.count)
            utf8.withUnsafeBufferPointer { bytes($0) }
        }
    }
}

/// Writes one section: a five-byte offset of its tables, its items, then the zone and currency
/// tables the items refer to (collected on the way, so the section is written in one pass).
/// Sections are independent, so they can be written and read concurrently.
struct SectionEncoder: ~Copyable {
    var out: ByteWriter
    private let tablesOffsetPosition: Int
    private var zones: [String] = []
    private var zoneIndex: [String: Int] = [:]
    private var lastZone: (identifier: String, index: Int)?
    private var currencies: [Currency] = []
    private var lastCurrency: (currency: Currency, index: Int)?

    init(capacity: Int) {
        out = ByteWriter(capacity: capacity)
        tablesOffsetPosition = out.paddedVarintPlaceholder()
    }

    /// Subscriptions in creation order; their count is in the header.
    mutating func encodeSubscriptions(_ subscriptions: ArraySlice<Subscription>) {
        for subscription in subscriptions {
            encode(subscription)
        }
    }

    /// The key table in order of first use, with its count.
    mutating func encodeKeys(_ ledger: Ledger) {
        // The count is patched in afterwards, so the table is walked once.
        let countPosition = out.paddedVarintPlaceholder()
        var entryCount = 0
        ledger.forEachIdempotencyEntry { scope, stored in
            encode(scope, stored)
            entryCount += 1
        }
        out.patchPaddedVarint(at: countPosition, entryCount)
    }

    /// The finished section; the caller deallocates it.
    consuming func finish() -> UnsafeMutableBufferPointer<UInt8> {
        out.patchPaddedVarint(at: tablesOffsetPosition, out.count)
        out.varint(zones.count)
        for zone in zones { out.string(zone) }
        out.varint(currencies.count)
        for currency in currencies { out.string(currency.code) }
        return out.take()
    }

    // MARK: tables

    mutating func index(ofZone zone: TimeZoneRules) -> Int {
        // Subscriptions of one zone share the identifier's storage, so this compare is cheap.
        if let last = lastZone, last.identifier == zone.identifier { return last.index }
        let index: Int
        if let known = zoneIndex[zone.identifier] {
            index = known
        } else {
            index = zones.count
            zones.append(zone.identifier)
            zoneIndex[zone.identifier] = index
        }
        lastZone = (zone.identifier, index)
        return index
    }

    mutating func index(ofCurrency currency: Currency) -> Int {
        if let last = lastCurrency, last.currency == currency { return last.index }
        let index: Int
        if let known = currencies.firstIndex(of: currency) {
            index = known
        } else {
            index = currencies.count
            currencies.append(currency)
        }
        lastCurrency = (currency, index)
        return index
    }

    // MARK: relative values

    /// An instant relative to `base` in the coarsest exact unit: the low two bits of the first
    /// varint say minutes (2), seconds (1) or nanoseconds (0); 3 means a full varint follows.
    /// Time-driven transitions happen at local midnights, which are whole minutes.
    @inline(__always)
    mutating func instant(_ value: Instant, _ base: CodecBase) {
        let delta = value.nanosecondsSinceEpoch &- base.instant
        if delta % CodecBase.nanosecondsPerMinute == 0 {
            out.varint(zigzag(delta / CodecBase.nanosecondsPerMinute) << 2 | 2)
        } else if delta % Instant.nanosecondsPerSecond == 0 {
            out.varint(zigzag(delta / Instant.nanosecondsPerSecond) << 2 | 1)
        } else if delta >> 61 == 0 || delta >> 61 == -1 {
            out.varint(zigzag(delta) << 2)
        } else {
            out.byte(3)
            out.signed(delta)
        }
    }

    @inline(__always)
    private func zigzag(_ value: Int64) -> UInt64 {
        UInt64(bitPattern: (value << 1) ^ (value >> 63))
    }

    @inline(__always)
    mutating func date(_ value: CivilDate, _ base: CodecBase) {
        out.signed(Int64(value.epochDay &- base.day))
    }

    // MARK: values

    mutating func encode(_ subscription: Subscription) {
        let base = CodecBase(subscription.createdAt, subscription.startDate)
        out.string(subscription.id)
        out.string(subscription.customer)
        out.string(subscription.plan)
        instant(subscription.createdAt, .zero)
        date(subscription.startDate, .zero)
        out.varint(index(ofZone: subscription.timeZone))
        out.varint(index(ofCurrency: subscription.currency))
        out.byte(UInt8(truncatingIfNeeded: subscription.status.rawValue))
        out.byte(UInt8(truncatingIfNeeded: subscription.refundPolicy.rawValue))
        out.byte(UInt8(truncatingIfNeeded: subscription.schedule.interval.rawValue))
        out.byte(UInt8(bitPattern: subscription.schedule.anchorMonth))
        out.byte(UInt8(bitPattern: subscription.schedule.anchorDay))
        out.signed(subscription.unitPriceMinor)
        out.signed(Int64(subscription.storedPurchaseSeats))
        out.varint(subscription.purchaseInvoiceSerial)
        out.signed(subscription.seats)
        date(subscription.period.start, base)
        date(subscription.period.end, base)
        out.signed(subscription.period.chargedMinor)
        out.signed(subscription.period.chargedSeats)
        out.signed128((Int128(subscription.cumulativeHigh) << 64) | Int128(subscription.cumulativeLow))
        out.signed(subscription.storedScheduledSeats)
        out.signed(subscription.unbilledChargesMinor)
        out.varint(subscription.lastEventSeq)
        if let due = subscription.nextDue {
            out.byte(1)
            instant(due, base)
        } else {
            out.byte(0)
        }
        out.varint(subscription.blocks.count)
        for block in subscription.blocks {
            out.signed(block.seats)
            instant(block.windowStart, base)
            date(block.startDate, base)
        }
        out.varint(subscription.periodLines.count)
        for line in subscription.periodLines {
            encode(line, base)
        }
        out.varint(subscription.credits.count)
        var previousSerial: UInt64 = 0
        for credit in subscription.credits {
            encode(credit, base, previousSerial: previousSerial, withExplanation: true)
            previousSerial = credit.serial
        }
        out.varint(subscription.laterInvoices.count)
        for invoice in subscription.laterInvoices {
            encode(invoice, base)
        }
        if case .recorded(let record) = subscription.cancellationSlot {
            out.byte(1)
            encode(record, base)
        } else {
            out.byte(0)
        }
    }

    mutating func encode(_ explanation: LineExplanation, _ base: CodecBase) {
        out.signed(explanation.chargedMinor)
        out.signed128(explanation.cumulativeNumerator)
        out.signed(Int64(explanation.storedChargedSeats))
        out.signed(Int64(explanation.storedSeatsDelta))
        out.signed(Int64(explanation.storedPeriodDays))
        out.signed(Int64(explanation.storedUnusedDays))
        out.varint(explanation.blocks.count)
        for portion in explanation.blocks {
            out.signed(portion.seats)
            date(portion.startDate, base)
            out.signed(Int64(portion.unusedDays))
        }
    }

    mutating func encode(_ line: LedgerLine, _ base: CodecBase) {
        out.signed(line.amountMinor)
        date(line.effectiveDate, base)
        out.varint(line.eventSeq)
        encode(line.explanation, base)
    }

    /// `previousSerial` is the serial of the credit before it in a list (0 for the first).
    mutating func encode(_ credit: Credit, _ base: CodecBase, previousSerial: UInt64, withExplanation: Bool) {
        out.signed(Int64(bitPattern: credit.serial &- previousSerial))
        instant(credit.createdAt, base)
        date(credit.effectiveDate, base)
        out.signed(credit.amountMinor)
        out.signed(credit.remainingMinor)
        out.signed(credit.consumedMinor)
        out.varint(UInt64(credit.storedEventSeq))
        out.varint(UInt64(credit.dueDateOffset))
        out.byte(credit.refundExpectedByOffset)
        // source (1–2) in bits 0–1, state (1–7) in bits 2–4, the refund-failure flag in bit 5.
        out.byte(UInt8(truncatingIfNeeded: credit.source.rawValue) | UInt8(truncatingIfNeeded: credit.state.rawValue) << 2
                 | (credit.hadRefundFailure ? 0x20 : 0))
        if withExplanation { encode(credit.explanation, base) }
        // The history after its first entry (`pending` at `createdAt`).
        let history = credit.laterHistory
        let inline = Int(history.count)
        out.varint(inline + history.overflow.count)
        if inline > 0 { historyEntry(history.states.0, history.instants.0, base) }
        if inline > 1 { historyEntry(history.states.1, history.instants.1, base) }
        if inline > 2 { historyEntry(history.states.2, history.instants.2, base) }
        for change in history.overflow {
            historyEntry(UInt8(truncatingIfNeeded: change.state.rawValue), change.at.nanosecondsSinceEpoch, base)
        }
    }

    @inline(__always)
    private mutating func historyEntry(_ state: UInt8, _ nanoseconds: Int64, _ base: CodecBase) {
        out.byte(state)
        instant(Instant(nanosecondsSinceEpoch: nanoseconds), base)
    }

    mutating func encode(_ invoice: Invoice, _ base: CodecBase) {
        out.varint(invoice.serial)
        // kind (1–4) in bits 2–4, settled in bit 0, settlesOn present in bit 1.
        out.byte(UInt8(truncatingIfNeeded: invoice.kind.rawValue) << 2 | (invoice.settlesOn == nil ? 0 : 2) | (invoice.settled ? 1 : 0))
        instant(invoice.issuedAt, base)
        date(invoice.issuedDate, base)
        date(invoice.periodStart, base)
        date(invoice.periodEnd, base)
        if let settlesOn = invoice.settlesOn { date(settlesOn, base) }
        out.varint(invoice.lines.count)
        for line in invoice.lines {
            out.byte(UInt8(truncatingIfNeeded: line.kind.rawValue))
            out.signed(line.amountMinor)
            out.varint(line.creditSerial)
            date(line.effectiveDate, base)
            out.signed(line.seats)
        }
    }

    mutating func encode(_ record: CancellationRecord, _ base: CodecBase) {
        out.byte(UInt8(truncatingIfNeeded: record.mode.rawValue))
        // The credit of a cancel shares the line's explanation; it is written once then.
        let shared = record.line != nil && record.credit?.explanation == record.line?.explanation
        // Bit 0 alreadyCancelled; bits 1–3 line, credit and final invoice present; bit 4 shared.
        out.byte((record.alreadyCancelled ? 1 : 0) | (record.line == nil ? 0 : 2) | (record.credit == nil ? 0 : 4)
                 | (record.finalInvoice == nil ? 0 : 8) | (shared ? 16 : 0))
        date(record.effectiveDate, base)
        instant(record.requestedAt, base)
        instant(record.entitlementEndsAt, base)
        if let line = record.line { encode(line, base) }
        if let credit = record.credit { encode(credit, base, previousSerial: 0, withExplanation: !shared) }
        if let invoice = record.finalInvoice { encode(invoice, base) }
    }

    private mutating func encode(_ scope: IdempotencyTable.Scope, _ entry: IdempotencyTable.Stored) {
        out.varint(UInt64(scope.callerUID))
        out.byte(UInt8(truncatingIfNeeded: scope.operation.rawValue))
        out.string(scope.key.value)
        out.signed(entry.firstUsedAt.nanosecondsSinceEpoch)
        switch entry.fingerprint {
        case .cancel(let subscriptionId, let mode):
            out.byte(CodecTag.fingerprintCancel)
            out.string(subscriptionId.value)
            out.signed(Int64(mode))
        case .changeSeats(let subscriptionId, let newSeats, let timing):
            out.byte(CodecTag.fingerprintChangeSeats)
            out.string(subscriptionId.value)
            out.signed(newSeats)
            out.signed(Int64(timing))
        }
        switch entry.outcome {
        case .response(let response):
            out.byte(CodecTag.outcomeResponse)
            encode(response)
        case .error(let error):
            out.byte(CodecTag.outcomeError)
            out.byte(error.reason.codecNumber)
            out.string(error.message)
        }
    }

    mutating func encode(_ response: CommandResponse) {
        let base = CodecBase.zero
        switch response {
        case .created(let created):
            out.byte(CodecTag.responseCreated)
            encode(created.subscription)
            encode(created.purchaseInvoice, base)
        case .cancelled(let record):
            out.byte(CodecTag.responseCancelled)
            encode(record, base)
        case .resumed(let subscription):
            out.byte(CodecTag.responseResumed)
            encode(subscription)
        case .seatsChanged(let change):
            out.byte(CodecTag.responseSeatsChanged)
            out.byte(UInt8(truncatingIfNeeded: change.outcome.rawValue))
            let shared = change.line != nil && change.credit?.explanation == change.line?.explanation
            out.byte((change.line == nil ? 0 : 1) | (change.credit == nil ? 0 : 2) | (shared ? 4 : 0))
            out.signed(change.previousSeats)
            out.signed(change.newSeats)
            out.signed(change.seats)
            date(change.effectiveDate, base)
            if let line = change.line { encode(line, base) }
            if let credit = change.credit { encode(credit, base, previousSerial: 0, withExplanation: !shared) }
        case .refundOutcomeRecorded(let result):
            out.byte(CodecTag.responseRefundOutcomeRecorded)
            out.byte((result.ignored ? 1 : 0) | (result.credit.overdue ? 2 : 0) | (result.credit.refundOverdue ? 4 : 0))
            encode(result.credit.credit, base, previousSerial: 0, withExplanation: true)
        case .imported(let imported):
            out.byte(CodecTag.responseImported)
            encode(imported.subscription)
            encode(imported.openingInvoice, base)
        }
    }
}
