import Synchronization

/// Why a metric could not be registered.
public enum MetricsError: Error, Equatable, CustomStringConvertible {
    case invalidMetricName(String)
    case missingNamePrefix(name: String, prefix: String)
    case invalidLabelName(metric: String, label: String)
    case duplicateLabelName(metric: String, label: String)
    /// The name (or one of the sample names it produces) is already used by a
    /// family of another type or with other label names.
    case conflictingRegistration(String)
    case invalidBuckets(metric: String)

    public var description: String {
        switch self {
        case .invalidMetricName(let name): return "invalid metric name \"\(name)\""
        case .missingNamePrefix(let name, let prefix): return "metric name \"\(name)\" must start with \"\(prefix)\""
        case .invalidLabelName(let metric, let label): return "invalid label name \"\(label)\" on \(metric)"
        case .duplicateLabelName(let metric, let label): return "label \"\(label)\" repeated on \(metric)"
        case .conflictingRegistration(let name): return "metric \"\(name)\" is already registered differently"
        case .invalidBuckets(let metric): return "histogram \(metric) needs finite, strictly increasing buckets"
        }
    }
}

/// Families of counters, gauges and histograms, rendered in the Prometheus text
/// format 0.0.4.
///
/// Register families once at startup, resolve the label sets you use into series
/// handles (`family.labels("Cancel", "OK")`), and update those from any task:
/// every series guards its value with its own `Mutex`, so updates from many tasks
/// never contend on a registry-wide lock.
public final class MetricsRegistry: Sendable {
    private let requiredNamePrefix: String?
    private let state = Mutex<RegistryState>(RegistryState())

    private struct RegistryState {
        var families: [any RenderableFamily] = []
        var byName: [String: any RenderableFamily] = [:]
        var sampleNames: Set<String> = []
    }

    /// - Parameter requiredNamePrefix: if set (creditd uses `"creditd_"`), every
    ///   name must start with it.
    public init(requiredNamePrefix: String? = nil) {
        self.requiredNamePrefix = requiredNamePrefix
    }

    public func counter(name: String, help: String, labelNames: [String] = []) throws(MetricsError) -> CounterFamily {
        try register(name: name, labelNames: labelNames, type: .counter) {
            CounterFamily(name: name, help: help, labelNames: labelNames)
        }
    }

    public func gauge(name: String, help: String, labelNames: [String] = []) throws(MetricsError) -> GaugeFamily {
        try register(name: name, labelNames: labelNames, type: .gauge) {
            GaugeFamily(name: name, help: help, labelNames: labelNames)
        }
    }

    /// `buckets` are upper bounds, finite and strictly increasing; `+Inf` is added.
    public func histogram(
        name: String,
        help: String,
        labelNames: [String] = [],
        buckets: [Double] = HistogramFamily.defaultBuckets
    ) throws(MetricsError) -> HistogramFamily {
        var bounds = buckets
        if bounds.last == .infinity { bounds.removeLast() }
        guard !bounds.isEmpty, bounds.allSatisfy(\.isFinite),
              zip(bounds, bounds.dropFirst()).allSatisfy({ $0 < $1 })
        else { throw .invalidBuckets(metric: name) }
        if labelNames.contains("le") { throw .invalidLabelName(metric: name, label: "le") }
        let family: HistogramFamily = try register(name: name, labelNames: labelNames, type: .histogram) {
            HistogramFamily(name: name, help: help, labelNames: labelNames, upperBounds: bounds)
        }
        guard family.upperBounds == bounds else { throw .conflictingRegistration(name) }
        return family
    }

    /// The whole exposition: each family as one block (`# HELP`, `# TYPE`, then its
    /// samples), in registration order, series sorted by label values, no
    /// timestamps, `\n` after every line.
    public func render() -> String {
        let families = state.withLock { $0.families }
        var output = ""
        for family in families {
            family.render(into: &output)
        }
        return output
    }

    private func register<Family: RenderableFamily>(
        name: String,
        labelNames: [String],
        type: MetricType,
        make: () -> Family
    ) throws(MetricsError) -> Family {
        guard PrometheusText.isValidMetricName(name) else { throw .invalidMetricName(name) }
        if let requiredNamePrefix, !name.hasPrefix(requiredNamePrefix) {
            throw .missingNamePrefix(name: name, prefix: requiredNamePrefix)
        }
        var seenLabels = Set<String>()
        for label in labelNames {
            guard PrometheusText.isValidLabelName(label) else { throw .invalidLabelName(metric: name, label: label) }
            guard seenLabels.insert(label).inserted else { throw .duplicateLabelName(metric: name, label: label) }
        }
        let result: Result<Family, MetricsError> = state.withLock { state in
            if let existing = state.byName[name] {
                // Registering the same family twice returns the first one.
                if let same = existing as? Family, existing.type == type, existing.labelNames == labelNames {
                    return .success(same)
                }
                return .failure(.conflictingRegistration(name))
            }
            let samples = type.sampleNames(for: name)
            guard state.sampleNames.isDisjoint(with: samples), state.byName.keys.allSatisfy({ !samples.contains($0) })
            else { return .failure(.conflictingRegistration(name)) }
            let family = make()
            state.families.append(family)
            state.byName[name] = family
            state.sampleNames.formUnion(samples)
            return .success(family)
        }
        return try result.get()
    }
}

