import CreditDomain
import CreditProto
import CreditStore
import CreditTestSupport
import Foundation
import Logging
import XCTest

@testable import CreditService

/// Golden state directories: a small journal and a snapshot written by each ledger encoding this
/// build must read, recovered to the exact state.
///
/// `Golden/ledger-v<N>/` was written by the release whose snapshot ledger encoding
/// (`LedgerCodec.formatVersion`) is N, with `script` below: the same operations on the same
/// manual clock, a snapshot after the first half, the rest only in the journal. Every later
/// release keeps reading the previous version (N−1): a change to the ledger encoding bumps the
/// version, keeps its reader, and adds a directory written by
/// `CREDITD_WRITE_GOLDEN=$PWD/Tests/CreditServiceTests/Golden/ledger-vN swift test --filter StateGoldenTests/testWriteGoldenState`.
final class StateGoldenTests: XCTestCase {
    static let start = Instant(rfc3339: "2025-04-01T09:00:00Z")!
    /// The directories and the ledger encoding of their snapshot.
    static let versions: [(directory: String, encoding: UInt32)] = [("ledger-v2", 2), ("ledger-v3", 3), ("ledger-v4", 4)]
    let logger = Logger(label: "golden")

    static var goldenRoot: String {
        URL(fileURLWithPath: #filePath).resolvingSymlinksInPath().deletingLastPathComponent()
            .appendingPathComponent("Golden").path
    }

    static func open(_ directory: String) throws -> CreditApplication {
        try CreditApplication(configuration: ApplicationConfiguration(
            stateDirectory: directory, clockMode: .manual, manualStart: start), logger: Logger(label: "golden"))
    }

    /// Creates, seat changes up and down (credits), an idempotency key, a cancellation, and
    /// time-driven renewals; a snapshot after the first half, the rest in the journal only.
    static func script(_ application: CreditApplication) async throws {
        let writer = application.writer
        _ = try await writer.execute(LedgerWriterTests.create("golden-a", seats: 10), callerUID: 1000)
        _ = try await writer.execute(LedgerWriterTests.create("golden-b", seats: 3), callerUID: 1000)
        var yearly = Creditd_V1_CreateSubscriptionRequest()
        yearly.subscriptionID = "golden-ü"
        yearly.customer = "customer-7"
        yearly.seats = 4
        yearly.unitPriceMinor = 12_345
        yearly.currency = "EUR"
        yearly.interval = .annual
        yearly.timeZone = "Europe/Berlin"
        _ = try await writer.execute(.create(yearly), callerUID: 1001)
        _ = try await writer.advanceClock(to: Instant(rfc3339: "2025-04-11T15:00:00Z")!)
        _ = try await writer.execute(LedgerWriterTests.seats("golden-a", 7, key: "k1"), callerUID: 1000)
        _ = try await writer.execute(LedgerWriterTests.seats("golden-ü", 6), callerUID: 1001)
        _ = try await application.takeSnapshot()
        _ = try await writer.execute(LedgerWriterTests.cancel("golden-b"), callerUID: 1000)
        _ = try await writer.advanceClock(to: Instant(rfc3339: "2025-05-02T00:00:00Z")!)
        _ = try await writer.execute(LedgerWriterTests.seats("golden-a", 4, key: "k2"), callerUID: 1000)
        _ = try await writer.execute(LedgerWriterTests.seats("golden-ü", 2), callerUID: 1001)
    }

    /// The state the script leaves, computed now (journal only, no snapshot involved).
    func expectedLedger() async throws -> Ledger {
        let directory = try makeTemporaryDirectory("golden-expected").path
        let application = try Self.open(directory)
        try await Self.script(application)
        let ledger = try await Self.ledger(application)
        await Self.close(application)
        return ledger
    }

    static func ledger(_ application: CreditApplication) async throws -> Ledger {
        let capture = try await application.writer.captureForSnapshot()
        application.writer.snapshotFinished()
        return capture.ledger
    }

    /// Closes without a final snapshot, so the journal after the snapshot stays as written.
    static func close(_ application: CreditApplication) async {
        await application.writer.close()
        await application.store.close()
    }

    func testRecoversEveryGoldenLedgerEncoding() async throws {
        let expected = try await expectedLedger()
        XCTAssertEqual(expected.subscriptionCount, 3)
        XCTAssertGreaterThan(expected.subscriptions.flatMap(\.credits).count, 1)
        XCTAssertGreaterThan(expected.idempotencyEntryCount, 0)
        XCTAssertGreaterThan(expected.eventCount, 0)
        for (name, encoding) in Self.versions {
            let directory = try makeTemporaryDirectory("golden-\(name)").path
            let source = Self.goldenRoot + "/" + name
            let names = try FileManager.default.contentsOfDirectory(atPath: source).sorted()
            XCTAssertTrue(names.contains { $0.hasSuffix(".snap") }, "\(name): no snapshot")
            XCTAssertTrue(names.contains { $0.hasPrefix("journal-") }, "\(name): no journal")
            for file in names {
                try FileManager.default.copyItem(atPath: source + "/" + file, toPath: directory + "/" + file)
            }

            // The snapshot is written in the encoding the directory is named after.
            let (store, recovery) = try DurableStore.open(directory: directory)
            await store.close()
            let payload = try XCTUnwrap(recovery.snapshot?.payload, name)
            XCTAssertEqual(try payload.withUnsafeBufferPointer { try SnapshotCodec.ledgerFormatVersion(of: $0) }, encoding, name)
            XCTAssertFalse(recovery.records.isEmpty, "\(name): records after the snapshot")
            // creditd verify-state names it.
            let report = try verifyStateDirectory(directory, describePayload: SnapshotCodec.describeLedgerEncoding(of:))
            XCTAssertTrue(report.description.contains("ledger encoding version \(encoding) ("), report.description)

            let application = try Self.open(directory)
            XCTAssertEqual(application.recoveryReport.severity, .info, "\(name): \(application.recoveryReport.messages)")
            let recovered = try await Self.ledger(application)
            XCTAssertEqual(recovered, expected, name)
            XCTAssertEqual(application.writer.clock.now(), Instant(rfc3339: "2025-05-02T00:00:00Z")!, name)
            // A keyed retry answers from the recovered key table.
            let retry = try await application.writer.execute(LedgerWriterTests.seats("golden-a", 4, key: "k2"), callerUID: 1000)
            XCTAssertNoThrow(try retry.outcome.get(), name)
            let afterRetry = try await Self.ledger(application)
            XCTAssertEqual(afterRetry, expected, "\(name): a replayed key changes nothing")
            await Self.close(application)
        }
    }

    /// Writes this build's golden directory into `$CREDITD_WRITE_GOLDEN` (skipped otherwise).
    func testWriteGoldenState() async throws {
        guard let target = ProcessInfo.processInfo.environment["CREDITD_WRITE_GOLDEN"] else {
            throw XCTSkip("set CREDITD_WRITE_GOLDEN to a directory to write a golden state directory")
        }
        let directory = try makeTemporaryDirectory("golden-write").path
        let application = try Self.open(directory)
        try await Self.script(application)
        await Self.close(application)
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) where name != "LOCK" {
            try FileManager.default.copyItem(atPath: directory + "/" + name, toPath: target + "/" + name)
        }
    }
}
