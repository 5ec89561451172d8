/// Field numbers of the tagged ledger encoding (format versions 3 and 4). Part of the format: a number
/// is never reused for another meaning; a new field takes a new number. Overview.swift lists
/// them as a schema.
enum TaggedField {
    /// The top level, after the magic and version.
    enum Ledger {
        static let header: UInt32 = 1
        static let subscriptions: UInt32 = 2
        static let idOrder: UInt32 = 3
        static let keys: UInt32 = 4
        static let events: UInt32 = 5
        /// Version 4: sealed event chunks kept in the event archive, oldest first, from
        /// header.first_event_seq; the events records follow them.
        static let archivedEvents: UInt32 = 6
        /// Last: the number of records (subscriptions, keys and events), so that a file cut at
        /// a field boundary is refused rather than read as a smaller ledger.
        static let end: UInt32 = 15
    }

    /// Where the event archive keeps one sealed chunk (its first seq follows from its place).
    enum ArchivedChunk {
        static let file: UInt32 = 1
        static let offset: UInt32 = 2
        static let length: UInt32 = 3
        static let newestRecordedAt: UInt32 = 4
    }

    enum Header {
        static let maxSeats: UInt32 = 1
        static let nextCreditSerial: UInt32 = 2
        static let nextInvoiceSerial: UInt32 = 3
        static let firstEventSeq: UInt32 = 4
    }

    /// A part of subscriptions, keys or events: records, and the tables they refer to.
    enum Part {
        static let record: UInt32 = 1
        static let tables: UInt32 = 15
    }

    enum Tables {
        static let zone: UInt32 = 1
        static let currency: UInt32 = 2
    }

    enum Subscription {
        static let id: UInt32 = 1
        static let customer: UInt32 = 2
        static let plan: UInt32 = 3
        static let createdAt: UInt32 = 4
        static let startDate: UInt32 = 5
        static let zone: UInt32 = 6
        static let currency: UInt32 = 7
        static let status: UInt32 = 8
        static let refundPolicy: UInt32 = 9
        static let interval: UInt32 = 10
        static let anchorMonth: UInt32 = 11
        static let anchorDay: UInt32 = 12
        static let unitPriceMinor: UInt32 = 13
        static let seats: UInt32 = 14
        static let credit: UInt32 = 15
        static let periodStart: UInt32 = 16
        static let periodEnd: UInt32 = 17
        static let periodChargedMinor: UInt32 = 18
        static let periodChargedSeats: UInt32 = 19
        static let purchaseSeats: UInt32 = 20
        static let purchaseInvoiceSerial: UInt32 = 21
        static let cumulativeLow: UInt32 = 22
        static let cumulativeHigh: UInt32 = 23
        static let scheduledSeats: UInt32 = 24
        static let unbilledChargesMinor: UInt32 = 25
        static let lastEventSeq: UInt32 = 26
        static let nextDue: UInt32 = 27
        static let block: UInt32 = 28
        static let periodLine: UInt32 = 29
        static let laterInvoice: UInt32 = 30
        static let cancellation: UInt32 = 31
    }

    enum SeatBlock {
        static let seats: UInt32 = 1
        static let windowStart: UInt32 = 2
        static let startDate: UInt32 = 3
    }

    enum Explanation {
        static let chargedMinor: UInt32 = 1
        static let cumulativeLow: UInt32 = 2
        static let cumulativeHigh: UInt32 = 3
        static let chargedSeats: UInt32 = 4
        static let seatsDelta: UInt32 = 5
        static let periodDays: UInt32 = 6
        static let unusedDays: UInt32 = 7
        static let portion: UInt32 = 8
    }

    enum Portion {
        static let seats: UInt32 = 1
        static let startDate: UInt32 = 2
        static let unusedDays: UInt32 = 3
    }

    enum Line {
        static let amountMinor: UInt32 = 1
        static let effectiveDate: UInt32 = 2
        static let eventSeq: UInt32 = 3
        static let explanation: UInt32 = 4
    }

    enum Credit {
        static let serial: UInt32 = 1
        static let createdAt: UInt32 = 2
        static let effectiveDate: UInt32 = 3
        static let amountMinor: UInt32 = 4
        static let remainingMinor: UInt32 = 5
        static let consumedMinor: UInt32 = 6
        static let eventSeq: UInt32 = 7
        static let dueDateOffset: UInt32 = 8
        static let refundExpectedByOffset: UInt32 = 9
        static let source: UInt32 = 10
        static let state: UInt32 = 11
        static let hadRefundFailure: UInt32 = 12
        static let explanation: UInt32 = 13
        static let history: UInt32 = 14
    }

