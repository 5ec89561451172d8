import XCTest
import Logging
import SystemdSupport
#if canImport(Glibc)
import Glibc
#endif

final class JournaldLogHandlerTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = try TemporaryDirectory.makePath("journald")
    }

    override func tearDown() {
        TemporaryDirectory.remove(atPath: directory)
    }

    private func openFile(_ name: String) throws -> Int32 {
        let fd = open(directory + "/" + name, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw POSIXError(errno: errno, "open") }
        return fd
    }

    private func journalStream(of fd: Int32) -> String {
        var info = stat()
        fstat(fd, &info)
        return "\(info.st_dev):\(info.st_ino)"
    }

    func testJournalStreamMatchingTheFdSelectsJournalFormat() throws {
        let fd = try openFile("stderr")
        defer { close(fd) }
        XCTAssertEqual(LogLineFormat.detect(environment: ["JOURNAL_STREAM": journalStream(of: fd)], fd: fd), .journal)
    }

    func testJournalStreamOfAnotherFileSelectsPlainFormat() throws {
        let fd = try openFile("stderr")
        let other = try openFile("other")
        defer { close(fd); close(other) }
        XCTAssertEqual(LogLineFormat.detect(environment: ["JOURNAL_STREAM": journalStream(of: other)], fd: fd), .plain)
        XCTAssertEqual(LogLineFormat.detect(environment: [:], fd: fd), .plain)
        for malformed in ["", "12", "a:b", "1:2:3", ":5"] {
            XCTAssertEqual(LogLineFormat.detect(environment: ["JOURNAL_STREAM": malformed], fd: fd), .plain, malformed)
        }
    }

    func testPriorityPrefixes() {
        let expected: [(Logger.Level, String)] = [
            (.trace, "<7>"), (.debug, "<7>"), (.info, "<6>"), (.notice, "<5>"),
            (.warning, "<4>"), (.error, "<3>"), (.critical, "<2>"),
        ]
        for (level, prefix) in expected {
            let line = JournaldLogHandler.formatLine(
                format: .journal, level: level, label: "creditd", message: "m", metadata: [:], timestamp: "ignored"
            )
            XCTAssertEqual(line, "\(prefix)[creditd] m")
        }
    }

    func testPlainLinesCarryPriorityTimestampAndLevel() {
        let line = JournaldLogHandler.formatLine(
            format: .plain, level: .warning, label: "creditd.server", message: "slow client",
            metadata: ["uid": "1000", "method": "Cancel"], timestamp: "2025-01-31T12:00:00.123Z"
        )
        XCTAssertEqual(line, "<4>2025-01-31T12:00:00.123Z warning [creditd.server] slow client method=Cancel uid=1000")

        let now = JournaldLogHandler.timestamp()
        XCTAssertNotNil(now.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z/), now)
    }

    func testNewlinesAndControlCharactersAreEscaped() {
        let line = JournaldLogHandler.formatLine(
            format: .journal, level: .error, label: "creditd", message: "first\nsecond\r\tthird\u{1}",
            metadata: ["reason": "a b", "path": "x=\"y\"\n", "empty": ""], timestamp: ""
        )
        XCTAssertEqual(
            line,
            #"<3>[creditd] first\nsecond\r\tthird\x01 empty="" path="x=\"y\"\n" reason="a b""#
        )
        XCTAssertFalse(line.contains("\n"))
    }

    func testHandlerWritesOneLinePerRecordAndFollowsSharedLevel() throws {
        var pipeFDs: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&pipeFDs), 0)
        defer { close(pipeFDs[0]) }
        let writer = LogLineWriter(fd: pipeFDs[1])
        let level = SharedLogLevel(.info)
        var logger = Logger(label: "creditd.test") { label in
            JournaldLogHandler(label: label, format: .journal, level: level, writer: writer)
        }
        logger[metadataKey: "conn"] = "7"

        logger.debug("hidden at info")
        logger.info("two\nlines", metadata: ["k": "v"])
        level.level = .debug
        logger.debug("now visible")
        logger.logLevel = .error   // a local override wins over the shared level
        logger.warning("hidden by override")
        close(pipeFDs[1])

        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(pipeFDs[0], $0.baseAddress, $0.count) }
            if count <= 0 { break }
            output += buffer[..<count]
        }
        XCTAssertEqual(
            String(decoding: output, as: UTF8.self),
            "<6>[creditd.test] two\\nlines conn=7 k=v\n<7>[creditd.test] now visible conn=7\n"
        )
    }
}
