import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import CreditDomain
@testable import LedgerEncoding
import LedgerScenarios

/// The binary snapshot codec: exact round trips of ledgers built by random commands, identical
/// behaviour afterwards, and malformed input that throws instead of trapping.
final class LedgerCodecTests: XCTestCase {
    // MARK: random ledgers

    private typealias Step = RandomLedger.Step

    private static func apply(_ step: Step, to ledger: inout Ledger) -> RandomLedger.StepResult {
        RandomLedger.apply(step, to: &ledger)
    }

    private func randomLedger(seed: UInt64, steps: Int) -> (Ledger, RandomLedger) {
        RandomLedger.make(seed: seed, steps: steps)
    }

    private func decode(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> Ledger? {
        do {
            return try LedgerCodec.decode(bytes)
        } catch {
            XCTFail("decode failed: \(error)", file: file, line: line)
            return nil
        }
    }

    /// Features of the state the random ledgers must reach, so the round trips cover them.
    private struct Coverage {
        var features: Set<String> = []

        mutating func record(_ ledger: Ledger) {
            for subscription in ledger.subscriptions {
                features.insert("status \(subscription.status)")
                features.insert("policy \(subscription.refundPolicy)")
                features.insert("interval \(subscription.interval)")
                features.insert("zone \(subscription.timeZone.identifier)")
                features.insert("currency \(subscription.currency)")
                if !subscription.blocks.isEmpty { features.insert("blocks") }
                if !subscription.periodLines.isEmpty { features.insert("period lines") }
                if subscription.scheduledSeats != nil { features.insert("scheduled seats") }
                if subscription.cumulativeNumerator != 0 { features.insert("cumulative") }
                if let record = subscription.cancellation {
                    features.insert("cancellation \(record.mode) credit=\(record.credit != nil)")
                }
                for invoice in subscription.invoices { features.insert("invoice \(invoice.kind) settled=\(invoice.settled)") }
                for credit in subscription.credits {
                    features.insert("credit \(credit.state)")
                    if credit.hadRefundFailure { features.insert("refund failure") }
                    if credit.history.count > 4 { features.insert("long history") }
                    if !credit.explanation.blocks.isEmpty { features.insert("portions") }
                }
            }
            for entry in ledger.idempotencyEntries {
                switch entry.outcome {
                case .response(let response): features.insert("stored response \("\(response)".prefix(12))")
                case .error(let error): features.insert("stored error \(error.code)")
                }
            }
        }
    }

    func testRandomLedgersRoundTripAndBehaveIdentically() throws {
        var coverage = Coverage()
        for seed in UInt64(1)...40 {
            var (original, generator) = randomLedger(seed: seed, steps: 250)
            coverage.record(original)
            let bytes = LedgerCodec.encode(original)
            guard var decoded = decode(bytes) else { return }
            XCTAssertEqual(decoded, original, "seed \(seed)")
            XCTAssertEqual(LedgerCodec.encode(decoded), bytes, "seed \(seed): re-encoding differs")
            XCTAssertEqual(decoded.nextDueInstant(), original.nextDueInstant(), "seed \(seed)")
            XCTAssertEqual(decoded.subscriptions, original.subscriptions)
            XCTAssertEqual(decoded.idempotencyEntries, original.idempotencyEntries)
            let afterB = Ledger.subscriptionToken(after: ScalarString("b"))
            XCTAssertEqual(try decoded.listSubscriptions(pageSize: 3, pageToken: afterB),
                           try original.listSubscriptions(pageSize: 3, pageToken: afterB))
            // The same further commands give the same results on both.
            for index in 0..<150 {
                let step = generator.next(original)
                let expected = LedgerCodecTests.apply(step, to: &original)
                let actual = LedgerCodecTests.apply(step, to: &decoded)
                XCTAssertEqual(actual, expected, "seed \(seed) step \(index)")
            }
            XCTAssertEqual(decoded, original, "seed \(seed) after further commands")
            XCTAssertEqual(decoded.nextDueInstant(), original.nextDueInstant())
            XCTAssertEqual(decoded.advance(to: utc("2027-06-01")), original.advance(to: utc("2027-06-01")))
            XCTAssertEqual(decoded, original)
            coverage.record(original)
        }
        let required = ["status active", "status cancelPending", "status cancelled", "status ended",
                        "policy anytime", "policy window7d", "policy window72h", "interval monthly", "interval annual",
                        "blocks", "period lines", "scheduled seats", "cumulative", "portions", "refund failure", "long history",
                        "credit pending", "credit applied", "credit consumed", "credit refund_pending", "credit refunded",
                        "cancellation immediate credit=true", "cancellation endOfPeriod credit=false",
                        "invoice renewal settled=true", "invoice final settled=false", "invoice final settled=true",
                        "invoice closing settled=true",
                        "stored error subscription_not_found", "stored error seats_must_be_positive",
                        "stored error subscription_cancelled"]
        for feature in required {
            XCTAssertTrue(coverage.features.contains(feature), "random ledgers never reached \(feature)")
        }
        XCTAssertTrue(coverage.features.contains { $0.hasPrefix("stored response cancelled") })
        XCTAssertTrue(coverage.features.contains { $0.hasPrefix("stored response seatsChange") })
        XCTAssertGreaterThanOrEqual(coverage.features.filter { $0.hasPrefix("zone ") }.count, 8)
        XCTAssertGreaterThanOrEqual(coverage.features.filter { $0.hasPrefix("currency ") }.count, 12)
        print("codec round trips covered: \(coverage.features.sorted())")
    }

    /// Outcome kinds that commands never store are still encoded exactly.
    func testEveryResponseKindRoundTrips() throws {
        var (ledger, _) = randomLedger(seed: 77, steps: 200)
        let subscription = try XCTUnwrap(ledger.subscriptions.first { !$0.credits.isEmpty })
        let credit = subscription.credits[0]
        let responses: [CommandResponse] = [
            .created(CreatedSubscription(subscription: subscription, purchaseInvoice: subscription.purchaseInvoice)),
            .resumed(subscription),
            .refundOutcomeRecorded(RefundOutcomeResult(ignored: true, credit: CreditStatus(credit: credit, overdue: true,
                                                                                             refundOverdue: false))),
            .refundOutcomeRecorded(RefundOutcomeResult(ignored: false, credit: CreditStatus(credit: credit, overdue: false,
                                                                                              refundOverdue: true))),
        ]
        var entries = ledger.idempotencyEntries
        for (index, response) in responses.enumerated() {
            entries.append(IdempotencyEntry(callerUID: UInt32.max, operation: .cancel, key: "extra-\(index)",
                                            fingerprint: .changeSeats(subscriptionId: ScalarString(subscription.id),
                                                                      newSeats: Int64.min, timing: Int32.min),
                                            outcome: .response(response), firstUsedAt: Instant(nanosecondsSinceEpoch: Int64.min)))
        }
        for reason in DomainError.Reason.allCases {
            entries.append(IdempotencyEntry(callerUID: 0, operation: .changeSeats, key: "error-\(reason.rawValue)",
                                            fingerprint: .cancel(subscriptionId: ScalarString("x"), mode: 99),
                                            outcome: .error(DomainError(reason, "message ✓")),
                                            firstUsedAt: Instant(nanosecondsSinceEpoch: Int64.max)))
        }
        ledger = Ledger(maxSeats: ledger.maxSeats, counters: SerialCounters(nextCreditSerial: .max, nextInvoiceSerial: 0),
                        subscriptions: ledger.subscriptions, idempotencyEntries: entries)
        let decoded = try LedgerCodec.decode(LedgerCodec.encode(ledger))
        XCTAssertEqual(decoded, ledger)
        XCTAssertEqual(decoded.idempotencyEntries, entries)
        XCTAssertEqual(decoded.counters, ledger.counters)
    }

    /// A snapshot reads the ledger's pieces as they are made, a few sections at a time in
    /// reused buffers: every piece handed over is the next stretch of the joined encoding, and
    /// reading them again makes the same bytes. Sections stay small at any ledger size, and
    /// small ledgers (and so the golden files) stay one section.
    func testPiecesAreMadeAsTheyAreRead() throws {
        for seed in UInt64(300)..<305 {
            let (ledger, _) = randomLedger(seed: seed, steps: 200)
            for parts in [1, 5, ledger.subscriptionCount + 3] {
                let pieces = LedgerPieces(ledger, subscriptionSections: parts)
                var streamed: [UInt8] = []
                var count = 0
                pieces.forEachPiece { piece in
                    streamed.append(contentsOf: piece)
                    count += 1
                }
                // The head, a prefix and bytes per section (subscriptions, id order, keys, events), the end.
                XCTAssertGreaterThanOrEqual(count, 2 + 2 * (parts + 3), "seed \(seed), \(parts) parts")
                XCTAssertEqual(streamed, pieces.joined(), "seed \(seed), \(parts) parts")
                XCTAssertEqual(try LedgerCodec.decode(streamed), ledger, "seed \(seed), \(parts) parts")
            }
        }
        XCTAssertEqual(TaggedLedger.subscriptionSections(0), 1)
        XCTAssertEqual(TaggedLedger.subscriptionSections(16_383), 1)
        XCTAssertEqual(TaggedLedger.subscriptionSections(16_384), 4)
        XCTAssertEqual(TaggedLedger.subscriptionSections(1_000_000), 31)
        for count in [16_384, 131_072, 131_073, 1_000_000, 10_000_000] {
            XCTAssertLessThanOrEqual((count + TaggedLedger.subscriptionSections(count) - 1) / TaggedLedger.subscriptionSections(count),
                                     TaggedLedger.subscriptionsPerSection, "\(count) subscriptions")
        }
        XCTAssertEqual(TaggedLedger.eventSections(events: 16_383, chunks: 16), 1)
        XCTAssertEqual(TaggedLedger.eventSections(events: 16_384, chunks: 16), 4)
        XCTAssertEqual(TaggedLedger.eventSections(events: 1_000_000, chunks: 977), 16)
        XCTAssertEqual(TaggedLedger.eventSections(events: 20_000, chunks: 2), 2)
    }

    /// Large ledgers are written in parts that are read concurrently; any split reads back.
    func testPartsRoundTrip() throws {
        for seed in UInt64(200)..<210 {
            let (ledger, _) = randomLedger(seed: seed, steps: 200)
            let single = LedgerCodec.encode(ledger, parts: 1)
            for parts in [2, 3, ledger.subscriptionCount + 2] {
                let bytes = LedgerCodec.encode(ledger, parts: parts)
                let decoded = try LedgerCodec.decode(bytes)
                XCTAssertEqual(decoded, ledger, "seed \(seed), \(parts) parts")
                XCTAssertEqual(LedgerCodec.encode(decoded, parts: 1), single)
            }
        }
        let (ledger, _) = randomLedger(seed: 5, steps: 60)
        let bytes = LedgerCodec.encode(ledger, parts: 3)
        for length in 0..<bytes.count {
            XCTAssertThrowsError(try LedgerCodec.decode(Array(bytes.prefix(length))), "prefix of \(length) bytes")
        }
        var random = SplitMix64(seed: 31)
        for _ in 0..<2_000 {
            var corrupt = bytes
            corrupt[Int.random(in: 0..<corrupt.count, using: &random)] ^= UInt8.random(in: 1...255, using: &random)
            if let decoded = try? LedgerCodec.decode(corrupt) { _ = LedgerCodec.encode(decoded) }
        }
    }

    func testEmptyLedgerRoundTrips() throws {
        for maxSeats in [Int64(1), 30, Ledger.defaultMaxSeats, Ledger.seatLimit] {
            let ledger = Ledger(maxSeats: maxSeats)
            let bytes = LedgerCodec.encode(ledger)
            XCTAssertEqual(Array(bytes.prefix(4)), Array("CRDL".utf8))
            let decoded = try LedgerCodec.decode(bytes)
            XCTAssertEqual(decoded, ledger)
            XCTAssertEqual(decoded.maxSeats, maxSeats)
            XCTAssertNil(decoded.nextDueInstant())
        }
    }

    // MARK: malformed input

    private func smallLedgerBytes() -> [UInt8] {
        let (ledger, _) = randomLedger(seed: 5, steps: 60)
        XCTAssertGreaterThan(ledger.subscriptionCount, 2)
        XCTAssertGreaterThan(ledger.idempotencyEntryCount, 0)
        return LedgerCodec.encode(ledger)
    }

    func testEveryTruncationThrows() {
        let bytes = smallLedgerBytes()
        for length in 0..<bytes.count {
            XCTAssertThrowsError(try LedgerCodec.decode(Array(bytes.prefix(length))), "prefix of \(length) bytes") { error in
                guard let error = error as? LedgerCodecError else { return XCTFail("unexpected \(error)") }
                XCTAssertLessThanOrEqual(error.offset, length)
            }
        }
        XCTAssertNoThrow(try LedgerCodec.decode(bytes))
    }

    func testRandomCorruptionNeverTraps() {
        let bytes = smallLedgerBytes()
        var random = SplitMix64(seed: 99)
        var failures = 0
        for round in 0..<4_000 {
            var corrupt = bytes
            for _ in 0...Int.random(in: 0..<3, using: &random) {
                let position = round % 2 == 0 ? Int.random(in: 8..<corrupt.count, using: &random)
                                               : Int.random(in: 0..<corrupt.count, using: &random)
                if Bool.random(using: &random) {
                    corrupt[position] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &random)
                } else {
                    corrupt[position] = UInt8.random(in: 0...255, using: &random)
                }
            }
            do {
                let ledger = try LedgerCodec.decode(corrupt)
                // Whatever decoded can be encoded again.
                _ = LedgerCodec.encode(ledger)
            } catch {
                failures += 1
            }
        }
        XCTAssertGreaterThan(failures, 0)
        // Random garbage and huge counts after a valid header.
        for length in [0, 1, 5, 64, 4_096] {
            var garbage = Array(bytes.prefix(8))
            for _ in 0..<length { garbage.append(UInt8.random(in: 0...255, using: &random)) }
            _ = try? LedgerCodec.decode(garbage)
        }
        // A field whose length no input of this size could hold.
        let hugeLength: [UInt8] = [0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]
        XCTAssertThrowsError(try LedgerCodec.decode(Array(bytes.prefix(8)) + hugeLength)) { error in
            XCTAssertEqual((error as? LedgerCodecError)?.kind, .truncated)
            XCTAssertEqual((error as? LedgerCodecError)?.offset, 9)
        }
        // A part whose length runs past the end.
        XCTAssertThrowsError(try LedgerCodec.decode(Array(bytes.prefix(8)) + [0x12, 0x7F, 0x0A, 0x01])) { error in
            XCTAssertEqual((error as? LedgerCodecError)?.kind, .truncated)
        }
        // Records too short to be subscriptions are refused before anything is reserved for them.
        let emptyRecords = Array([[UInt8]](repeating: [0x0A, 0x00], count: 1_000).joined())
        XCTAssertThrowsError(try LedgerCodec.decode(Array(bytes.prefix(8)) + [0x0A, 0x00, 0x12, 0xD0, 0x0F] + emptyRecords + [0x78, 0x00])) { error in
            XCTAssertEqual((error as? LedgerCodecError)?.kind, .badCount)
        }
    }

