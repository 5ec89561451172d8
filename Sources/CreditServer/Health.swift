import CreditProto
import CreditWire
import Synchronization

public typealias ServingStatus = Grpc_Health_V1_HealthCheckResponse.ServingStatus

/// Serving status per health name ("" for the whole server, else a fully-qualified service
/// name). A Mutex-protected value: reading it never waits on anything slow.
public final class HealthStatus: Sendable {
    public static let serverName = ""

    private struct Watcher {
        var name: String
        var continuation: AsyncStream<ServingStatus>.Continuation
    }

    private struct State {
        var statuses: [String: ServingStatus]
        var watchers: [UInt64: Watcher] = [:]
        var nextWatcherID: UInt64 = 0
        var isShutDown = false
    }

    private let state: Mutex<State>

    /// Starts with only the server name "" at `initial`.
    public init(initial: ServingStatus = .notServing) {
        state = Mutex(State(statuses: [Self.serverName: initial]))
    }

    /// Adds a name (no-op if known), with `status` or else the current status of "".
    public func register(_ name: String, status: ServingStatus? = nil) {
        state.withLock { state in
            guard state.statuses[name] == nil else { return }
            let value = status ?? state.statuses[Self.serverName] ?? .notServing
            state.statuses[name] = value
            Self.notify(&state, name: name, value)
        }
    }

    /// Sets one name's status (registering it if new). Ignored after `shutdown()`.
    public func set(_ status: ServingStatus, for name: String = HealthStatus.serverName) {
        state.withLock { state in
            guard !state.isShutDown, state.statuses[name] != status else { return }
            state.statuses[name] = status
            Self.notify(&state, name: name, status)
        }
    }

    /// Sets every known name to `status`. Ignored after `shutdown()`.
    public func setAll(_ status: ServingStatus) {
        state.withLock { state in
            guard !state.isShutDown else { return }
            for (name, old) in state.statuses where old != status {
                state.statuses[name] = status
                Self.notify(&state, name: name, status)
            }
        }
    }

    /// The status of a name, or nil if it is not known.
    public func status(of name: String = HealthStatus.serverName) -> ServingStatus? {
        state.withLock { $0.statuses[name] }
    }

    /// All names and statuses.
    public var statuses: [String: ServingStatus] {
        state.withLock { $0.statuses }
    }

    public var isShutDown: Bool { state.withLock { $0.isShutDown } }

    /// Sets everything NOT_SERVING, then ends every watch (each ends with UNAVAILABLE).
    /// Later `set` calls are ignored.
    public func shutdown() {
        let watchers = state.withLock { state -> [Watcher] in
            state.isShutDown = true
            for name in state.statuses.keys {
                state.statuses[name] = .notServing
            }
            for watcher in state.watchers.values {
                watcher.continuation.yield(.notServing)
            }
            let all = Array(state.watchers.values)
            state.watchers.removeAll()
            return all
        }
        for watcher in watchers {
            watcher.continuation.finish()
        }
    }

    /// The current status of `name` at once (SERVICE_UNKNOWN if unknown), then every change.
    /// Only the latest undelivered status is kept (a slow consumer sees coalesced updates).
    /// The sequence ends after `shutdown()`.
    public func watch(_ name: String) -> AsyncStream<ServingStatus> {
        let (stream, continuation) = AsyncStream.makeStream(of: ServingStatus.self, bufferingPolicy: .bufferingNewest(1))
        let id: UInt64? = state.withLock { state in
            let current = state.statuses[name] ?? .serviceUnknown
            continuation.yield(state.isShutDown ? .notServing : current)
            guard !state.isShutDown else { return nil }
            let id = state.nextWatcherID
            state.nextWatcherID += 1
            state.watchers[id] = Watcher(name: name, continuation: continuation)
            return id
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.watchers.removeValue(forKey: id) }
        }
        return stream
    }

    private static func notify(_ state: inout State, name: String, _ status: ServingStatus) {
        for watcher in state.watchers.values where watcher.name == name {
            watcher.continuation.yield(status)
        }
    }
}

extension HealthStatus {
    public static let serviceName = MethodTable.Health.serviceName
    /// List answers RESOURCE_EXHAUSTED beyond this many names.
    public static let listLimit = 100

    /// The `grpc.health.v1.Health` service over this store. All methods need the reader role.
    public func service() -> RPCService {
        RPCService(name: Self.serviceName, methods: [
            // Health answers during recovery too (NOT_SERVING), so it never waits for readiness.
            .immediate(MethodTable.Health.check, needsReadiness: false) { [self] request, _ in
                guard let status = self.status(of: request.service) else {
                    throw RPCError.notFound("unknown service \(request.service)")
                }
                var response = Grpc_Health_V1_HealthCheckResponse()
                response.status = status
                return response
            },
            .immediate(MethodTable.Health.list, needsReadiness: false) { [self] _, _ in
                let all = self.statuses
                guard all.count <= Self.listLimit else {
                    throw RPCError.resourceExhausted("server has \(all.count) health entries, more than \(Self.listLimit)")
                }
                var response = Grpc_Health_V1_HealthListResponse()
                for (name, status) in all {
                    var entry = Grpc_Health_V1_HealthCheckResponse()
                    entry.status = status
                    response.statuses[name] = entry
                }
                return response
            },
            .serverStreaming(MethodTable.Health.watch, needsReadiness: false) { [self] request, _, writer in
                for await status in self.watch(request.service) {
                    var response = Grpc_Health_V1_HealthCheckResponse()
                    response.status = status
                    try await writer.send(response)
                }
                try Task.checkCancellation()
                throw RPCError.unavailable("shutting down")
            },
        ])
    }
}
