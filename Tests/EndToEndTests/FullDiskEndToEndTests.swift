import CreditClient
import CreditProto
import CreditTestSupport
import CreditWire
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Issue 11, gap 1, against the real daemon: a write answered UNAVAILABLE must not come back
/// after a restart. The state directory is on a small tmpfs that is filled up; then waves of 16
/// clients create subscriptions at once until the disk refuses some
/// (Tests/Fixtures/faultinject/full-tmpfs.sh is the manual form).
final class FullDiskEndToEndTests: XCTestCase {
    static let arguments = ["--clock", "manual", "--now", "2025-04-01T09:00:00Z"]
    static let notApplied = "persistence_not_applied"
    static let outcomeUnknown = "persistence_outcome_unknown"

    func testWritesAnsweredUnavailableDoNotComeBackAfterARestart() async throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to mount a tmpfs for the state directory") }
        let directory = try DaemonProcess.makeTemporaryDirectory()
        let mountPoint = directory.appendingPathComponent("tmpfs").path
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mount = try run("/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", mountPoint])
        guard mount == 0 else { throw XCTSkip("cannot mount a tmpfs at \(mountPoint) (exit \(mount))") }
        defer { _ = try? run("/bin/umount", ["-l", mountPoint]) }
        let stateDirectory = mountPoint + "/state"
        let arguments = Self.arguments + ["--state-dir", stateDirectory]

        let daemon = try DaemonProcess.start(arguments: arguments, directory: directory)
        let client = try await CreditClient.connect(socketPath: daemon.socketPath)
        for index in 1...5 { _ = try await client.createSubscription(PersistenceFaultTests.create("pre-\(index)")) }
        try fillFileSystem(mountPoint + "/filler")

        // A snapshot the full disk refuses is counted where operators look, with its reason.
        do {
            _ = try await client.takeSnapshot()
            XCTFail("a snapshot was written onto a full disk")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .unavailable, "\(error)")
        }
        let afterSnapshot = try await client.getStats().persistence
        XCTAssertEqual(afterSnapshot.snapshotFailures, 1)
        XCTAssertTrue(afterSnapshot.lastSnapshotError.contains("No space left on device"), afterSnapshot.lastSnapshotError)
        let stats = try CreditctlProcess.run(["stats", "-s", daemon.socketPath])
        XCTAssertTrue(stats.stdout.contains("snapshot failures"), stats.stdout)
        let metrics = try CreditctlProcess.run(["metrics", "-s", daemon.socketPath])
        XCTAssertTrue(metrics.stdout.contains("creditd_snapshot_failures_total 1\n"), metrics.stdout)

        // Waves of 16 creates at once, each on its own connection, until the disk refuses one.
        // The first waves go into the zeros the journal wrote ahead of its records (and the
        // slack of its last page); the wave that runs past them only partly fits, and the
        // complete records written before the failure are what used to come back.
        var clients: [CreditClient] = []
        for _ in 0..<16 { clients.append(try await CreditClient.connect(socketPath: daemon.socketPath)) }
        var acknowledged: Set<String> = []
        var notApplied: Set<String> = []
        var outcomeUnknown: Set<String> = []
        for wave in 0..<3_000 where notApplied.isEmpty && outcomeUnknown.isEmpty {
            let answers = await withTaskGroup(of: (String, Result<Void, any Error>).self) { group in
                for (index, connection) in clients.enumerated() {
                    let id = "sub-\(wave)-\(index + 1)"
                    group.addTask {
                        do {
                            _ = try await connection.createSubscription(PersistenceFaultTests.create(id))
                            return (id, .success(()))
                        } catch {
                            return (id, .failure(error))
                        }
                    }
                }
                var answers: [String: Result<Void, any Error>] = [:]
                for await (id, result) in group { answers[id] = result }
                return answers
            }
            for (id, answer) in answers {
                switch answer {
                case .success:
                    acknowledged.insert(id)
                case .failure(let error):
                    guard let error = error as? RPCError else {
                        XCTFail("\(id): \(error)")
                        continue
                    }
                    XCTAssertEqual(error.code, .unavailable, "\(id): \(error)")
                    switch error.reason {
                    case Self.notApplied: notApplied.insert(id)
                    case Self.outcomeUnknown: outcomeUnknown.insert(id)
                    default: XCTFail("\(id): reason \(error.reason ?? "none") in \(error)")
                    }
                }
            }
        }
        for connection in clients { await connection.close() }
        XCTAssertFalse(notApplied.isEmpty && outcomeUnknown.isEmpty, "the full file system failed no write")

        // Reads during the fault show none of the refused writes.
        var get = Creditd_V1_GetSubscriptionRequest()
        for id in notApplied.union(outcomeUnknown) {
            get.subscriptionID = id
            do {
                _ = try await client.getSubscription(get)
                XCTFail("\(id) was answered UNAVAILABLE but is visible during the fault")
            } catch let error as RPCError {
                XCTAssertEqual(error.code, .notFound, "\(id): \(error)")
            }
        }
        await client.close()
        daemon.kill()

        // Space again, and a restart: nothing answered persistence_not_applied exists, every
        // acknowledged write does.
        try FileManager.default.removeItem(atPath: mountPoint + "/filler")
        let restarted = try DaemonProcess.start(arguments: arguments, directory: directory)
        let again = try await CreditClient.connect(socketPath: restarted.socketPath)
        var present: Set<String> = []
        for id in acknowledged.union(notApplied).union(outcomeUnknown) {
            get.subscriptionID = id
            if (try? await again.getSubscription(get)) != nil { present.insert(id) }
        }
        XCTAssertTrue(present.isDisjoint(with: notApplied), "not applied, yet present: \(present.intersection(notApplied).sorted())")
        XCTAssertTrue(acknowledged.isSubset(of: present), "acknowledged, yet absent: \(acknowledged.subtracting(present).sorted())")
        print("full tmpfs: \(acknowledged.count) acknowledged, \(notApplied.count) not applied, "
              + "\(outcomeUnknown.count) outcome unknown; \(present.count) present after the restart")
        await again.close()
        XCTAssertEqual(try restarted.stop(), 0, restarted.stderr)
    }

    /// Writes zeros to `path` until the file system is full.
    private func fillFileSystem(_ path: String) throws {
        let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(descriptor) }
        let page = [UInt8](repeating: 0, count: 4_096)
        while page.withUnsafeBytes({ write(descriptor, $0.baseAddress, $0.count) }) > 0 {}
        // The last partial page, byte by byte.
        while page.withUnsafeBytes({ write(descriptor, $0.baseAddress, 1) }) > 0 {}
    }

    private func run(_ executable: String, _ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }
}