    /// A later release adds fields: its files still load here, the new fields skipped. The
    /// header, every record (subscription, key, event), every part and the top level get fields
    /// of each wire type under numbers this build does not know.
    func testFieldsOfALaterReleaseAreSkipped() throws {
        let (ledger, _) = randomLedger(seed: 7, steps: 120)
        XCTAssertGreaterThan(ledger.idempotencyEntryCount, 0)
        XCTAssertGreaterThan(ledger.eventCount, 0)
        let bytes = LedgerCodec.encode(ledger)
        let later = Self.addingUnknownFields(to: bytes)
        XCTAssertGreaterThan(later.count, bytes.count)
        XCTAssertEqual(try LedgerCodec.decode(later), ledger)
        // The same file from a later release with a new version number is refused, not misread.
        var newer = later
        newer[4] = UInt8(LedgerCodec.formatVersion + 1)
        XCTAssertThrowsError(try LedgerCodec.decode(newer))
    }

    /// Unknown fields of every wire type: varint, length-delimited, fixed32, fixed64.
    private static let unknownFields: [UInt8] =
        varint(100 << 3 | 0) + [42]
        + varint(101 << 3 | 2) + [3] + Array("new".utf8)
        + varint(102 << 3 | 5) + [1, 2, 3, 4]
        + varint(103 << 3 | 1) + [1, 2, 3, 4, 5, 6, 7, 8]

