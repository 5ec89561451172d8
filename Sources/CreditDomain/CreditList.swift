#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

/// A subscription's credits in serial order, kept packed in one byte buffer and decoded when read.
///
/// Why: at a million subscriptions with five credits each, credits were half of the daemon's
/// resident memory. A `Credit` value is 136 bytes wide however little it holds, so five of them
/// in an `Array` took ~720 bytes per subscription. Packed as variable-length integers (most
/// fields of a credit are small, and its serial and creation instant are stored as differences
/// from the list's first credit), a credit takes about 30 bytes (issue 10: RSS at 1M).
///
/// The packing exists only in memory: snapshots encode each `Credit` through LedgerEncoding's
/// versioned format, and every reader sees `Credit` values. The layout may change between
/// releases without any migration.
///
/// Layout of `bytes` (empty for an empty list):
///
///     header   count: UInt32 LE, baseSerial: UInt64 LE, baseCreatedAt: Int64 LE
///     record*  length: uvarint, then `length` bytes (see `CreditRecord`)
///
/// Reading position `i` skips records by their length prefixes from the nearest checkpoint
/// (the byte offset of every 32nd record, kept only for longer lists), so a read costs at most
/// 31 prefix skips plus one decode. A write re-encodes one record and splices it in.
public struct CreditList: Sendable, Hashable, RandomAccessCollection, MutableCollection {
    public typealias Index = Int
    public typealias Element = Credit

    private var bytes: [UInt8] = []
    /// `checkpoints[k]` is the offset of record `32 × (k + 1)`.
    private var checkpoints: [UInt32] = []

    static let headerSize = 20
    static let checkpointSpacing = 32

    public init() {}

