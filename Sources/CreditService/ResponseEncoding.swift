import CreditDomain
import ProtoWire

/// The responses that carry many credits (ListCredits, GetRefundStatus), encoded straight from
/// the domain values into one buffer.
///
/// A page of 100 credits built as generated messages cost about 5 µs a credit: a storage object
/// per message, a string per date and per rational, and SwiftProtobuf computing each nested
/// message's size before writing it. Here every field is written once, in field-number order,
/// so the bytes are exactly what SwiftProtobuf writes for the message `ProtoMapping` builds
/// (`ResponseEncodingTests` compares the two on every kind of credit). Field numbers are those
/// of proto/creditd/v1/credits.proto; a field added there must be added here, and the test
/// fails until it is.
enum ResponseEncoding {
    /// `creditd.v1.ListCreditsResponse` for one page (Q1); `summary` is CREDIT_VIEW_SUMMARY.
    static func listCredits(_ page: CreditPage, asOf: Instant, summary: Bool) -> [UInt8] {
        var out = ByteWriter(capacity: 64 + page.credits.count * (summary ? 200 : 480))
        for listing in page.credits {
            // ListCreditsResponse.credits = 1
            let mark = out.beginMessage(1, reserve: 2)
            out.credit(listing.credit, subscriptionID: listing.subscriptionId, currency: listing.currency,
                       timeZone: summary ? nil : listing.timeZone,
                       overdue: listing.status.overdue, refundOverdue: listing.status.refundOverdue,
                       customer: listing.customer, asOfDate: listing.asOfDate)
            out.endMessage(mark)
        }
        out.stringField(2, page.nextPageToken)
        out.intField(3, asOf.nanosecondsSinceEpoch)
        return out.array()
    }

    /// `creditd.v1.GetRefundStatusResponse` (L6, L7): every credit whole, with its flags as of
    /// the status's date, and the totals over all of them. Each credit carries its customer and
    /// as-of date as a ListCredits credit does: a client reads one Credit message the same way
    /// whichever call gave it (they were empty here).
    static func refundStatus(_ status: RefundStatus, timeZone: TimeZoneRules, customer: String) -> [UInt8] {
        var out = ByteWriter(capacity: 128 + status.credits.count * 480)
        out.stringField(1, status.subscriptionId)
        out.dateField(2, status.asOfDate)
        out.intField(3, status.asOf.nanosecondsSinceEpoch)
        out.stringField(4, status.currency.code)
        for entry in status.credits {
            let mark = out.beginMessage(5, reserve: 2)
            out.credit(entry.credit, subscriptionID: status.subscriptionId, currency: status.currency, timeZone: timeZone,
                       overdue: entry.overdue, refundOverdue: entry.refundOverdue, customer: customer,
                       asOfDate: status.asOfDate)
            out.endMessage(mark)
        }
        // CreditTotals totals = 6: always present, as the generated message sets it.
        let totals = out.beginMessage(6)
        out.intField(1, status.totals.pendingMinor)
        out.intField(2, status.totals.appliedMinor)
        out.intField(3, status.totals.consumedMinor)
        out.intField(4, status.totals.refundPendingMinor)
        out.intField(5, status.totals.refundedMinor)
        out.endMessage(totals)
        return out.array()
    }
}

