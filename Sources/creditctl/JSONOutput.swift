import Foundation
import SwiftProtobuf

/// `-o json`: one JSON document per response, with proto field names, every field present
/// (proto3's JSON mapping leaves out zero and empty values, so a `totals` object of zeros would
/// print as `{}`), and indented when stdout is a terminal. The format itself never changes with
/// the terminal (docs/operations.md §7); only the whitespace does.
enum JSONOutput {
    static func render(_ message: some SwiftProtobuf.Message, pretty: Bool) throws -> String {
        var options = JSONEncodingOptions()
        options.preserveProtoFieldNames = true
        let compact = try message.jsonString(options: options)
        var parser = JSONParser(Array(compact.utf8))
        let tree = try parser.value()
        return completed(tree, message).text(pretty: pretty, depth: 0)
    }

    static var stdoutIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }

    /// A summary of whole numbers (`import`'s counts) as one document, formatted as responses are.
    static func render(counts: [(String, Int)]) -> String {
        JSONValue.object(counts.map { ($0.0, .raw(String($0.1))) }).text(pretty: stdoutIsTerminal, depth: 0)
    }

    /// `tree` with the fields that `message` has but the encoder left out. Present fields keep
    /// the encoder's (proto) order; a missing field follows the present field that precedes it
    /// among the message's stored properties.
    static func completed(_ tree: JSONValue, _ message: any SwiftProtobuf.Message) -> JSONValue {
        guard case .object(let present) = tree else { return tree }
        var values: [String: Any] = [:]
        var missingAfter: [String: [(String, JSONValue)]] = [:]
        var leading: [(String, JSONValue)] = []
        var anchor: String?
        for (name, value) in fields(of: message) {
            let wanted = normalized(name)
            if let key = present.first(where: { normalized($0.0) == wanted })?.0 {
                values[key] = value
                anchor = key
            } else if let json = defaultJSON(for: value, field: protoName(name), in: message) {
                if let anchor { missingAfter[anchor, default: []].append((protoName(name), json)) } else {
                    leading.append((protoName(name), json))
                }
            }
        }
        var result = leading
        for (key, json) in present {
            result.append((key, values[key].map { completedValue(json, $0) } ?? json))
            result += missingAfter[key] ?? []
        }
        return .object(result)
    }

    private static func completedValue(_ json: JSONValue, _ value: Any) -> JSONValue {
        let value = (value as? any OptionalValue)?.unwrapped ?? value
        if let message = value as? any SwiftProtobuf.Message { return completed(json, message) }
        if let messages = value as? [any SwiftProtobuf.Message], case .array(let items) = json, items.count == messages.count {
            return .array(zip(items, messages).map { completed($0, $1) })
        }
        return json
    }

    /// The JSON of a field left out because it has its default value; `null` for an unset
    /// message field (a charge has no credit: an object of zeros read as one); nil for an unset
    /// `optional` scalar or oneof, which stays absent.
    private static func defaultJSON(for value: Any, field: String, in message: any SwiftProtobuf.Message) -> JSONValue? {
        switch value {
        case is Int64, is UInt64: return .raw("\"0\"")
        case is Int32, is UInt32, is Double, is Float: return .raw("0")
        case is Bool: return .raw("false")
        case is String, is Data: return .raw("\"\"")
        case let optional as any OptionalValue:
            guard optional.unwrapped == nil, type(of: optional).wrappedType is any SwiftProtobuf.Message.Type
            else { return nil }
            return .raw("null")
        case let enumValue as any SwiftProtobuf.Enum:
            return enumDefault(enumValue, field: field, in: message)
        default:
            let mirror = Mirror(reflecting: value)
            if mirror.displayStyle == .collection { return .array([]) }
            if mirror.displayStyle == .dictionary { return .object([]) }
            return nil
        }
    }

    /// The proto name of an enum's zero value. The names follow `<ENUM>_UNSPECIFIED`; the
    /// message's own JSON decoder confirms the guess, and the number 0 (which proto3 JSON
    /// also accepts) stands in when it does not.
    private static func enumDefault(_ value: any SwiftProtobuf.Enum, field: String, in message: any SwiftProtobuf.Message) -> JSONValue {
        let typeName = String(describing: type(of: value)).split(separator: ".").last.map(String.init) ?? ""
        let shortName = typeName.split(separator: "_").last.map(String.init) ?? typeName
        for guess in [screamingSnake(shortName) + "_UNSPECIFIED", "UNKNOWN"] {
            if (try? type(of: message).init(jsonString: "{\"\(field)\":\"\(guess)\"}")) != nil {
                return .raw("\"\(guess)\"")
            }
        }
        return .raw("0")
    }

    /// Stored properties of a generated message, looking through its heap storage.
    private static func fields(of message: any SwiftProtobuf.Message) -> [(String, Any)] {
        var result: [(String, Any)] = []
        for child in Mirror(reflecting: message).children {
            guard let label = child.label, label != "unknownFields" else { continue }
            if label == "_storage" {
                for inner in Mirror(reflecting: child.value).children {
                    guard let innerLabel = inner.label, innerLabel != "unknownFields" else { continue }
                    result.append((String(innerLabel.drop(while: { $0 == "_" })), inner.value))
                }
            } else {
                result.append((String(label.drop(while: { $0 == "_" })), child.value))
            }
        }
        return result
    }

    /// `subscriptionID`, `subscription_id` and `subscriptionId` all become `subscriptionid`.
    private static func normalized(_ name: String) -> String {
        var name = name
        if name.hasSuffix("_p") { name.removeLast(2) }  // `description` is generated as `description_p`
        return name.lowercased().replacingOccurrences(of: "_", with: "")
    }

    /// `unitPriceMinor` -> `unit_price_minor`, `subscriptionID` -> `subscription_id`.
    static func protoName(_ swiftName: String) -> String {
        var name = swiftName
        if name.hasSuffix("_p") { name.removeLast(2) }
        var result = ""
        var previous: Character?
        for character in name {
            if character.isUppercase, let previous, previous.isLowercase || previous.isNumber { result += "_" }
            result += character.lowercased()
            previous = character
        }
        return result
    }

    private static func screamingSnake(_ name: String) -> String {
        protoName(name).uppercased()
    }
}

