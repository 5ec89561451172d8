import Foundation
import SystemdSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The queued `LogLineWriter` (issue 13): a reader that stops reading never blocks the caller;
/// lines beyond the queue are dropped, counted, and reported once the output flows again.
final class LogLineQueueTests: XCTestCase {
    func testStalledOutputNeverBlocksTheCallerAndDropsAreCounted() throws {
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(pipe(&fds), 0)
        defer { close(fds[0]); close(fds[1]) }
        let writer = LogLineWriter(fd: fds[1], queueCapacity: 100)
        let line = String(repeating: "x", count: 200)
        let start = ContinuousClock.now
        for _ in 0..<20_000 { writer.write(line: line) }
        XCTAssertLessThan(ContinuousClock.now - start, .seconds(2), "nobody reads the pipe, yet writes return")
        XCTAssertGreaterThan(writer.droppedLines, 0)

        // Read everything until the reports add up to every drop. Under load the writer may
        // drain its queue during the burst and report the drops so far, then report the rest.
        _ = fcntl(fds[0], F_SETFL, O_NONBLOCK)
        var text = ""
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        let deadline = ContinuousClock.now + .seconds(10)
        func reported() -> Int {
            text.components(separatedBy: "\n").compactMap { line -> Int? in
                guard let range = line.range(of: " log lines dropped") else { return nil }
                return Int(line[..<range.lowerBound].split(separator: " ").last ?? "")
            }.reduce(0, +)
        }
        while UInt64(reported()) < writer.droppedLines, ContinuousClock.now < deadline {
            let got = read(fds[0], &buffer, buffer.count)
            if got > 0 {
                text += String(decoding: buffer[0..<got], as: UTF8.self)
            } else {
                usleep(1_000)
            }
        }
        XCTAssertEqual(UInt64(reported()), writer.droppedLines, String(text.suffix(200)))
    }
}
