import CreditStore
import Logging

extension RecoveryReport {
    /// Logs what recovery did. Anything lost, skipped or repaired is a warning, so
    /// `journalctl -u creditd -p warning` shows it; the ordinary steps are info/notice.
    func log(to logger: Logger) {
        logger.info("\(usedSnapshot.map { "recovered from snapshot \($0)" } ?? "recovered without snapshot")",
                    metadata: ["journal_segments": "\(segmentsRead.count)"])
        for skipped in skippedSnapshots { logger.warning("skipped snapshot: \(skipped)") }
        for truncation in truncations { logger.warning("\(truncation.description)") }
        for repair in repairs { logger.warning("repair: \(repair)") }
        for file in removedFiles { logger.notice("removed leftover file \(file)") }
        for warning in warnings { logger.warning("\(warning)") }
    }
}
