import Foundation
import PostgresNIO

/// A libpq-style connection string, in either of its two forms: `key=value` pairs
/// (`host=/run/postgresql dbname=creditd user=creditd`) or a URI
/// (`postgresql://creditd:secret@db.example:5432/creditd`). A `host` that starts with `/` is a
/// directory holding the server's Unix socket (`.s.PGSQL.<port>`), as in libpq.
public struct PostgresConnectionInfo: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var user: String
    public var password: String?
    public var database: String?
    /// The sessions' `lock_timeout` on the server, when set (the store sets its lease). Every
    /// step is bounded on creditd's side too, but a step given up on there (its connection
    /// closed) kept waiting on the server: behind a lease row some other session held locked,
    /// each retry left one more backend waiting, until the server refused every client.
    public var lockTimeout: Duration?

    public enum ParseError: Error, CustomStringConvertible {
        case malformed(String)
        public var description: String {
            switch self {
            case .malformed(let text): "malformed PostgreSQL connection string: \(text)"
            }
        }
    }

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
            for pair in text.split(whereSeparator: \.isWhitespace) {
                guard let equals = pair.firstIndex(of: "=") else { throw .malformed("\"\(pair)\" is not key=value") }
                values[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
            }
        }
        let known: Set<String> = ["host", "port", "user", "password", "dbname"]
        if let unknown = values.keys.first(where: { !known.contains($0) }) {
            throw .malformed("unsupported key \"\(unknown)\" (supported: host, port, user, password, dbname)")
        }
        host = values["host"] ?? environment["PGHOST"] ?? "/run/postgresql"
        guard let port = Int(values["port"] ?? environment["PGPORT"] ?? "5432"), (1...65535).contains(port) else {
            throw .malformed("port must be a number from 1 to 65535")
        }
        self.port = port
        user = values["user"] ?? environment["PGUSER"] ?? environment["USER"] ?? "postgres"
        password = values["password"] ?? environment["PGPASSWORD"]
        database = values["dbname"] ?? environment["PGDATABASE"]
    }

    public var isUnixSocket: Bool { host.hasPrefix("/") }

    /// The configuration postgres-nio connects with.
    public var configuration: PostgresConnection.Configuration {
        var configuration = isUnixSocket
            ? PostgresConnection.Configuration(
                unixSocketPath: "\(host)/.s.PGSQL.\(port)", username: user, password: password, database: database)
            : PostgresConnection.Configuration(
                host: host, port: port, username: user, password: password, database: database, tls: .disable)
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
    }
}
