import CreditProto
import CreditWire
import SwiftProtobuf
import XCTest
@testable import CreditService

/// The read look-ahead takes the subscription id of each Credits read that names one, and
/// nothing from writes, other services or requests it cannot read.
final class ReadLookAheadTests: XCTestCase {
    private func envelope(_ service: String, _ method: String, _ payload: some SwiftProtobuf.Message) throws -> [UInt8] {
        try Ttrpc_Request(service: service, method: method, payload: try payload.serializedBytes()).serializedBytes()
    }

    func testSubscriptionIDsOfReads() throws {
        let credits = MethodTable.Credits.self
        var get = Creditd_V1_GetSubscriptionRequest()
        get.subscriptionID = "a"
        var refund = Creditd_V1_GetRefundStatusRequest()
        refund.subscriptionID = "subscription-with-a-long-id-0001"
        refund.creditID = "cr_1"
        var invoices = Creditd_V1_ListInvoicesRequest()
        invoices.subscriptionID = "d"
        var seats = Creditd_V1_ChangeSeatsRequest()
        seats.subscriptionID = "b"
        let requests: [[UInt8]] = [
            try envelope(credits.serviceName, credits.getSubscription.method, get),
            try envelope(credits.serviceName, credits.changeSeats.method, seats),
            try envelope(credits.serviceName, credits.getRefundStatus.method, refund),
            try envelope("other.Service", credits.getSubscription.method, get),
            try envelope(credits.serviceName, credits.getSubscription.method, Creditd_V1_GetSubscriptionRequest()),
            [0x0A, 0x7F],
            try envelope(credits.serviceName, credits.listInvoices.method, invoices),
        ]
        let found: [String] = withPointers(to: requests) { pointers in
            withUnsafeTemporaryAllocation(of: UnsafeRawBufferPointer.self, capacity: pointers.count) { ids in
                let count = ReadLookAhead.subscriptionIDs(in: pointers, into: ids)
                return ids[..<count].map { String(decoding: $0, as: UTF8.self) }
            }
        }
        XCTAssertEqual(found, ["a", "subscription-with-a-long-id-0001", "d"])
    }

    /// Calls `body` with each of `arrays` as raw bytes, all valid at once.
    private func withPointers<T>(to arrays: [[UInt8]], _ body: (UnsafeBufferPointer<UnsafeRawBufferPointer>) -> T) -> T {
        let storage = arrays.map { bytes -> UnsafeMutableRawBufferPointer in
            let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count, alignment: 1)
            copy.copyBytes(from: bytes)
            return copy
        }
        defer { storage.forEach { $0.deallocate() } }
        let pointers = storage.map { UnsafeRawBufferPointer($0) }
        return pointers.withUnsafeBufferPointer(body)
    }
}
