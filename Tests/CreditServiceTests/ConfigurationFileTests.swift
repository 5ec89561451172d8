@testable import CreditServer
import Foundation
import XCTest

/// Config-file errors say where the problem is: a person fixes /etc/creditd/creditd.json
/// from the journal line alone.
final class ConfigurationFileTests: XCTestCase {
    private func reason(_ text: String) throws -> String {
        try reason(bytes: Array(text.utf8))
    }

    private func reason(bytes: [UInt8]) throws -> String {
        let text = String(decoding: bytes, as: UTF8.self)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("creditd-config-\(UUID().uuidString).json")
        try Data(bytes).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        do {
            _ = try DaemonConfiguration.readFile(url.path)
            XCTFail("\(text) was accepted")
            return ""
        } catch let error as DaemonConfiguration.LoadError {
            guard case .invalid(let path, let reason) = error else { XCTFail("\(error)"); return "" }
            XCTAssertEqual(path, url.path)
            return reason
        }
    }

    func testMalformedJSONNamesLineAndColumn() throws {
        XCTAssertEqual(try reason("{\n  \"max_seats\": 5,\n  \"log_level\" \"debug\"\n}\n"),
                       "malformed JSON at line 3, column 15: expected ':', found '\"'")
        XCTAssertEqual(try reason("{\"max_seats\": 5,}"), "malformed JSON at line 1, column 17: expected a key in double quotes, found '}'")
        XCTAssertEqual(try reason("{\n\"max_seats\": 5\n"), "malformed JSON at line 3, column 1: expected ',' or '}', found end of file")
        XCTAssertEqual(try reason(""), "malformed JSON at line 1, column 1: expected a value, found end of file")
        XCTAssertEqual(try reason("{\"log_level\": \"inf\no\"}"),
                       "malformed JSON at line 1, column 19: control character in a string (a newline inside quotes?)")
        XCTAssertEqual(try reason("{\"max_seats\": 05}"), "malformed JSON at line 1, column 16: expected ',' or '}', found '5'")
        XCTAssertEqual(try reason("{\"é\": tru}"), "malformed JSON at line 1, column 7: expected a value, found 't'")
        XCTAssertEqual(try reason("{} x"), "malformed JSON at line 1, column 4: unexpected 'x' after the document")
    }

    /// What Foundation refused as "The given data was not valid JSON", with no place or key.
    func testInvalidUTF8AndNumbersPastAnyFloatAndUnknownClockAreNamed() throws {
        XCTAssertEqual(try reason(bytes: Array("{\n \"now\": \"a".utf8) + [0xC3, 0x28] + Array("\"}".utf8)),
                       "malformed JSON at line 2, column 11: byte 0xC3 is not UTF-8 (the file must be UTF-8)")
        XCTAssertEqual(try reason("{\"idle_timeout\": 1e400}"),
                       "malformed JSON at line 1, column 18: the number 1e400 is too large for any reader (past a 64-bit float's range)")
        XCTAssertEqual(try reason("{\"clock\": \"sundial\"}"), "\"clock\": expected \"system\" or \"manual\", found \"sundial\"")
    }

    /// Every setting of the file is in the reload table once, so a reload names every change
    /// it applies, and keeps the running value of every restart-only setting.
    func testReloadNamesEverySetting() throws {
        let keys = DaemonConfiguration.reloadedSettings.map(\.key)
        XCTAssertEqual(keys, DaemonConfiguration.Layer.CodingKeys.allCases, "in file order, each once")

        let running = try DaemonConfiguration.resolve(configFile: nil, flags: .init(), environment: [:])
        var loaded = running
        loaded.maxConnectionsPerUID = 3
        loaded.reservedConnections = 2
        loaded.maxBufferedResponseBytes = 65_536
        loaded.maxQueuedWrites = 4
        loaded.maxPartialFrameBytes = 1_000_000
        loaded.frameReadTimeoutSeconds = 2
        loaded.journalSegmentBytes = 8_192
        let (applied, changes, restartOnly) = DaemonConfiguration.reload(from: running, to: loaded)
        XCTAssertEqual(changes, ["max_connections_per_uid 64 -> 3", "reserved_connections 8 -> 2",
                                 "max_buffered_response_bytes 1048576 -> 65536", "max_queued_writes 32 -> 4",
                                 "max_partial_frame_bytes 67108864 -> 1000000", "frame_read_timeout 10 -> 2"])
        XCTAssertEqual(restartOnly, ["journal_segment_bytes"])
        XCTAssertEqual(applied.journalSegmentBytes, running.journalSegmentBytes, "the running value is kept")
        XCTAssertEqual(applied.maxQueuedWrites, 4)
    }