extension ByteWriter {
    /// The fields of one `creditd.v1.Credit` (L7). `timeZone` nil writes the summary: no
    /// history and no explanation. `customer` and `asOfDate` are the listing's (Q1).
    mutating func credit(_ credit: Credit, subscriptionID: String, currency: Currency, timeZone: TimeZoneRules?,
                         overdue: Bool, refundOverdue: Bool, customer: String, asOfDate: CivilDate?) {
        // credit_id = 1: `Credit.id`, written without building the string.
        tag(1, .lengthDelimited)
        let serialDigits = DecimalDigits.count(credit.serial)
        varint(Credit.idPrefix.utf8.count + serialDigits)
        utf8(Credit.idPrefix)
        decimal(credit.serial, count: serialDigits)
        stringField(2, subscriptionID)
        intField(3, Int64(credit.source.rawValue))
        dateField(4, credit.effectiveDate)
        intField(5, credit.createdAt.nanosecondsSinceEpoch)
        uintField(6, credit.eventSeq)
        stringField(7, currency.code)
        intField(8, credit.amountMinor)
        intField(9, credit.remainingMinor)
        intField(10, credit.consumedMinor)
        intField(11, credit.refundedMinor)
        intField(12, Int64(credit.state.rawValue))
        if let timeZone {
            credit.forEachHistoryEntry { change in
                // repeated CreditStateChange history = 13
                let mark = beginMessage(13)
                intField(1, Int64(change.state.rawValue))
                intField(2, change.at.nanosecondsSinceEpoch)
                dateField(3, timeZone.civilDate(of: change.at))
                endMessage(mark)
            }
        }
        dateField(14, credit.dueDate)
        dateField(15, credit.deadline)
        dateField(16, credit.expectedBy)
        dateField(17, credit.appliedDate)
        dateField(18, credit.refundExpectedBy)
        boolField(19, overdue)
        boolField(20, refundOverdue)
        if timeZone != nil {
            let mark = beginMessage(21, reserve: 2)
            explanation(credit.explanation)
            endMessage(mark)
        }
        stringField(22, customer)
        dateField(23, asOfDate)
    }

    /// The fields of `creditd.v1.LineExplanation` (L7): the same domain arithmetic that
    /// `ProtoMapping.explanation` reads.
    mutating func explanation(_ explanation: LineExplanation) {
        rationalField(1, explanation.unitPrice)
        intField(2, explanation.seatsDelta)
        if let unused = explanation.unusedDays { intField(3, Int64(unused)) }
        intField(4, Int64(explanation.periodDays))
        rationalField(5, explanation.exact)
        rationalField(6, explanation.cumulativeExact)
        intField(7, explanation.rounded)
        rationalField(8, explanation.carry)
        for block in explanation.blocks {
            let mark = beginMessage(9)
            intField(1, block.seats)
            dateField(2, block.startDate)
            intField(3, Int64(block.unusedDays))
            endMessage(mark)
        }
        boolField(10, explanation.unusedDays == nil)
    }

    /// A `creditd.v1.Rational` field: numerator and denominator as decimal strings (M5).
    mutating func rationalField(_ field: UInt32, _ value: Rational) {
        let numeratorCount = DecimalDigits.count(value.numerator)
        let denominatorCount = DecimalDigits.count(value.denominator)
        tag(field, .lengthDelimited)
        varint(2 + numeratorCount + 2 + denominatorCount)  // each part: tag, length (< 128), digits
        tag(1, .lengthDelimited)
        varint(numeratorCount)
        decimal(value.numerator, count: numeratorCount)
        tag(2, .lengthDelimited)
        varint(denominatorCount)
        decimal(value.denominator, count: denominatorCount)
    }

    /// A date as `YYYY-MM-DD` (`CivilDate.description`); nil, like the empty string, is not written.
    mutating func dateField(_ field: UInt32, _ date: CivilDate?) {
        guard let date else { return }
        let (year, month, day) = date.components
        guard (0...9999).contains(year) else {
            stringField(field, date.description)
            return
        }
        tag(field, .lengthDelimited)
        byte(10)
        digitPair(year / 100)
        digitPair(year % 100)
        byte(UInt8(ascii: "-"))
        digitPair(month)
        byte(UInt8(ascii: "-"))
        digitPair(day)
    }

    /// Two decimal digits of `value` (0–99).
    @inline(__always)
    private mutating func digitPair(_ value: Int) {
        let pair = DecimalDigits.pairs(value)
        byte(pair.tens)
        byte(pair.ones)
    }
}

