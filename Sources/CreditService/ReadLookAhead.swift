import CreditDomain
import CreditProto
import CreditServer
import CreditWire

/// Brings the subscriptions a burst of reads will look up (GetSubscription, GetRefundStatus,
/// ListInvoices: each names one in field 1) into the cache together, from the committed state
/// the reads will run on (`Ledger.prefetchSubscriptions`). Writes are left out: the writer
/// prefetches its own batches.
struct ReadLookAhead: RequestLookAhead {
    let gate: ApplicationGate

    private static let service = Array(MethodTable.Credits.serviceName.utf8)
    private static let methods: [[UInt8]] = [
        Array(MethodTable.Credits.getSubscription.method.utf8),
        Array(MethodTable.Credits.getRefundStatus.method.utf8),
        Array(MethodTable.Credits.listInvoices.method.utf8),
    ]

    func warm(_ requests: UnsafeBufferPointer<UnsafeRawBufferPointer>) {
        guard let application = gate.application else { return }
        withUnsafeTemporaryAllocation(of: UnsafeRawBufferPointer.self, capacity: requests.count) { ids in
            let count = Self.subscriptionIDs(in: requests, into: ids)
            guard count > 1 else { return }
            application.writer.committed.ledger.prefetchSubscriptions(count: count) {
                String(decoding: ids[$0], as: UTF8.self)
            }
        }
    }

    /// Stores the subscription id of each request that reads one into `ids`, in order, and
    /// returns how many it stored.
    static func subscriptionIDs(in requests: UnsafeBufferPointer<UnsafeRawBufferPointer>,
                                into ids: UnsafeMutableBufferPointer<UnsafeRawBufferPointer>) -> Int {
        var count = 0
        for request in requests {
            guard count < ids.count, let call = FieldPeek.request(request), call.service.elementsEqual(service),
                  methods.contains(where: { call.method.elementsEqual($0) }),
                  let id = FieldPeek.bytesField(1, in: call.payload), !id.isEmpty else { continue }
            ids[count] = id
            count += 1
        }
        return count
    }
}
