/// Keeps systemd's start timeout from expiring while a long start (recovery) is
/// still making its way, and tells the operator how far it got.
///
/// Every `interval` it sends `EXTEND_TIMEOUT_USEC=<extension>` together with the
/// `STATUS=` line that `progress` returns, and every `reportEvery` intervals it calls
/// `report` (the daemon logs a progress line). `extension` must be longer than
/// `interval`: each message has to arrive before the previous extension runs out.
/// Runs until the task is cancelled, then returns.
public struct StartupHeartbeat: Sendable {
    public let notifier: SystemdNotifier
    public let interval: Duration
    public let timeoutExtension: Duration
    public let reportEvery: Int
    private let progress: @Sendable (_ elapsed: Duration) -> String
    private let report: @Sendable (_ elapsed: Duration, _ status: String) -> Void

    public init(notifier: SystemdNotifier, interval: Duration = .seconds(5), timeoutExtension: Duration = .seconds(30),
                reportEvery: Int = 2,
                progress: @escaping @Sendable (_ elapsed: Duration) -> String,
                report: @escaping @Sendable (_ elapsed: Duration, _ status: String) -> Void) {
        precondition(timeoutExtension > interval, "the extension must outlast the interval")
        self.notifier = notifier
        self.interval = interval
        self.timeoutExtension = timeoutExtension
        self.reportEvery = max(1, reportEvery)
        self.progress = progress
        self.report = report
    }

    /// The first extension goes out at once, even if the task was cancelled before it
    /// ran (a start faster than the first beat still announces itself); the rest every
    /// `interval`.
    public func run() async {
        let started = ContinuousClock.now
        var beats = 0
        while true {
            let elapsed = ContinuousClock.now - started
            let status = progress(elapsed)
            notifier.send([("EXTEND_TIMEOUT_USEC", String(Self.microseconds(timeoutExtension))),
                           ("STATUS", SystemdNotifier.oneLine(status))])
            if beats > 0, beats % reportEvery == 0 { report(elapsed, status) }
            beats += 1
            do {
                try await Task.sleep(for: interval)
            } catch {
                return
            }
        }
    }

    static func microseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        return UInt64(max(0, seconds)) * 1_000_000 + UInt64(max(0, attoseconds)) / 1_000_000_000_000
    }
}