/// The decimal text of integers (as `String(value)` writes it), counted first and then written
/// in place from the last digit, two at a time: a field's length comes before its digits.
///
/// Formed in a buffer on the stack and copied out, the digits were read back as vectors
/// right after being stored byte by byte, a store-forwarding stall that was 40% of the time
/// spent on them; in place there is nothing to read back.
enum DecimalDigits {
    /// 10^0 ... 10^19.
    private static let powersOfTen: [UInt64] = (0...19).map { power in (0..<power).reduce(1) { product, _ in product * 10 } }
    /// 10^19, the most digits a `UInt64` always holds: what a 128-bit magnitude is cut into.
    static let chunk: UInt128 = 10_000_000_000_000_000_000

    /// How many digits `value` has (1 for 0).
    @inline(__always)
    static func count(_ value: UInt64) -> Int {
        // floor(log10(2^bits)) is the count or one less.
        let bits = 64 - (value | 1).leadingZeroBitCount
        let guess = (bits * 1_233) >> 12
        return max(1, guess + (value >= powersOfTen[guess] ? 1 : 0))
    }

    /// How many characters `value` takes: its digits, and a sign when negative.
    @inline(__always)
    static func count(_ value: Int128) -> Int {
        let magnitude = value.magnitude
        let digits = magnitude <= UInt128(UInt64.max) ? count(UInt64(magnitude)) : count(wide: magnitude)
        return (value < 0 ? 1 : 0) + digits
    }

    /// `count` of a magnitude above 64 bits (rare).
    @inline(never)
    private static func count(wide magnitude: UInt128) -> Int {
        var rest = magnitude, digits = 0
        while rest > UInt128(UInt64.max) {
            rest /= chunk
            digits += 19
        }
        return digits + count(UInt64(rest))
    }

    /// Writes the last `width` digits of `value` so that the last lands just before `end`,
    /// zero-padded on the left; returns where the first one is.
    @inline(__always)
    fileprivate static func write(_ value: UInt64, width: Int, endingAt end: Int, into out: inout ByteWriter) -> Int {
        var position = end
        var rest = value
        while rest >= 100 {
            let pair = pairs(Int(rest % 100))
            rest /= 100
            position -= 2
            out.storeByte(at: position, pair.tens)
            out.storeByte(at: position + 1, pair.ones)
        }
        if rest >= 10 {
            let pair = pairs(Int(rest))
            position -= 2
            out.storeByte(at: position, pair.tens)
            out.storeByte(at: position + 1, pair.ones)
        } else {
            position -= 1
            out.storeByte(at: position, UInt8(ascii: "0") + UInt8(rest))
        }
        while end - position < width {
            position -= 1
            out.storeByte(at: position, UInt8(ascii: "0"))
        }
        return position
    }

    /// The two ASCII digits of 0–99, from a table rather than two divisions.
    @inline(__always)
    static func pairs(_ value: Int) -> (tens: UInt8, ones: UInt8) {
        let table: StaticString = """
            00010203040506070809101112131415161718192021222324252627282930313233343536373839\
            40414243444546474849505152535455565758596061626364656667686970717273747576777879\
            8081828384858687888990919293949596979899
            """
        let start = table.utf8Start + 2 * value
        return (start[0], start[1])
    }
}

extension ByteWriter {
    /// The decimal text of `value`; `count` is `DecimalDigits.count(value)`, which the caller
    /// has already taken for the field's length.
    mutating func decimal(_ value: UInt64, count: Int) {
        let start = reservePlaceholder(count)
        _ = DecimalDigits.write(value, width: 0, endingAt: start + count, into: &self)
    }

    /// The decimal text of `value`; `count` is `DecimalDigits.count(value)`.
    mutating func decimal(_ value: Int128, count: Int) {
        let start = reservePlaceholder(count)
        if value < 0 { storeByte(at: start, UInt8(ascii: "-")) }
        var rest = value.magnitude
        var end = start + count
        // Above 64 bits (rare): 19 digits at a time, from the right.
        while rest > UInt128(UInt64.max) {
            let (quotient, remainder) = rest.quotientAndRemainder(dividingBy: DecimalDigits.chunk)
            end = DecimalDigits.write(UInt64(remainder), width: 19, endingAt: end, into: &self)
            rest = quotient
        }
        _ = DecimalDigits.write(UInt64(rest), width: 0, endingAt: end, into: &self)
    }
}