    /// The credits of `credits`, which must be in serial order, packed with no spare capacity.
    public init<C: Collection<Credit>>(_ credits: C) {
        guard let first = credits.first else { return }
        let base = (serial: first.serial, createdAt: first.createdAt.nanosecondsSinceEpoch)
        var bound = Self.headerSize
        for credit in credits { bound += CreditRecord.maxSize(of: credit) }
        var marks: [UInt32] = []
        // Written through a pointer into scratch room sized for the worst case, then copied in
        // one exact allocation. Appending to a growing `[UInt8]` checked capacity and uniqueness
        // for every byte and reallocated as it doubled: loading a 1M snapshot spent about a
        // fifth of its CPU packing credits that way.
        bytes = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: bound) { scratch in
            var writer = RecordWriter(scratch.baseAddress!)
            Self.writeHeader(into: &writer, base: base)
            var count = 0
            for credit in credits {
                if count > 0, count % Self.checkpointSpacing == 0 { marks.append(UInt32(writer.count)) }
                // `credits` is walked twice; one that yields more on the second walk stops here
                // rather than writing past the room.
                precondition(writer.count + CreditRecord.maxSize(of: credit) <= bound,
                             "CreditList: the credits changed while they were packed")
                CreditRecord.write(credit, base: base, to: &writer)
                count += 1
            }
            Self.storeCount(UInt32(count), at: writer.base)
            return Array(UnsafeBufferPointer(start: writer.base, count: writer.count))
        }
        checkpoints = marks
    }

    /// The credits of `credits`, which must be in serial order, packed with no spare capacity.
    public init<S: Sequence<Credit>>(_ credits: S) {
        self.init(Array(credits))
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }

    public var count: Int {
        guard !bytes.isEmpty else { return 0 }
        return Int(Self.readFixed(UInt32.self, bytes, 0))
    }

    private var base: (serial: UInt64, createdAt: Int64) {
        (Self.readFixed(UInt64.self, bytes, 4), Int64(bitPattern: Self.readFixed(UInt64.self, bytes, 12)))
    }

    public subscript(position: Int) -> Credit {
        get {
            precondition(position >= 0 && position < count, "CreditList index out of range")
            let offset = recordOffset(position)
            return bytes.withUnsafeBufferPointer { buffer in
                var reader = VarintReader(buffer, at: offset)
                let length = Int(reader.unsigned())
                return CreditRecord.decode(&reader, end: reader.offset + length, base: base)
            }
        }
        set {
            precondition(position >= 0 && position < count, "CreditList index out of range")
            if position == 0, (newValue.serial, newValue.createdAt.nanosecondsSinceEpoch) != base {
                // The base is always the first credit's, so that equal lists have equal bytes.
                // (A credit's serial and creation instant never change in the ledger.)
                var credits = Array(self)
                credits[0] = newValue
                self = CreditList(credits)
                return
            }
            let offset = recordOffset(position)
            let oldEnd = recordEnd(at: offset)
            let recordCount = CreditRecord.encoded(newValue, base: base) { record in
                bytes.replaceSubrange(offset..<oldEnd, with: record)
                return record.count
            }
            let shift = Int64(recordCount) - Int64(oldEnd - offset)
            if shift != 0 {
                for index in checkpoints.indices where Int(checkpoints[index]) > offset {
                    checkpoints[index] = UInt32(Int64(checkpoints[index]) + shift)
                }
            }
        }
    }

    /// Adds a credit with a serial above every listed one. Grows by a quarter, not by doubling:
    /// most lists stop at a few credits and stay that size for years.
    public mutating func append(_ credit: Credit) {
        let count = self.count
        guard count > 0 else {
            self = CreditList(CollectionOfOne(credit))
            return
        }
        if count % Self.checkpointSpacing == 0 { checkpoints.append(UInt32(bytes.count)) }
        CreditRecord.encoded(credit, base: base) { record in
            if bytes.count + record.count > bytes.capacity {
                bytes.reserveCapacity(bytes.count + record.count + bytes.count / 4)
            }
            bytes.append(contentsOf: record)
        }
        bytes.withUnsafeMutableBufferPointer { Self.storeCount(UInt32(count + 1), at: $0.baseAddress!) }
    }

    public func makeIterator() -> Iterator { Iterator(list: self) }

    /// Decodes the credits in order, one record after the other.
    public struct Iterator: IteratorProtocol {
        private let list: CreditList
        private var offset = CreditList.headerSize
        private let base: (serial: UInt64, createdAt: Int64)

        init(list: CreditList) {
            self.list = list
            base = list.bytes.isEmpty ? (0, 0) : list.base
        }

        mutating func skip(to offset: Int) { self.offset = offset }

        public mutating func next() -> Credit? {
            guard offset < list.bytes.count else { return nil }
            return list.bytes.withUnsafeBufferPointer { buffer in
                var reader = VarintReader(buffer, at: offset)
                let length = Int(reader.unsigned())
                let end = reader.offset + length
                let credit = CreditRecord.decode(&reader, end: end, base: base)
                offset = end
                return credit
            }
        }
    }

    /// Decodes the credits from `position` to the end, in order (one skip to the start, then
    /// one record after the other).
    public func credits(from position: Int) -> IteratorSequence<Iterator> {
        var iterator = Iterator(list: self)
        if position >= count {
            iterator.skip(to: bytes.count)
        } else if position > 0 {
            iterator.skip(to: recordOffset(position))
        }
        return IteratorSequence(iterator)
    }

    // MARK: scans that read one byte per credit

    /// Calls `body` with each position from `start` on and its credit's state, in order, without
    /// decoding the credits; stops when `body` returns false. The write path walks a
    /// subscription's credits this way several times per command.
    public func scanStates(from start: Int = 0, _ body: (Int, CreditState) -> Bool) {
        guard start < count else { return }
        var offset = recordOffset(start)
        var position = start
        bytes.withUnsafeBufferPointer { buffer in
            while offset < buffer.count {
                var reader = VarintReader(buffer, at: offset)
                let length = Int(reader.unsigned())
                // The flags are the payload's first byte, always below 0x80 (CreditRecord).
                let state = CreditState(rawValue: Int32(buffer[reader.offset] & 7)) ?? .pending
                guard body(position, state) else { return }
                offset = reader.offset + length
                position += 1
            }
        }
    }

    /// The positions of the credits in `state`, in order.
    public func positions(inState state: CreditState) -> [Int] {
        var found: [Int] = []
        scanStates { position, current in
            if current == state { found.append(position) }
            return true
        }
        return found
    }

    /// The earliest `expectedBy` of the credits from `start` on (nil when there are none), read
    /// from the first fields of each record without decoding the rest: the write path asks it
    /// at every command (`Subscription.nextDueDate`), over every pending credit.
    public func earliestExpectedBy(from start: Int) -> CivilDate? {
        guard start < count else { return nil }
        var earliest: CivilDate?
        var offset = recordOffset(start)
        bytes.withUnsafeBufferPointer { buffer in
            while offset < buffer.count {
                var reader = VarintReader(buffer, at: offset)
                let length = Int(reader.unsigned())
                let end = reader.offset + length
                // flags, serial, createdAt, amount, remaining, consumed, event seq (CreditRecord)
                _ = reader.unsigned()
                for _ in 0..<5 { _ = reader.signed() }
                _ = reader.unsigned()
                let effectiveDate = CivilDate(epochDay: Int32(truncatingIfNeeded: reader.signed()))
                let dueDateOffset = UInt16(truncatingIfNeeded: reader.unsigned())
                let date = Credit.expectedBy(effectiveDate: effectiveDate, dueDateOffset: dueDateOffset)
                if earliest == nil || date < earliest! { earliest = date }
                offset = end
            }
        }
        return earliest
    }

    /// The fields the record of the credit at `position` stores first, read without decoding
    /// the rest.
    func leadingFields(at position: Int) -> CreditLeadingFields {
        let offset = recordOffset(position)
        let base = self.base
        return bytes.withUnsafeBufferPointer { buffer in
            var reader = VarintReader(buffer, at: offset)
            _ = reader.unsigned()   // length
            // flags, serial, createdAt, amount, remaining, consumed, event seq, effective date,
            // due date offset, refund-expected-by offset (CreditRecord)
            let flags = reader.unsigned()
            let serial = base.serial &+ UInt64(bitPattern: reader.signed())
            _ = reader.signed()
            let amount = reader.signed(), remaining = reader.signed(), consumed = reader.signed()
            _ = reader.unsigned()
            let effectiveDate = CivilDate(epochDay: Int32(truncatingIfNeeded: reader.signed()))
            let dueDateOffset = UInt16(truncatingIfNeeded: reader.unsigned())
            let refundExpectedByOffset = UInt8(truncatingIfNeeded: reader.unsigned())
            return CreditLeadingFields(serial: serial, state: CreditRecord.state(flags: flags),
                                       hadRefundFailure: CreditRecord.hadRefundFailure(flags: flags),
                                       amountMinor: amount, remainingMinor: remaining, consumedMinor: consumed,
                                       effectiveDate: effectiveDate, dueDateOffset: dueDateOffset,
                                       refundExpectedByOffset: refundExpectedByOffset)
        }
    }

    /// The position of the credit with `serial`, found by reading each record's serial alone
    /// (a binary search decoded a whole credit at each step, and events look credits up by
    /// serial several times per command).
    public func position(ofSerial serial: UInt64) -> Int? {
        var found: Int?
        scanSerials { position, each in
            if each == serial { found = position }
            return each < serial   // serial order
        }
        return found
    }

    /// Calls `body` with each credit's position and serial, in order, reading only the serial
    /// of each record, until `body` returns false.
    func scanSerials(_ body: (Int, UInt64) -> Bool) {
        guard !bytes.isEmpty else { return }
        let baseSerial = base.serial
        let count = self.count
        bytes.withUnsafeBufferPointer { buffer in
            var offset = Self.headerSize
            for position in 0..<count {
                var reader = VarintReader(buffer, at: offset)
                let length = Int(reader.unsigned())
                let end = reader.offset + length
                _ = reader.unsigned()   // flags (CreditRecord)
                guard body(position, baseSerial &+ UInt64(bitPattern: reader.signed())) else { return }
                offset = end
            }
        }
    }

    /// Where the trailing run of pending credits begins (`count` when the last is not pending).
    public var trailingPendingStart: Int {
        var start = 0
        scanStates { position, state in
            if state != .pending { start = position + 1 }
            return true
        }
        return start
    }

    /// Calls `body` with each position from `start` on whose credit differs from `old`'s at the
    /// same position, or that `old` does not have, in order. Equal credits have equal records
    /// when both lists share their first credit, which the ledger never replaces; otherwise
    /// every position from `start` is reported. A callback rather than an array of positions:
    /// every write asks, and the array was one of its allocations.
    func forEachPositionDiffering(from old: CreditList, startingAt start: Int, _ body: (Int) -> Void) {
        let count = self.count
        guard start < count else { return }
        let oldCount = old.count
        guard oldCount > 0, start < oldCount, old.base == base else {
            for position in start..<count { body(position) }
            return
        }
        var offset = recordOffset(start), oldOffset = old.recordOffset(start)
        for position in start..<count {
            guard position < oldCount else { body(position); continue }
            let end = recordEnd(at: offset), oldEnd = old.recordEnd(at: oldOffset)
            let same = end - offset == oldEnd - oldOffset && bytes.withUnsafeBufferPointer { buffer in
                old.bytes.withUnsafeBufferPointer { oldBuffer in
                    memcmp(buffer.baseAddress! + offset, oldBuffer.baseAddress! + oldOffset, end - offset) == 0
                }
            }
            if !same { body(position) }
            offset = end
            oldOffset = oldEnd
        }
    }

    // MARK: layout

    private func recordOffset(_ position: Int) -> Int {
        let checkpoint = position / Self.checkpointSpacing
        var offset = checkpoint == 0 ? Self.headerSize : Int(checkpoints[checkpoint - 1])
        for _ in 0..<(position % Self.checkpointSpacing) { offset = recordEnd(at: offset) }
        return offset
    }

    private func recordEnd(at offset: Int) -> Int {
        bytes.withUnsafeBufferPointer { buffer in
            var reader = VarintReader(buffer, at: offset)
            let length = Int(reader.unsigned())
            return reader.offset + length
        }
    }

    /// The header with a count of 0 (`storeCount` sets it once the records are written).
    private static func writeHeader(into writer: inout RecordWriter, base: (serial: UInt64, createdAt: Int64)) {
        writer.fixed(UInt32(0))
        writer.fixed(base.serial)
        writer.fixed(UInt64(bitPattern: base.createdAt))
    }

    private static func storeCount(_ count: UInt32, at bytes: UnsafeMutablePointer<UInt8>) {
        for index in 0..<4 { bytes[index] = UInt8(truncatingIfNeeded: count >> (8 * index)) }
    }

    private static func readFixed<T: FixedWidthInteger & UnsignedInteger>(_: T.Type, _ bytes: [UInt8], _ offset: Int) -> T {
        var value: T = 0
        for index in 0..<MemoryLayout<T>.size { value |= T(bytes[offset + index]) << (8 * index) }
        return value
    }
}

