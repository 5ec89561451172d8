import CreditClient
import CreditProto
import CreditTestSupport
import CreditWire
import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// Several creditd hosts on one PostgreSQL database: exactly one active writer, fenced by its
/// lease epoch; standbys replay and take over. Each failure runs under write load, and every
/// write a host acknowledged is read back afterwards from the host that is active then.
///
/// Needs PostgreSQL's server binaries (skipped with a message when they are missing; CI has them).
final class PostgresFailoverTests: XCTestCase {
    /// One acknowledged write: the subscription it created and the host that said yes.
    struct Acknowledged: Sendable {
        var id: String
        var host: Int
        var sentAt: ContinuousClock.Instant
    }

    /// What the writers saw.
    struct Load: Sendable {
        var acknowledged: [Acknowledged] = []
        var unavailable = 0
        var notActive = 0
    }

    // MARK: the failures

    func testKillNineOfTheActiveHostFailsOverWithinFiveSecondsLosingNothing() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let hosts = try startHosts(2, cluster: cluster)  // the default lease
        let active = try await waitForOneActive(hosts)
        let standby = 1 - active

        let failover = LockedBox<Duration?>(nil)
        let survivor = hosts[standby]
        let load = await writeLoad(hosts: hosts, writers: 8, duration: .seconds(9)) {
            try? await Task.sleep(for: .seconds(2))
            await Self.offThePool { hosts[active].kill() }
            let killedAt = ContinuousClock.now
            while ContinuousClock.now - killedAt < .seconds(10) {
                if (try? await Self.role(of: survivor)) == "active" {
                    failover.set(ContinuousClock.now - killedAt)
                    return
                }
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        let tookOver = try XCTUnwrap(failover.get(), "the standby did not take over within 10 s:\n\(survivor.stderr.suffix(4000))")
        XCTAssertLessThan(tookOver, .seconds(5), "the standby took over \(tookOver) after kill -9 (default lease)")
        XCTAssertGreaterThan(load.acknowledged.count, 50, "the writers made progress")
        XCTAssertTrue(load.acknowledged.contains { $0.host == standby }, "writes went on on the new active host")
        try await assertAllPresent(load.acknowledged, on: hosts[standby])
        print("kill -9: failover in \(tookOver), \(load.acknowledged.count) acknowledged writes, 0 lost")
    }

    func testStoppedActiveHostIsFencedAfterItsLeaseAndStepsDown() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let hosts = try startHosts(2, cluster: cluster, lease: 1)
        let active = try await waitForOneActive(hosts)
        let standby = 1 - active

        let continuedAt = LockedBox<ContinuousClock.Instant?>(nil)
        let load = await writeLoad(hosts: hosts, writers: 6, duration: .seconds(7)) {
            try? await Task.sleep(for: .seconds(1))
            kill(hosts[active].pid, SIGSTOP)
            // Well past the lease: the standby takes over meanwhile.
            try? await Task.sleep(for: .seconds(3))
            continuedAt.set(.now)
            kill(hosts[active].pid, SIGCONT)
        }
        // The old active host's next write is refused: it names the new active host.
        let client = try await CreditClient.connect(socketPath: hosts[active].socketPath, timeout: .seconds(5))
        do {
            _ = try await client.createSubscription(Self.createRequest("after-sigcont"), timeout: .seconds(5))
            XCTFail("the fenced host acknowledged a write after losing its lease")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .unavailable, "\(error)")
            XCTAssertEqual(error.reason, "not_active", "\(error)")
        }
        await client.close()
        _ = try await waitForRole("standby", of: hosts[active], timeout: .seconds(5))
        _ = try await waitForRole("active", of: hosts[standby], timeout: .seconds(5))