    private static func varint(_ value: Int) -> [UInt8] {
        var out: [UInt8] = []
        var rest = value
        while rest >= 0x80 {
            out.append(UInt8(rest & 0x7F) | 0x80)
            rest >>= 7
        }
        return out + [UInt8(rest)]
    }

    /// The fields of a message: (tag bytes, wire type, the value bytes after the tag).
    private static func fields(_ bytes: ArraySlice<UInt8>) -> [(tag: [UInt8], wire: UInt8, value: ArraySlice<UInt8>)] {
        var result: [(tag: [UInt8], wire: UInt8, value: ArraySlice<UInt8>)] = []
        var index = bytes.startIndex
        func readVarint() -> Int {
            var value = 0
            var shift = 0
            while true {
                let byte = bytes[index]
                index += 1
                value |= Int(byte & 0x7F) << shift
                if byte < 0x80 { return value }
                shift += 7
            }
        }
        while index < bytes.endIndex {
            let tagStart = index
            let wire = UInt8(readVarint() & 7)
            let tag = Array(bytes[tagStart..<index])
            let valueStart = index
            switch wire {
            case 0: _ = readVarint()
            case 1: index += 8
            case 5: index += 4
            default:
                let length = readVarint()
                index += length
            }
            result.append((tag, wire, bytes[valueStart..<index]))
        }
        return result
    }