    /// A reload names what changes in force, not how it is written: a default written out, or
    /// an id list in another order, changes nothing; a limit that follows another setting is
    /// named when that setting moves it.
    func testReloadComparesTheValuesInForce() throws {
        var running = try DaemonConfiguration.resolve(configFile: nil, flags: .init(), environment: [:])
        running.writerGIDs = [1, 2]
        var loaded = running
        loaded.maxConnectionsPerUID = 64     // the default at 256 connections, written out
        loaded.reservedConnections = 8
        loaded.writerGIDs = [2, 1, 2]
        XCTAssertEqual(DaemonConfiguration.reload(from: running, to: loaded).changes, [])
        loaded.maxConnections = 512
        loaded.maxConnectionsPerUID = 0      // back to the default, which follows max_connections
        loaded.idleTimeoutSeconds = 1.5
        XCTAssertEqual(DaemonConfiguration.reload(from: running, to: loaded).changes,
                       ["max_connections 256 -> 512", "idle_timeout 300 -> 1.5", "max_connections_per_uid 64 -> 128"])
    }

    /// A key given twice in one object is refused: Foundation would keep the first value and
    /// jq the last, so the file would mean one thing to creditd and another to the operator's
    /// tools. Keys are compared with their escapes decoded.
    func testKeyGivenTwiceIsRefused() throws {
        XCTAssertEqual(try reason("{\n  \"max_connections\": 10,\n  \"max_connections\": 5000\n}\n"),
                       "malformed JSON at line 3, column 3: key \"max_connections\" appears twice in one object (first at line 2, column 3)")
        XCTAssertEqual(try reason("{\"max_seats\": 5, \"max_\\u0073eats\": 6}"),
                       "malformed JSON at line 1, column 18: key \"max_seats\" appears twice in one object (first at line 1, column 2)")
        XCTAssertEqual(try reason("{\"x\": {\"a\": 1, \"a\": 2}}"),
                       "malformed JSON at line 1, column 16: key \"a\" appears twice in one object (first at line 1, column 8)")
        XCTAssertEqual(try reason("{\"\\ud83d\\ude00\": 1, \"😀\": 2}"),
                       "malformed JSON at line 1, column 21: key \"😀\" appears twice in one object (first at line 1, column 2)")
        // Two different lone surrogates are two keys (the decoder refuses them afterwards).
        XCTAssertFalse(try reason("{\"\\ud800\": 1, \"\\ud801\": 2}").contains("appears twice"))
        // The same key in two different objects is fine (here refused only as unknown).
        XCTAssertEqual(try reason("{\"x\": {\"a\": 1}, \"y\": {\"a\": 1}}"), "unknown key \"x\"")
    }

    /// The key and what belongs there, in JSON's terms rather than the decoder's (`Int64`).
    func testWrongTypeNamesTheKey() throws {
        XCTAssertEqual(try reason("{\"max_seats\": \"five\"}"), "\"max_seats\": expected a whole number, found a string")
        // A number its setting cannot hold: Foundation calls it "not valid JSON" and names no key.
        XCTAssertEqual(try reason("{\"max_seats\": 1.5}"), "\"max_seats\": expected a whole number that fits, found 1.5")
        XCTAssertEqual(try reason("{\"socket\": \"/tmp/s\", \"max_connections\": 99999999999999999999}"),
                       "\"max_connections\": expected a whole number that fits, found 99999999999999999999")
        XCTAssertEqual(try reason("{\"writer_uids\": [1000, -1]}"), "\"writer_uids\"[1]: expected a whole number that fits, found -1")
        XCTAssertEqual(try reason("{\"reader_gids\": [4294967296]}"),
                       "\"reader_gids\"[0]: expected a whole number that fits, found 4294967296")
        // The largest value a setting holds is no culprit: the error beside it is named.
        XCTAssertEqual(try reason("{\"max_seats\": 9223372036854775807, \"log_level\": 3}"),
                       "\"log_level\": expected a string, found number")
        XCTAssertEqual(try reason("{\"max_seats\": 9223372036854775807, \"snapshot_every_records\": 1.5}"),
                       "\"snapshot_every_records\": expected a whole number that fits, found 1.5")
        XCTAssertEqual(try reason("{\"log_level\": 3}"), "\"log_level\": expected a string, found number")
        XCTAssertEqual(try reason("{\"writer_uids\": 0}"), "\"writer_uids\": expected a list, found number")
    }

    /// A missing or unreadable file gets the system's reason, not Foundation's "The operation
    /// could not be completed".
    func testAMissingFileGetsTheSystemsReason() throws {
        let missing = FileManager.default.temporaryDirectory.appendingPathComponent("creditd-none-\(UUID().uuidString).json").path
        XCTAssertEqual(unreadableReason(missing), "No such file or directory")
    }

