import Foundation
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// A throwaway PostgreSQL cluster for tests: `initdb` in a temporary directory, the server on a
/// Unix socket in that directory only (no TCP, unless started with `tls`), run as an unprivileged user when the tests run
/// as root (PostgreSQL refuses root), stopped and removed at the end.
///
/// ```swift
/// let cluster = try PostgresCluster.startOrSkip()
/// defer { cluster.stop() }
/// let daemon = try DaemonProcess.start(arguments: ["--store", "postgres:" + cluster.connectionInfo])
/// ```
public final class PostgresCluster: @unchecked Sendable {
    public struct Unavailable: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// The temporary directory: `data/` (the cluster), the socket, `server.log`; `tls/` for a
    /// cluster started with `tls`.
    public let directory: String
    public let port: Int
    public let user = "creditd"
    private let binaries: String
    private let runAs: [String]
    /// A cluster that also listens on 127.0.0.1 and takes TCP connections over TLS only.
    public let tls: Bool

    /// The certificate authority that signed the TLS cluster's certificate (for `sslrootcert`),
    /// and another one, which did not.
    public var caCertificatePath: String { directory + "/tls/ca.crt" }
    public var otherCACertificatePath: String { directory + "/tls/other-ca.crt" }

    /// `key=value` connection string over TCP to a `tls` cluster, as `host` (`localhost`, the
    /// name in its certificate, or `127.0.0.1`, which the certificate does not name), with the
    /// extra settings given.
    public func tcpConnectionInfo(host: String = "localhost", _ settings: String = "") -> String {
        "host=\(host) port=\(port) user=\(user) dbname=postgres" + (settings.isEmpty ? "" : " " + settings)
    }