    /// The content of a length-delimited value (after its length).
    private static func content(_ value: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var start = value.startIndex
        while value[start] >= 0x80 { start += 1 }
        return value[(start + 1)...]
    }

    private static func delimited(_ tag: [UInt8], _ content: [UInt8]) -> [UInt8] {
        tag + varint(content.count) + content
    }

    private static func addingUnknownFields(to bytes: [UInt8]) -> [UInt8] {
        var out = Array(bytes[0..<8])
        for (tag, wire, value) in fields(bytes[8...]) {
            let number = tag[0] >> 3
            if number == 15 { out += unknownFields }   // before `end`, which must be last
            guard wire == 2 else {
                out += tag + value
                continue
            }
            switch number {
            case 1:   // the header
                out += delimited(tag, Array(content(value)) + unknownFields)
            case 2, 4, 5:   // parts: each record, and the part itself
                var part: [UInt8] = []
                for (innerTag, innerWire, innerValue) in fields(content(value)) {
                    if innerWire == 2 && innerTag == [1 << 3 | 2] {
                        part += delimited(innerTag, Array(content(innerValue)) + unknownFields)
                    } else {
                        part += innerTag + innerValue
                    }
                }
                out += delimited(tag, unknownFields + part)
            default:
                out += tag + value
            }
        }
        return out
    }