    /// Why `readFile` refused `path` as unreadable (nil, with a failure, for anything else).
    private func unreadableReason(_ path: String, file: StaticString = #filePath, line: UInt = #line) -> String? {
        do {
            _ = try DaemonConfiguration.readFile(path)
            XCTFail("\(path) was read", file: file, line: line)
        } catch DaemonConfiguration.LoadError.unreadable(let reported, let reason) {
            XCTAssertEqual(reported, path, file: file, line: line)
            return reason
        } catch {
            XCTFail("\(error)", file: file, line: line)
        }
        return nil
    }

    /// A directory given as the file: said so, not as Foundation's "NSCocoaErrorDomain error 256".
    func testADirectoryIsNamedAsOne() throws {
        let directory = FileManager.default.temporaryDirectory.path
        XCTAssertEqual(unreadableReason(directory), "it is a directory, not a JSON file")
    }

    /// A FIFO in the file's place: refused at once. Opening it for reading waited for a writer,
    /// and a reload stuck there held up every later reload and SIGTERM's drain for good.
    func testAFIFOIsRefusedWithoutWaitingForAWriter() throws {
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("creditd-fifo-\(UUID().uuidString).json").path
        XCTAssertEqual(mkfifo(fifo, 0o600), 0)
        defer { unlink(fifo) }
        XCTAssertEqual(unreadableReason(fifo), "it is not a regular file (a FIFO, socket or device)")
    }

    /// Nothing near a configuration's size is a megabyte: not read whole into memory.
    func testAFileOverAMebibyteIsRefused() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("creditd-big-\(UUID().uuidString).json").path
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(repeating: 0x20, count: (1 << 20) + 1)))
        defer { unlink(path) }
        XCTAssertEqual(unreadableReason(path), "it is \((1 << 20) + 1) bytes, more than a configuration file may be (\(1 << 20))")
    }

    func testUnknownKeyIsNamed() throws {
        XCTAssertEqual(try reason("{\"max_seat\": 5}"), "unknown key \"max_seat\"")
    }

    func testWellFormedFilesStillLoad() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("creditd-config-\(UUID().uuidString).json")
        try Data(#"{"max_seats": 5, "writer_gids": [1, 2], "snapshot_interval": 1.5e2, "metrics_textfile": "a\u00e9\"b", "log_level": "debug"}"#.utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let layer = try DaemonConfiguration.readFile(url.path)
        XCTAssertEqual(layer.maxSeats, 5)
        XCTAssertEqual(layer.writerGIDs, [1, 2])
        XCTAssertEqual(layer.snapshotInterval, 150)
        XCTAssertEqual(layer.metricsTextfile, "aé\"b")
    }

    /// E5: retention is configurable upwards only.
    func testEventRetentionBelowTheMinimumIsRefused() throws {
        var configuration = DaemonConfiguration.defaults(environment: [:])
        XCTAssertNoThrow(try configuration.validate())
        configuration.eventRetentionDays = 90
        configuration.eventRetentionEvents = 2_000_000
        XCTAssertNoThrow(try configuration.validate())
        configuration.eventRetentionDays = 30
        XCTAssertThrowsError(try configuration.validate())
        configuration.eventRetentionDays = 45
        configuration.eventRetentionEvents = 999_999
        XCTAssertThrowsError(try configuration.validate())
        var layer = DaemonConfiguration.Layer()
        layer.eventRetentionDays = 60
        configuration = DaemonConfiguration.defaults(environment: [:])
        configuration.apply(layer)
        XCTAssertEqual(configuration.eventRetentionDays, 60)
    }

    /// By default the writer thread keeps a core of its own; `event_loops` overrides that.
    func testEventLoopsDefaultLeavesACoreToTheWriter() throws {
        var configuration = DaemonConfiguration.defaults(environment: [:])
        XCTAssertEqual(configuration.eventLoopCount(cores: 1), 1)
        XCTAssertEqual(configuration.eventLoopCount(cores: 2), 1)
        XCTAssertEqual(configuration.eventLoopCount(cores: 16), 15)
        var layer = DaemonConfiguration.Layer()
        layer.eventLoops = 3
        configuration.apply(layer)
        XCTAssertNoThrow(try configuration.validate())
        XCTAssertEqual(configuration.eventLoopCount(cores: 2), 3)
        configuration.eventLoops = -1
        XCTAssertThrowsError(try configuration.validate())
        configuration.eventLoops = DaemonConfiguration.maximumEventLoops + 1
        XCTAssertThrowsError(try configuration.validate())

        let url = FileManager.default.temporaryDirectory.appendingPathComponent("creditd-config-\(UUID().uuidString).json")
        try Data(#"{"event_loops": 2}"#.utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        XCTAssertEqual(try DaemonConfiguration.readFile(url.path).eventLoops, 2)
    }
}
