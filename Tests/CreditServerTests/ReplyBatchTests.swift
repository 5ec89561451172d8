@testable import CreditServer
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import XCTest

/// `ReplyBatch` on two real event loops: replies collected off their loops arrive on their
/// own loop, in the order they were completed, and only once the batch is handed off.
final class ReplyBatchTests: XCTestCase {
    private var group: MultiThreadedEventLoopGroup!
    private var loops: [any EventLoop] = []

    override func setUp() {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        loops = Array(group.makeIterator())
    }

    override func tearDown() {
        try? group.syncShutdownGracefully()
    }

    /// What each completed reply saw: its number, the loop it was meant for, and whether it
    /// ran on that loop.
    private struct Delivery: Equatable, Sendable {
        let number: Int
        let loop: Int
        let onItsLoop: Bool
    }

    private final class Deliveries: Sendable {
        private let list = Mutex<[Delivery]>([])
        func append(_ delivery: Delivery) { list.withLock { $0.append(delivery) } }
        var all: [Delivery] { list.withLock { $0 } }
    }

    private func responder(_ loop: Int, into deliveries: Deliveries) -> UnaryResponder {
        let eventLoop = loops[loop]
        return UnaryResponder(eventLoop: eventLoop) { result in
            let number = Int((try? result.get())?.first ?? 255)
            deliveries.append(Delivery(number: number, loop: loop, onItsLoop: eventLoop.inEventLoop))
        }
    }

    private func waitFor(_ count: Int, in deliveries: Deliveries) -> [Delivery] {
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            let seen = deliveries.all
            if seen.count >= count { return seen }
            usleep(1_000)
        }
        return deliveries.all
    }

    func testCollectedRepliesArriveOnTheirLoopsInOrderAfterTheBatch() {
        let deliveries = Deliveries()
        let responders = (0..<40).map { responder($0 % 3 == 0 ? 0 : 1, into: deliveries) }
        ReplyBatch.collecting {
            for (number, respond) in responders.enumerated() { respond(.success([UInt8(number)])) }
            XCTAssertEqual(deliveries.all.count, 0, "nothing goes to a loop before the batch ends")
        }
        let seen = waitFor(responders.count, in: deliveries)
        XCTAssertEqual(seen.count, responders.count)
        XCTAssertTrue(seen.allSatisfy { $0.onItsLoop })
        for loop in 0..<2 {
            let numbers = seen.filter { $0.loop == loop }.map(\.number)
            XCTAssertEqual(numbers, numbers.sorted(), "loop \(loop) completes its replies in order")
        }
        XCTAssertEqual(Set(seen.map(\.number)), Set(0..<responders.count))
    }

    func testNestedCollectingHandsOffOnceAtTheOutermostEnd() {
        let deliveries = Deliveries()
        let respond = responder(0, into: deliveries)
        ReplyBatch.collecting {
            ReplyBatch.collecting { respond(.success([1])) }
            usleep(20_000)
            XCTAssertEqual(deliveries.all.count, 0, "the inner call collects into the outer batch")
        }
        XCTAssertEqual(waitFor(1, in: deliveries), [Delivery(number: 1, loop: 0, onItsLoop: true)])
    }

    func testWithoutABatchAReplyGoesToItsLoopAtOnce() {
        let deliveries = Deliveries()
        responder(1, into: deliveries)(.success([7]))
        XCTAssertEqual(waitFor(1, in: deliveries), [Delivery(number: 7, loop: 1, onItsLoop: true)])
    }

    func testOnItsOwnLoopAReplyCompletesInPlaceEvenWhileCollecting() throws {
        let deliveries = Deliveries()
        let respond = responder(0, into: deliveries)
        let countInside = try loops[0].submit {
            ReplyBatch.collecting {
                respond(.success([3]))
            }
            return deliveries.all.count
        }.wait()
        XCTAssertEqual(countInside, 1, "answered on its loop: no hop, nothing collected")
    }

    func testAnErrorIsDeliveredLikeABody() {
        let deliveries = Deliveries()
        let respond = UnaryResponder(eventLoop: loops[1]) { result in
            if case .failure = result { deliveries.append(Delivery(number: -1, loop: 1, onItsLoop: true)) }
        }
        struct Refused: Error {}
        ReplyBatch.collecting { respond(.failure(Refused())) }
        XCTAssertEqual(waitFor(1, in: deliveries), [Delivery(number: -1, loop: 1, onItsLoop: true)])
    }
}
