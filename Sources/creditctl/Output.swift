import CreditDomain
import CreditProto
import Foundation
import SwiftProtobuf

/// Prints a response as JSON (one document, proto field names) or as text.
func emit(_ message: some SwiftProtobuf.Message, _ format: OutputFormat, table: () -> String) throws {
    switch format {
    case .json:
        print(try JSONOutput.render(message, pretty: JSONOutput.stdoutIsTerminal))
    case .table:
        print(table(), terminator: "")
    }
}

/// `text` with every control character (C0, DEL, C1) written as an escape (`\n`, `\r`, `\t`,
/// `\x1B`), the characters that reorder or break lines (U+2028, U+2029, the bidirectional
/// embeddings, overrides and isolates) as `\u{202E}`, and a backslash doubled, so that the
/// escapes cannot be confused with text. Ids, customers and plans are whatever a client sent:
/// printed as they were, a newline forged a table row, an escape sequence took over the
/// operator's terminal, and a right-to-left override reordered the columns. JSON output
/// escapes by its own rules.
func terminalSafe(_ text: String) -> String {
    guard text.unicodeScalars.contains(where: needsEscape) else { return text }
    var safe = ""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\n": safe += "\\n"
        case "\r": safe += "\\r"
        case "\t": safe += "\\t"
        case "\\": safe += "\\\\"
        case _ where scalar.value < 0x100 && needsEscape(scalar):
            let hex = String(scalar.value, radix: 16, uppercase: true)
            safe += "\\x" + (hex.count < 2 ? "0" + hex : hex)
        case _ where needsEscape(scalar):
            safe += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
        default: safe.unicodeScalars.append(scalar)
        }
    }
    return safe
}

private func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
    switch scalar.value {
    case 0..<0x20, 0x7F...0x9F, 0x5C: true                      // controls, the backslash
    case 0x2028, 0x2029, 0x200E, 0x200F, 0x061C: true          // separators, direction marks
    case 0x202A...0x202E, 0x2066...0x2069: true                // embeddings, overrides, isolates
    default: false
    }
}

/// A plain text table: a header row and left-aligned columns.
struct TextTable {
    var header: [String]
    var rows: [[String]] = []

    init(_ header: String...) { self.header = header }

    mutating func add(_ row: String...) { rows.append(row.map(terminalSafe)) }
    mutating func add(_ row: [String]) { rows.append(row.map(terminalSafe)) }

    var rendered: String {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0.indices.contains(column) ? $0[column].count : 0 }.max() ?? 0 }
        return all.map { row in
            var line = row.enumerated().map { index, cell in
                index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
            while line.hasSuffix(" ") { line.removeLast() }  // rows ending in empty cells
            return line
        }.joined(separator: "\n") + "\n"
    }
}

/// "key: value" lines, aligned.
func fieldList(_ pairs: [(String, String)]) -> String {
    let width = pairs.map(\.0.count).max() ?? 0
    return pairs.map { "\($0.0.padding(toLength: width, withPad: " ", startingAt: 0))  \(terminalSafe($0.1))" }.joined(separator: "\n") + "\n"
}

enum Money {
    /// 6667 USD -> "66.67 USD"; integer arithmetic only.
    static func format(_ minor: Int64, _ currency: String) -> String {
        let exponent = Currency(code: currency)?.exponent ?? 0
        guard exponent > 0 else { return "\(minor) \(currency)" }
        let magnitude = minor.magnitude
        var scale: UInt64 = 1
        for _ in 0..<exponent { scale *= 10 }
        let fraction = String(magnitude % scale)
        let padded = String(repeating: "0", count: exponent - fraction.count) + fraction
        return "\(minor < 0 ? "-" : "")\(magnitude / scale).\(padded) \(currency)"
    }
}

/// Instants on the command line and in tables: the one RFC 3339 implementation, the domain's
/// (`CreditDomain.RFC3339`), which keeps every digit of the fraction.
enum Instants {
    /// Nanoseconds since the epoch as RFC 3339 UTC; "-" when unset.
    static func format(_ nanos: Int64) -> String {
        nanos == 0 ? "-" : RFC3339.format(unixNanos: nanos)
    }

    static func parse(_ text: String) -> Int64? {
        RFC3339.parse(text)
    }
}

func orDash(_ text: String) -> String { text.isEmpty ? "-" : text }

/// Generated enum cases as the proto's snake case: `.refundPending` -> "refund_pending",
/// `.window7D` -> "window_7d".
func snakeName(_ value: some SwiftProtobuf.Enum) -> String {
    var result = ""
    var previous: Character?
    for character in "\(value)" {
        if character.isUppercase {
            if previous?.isNumber != true { result += "_" }
            result += character.lowercased()
        } else if character.isNumber, previous?.isLetter == true {
            result += "_" + String(character)
        } else {
            result.append(character)
        }
        previous = character
    }
    return result
}
