import CCreditClient
import CreditClient
import CreditProto
import CreditWire
import Foundation
import SwiftProtobuf

/// A non-OK status from the server, as a client reports it.
struct ServerStatus: Error, Equatable, CustomStringConvertible {
    var code: Int32
    var message: String
    /// The machine-readable reason, e.g. "subscription_not_found".
    var reason: String

    var description: String { "\(String(cString: creditd_code_name(code))) [\(reason)] \(message)" }
}

struct InteropMismatch: Error, CustomStringConvertible {
    var description: String
}

/// Calls one method of the API with one client.
protocol InteropDriver {
    func call<Request, Response>(
        _ method: InteropMethod<Request, Response>, _ request: Request
    ) async throws -> Result<Response, ServerStatus>
}

/// The C library: each call goes through the typed function of its method;
/// a read is issued a second time through creditd_call_bytes, and both
/// readings must agree. Local failures (connect, timeout, protocol) throw.
struct CLibraryDriver: InteropDriver {
    let client: CClient

    func call<Request, Response>(
        _ method: InteropMethod<Request, Response>, _ request: Request
    ) async throws -> Result<Response, ServerStatus> {
        let requestBytes: [UInt8] = try request.serializedBytes()
        let typed: Result<Response, ServerStatus> = try Self.decode(method.callC(client, requestBytes))
        if method.isRead {
            let raw: Result<Response, ServerStatus> = try Self.decode(
                client.callBytes(service: method.service, method: method.method, request: requestBytes))
            guard sameOutcome(raw.map(method.normalize), typed.map(method.normalize)) else {
                throw InteropMismatch(description: "\(method.fullName): typed call gave \(typed), bytes call gave \(raw)")
            }
        }
        return typed
    }

    private static func decode<Response: SwiftProtobuf.Message>(
        _ result: Result<[UInt8], CCallError>
    ) throws -> Result<Response, ServerStatus> {
        switch result {
        case .success(let bytes):
            return .success(try Response(serializedBytes: bytes))
        case .failure(let error) where error.kind == CREDITD_ERR_STATUS:
            return .failure(ServerStatus(code: error.code, message: error.message, reason: error.reason))
        case .failure(let error):
            throw InteropMismatch(description: "local failure \(error.kind): \(error.message)")
        }
    }
}

/// The Swift client (CreditClient). Its reason is read from the
/// ErrorReason detail only, so an equal reason on the C side shows the C
/// library read the same detail.
struct SwiftClientDriver: InteropDriver {
    let client: CreditClient

    func call<Request, Response>(
        _ method: InteropMethod<Request, Response>, _ request: Request
    ) async throws -> Result<Response, ServerStatus> {
        do {
            return .success(try await client.call(service: method.service, method: method.method, request: request,
                                                  responseType: Response.self, timeout: .seconds(5)))
        } catch let error as RPCError {
            return .failure(ServerStatus(code: error.code.rawValue, message: error.message,
                                         reason: error.errorReason?.reason ?? ""))
        }
    }
}

/// Equal responses, or equal statuses.
func sameOutcome<Response: SwiftProtobuf.Message>(
    _ a: Result<Response, ServerStatus>, _ b: Result<Response, ServerStatus>
) -> Bool {
    switch (a, b) {
    case (.success(let x), .success(let y)): x.isEqualTo(message: y)
    case (.failure(let x), .failure(let y)): x == y
    default: false
    }
}

/// One call of the script and what came back (normalized).
struct InteropStep {
    var name: String
    var method: String
    var result: Result<any SwiftProtobuf.Message, ServerStatus>

    func sameResult(as other: InteropStep) -> Bool {
        switch (result, other.result) {
        case (.success(let a), .success(let b)): a.isEqualTo(message: b)
        case (.failure(let a), .failure(let b)): a == b
        default: false
        }
    }

    var resultText: String {
        switch result {
        case .success(let message): "\(type(of: message).protoMessageName):\n\(message.textFormatString())"
        case .failure(let status): "status \(status)"
        }
    }
}

/// Records every call of a script run.
final class StepRecorder<Driver: InteropDriver> {
    let driver: Driver
    private(set) var steps: [InteropStep] = []

    init(_ driver: Driver) { self.driver = driver }

    @discardableResult
    func call<Request, Response>(
        _ name: String, _ method: InteropMethod<Request, Response>, _ request: Request
    ) async throws -> Result<Response, ServerStatus> {
        let result = try await driver.call(method, request)
        steps.append(InteropStep(name: name, method: method.fullName,
                                 result: result.map { method.normalize($0) as any SwiftProtobuf.Message }))
        return result
    }

    /// A call the script needs to succeed, because later steps use its answer.
    func success<Request, Response>(
        _ name: String, _ method: InteropMethod<Request, Response>, _ request: Request
    ) async throws -> Response {
        switch try await call(name, method, request) {
        case .success(let response): return response
        case .failure(let status): throw InteropMismatch(description: "\(name): \(status)")
        }
    }
}

