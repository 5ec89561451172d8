/// Finds the first JSON syntax error in a document and says where it is, for errors a person
/// can act on ("line 3, column 9: expected ':'"): a config file's, or an import line's.
/// Foundation's decoders on Linux say only "The given data was not valid JSON".
/// This is a checker, not a parser: it accepts exactly RFC 8259 JSON, and refuses a key that
/// appears twice in one object. RFC 8259 leaves such an object's meaning to the reader, and
/// readers disagree: Foundation's decoder keeps the first value, jq and Python the last, so
/// the same file would configure or import differently depending on who read it.
public struct JSONSyntaxError: Error, Equatable, CustomStringConvertible, Sendable {
    public let line: Int
    public let column: Int
    public let message: String
    /// For a key given twice, where it first appeared.
    public let first: (line: Int, column: Int)?

    public var description: String {
        "line \(line), column \(column): \(message)" + (first.map { " (first at line \($0.line), column \($0.column))" } ?? "")
    }

    /// The same without lines, for a text of one line (an import's JSON line).
    public var withinLine: String {
        "column \(column): \(message)" + (first.map { " (first at column \($0.column))" } ?? "")
    }

    public static func == (left: Self, right: Self) -> Bool {
        left.line == right.line && left.column == right.column && left.message == right.message
            && left.first?.line == right.first?.line && left.first?.column == right.first?.column
    }

    /// nil when `bytes` is well-formed JSON with no key twice in one object.
    public static func find(in bytes: some Collection<UInt8>) -> JSONSyntaxError? {
        var scanner = Scanner(bytes: Array(bytes))
        do throws(JSONSyntaxError) {
            try scanner.checkUTF8()
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

        func error(_ message: String, at position: Int? = nil, first: Int? = nil) -> JSONSyntaxError {
            let (line, column) = place(position ?? index)
            return JSONSyntaxError(line: line, column: column, message: message, first: first.map(place))
        }

        /// Line and column (in characters, not bytes) of a byte offset.
        func place(_ position: Int) -> (line: Int, column: Int) {
            var line = 1
            var lineStart = 0
            for (offset, byte) in bytes[..<min(position, bytes.count)].enumerated() where byte == UInt8(ascii: "\n") {
                line += 1
                lineStart = offset + 1
            }
            // Columns count characters, not bytes: skip UTF-8 continuation bytes.
            let column = bytes[lineStart..<min(position, bytes.count)].filter { $0 & 0xC0 != 0x80 }.count + 1
            return (line, column)
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
                // Each key's text (escapes decoded) and where it first appeared.
                var keys: [[UInt8]: Int] = [:]
                while true {
                    skipSpace()
                    guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else {
                        throw error("expected a key in double quotes, found \(describeCurrent())")
                    }
                    let keyStart = index
                    try string()
                    let key = Self.unescaped(bytes[(keyStart + 1)..<(index - 1)])
                    if let first = keys[key] {
                        throw error("key \"\(String(decoding: key, as: UTF8.self))\" appears twice in one object", at: keyStart, first: first)
                    }
                    keys[key] = keyStart
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

        /// The text of a well-formed string's contents, its escapes decoded, as UTF-8: keys are
        /// compared by what they say ("a" and "\\u0061" are one key), scalar by scalar.
        static func unescaped(_ raw: ArraySlice<UInt8>) -> [UInt8] {
            guard raw.contains(UInt8(ascii: "\\")) else { return Array(raw) }
            var out: [UInt8] = []
            var index = raw.startIndex
            func hex4(_ at: Int) -> UInt32 {
                raw[at..<(at + 4)].reduce(0) { value, byte in
                    value << 4 | UInt32(Character(Unicode.Scalar(byte)).hexDigitValue ?? 0)
                }
            }
            while index < raw.endIndex {
                let byte = raw[index]
                guard byte == UInt8(ascii: "\\") else {
                    out.append(byte)
                    index += 1
                    continue
                }
                let kind = raw[index + 1]
                index += 2
                switch kind {
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"):
                    var unit = hex4(index)
                    index += 4
                    // A surrogate pair written as two escapes is one scalar. A lone surrogate
                    // is no scalar: it is kept as its own three bytes (as WTF-8 writes it), so
                    // that "\uD800" and "\uD801" stay two keys.
                    if (0xD800..<0xDC00).contains(unit), index + 6 <= raw.endIndex,
                       raw[index] == UInt8(ascii: "\\"), raw[index + 1] == UInt8(ascii: "u"),
                       case let low = hex4(index + 2), (0xDC00..<0xE000).contains(low) {
                        unit = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)
                        index += 6
                    }
                    if let scalar = Unicode.Scalar(unit) {
                        out.append(contentsOf: String(scalar).utf8)
                    } else {
                        out += [UInt8(0xE0 | unit >> 12), UInt8(0x80 | (unit >> 6) & 0x3F), UInt8(0x80 | unit & 0x3F)]
                    }
                default: out.append(kind)  // \" \\ \/
                }
            }
            return out
        }

        /// RFC 8259 text is UTF-8; Foundation refuses anything else as "not valid JSON", with
        /// no place. The error points at the first byte that is not UTF-8.
        func checkUTF8() throws(JSONSyntaxError) {
            var decoder = Unicode.UTF8()
            var iterator = bytes.makeIterator()
            var offset = 0
            while true {
                switch decoder.decode(&iterator) {
                case .scalarValue(let scalar): offset += UTF8.width(scalar)
                case .emptyInput: return
                case .error: throw error("byte 0x\(String(bytes[offset], radix: 16, uppercase: true)) is not UTF-8 (the file must be UTF-8)",
                                         at: offset)
                }
            }
        }

        /// A number, which must also be one a reader can hold: RFC 8259 sets no limit, but a
        /// magnitude past a 64-bit float's (`1e400`) is refused by every common reader
        /// (Foundation as "not valid JSON", with no place).
        mutating func number() throws(JSONSyntaxError) {
            let start = index
            try scanNumber()
            let text = String(decoding: bytes[start..<index], as: UTF8.self)
            if let value = Double(text), value.isInfinite {
                throw error("the number \(text) is too large for any reader (past a 64-bit float's range)", at: start)
            }
        }

        private mutating func scanNumber() throws(JSONSyntaxError) {
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