enum MetricType: String, Sendable {
    case counter, gauge, histogram

    func sampleNames(for name: String) -> Set<String> {
        switch self {
        case .counter, .gauge: return [name]
        case .histogram: return [name + "_bucket", name + "_sum", name + "_count"]
        }
    }
}

protocol RenderableFamily: AnyObject, Sendable {
    var name: String { get }
    var type: MetricType { get }
    var labelNames: [String] { get }
    func render(into output: inout String)
}

/// Series of one family keyed by label values, created on first use.
final class SeriesTable<Series: Sendable & AnyObject>: Sendable {
    private let series = Mutex<[[String]: Series]>([:])

    func series(for values: [String], make: () -> Series) -> Series {
        series.withLock { table in
            if let existing = table[values] { return existing }
            let created = make()
            table[values] = created
            return created
        }
    }

    /// Snapshot sorted by label values, so output is stable.
    func sorted() -> [([String], Series)] {
        series.withLock { table in
            table.map { ($0.key, $0.value) }
        }.sorted { $0.0.lexicographicallyPrecedes($1.0) }
    }
}

extension RenderableFamily {
    func header(into output: inout String, help: String) {
        output += "# HELP \(name) \(PrometheusText.escapeHelp(help))\n"
        output += "# TYPE \(name) \(type.rawValue)\n"
    }

    func pairs(_ values: [String]) -> [(String, String)] {
        Array(zip(labelNames, values))
    }

    func checkArity(_ values: [String]) {
        precondition(
            values.count == labelNames.count,
            "\(name) takes \(labelNames.count) label values (\(labelNames)), got \(values.count)"
        )
    }
}

// MARK: - Counter

/// A monotonically increasing value (`_total` by convention).
public final class Counter: Sendable {
    private let value = Mutex<Double>(0)

    init() {}

    /// Adds `amount`; negative or NaN amounts are ignored (counters never go down).
    public func increment(by amount: Double = 1) {
        guard amount >= 0 else { return }
        value.withLock { $0 += amount }
    }

    public func increment(by amount: Int) {
        increment(by: Double(amount))
    }

    /// Mirrors a cumulative count kept elsewhere (fsyncs, records written): the counter
    /// takes `total` unless that would make it go down.
    public func advance(to total: Double) {
        guard !total.isNaN else { return }
        value.withLock { $0 = max($0, total) }
    }

    public func advance(to total: Int) {
        advance(to: Double(total))
    }

    public var current: Double { value.withLock { $0 } }
}

public final class CounterFamily: Sendable, RenderableFamily {
    public let name: String
    public let help: String
    public let labelNames: [String]
    var type: MetricType { .counter }
    private let table = SeriesTable<Counter>()

    init(name: String, help: String, labelNames: [String]) {
        self.name = name
        self.help = help
        self.labelNames = labelNames
        // A family without labels has exactly one series; show it from the start.
        if labelNames.isEmpty { _ = table.series(for: [], make: Counter.init) }
    }

    /// The series for these label values (in `labelNames` order), created on first
    /// use. The count must match `labelNames`.
    public func labels(_ values: String...) -> Counter { labels(values) }

    public func labels(_ values: [String]) -> Counter {
        checkArity(values)
        return table.series(for: values, make: Counter.init)
    }

    func render(into output: inout String) {
        header(into: &output, help: help)
        for (values, series) in table.sorted() {
            output += "\(name)\(PrometheusText.labelSet(pairs(values))) \(PrometheusText.formatValue(series.current))\n"
        }
    }
}

// MARK: - Gauge

/// A value that goes up and down.
public final class Gauge: Sendable {
    private let value = Mutex<Double>(0)

    init() {}

    public func set(_ newValue: Double) { value.withLock { $0 = newValue } }
    public func set(_ newValue: Int) { set(Double(newValue)) }
    public func increment(by amount: Double = 1) { value.withLock { $0 += amount } }
    public func decrement(by amount: Double = 1) { value.withLock { $0 -= amount } }
    public var current: Double { value.withLock { $0 } }
}

public final class GaugeFamily: Sendable, RenderableFamily {
    public let name: String
    public let help: String
    public let labelNames: [String]
    var type: MetricType { .gauge }
    private let table = SeriesTable<Gauge>()

    init(name: String, help: String, labelNames: [String]) {
        self.name = name
        self.help = help
        self.labelNames = labelNames
        if labelNames.isEmpty { _ = table.series(for: [], make: Gauge.init) }
    }

