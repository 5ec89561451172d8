import CreditProto
import CreditWire
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Who may call what: readers are any peer (or the listed ones), writers are root,
/// the server's own uid, and the configured uids and groups (docs/operations.md §1).
public struct AuthorizationPolicy: Sendable, Hashable {
    public var writerUIDs: Set<UInt32>
    public var writerGIDs: Set<UInt32>
    /// When both reader sets are empty, any peer that connected may read.
    public var readerUIDs: Set<UInt32>
    public var readerGIDs: Set<UInt32>
    /// The server's own uid; always a writer, like root.
    public var serverUID: UInt32

    public init(
        writerUIDs: Set<UInt32> = [],
        writerGIDs: Set<UInt32> = [],
        readerUIDs: Set<UInt32> = [],
        readerGIDs: Set<UInt32> = [],
        serverUID: UInt32 = getuid()
    ) {
        self.writerUIDs = writerUIDs
        self.writerGIDs = writerGIDs
        self.readerUIDs = readerUIDs
        self.readerGIDs = readerGIDs
        self.serverUID = serverUID
    }

    public func isWriter(_ peer: PeerCredentials) -> Bool {
        peer.uid == 0 || peer.uid == serverUID || writerUIDs.contains(peer.uid) || peer.isMember(ofAny: writerGIDs)
    }

    public func isReader(_ peer: PeerCredentials) -> Bool {
        if readerUIDs.isEmpty && readerGIDs.isEmpty { return true }
        return isWriter(peer) || readerUIDs.contains(peer.uid) || peer.isMember(ofAny: readerGIDs)
    }

    public func allows(_ peer: PeerCredentials, _ role: MethodRole) -> Bool {
        switch role {
        case .reader: isReader(peer)
        case .writer: isWriter(peer)
        }
    }
}

/// The authorization decision the server asks for every call: (peer, role, "Service/Method").
public struct Authorizer: Sendable {
    public let decide: @Sendable (PeerCredentials, MethodRole, String) -> Bool

    public init(_ decide: @escaping @Sendable (PeerCredentials, MethodRole, String) -> Bool) {
        self.decide = decide
    }

    public func authorize(_ peer: PeerCredentials, _ role: MethodRole, _ method: String) -> Bool {
        decide(peer, role, method)
    }

    public static func policy(_ policy: AuthorizationPolicy) -> Authorizer {
        Authorizer { peer, role, _ in policy.allows(peer, role) }
    }

    public static let allowAll = Authorizer { _, _, _ in true }
}

/// Limits and authorization of a running server. Replaceable at runtime (`TTRPCServer.reload`);
/// open connections keep going and see the new values from their next call on.
public struct ServerSettings: Sendable {
    /// Connections over this count are closed right after accept.
    public var maxConnections: Int
    /// Open streams per connection; a Request beyond it gets RESOURCE_EXHAUSTED.
    public var maxInFlightPerConnection: Int
    /// A connection with no open stream for this long is closed; nil keeps it forever.
    public var idleTimeout: Duration?
    /// The deadline of a unary call that sends timeout_nano 0; nil for none.
    public var defaultDeadline: Duration?
    /// A connection whose socket stays unwritable this long is closed (slow consumers).
    public var unwritableTimeout: Duration
    /// How long a graceful shutdown waits for in-flight calls.
    public var shutdownGracePeriod: Duration
    public var authorizer: Authorizer
    /// Open connections per uid (root included). A new connection over it closes that uid's
    /// oldest idle connection, or is refused with RESOURCE_EXHAUSTED when none is idle.
    public var maxConnectionsPerUID: Int
    /// Of `maxConnections`, slots only privileged peers (root, the server's uid, writers) take,
    /// so an operator and the probe can connect while others fill the rest.
    public var reservedConnections: Int
    /// Response bytes queued on one connection and not yet written to its socket beyond which
    /// the connection's requests are no longer read (backpressure).
    public var maxBufferedResponseBytes: Int
    /// Calls of one connection waiting for the writer at once; more wait unread.
    public var maxQueuedWritesPerConnection: Int
    /// Requests dispatched from one connection per event-loop turn before the others get theirs.
    public var maxCallsPerTurn: Int
    /// Memory held for partially received large frames across all connections; a new large
    /// frame beyond it is skipped and answered RESOURCE_EXHAUSTED.
    public var maxPartialFrameBytes: Int
    /// A frame must arrive completely within this time of its first byte, else the connection closes.
    public var frameReadTimeout: Duration

