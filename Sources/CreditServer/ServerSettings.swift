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

    public init(
        maxConnections: Int = 256,
        maxInFlightPerConnection: Int = 256,
        idleTimeout: Duration? = .seconds(300),
        defaultDeadline: Duration? = .seconds(120),
        unwritableTimeout: Duration = .seconds(30),
        shutdownGracePeriod: Duration = .seconds(10),
        authorizer: Authorizer = .policy(AuthorizationPolicy())
    ) {
        self.maxConnections = maxConnections
        self.maxInFlightPerConnection = maxInFlightPerConnection
        self.idleTimeout = idleTimeout
        self.defaultDeadline = defaultDeadline
        self.unwritableTimeout = unwritableTimeout
        self.shutdownGracePeriod = shutdownGracePeriod
        self.authorizer = authorizer
    }
}

/// Hooks for metrics. Called from event loop threads: implementations must be quick and
/// must not block. Every method has an empty default.
public protocol ServerObserver: Sendable {
    func connectionOpened(peer: PeerCredentials, openConnections: Int)
    func connectionClosed(peer: PeerCredentials, openConnections: Int)
    /// A connection over the limit was closed right after accept.
    func connectionRejected(openConnections: Int)
    /// A call to a served method ended (after its reply was queued), with any status.
    func callFinished(service: String, method: String, code: StatusCode, duration: Duration)
    /// A frame was answered without reaching a method (unknown service or method, bad ids,
    /// undecodable envelope, oversize, limits). No names: clients choose them freely.
    func protocolError(code: StatusCode)
    func inFlightChanged(inFlightCalls: Int)
}

extension ServerObserver {
    public func connectionOpened(peer: PeerCredentials, openConnections: Int) {}
    public func connectionClosed(peer: PeerCredentials, openConnections: Int) {}
    public func connectionRejected(openConnections: Int) {}
    public func callFinished(service: String, method: String, code: StatusCode, duration: Duration) {}
    public func protocolError(code: StatusCode) {}
    public func inFlightChanged(inFlightCalls: Int) {}
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

    public init(openConnections: Int = 0, inFlightCalls: Int = 0, acceptedConnections: UInt64 = 0,
                rejectedConnections: UInt64 = 0, finishedCalls: UInt64 = 0) {
        self.openConnections = openConnections
        self.inFlightCalls = inFlightCalls
        self.acceptedConnections = acceptedConnections
        self.rejectedConnections = rejectedConnections
        self.finishedCalls = finishedCalls
    }
}
