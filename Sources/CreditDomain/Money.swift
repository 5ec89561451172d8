/// The closed table of supported currencies (M1). Codes are upper-case ISO 4217; any other
/// spelling, including lower case, is not a currency here.
public enum Currency: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case JPY, KRW
    case AUD, CAD, CHF, DKK, EUR, GBP, NOK, SEK, USD
    case BHD, IQD, JOD, KWD, LYD, OMR, TND

    /// The currency with exactly this code, or nil (→ `invalid_request`).
    public init?(code: String) {
        self.init(rawValue: code)
    }

    public var code: String { rawValue }

    /// Digits after the decimal point of one major unit (only for parsing and printing).
    public var exponent: Int {
        switch self {
        case .JPY, .KRW: return 0
        case .AUD, .CAD, .CHF, .DKK, .EUR, .GBP, .NOK, .SEK, .USD: return 2
        case .BHD, .IQD, .JOD, .KWD, .LYD, .OMR, .TND: return 3
        }
    }

    public var description: String { rawValue }
}

/// An exact rational number, always reduced, with denominator > 0 (0 is 0/1).
public struct Rational: Sendable, Hashable, CustomStringConvertible {
    public let numerator: Int128
    public let denominator: Int128

    /// `numerator / denominator` reduced. `denominator` must not be 0; the values the domain
    /// builds are bounded far inside `Int128`, so the sign flip below cannot overflow.
    public init(_ numerator: Int128, _ denominator: Int128 = 1) {
        precondition(denominator != 0, "zero denominator")
        if numerator == 0 {
            self.numerator = 0
            self.denominator = 1
            return
        }
        let divisor = Int128(greatestCommonDivisor(numerator.magnitude, denominator.magnitude))
        var n = numerator / divisor
        var d = denominator / divisor
        if d < 0 { n = -n; d = -d }
        self.numerator = n
        self.denominator = d
    }

    /// `R(x) = floor(x + 1/2)` (M3), or nil when an intermediate leaves `Int128`.
    public var roundedHalfUp: Int128? {
        roundHalfUp(numerator, over: denominator)
    }

    public var description: String {
        denominator == 1 ? String(numerator) : "\(numerator)/\(denominator)"
    }
}

func greatestCommonDivisor(_ a: UInt128, _ b: UInt128) -> UInt128 {
    var (x, y) = (a, b)
    while y != 0 { (x, y) = (y, x % y) }
    return x
}

/// `R(n/d) = floorDiv(2n + d, 2d)` for `d > 0` (M3); nil on `Int128` overflow.
func roundHalfUp(_ numerator: Int128, over denominator: Int128) -> Int128? {
    let (twiceN, o1) = numerator.multipliedReportingOverflow(by: 2)
    let (shifted, o2) = twiceN.addingReportingOverflow(denominator)
    let (twiceD, o3) = denominator.multipliedReportingOverflow(by: 2)
    if o1 || o2 || o3 { return nil }
    return floorDivide(shifted, twiceD)
}

/// Overflow-checked arithmetic that reports failure as `amount_overflow` (M2), never traps.
enum Checked {
    static func multiply(_ a: Int128, _ b: Int128) throws(DomainError) -> Int128 {
        let (value, overflow) = a.multipliedReportingOverflow(by: b)
        if overflow { throw DomainError.amountOverflow }
        return value
    }

    static func add(_ a: Int128, _ b: Int128) throws(DomainError) -> Int128 {
        let (value, overflow) = a.addingReportingOverflow(b)
        if overflow { throw DomainError.amountOverflow }
        return value
    }

    static func toInt64(_ value: Int128) throws(DomainError) -> Int64 {
        guard let narrow = Int64(exactly: value) else { throw DomainError.amountOverflow }
        return narrow
    }

    static func multiply(_ a: Int64, _ b: Int64) throws(DomainError) -> Int64 {
        let (value, overflow) = a.multipliedReportingOverflow(by: b)
        if overflow { throw DomainError.amountOverflow }
        return value
    }

    static func add(_ a: Int64, _ b: Int64) throws(DomainError) -> Int64 {
        let (value, overflow) = a.addingReportingOverflow(b)
        if overflow { throw DomainError.amountOverflow }
        return value
    }

    static func round(_ numerator: Int128, over denominator: Int128) throws(DomainError) -> Int128 {
        guard let value = roundHalfUp(numerator, over: denominator) else { throw DomainError.amountOverflow }
        return value
    }
}