    public init(
        maxConnections: Int = 256,
        maxInFlightPerConnection: Int = 256,
        idleTimeout: Duration? = .seconds(300),
        defaultDeadline: Duration? = .seconds(120),
        unwritableTimeout: Duration = .seconds(30),
        shutdownGracePeriod: Duration = .seconds(10),
        authorizer: Authorizer = .policy(AuthorizationPolicy()),
        maxConnectionsPerUID: Int? = nil,
        reservedConnections: Int? = nil,
        maxBufferedResponseBytes: Int = 1 << 20,
        maxQueuedWritesPerConnection: Int = 32,
        maxCallsPerTurn: Int = 64,
        maxPartialFrameBytes: Int = 64 << 20,
        frameReadTimeout: Duration = .seconds(10)
    ) {
        self.maxConnections = maxConnections
        self.maxInFlightPerConnection = maxInFlightPerConnection
        self.idleTimeout = idleTimeout
        self.defaultDeadline = defaultDeadline
        self.unwritableTimeout = unwritableTimeout
        self.shutdownGracePeriod = shutdownGracePeriod
        self.authorizer = authorizer
        self.maxConnectionsPerUID = maxConnectionsPerUID ?? Self.defaultPerUIDLimit(maxConnections: maxConnections)
        self.reservedConnections = reservedConnections ?? Self.defaultReserved(maxConnections: maxConnections)
        self.maxBufferedResponseBytes = maxBufferedResponseBytes
        self.maxQueuedWritesPerConnection = maxQueuedWritesPerConnection
        self.maxCallsPerTurn = maxCallsPerTurn
        self.maxPartialFrameBytes = maxPartialFrameBytes
        self.frameReadTimeout = frameReadTimeout
    }

    /// A quarter of the connection limit, at least 1.
    public static func defaultPerUIDLimit(maxConnections: Int) -> Int { max(1, maxConnections / 4) }

    /// 8 slots, at most a quarter of the connection limit.
    public static func defaultReserved(maxConnections: Int) -> Int { min(8, maxConnections / 4) }

    /// Root, the server's uid and peers with the writer role may use the reserved slots.
    public func isPrivileged(_ peer: PeerCredentials) -> Bool {
        peer.uid == 0 || peer.uid == getuid() || authorizer.authorize(peer, .writer, "")
    }
}

/// Hooks for metrics. Called from event loop threads: implementations must be quick and
/// must not block. Every method has an empty default.
public protocol ServerObserver: Sendable {
    func connectionOpened(peer: PeerCredentials, openConnections: Int)
    func connectionClosed(peer: PeerCredentials, openConnections: Int)
    /// A connection over a limit was refused (answered RESOURCE_EXHAUSTED, then closed).
    func connectionRejected(openConnections: Int)
    /// A connection stopped being read (`true`) because of backpressure or fairness, or was
    /// read again (`false`).
    func connectionThrottled(_ throttled: Bool)
    /// The accounting of calls to one served method. Asked once per method when the server is
    /// built, so that a call neither builds the method's name nor looks up its series.
    func callRecorder(for method: MethodDescriptor) -> any CallRecorder
    /// A frame was answered without reaching a method (unknown service or method, bad ids,
    /// undecodable envelope, oversize, limits). No names: clients choose them freely.
    func protocolError(code: StatusCode)
}

extension ServerObserver {
    public func connectionOpened(peer: PeerCredentials, openConnections: Int) {}
    public func connectionClosed(peer: PeerCredentials, openConnections: Int) {}
    public func connectionRejected(openConnections: Int) {}
    public func connectionThrottled(_ throttled: Bool) {}
    public func callRecorder(for method: MethodDescriptor) -> any CallRecorder { NoCallRecorder() }
    public func protocolError(code: StatusCode) {}
}

/// Counts the calls of one method (ServerObserver.callRecorder). Called on event loop threads.
public protocol CallRecorder: Sendable {
    /// A call ended (after its reply was queued), with any status.
    func callFinished(code: StatusCode, duration: Duration)
}

struct NoCallRecorder: CallRecorder {
    func callFinished(code: StatusCode, duration: Duration) {}
}

/// An observer that ignores everything.
public struct NoServerObserver: ServerObserver {
    public init() {}
}

/// Counters readable at any time (GetStats).
public struct ServerStats: Sendable, Hashable {
    public var openConnections: Int
    public var inFlightCalls: Int
    public var acceptedConnections: UInt64
    public var rejectedConnections: UInt64
    public var finishedCalls: UInt64
    /// Open connections by peer uid.
    public var connectionsByUID: [UInt32: Int] = [:]
    /// Refused connections by reason (one of `refusalReasons`).
    public var refusedByReason: [String: UInt64] = [:]
    /// Every reason `ServerCore.admit` refuses a connection for.
    public static let refusalReasons = ["per_uid", "full", "draining"]
    /// Idle connections closed to make room for a new one.
    public var evictedIdleConnections: UInt64 = 0
    /// Times a connection stopped being read (backpressure or fairness), and how many are now.
    public var throttledTotal: UInt64 = 0
    public var throttledNow: Int = 0
    /// Response bytes queued and not yet written to sockets, across connections.
    public var bufferedResponseBytes: Int = 0
    /// Bytes reserved for partially received large frames, and frames refused for lack of it.
    public var partialFrameBytes: Int = 0
    public var refusedLargeFrames: UInt64 = 0
    /// Connections closed because a frame did not arrive within the frame read timeout.
    public var frameTimeouts: UInt64 = 0
    /// Log lines not written by the per-uid rate limit.
    public var suppressedLogLines: UInt64 = 0

    public init(openConnections: Int = 0, inFlightCalls: Int = 0, acceptedConnections: UInt64 = 0,
                rejectedConnections: UInt64 = 0, finishedCalls: UInt64 = 0) {
        self.openConnections = openConnections
        self.inFlightCalls = inFlightCalls
        self.acceptedConnections = acceptedConnections
        self.rejectedConnections = rejectedConnections
        self.finishedCalls = finishedCalls
    }
}
