import XCTest
#if canImport(Glibc)
import Glibc
#endif
@testable import CreditDomain

/// Reports resident memory per subscription for the 1M/5M target; runs only when asked
/// (CREDITD_MEMORY_PROBE=1), since it measures rather than checks.
final class MemoryProbeTests: XCTestCase {
    private func residentBytes() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        return (Int(fields[1]) ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    func testResidentMemoryPerSubscription() throws {
        guard ProcessInfo.processInfo.environment["CREDITD_MEMORY_PROBE"] == "1" else { throw XCTSkip("set CREDITD_MEMORY_PROBE=1") }
        let count = 200_000
        let before = residentBytes()
        var ledger = Ledger()
        let start = utc("2025-03-01")
        for index in 0..<count {
            let id = "sub-\(index)-0123456789abcdef"
            _ = ledger.execute(.create(CreateSubscriptionRequest(subscriptionId: id, customer: "customer-\(index)", plan: "team",
                                                                 seats: 10, unitPriceMinor: 1000, currency: "USD",
                                                                 interval: .known(.monthly), timeZone: "Europe/Berlin")),
                               at: start, callerUID: 1, dryRun: false)
            for step in 0..<(Int(ProcessInfo.processInfo.environment["CREDITD_PROBE_CREDITS"] ?? "5") ?? 5) {
                _ = ledger.execute(.changeSeats(ChangeSeatsRequest(subscriptionId: id, newSeats: Int64(9 - step))),
                                   at: start.adding(hours: Int64(step + 1)), callerUID: 1, dryRun: false)
            }
        }
        let after = residentBytes()
        print("memory probe: \((after - before) / count) bytes per subscription with 5 credits")
    }
}
