import CreditWire
import Synchronization

/// Holds the application once its state is recovered. The server takes its
/// socket first and parks calls that need the state until it is ready (so
/// clients queue instead of failing, and health answers NOT_SERVING).
public final class ApplicationGate: Sendable {
    private let slot = Mutex<CreditApplication?>(nil)

    public init() {}

    public func open(_ application: CreditApplication) {
        slot.withLock { $0 = application }
    }

    public var application: CreditApplication? { slot.withLock { $0 } }

    func require() throws(RPCError) -> CreditApplication {
        guard let application = slot.withLock({ $0 }) else {
            throw RPCError.unavailable("creditd is recovering its state; retry shortly")
        }
        return application
    }

}
