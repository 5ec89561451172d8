import Foundation
import CreditProto
import CreditWire
import SwiftProtobuf
import XCTest

/// `FieldPeek` finds what a decoder would, and gives up (nil) rather than fail on anything odd.
final class FieldPeekTests: XCTestCase {
    func testRequestFieldsAreFoundInPlace() throws {
        var subscription = Creditd_V1_GetSubscriptionRequest()
        subscription.subscriptionID = "sub_ÿ-42"
        let payload: [UInt8] = try subscription.serializedBytes()
        let request = Ttrpc_Request(service: "creditd.v1.Credits", method: "GetSubscription", payload: payload,
                                    timeoutNano: 123_456, metadata: [("k", "v")])
        let bytes: [UInt8] = try request.serializedBytes()
        try bytes.withUnsafeBytes { raw in
            let call = try XCTUnwrap(FieldPeek.request(raw))
            XCTAssertEqual(Array(call.service), Array("creditd.v1.Credits".utf8))
            XCTAssertEqual(Array(call.method), Array("GetSubscription".utf8))
            XCTAssertEqual(Array(call.payload), payload)
            XCTAssertEqual(FieldPeek.bytesField(1, in: call.payload).map(Array.init), Array("sub_ÿ-42".utf8))
            XCTAssertNil(FieldPeek.bytesField(2, in: call.payload), "no such field")
        }
    }

    func testOddInputGivesNil() {
        let cases: [[UInt8]] = [
            [0x0A, 0x05, 0x61],               // a length past the end
            [0x0A, 0x01, 0x61, 0x80],         // a truncated varint key
            [0x0A, 0x01, 0x61, 0x13, 0x01],   // a group (wire type 3)
            [0x12, 0x01, 0x6D],               // a method but no service
            [0x0A, 0x01, 0x61, 0x12, 0x01, 0x6D, 0x21, 0x00],  // a fixed64 cut short
        ]
        for bytes in cases {
            bytes.withUnsafeBytes { XCTAssertNil(FieldPeek.request($0), "\(bytes)") }
        }
    }

    /// On random input FieldPeek never traps, and wherever both it and SwiftProtobuf read a
    /// request, they read the same one. Every fourth input is a real request with random bytes
    /// appended, so that some inputs are requests whatever the draw (pure noise rarely is one).
    func testRandomInputAgreesWithSwiftProtobuf() throws {
        var generator = SystemRandomNumberGenerator()
        let alphabet: [UInt8] = [0x00, 0x01, 0x02, 0x05, 0x0A, 0x12, 0x1A, 0x20, 0x2A, 0x61, 0x7F, 0x80, 0xFF]
        var agreed = 0
        for round in 0..<20_000 {
            let count = Int.random(in: 0...24, using: &generator)
            var bytes = (0..<count).map { _ in alphabet.randomElement(using: &generator)! }
            if round % 4 == 0 {
                var request = Ttrpc_Request()
                request.service = String(repeating: "s", count: Int.random(in: 1...8, using: &generator))
                request.method = String(repeating: "m", count: Int.random(in: 1...8, using: &generator))
                request.payload = Data(bytes.prefix(Int.random(in: 0...8, using: &generator)))
                // Every eighth input is the request alone, which always decodes.
                bytes = try request.serializedBytes() + (round % 8 == 0 ? [] : bytes)
            }
            bytes.withUnsafeBytes { raw in
                guard let call = FieldPeek.request(raw),
                      let decoded = try? Ttrpc_Request(serializedBytes: bytes) else { return }
                XCTAssertEqual(Array(call.service), Array(decoded.service.utf8), "\(bytes)")
                XCTAssertEqual(Array(call.method), Array(decoded.method.utf8), "\(bytes)")
                XCTAssertEqual(Array(call.payload), Array(decoded.payload), "\(bytes)")
                agreed += 1
            }
        }
        XCTAssertGreaterThan(agreed, 0, "some random inputs were requests")
    }
}