    enum HistoryEntry {
        static let state: UInt32 = 1
        static let at: UInt32 = 2
    }

    enum Invoice {
        static let serial: UInt32 = 1
        static let kind: UInt32 = 2
        static let settled: UInt32 = 3
        static let issuedAt: UInt32 = 4
        static let issuedDate: UInt32 = 5
        static let periodStart: UInt32 = 6
        static let periodEnd: UInt32 = 7
        static let settlesOn: UInt32 = 8
        static let line: UInt32 = 9
    }

    enum InvoiceLine {
        static let kind: UInt32 = 1
        static let amountMinor: UInt32 = 2
        static let creditSerial: UInt32 = 3
        static let effectiveDate: UInt32 = 4
        static let seats: UInt32 = 5
    }

    enum Cancellation {
        static let mode: UInt32 = 1
        static let alreadyCancelled: UInt32 = 2
        static let effectiveDate: UInt32 = 3
        static let requestedAt: UInt32 = 4
        static let entitlementEndsAt: UInt32 = 5
        static let line: UInt32 = 6
        static let credit: UInt32 = 7
        static let finalInvoice: UInt32 = 8
    }

    enum KeyEntry {
        static let callerUID: UInt32 = 1
        static let operation: UInt32 = 2
        static let key: UInt32 = 3
        static let firstUsedAt: UInt32 = 4
        static let cancelFingerprint: UInt32 = 5
        static let changeSeatsFingerprint: UInt32 = 6
        static let response: UInt32 = 7
        static let error: UInt32 = 8
    }

    enum Fingerprint {
        static let subscriptionId: UInt32 = 1
        static let mode: UInt32 = 2
        static let newSeats: UInt32 = 3
        static let timing: UInt32 = 4
    }

    enum Error {
        static let reason: UInt32 = 1
        static let message: UInt32 = 2
    }

    /// A command response: exactly one of these fields.
    enum Response {
        static let created: UInt32 = 1
        static let cancelled: UInt32 = 2
        static let resumed: UInt32 = 3
        static let seatsChanged: UInt32 = 4
        static let refundOutcomeRecorded: UInt32 = 5
        static let imported: UInt32 = 6
    }

    /// A created or imported subscription with its first invoice.
    enum Created {
        static let subscription: UInt32 = 1
        static let invoice: UInt32 = 2
    }

    enum SeatChange {
        static let outcome: UInt32 = 1
        static let previousSeats: UInt32 = 2
        static let newSeats: UInt32 = 3
        static let seats: UInt32 = 4
        static let effectiveDate: UInt32 = 5
        static let line: UInt32 = 6
        static let credit: UInt32 = 7
    }

    enum RefundOutcome {
        static let ignored: UInt32 = 1
        static let overdue: UInt32 = 2
        static let refundOverdue: UInt32 = 3
        static let credit: UInt32 = 4
    }

    /// An event: its header fields, and exactly one payload field (7–11).
    enum Event {
        static let type: UInt32 = 1
        static let recordedAt: UInt32 = 2
        static let at: UInt32 = 3
        static let date: UInt32 = 4
        static let subscriptionId: UInt32 = 5
        static let customer: UInt32 = 6
        static let subscription: UInt32 = 7
        static let seatChange: UInt32 = 8
        static let cancel: UInt32 = 9
        static let invoice: UInt32 = 10
        static let creditState: UInt32 = 11
    }

    /// A seat change or cancel payload: the subscription's view and the change.
    enum ViewAnd {
        static let view: UInt32 = 1
        static let detail: UInt32 = 2
    }

    enum CreditStateEvent {
        static let state: UInt32 = 1
        static let at: UInt32 = 2
        static let credit: UInt32 = 3
    }

    enum View {
        static let plan: UInt32 = 1
        static let status: UInt32 = 2
        static let refundPolicy: UInt32 = 3
        static let interval: UInt32 = 4
        static let anchorMonth: UInt32 = 5
        static let anchorDay: UInt32 = 6
        static let zone: UInt32 = 7
        static let currency: UInt32 = 8
        static let seats: UInt32 = 9
        static let unitPriceMinor: UInt32 = 10
        static let startDate: UInt32 = 11
        static let periodStart: UInt32 = 12
        static let periodEnd: UInt32 = 13
        static let periodChargedMinor: UInt32 = 14
        static let periodChargedSeats: UInt32 = 15
        static let scheduledSeats: UInt32 = 16
    }
}