extension CreditList: ExpressibleByArrayLiteral {
    public init(arrayLiteral elements: Credit...) { self.init(elements) }
}

/// One credit as a sequence of LEB128 variable-length integers (signed ones zigzag-encoded), in
/// this order: flags (state | source << 3 | hadRefundFailure << 5), serial − base serial,
/// createdAt − base createdAt, amount, remaining, consumed, event seq, effective date (epoch
/// day), due date offset, refund-expected-by offset; the explanation's charge, cumulative
/// numerator (128-bit), charged seats, seats delta, period days, unused days, block count and
/// each block's seats, start date and unused days; then the later history's length and each
/// entry's state and instant − createdAt.
enum CreditRecord {
    /// At least the bytes `write` takes for `credit`: every varint at its longest (10 bytes, 19
    /// for the 128-bit numerator) and a 5-byte length prefix.
    static func maxSize(of credit: Credit) -> Int {
        5 + 10 * 10 + (5 * 10 + 19 + 10) + 30 * credit.explanation.blocks.count
            + 10 + 20 * (Int(credit.laterHistory.count) + credit.laterHistory.overflow.count)
    }

    /// Calls `body` with the record of `credit`, encoded on the stack: what a write into the
    /// list copies in, with no temporary array.
    static func encoded<Result>(_ credit: Credit, base: (serial: UInt64, createdAt: Int64),
                                _ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: maxSize(of: credit)) { scratch in
            var writer = RecordWriter(scratch.baseAddress!)
            write(credit, base: base, to: &writer)
            return body(UnsafeBufferPointer(start: writer.base, count: writer.count))
        }
    }

    /// Writes the record of `credit`, length prefix first; the writer must have `maxSize(of:)`
    /// bytes of room.
    static func write(_ credit: Credit, base: (serial: UInt64, createdAt: Int64), to bytes: inout RecordWriter) {
        // The length prefix is written after the payload; one byte covers records under 128
        // bytes, which is nearly all of them (the payload moves up otherwise).
        let start = bytes.count
        bytes.byte(0)
        let state = UInt64(credit.state.rawValue), source = UInt64(credit.source.rawValue)
        precondition(state < 8 && source < 4, "CreditRecord: a state or source outside its bits")
        bytes.varint(state | source << 3 | (credit.hadRefundFailure ? 1 << 5 : 0))
        bytes.zigzag(Int64(bitPattern: credit.serial &- base.serial))
        let created = credit.createdAt.nanosecondsSinceEpoch
        bytes.zigzag(created &- base.createdAt)
        bytes.zigzag(credit.amountMinor)
        bytes.zigzag(credit.remainingMinor)
        bytes.zigzag(credit.consumedMinor)
        bytes.varint(UInt64(credit.storedEventSeq))
        bytes.zigzag(Int64(credit.effectiveDate.epochDay))
        bytes.varint(UInt64(credit.dueDateOffset))
        bytes.varint(UInt64(credit.refundExpectedByOffset))
        let explanation = credit.explanation
        bytes.zigzag(explanation.chargedMinor)
        bytes.zigzag128(explanation.cumulativeNumerator)
        bytes.zigzag(Int64(explanation.storedChargedSeats))
        bytes.zigzag(Int64(explanation.storedSeatsDelta))
        bytes.zigzag(Int64(explanation.storedPeriodDays))
        bytes.zigzag(Int64(explanation.storedUnusedDays))
        bytes.varint(UInt64(explanation.blocks.count))
        for block in explanation.blocks {
            bytes.zigzag(block.seats)
            bytes.zigzag(Int64(block.startDate.epochDay))
            bytes.zigzag(Int64(block.unusedDays))
        }
        bytes.varint(UInt64(credit.laterHistory.count) + UInt64(credit.laterHistory.overflow.count))
        credit.laterHistory.forEach { change in
            bytes.varint(UInt64(change.state.rawValue))
            bytes.zigzag(change.at.nanosecondsSinceEpoch &- created)
        }
        bytes.setLengthPrefix(at: start)
        assert(bytes.count - start <= maxSize(of: credit), "CreditRecord: a record longer than its bound")
    }

    /// The record between the reader's offset and `end`; the list wrote it, so it is well formed.
    static func decode(_ reader: inout VarintReader, end: Int, base: (serial: UInt64, createdAt: Int64)) -> Credit {
        let flags = reader.unsigned()
        let serial = base.serial &+ UInt64(bitPattern: reader.signed())
        let created = base.createdAt &+ reader.signed()
        let amount = reader.signed(), remaining = reader.signed(), consumed = reader.signed()
        let eventSeq = UInt32(truncatingIfNeeded: reader.unsigned())
        let effectiveDate = CivilDate(epochDay: Int32(truncatingIfNeeded: reader.signed()))
        let dueDateOffset = UInt16(truncatingIfNeeded: reader.unsigned())
        let refundExpectedByOffset = UInt8(truncatingIfNeeded: reader.unsigned())
        let charged = reader.signed()
        let cumulative = reader.signed128()
        let chargedSeats = Int32(truncatingIfNeeded: reader.signed())
        let seatsDelta = Int32(truncatingIfNeeded: reader.signed())
        let periodDays = Int16(truncatingIfNeeded: reader.signed())
        let unusedDays = Int16(truncatingIfNeeded: reader.signed())
        let blockCount = Int(reader.unsigned())
        var blocks: [SeatBlockPortion] = []
        if blockCount > 0 {
            blocks.reserveCapacity(blockCount)
            for _ in 0..<blockCount {
                let seats = reader.signed()
                let start = CivilDate(epochDay: Int32(truncatingIfNeeded: reader.signed()))
                blocks.append(SeatBlockPortion(seats: seats, startDate: start, unusedDays: Int32(truncatingIfNeeded: reader.signed())))
            }
        }
        var history = CreditHistory()
        let historyCount = Int(reader.unsigned())
        for _ in 0..<historyCount {
            let state = CreditState(rawValue: Int32(truncatingIfNeeded: reader.unsigned())) ?? .pending
            history.append(state, at: Instant(nanosecondsSinceEpoch: created &+ reader.signed()))
        }
        assert(reader.offset == end, "CreditRecord: record length disagrees with its fields")
        let explanation = LineExplanation(chargedMinor: charged, cumulativeNumerator: cumulative, blocks: blocks,
                                          storedChargedSeats: chargedSeats, storedSeatsDelta: seatsDelta,
                                          storedPeriodDays: periodDays, storedUnusedDays: unusedDays)
        return Credit(serial: serial, createdAt: Instant(nanosecondsSinceEpoch: created), amountMinor: amount,
                      remainingMinor: remaining, consumedMinor: consumed, explanation: explanation,
                      storedEventSeq: eventSeq, laterHistory: history, effectiveDate: effectiveDate,
                      dueDateOffset: dueDateOffset, refundExpectedByOffset: refundExpectedByOffset,
                      source: CreditSource(rawValue: Int32(flags >> 3 & 3)) ?? .seatChange,
                      state: state(flags: flags), hadRefundFailure: hadRefundFailure(flags: flags))
    }

    @inline(__always)
    static func state(flags: UInt64) -> CreditState {
        CreditState(rawValue: Int32(flags & 7)) ?? .pending
    }

    @inline(__always)
    static func hadRefundFailure(flags: UInt64) -> Bool {
        flags & (1 << 5) != 0
    }
}

