import Foundation
@testable import LedgerEncoding
import XCTest
@testable import CreditDomain

@_silgen_name("malloc_trim") func probeMallocTrim(_ pad: Int) -> Int32

/// Heap bytes per part of a large ledger; runs only when asked (CREDITD_MEMORY_PROBE=N subscriptions).
final class MemoryProbe: XCTestCase {
    func heapBytes() -> Int {
        _ = probeMallocTrim(0)
        let statm = (try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8)) ?? "0 0"
        return Int(statm.split(separator: " ")[1])! * 4096
    }

    func testMemoryProbe() throws {
        guard let count = Int(ProcessInfo.processInfo.environment["CREDITD_MEMORY_PROBE"] ?? "") else {
            throw XCTSkip("set CREDITD_MEMORY_PROBE to a number of subscriptions")
        }
        var harness = Harness()
        let at = utc("2025-03-01")
        for index in 0..<count {
            let id = "s" + String(repeating: "0", count: 7 - String(index).count) + String(index)
            harness.create(id, seats: 50, customer: ProcessInfo.processInfo.environment["CREDITD_MEMORY_PROBE_CUSTOMERS"] == "distinct" ? "cust-\(index)" : "c", at: at)
            for step in 1...5 { _ = harness.changeSeats(id, to: 50 - Int64(step), at: at) }
        }
        // Measured as recovery leaves it: decoded from a snapshot into a fresh heap.
        let bytes = LedgerCodec.encode(harness.ledger)
        harness = Harness()
        let start = heapBytes()
        var ledger = try LedgerCodec.decode(bytes)
        let all = heapBytes() - start
        func report(_ name: String, _ bytes: Int) {
            print(String(format: "memory probe: %@ %.1f MiB, %.0f B per subscription", name, Double(bytes) / 1048576, Double(bytes) / Double(count)))
        }
        report("whole ledger", all)
        print("memory probe: sizes Subscription \(MemoryLayout<Subscription>.size) Credit \(MemoryLayout<Credit>.size) "
              + "LedgerLine \(MemoryLayout<LedgerLine>.size) LineExplanation \(MemoryLayout<LineExplanation>.size) "
              + "Invoice \(MemoryLayout<Invoice>.size) CreditHistory \(MemoryLayout<CreditHistory>.size) "
              + "TimeZoneRules \(MemoryLayout<TimeZoneRules>.size) BillingPeriod \(MemoryLayout<BillingPeriod>.size) "
              + "SeatBlock \(MemoryLayout<SeatBlock>.size) CancellationSlot \(MemoryLayout<CancellationSlot>.size)")
        let sample = ledger.subscriptions[7]
        print("memory probe: subscription 7: credits \(sample.credits.count), lines \(sample.periodLines.count) (cap \(sample.periodLines.capacity)), blocks \(sample.blocks.count), invoices \(sample.laterInvoices.count), portions \(sample.credits.map { $0.explanation.blocks.count }), history overflow \(sample.credits.map { $0.laterHistory.overflow.count }), period lines' portions \(sample.periodLines.map { $0.explanation.blocks.count })")
        var before = heapBytes()
        ledger.feed = EventFeed()
        report("event feed", before - heapBytes())
        before = heapBytes()
        ledger.book = BookIndex()
        report("book index", before - heapBytes())
        report("rest (subscriptions, id tables, keys, due queue)", heapBytes() - start)
        withExtendedLifetime(ledger) {}
    }
}
