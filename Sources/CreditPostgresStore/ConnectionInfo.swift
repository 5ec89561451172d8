import Foundation
import NIOSSL
import PostgresNIO

/// A libpq-style connection string, in either of its two forms: `key=value` pairs
/// (`host=/run/postgresql dbname=creditd user=creditd`) or a URI
/// (`postgresql://creditd:secret@db.example:5432/creditd`). A `host` that starts with `/` is a
/// directory holding the server's Unix socket (`.s.PGSQL.<port>`), as in libpq. Over TCP,
/// `sslmode` and `sslrootcert` choose TLS and how the server's certificate is checked, as in
/// libpq (its `prefer` by default); the URI takes them as query items.
public struct PostgresConnectionInfo: Sendable, Equatable, CustomStringConvertible {
    // Set only by parsing: the TLS context is made from `host`, `sslMode` and `sslRootCert`
    // then, and a later change to one of them would connect with the old context.
    public private(set) var host: String
    public private(set) var port: Int
    public private(set) var user: String
    public private(set) var password: String?
    public private(set) var database: String?
    /// Whether and how a TCP connection uses TLS (libpq's `sslmode`; a Unix socket never does).
    public private(set) var sslMode: SSLMode
    /// `sslrootcert`: a PEM file of the certificate authorities the server's certificate must
    /// chain to, or `system` for the operating system's.
    public private(set) var sslRootCert: String?
    /// The sessions' `lock_timeout` on the server, when set (the store sets its lease). Every
    /// step is bounded on creditd's side too, but a step given up on there (its connection
    /// closed) kept waiting on the server: behind a lease row some other session held locked,
    /// each retry left one more backend waiting, until the server refused every client.
    public var lockTimeout: Duration?
    /// Made once from `sslMode` and `sslRootCert` when they are parsed, so that a CA file that
    /// cannot be read stops the start rather than every connection attempt.
    private var tlsContext: NIOSSLContext?

    /// libpq's `sslmode` values, but `allow` (plain text first), which postgres-nio cannot do.
    public enum SSLMode: String, Sendable, CaseIterable {
        /// Plain text.
        case disable
        /// TLS when the server offers it, without checking its certificate unless `sslrootcert`
        /// is given (libpq's default).
        case prefer
        /// TLS or no connection; the certificate is not checked (unless `sslrootcert` is
        /// given: then as `verify-ca`, as in libpq).
        case require
        /// TLS with a certificate that chains to `sslrootcert`, for any host name.
        case verifyCA = "verify-ca"
        /// `verify-ca`, and the certificate names the host connected to (or its IP address).
        case verifyFull = "verify-full"
    }

    public enum ParseError: Error, CustomStringConvertible {
        case malformed(String)
        public var description: String {
            switch self {
            case .malformed(let text): "malformed PostgreSQL connection string: \(text)"
            }
        }
    }

    static let keys = ["host", "port", "user", "password", "dbname", "sslmode", "sslrootcert"]

