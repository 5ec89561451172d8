/// Monitoring Plugins service states; the exit code, not the text, is what Nagios reads.
public enum PluginState: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case ok = 0
    case warning = 1
    case critical = 2
    case unknown = 3

    public var exitCode: Int32 { rawValue }

    public var description: String {
        switch self {
        case .ok: return "OK"
        case .warning: return "WARNING"
        case .critical: return "CRITICAL"
        case .unknown: return "UNKNOWN"
        }
    }

    /// CRITICAL if `critical` alerts, else WARNING if `warning` alerts, else OK.
    public static func evaluate(_ value: Double, warning: NagiosRange?, critical: NagiosRange?) -> PluginState {
        if let critical, critical.alerts(value) { return .critical }
        if let warning, warning.alerts(value) { return .warning }
        return .ok
    }
}

/// A plugin's verdict and its output text.
///
/// `rendered()` gives `CREDITD <STATE> - text | perfdata` plus optional long-text
/// lines, always under `maximumBytes` (1 KB, the old NRPE limit).
public struct PluginResult: Sendable, Equatable {
    public var state: PluginState
    /// One line of text after `STATE - `.
    public var text: String
    public var perfData: [PerfData]
    /// Extra lines after the first (shown with `-v`).
    public var longText: [String]

    public static let defaultServiceName = "CREDITD"
    /// Whole output, newline included, stays strictly below 1024 bytes.
    public static let maximumBytes = 1023

    public init(state: PluginState, text: String, perfData: [PerfData] = [], longText: [String] = []) {
        self.state = state
        self.text = text
        self.perfData = perfData
        self.longText = longText
    }

    public var exitCode: Int32 { state.exitCode }

    /// The output, ending with a newline, at most `maximumBytes` bytes.
    ///
    /// Text is made single-line and a `|` in it becomes `/` (it would start
    /// perfdata). Perfdata whose first 19 label characters repeat an earlier one is
    /// dropped. To fit the limit, long-text lines go first, then perfdata from the
    /// end (the text then says how many items were left out), then the text is shortened.
    public func rendered(serviceName: String = defaultServiceName, maximumBytes: Int = maximumBytes) -> String {
        let head = "\(serviceName) \(state) - "
        var summary = Self.sanitizedLine(text)

        var seen = Set<Substring>()
        var data = perfData.filter { seen.insert($0.labelKey).inserted }.map(\.formatted)
        var extra = longText.map(Self.sanitizedLine)
        var leftOut = 0
        // Said in the text, so that a series missing from a graph has a reason on record.
        func leftOutNote() -> String { leftOut > 0 ? " (\(leftOut) perfdata left out: 1 KB limit)" : "" }

        func assemble() -> String {
            var first = head + summary + leftOutNote()
            if !data.isEmpty { first += " | " + data.joined(separator: " ") }
            return ([first] + extra).joined(separator: "\n") + "\n"
        }

        var output = assemble()
        while output.utf8.count > maximumBytes, !extra.isEmpty {
            extra.removeLast()
            output = assemble()
        }
        while output.utf8.count > maximumBytes, !data.isEmpty {
            data.removeLast()
            leftOut += 1
            output = assemble()
        }
        if output.utf8.count > maximumBytes {
            // The note stays (every series was left out); the text gives way to it.
            let room = max(0, maximumBytes - head.utf8.count - leftOutNote().utf8.count - 1)
            summary = Self.truncated(summary, toBytes: room)
            output = assemble()
        }
        return output
    }

    static func sanitizedLine(_ text: String) -> String {
        String(text.map { character -> Character in
            if character == "|" { return "/" }
            if character.isNewline { return " " }
            return character
        })
    }

    /// Cuts on a character boundary so the result is valid UTF-8 within `limit` bytes.
    static func truncated(_ text: String, toBytes limit: Int) -> String {
        var result = ""
        var used = 0
        for character in text {
            let size = String(character).utf8.count
            if used + size > limit { break }
            result.append(character)
            used += size
        }
        return result
    }
}
