import ArgumentParser
import CreditClient
import CreditDomain
import CreditProto
import CreditWire
import Foundation
import JSONCheck
import SwiftProtobuf

// `creditctl import` (O5, ImportSubscription in bulk) and `creditctl export` (the book as JSON
// lines or CSV). The subscription export carries the import columns, so that importing an
// export of the active subscriptions into an empty daemon on the same day reproduces them.

enum FileFormat: String, ExpressibleByArgument, CaseIterable {
    case jsonl, csv
    init?(argument: String) {
        switch argument.lowercased() {
        case "jsonl", "json", "ndjson": self = .jsonl
        case "csv": self = .csv
        default: return nil
        }
    }
}

// MARK: - CSV

enum CSV {
    /// One field, quoted when it holds a comma, quote, line break or edge space (RFC 4180).
    static func field(_ text: String) -> String {
        var out: [UInt8] = []
        appendField(text, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends one field as `field` gives it, working on the UTF-8 bytes.
    static func appendField(_ text: String, to out: inout [UInt8]) {
        var text = text
        text.withUTF8 { bytes in
            let special = bytes.contains { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\"") || $0 == 0x0A || $0 == 0x0D }
                || bytes.first == UInt8(ascii: " ") || bytes.last == UInt8(ascii: " ")
            guard special else {
                out.append(contentsOf: bytes)
                return
            }
            out.append(UInt8(ascii: "\""))
            for byte in bytes {
                if byte == UInt8(ascii: "\"") { out.append(byte) }
                out.append(byte)
            }
            out.append(UInt8(ascii: "\""))
        }
    }

    static func row(_ fields: [String]) -> String { fields.map(field).joined(separator: ",") + "\r\n" }

    /// Splits one record into fields (RFC 4180); nil when a quote is not closed or stray text
    /// follows one. It works on the UTF-8 bytes: the comma, the quote and the line breaks are
    /// ASCII, never part of a multi-byte sequence, and every other byte is kept as it is. On
    /// Swift Characters (grapheme clusters) a quoted "\r\n" is one Character, and a field that
    /// starts with a combining mark joins the comma or quote before it into one, so an export
    /// did not import as it was written.
    static func parse(_ record: ArraySlice<UInt8>) -> [String]? {
        let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ",")
        var fields: [String] = []
        var current: [UInt8] = []
        var quoted = false, wasQuoted = false
        var index = record.startIndex
        while index < record.endIndex {
            let byte = record[index]
            index += 1
            if quoted {
                if byte == quote {
                    if index < record.endIndex, record[index] == quote {
                        current.append(quote)
                        index += 1
                    } else {
                        quoted = false
                    }
                } else {
                    current.append(byte)
                }
            } else if byte == comma {
                fields.append(String(decoding: current, as: UTF8.self))
                current.removeAll(keepingCapacity: true)
                wasQuoted = false
            } else if byte == quote {
                guard current.isEmpty, !wasQuoted else { return nil }
                quoted = true
                wasQuoted = true
            } else {
                if wasQuoted { return nil }
                current.append(byte)
            }
        }
        if quoted { return nil }
        fields.append(String(decoding: current, as: UTF8.self))
        return fields
    }

    static func parse(_ line: some StringProtocol) -> [String]? { parse(ArraySlice(line.utf8)) }

    /// The records of a file, split at LF or CR LF, each with the number of the line it starts
    /// on. With `quotedBreaks` (CSV) a quoted field may hold line breaks, as export writes them:
    /// the record goes on until its quotes balance, and its CR, LF and CR LF are kept as they
    /// are. `unclosed` is the line of a record whose quote is never closed.
    static func records(_ bytes: [UInt8], quotedBreaks: Bool) -> (records: [(line: Int, bytes: ArraySlice<UInt8>)], unclosed: Int?) {
        let quote = UInt8(ascii: "\""), lf = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r")
        var records: [(line: Int, bytes: ArraySlice<UInt8>)] = []
        var start = 0, startLine = 1, line = 1
        var quoted = false
        func close(_ end: Int) {
            var end = end
            if end > start, bytes[end - 1] == cr { end -= 1 }
            records.append((startLine, bytes[start..<end]))
        }
        for index in bytes.indices {
            let byte = bytes[index]
            if quotedBreaks, byte == quote { quoted.toggle() }
            guard byte == lf else { continue }
            line += 1
            if quoted { continue }
            close(index)
            start = index + 1
            startLine = line
        }
        if quoted { return (records, startLine) }
        if start < bytes.count { close(bytes.count) }
        return (records, nil)
    }
}

// MARK: - Import