/// The same sequence of calls for every client, against a fresh daemon on
/// the manual clock started at `InteropTests.startInstant`. Every
/// instant comes from that clock, so two runs against two fresh daemons
/// must give equal answers whichever client makes the calls.
enum InteropScript {
    static func run(_ driver: some InteropDriver) async throws -> [InteropStep] {
        let r = StepRecorder(driver)

        try await r.call("health", API.healthCheck, .with { $0.service = "" })
        try await r.call("health of Credits", API.healthCheck, .with { $0.service = "creditd.v1.Credits" })
        try await r.call("health of an unknown service", API.healthCheck, .with { $0.service = "no.such.Service" })
        try await r.call("clock at start", API.getClock, .init())

        // Setup A of the worked examples, and an annual plan in another zone.
        let acme = Creditd_V1_CreateSubscriptionRequest.with {
            $0.subscriptionID = "acme-1"
            $0.customer = "acme"
            $0.plan = "team"
            $0.seats = 10
            $0.unitPriceMinor = 1000
            $0.currency = "USD"
            $0.interval = .monthly
            $0.timeZone = "UTC"
            $0.refundPolicy = .anytime
        }
        _ = try await r.success("create acme-1", API.createSubscription, acme)
        _ = try await r.success("create globex-1", API.createSubscription, .with {
            $0.subscriptionID = "globex-1"
            $0.customer = "globex"
            $0.plan = "enterprise"
            $0.seats = 3
            $0.unitPriceMinor = 1_200_000
            $0.currency = "NOK"
            $0.interval = .annual
            $0.timeZone = "Europe/Oslo"
            $0.refundPolicy = .window7D
        })
        try await r.call("create acme-1 again", API.createSubscription, acme)
        try await r.call("create without an interval", API.createSubscription, .with {
            $0.subscriptionID = "bad-1"
            $0.customer = "x"
            $0.seats = 1
            $0.currency = "USD"
            $0.timeZone = "UTC"
        })

        try await r.call("get acme-1", API.getSubscription, .with { $0.subscriptionID = "acme-1" })
        try await r.call("get an unknown subscription", API.getSubscription, .with { $0.subscriptionID = "nobody-1" })
        let firstPage = try await r.success("list, first page", API.listSubscriptions, .with { $0.pageSize = 1 })
        try await r.call("list, second page", API.listSubscriptions, .with {
            $0.pageSize = 1
            $0.pageToken = firstPage.nextPageToken
        })

        try await r.call("advance to 04-11 12:00", API.advanceClock, .with {
            $0.toUnixNanos = unixNanos("2025-04-11T12:00:00Z")
        })
        let toSeven = Creditd_V1_ChangeSeatsRequest.with {
            $0.subscriptionID = "acme-1"
            $0.newSeats = 7
            $0.idempotencyKey = "acme-seats-1"
        }
        try await r.call("seats 10 -> 7", API.changeSeats, toSeven)
        try await r.call("seats 10 -> 7 replayed", API.changeSeats, toSeven)
        try await r.call("seats key reused for 6", API.changeSeats, .with {
            $0.subscriptionID = "acme-1"
            $0.newSeats = 6
            $0.idempotencyKey = "acme-seats-1"
        })
        try await r.call("seats to 0", API.changeSeats, .with {
            $0.subscriptionID = "acme-1"
            $0.newSeats = 0
        })
        try await r.call("seats to 12 at renewal, dry run", API.changeSeats, .with {
            $0.subscriptionID = "acme-1"
            $0.newSeats = 12
            $0.timing = .atRenewal
            $0.dryRun = true
        })
        try await r.call("globex seats 3 -> 5", API.changeSeats, .with {
            $0.subscriptionID = "globex-1"
            $0.newSeats = 5
        })

        try await r.call("cancel globex-1 at period end", API.cancelSubscription, .with {
            $0.subscriptionID = "globex-1"
            $0.mode = .endOfPeriod
        })
        try await r.call("resume globex-1", API.resumeSubscription, .with { $0.subscriptionID = "globex-1" })
        try await r.call("cancel acme-1, dry run", API.cancelSubscription, .with {
            $0.subscriptionID = "acme-1"
            $0.dryRun = true
        })
        let cancel = Creditd_V1_CancelSubscriptionRequest.with {
            $0.subscriptionID = "acme-1"
            $0.mode = .immediate
            $0.idempotencyKey = "acme-cancel-1"
        }
        try await r.call("cancel acme-1", API.cancelSubscription, cancel)
        try await r.call("cancel acme-1 replayed", API.cancelSubscription, cancel)
        try await r.call("seats on a cancelled subscription", API.changeSeats, .with {
            $0.subscriptionID = "acme-1"
            $0.newSeats = 3
        })
        try await r.call("resume a cancelled subscription", API.resumeSubscription, .with { $0.subscriptionID = "acme-1" })

        try await r.call("refunds of acme-1 after cancel", API.getRefundStatus, .with { $0.subscriptionID = "acme-1" })
        try await r.call("refunds of an unknown credit", API.getRefundStatus, .with {
            $0.subscriptionID = "acme-1"
            $0.creditID = "no-such-credit"
        })
        try await r.call("invoices of acme-1 after cancel", API.listInvoices, .with { $0.subscriptionID = "acme-1" })

        // Past the final invoice's settlement (05-01): what is left of the
        // credits waits for a refund.
        try await r.call("advance by 20 days", API.advanceClock, .with { $0.byNanos = 20 * 86_400 * 1_000_000_000 })
        let settled = try await r.success("refunds of acme-1 after settlement", API.getRefundStatus, .with {
            $0.subscriptionID = "acme-1"
        })
        guard let refundable = settled.credits.first(where: { $0.state == .refundPending }) else {
            throw InteropMismatch(description: "no refund_pending credit after settlement: \(settled)")
        }
        let outcome = { (result: Creditd_V1_RefundOutcome) in
            Creditd_V1_RecordRefundOutcomeRequest.with {
                $0.subscriptionID = "acme-1"
                $0.creditID = refundable.creditID
                $0.outcome = result
            }
        }
        try await r.call("refund failed", API.recordRefundOutcome, outcome(.failed))
        try await r.call("refund succeeded", API.recordRefundOutcome, outcome(.succeeded))
        try await r.call("late refund report", API.recordRefundOutcome, outcome(.succeeded))
        try await r.call("refund report without an outcome", API.recordRefundOutcome, outcome(.unspecified))
        try await r.call("refund report of an unknown credit", API.recordRefundOutcome, .with {
            $0.subscriptionID = "acme-1"
            $0.creditID = "no-such-credit"
            $0.outcome = .succeeded
        })
        try await r.call("refunds of acme-1 at the end", API.getRefundStatus, .with { $0.subscriptionID = "acme-1" })
        try await r.call("one credit of acme-1", API.getRefundStatus, .with {
            $0.subscriptionID = "acme-1"
            $0.creditID = refundable.creditID
        })
        try await r.call("invoices of acme-1 at the end", API.listInvoices, .with { $0.subscriptionID = "acme-1" })
        try await r.call("invoices of globex-1", API.listInvoices, .with { $0.subscriptionID = "globex-1" })
        try await r.call("list all", API.listSubscriptions, .init())

        // O5, Q1 and E4: an import, the whole book's credits, the event feed.
        let imported = Creditd_V1_ImportSubscriptionRequest.with {
            $0.subscriptionID = "initech-1"
            $0.customer = "initech"
            $0.plan = "team"
            $0.seats = 4
            $0.unitPriceMinor = 2500
            $0.currency = "EUR"
            $0.interval = .monthly
            $0.timeZone = "Europe/Berlin"
            $0.refundPolicy = .anytime
            $0.startDate = "2024-01-31"
            $0.currentPeriodChargedMinor = 9000
            $0.currentPeriodChargedSet = true
        }
        var importDryRun = imported
        importDryRun.dryRun = true
        try await r.call("import initech-1, dry run", API.importSubscription, importDryRun)
        try await r.call("import initech-1", API.importSubscription, imported)
        try await r.call("import initech-1 again", API.importSubscription, imported)
        var importFuture = imported
        importFuture.subscriptionID = "initech-2"
        importFuture.startDate = "2030-01-01"
        try await r.call("import with a start date in the future", API.importSubscription, importFuture)
        let creditsPage = try await r.success("credits, first page", API.listCredits, .with { $0.pageSize = 1 })
        try await r.call("credits, second page", API.listCredits, .with {
            $0.pageSize = 1
            $0.pageToken = creditsPage.nextPageToken
        })
        try await r.call("credits of acme, refund states", API.listCredits, .with {
            $0.customer = "acme"
            $0.states = [.refundPending, .refunded]
        })
        try await r.call("credits with a bad page size", API.listCredits, .with { $0.pageSize = 1001 })
        let feed = try await r.success("events from the start", API.listEvents, .with { $0.limit = 1000 })
        try await r.call("credit events of acme-1", API.listEvents, .with {
            $0.subscriptionID = "acme-1"
            $0.types = [.creditStateChanged]
        })
        try await r.call("events long poll at the end of the feed (1 s)", API.listEvents, .with {
            $0.afterSeq = Int64(feed.lastSeq)
            $0.waitSeconds = 1
        })
        try await r.call("events with limit 1001", API.listEvents, .with { $0.limit = 1001 })

        try await r.call("stats", API.getStats, .init())
        try await r.call("snapshot", API.takeSnapshot, .init())
        try await r.call("stats after the snapshot", API.getStats, .init())
        try await r.call("reload", API.reload, .init())
        try await r.call("metrics", API.getMetrics, .init())
        try await r.call("clock at the end", API.getClock, .init())
        return r.steps
    }

    static func unixNanos(_ rfc3339: String) -> Int64 {
        // The script's instants are literals; a typo is a bug in the test.
        let date = ISO8601DateFormatter().date(from: rfc3339)!
        return Int64(date.timeIntervalSince1970) * 1_000_000_000
    }
}