    /// Ids must be unique and listed in order; a snapshot that says otherwise is refused.
    func testDuplicateIdsAreRefused() throws {
        var harness = Harness()
        harness.create("same", at: utc("2025-03-01"))
        let subscription = harness.subscription("same")
        let ledger = Ledger(maxSeats: 10, counters: harness.ledger.counters, subscriptions: [subscription, subscription],
                            idempotencyEntries: [])
        // The id index holds an id once, so the encoded order lists one slot of the two.
        XCTAssertThrowsError(try LedgerCodec.decode(LedgerCodec.encode(ledger))) { error in
            XCTAssertEqual((error as? LedgerCodecError)?.kind, .truncated)
            XCTAssertTrue((error as? LedgerCodecError)?.field.hasPrefix("id order") ?? false, "\(error)")
        }
    }

    func testUnknownVersionAndBadMagicAreRefused() {
        var bytes = LedgerCodec.encode(Ledger())
        XCTAssertEqual(Array(bytes[4..<8]), [UInt8(LedgerCodec.formatVersion), 0, 0, 0])
        for unknown: UInt8 in [0, 5, 200] {
            bytes[4] = unknown
            XCTAssertThrowsError(try LedgerCodec.decode(bytes)) { error in
                let error = error as? LedgerCodecError
                XCTAssertEqual(error?.kind, .unsupportedVersion(UInt32(unknown)))
                XCTAssertEqual(error?.offset, 4)
                XCTAssertTrue(error?.description.contains("version \(unknown)") ?? false, "\(String(describing: error))")
            }
        }
        bytes[4] = UInt8(LedgerCodec.formatVersion)
        bytes[0] = UInt8(ascii: "{")
        XCTAssertThrowsError(try LedgerCodec.decode(bytes)) { error in
            XCTAssertEqual((error as? LedgerCodecError)?.kind, .badMagic)
        }
        XCTAssertThrowsError(try LedgerCodec.decode([])) { error in
            XCTAssertEqual((error as? LedgerCodecError)?.kind, .truncated)
        }
        XCTAssertThrowsError(try LedgerCodec.decode(LedgerCodec.encode(Ledger()) + [0])) { error in
            XCTAssertEqual((error as? LedgerCodecError)?.kind, .trailingBytes)
        }
    }

