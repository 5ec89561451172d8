/// Finds the first JSON syntax error in a document and says where it is, for
/// config-file errors a person can act on ("line 3, column 9: expected ':'").
/// Foundation's decoders on Linux say only "The given data was not valid JSON".
/// This is a checker, not a parser: it accepts exactly RFC 8259 JSON.
struct JSONSyntaxError: Error, Equatable, CustomStringConvertible {
    let line: Int
    let column: Int
    let message: String

    var description: String { "line \(line), column \(column): \(message)" }

    /// nil when `bytes` is well-formed JSON.
    static func find(in bytes: [UInt8]) -> JSONSyntaxError? {
        var scanner = Scanner(bytes: bytes)
        do throws(JSONSyntaxError) {
            scanner.skipSpace()
            try scanner.value(depth: 0)
            scanner.skipSpace()
            if scanner.index < bytes.count { throw scanner.error("unexpected \(scanner.describeCurrent()) after the document") }
            return nil
        } catch {
            return error
        }
    }

    private struct Scanner {
        let bytes: [UInt8]
        var index = 0

        func error(_ message: String) -> JSONSyntaxError {
            var line = 1
            var lineStart = 0
            for (offset, byte) in bytes[..<min(index, bytes.count)].enumerated() where byte == UInt8(ascii: "\n") {
                line += 1
                lineStart = offset + 1
            }
            // Columns count characters, not bytes: skip UTF-8 continuation bytes.
            let column = bytes[lineStart..<min(index, bytes.count)].filter { $0 & 0xC0 != 0x80 }.count + 1
            return JSONSyntaxError(line: line, column: column, message: message)
        }

        func describeCurrent() -> String {
            guard index < bytes.count else { return "end of file" }
            let byte = bytes[index]
            return byte >= 0x20 && byte < 0x7F ? "'\(Character(Unicode.Scalar(byte)))'" : "byte 0x\(String(byte, radix: 16))"
        }

        mutating func skipSpace() {
            while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
        }

        mutating func expect(_ character: Character) throws(JSONSyntaxError) {
            guard index < bytes.count, bytes[index] == character.asciiValue! else {
                throw error("expected '\(character)', found \(describeCurrent())")
            }
            index += 1
        }

        mutating func value(depth: Int) throws(JSONSyntaxError) {
            guard depth < 512 else { throw error("nested too deeply") }
            guard index < bytes.count else { throw error("expected a value, found end of file") }
            switch bytes[index] {
            case UInt8(ascii: "{"):
                index += 1
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return }
                while true {
                    skipSpace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                        throw error("expected a key in double quotes, found \(describeCurrent())")
                    }
                    try string()
                    skipSpace()
                    try expect(":")
                    skipSpace()
                    try value(depth: depth + 1)
                    skipSpace()
                    if index < bytes.count, bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "}") else {
                        throw error("expected ',' or '}', found \(describeCurrent())")
                    }
                    index += 1
                    return
                }
            case UInt8(ascii: "["):
                index += 1
                skipSpace()
                if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return }
                while true {
                    skipSpace()
                    try value(depth: depth + 1)
                    skipSpace()
                    if index < bytes.count, bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "]") else {
                        throw error("expected ',' or ']', found \(describeCurrent())")
                    }
                    index += 1
                    return
                }
            case UInt8(ascii: "\""):
                try string()
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
                try number()
            case UInt8(ascii: "t"): try literal("true")
            case UInt8(ascii: "f"): try literal("false")
            case UInt8(ascii: "n"): try literal("null")
            default:
                throw error("expected a value, found \(describeCurrent())")
            }
        }

        mutating func literal(_ word: String) throws(JSONSyntaxError) {
            let start = index
            for expected in word.utf8 {
                guard index < bytes.count, bytes[index] == expected else {
                    index = start
                    throw error("expected a value, found \(describeCurrent())")
                }
                index += 1
            }
        }

        mutating func string() throws(JSONSyntaxError) {
            index += 1  // the opening quote
            while index < bytes.count {
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    return
                case UInt8(ascii: "\\"):
                    index += 1
                    guard index < bytes.count else { break }
                    switch bytes[index] {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                         UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        index += 1
                    case UInt8(ascii: "u"):
                        index += 1
                        for _ in 0..<4 {
                            guard index < bytes.count, Character(Unicode.Scalar(bytes[index])).isHexDigit else {
                                throw error("expected four hex digits after \\u")
                            }
                            index += 1
                        }
                    default:
                        throw error("invalid escape \\\(Character(Unicode.Scalar(bytes[index])))")
                    }
                case 0x00..<0x20:
                    throw error("control character in a string (a newline inside quotes?)")
                default:
                    index += 1
                }
            }
            throw error("unterminated string")
        }

        mutating func number() throws(JSONSyntaxError) {
            func digits(_ scanner: inout Scanner) -> Int {
                var count = 0
                while scanner.index < scanner.bytes.count,
                      (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(scanner.bytes[scanner.index]) {
                    scanner.index += 1
                    count += 1
                }
                return count
            }
            if bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard index < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) else {
                throw error("expected a digit, found \(describeCurrent())")
            }
            if bytes[index] == UInt8(ascii: "0") {
                index += 1
            } else {
                _ = digits(&self)
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
                index += 1
                guard digits(&self) > 0 else { throw error("expected a digit after '.', found \(describeCurrent())") }
            }
            if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
                index += 1
                if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
                guard digits(&self) > 0 else { throw error("expected a digit in the exponent, found \(describeCurrent())") }
            }
        }
    }
}