enum JSONText {
    /// A JSON string literal.
    static func quoted(_ text: String) -> String {
        var out: [UInt8] = []
        appendQuoted(text, to: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Appends `text` as a JSON string literal, escaping the quote, the backslash and the
    /// control characters (RFC 8259 §7). Works on the UTF-8 bytes: every other byte, multi-byte
    /// sequences included, is copied as it is, so a row costs a few copies, not a string per field.
    static func appendQuoted(_ text: String, to out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var text = text
        text.withUTF8 { bytes in
            var start = 0
            for index in 0..<bytes.count {
                let byte = bytes[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start..<index]))
                switch byte {
                case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
                case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
                case UInt8(ascii: "\n"): out.append(contentsOf: #"\n"#.utf8)
                case UInt8(ascii: "\r"): out.append(contentsOf: #"\r"#.utf8)
                case UInt8(ascii: "\t"): out.append(contentsOf: #"\t"#.utf8)
                default:
                    let hex = Array("0123456789abcdef".utf8)
                    out.append(contentsOf: #"\u00"#.utf8)
                    out.append(hex[Int(byte >> 4)])
                    out.append(hex[Int(byte & 0x0F)])
                }
                start = index + 1
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[start...]))
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// One value of a JSON lines object, as JSON typed it. JSONSerialization gives booleans as
/// NSNumber, which took `true` for 1 and `false` for 0 in a number column.
enum JSONField: Decodable {
    case string(String)
    /// An integer, or the text of another number (which then is "not an integer").
    case number(String)
    case bool(Bool)
    case null
    case nested

    init(from decoder: any Swift.Decoder) throws {
        let value = try decoder.singleValueContainer()
        if value.decodeNil() {
            self = .null
        } else if let bool = try? value.decode(Bool.self) {
            self = .bool(bool)
        } else if let integer = try? value.decode(Int64.self) {
            self = .number(String(integer))
        } else if let double = try? value.decode(Double.self) {
            self = .number(String(double))
        } else if let string = try? value.decode(String.self) {
            self = .string(string)
        } else {
            self = .nested
        }
    }

    /// The columns that take a number; the others take a string.
    static let numberColumns: Set<String> = ["seats", "unit_price_minor", "current_period_charged_minor"]

    /// The import's columns of one object as text, each checked against its JSON type:
    /// a number column takes a number (or its digits as a string, as CSV has them), a text
    /// column a string; a boolean, an object or an array is refused. Keys that are not
    /// columns (the rest of an export) are ignored, whatever they hold.
    static func fields(_ object: [String: JSONField]) -> Result<[String: String], ImportValidator.Reason> {
        var fields: [String: String] = [:]
        for (key, value) in object.sorted(by: { $0.key < $1.key }) {
            guard ImportValidator.columns.contains(key) || key == "status" else { continue }
            let wants = numberColumns.contains(key) ? "a number" : "a string"
            switch value {
            case .null: continue
            case .string(let text): fields[key] = text
            case .number(let text) where numberColumns.contains(key): fields[key] = text
            case .number(let text): return .failure(.init(text: "\(key) is the number \(text); it takes a string (\"\(text)\")"))
            case .bool(let bool): return .failure(.init(text: "\(key) is \(bool); it takes \(wants)"))
            case .nested: return .failure(.init(text: "\(key) is an object or array; it takes \(wants)"))
            }
        }
        return .success(fields)
    }
}

/// One validated line of an import file.
struct ImportRow: Sendable {
    let line: Int
    let request: Creditd_V1_ImportSubscriptionRequest
}

struct ImportProblem: Sendable {
    let line: Int
    let reason: String
}

/// Reads and checks a whole import file (JSON lines or CSV with a header row).
struct ImportValidator {
    static let columns = ["subscription_id", "customer", "plan", "seats", "unit_price_minor", "currency", "interval",
                          "time_zone", "refund_policy", "start_date", "current_period_charged_minor"]

    /// `now`: the daemon's instant; a start date after today in the row's zone is refused.
    /// `bytes` is UTF-8 text.
    static func validate(bytes: [UInt8], format: FileFormat?, now: Int64) -> (rows: [ImportRow], problems: [ImportProblem]) {
        var rows: [ImportRow] = []
        var problems: [ImportProblem] = []
        // Ids are sequences of Unicode scalars (billing-rules.md O2): "café" with U+00E9 and with
        // "e" + U+0301 are two subscriptions, though Swift's String == calls them equal
        // (canonical equivalence). Their UTF-8 bytes are equal exactly when their scalars are.
        var seen: [[UInt8]: Int] = [:]
        func blank(_ record: ArraySlice<UInt8>) -> Bool {
            record.allSatisfy { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") }
        }
        let firstContent = bytes.firstIndex { ![UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"), UInt8(ascii: "\n")].contains($0) }
        if format != .csv, let firstContent, bytes[firstContent] == UInt8(ascii: "[") {
            // A JSON array (what many tools write) is not JSON lines; read as CSV, it only got
            // "malformed CSV line".
            let line = 1 + bytes[..<firstContent].count { $0 == UInt8(ascii: "\n") }
            problems.append(ImportProblem(line: line,
                reason: "the file is a JSON array; import reads JSON lines, one object per line (jq -c '.[]' converts an array)"))
            return (rows, problems)
        }
        let format = format ?? (firstContent.map { bytes[$0] } == UInt8(ascii: "{") ? .jsonl : .csv)
        let decoder = JSONDecoder()
        var header: [String]? = nil
        let (records, unclosed) = CSV.records(bytes, quotedBreaks: format == .csv)
        if let unclosed {
            problems.append(ImportProblem(line: unclosed,
                reason: "malformed CSV: a quoted field opened on this line is never closed (it takes in the rest of the file)"))
        }
        for (number, line) in records {
            if blank(line) { continue }
            var fields: [String: String] = [:]
            switch format {
            case .csv:
                guard let cells = CSV.parse(line) else {
                    problems.append(ImportProblem(line: number, reason: "malformed CSV line (unbalanced quotes)")); continue
                }
                guard let names = header else {
                    let names = cells.map { $0.trimmingCharacters(in: .whitespaces).lowercased() }
                    // A column named twice would have its last value win, unseen.
                    if let twice = names.enumerated().first(where: { !$0.element.isEmpty && names[..<$0.offset].contains($0.element) }) {
                        let first = names.firstIndex(of: twice.element)!
                        problems.append(ImportProblem(line: number,
                            reason: "header row names column \(twice.element) twice (columns \(first + 1) and \(twice.offset + 1))"))
                        return (rows, problems)
                    }
                    let missing = ["subscription_id", "seats", "unit_price_minor", "currency", "start_date"].filter { !names.contains($0) }
                    if !missing.isEmpty {
                        problems.append(ImportProblem(line: number, reason: "header row lacks column(s) \(missing.joined(separator: ", "))"))
                        return (rows, problems)
                    }
                    header = names
                    continue
                }
                guard cells.count == names.count else {
                    problems.append(ImportProblem(line: number, reason: "malformed line: \(cells.count) fields, the header has \(names.count)")); continue
                }
                for (name, value) in zip(names, cells) { fields[name] = value }
            case .jsonl:
                // Where the line is wrong, and a key given twice (which value would count
                // depends on the reader: Foundation keeps the first, jq the last).
                if let syntax = JSONSyntaxError.find(in: line) {
                    problems.append(ImportProblem(line: number, reason: "malformed JSON at \(syntax.withinLine)")); continue
                }
                guard let object = try? decoder.decode([String: JSONField].self, from: Data(line)) else {
                    problems.append(ImportProblem(line: number, reason: "malformed line: not a JSON object")); continue
                }
                switch JSONField.fields(object) {
                case .success(let found): fields = found
                case .failure(let reason): problems.append(ImportProblem(line: number, reason: reason.text)); continue
                }
            }
            switch row(fields, now: now) {
            case .failure(let reason):
                problems.append(ImportProblem(line: number, reason: reason.text))
            case .success(let request):
                let id = Array(request.subscriptionID.utf8)
                if let first = seen[id] {
                    problems.append(ImportProblem(line: number, reason: "duplicated id \(request.subscriptionID) (first on line \(first))"))
                    continue
                }
                seen[id] = number
                rows.append(ImportRow(line: number, request: request))
            }
        }
        return (rows, problems.sorted { $0.line < $1.line })
    }

    struct Reason: Error { let text: String }

    static func row(_ f: [String: String], now: Int64) -> Result<Creditd_V1_ImportSubscriptionRequest, Reason> {
        func text(_ key: String) -> String { (f[key] ?? "").trimmingCharacters(in: .whitespaces) }
        func integer(_ key: String) -> Result<Int64?, Reason> {
            let value = text(key)
            if value.isEmpty { return .success(nil) }
            guard let number = Int64(value) else { return .failure(Reason(text: "\(key) is not an integer: \(value)")) }
            return .success(number)
        }
        var r = Creditd_V1_ImportSubscriptionRequest()
        r.subscriptionID = f["subscription_id"] ?? ""
        guard !r.subscriptionID.isEmpty else { return .failure(Reason(text: "subscription_id is missing")) }
        guard r.subscriptionID.unicodeScalars.count <= 255 else { return .failure(Reason(text: "subscription_id is longer than 255 Unicode scalars")) }
        r.customer = f["customer"] ?? ""
        r.plan = f["plan"] ?? ""
        // Like interval and refund_policy, the status is read without regard to case.
        let status = text("status")
        if !status.isEmpty, status.lowercased() != "active" {
            return .failure(Reason(text: "status \(status): only active subscriptions can be imported (status active, or no status column)"))
        }
        switch integer("seats") {
        case .failure(let e): return .failure(e)
        case .success(let v):
            guard let v else { return .failure(Reason(text: "seats is missing")) }
            guard v >= 1 else { return .failure(Reason(text: "seats must be at least 1: \(v)")) }
            r.seats = v
        }
        switch integer("unit_price_minor") {
        case .failure(let e): return .failure(e)
        case .success(let v):
            guard let v else { return .failure(Reason(text: "unit_price_minor is missing")) }
            guard v >= 0 else { return .failure(Reason(text: "negative unit_price_minor: \(v)")) }
            r.unitPriceMinor = v
        }
        let currency = text("currency").uppercased()
        guard Currency(code: currency) != nil else {
            return .failure(Reason(text: currency.isEmpty ? "currency is missing" : "unknown currency \(text("currency"))"))
        }
        r.currency = currency
        switch text("interval").lowercased() {
        case "", "monthly": r.interval = .monthly
        case "annual", "yearly": r.interval = .annual
        case let other: return .failure(Reason(text: "unknown interval \(other) (monthly or annual)"))
        }
        let zoneText = text("time_zone").isEmpty ? "UTC" : text("time_zone")
        guard let zone = TimeZoneRules(identifier: zoneText) else { return .failure(Reason(text: "unknown time zone \(zoneText)")) }
        r.timeZone = zoneText
        switch text("refund_policy").lowercased().replacingOccurrences(of: "-", with: "_") {
        case "", "anytime": r.refundPolicy = .anytime
        case "window_7d": r.refundPolicy = .window7D
        case "window_72h": r.refundPolicy = .window72H
        case let other: return .failure(Reason(text: "unknown refund_policy \(other) (anytime, window_7d or window_72h)"))
        }
        let start = text("start_date")
        guard !start.isEmpty else { return .failure(Reason(text: "start_date is missing")) }
        guard let startDate = CivilDate(start) else { return .failure(Reason(text: "start_date is not a date YYYY-MM-DD: \(start)")) }
        let today = zone.civilDate(of: Instant(nanosecondsSinceEpoch: now))
        guard startDate <= today else {
            return .failure(Reason(text: "start date \(start) is in the future (today is \(today) in \(zoneText))"))
        }
        r.startDate = start
        switch integer("current_period_charged_minor") {
        case .failure(let e): return .failure(e)
        case .success(let v):
            if let v {
                guard v >= 0 else { return .failure(Reason(text: "negative current_period_charged_minor: \(v)")) }
                r.currentPeriodChargedMinor = v
                r.currentPeriodChargedSet = true
            }
        }
        return .success(r)
    }
}

/// Progress on stderr: a bar with rate and time left on a terminal, periodic lines otherwise.
final class ImportProgress {
    let total: Int
    let terminal = isatty(STDERR_FILENO) == 1
    let started = ContinuousClock.now
    var lastReport = ContinuousClock.now
    let interval: Duration

    /// `import` for the writing pass, `check` for the daemon's check before it.
    let phase: String

    init(total: Int, phase: String) {
        self.total = total
        self.phase = phase
        interval = terminal ? .milliseconds(200) : .seconds(2)
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

    /// `counts`: what the rows came to so far, e.g. `imported 3 skipped 0 failed 0`.
    func update(done: Int, counts: @autoclosure () -> String, force: Bool = false) {
        let now = ContinuousClock.now
        guard force || now - lastReport >= interval else { return }
        lastReport = now
        let elapsed = max(ImportProgress.seconds(now - started), 0.001)
        let rate = Double(done) / elapsed
        let left = rate > 0 ? Double(total - done) / rate : 0
        let percent = total == 0 ? 100 : done * 100 / total
        if terminal {
            let width = 30
            let filled = total == 0 ? width : done * width / total
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            // The last update clears the bar: the summary that follows is what stays on screen.
            let line = force ? "\r\u{1B}[K"
                : String(format: "\r%@ [%@] %d/%d %3d%% %.0f/s ETA %ds ", phase, bar, done, total, percent, rate, Int(left.rounded()))
            FileHandle.standardError.write(Data(line.utf8))
        } else {
            let line = "\(phase): \(done)/\(total) (\(percent)%) \(counts()), \(String(format: "%.0f", rate))/s, \(Int(left.rounded()))s left\n"
            FileHandle.standardError.write(Data(line.utf8))
        }
    }
}

struct Import: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Import existing subscriptions (ImportSubscription) from JSON lines or CSV, keeping their billing dates.",
        discussion: """
            Columns (CSV header row, or JSON keys): subscription_id, customer, plan, seats, unit_price_minor, \
            currency, interval (monthly|annual), time_zone (IANA), refund_policy (anytime|window_7d|window_72h), \
            start_date (YYYY-MM-DD), current_period_charged_minor (optional; default price x seats). \
            Other columns (those of `export subscriptions`) are ignored, except status, which must be active.

            The whole file is checked first, by creditctl and then by the daemon (every row sent with \
            dry_run); every bad line is reported with its number and nothing is written (exit 65). \
            A subscription that already exists counts as skipped, so an interrupted import can simply \
            be run again. Exit 0 when nothing failed, 1 when a row was refused after the check (a \
            change in between); a lost connection or writes refused by the daemon stop the import \
            with that status's code (69 for UNAVAILABLE).
            """)

    @OptionGroup var connection: ConnectionOptions
    @OptionGroup var output: OutputOptions
    @Argument(help: "File to import; - for standard input.") var file: String
    @Option(help: "jsonl or csv (default: by the file's first character).") var format: FileFormat?
    @Flag(name: .customLong("dry-run"), help: "Only check the file; change nothing.") var dryRun = false
    @Option(name: .customLong("in-flight"), help: "Calls in flight at once (1-1000).") var inFlight: Int = 64

    func validate() throws {
        guard (1...1000).contains(inFlight) else { throw ValidationError("--in-flight must be 1-1000") }
    }

    func run() async throws {
        var bytes = try LocalFile.read(file)
        guard String(validating: bytes, as: UTF8.self) != nil else {
            throw CommandFailure(exitCode: CtlExit.dataError, codeName: nil, message: "\(file == "-" ? "standard input" : file) is not UTF-8 text")
        }
        // A byte order mark (spreadsheets write one) is not part of the first column's name.
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }
        let format = self.format, dryRun = self.dryRun, inFlight = self.inFlight, output = self.output.output
        let name = file == "-" ? "<stdin>" : file
        let outcome: Int32 = try await withSession(connection) { [bytes] session in
            let clock = try await session.call(MethodTable.Admin.getClock, Creditd_V1_GetClockRequest())
            var (rows, problems) = ImportValidator.validate(bytes: bytes, format: format, now: clock.nowUnixNanos)
            // The file alone cannot tell every row the daemon refuses: the seat maximum it was
            // started with (--max-seats), price x seats past Int64 (amount_overflow, M1), and
            // whatever O5 checks next. So every row that passed here is sent once with dry_run
            // (answered as the import would be, nothing changed), and nothing is written unless
            // all of them would be accepted. Those already there are known from it too.
            let check = try await Import.check(rows, session: session, inFlight: inFlight, name: name)
            problems += check.refused
            if !problems.isEmpty {
                var report = ""
                for p in problems.sorted(by: { $0.line < $1.line }) {
                    report += "\(terminalSafe(name)):\(p.line): \(terminalSafe(p.reason))\n"
                }
                report += "creditctl: import: \(problems.count) bad line(s); nothing was imported\n"
                FileHandle.standardError.write(Data(report.utf8))
                return CtlExit.dataError
            }
            if dryRun {
                switch output {
                case .table:
                    print("dry run: \(rows.count) subscription(s) valid, \(rows.count - check.existing.count) to import, "
                          + "\(check.existing.count) already there; nothing was imported")
                case .json:
                    print(JSONOutput.render(counts: [("valid", rows.count), ("to_import", rows.count - check.existing.count),
                                                     ("already_there", check.existing.count)]))
                }
                return CtlExit.ok
            }
            // A subscription is never removed, so one the check found is still there: it is
            // counted as skipped without a call.
            rows.removeAll { check.existing.contains($0.line) }
            return try await Import.send(rows, alreadyThere: check.existing.count, session: session, inFlight: inFlight, name: name,
                                         output: output)
        }
        if outcome != 0 { throw ExitCode(outcome) }
    }

    /// What the daemon answered for one row.
    enum Answer: Sendable {
        /// Imported, or (dry run) would be.
        case accepted
        /// subscription_exists: imported before (an earlier run, or another writer).
        case exists
        /// The row's data is refused: `CODE: reason: text`.
        case refused(String)
        /// Not about the row: the connection is gone, or the daemon refuses writes (a
        /// persistence fault, a standby, a shutdown) or this caller. Nothing more is sent.
        case stopped(any Error)

        init(_ error: any Error) {
            guard let error = error as? RPCError else { self = .stopped(error); return }
            if error.message.hasPrefix("subscription_exists") { self = .exists; return }
            switch error.code {
            // The statuses of a request's data (docs/billing-rules.md §10).
            case .invalidArgument, .outOfRange, .failedPrecondition, .notFound, .alreadyExists:
                self = .refused("\(error.code.name): \(error.message)")
            default:
                self = .stopped(error)
            }
        }
    }

    /// Sends every row, `inFlight` at a time (with `dryRun` set for the check), and hands each
    /// answer with its row to `tally` as it comes. Stops sending at the first `.stopped`, whose
    /// error it returns.
    static func each(_ rows: [ImportRow], dryRun: Bool, session: Session, inFlight: Int,
                     _ tally: (ImportRow, Answer) -> Void) async -> (any Error)? {
        var stopped: (any Error)? = nil
        await withTaskGroup(of: (Int, Answer).self) { group in
            var next = 0
            func launch() {
                let index = next
                let request = { var request = rows[index].request; request.dryRun = dryRun; return request }()
                next += 1
                group.addTask {
                    do {
                        _ = try await session.call(MethodTable.Credits.importSubscription, request)
                        return (index, .accepted)
                    } catch {
                        return (index, Answer(error))
                    }
                }
            }
            while next < rows.count && next < inFlight { launch() }
            while let (index, answer) = await group.next() {
                if case .stopped(let error) = answer, stopped == nil { stopped = error }
                tally(rows[index], answer)
                if stopped == nil, next < rows.count { launch() }
            }
        }
        return stopped
    }

    /// The daemon's answer for every row, nothing written: the rows it refuses, and the lines
    /// of those already there. Throws (nothing imported) when it cannot answer.
    static func check(_ rows: [ImportRow], session: Session, inFlight: Int, name: String) async throws
        -> (refused: [ImportProblem], existing: Set<Int>) {
        let progress = ImportProgress(total: rows.count, phase: "check")
        var refused: [ImportProblem] = []
        var existing: Set<Int> = []
        var done = 0
        func counts() -> String { "new \(done - existing.count - refused.count) existing \(existing.count) refused \(refused.count)" }
        let stopped = await each(rows, dryRun: true, session: session, inFlight: inFlight) { row, answer in
            switch answer {
            case .accepted: break
            case .exists: existing.insert(row.line)
            case .refused(let reason): refused.append(ImportProblem(line: row.line, reason: reason))
            case .stopped: return
            }
            done += 1
            progress.update(done: done, counts: counts())
        }
        progress.update(done: done, counts: counts(), force: true)
        if let stopped {
            throw stop(stopped, session: session, then: "nothing was imported")
        }
        return (refused, existing)
    }

    /// Reports why an import stopped (the daemon's own status and message, not a guess) and
    /// what to do; the error to throw carries the status's exit code.
    static func stop(_ error: any Error, session: Session, then what: String) -> ExitCode {
        let failure = CommandFailure(error, socketPath: session.client.socketPath)
        failure.report()
        let advice: String
        if error is RPCError {
            // The daemon answered: the connection is fine, the daemon refused.
            if failure.message.hasPrefix("persistence_") {
                advice = "creditd refuses writes after a persistence fault (README: \"Recovering from a persistence fault\"); "
                    + "once it accepts them again, run the same import: what was imported is skipped"
            } else {
                advice = "creditd refused the import; once it accepts writes, run the same import: what was imported is skipped"
            }
        } else {
            advice = "run the same import again: what was imported is skipped"
        }
        FileHandle.standardError.write(Data("creditctl: import: \(what); \(advice)\n".utf8))
        return ExitCode(failure.exitCode)
    }

    /// The writing pass. A row can still be refused here if something changed since the check
    /// (another writer, a reload lowering --max-seats): it is counted as failed.
    static func send(_ rows: [ImportRow], alreadyThere: Int, session: Session, inFlight: Int, name: String,
                     output: OutputFormat) async throws -> Int32 {
        let progress = ImportProgress(total: rows.count + alreadyThere, phase: "import")
        var imported = 0, skipped = alreadyThere, failed = 0
        var failures = ""
        func counts() -> String { "imported \(imported) skipped \(skipped) failed \(failed)" }
        let stopped = await each(rows, dryRun: false, session: session, inFlight: inFlight) { row, answer in
            switch answer {
            case .accepted: imported += 1
            case .exists: skipped += 1
            case .refused(let reason):
                failed += 1
                failures += "\(terminalSafe(name)):\(row.line): \(terminalSafe(reason))\n"
            case .stopped: return
            }
            progress.update(done: imported + skipped + failed, counts: counts())
        }
        progress.update(done: imported + skipped + failed, counts: counts(), force: true)
        if !failures.isEmpty { FileHandle.standardError.write(Data(failures.utf8)) }
        let notDone = rows.count + alreadyThere - imported - skipped - failed
        switch output {
        case .table:
            print("imported \(imported), skipped \(skipped), failed \(failed)" + (notDone > 0 ? ", not done \(notDone)" : ""))
        case .json:
            print(JSONOutput.render(counts: [("imported", imported), ("skipped", skipped), ("failed", failed), ("not_done", notDone)]))
        }
        if let stopped {
            throw stop(stopped, session: session, then: "\(notDone) subscription(s) not done")
        }
        return failed > 0 ? CtlExit.rpcFailed : CtlExit.ok
    }
}

// MARK: - Export

enum ExportWhat: String, ExpressibleByArgument, CaseIterable {
    case subscriptions, credits, invoices
}

/// `--status` of `export subscriptions|invoices`.
struct StatusArgument: ExpressibleByArgument {
    let proto: Creditd_V1_SubscriptionStatus
    init?(argument: String) {
        let wanted = argument.lowercased().replacingOccurrences(of: "-", with: "_")
        guard let found = Creditd_V1_SubscriptionStatus.allCases.first(where: { $0 != .unspecified && snakeName($0) == wanted })
        else { return nil }
        proto = found
    }
    static var allValueStrings: [String] {
        Creditd_V1_SubscriptionStatus.allCases.filter { $0 != .unspecified }.map { snakeName($0) }
    }
}

/// A row of an export: ordered columns, each a text or an integer (JSON number).
enum Cell {
    case text(String)
    case int(Int64)
    case bool(Bool)

    func appendCSV(to out: inout [UInt8]) {
        switch self {
        case .text(let s): CSV.appendField(s, to: &out)
        default: appendBare(to: &out)
        }
    }

    func appendJSON(to out: inout [UInt8]) {
        switch self {
        case .text(let s): JSONText.appendQuoted(s, to: &out)
        default: appendBare(to: &out)
        }
    }

    /// Numbers and booleans read the same in both formats.
    private func appendBare(to out: inout [UInt8]) {
        switch self {
        case .text: break
        case .int(let n): out.append(contentsOf: String(n).utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        }
    }
}

/// Export rows as bytes, JSON lines or CSV. An export writes millions of rows: each is appended
/// to one buffer per page, with the JSON keys encoded once.
struct ExportRows {
    let format: FileFormat
    let columns: [String]
    /// `{"first":` and `,"next":` for each column, in order.
    private let jsonKeys: [[UInt8]]

    init(format: FileFormat, columns: [String]) {
        self.format = format
        self.columns = columns
        jsonKeys = columns.enumerated().map { index, name in
            var key: [UInt8] = [index == 0 ? UInt8(ascii: "{") : UInt8(ascii: ",")]
            JSONText.appendQuoted(name, to: &key)
            key.append(UInt8(ascii: ":"))
            return key
        }
    }

    /// The CSV header row; JSON lines have none.
    var header: [UInt8] { format == .csv ? Array(CSV.row(columns).utf8) : [] }

    func append(_ row: [Cell], to out: inout [UInt8]) {
        switch format {
        case .csv:
            for (index, cell) in row.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                cell.appendCSV(to: &out)
            }
            out.append(contentsOf: "\r\n".utf8)
        case .jsonl:
            for (key, cell) in zip(jsonKeys, row) {
                out.append(contentsOf: key)
                cell.appendJSON(to: &out)
            }
            out.append(contentsOf: "}\n".utf8)
        }
    }
}

/// The snake-case names of one generated enum's cases, made once (`snakeName` reads the case
/// name through reflection, too slow for every row of an export).
struct SnakeNames<E: SwiftProtobuf.Enum & CaseIterable>: Sendable {
    private let names: [Int: String]

    init() {
        names = Dictionary(E.allCases.map { ($0.rawValue, snakeName($0)) }, uniquingKeysWith: { first, _ in first })
    }

    subscript(_ value: E) -> String { names[value.rawValue] ?? snakeName(value) }
}

struct Export: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export subscriptions, credits or invoices as JSON lines or CSV, every page.",
        discussion: """
            Money is integer minor units with a currency column; dates are YYYY-MM-DD. \
            `export subscriptions --status active` can be imported into another creditd with `creditctl import`.
            """)

    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "subscriptions, credits or invoices.") var what: ExportWhat
    @Option(help: "jsonl or csv.") var format: FileFormat = .jsonl
    @Option(name: [.customShort("o"), .customLong("output")], help: "Write to this file instead of standard output (replaced once complete; a symlink's target is written, the mode is kept).") var outputFile: String?
    /// Where `Invocation` puts a -o/--output given before `export` (see `outputBeforeSubcommand`).
    @Option(name: .customLong(String(Export.outputBeforeSubcommand.dropFirst(2))), help: .hidden) var formatBeforeSubcommand: String?

    /// The option a -o/--output before `export` becomes: a format there is not export's file.
    static let outputBeforeSubcommand = "--output-before-subcommand"
    @Option(name: .customLong("status"), help: "subscriptions, invoices: only these statuses (repeatable).") var statuses: [StatusArgument] = []
    @OptionGroup var filters: CreditFilterOptions

    static let subscriptionColumns = ImportValidator.columns + [
        "status", "anchor_day", "anchor_month", "period_start", "period_end", "period_days", "charged_seats",
        "next_billing_date", "scheduled_seats", "cancel_effective_date", "created_at"]
    static let creditColumns = [
        "credit_id", "subscription_id", "customer", "source", "state", "currency", "amount_minor", "remaining_minor",
        "consumed_minor", "refunded_minor", "effective_date", "due_date", "deadline", "expected_by", "applied_date",
        "refund_expected_by", "overdue", "refund_overdue", "as_of_date"]
    static let invoiceColumns = [
        "invoice_id", "subscription_id", "customer", "kind", "issued_date", "period_start", "period_end", "currency",
        "total_minor", "lines", "settles_on", "settled"]

    func validate() throws {
        if let format = formatBeforeSubcommand {
            throw ValidationError("before `export`, -o/--output is the output format (\"\(format)\"), which export does not "
                + "take: its file formats are --format jsonl|csv, and its own -o/--output, after `export`, names the file to write")
        }
        if what == .credits, !statuses.isEmpty { throw ValidationError("--status applies to subscriptions and invoices") }
        if what != .credits, !filters.states.isEmpty || filters.overdue || filters.refundOverdue || !filters.currency.isEmpty || !filters.subscription.isEmpty {
            throw ValidationError("--state, --overdue, --refund-overdue, --currency and --subscription apply to credits")
        }
    }

    func run() async throws {
        // Before connecting: an output that cannot be written fails at once (ExportOutput).
        let output = try outputFile.map { path throws(CommandFailure) in try ExportOutput.open(path) }
        let count: Int
        do {
            count = try await export(to: output?.descriptor ?? STDOUT_FILENO, named: output?.name)
            try output?.finish()
        } catch {
            output?.abandon()
            throw error
        }
        if let output {
            FileHandle.standardError.write(Data("creditctl: exported \(count) \(what.rawValue) to \(output.name)\n".utf8))
        }
    }

    /// Writes the export to `descriptor` (`name`, or standard output when nil); returns the
    /// number of rows.
    private func export(to descriptor: Int32, named name: String?) async throws -> Int {
        let what = self.what, format = self.format, filters = self.filters
        let statuses = self.statuses.map(\.proto)
        let columns: [String] = switch what {
        case .subscriptions: Export.subscriptionColumns
        case .credits: Export.creditColumns
        case .invoices: Export.invoiceColumns
        }
        let rows = ExportRows(format: format, columns: columns)
        // One buffer for every page, written with write(2): no copy into Data, and no fresh
        // memory (page faults) for each page of rows.
        var buffer = rows.header
        func flush() throws {
            try buffer.withUnsafeBytes { try OutputWriter.write($0, to: descriptor, named: name) }
            buffer.removeAll(keepingCapacity: true)
        }
        func write(_ cells: [[Cell]]) throws {
            for row in cells { rows.append(row, to: &buffer) }
            try flush()
        }
        try flush()
        var changed: [String] = []
        let count: Int = try await withSession(connection) { session in
            var count = 0
            switch what {
            case .credits:
                // The summary view: the export's columns need neither history nor explanation.
                // The next page is asked for before this one is written: the daemon builds it
                // while creditctl formats, on the other core.
                var page = try await session.call(MethodTable.Credits.listCredits, filters.request(pageSize: 1000, pageToken: "", view: .summary))
                while true {
                    let token = page.nextPageToken
                    if token.isEmpty {
                        try write(page.credits.map(Export.row))
                        return count + page.credits.count
                    }
                    async let next = session.call(MethodTable.Credits.listCredits, filters.request(pageSize: 1000, pageToken: token, view: .summary))
                    try write(page.credits.map(Export.row))
                    count += page.credits.count
                    page = try await next
                }
            case .subscriptions, .invoices:
                var token = ""
                repeat {
                    var request = Creditd_V1_ListSubscriptionsRequest()
                    request.pageSize = 1000
                    request.pageToken = token
                    request.customer = filters.customer
                    request.statuses = statuses
                    let page = try await session.call(MethodTable.Credits.listSubscriptions, request)
                    if what == .subscriptions {
                        try write(page.subscriptions.map(Export.row))
                        count += page.subscriptions.count
                        changed += page.subscriptions.filter(Export.importsDifferently).map(\.subscriptionID)
                    } else {
                        for sub in page.subscriptions {
                            var get = Creditd_V1_ListInvoicesRequest()
                            get.subscriptionID = sub.subscriptionID
                            let invoices = try await session.call(MethodTable.Credits.listInvoices, get).invoices
                            try write(invoices.map { Export.row($0, sub) })
                            count += invoices.count
                        }
                    }
                    token = page.nextPageToken
                } while !token.isEmpty
                return count
            }
        }
        if !changed.isEmpty {
            FileHandle.standardError.write(Data(("creditctl: \(changed.count) subscription(s) changed seats in their current period "
                + "and would import with a different price per seat (O5 divides the period's charge by the seats): "
                + changed.prefix(10).map(terminalSafe).joined(separator: ", ") + (changed.count > 10 ? ", ..." : "") + "\n").utf8))
        }
        return count
    }

    static let intervals = SnakeNames<Creditd_V1_BillingInterval>()
    static let policies = SnakeNames<Creditd_V1_RefundPolicy>()
    static let statuses = SnakeNames<Creditd_V1_SubscriptionStatus>()
    static let sources = SnakeNames<Creditd_V1_CreditSource>()
    static let states = SnakeNames<Creditd_V1_CreditState>()
    static let kinds = SnakeNames<Creditd_V1_InvoiceKind>()

    /// A subscription an import would not reproduce: its period was charged for other seats
    /// than it has (a seat change in the period), or a change waits for the renewal.
    static func importsDifferently(_ s: Creditd_V1_Subscription) -> Bool {
        s.currentPeriod.chargedSeats != s.seats || s.scheduledSeats != 0
    }

    static func row(_ s: Creditd_V1_Subscription) -> [Cell] {
        let p = s.currentPeriod
        return [.text(s.subscriptionID), .text(s.customer), .text(s.plan), .int(s.seats), .int(s.unitPriceMinor),
                .text(s.currency), .text(Self.intervals[s.interval]), .text(s.timeZone), .text(Self.policies[s.refundPolicy]),
                .text(s.startDate), .int(p.chargedMinor),
                .text(Self.statuses[s.status]), .int(Int64(s.anchorDay)), .int(Int64(s.anchorMonth)), .text(p.periodStart),
                .text(p.periodEnd), .int(Int64(p.periodDays)), .int(p.chargedSeats), .text(s.nextBillingDate),
                .int(s.scheduledSeats), .text(s.cancelEffectiveDate), .text(Instants.format(s.createdAtUnixNanos))]
    }

    static func row(_ c: Creditd_V1_Credit) -> [Cell] {
        [.text(c.creditID), .text(c.subscriptionID), .text(c.customer), .text(Self.sources[c.source]), .text(Self.states[c.state]),
         .text(c.currency), .int(c.amountMinor), .int(c.remainingMinor), .int(c.consumedMinor), .int(c.refundedMinor),
         .text(c.effectiveDate), .text(c.dueDate), .text(c.deadline), .text(c.expectedBy), .text(c.appliedDate),
         .text(c.refundExpectedBy), .bool(c.overdue), .bool(c.refundOverdue), .text(c.asOfDate)]
    }

    static func row(_ i: Creditd_V1_Invoice, _ s: Creditd_V1_Subscription) -> [Cell] {
        [.text(i.invoiceID), .text(s.subscriptionID), .text(s.customer), .text(Self.kinds[i.kind]), .text(i.issuedDate),
         .text(i.periodStart), .text(i.periodEnd), .text(i.currency.isEmpty ? s.currency : i.currency), .int(i.totalMinor),
         .int(Int64(i.lines.count)), .text(i.settlesOn), .bool(i.settled)]
    }
}
