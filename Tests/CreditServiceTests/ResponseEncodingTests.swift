import CreditDomain
import CreditProto
import LedgerScenarios
import ProtoWire
import XCTest
@testable import CreditService

/// `ResponseEncoding` writes ListCredits and GetRefundStatus responses straight from the domain.
/// Its bytes must be exactly what SwiftProtobuf writes for the message built from the same
/// values through `ProtoMapping`, for every kind of credit random ledgers reach: each state,
/// long histories, window_72h portions, differing unused days, large rationals, every zone.
final class ResponseEncodingTests: XCTestCase {
    /// The ListCredits response as generated messages (what the handler answered before).
    private func expectedPage(_ page: CreditPage, asOf: Instant, summary: Bool) throws -> [UInt8] {
        var response = Creditd_V1_ListCreditsResponse()
        response.credits = page.credits.map { listing in
            var message = summary
                ? ProtoMapping.creditSummary(listing.credit, subscriptionID: listing.subscriptionId,
                                             currency: listing.currency, asOf: nil)
                : ProtoMapping.credit(listing.credit, .init(subscriptionID: listing.subscriptionId, currency: listing.currency,
                                                            timeZone: listing.timeZone), asOf: nil)
            message.overdue = listing.status.overdue
            message.refundOverdue = listing.status.refundOverdue
            message.customer = listing.customer
            message.asOfDate = ProtoMapping.date(listing.asOfDate)
            return message
        }
        response.nextPageToken = page.nextPageToken
        response.asOfUnixNanos = asOf.nanosecondsSinceEpoch
        return try response.serializedBytes()
    }

    private func expectedRefundStatus(_ status: RefundStatus, _ subscription: Subscription) throws -> [UInt8] {
        let context = ProtoMapping.Context(subscription)
        var message = Creditd_V1_GetRefundStatusResponse()
        message.subscriptionID = status.subscriptionId
        message.asOfDate = ProtoMapping.date(status.asOfDate)
        message.asOfUnixNanos = status.asOf.nanosecondsSinceEpoch
        message.currency = status.currency.code
        message.credits = status.credits.map { entry in
            var credit = ProtoMapping.credit(entry.credit, context, asOf: nil)
            credit.overdue = entry.overdue
            credit.refundOverdue = entry.refundOverdue
            credit.customer = subscription.customer
            credit.asOfDate = ProtoMapping.date(status.asOfDate)
            return credit
        }
        var totals = Creditd_V1_CreditTotals()
        totals.pendingMinor = status.totals.pendingMinor
        totals.appliedMinor = status.totals.appliedMinor
        totals.consumedMinor = status.totals.consumedMinor
        totals.refundPendingMinor = status.totals.refundPendingMinor
        totals.refundedMinor = status.totals.refundedMinor
        message.totals = totals
        return try message.serializedBytes()
    }

    func testRandomLedgersEncodeAsTheGeneratedMessages() throws {
        var credits = 0, states = Set<CreditState>(), longHistories = 0, portions = 0
        for seed in UInt64(1)...60 {
            let (ledger, generator) = RandomLedger.make(seed: seed, steps: 300)
            // Several as-of instants, so every overdue and refund-overdue flag is seen set and unset.
            for asOf in [generator.now, generator.now.adding(hours: 24 * 40), generator.now.adding(hours: 24 * 400)] {
                for summary in [false, true] {
                    var token = ""
                    repeat {
                        let page = try ledger.listCredits(filter: CreditFilter(), pageSize: 7, pageToken: token, asOf: asOf)
                        XCTAssertEqual(ResponseEncoding.listCredits(page, asOf: asOf, summary: summary),
                                       try expectedPage(page, asOf: asOf, summary: summary),
                                       "seed \(seed), summary \(summary), page after '\(token)'")
                        token = page.nextPageToken
                    } while !token.isEmpty
                }
                for subscription in ledger.subscriptions {
                    let status = try ledger.refundStatus(subscriptionId: subscription.id, creditId: nil, asOf: asOf)
                    XCTAssertEqual(ResponseEncoding.refundStatus(status, timeZone: subscription.timeZone, customer: subscription.customer),
                                   try expectedRefundStatus(status, subscription), "seed \(seed), \(subscription.id)")
                }
            }
            for subscription in ledger.subscriptions {
                for credit in subscription.credits {
                    credits += 1
                    states.insert(credit.state)
                    if credit.history.count > 4 { longHistories += 1 }
                    if !credit.explanation.blocks.isEmpty { portions += 1 }
                }
            }
        }
        // Credits end in these states; refund_failed is passed through (long histories).
        XCTAssertTrue(states.isSuperset(of: [.pending, .applied, .consumed, .refundPending, .refunded]), "\(states)")
        XCTAssertGreaterThan(longHistories, 0)
        XCTAssertGreaterThan(portions, 0)
        XCTAssertGreaterThan(credits, 400)
    }

    /// An empty page (the end of a listing) and an empty status still carry their other fields.
    func testEmptyResponses() throws {
        let asOf = Instant(nanosecondsSinceEpoch: -1)
        let page = try Ledger().listCredits(filter: CreditFilter(), pageSize: 5, pageToken: "", asOf: asOf)
        XCTAssertEqual(ResponseEncoding.listCredits(page, asOf: asOf, summary: false),
                       try expectedPage(page, asOf: asOf, summary: false))
    }

    /// Integers at their limits, at every power of ten and around it, across the 64-bit and
    /// 19-digit boundaries (zeros inside a 128-bit value) and at random are written as Swift
    /// prints them, in as many bytes as counted.
    func testDecimalDigits() {
        var signed: [Int128] = [0, 1, -1, 9, 10, -10, 99, 100, Int128(Int64.max), Int128(Int64.min), Int128(UInt64.max),
                                Int128(UInt64.max) + 1, .max, .min + 1, .min]
        var unsigned: [UInt64] = [0, 7, 1_000_000, .max, .max - 1]
        var power: UInt128 = 1
        for _ in 0...38 {
            for value in [power - 1, power, power + 1] where value <= UInt128(Int128.max) {
                signed += [Int128(value), -Int128(value)]
                if value <= UInt128(UInt64.max) { unsigned.append(UInt64(value)) }
            }
            if power <= UInt128.max / 10 { power *= 10 }
        }
        signed += [Int128(DecimalDigits.chunk) * 5 + 7, -(Int128(DecimalDigits.chunk) * Int128(DecimalDigits.chunk) + 3)]
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2_000 {
            let wide = Int128(bitPattern: UInt128(generator.next() as UInt64) << 64 | UInt128(generator.next() as UInt64))
            signed += [wide, wide >> Int(generator.next() % 127)]
            unsigned.append((generator.next() as UInt64) >> (generator.next() % 64))
        }
        for value in signed {
            var out = ByteWriter(capacity: 8)
            out.decimal(value, count: DecimalDigits.count(value))
            XCTAssertEqual(String(decoding: out.array(), as: UTF8.self), String(value))
            XCTAssertEqual(DecimalDigits.count(value), String(value).utf8.count, "\(value)")
        }
        for value in unsigned {
            var out = ByteWriter(capacity: 8)
            out.decimal(value, count: DecimalDigits.count(value))
            XCTAssertEqual(String(decoding: out.array(), as: UTF8.self), String(value))
            XCTAssertEqual(DecimalDigits.count(value), String(value).utf8.count, "\(value)")
        }
    }
}
