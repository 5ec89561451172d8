/// The writing operations that take an idempotency key (I1).
public enum IdempotentOperation: Int32, Sendable, Hashable {
    case cancel = 1
    case changeSeats = 2
}

/// The canonical request of I2: the subscription id and the parameters, with defaults made
/// explicit. The key itself and `dryRun` are not part of it. It is kept exactly rather than
/// hashed, so two different requests can never collide.
public enum RequestFingerprint: Sendable, Hashable {
    case cancel(subscriptionId: ScalarString, mode: Int32)
    case changeSeats(subscriptionId: ScalarString, newSeats: Int64, timing: Int32)
}

/// A stored outcome, replayed byte for byte (I3).
public enum StoredOutcome: Sendable, Hashable {
    case response(CommandResponse)
    case error(DomainError)

    init(_ result: Result<CommandResponse, DomainError>) {
        switch result {
        case .success(let response): self = .response(response)
        case .failure(let error): self = .error(error)
        }
    }

    var result: Result<CommandResponse, DomainError> {
        switch self {
        case .response(let response): return .success(response)
        case .error(let error): return .failure(error)
        }
    }
}

/// One entry of the key table (I2, I6), as listed for snapshots.
public struct IdempotencyEntry: Sendable, Hashable {
    public let callerUID: UInt32
    public let operation: IdempotentOperation
    public let key: String
    public let fingerprint: RequestFingerprint
    public let outcome: StoredOutcome
    public let firstUsedAt: Instant

    public init(callerUID: UInt32, operation: IdempotentOperation, key: String, fingerprint: RequestFingerprint,
                outcome: StoredOutcome, firstUsedAt: Instant) {
        self.callerUID = callerUID
        self.operation = operation
        self.key = key
        self.fingerprint = fingerprint
        self.outcome = outcome
        self.firstUsedAt = firstUsedAt
    }
}

/// Keys scoped to (caller uid, operation) (I2), kept at least 45 days (I6).
package struct IdempotencyTable: Sendable {
    package struct Scope: Sendable, Hashable {
        package let callerUID: UInt32
        package let operation: IdempotentOperation
        package let key: ScalarString

        package init(callerUID: UInt32, operation: IdempotentOperation, key: ScalarString) {
            self.callerUID = callerUID
            self.operation = operation
            self.key = key
        }
    }

    package struct Stored: Sendable, Hashable {
        package let fingerprint: RequestFingerprint
        package let outcome: StoredOutcome
        package let firstUsedAt: Instant

        package init(fingerprint: RequestFingerprint, outcome: StoredOutcome, firstUsedAt: Instant) {
            self.fingerprint = fingerprint
            self.outcome = outcome
            self.firstUsedAt = firstUsedAt
        }
    }

    /// 45 days (I6).
    static let retentionNanoseconds: Int64 = 45 * 24 * Instant.nanosecondsPerHour

    private(set) var entries: [Scope: Stored] = [:]
    /// Scopes in order of first use, for pruning from the front.
    private var order: [Scope] = []
    private var orderStart = 0

    var count: Int { entries.count }

    func lookup(_ scope: Scope) -> Stored? {
        entries[scope]
    }

    /// Records a first use, after dropping entries older than the retention period. Pruning
    /// happens only here, inside a journaled change, so replay prunes exactly the same keys.
    mutating func record(_ scope: Scope, _ stored: Stored) {
        prune(olderThan: stored.firstUsedAt.adding(nanoseconds: -IdempotencyTable.retentionNanoseconds))
        entries[scope] = stored
        order.append(scope)
    }

    private mutating func prune(olderThan limit: Instant) {
        while orderStart < order.count {
            let scope = order[orderStart]
            guard let stored = entries[scope] else {
                orderStart += 1
                continue
            }
            guard stored.firstUsedAt < limit else { break }
            entries[scope] = nil
            orderStart += 1
        }
        if orderStart > 1_024, orderStart * 2 > order.count {
            order.removeSubrange(0..<orderStart)
            orderStart = 0
        }
    }

    /// Room for `count` entries (snapshot loading).
    package mutating func reserveCapacity(_ count: Int) {
        entries.reserveCapacity(count)
        order.reserveCapacity(count)
    }

    /// Adds an entry read from a snapshot, after those used before it; as in `init(_:)`, a
    /// repeated scope keeps its place and takes the later value.
    package mutating func restore(_ scope: Scope, _ stored: Stored) {
        if entries.updateValue(stored, forKey: scope) == nil { order.append(scope) }
    }

    /// Calls `body` with each entry in order of first use, without building `list` (snapshots).
    func forEachInOrder(_ body: (Scope, Stored) -> Void) {
        for scope in order[orderStart...] {
            if let stored = entries[scope] { body(scope, stored) }
        }
    }

    /// Entries in order of first use.
    var list: [IdempotencyEntry] {
        order[orderStart...].compactMap { scope in
            entries[scope].map {
                IdempotencyEntry(callerUID: scope.callerUID, operation: scope.operation, key: scope.key.value,
                                 fingerprint: $0.fingerprint, outcome: $0.outcome, firstUsedAt: $0.firstUsedAt)
            }
        }
    }

    package init() {}

    init(_ list: [IdempotencyEntry]) {
        entries.reserveCapacity(list.count)
        order.reserveCapacity(list.count)
        for entry in list {
            let scope = Scope(callerUID: entry.callerUID, operation: entry.operation, key: ScalarString(entry.key))
            let stored = Stored(fingerprint: entry.fingerprint, outcome: entry.outcome, firstUsedAt: entry.firstUsedAt)
            if entries.updateValue(stored, forKey: scope) == nil { order.append(scope) }
        }
    }
}
