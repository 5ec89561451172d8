// CreditMonitoring: what monitoring systems read, without knowing creditd.
//
// What it owns. Nagios / Monitoring Plugins ranges, perfdata and plugin results
// (NagiosRange, PerfData, PluginResult), the metrics registry with counters, gauges and
// histograms (MetricsRegistry), the Prometheus text format 0.0.4 (PrometheusText) and the
// atomic textfile writer for node_exporter (PrometheusTextfile).
// Conventions: docs/operations.md §3 (Nagios) and §4 (Prometheus).
//
// Invariants.
//   - The exposition is valid 0.0.4: one HELP and TYPE per family before its samples, escaped
//     labels, cumulative buckets ending at +Inf = _count, no timestamps.
//   - Counters never go down; histogram sums are kept in integer nanoseconds and printed as
//     exact decimals.
//   - Perfdata and plugin output stay within the plugin guidelines (quoted labels, one line,
//     under 1 KB).
//   - No dependency on the rest of creditd: values come in, text goes out.
//
// Entry points.
//   - MetricsRegistry().counter / gauge / histogram, then render().
//   - NagiosRange(parsing:), PerfData, PluginResult for `creditctl check`.
