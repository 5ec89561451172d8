/// One Monitoring Plugins performance datum:
/// `'label'=value[UOM];[warn];[crit];[min];[max]`.
public struct PerfData: Sendable, Equatable {
    /// Units of measurement the plugin guidelines allow.
    public enum Unit: String, Sendable, CaseIterable {
        case none = ""
        case seconds = "s"
        case milliseconds = "ms"
        case microseconds = "us"
        case percent = "%"
        case bytes = "B"
        case kilobytes = "KB"
        case megabytes = "MB"
        case terabytes = "TB"
        case counter = "c"
    }

    public enum Value: Sendable, Equatable {
        case number(Double)
        /// Rendered `U`: the value could not be determined.
        case unknown
    }

    public var label: String
    public var value: Value
    public var unit: Unit
    public var warning: NagiosRange?
    public var critical: NagiosRange?
    public var minimum: Double?
    public var maximum: Double?

    public init(
        label: String,
        value: Value,
        unit: Unit = .none,
        warning: NagiosRange? = nil,
        critical: NagiosRange? = nil,
        minimum: Double? = nil,
        maximum: Double? = nil
    ) {
        self.label = label
        self.value = value
        self.unit = unit
        self.warning = warning
        self.critical = critical
        self.minimum = minimum
        self.maximum = maximum
    }

    public init(
        label: String,
        _ number: Double,
        unit: Unit = .none,
        warning: NagiosRange? = nil,
        critical: NagiosRange? = nil,
        minimum: Double? = nil,
        maximum: Double? = nil
    ) {
        self.init(
            label: label, value: .number(number), unit: unit,
            warning: warning, critical: critical, minimum: minimum, maximum: maximum
        )
    }

    /// The label as written: always single-quoted, a literal `'` doubled, and `=`
    /// (never allowed) and control characters replaced by `_`.
    public static func quotedLabel(_ label: String) -> String {
        var result = "'"
        for character in label {
            switch character {
            case "'": result += "''"
            case "=": result += "_"
            case _ where character.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }):
                result += "_"
            default: result.append(character)
            }
        }
        return result + "'"
    }

    /// `'label'=value[UOM];warn;crit;min;max`, with every separator present.
    public var formatted: String {
        let valueText: String
        switch value {
        case .unknown:
            valueText = "U"
        case .number(let number):
            valueText = number.isFinite ? DecimalFormatting.plain(number) + unit.rawValue : "U"
        }
        let fields = [
            warning?.description ?? "",
            critical?.description ?? "",
            minimum.flatMap { $0.isFinite ? DecimalFormatting.plain($0) : nil } ?? "",
            maximum.flatMap { $0.isFinite ? DecimalFormatting.plain($0) : nil } ?? "",
        ]
        return Self.quotedLabel(label) + "=" + valueText + ";" + fields.joined(separator: ";")
    }

    /// Plugin guidelines: the first 19 characters of each label must be unique.
    public static let significantLabelLength = 19

    /// The label's significant prefix, used to spot collisions.
    public var labelKey: Substring { label.prefix(Self.significantLabelLength) }
}