    public init(parsing text: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws(ParseError) {
        var values: [String: String] = [:]
        if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            guard let components = URLComponents(string: text) else { throw .malformed("not a URI") }
            if let host = components.host, !host.isEmpty { values["host"] = host.removingPercentEncoding ?? host }
            if let port = components.port { values["port"] = String(port) }
            if let user = components.user { values["user"] = user.removingPercentEncoding ?? user }
            if let password = components.password { values["password"] = password.removingPercentEncoding ?? password }
            let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
            if !path.isEmpty { values["dbname"] = path.removingPercentEncoding ?? path }
            for item in components.queryItems ?? [] { values[item.name] = item.value ?? "" }
        } else {
            values = try Self.keywordValues(text)
        }
        // As in libpq, an empty value is no value: the default (or the variable) applies.
        values = values.filter { !$0.value.isEmpty }
        if let unknown = values.keys.sorted().first(where: { !Self.keys.contains($0) }) {
            throw .malformed("unsupported key \"\(unknown)\" (supported: \(Self.keys.joined(separator: ", ")))")
        }
        host = values["host"] ?? environment["PGHOST"] ?? "/run/postgresql"
        guard let port = Int(values["port"] ?? environment["PGPORT"] ?? "5432"), (1...65535).contains(port) else {
            throw .malformed("port must be a number from 1 to 65535")
        }
        self.port = port
        // As libpq: the name of the user the process runs as ($USER is a shell's, and a unit
        // without User= may not set it).
        user = values["user"] ?? environment["PGUSER"] ?? Self.processUserName() ?? environment["USER"] ?? "postgres"
        password = values["password"] ?? environment["PGPASSWORD"]
        database = values["dbname"] ?? environment["PGDATABASE"]
        sslRootCert = values["sslrootcert"] ?? environment["PGSSLROOTCERT"].flatMap { $0.isEmpty ? nil : $0 }
        // With the operating system's authorities, any public CA vouches for any name it was
        // asked to: only the host name check makes that a check, so `system` means verify-full
        // (its default, as in libpq 16) and nothing weaker.
        let system = sslRootCert == "system"
        let mode = values["sslmode"] ?? environment["PGSSLMODE"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (system ? SSLMode.verifyFull : SSLMode.prefer).rawValue
        guard let sslMode = SSLMode(rawValue: mode) else {
            let allowed = SSLMode.allCases.map(\.rawValue).joined(separator: ", ")
            throw .malformed(mode == "allow" ? "sslmode \"allow\" (plain text first) is not supported: use prefer or disable"
                                             : "sslmode must be one of \(allowed), not \"\(mode)\"")
        }
        if system, sslMode != .verifyFull {
            throw .malformed("sslrootcert=system needs sslmode=verify-full (its default): any public authority "
                             + "vouches for a certificate, so only the host name check makes it a check")
        }
        self.sslMode = sslMode
        tlsContext = try Self.tlsContext(mode: sslMode, rootCert: sslRootCert, unixSocket: host.hasPrefix("/"))
    }

    /// The pairs of libpq's keyword/value form: `key = value` with optional spaces around the
    /// `=`, values in single quotes when they hold spaces, `\'` and `\\` for a quote and a
    /// backslash (`password='a b\'c'` is `a b'c`).
    static func keywordValues(_ text: String) throws(ParseError) -> [String: String] {
        var values: [String: String] = [:]
        var characters = Substring(text)
        // C's isspace, as libpq: not every Unicode space (a no-break space is part of a value).
        func isSpace(_ character: Character) -> Bool { " \t\n\r\u{0B}\u{0C}".contains(character) }
        func skipSpaces() { characters = characters.drop(while: isSpace) }
        while true {
            skipSpaces()
            guard !characters.isEmpty else { return values }
            let key = characters.prefix { $0 != "=" && !isSpace($0) }
            characters = characters.dropFirst(key.count)
            skipSpaces()
            guard !key.isEmpty, characters.first == "=" else { throw .malformed("\"\(key)\" is not key=value") }
            characters = characters.dropFirst()
            skipSpaces()
            var value = ""
            let quoted = characters.first == "'"
            if quoted { characters = characters.dropFirst() }
            while let next = characters.first, quoted ? next != "'" : !isSpace(next) {
                characters = characters.dropFirst()
                if next == "\\" {
                    // An escape takes the next character as it is; a backslash at the end is dropped.
                    if let escaped = characters.first {
                        value.append(escaped)
                        characters = characters.dropFirst()
                    }
                } else {
                    value.append(next)
                }
            }
            if quoted {
                guard characters.first == "'" else { throw .malformed("the value of \(key) has no closing quote") }
                characters = characters.dropFirst()
            }
            values[String(key)] = value
        }
    }

    private static func tlsContext(mode: SSLMode, rootCert: String?, unixSocket: Bool) throws(ParseError) -> NIOSSLContext? {
        guard !unixSocket, mode != .disable else { return nil }
        var tls = TLSConfiguration.makeClientConfiguration()
        switch (mode, rootCert) {
        case (.verifyCA, nil), (.verifyFull, nil):
            throw .malformed("sslmode=\(mode.rawValue) needs sslrootcert: a PEM file of the certificate authorities "
                             + "to trust, or \"system\" for the operating system's")
        case (.prefer, nil), (.require, nil):
            tls.certificateVerification = .none
        case (.prefer, _), (.require, _), (.verifyCA, _):
            // A CA file given is used (and must be readable): the chain is checked, as libpq
            // does for require; prefer still falls back to plain text if the server has no TLS.
            tls.certificateVerification = .noHostnameVerification
        case (.verifyFull, _):
            tls.certificateVerification = .fullVerification
        case (.disable, _):
            return nil
        }
        if let rootCert, rootCert != "system", tls.certificateVerification != .none {
            tls.trustRoots = .file(rootCert)
        }
        do {
            return try NIOSSLContext(configuration: tls)
        } catch {
            throw .malformed("sslrootcert \(rootCert ?? "system"): \(error)")
        }
    }

    private static func processUserName() -> String? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(geteuid(), &entry, &buffer, buffer.count, &result) == 0, result != nil,
              let name = entry.pw_name else { return nil }
        return String(cString: name)
    }

    public var isUnixSocket: Bool { host.hasPrefix("/") }

    /// The configuration postgres-nio connects with.
    public var configuration: PostgresConnection.Configuration {
        let tls: PostgresConnection.Configuration.TLS = switch (sslMode, tlsContext) {
        case (_, nil): .disable
        case (.prefer, let context?): .prefer(context)
        case (_, let context?): .require(context)
        }
        var configuration = isUnixSocket
            ? PostgresConnection.Configuration(
                unixSocketPath: "\(host)/.s.PGSQL.\(port)", username: user, password: password, database: database)
            : PostgresConnection.Configuration(
                host: host, port: port, username: user, password: password, database: database, tls: tls)
        configuration.options.connectTimeout = .seconds(5)
        if let lockTimeout {
            let millis = max(1, PostgresJournalStore.millis(lockTimeout))
            configuration.options.additionalStartupParameters.append(("lock_timeout", "\(millis)"))
        }
        return configuration
    }

    /// Without the password, for logs and status.
    public var description: String {
        "postgres \(user)@\(host)\(isUnixSocket ? "" : ":\(port)")/\(database ?? user)"
            + (isUnixSocket ? "" : " sslmode=\(sslMode.rawValue)")
    }

    /// The settings, not the TLS context made from them.
    public static func == (lhs: Self, rhs: Self) -> Bool {
        (lhs.host, lhs.port, lhs.user, lhs.password, lhs.database) == (rhs.host, rhs.port, rhs.user, rhs.password, rhs.database)
            && (lhs.sslMode, lhs.sslRootCert, lhs.lockTimeout) == (rhs.sslMode, rhs.sslRootCert, rhs.lockTimeout)
    }
}