    /// Errors name the item and field: an unknown zone id, an unknown enum value.
    func testErrorsSayWhatAndWhere() throws {
        var harness = Harness()
        harness.create("first", zone: "Europe/Berlin", at: utc("2025-03-01"))
        harness.create("second", zone: "Europe/Berlin", policy: .window7d, at: utc("2025-03-01"))
        let bytes = LedgerCodec.encode(harness.ledger)
        // The zone table holds "Europe/Berlin"; change it to an id no system knows.
        let zone = Array("Europe/Berlin".utf8)
        let start = try XCTUnwrap((0..<bytes.count).first { Array(bytes[$0..<min(bytes.count, $0 + zone.count)]) == zone })
        var unknownZone = bytes
        unknownZone[start] = UInt8(ascii: "X")
        XCTAssertThrowsError(try LedgerCodec.decode(unknownZone)) { error in
            let error = error as? LedgerCodecError
            XCTAssertEqual(error?.kind, .unknownTimeZone)
            XCTAssertEqual(error?.offset, start - 1)
            XCTAssertTrue(error?.field.contains("Xurope/Berlin") ?? false)
        }
        // The second subscription's status field follows its id, customer, plan, instants and
        // indexes, each a tag and a value.
        let second = try XCTUnwrap((0..<bytes.count - 6).first { Array(bytes[$0..<$0 + 6]) == Array("second".utf8) })
        // Customer "c" and plan "p" take three bytes each (tag, length, byte); then createdAt and
        // startDate (tag and varint) and the zone and currency indexes (tag and one byte).
        var statusOffset = second + 6 + 3 + 3
        for _ in 0..<2 {
            statusOffset += 1
            while bytes[statusOffset] >= 0x80 { statusOffset += 1 }
            statusOffset += 1
        }
        statusOffset += 4
        XCTAssertEqual(bytes[statusOffset], 8 << 3, "the status field's tag")
        statusOffset += 1
        XCTAssertEqual(bytes[statusOffset], UInt8(SubscriptionStatus.active.rawValue))
        var badStatus = bytes
        badStatus[statusOffset] = 9
        XCTAssertThrowsError(try LedgerCodec.decode(badStatus)) { error in
            let error = error as? LedgerCodecError
            XCTAssertEqual(error?.kind, .invalidValue)
            // Enums are checked once the record is read: the offset is inside it, after the field.
            XCTAssertGreaterThan(error?.offset ?? 0, statusOffset)
            XCTAssertEqual(error?.field, "subscription 1: status")
        }
    }

    // MARK: measurement

