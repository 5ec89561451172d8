/// Decimal rendering of Doubles for plugin perfdata and the Prometheus text format.
///
/// Swift's shortest round-trip `description` switches to exponent notation for
/// small and large values ("1e-05"); Nagios perfdata allows only `[-0-9.]`, so the
/// exponent is expanded here. The digits stay the shortest round-trip ones.
enum DecimalFormatting {
    /// Plain decimal, no exponent: `4`, `0.0021`, `-12.5`, `0.00001`.
    /// NaN and infinities have no plain form; callers handle them first.
    static func plain(_ value: Double) -> String {
        precondition(value.isFinite, "plain decimal of a non-finite value")
        if value == 0 { return "0" }
        if value == value.rounded(), abs(value) < 9_007_199_254_740_992 {
            return String(Int64(value))
        }
        let text = value.description
        guard let exponentIndex = text.firstIndex(where: { $0 == "e" || $0 == "E" }) else {
            return text
        }
        let exponent = Int(text[text.index(after: exponentIndex)...])!
        var mantissa = String(text[..<exponentIndex])
        let negative = mantissa.hasPrefix("-")
        if negative { mantissa.removeFirst() }
        let parts = mantissa.split(separator: ".", omittingEmptySubsequences: false)
        let integerDigits = String(parts[0])
        var fractionDigits = parts.count > 1 ? String(parts[1]) : ""
        if fractionDigits == "0" { fractionDigits = "" }
        let digits = integerDigits + fractionDigits
        // Position of the decimal point within `digits` after shifting.
        let point = integerDigits.count + exponent
        var result: String
        if point <= 0 {
            result = "0." + String(repeating: "0", count: -point) + digits
        } else if point >= digits.count {
            result = digits + String(repeating: "0", count: point - digits.count)
        } else {
            let split = digits.index(digits.startIndex, offsetBy: point)
            result = String(digits[..<split]) + "." + String(digits[split...])
        }
        if result.contains(".") {
            while result.hasSuffix("0") { result.removeLast() }
            if result.hasSuffix(".") { result.removeLast() }
        }
        return (negative ? "-" : "") + result
    }

    /// Prometheus sample value: `NaN`, `+Inf`, `-Inf`, integers without `.0`,
    /// otherwise Swift's shortest round-trip form (exponents are valid there).
    static func prometheus(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 9_007_199_254_740_992 {
            return String(Int64(value))
        }
        return value.description
    }

    /// An integer count of billionths as an exact decimal: 300000000 -> `0.3`, 2000000000 -> `2`.
    static func billionths(_ value: Int64) -> String {
        let magnitude = value.magnitude
        var text = String(magnitude / 1_000_000_000)
        var fraction = String(magnitude % 1_000_000_000)
        if fraction != "0" {
            fraction = String(repeating: "0", count: 9 - fraction.count) + fraction
            while fraction.hasSuffix("0") { fraction.removeLast() }
            text += "." + fraction
        }
        return (value < 0 ? "-" : "") + text
    }
}