    /// `key=value` connection string for `--store postgres:...`.
    public var connectionInfo: String { "host=\(directory) port=\(port) user=\(user) dbname=postgres" }
    public var dataDirectory: String { directory + "/data" }
    public var logPath: String { directory + "/server.log" }
    public var serverLog: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// The directory holding `initdb`, `pg_ctl` and `postgres`: $PATH (and /usr/local/bin), then
    /// Debian's /usr/lib/postgresql/<version>/bin, newest first.
    public static func findBinaries() -> String? {
        if let initdb = OpsTools.find("initdb"), OpsTools.find("pg_ctl") != nil {
            return (initdb as NSString).deletingLastPathComponent
        }
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [])
            .compactMap(Int.init).sorted(by: >)
        for version in versions {
            let bin = "\(root)/\(version)/bin"
            if FileManager.default.isExecutableFile(atPath: bin + "/initdb") { return bin }
        }
        return nil
    }

    /// Starts a cluster, or skips the test (with the reason) when PostgreSQL is not installed.
    /// CI installs it (scripts/install-deps.sh), so there these tests run.
    /// With `tls`, it also listens on 127.0.0.1 (a free port) with a certificate for
    /// `localhost` alone, and accepts TCP connections over TLS only.
    public static func startOrSkip(tls: Bool = false) throws -> PostgresCluster {
        guard let binaries = findBinaries() else {
            throw XCTSkip("PostgreSQL is not installed (initdb, pg_ctl not found in $PATH or /usr/lib/postgresql/*/bin); "
                          + "scripts/install-deps.sh installs Debian's postgresql")
        }
        if tls, OpsTools.find("openssl") == nil {
            throw XCTSkip("openssl is not installed; scripts/install-deps.sh installs it")
        }
        return try PostgresCluster(binaries: binaries, tls: tls)
    }

    private init(binaries: String, tls: Bool) throws {
        self.binaries = binaries
        self.tls = tls
        port = tls ? try Self.freeTCPPort() : 5432
        directory = try TemporaryDirectory.makePath("pg")
        if getuid() == 0 {
            // nobody owns the cluster; the directory stays reachable for the daemons (root).
            let nobody: UInt32 = 65534
            chown(directory, nobody, nobody)
            runAs = try OpsTools.asUser(uid: nobody, gid: nobody)
        } else {
            runAs = []
        }
        try run([binaries + "/initdb", "-D", dataDirectory, "-U", user, "--auth=trust", "-E", "UTF8",
                 "--no-instructions", "--no-sync"])
        if tls { try makeCertificates() }
        try start()
    }

    /// A CA, a server certificate it signs for `localhost` only, and a second CA;
    /// TCP connections must use TLS (`hostssl` only in pg_hba.conf).
    private func makeCertificates() throws {
        let tlsDirectory = directory + "/tls"
        try FileManager.default.createDirectory(atPath: tlsDirectory, withIntermediateDirectories: true)
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for ca in ["ca", "other-ca"] {
            try run(["openssl", "req", "-x509"] + key + ["-keyout", "\(tlsDirectory)/\(ca).key", "-out",
                     "\(tlsDirectory)/\(ca).crt", "-days", "2", "-subj", "/CN=creditd test \(ca)"], asOwner: false)
        }
        try run(["openssl", "req"] + key + ["-keyout", "\(tlsDirectory)/server.key", "-out", "\(tlsDirectory)/server.csr",
                 "-subj", "/CN=localhost"], asOwner: false)
        try "subjectAltName=DNS:localhost\n".write(toFile: tlsDirectory + "/san.ext", atomically: true, encoding: .utf8)
        try run(["openssl", "x509", "-req", "-in", "\(tlsDirectory)/server.csr", "-CA", "\(tlsDirectory)/ca.crt",
                 "-CAkey", "\(tlsDirectory)/ca.key", "-CAcreateserial", "-out", "\(tlsDirectory)/server.crt", "-days", "2",
                 "-extfile", "\(tlsDirectory)/san.ext"], asOwner: false)
        // The server reads its key only if no one else can.
        chmod(tlsDirectory + "/server.key", 0o600)
        if getuid() == 0 {
            chown(tlsDirectory, 65534, 65534)
            for file in ["server.key", "server.crt"] { chown("\(tlsDirectory)/\(file)", 65534, 65534) }
        }
        try "local all all trust\nhostssl all all 127.0.0.1/32 trust\n"
            .write(toFile: dataDirectory + "/pg_hba.conf", atomically: false, encoding: .utf8)
    }

    /// A port nothing listens on now (the kernel's pick for a socket bound to port 0).
    private static func freeTCPPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Unavailable(description: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw Unavailable(description: "bind: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { stop() }

    /// Starts the server (again) and waits until it accepts connections.
    public func start() throws {
        var options = "-k \(directory) -p \(port) -c max_connections=100 -c fsync=on"
        options += tls ? " -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file=\(directory)/tls/server.crt"
            + " -c ssl_key_file=\(directory)/tls/server.key" : " -c listen_addresses=''"
        try run([binaries + "/pg_ctl", "start", "-w", "-t", "30", "-D", dataDirectory, "-l", logPath, "-o", options])
    }

    /// Stops the server; `immediate` is a crash as far as the database is concerned (recovery
    /// replays its WAL at the next start).
    public func stop(immediate: Bool = false) {
        guard FileManager.default.fileExists(atPath: dataDirectory + "/postmaster.pid") else { return }
        thaw()  // a frozen server would not hear pg_ctl
        _ = try? run([binaries + "/pg_ctl", "stop", "-w", "-t", "30", "-D", dataDirectory, "-m", immediate ? "immediate" : "fast"])
    }

    /// Stops every process of the server (SIGSTOP) without closing anything: the database
    /// host hangs, as a host does that stalls on its disk or is cut off without a reset. Its
    /// connections stay open and accept bytes, new connections wait in the listen queue, and
    /// nothing is answered until `thaw()`.
    public func freeze() { signalServer(SIGSTOP) }

    /// Lets a frozen server run on; it answers what was sent to it meanwhile.
    public func thaw() { signalServer(SIGCONT) }

    /// Sends `signal` to the postmaster (the first line of `postmaster.pid`) and its children.
    private func signalServer(_ signal: Int32) {
        guard let text = try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8),
              let line = text.split(separator: "\n").first, let postmaster = Int32(line) else { return }
        // The postmaster first: once it is stopped it forks no new backend.
        kill(postmaster, signal)
        // Then its children; /proc/PID/stat's fourth field is the parent.
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry),
                  let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, Int32(fields[1]) == postmaster { kill(pid, signal) }
        }
    }

    /// `psql -c` as the cluster's superuser, for checks from outside creditd. Returns stdout.
    @discardableResult
    public func sql(_ statement: String) throws -> String {
        let psql = FileManager.default.isExecutableFile(atPath: binaries + "/psql") ? binaries + "/psql" : (OpsTools.find("psql") ?? "psql")
        return try run([psql, "-h", directory, "-p", String(port), "-U", user, "-d", "postgres", "-At", "-c", statement],
                       asOwner: false)
    }

    /// Runs a command to completion with posix_spawn and waitpid. Not `Process`: Foundation
    /// learns of a child's exit through a descriptor the child inherits, and the server that
    /// `pg_ctl start` leaves behind would inherit it too, so `Process` would wait for the server.
    @discardableResult
    private func run(_ arguments: [String], asOwner: Bool = true) throws -> String {
        // From /, which the unprivileged user can enter.
        let full = (asOwner ? runAs : []) + ["/bin/sh", "-c", "cd / && exec \"$@\"", "sh"] + arguments
        let outputPath = directory + "/command-\(UInt32.random(in: 0...UInt32.max)).out"
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let environment = ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C", "LC_ALL=C"]
        var argv: [UnsafeMutablePointer<CChar>?] = full.map { strdup($0) } + [nil]
        var envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, full[0], &actions, nil, &argv, &envp)
        guard spawned == 0 else {
            throw Unavailable(description: "cannot run \(full[0]): \(String(cString: strerror(spawned)))")
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        // WIFEXITED && WEXITSTATUS == 0
        guard status & 0x7f == 0, (status >> 8) & 0xff == 0 else {
            throw Unavailable(description: "\(arguments.joined(separator: " ")) failed (status \(status)):\n\(text)\n\(serverLog)")
        }
        return text
    }
}