/// Writes LEB128 fields (signed values zigzag-encoded, so that small negative numbers stay
/// short) through a pointer, into room the caller reserved for the worst case: no capacity or
/// uniqueness check per byte.
struct RecordWriter {
    let base: UnsafeMutablePointer<UInt8>
    private(set) var count = 0

    init(_ base: UnsafeMutablePointer<UInt8>) { self.base = base }

    @inline(__always)
    mutating func byte(_ value: UInt8) {
        base[count] = value
        count += 1
    }

    @inline(__always)
    mutating func varint<T: FixedWidthInteger & UnsignedInteger>(_ value: T) {
        var value = value
        while value >= 0x80 {
            byte(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        byte(UInt8(value))
    }

    @inline(__always)
    mutating func zigzag(_ value: Int64) {
        varint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    mutating func zigzag128(_ value: Int128) {
        varint(UInt128(bitPattern: (value << 1) ^ (value >> 127)))
    }

    /// Little-endian, fixed width.
    mutating func fixed<T: FixedWidthInteger & UnsignedInteger>(_ value: T) {
        for index in 0..<MemoryLayout<T>.size { byte(UInt8(truncatingIfNeeded: value >> (8 * index))) }
    }

    /// Sets the one byte reserved at `start` to the length of what follows it; a length of 128
    /// or more takes more bytes, and what follows moves up to make room.
    mutating func setLengthPrefix(at start: Int) {
        let length = count - start - 1
        guard length >= 0x80 else {
            base[start] = UInt8(length)
            return
        }
        var extra = 0   // the prefix's bytes after the first
        var rest = length >> 7
        while rest > 0 {
            extra += 1
            rest >>= 7
        }
        memmove(base + start + 1 + extra, base + start + 1, length)
        var writer = RecordWriter(base + start)
        writer.varint(UInt64(length))
        count += extra
    }
}

/// Reads what `RecordWriter` wrote. The domain module depends on nothing,
/// so it keeps these few lines of LEB128 rather than importing ProtoWire's writer or
/// LedgerEncoding's reader; and unlike that reader, this one trusts its input (the list wrote
/// it), so it neither checks bounds beyond the buffer's own nor throws.
struct VarintReader {
    let buffer: UnsafeBufferPointer<UInt8>
    private(set) var offset: Int

    init(_ buffer: UnsafeBufferPointer<UInt8>, at offset: Int) {
        self.buffer = buffer
        self.offset = offset
    }

    @inline(__always)
    mutating func unsigned() -> UInt64 { leb128() }

    @inline(__always)
    mutating func signed() -> Int64 {
        let zigzag: UInt64 = leb128()
        return Int64(bitPattern: zigzag >> 1) ^ -Int64(bitPattern: zigzag & 1)
    }

    @inline(__always)
    mutating func signed128() -> Int128 {
        let zigzag: UInt128 = leb128()
        return Int128(bitPattern: zigzag >> 1) ^ -Int128(bitPattern: zigzag & 1)
    }

    @inline(__always)
    private mutating func leb128<T: FixedWidthInteger & UnsignedInteger>() -> T {
        var value: T = 0
        var shift = 0
        while true {
            let byte = buffer[offset]
            offset += 1
            // A masking shift: the list wrote these bytes, so `shift` stays below T's width.
            // The smart `<<` with an Int amount called the generic BinaryInteger witness for
            // every byte, out of line: 15% of building the book's indexes from 6M credits.
            value |= T(byte & 0x7F) &<< T(truncatingIfNeeded: shift)
            if byte < 0x80 { return value }
            shift += 7
        }
    }
}