    public func labels(_ values: String...) -> Gauge { labels(values) }

    public func labels(_ values: [String]) -> Gauge {
        checkArity(values)
        return table.series(for: values, make: Gauge.init)
    }

    func render(into output: inout String) {
        header(into: &output, help: help)
        for (values, series) in table.sorted() {
            output += "\(name)\(PrometheusText.labelSet(pairs(values))) \(PrometheusText.formatValue(series.current))\n"
        }
    }
}

// MARK: - Histogram

/// Observations counted into cumulative buckets.
public final class Histogram: Sendable {
    public let upperBounds: [Double]
    private let state: Mutex<Snapshot>

    /// A consistent copy: per-bucket (non-cumulative) counts, the last one for +Inf.
    ///
    /// The sum is kept in integer billionths of the unit (nanoseconds for seconds), so that
    /// adding many observations leaves no binary floating-point artefacts in `_sum`
    /// (`0.30000000000000004`); it renders as an exact decimal.
    struct Snapshot {
        var bucketCounts: [UInt64]
        var sumBillionths: Int64 = 0
        var count: UInt64 = 0

        var sum: Double { Double(sumBillionths) / 1e9 }
    }

    init(upperBounds: [Double]) {
        self.upperBounds = upperBounds
        self.state = Mutex(Snapshot(bucketCounts: Array(repeating: 0, count: upperBounds.count + 1)))
    }

    /// Records one value; NaN is ignored.
    public func observe(_ value: Double) {
        guard !value.isNaN else { return }
        // `le` is inclusive: a value equal to a bound belongs to that bucket.
        let index = upperBounds.firstIndex(where: { value <= $0 }) ?? upperBounds.count
        let scaled = (value * 1e9).rounded()
        let billionths = scaled.isFinite && abs(scaled) < 9.2e18 ? Int64(scaled) : (value > 0 ? Int64.max : Int64.min)
        record(bucket: index, billionths: billionths)
    }

    /// Records a duration in seconds (the base unit), counted in whole nanoseconds.
    public func observe(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let value = Double(seconds) + Double(attoseconds) / 1e18
        let index = upperBounds.firstIndex(where: { value <= $0 }) ?? upperBounds.count
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        record(bucket: index, billionths: overflow ? (seconds > 0 ? .max : .min) : whole &+ attoseconds / 1_000_000_000)
    }

    private func record(bucket index: Int, billionths: Int64) {
        state.withLock { state in
            state.bucketCounts[index] += 1
            let (sum, overflow) = state.sumBillionths.addingReportingOverflow(billionths)
            state.sumBillionths = overflow ? (billionths > 0 ? .max : .min) : sum
            state.count += 1
        }
    }

    var snapshot: Snapshot { state.withLock { $0 } }

    public var count: UInt64 { snapshot.count }
    public var sum: Double { snapshot.sum }
}

public final class HistogramFamily: Sendable, RenderableFamily {
    /// Prometheus client defaults, extended below 5 ms for calls on a local socket.
    public static let defaultBuckets: [Double] = [
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]

    public let name: String
    public let help: String
    public let labelNames: [String]
    public let upperBounds: [Double]
    var type: MetricType { .histogram }
    private let table = SeriesTable<Histogram>()

    init(name: String, help: String, labelNames: [String], upperBounds: [Double]) {
        self.name = name
        self.help = help
        self.labelNames = labelNames
        self.upperBounds = upperBounds
        if labelNames.isEmpty { _ = table.series(for: [], make: makeSeries) }
    }

    private func makeSeries() -> Histogram { Histogram(upperBounds: upperBounds) }

    public func labels(_ values: String...) -> Histogram { labels(values) }

    public func labels(_ values: [String]) -> Histogram {
        checkArity(values)
        return table.series(for: values, make: makeSeries)
    }

    func render(into output: inout String) {
        header(into: &output, help: help)
        for (values, series) in table.sorted() {
            let snapshot = series.snapshot
            let base = pairs(values)
            var cumulative: UInt64 = 0
            for (index, bound) in upperBounds.enumerated() {
                cumulative += snapshot.bucketCounts[index]
                let labels = PrometheusText.labelSet(base + [("le", PrometheusText.formatValue(bound))])
                output += "\(name)_bucket\(labels) \(cumulative)\n"
            }
            cumulative += snapshot.bucketCounts[upperBounds.count]
            // +Inf equals _count by construction: both come from the same snapshot.
            output += "\(name)_bucket\(PrometheusText.labelSet(base + [("le", "+Inf")])) \(cumulative)\n"
            let plain = PrometheusText.labelSet(base)
            output += "\(name)_sum\(plain) \(DecimalFormatting.billionths(snapshot.sumBillionths))\n"
            output += "\(name)_count\(plain) \(snapshot.count)\n"
        }
    }
}
