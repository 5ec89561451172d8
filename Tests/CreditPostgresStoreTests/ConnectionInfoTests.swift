@testable import CreditPostgresStore
import CreditTestSupport
import Logging
import NIOCore
import XCTest

/// `--store postgres:CONNINFO`: libpq's two forms, its quoting, and TLS (`sslmode`,
/// `sslrootcert`) against a real server that takes TCP connections over TLS only.
final class ConnectionInfoTests: XCTestCase {
    static let logger = Logger(label: "test")

    func testKeywordValuesTakeLibpqQuotingAndSpaces() throws {
        let info = try PostgresConnectionInfo(
            parsing: #"host = db.example  port=6543 user=creditd password='a b\'c\\d' dbname=''"#, environment: [:])
        XCTAssertEqual(info.host, "db.example")
        XCTAssertEqual(info.port, 6543)
        XCTAssertEqual(info.password, #"a b'c\d"#)
        XCTAssertNil(info.database, "an empty value is no value")
        XCTAssertEqual(info.sslMode, .prefer, "libpq's default")
        XCTAssertFalse(info.description.contains("a b"), "the password stays out of logs: \(info)")
        XCTAssertThrowsError(try PostgresConnectionInfo(parsing: "password='open", environment: [:])) { error in
            XCTAssertTrue("\(error)".contains("no closing quote"), "\(error)")
        }
        XCTAssertThrowsError(try PostgresConnectionInfo(parsing: "host", environment: [:]))
    }

    func testSSLSettingsAreCheckedWhenParsed() throws {
        XCTAssertEqual(try PostgresConnectionInfo(parsing: "host=db", environment: ["PGSSLMODE": "require"]).sslMode, .require)
        for (text, expected) in [
            ("host=db sslmode=allow", "\"allow\" (plain text first) is not supported"),
            ("host=db sslmode=sometimes", "sslmode must be one of disable, prefer, require, verify-ca, verify-full"),
            ("host=db sslmode=verify-full", "sslmode=verify-full needs sslrootcert"),
            ("host=db sslmode=verify-ca sslrootcert=/nonexistent/ca.crt", "sslrootcert /nonexistent/ca.crt"),
            ("host=db sslkey=/k", "unsupported key \"sslkey\""),
            ("host=db sslmode=require sslrootcert=system", "sslrootcert=system needs sslmode=verify-full"),
            ("host=db sslrootcert=/nonexistent/ca.crt", "sslrootcert /nonexistent/ca.crt"),   // prefer uses it too
        ] {
            XCTAssertThrowsError(try PostgresConnectionInfo(parsing: text, environment: [:]), text) { error in
                XCTAssertTrue("\(error)".contains(expected), "\(text): \(error)")
            }
        }
        XCTAssertEqual(try PostgresConnectionInfo(parsing: "host=db sslrootcert=system", environment: [:]).sslMode, .verifyFull)
        // An empty value is no value, as in libpq: the default applies.
        let empty = try PostgresConnectionInfo(parsing: "host=db port='' sslmode=", environment: [:])
        XCTAssertEqual(empty.port, 5432)
        XCTAssertEqual(empty.sslMode, .prefer)
        // A no-break space is part of a value (libpq splits on C's isspace); a trailing
        // backslash is dropped.
        XCTAssertEqual(try PostgresConnectionInfo(parsing: "host=db password=a\u{00A0}b\\", environment: [:]).password, "a\u{00A0}b")
        // A Unix socket never uses TLS: nothing to check there.
        XCTAssertNoThrow(try PostgresConnectionInfo(parsing: "host=/run/postgresql sslmode=verify-full", environment: [:]))
    }

    /// Under the shipped unit a TCP connection fails with EAFNOSUPPORT (or EPERM): the message
    /// says a sandbox forbids it and where the drop-in is, not only the errno.
    func testASandboxedConnectionSaysSo() {
        let text = PostgresStoreError.describe(IOError(errnoCode: EAFNOSUPPORT, reason: "socket(domain:type:protocolSubtype:)"))
        XCTAssertTrue(text.contains("a sandbox forbids this connection: creditd.service allows Unix sockets only"), text)
        XCTAssertFalse(PostgresStoreError.describe(IOError(errnoCode: ECONNREFUSED, reason: "connect")).contains("sandbox"))
    }

    /// Each mode against a server that refuses plain-text TCP: a start either connects or
    /// stops with the reason.
    func testEachSSLModeAgainstAServerThatRequiresTLS() throws {
        let cluster = try PostgresCluster.startOrSkip(tls: true)
        defer { cluster.stop() }
        let ca = cluster.caCertificatePath, other = cluster.otherCACertificatePath
        // The certificate names localhost, not 127.0.0.1: verify-ca takes either, verify-full only
        // the name.
        let connects = [
            cluster.tcpConnectionInfo("sslmode=prefer"),
            cluster.tcpConnectionInfo("sslmode=prefer sslrootcert=\(ca)"),
            cluster.tcpConnectionInfo("sslmode=require"),
            cluster.tcpConnectionInfo("sslmode=verify-ca sslrootcert=\(ca)"),
            cluster.tcpConnectionInfo(host: "127.0.0.1", "sslmode=verify-ca sslrootcert=\(ca)"),
            cluster.tcpConnectionInfo("sslmode=verify-full sslrootcert=\(ca)"),
            "postgresql://\(cluster.user)@localhost:\(cluster.port)/postgres?sslmode=verify-full&sslrootcert=\(ca)",
        ]
        for text in connects {
            let (store, _) = try PostgresJournalStore.open(try PostgresConnectionInfo(parsing: text), logger: Self.logger)
            let closed = expectation(description: "closed")
            Task {
                await store.close()
                closed.fulfill()
            }
            wait(for: [closed], timeout: 10)
        }
        let refused = [
            (cluster.tcpConnectionInfo("sslmode=disable"), "no encryption"),
            (cluster.tcpConnectionInfo("sslmode=verify-ca sslrootcert=\(other)"), "certificate did not verify against sslrootcert"),
            (cluster.tcpConnectionInfo("sslmode=require sslrootcert=\(other)"), "certificate did not verify against sslrootcert"),
            (cluster.tcpConnectionInfo("sslmode=prefer sslrootcert=\(other)"), "certificate did not verify against sslrootcert"),
            (cluster.tcpConnectionInfo(host: "127.0.0.1", "sslmode=verify-full sslrootcert=\(ca)"),
             "certificate does not name the host connected to"),
        ]
        for (text, reason) in refused {
            XCTAssertThrowsError(try PostgresJournalStore.open(try PostgresConnectionInfo(parsing: text), logger: Self.logger),
                                 text) { error in
                XCTAssertTrue("\(error)".contains(reason), "\(text): \(error)")
            }
        }
    }
}
