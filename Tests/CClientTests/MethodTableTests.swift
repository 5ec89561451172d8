import CreditProto
import Foundation
import XCTest

/// The C client names its methods by hand (C has no generated method table); this keeps those
/// names in step with the generated one.
final class MethodTableTests: XCTestCase {
    func testCClientMethodNamesAreInTheMethodTable() throws {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/CCreditClient/creditd_client.c").standardizedFileURL
        let text = try String(contentsOf: source, encoding: .utf8)
        let services = ["CREDITS_METHOD": MethodTable.Credits.serviceName, "ADMIN_METHOD": MethodTable.Admin.serviceName]
        var named: [(service: String, method: String, messages: String)] = []
        for line in text.split(separator: "\n") {
            // CREDITS_METHOD(creditd_get_subscription, "GetSubscription", GetSubscription, get_subscription)
            let parts = line.split(whereSeparator: { "(),".contains($0) }).map { $0.trimmingCharacters(in: .whitespaces) }
            guard let macro = parts.first, let service = services[macro], parts.count >= 4 else { continue }
            named.append((service, parts[2].trimmingCharacters(in: CharacterSet(charactersIn: "\"")), parts[3]))
        }
        // creditd_health_check names its service and method as string literals.
        if text.contains("\"\(MethodTable.Health.serviceName)\", \"\(MethodTable.Health.check.method)\"") {
            named.append((MethodTable.Health.serviceName, MethodTable.Health.check.method, MethodTable.Health.check.method))
        } else {
            XCTFail("creditd_health_check does not name \(MethodTable.Health.check.descriptor)")
        }
        XCTAssertGreaterThanOrEqual(named.count, 16, "the parser found the C client's methods")
        let table = Set(MethodTable.all.map(\.fullName))
        for entry in named {
            XCTAssertTrue(table.contains("\(entry.service)/\(entry.method)"), "\(entry.service)/\(entry.method) is not in the method table")
            XCTAssertEqual(entry.messages, entry.method, "the C client's message types follow the method name")
        }
        // Every public unary method of Credits and Admin has a C function.
        let covered = Set(named.map { "\($0.service)/\($0.method)" })
        for method in MethodTable.Credits.all + MethodTable.Admin.all where method.kind == .unary {
            XCTAssertTrue(covered.contains(method.fullName), "the C client has no function for \(method)")
        }
    }
}