/// Lets reflection see through `Optional`.
protocol OptionalValue {
    static var wrappedType: Any.Type { get }
    var unwrapped: Any? { get }
}

extension Optional: OptionalValue {
    static var wrappedType: Any.Type { Wrapped.self }
    var unwrapped: Any? { map { $0 as Any } }
}

/// A JSON document as the encoder wrote it: objects keep their key order, and scalars keep
/// their exact text.
indirect enum JSONValue {
    case object([(String, JSONValue)])
    case array([JSONValue])
    case raw(String)

    func text(pretty: Bool, depth: Int) -> String {
        let indent = pretty ? String(repeating: "  ", count: depth + 1) : ""
        let closing = pretty ? String(repeating: "  ", count: depth) : ""
        let newline = pretty ? "\n" : ""
        switch self {
        case .raw(let text):
            return text
        case .array(let items):
            if items.isEmpty { return "[]" }
            let body = items.map { indent + $0.text(pretty: pretty, depth: depth + 1) }
            return "[" + newline + body.joined(separator: "," + newline) + newline + closing + "]"
        case .object(let members):
            if members.isEmpty { return "{}" }
            let separator = pretty ? ": " : ":"
            let body = members.map { indent + "\"\($0.0)\"" + separator + $0.1.text(pretty: pretty, depth: depth + 1) }
            return "{" + newline + body.joined(separator: "," + newline) + newline + closing + "}"
        }
    }
}

/// Reads the encoder's compact output back into a `JSONValue`.
struct JSONParser {
    struct Malformed: Error {}

    private let bytes: [UInt8]
    private var index = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func value() throws -> JSONValue {
        skipSpace()
        guard index < bytes.count else { throw Malformed() }
        switch bytes[index] {
        case UInt8(ascii: "{"):
            index += 1
            var members: [(String, JSONValue)] = []
            skipSpace()
            if peek(UInt8(ascii: "}")) { index += 1; return .object([]) }
            while true {
                skipSpace()
                let key = try string()
                skipSpace()
                guard peek(UInt8(ascii: ":")) else { throw Malformed() }
                index += 1
                members.append((String(decoding: key.dropFirst().dropLast(), as: UTF8.self), try value()))
                skipSpace()
                if peek(UInt8(ascii: ",")) { index += 1; continue }
                guard peek(UInt8(ascii: "}")) else { throw Malformed() }
                index += 1
                return .object(members)
            }
        case UInt8(ascii: "["):
            index += 1
            var items: [JSONValue] = []
            skipSpace()
            if peek(UInt8(ascii: "]")) { index += 1; return .array([]) }
            while true {
                items.append(try value())
                skipSpace()
                if peek(UInt8(ascii: ",")) { index += 1; continue }
                guard peek(UInt8(ascii: "]")) else { throw Malformed() }
                index += 1
                return .array(items)
            }
        case UInt8(ascii: "\""):
            return .raw(String(decoding: try string(), as: UTF8.self))
        default:
            let start = index
            while index < bytes.count, !",}] \n\t\r".utf8.contains(bytes[index]) { index += 1 }
            guard index > start else { throw Malformed() }
            return .raw(String(decoding: bytes[start..<index], as: UTF8.self))
        }
    }

    /// A string token with its quotes and escapes, as written.
    private mutating func string() throws -> ArraySlice<UInt8> {
        guard peek(UInt8(ascii: "\"")) else { throw Malformed() }
        let start = index
        index += 1
        while index < bytes.count, bytes[index] != UInt8(ascii: "\"") {
            index += bytes[index] == UInt8(ascii: "\\") ? 2 : 1
        }
        guard index < bytes.count else { throw Malformed() }
        index += 1
        return bytes[start..<index]
    }

    private func peek(_ byte: UInt8) -> Bool { index < bytes.count && bytes[index] == byte }

    private mutating func skipSpace() {
        while index < bytes.count, " \n\t\r".utf8.contains(bytes[index]) { index += 1 }
    }
}