    /// Encode/decode time and size at 100,000 subscriptions × 5 credits; runs only when asked
    /// (CREDITD_CODEC_PROBE=1), since it measures rather than checks. Meaningful with -c release.
    func testCodecSpeedProbe() throws {
        let environment = ProcessInfo.processInfo.environment
        guard environment["CREDITD_CODEC_PROBE"] == "1" else { throw XCTSkip("set CREDITD_CODEC_PROBE=1") }
        let count = Int(environment["CREDITD_CODEC_PROBE_SUBSCRIPTIONS"] ?? "") ?? 100_000
        let clock = ContinuousClock()
        var ledger = Ledger()
        let start = utc("2025-03-01").adding(nanoseconds: 123_456_789)
        let built = clock.measure {
            for index in 0..<count {
                let id = "sub-\(index)-0123456789abcdef"
                _ = ledger.execute(.create(CreateSubscriptionRequest(
                    subscriptionId: id, customer: "customer-\(index)", plan: "team", seats: 10, unitPriceMinor: 1000,
                    currency: "USD", interval: .known(.monthly), timeZone: "Europe/Berlin",
                    refundPolicy: .known(index % 3 == 0 ? .window7d : .anytime))),
                    at: start, callerUID: 1, dryRun: false)
                for step in 0..<5 {
                    _ = ledger.execute(.changeSeats(ChangeSeatsRequest(subscriptionId: id, newSeats: Int64(9 - step),
                                                                       idempotencyKey: index % 10 == 0 ? "k\(index)-\(step)" : "")),
                                       at: start.adding(hours: Int64(step + 1)).adding(nanoseconds: Int64(index)),
                                       callerUID: 1, dryRun: false)
                }
            }
            // Half the credits move on (applied, consumed or awaiting a refund) with a renewal.
            ledger.advance(to: utc("2025-04-01T12:00:00Z"))
        }
        // Wall time is the best of a few runs (the machine is shared); CPU time is of all threads,
        // which says what two idle cores would take.
        func cpuSeconds() -> Double {
            #if canImport(Glibc)
            var usage = rusage()
            getrusage(RUSAGE_SELF.rawValue, &usage)
            return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
                + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1_000_000
            #else
            return 0
            #endif
        }
        var bytes: [UInt8] = []
        var decoded = Ledger()
        func run(parts: Int?, rounds: Int) -> (encode: Duration, decode: Duration, encodeCPU: Double, decodeCPU: Double) {
            var result = (encode: Duration.seconds(1_000), decode: Duration.seconds(1_000), encodeCPU: 1e9, decodeCPU: 1e9)
            for _ in 0..<rounds {
                bytes = []
                var cpu = cpuSeconds()
                result.encode = min(result.encode, clock.measure {
                    bytes = parts.map { LedgerCodec.encode(ledger, parts: $0) } ?? LedgerCodec.encode(ledger)
                })
                result.encodeCPU = min(result.encodeCPU, cpuSeconds() - cpu)
                decoded = Ledger()
                cpu = cpuSeconds()
                result.decode = min(result.decode, clock.measure { decoded = try! LedgerCodec.decode(bytes) })
                result.decodeCPU = min(result.decodeCPU, cpuSeconds() - cpu)
            }
            return result
        }
        let parallel = run(parts: nil, rounds: 3)
        XCTAssertEqual(decoded, ledger)
        let sizeInBytes = bytes.count
        let single = run(parts: 1, rounds: 2)
        XCTAssertEqual(decoded, ledger)
        let credits = ledger.subscriptions.reduce(0) { $0 + $1.credits.count }
        func ms(_ duration: Duration) -> String {
            let (seconds, attoseconds) = duration.components
            return "\(seconds * 1_000 + attoseconds / 1_000_000_000_000_000) ms"
        }
        print("""
            codec probe: \(count) subscriptions, \(credits) credits, \(ledger.idempotencyEntryCount) keys (built in \(ms(built)))
            codec probe: \(sizeInBytes) bytes (\(sizeInBytes / count) per subscription)
            codec probe: encode \(ms(parallel.encode)) wall / \(Int(parallel.encodeCPU * 1_000)) ms CPU, \
            decode \(ms(parallel.decode)) wall / \(Int(parallel.decodeCPU * 1_000)) ms CPU
            codec probe: in one part: encode \(ms(single.encode)) wall / \(Int(single.encodeCPU * 1_000)) ms CPU, \
            decode \(ms(single.decode)) wall / \(Int(single.decodeCPU * 1_000)) ms CPU
            """)
    }
}
