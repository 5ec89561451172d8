/// A Monitoring Plugins threshold range, `[@]start:end`.
///
/// - `start` defaults to 0; `~` means −∞. An empty `end` means +∞.
/// - A value alerts when it is outside `start...end` (the endpoints are inside);
///   a leading `@` inverts this: alert when inside.
///
/// | text     | alerts when        |
/// |----------|--------------------|
/// | `10`     | x < 0 or x > 10    |
/// | `10:`    | x < 10             |
/// | `~:10`   | x > 10             |
/// | `10:20`  | x < 10 or x > 20   |
/// | `@10:20` | 10 ≤ x ≤ 20        |
public struct NagiosRange: Sendable, Equatable, CustomStringConvertible {
    /// Lower bound; nil is −∞.
    public var start: Double?
    /// Upper bound; nil is +∞.
    public var end: Double?
    /// `@`: alert inside the range instead of outside.
    public var inverted: Bool

    public init(start: Double? = 0, end: Double?, inverted: Bool = false) {
        self.start = start
        self.end = end
        self.inverted = inverted
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case empty
        case invalidNumber(String)
        case startAboveEnd(String)

        public var description: String {
            switch self {
            case .empty: return "empty range"
            case .invalidNumber(let text): return "invalid number in range: \(text)"
            case .startAboveEnd(let text): return "range start is above its end: \(text)"
            }
        }
    }

    /// Parses `[@][start:]end`, where `start` may be `~` or empty (0) and `end` may
    /// be empty (+∞) when a `:` is present.
    public init(parsing text: String) throws(ParseError) {
        var body = Substring(text)
        var inverted = false
        if body.hasPrefix("@") {
            inverted = true
            body = body.dropFirst()
        }
        guard !body.isEmpty else { throw .empty }
        var start: Double? = 0
        var end: Double?
        if let colon = body.firstIndex(of: ":") {
            let startText = body[..<colon]
            let endText = body[body.index(after: colon)...]
            if startText == "~" {
                start = nil
            } else if !startText.isEmpty {
                start = try Self.number(startText, in: text)
            }
            end = endText.isEmpty ? nil : try Self.number(endText, in: text)
        } else {
            end = try Self.number(body, in: text)
        }
        if let start, let end, start > end { throw .startAboveEnd(text) }
        self.init(start: start, end: end, inverted: inverted)
    }

    /// Accepts optional sign, digits and one decimal point (and an exponent);
    /// rejects `inf`, `nan` and hex, which Double's parser would take.
    private static func number(_ text: Substring, in whole: String) throws(ParseError) -> Double {
        let allowed = text.allSatisfy { "0123456789.+-eE".contains($0) }
        guard allowed, text.contains(where: \.isNumber), let value = Double(text), value.isFinite else {
            throw .invalidNumber(whole)
        }
        return value
    }

    /// True when `value` is inside `start...end` (endpoints included).
    public func contains(_ value: Double) -> Bool {
        if let start, value < start { return false }
        if let end, value > end { return false }
        return true
    }

    /// Whether `value` raises an alert for this threshold. NaN always alerts.
    public func alerts(_ value: Double) -> Bool {
        if value.isNaN { return true }
        return inverted ? contains(value) : !contains(value)
    }

    /// The canonical text, as used in perfdata warn/crit fields: `10`, `10:`,
    /// `~:10`, `@10:20`.
    public var description: String {
        let prefix = inverted ? "@" : ""
        let endText = end.map(DecimalFormatting.plain) ?? ""
        switch start {
        case nil:
            return prefix + "~:" + endText
        case 0? where end != nil:
            return prefix + endText
        case let value?:
            return prefix + DecimalFormatting.plain(value) + ":" + endText
        }
    }
}