        // None of the old host's writes sent after it lost the lease were acknowledged.
        let resumed = try XCTUnwrap(continuedAt.get())
        let late = load.acknowledged.filter { $0.host == active && $0.sentAt > resumed }
        XCTAssertEqual(late.map(\.id), [], "writes acknowledged by the fenced host after SIGCONT")
        XCTAssertTrue(load.acknowledged.contains { $0.host == standby }, "the new active host took writes")
        try await assertAllPresent(load.acknowledged, on: hosts[standby])
        try await assertAllPresent(load.acknowledged, on: hosts[active])  // it replays as standby
        print("SIGSTOP: \(load.acknowledged.count) acknowledged writes, 0 lost, \(load.notActive) refused as not_active")
    }

    func testDatabaseRestartUnderLoadRefusesWritesThenResumesLosingNothing() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let hosts = try startHosts(1, cluster: cluster, lease: 2)
        _ = try await waitForOneActive(hosts)

        let restartedAt = LockedBox<ContinuousClock.Instant?>(nil)
        let load = await writeLoad(hosts: hosts, writers: 6, duration: .seconds(10)) {
            try? await Task.sleep(for: .seconds(2))
            await Self.offThePool { cluster.stop(immediate: true) }  // a crash, as far as the database knows
            try? await Task.sleep(for: .seconds(2))
            await Self.offThePool { try? cluster.start() }
            restartedAt.set(.now)
        }
        XCTAssertGreaterThan(load.unavailable, 0, "writes were refused UNAVAILABLE while the database was down:\n\(hosts[0].stderr.suffix(6000))")
        let back = try XCTUnwrap(restartedAt.get())
        XCTAssertTrue(load.acknowledged.contains { $0.sentAt > back },
                      "service resumed by itself after the restart:\n\(hosts[0].stderr.suffix(6000))")
        try await assertAllPresent(load.acknowledged, on: hosts[0])
        print("database restart: \(load.acknowledged.count) acknowledged, \(load.unavailable) refused while down, 0 lost")
    }

    func testAppendHeldInTheDatabaseIsAnsweredWithinALeaseThenServiceResumes() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let (hosts, client) = try await startOneActiveHost(cluster, firstWrite: "before-lock")

        // Another session holds the journal locked for 8 s: the append's statement waits in the
        // database, and nothing else would end that wait.
        let lockReleased = Self.inAnotherSession(cluster, lockingFor: 8, "creditd_journal")
        try await Task.sleep(for: .seconds(1))
        let sent = ContinuousClock.now
        do {
            _ = try await client.createSubscription(Self.createRequest("during-lock"), timeout: .seconds(20))
            XCTFail("a write acknowledged while the journal was locked")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .unavailable, "\(error)")
        }
        let answeredAfter = ContinuousClock.now - sent
        XCTAssertLessThan(answeredAfter, .seconds(5), "the held append was answered after \(answeredAfter) (lease 2 s)")
        while !lockReleased.get() { try await Task.sleep(for: .milliseconds(100)) }
        await client.close()

        // Once the lock is gone the host is active again by itself and takes writes.
        _ = try await waitForRole("active", of: hosts[0], timeout: .seconds(15))
        let again = try await CreditClient.connect(socketPath: hosts[0].socketPath, timeout: .seconds(5))
        _ = try await again.createSubscription(Self.createRequest("after-lock"), timeout: .seconds(10))
        await again.close()
        print("journal locked: the held append was answered UNAVAILABLE after \(answeredAfter)")
    }

    func testSnapshotHeldInTheDatabaseDoesNotHoldUpTheHostsOwnAppends() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let (hosts, client) = try await startOneActiveHost(cluster, firstWrite: "before-snapshot")

        // Another session holds the snapshot tables for 6 s (three leases): the snapshot's
        // transaction, which has checked and locked the lease row, waits there as a large
        // upload would.
        let lockReleased = Self.inAnotherSession(cluster, lockingFor: 6, "creditd_snapshot, creditd_snapshot_chunk")
        try await Task.sleep(for: .seconds(1))
        let snapshotter = try await CreditClient.connect(socketPath: hosts[0].socketPath, timeout: .seconds(5))
        async let snapshot = snapshotter.takeSnapshot(timeout: .seconds(30))
        try await Task.sleep(for: .milliseconds(500))

        // Meanwhile the host's own writes commit, each well within a lease, and it stays active.
        for index in 0..<8 {
            let sent = ContinuousClock.now
            _ = try await client.createSubscription(Self.createRequest("during-snapshot-\(index)"), timeout: .seconds(10))
            let took = ContinuousClock.now - sent
            XCTAssertLessThan(took, .seconds(1), "write \(index) waited \(took) for the snapshot (lease 2 s)")
            try await Task.sleep(for: .milliseconds(400))
        }
        XCTAssertFalse(lockReleased.get(), "the writes ran while the snapshot was held")
        let taken = try await snapshot
        XCTAssertGreaterThan(taken.sequence, 0)
        await snapshotter.close()
        await client.close()
        print("snapshot held 6 s: 8 writes committed meanwhile, then snapshot \(taken.sequence)")
    }

    func testDatabaseThatStopsAnsweringRefusesWritesWithinALeaseThenServiceResumes() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let (hosts, client) = try await startOneActiveHost(cluster, firstWrite: "before-freeze")

        // The database hangs without closing anything (no reset, no error): every statement
        // and connect of the host's waits, and only its own limits end the waits.
        cluster.freeze()
        let sent = ContinuousClock.now
        do {
            _ = try await client.createSubscription(Self.createRequest("during-freeze"), timeout: .seconds(20))
            XCTFail("a write acknowledged while the database answered nothing")
        } catch let error as RPCError {
            XCTAssertEqual(error.code, .unavailable, "\(error)")
        }
        let answeredAfter = ContinuousClock.now - sent
        XCTAssertLessThan(answeredAfter, .seconds(5), "the write was answered after \(answeredAfter) (lease 2 s)")

        // Reads are answered from memory meanwhile, and the host stands by.
        var read = Creditd_V1_GetSubscriptionRequest()
        read.subscriptionID = "before-freeze"
        _ = try await client.getSubscription(read, timeout: .seconds(2))
        _ = try await waitForRole("standby", of: hosts[0], timeout: .seconds(10))
        await client.close()

        // Once the database answers again (the statements sent meanwhile included), the host
        // is active again by itself, with every acknowledged write.
        cluster.thaw()
        _ = try await waitForRole("active", of: hosts[0], timeout: .seconds(15))
        try await assertAllPresent([Acknowledged(id: "before-freeze", host: 0, sentAt: .now)], on: hosts[0])
        let again = try await CreditClient.connect(socketPath: hosts[0].socketPath, timeout: .seconds(5))
        _ = try await again.createSubscription(Self.createRequest("after-thaw"), timeout: .seconds(10))
        await again.close()
        print("database frozen: the write was answered UNAVAILABLE after \(answeredAfter)")
    }

    func testDatabaseFrozenUnderLoadWithTwoHostsLosesNothingAndOneIsActiveAfter() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let hosts = try startHosts(2, cluster: cluster, lease: 1)
        _ = try await waitForOneActive(hosts)

        // Three leases of silence: the active host's renewals and appends, and the standby's
        // takeover, all wait; what they sent meanwhile is answered after the thaw, in some
        // order. Whatever commits then, no acknowledged write may be lost, and one host leads.
        let thawedAt = LockedBox<ContinuousClock.Instant?>(nil)
        let load = await writeLoad(hosts: hosts, writers: 6, duration: .seconds(10)) {
            try? await Task.sleep(for: .seconds(2))
            cluster.freeze()
            try? await Task.sleep(for: .seconds(3))
            cluster.thaw()
            thawedAt.set(.now)
        }
        XCTAssertGreaterThan(load.unavailable, 0, "writes were refused while the database was frozen")
        let thawed = try XCTUnwrap(thawedAt.get())
        XCTAssertTrue(load.acknowledged.contains { $0.sentAt > thawed },
                      "service resumed after the thaw:\n\(hosts.map { $0.stderr.suffix(3000) }.joined(separator: "\n---\n"))")
        let active = try await waitForOneActive(hosts)
        try await assertAllPresent(load.acknowledged, on: hosts[active])
        try await assertAllPresent(load.acknowledged, on: hosts[1 - active])
        print("database frozen 3 s under load: \(load.acknowledged.count) acknowledged, \(load.unavailable) refused, 0 lost")
    }

    func testActiveHostStoppedJustAfterTheDatabaseHangsStopsWithinSeconds() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let (hosts, client) = try await startOneActiveHost(cluster, firstWrite: "before-freeze")
        await client.close()

        // Still active when SIGTERM comes: the final snapshot and the lease's release find no
        // database, each within its limit, and the exit is clean (the journal in the database
        // holds every acknowledged change).
        cluster.freeze()
        let stopping = ContinuousClock.now
        let status = try hosts[0].stop(timeout: 90)
        let stopTook = ContinuousClock.now - stopping
        XCTAssertEqual(status, 0, hosts[0].stderr.suffix(4000).description)
        XCTAssertLessThan(stopTook, .seconds(15), "the host took \(stopTook) to stop:\n\(hosts[0].stderr.suffix(4000))")
        XCTAssertTrue(hosts[0].stderr.contains("final snapshot failed"), hosts[0].stderr.suffix(4000).description)

        cluster.thaw()
        let next = try startHosts(1, cluster: cluster, lease: 2)
        _ = try await waitForOneActive(next)
        try await assertAllPresent([Acknowledged(id: "before-freeze", host: 0, sentAt: .now)], on: next[0])
        print("database frozen under an active host: SIGTERM took \(stopTook)")
    }

    /// Another session holds the lease row FOR UPDATE: every step that needs the row waits on the
    /// server, and gives up there within a lease (`lock_timeout`), not only on creditd's side.
    /// Steps given up only on creditd's side left their backends waiting, one more per retry,
    /// until the server refused every client; and the final snapshot waited its whole two
    /// minutes, so SIGTERM took that long.
    func testLeaseRowLockedElsewhereLeavesNoWaitingBackendsAndStopsWithinSeconds() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let (hosts, client) = try await startOneActiveHost(cluster, firstWrite: "before-lock")
        await client.close()
        func lockLeaseRow(for seconds: Int) -> LockedBox<Bool> {
            let released = LockedBox(false)
            Thread.detachNewThread {
                _ = try? cluster.sql("BEGIN; SELECT * FROM creditd_leader FOR UPDATE; SELECT pg_sleep(\(seconds)); COMMIT;")
                released.set(true)
            }
            return released
        }
        var released = lockLeaseRow(for: 18)
        try await Task.sleep(for: .seconds(15))  // seven leases of retries
        let waiting = try cluster.sql("""
            SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query NOT LIKE '%pg_stat_activity%'
            """).trimmingCharacters(in: .whitespacesAndNewlines)
        XCTAssertLessThanOrEqual(Int(waiting) ?? 99, 2, "backends waiting for a lock: \(waiting)")
        while !released.get() { try await Task.sleep(for: .milliseconds(100)) }

        // Active again; the row locked once more, and SIGTERM at once, while the host still
        // holds its lease and so writes a final snapshot.
        _ = try await waitForRole("active", of: hosts[0], timeout: .seconds(15))
        released = lockLeaseRow(for: 30)
        try await Task.sleep(for: .milliseconds(300))
        let stopping = ContinuousClock.now
        let status = try hosts[0].stop(timeout: 150)
        let stopTook = ContinuousClock.now - stopping
        XCTAssertEqual(status, 0, hosts[0].stderr.suffix(4000).description)
        XCTAssertLessThan(stopTook, .seconds(15), "the host took \(stopTook) to stop:\n\(hosts[0].stderr.suffix(4000))")
        while !released.get() { try await Task.sleep(for: .milliseconds(100)) }
        print("lease row locked elsewhere: \(waiting) backends waiting after 15 s; SIGTERM took \(stopTook)")
    }

    /// A standby's lag says how stale its reads may be: it grows while the standby cannot read
    /// the journal (it reported 0 while the active host wrote on), and it is 0 once a catch-up
    /// finds nothing new (it used to keep the last catch-up's until the next write came).
    func testStandbyLagGrowsWhileItCannotReadAndClearsOnceCurrent() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let hosts = try startHosts(2, cluster: cluster, lease: 2)
        let active = try await waitForOneActive(hosts)
        let standby = hosts[1 - active]
        func lag() async throws -> Double {
            let client = try await CreditClient.connect(socketPath: standby.socketPath, timeout: .seconds(2))
            defer { Task { await client.close() } }
            let text = try await client.getMetrics(timeout: .seconds(2)).prometheusText
            let line = text.split(separator: "\n").first { $0.hasPrefix("creditd_replication_lag_seconds ") }
            return Double(line?.split(separator: " ").last ?? "") ?? -1
        }
        let client = try await CreditClient.connect(socketPath: hosts[active].socketPath, timeout: .seconds(5))
        for index in 0..<20 { _ = try await client.createSubscription(Self.createRequest("lag-\(index)"), timeout: .seconds(5)) }
        await client.close()
        try await Task.sleep(for: .seconds(1))
        let current = try await lag()
        XCTAssertEqual(current, 0, "caught up and nothing new: no lag")

        cluster.freeze()
        try await Task.sleep(for: .seconds(3))
        let whileFrozen = try await lag()
        cluster.thaw()
        XCTAssertGreaterThan(whileFrozen, 2, "three seconds without reading the journal")
        var after = try await lag()
        let end = ContinuousClock.now + .seconds(15)
        while after != 0, ContinuousClock.now < end {
            try await Task.sleep(for: .milliseconds(200))
            after = try await lag()
        }
        XCTAssertEqual(after, 0, "current again once it reads the journal")
        print("standby lag: 0 when current, \(whileFrozen) s after 3 s frozen, 0 again after")
    }

    func testTwoHostsStartedAtOnceElectExactlyOneActive() async throws {
        let cluster = try PostgresCluster.startOrSkip()
        defer { cluster.stop() }
        let hosts = try startHosts(2, cluster: cluster, lease: 2, waitEach: false)
        for host in hosts { try host.waitUntilServing(timeout: 30) }
        _ = try await waitForOneActive(hosts)
        // And it stays that way.
        try await Task.sleep(for: .seconds(3))
        let roles = try await hosts.asyncMap { try await Self.role(of: $0) }
        XCTAssertEqual(roles.filter { $0 == "active" }.count, 1, "roles: \(roles)")
        XCTAssertEqual(roles.filter { $0 == "standby" }.count, 1, "roles: \(roles)")

        // A write to the standby is refused naming the host writes go to, although this standby
        // was never demoted (it started as one).
        let standby = hosts[roles.firstIndex(of: "standby")!]
        let client = try await CreditClient.connect(socketPath: standby.socketPath, timeout: .seconds(5))
        do {
            _ = try await client.createSubscription(Self.createRequest("to-the-standby"), timeout: .seconds(5))
            XCTFail("a standby acknowledged a write")
        } catch let error as RPCError {
            XCTAssertEqual(error.reason, "not_active", "\(error)")
            XCTAssertTrue(error.message.contains("writes go to "), "\(error)")
        }
        await client.close()

        // The monitoring check names each host's part, with epoch and lag as perfdata.
        for (host, role) in zip(hosts, roles) {
            let check = try CreditctlProcess.run(["check", "-s", host.socketPath])
            XCTAssertEqual(check.status, 0, check.stdout)
            XCTAssertTrue(check.stdout.contains(", \(role) (epoch "), check.stdout)
            XCTAssertTrue(check.stdout.contains("'replication_lag'="), check.stdout)
        }
    }

    // MARK: helpers

    private func startHosts(_ count: Int, cluster: PostgresCluster, lease: Double? = nil,
                            waitEach: Bool = true) throws -> [DaemonProcess] {
        var arguments = ["--store", "postgres:" + cluster.connectionInfo, "--snapshot-every-records", "500"]
        if let lease { arguments += ["--store-lease-seconds", String(lease)] }
        var hosts: [DaemonProcess] = []
        for _ in 0..<count {
            hosts.append(try DaemonProcess.start(arguments: arguments, waitUntilServing: waitEach, timeout: 30))
        }
        return hosts
    }

    /// Runs blocking work (pg_ctl waits) on a thread of its own, so the writers' tasks keep the
    /// concurrency pool's few threads.
    static func offThePool(_ work: @escaping @Sendable () -> Void) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread.detachNewThread {
                work()
                continuation.resume()
            }
        }
    }

    /// One host with a 2 s lease, active, and a client that has written `firstWrite` through it.
    private func startOneActiveHost(_ cluster: PostgresCluster, firstWrite: String) async throws -> ([DaemonProcess], CreditClient) {
        let hosts = try startHosts(1, cluster: cluster, lease: 2)
        _ = try await waitForOneActive(hosts)
        let client = try await CreditClient.connect(socketPath: hosts[0].socketPath, timeout: .seconds(5))
        _ = try await client.createSubscription(Self.createRequest(firstWrite), timeout: .seconds(5))
        return (hosts, client)
    }

    /// Locks `tables` in a session of its own for `seconds`, on a thread of its own (the call
    /// blocks that long); the box turns true once the lock is gone.
    static func inAnotherSession(_ cluster: PostgresCluster, lockingFor seconds: Int, _ tables: String) -> LockedBox<Bool> {
        let released = LockedBox(false)
        Thread.detachNewThread {
            _ = try? cluster.sql("BEGIN; LOCK TABLE \(tables) IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(\(seconds)); COMMIT;")
            released.set(true)
        }
        return released
    }

    static func createRequest(_ id: String) -> Creditd_V1_CreateSubscriptionRequest {
        var request = Creditd_V1_CreateSubscriptionRequest()
        request.subscriptionID = id
        request.seats = 3
        request.unitPriceMinor = 1200
        request.currency = "EUR"
        request.interval = .monthly
        request.timeZone = "Europe/Oslo"
        return request
    }

    /// The `role` label set to 1 in the host's metrics.
    static func role(of host: DaemonProcess) async throws -> String {
        let client = try await CreditClient.connect(socketPath: host.socketPath, timeout: .seconds(2))
        defer { Task { await client.close() } }
        let text = try await client.getMetrics(timeout: .seconds(2)).prometheusText
        for line in text.split(separator: "\n") where line.hasPrefix("creditd_replication_role{") && line.hasSuffix(" 1") {
            if let start = line.range(of: "role=\""), let end = line[start.upperBound...].firstIndex(of: "\"") {
                return String(line[start.upperBound..<end])
            }
        }
        return "unknown"
    }

    /// Waits until exactly one host is active; returns its index.
    private func waitForOneActive(_ hosts: [DaemonProcess], timeout: Duration = .seconds(15)) async throws -> Int {
        let end = ContinuousClock.now + timeout
        var roles: [String] = []
        while ContinuousClock.now < end {
            roles = []
            for host in hosts { roles.append((try? await Self.role(of: host)) ?? "unreachable") }
            let active = roles.indices.filter { roles[$0] == "active" }
            XCTAssertLessThanOrEqual(active.count, 1, "two active hosts at once: \(roles)")
            if active.count == 1 { return active[0] }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw PostgresCluster.Unavailable(
            description: "no host became active within \(timeout): \(roles)\n\(hosts.map(\.stderr).joined(separator: "\n---\n"))")
    }

    /// Waits until `host` reports `role`; returns when it first did.
    private func waitForRole(_ role: String, of host: DaemonProcess, timeout: Duration) async throws -> ContinuousClock.Instant {
        let end = ContinuousClock.now + timeout
        var last = ""
        while ContinuousClock.now < end {
            last = (try? await Self.role(of: host)) ?? "unreachable"
            if last == role { return .now }
            try await Task.sleep(for: .milliseconds(20))
        }
        XCTFail("host did not become \(role) within \(timeout) (it is \(last)):\n\(host.stderr)")
        return .now
    }

    /// `writers` clients creating subscriptions for `duration`, each on the host that last said
    /// yes, moving on to the next host on UNAVAILABLE or a broken connection. `during` runs
    /// beside them (the failure to inject).
    private func writeLoad(hosts: [DaemonProcess], writers: Int, duration: Duration,
                           during: @escaping @Sendable () async -> Void) async -> Load {
        let sockets = hosts.map(\.socketPath)
        let end = ContinuousClock.now + duration
        return await withTaskGroup(of: Load.self) { group in
            for writer in 0..<writers {
                group.addTask { await Self.write(sockets: sockets, writer: writer, until: end) }
            }
            group.addTask { await during(); return Load() }
            var total = Load()
            for await load in group {
                total.acknowledged += load.acknowledged
                total.unavailable += load.unavailable
                total.notActive += load.notActive
            }
            return total
        }
    }

    private static func write(sockets: [String], writer: Int, until end: ContinuousClock.Instant) async -> Load {
        var load = Load()
        var host = writer % sockets.count
        var client: CreditClient?
        var step = 0
        while ContinuousClock.now < end {
            step += 1
            do {
                if client == nil {
                    client = try await CreditClient.connect(socketPath: sockets[host], timeout: .seconds(1))
                }
                let id = "w\(writer)-\(step)"
                let sentAt = ContinuousClock.now
                _ = try await client!.createSubscription(createRequest(id), timeout: .seconds(2))
                load.acknowledged.append(Acknowledged(id: id, host: host, sentAt: sentAt))
            } catch {
                if let error = error as? RPCError, error.code == .unavailable {
                    load.unavailable += 1
                    if error.reason == "not_active" { load.notActive += 1 }
                }
                if let old = client { await old.close() }
                client = nil
                host = (host + 1) % sockets.count
                try? await Task.sleep(for: .milliseconds(20))
            }
        }
        if let client { await client.close() }
        return load
    }

    /// Every acknowledged subscription can be read back from `host` (after it caught up).
    private func assertAllPresent(_ acknowledged: [Acknowledged], on host: DaemonProcess) async throws {
        let client = try await CreditClient.connect(socketPath: host.socketPath, timeout: .seconds(5))
        defer { Task { await client.close() } }
        var missing: [String] = []
        let end = ContinuousClock.now + .seconds(10)
        for write in acknowledged {
            var request = Creditd_V1_GetSubscriptionRequest()
            request.subscriptionID = write.id
            while true {
                if (try? await client.getSubscription(request, timeout: .seconds(2))) != nil { break }
                // A standby may still be replaying the last records: give it a moment.
                if ContinuousClock.now > end {
                    missing.append(write.id)
                    break
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        XCTAssertEqual(missing, [], "acknowledged writes missing on the host:\n\(host.stderr.suffix(4000))")
    }
}

/// A value shared between the load's tasks and the test.
final class LockedBox<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func get() -> Value { lock.withLock { value } }
    func set(_ newValue: Value) { lock.withLock { value = newValue } }
    func update(_ body: (inout Value) -> Void) { lock.withLock { body(&value) } }
}

extension Array where Element: Sendable {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var result: [T] = []
        for element in self { result.append(try await transform(element)) }
        return result
    }
}
