import CreditProto
import CreditWire
import Logging
import NIOCore
import NIOPosix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where the server listens.
public enum ListenTarget: Sendable, Hashable {
    /// Bind this Unix socket path: refused if a live server answers there, a stale socket file is
    /// replaced, the file is created with mode 0660 and removed again on shutdown.
    case path(String)
    /// Adopt an inherited listening socket (systemd socket activation). The caller has checked
    /// that it is a listening AF_UNIX stream socket. It is never unlinked.
    case inheritedSocket(CInt)
}

public enum TTRPCServerError: Error, Sendable, Hashable, CustomStringConvertible {
    case alreadyServing(path: String)
    case notASocket(path: String)
    case pathTooLong(path: String)
    case cannotProbe(path: String, errno: Int32)
    case bindFailed(path: String, reason: String)
    case alreadyStarted

    public var description: String {
        switch self {
        case .alreadyServing(let path):
            "another creditd is serving \(path) (a connect() there succeeded); stop it first or choose another --socket"
        case .notASocket(let path):
            "\(path) exists and is not a socket; refusing to replace it"
        case .pathTooLong(let path):
            "socket path is longer than \(TTRPCServer.maxSocketPathBytes) bytes (\(path.utf8.count)): \(path)"
        case .cannotProbe(let path, let code):
            "cannot check the existing socket \(path): \(String(cString: strerror(code)))"
        case .bindFailed(let path, let reason):
            "cannot listen on \(path): \(reason)"
        case .alreadyStarted:
            "the server is already listening"
        }
    }
}

/// The ttrpc server: a Unix socket listener, connections, dispatch to services, limits and
/// the built-in health service.
///
/// ```swift
/// let server = TTRPCServer(services: [credits, admin], settings: settings, health: health,
///                          observer: metrics, logger: logger)
/// try await server.start(.path("/run/creditd/creditd.sock"))
/// ...
/// server.reload(newSettings)
/// await server.shutdown()
/// ```
public final class TTRPCServer: Sendable {
    /// The longest socket path creditd binds: what NIO accepts (`sockaddr_un` holds 108 bytes on
    /// Linux, 104 on other systems, and NIO keeps to the smaller), and what creditctl connects to.
    public static let maxSocketPathBytes = 103

    private struct Listener {
        var channel: (any Channel)?
        /// The socket file this server created, identified by device and inode so that a
        /// newer server's socket at the same path is never removed.
        var ownedPath: (path: String, device: UInt64, inode: UInt64)?
        var started = false
        var stopped = false
    }

    public let health: HealthStatus
    private let core: ServerCore
    private let group: any EventLoopGroup
    private let listener = Mutex(Listener())

    /// - Parameters:
    ///   - services: the application's services. `grpc.health.v1.Health` is added from
    ///     `health`, and every other service name is registered in `health`.
    ///   - settings: limits and authorization; replace them later with `reload(_:)`.
    ///   - observer: metrics hooks.
    ///   - lookAhead: shown each read burst's requests before they are dispatched.
    public init(
        services: [RPCService],
        settings: ServerSettings = ServerSettings(),
        health: HealthStatus = HealthStatus(),
        observer: any ServerObserver = NoServerObserver(),
        logger: Logger,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        lookAhead: (any RequestLookAhead)? = nil
    ) {
        var table: [String: RPCService] = [:]
        for service in services {
            table[service.name] = service
            if service.name != HealthStatus.serviceName {
                health.register(service.name)
            }
        }
        table[HealthStatus.serviceName] = health.service()
        for (name, var service) in table {
            for (methodName, var method) in service.methods {
                method.recorder = observer.callRecorder(for: method.descriptor)
                service.methods[methodName] = method
            }
            table[name] = service
        }
        self.health = health
        core = ServerCore(services: table, settings: settings, health: health, observer: observer, logger: logger,
                          lookAhead: lookAhead)
        group = eventLoopGroup
    }

    /// The event loops serving connections.
    public var eventLoopGroup: any EventLoopGroup { group }

    /// The current settings.
    public var settings: ServerSettings { core.settings }

    /// Replaces limits and authorization. Open connections stay; they apply the new values
    /// from their next call (limits on connections from the next accept), and a new idle
    /// timeout at once: a connection's idle timer is re-armed by it, so one opened while the
    /// timeout was off is closed once idle for the new one.
    public func reload(_ settings: ServerSettings) {
        let previous = core.settings
        core.settings = settings
        guard settings.idleTimeout != previous.idleTimeout else { return }
        for connection in core.openConnections() {
            connection.pipeline.fireUserInboundEventTriggered(IdleTimeoutChangedEvent())
        }
    }

    /// Opens the server for calls that need the application's state. Until then they wait
    /// (within their deadline) rather than fail, so that a client that triggered socket
    /// activation, or one queued during a restart, gets its answer once recovery is done.
    public func setReady() {
        core.setReady()
    }

    /// Recovery failed and the server is about to shut down: calls waiting for readiness, and
    /// calls that arrive before the socket closes, are answered UNAVAILABLE with `message` at
    /// once, instead of waiting out their deadlines (which also held the shutdown's drain).
    public func refuseUnready(_ message: String) {
        core.refuseUnready(RPCError.unavailable(message))
    }

    /// Whether `setReady` was called.
    public var isReady: Bool { core.isReady }

    /// Runs the calls that await (async handlers and streams) as child tasks, until `shutdown`
    /// has drained the connections and every such call has ended. Run it for the server's life.
    public func run() async {
        await core.runJobs()
    }

    /// Open connections, calls in flight and totals.
    public var stats: ServerStats { core.stats }

    /// `stats` with the limit counters: connections per uid, refusals, throttling, buffered
    /// response bytes, partial-frame memory, suppressed log lines. For metrics.
    public var detailedStats: ServerStats { core.detailedStats }

    /// Names of the served services, including the health service.
    public var serviceNames: [String] { core.services.keys.sorted() }

    /// Starts listening; returns once the socket accepts connections.
    public func start(_ target: ListenTarget) async throws {
        try listener.withLock { state in
            guard !state.started else { throw TTRPCServerError.alreadyStarted }
            state.started = true
        }
        let bootstrap = makeBootstrap()
        switch target {
        case .path(let path):
            let (channel, identity) = try await Self.bindPath(path, bootstrap: bootstrap, logger: core.logger)
            listener.withLock {
                $0.channel = channel
                $0.ownedPath = (path, identity.device, identity.inode)
            }
            core.logger.info("listening", metadata: ["socket": "\(path)"])
        case .inheritedSocket(let fd):
            let channel = try await bootstrap.withBoundSocket(fd).get()
            listener.withLock { $0.channel = channel }
            core.logger.info("listening on inherited socket", metadata: ["fd": "\(fd)"])
        }
    }

    /// Graceful shutdown: stop accepting (and remove the socket file this server created), set
    /// health NOT_SERVING and end Watch streams with UNAVAILABLE, answer new calls UNAVAILABLE,
    /// let in-flight calls finish for up to `gracePeriod` (default: settings), then answer the
    /// calls still open UNAVAILABLE and close every connection. Safe to call more than once.
    ///
    /// (`answersAfterGraceTime`, below, is how long connections have after the grace to get
    /// those last answers out.)
    public func shutdown(gracePeriod: Duration? = nil) async {
        let grace = gracePeriod ?? core.settings.shutdownGracePeriod
        let (channel, owned, first) = listener.withLock { state in
            let first = !state.stopped
            state.stopped = true
            defer { state.channel = nil; state.ownedPath = nil }
            return (state.channel, state.ownedPath, first)
        }
        let connections = core.beginDraining()
        if let channel {
            try? await channel.close()
        }
        if let owned {
            Self.unlinkIfOwned(path: owned.path, device: owned.device, inode: owned.inode)
        }
        health.shutdown()
        if first, !connections.isEmpty {
            core.logger.info("draining connections", metadata: ["connections": "\(connections.count)", "grace": "\(grace)"])
        }
        for connection in connections {
            connection.pipeline.fireUserInboundEventTriggered(DrainConnectionEvent())
        }
        defer { core.finishJobs() }  // `run` returns once the remaining jobs end
        guard !connections.isEmpty else { return }
        let loop = group.next()
        let allClosed = EventLoopFuture.andAllComplete(connections.map(\.closeFuture), on: loop)
        // At the grace's end each connection answers what is still open and closes once that is
        // written; a second later, any whose peer does not read those answers is closed as is.
        let graceEnd = loop.scheduleTask(in: TimeAmount(clamping: grace)) {
            for connection in connections {
                connection.pipeline.fireUserInboundEventTriggered(ShutdownGraceEndedEvent(grace: grace))
            }
        }
        // Added as Durations, then clamped: a grace near TimeAmount's limit ("wait for ever")
        // would overflow TimeAmount's own addition and trap.
        let forceClose = loop.scheduleTask(in: TimeAmount(clamping: grace + Self.answersAfterGraceTime)) {
            for connection in connections {
                connection.close(promise: nil)
            }
        }
        try? await allClosed.get()
        graceEnd.cancel()
        forceClose.cancel()
    }

    /// How long connections have, after the grace, to get their last answers out.
    static let answersAfterGraceTime = Duration.seconds(1)

    // MARK: bootstrap

    private func makeBootstrap() -> ServerBootstrap {
        let core = self.core
        return ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .childChannelOption(.allowRemoteHalfClosure, value: false)
            // Bounded work per connection per event-loop turn: one read of at most 64 KiB
            // before the loop moves on to the next connection (the handler bounds dispatch
            // further). One read holds hundreds of pipelined requests; what more reads per
            // turn would add is a connection streaming megabytes delaying everyone else.
            .childChannelOption(.maxMessagesPerRead, value: 1)
            .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: 64 << 10))
            .childChannelInitializer { channel in
                // Credentials first: the limits are per uid, and a refusal names it.
                PeerCredentials.read(from: channel).flatMapThrowing { peer in
                    let settings = core.settings
                    let admission = core.admit(channel, uid: peer.uid, privileged: settings.isPrivileged(peer), settings: settings)
                    guard case .admitted(let open) = admission else {
                        if case .refused(let reason, let message) = admission {
                            try Self.refuse(channel, peer: peer, reason: reason, message: message, core: core)
                        }
                        return
                    }
                    core.observer.connectionOpened(peer: peer, openConnections: open)
                    core.logger.debug("connection opened", metadata: ["pid": "\(peer.pid)", "uid": "\(peer.uid)", "gid": "\(peer.gid)"])
                    channel.closeFuture.whenComplete { _ in
                        let remaining = core.release(channel)
                        core.observer.connectionClosed(peer: peer, openConnections: remaining)
                    }
                    try channel.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(BudgetedFrameDecoder(core: core)),
                        TTRPCConnectionHandler(core: core, peer: peer),
                    ])
                }
            }
    }

    /// A connection over a limit: its first request is answered RESOURCE_EXHAUSTED with the
    /// reason (a client sees why, not a bare close), and one line per uid per second is logged.
    private static func refuse(_ channel: any Channel, peer: PeerCredentials, reason: String, message: String, core: ServerCore) throws {
        core.observer.connectionRejected(openConnections: core.stats.openConnections)
        core.logLimiter.log(core.logger, .notice, key: "refused:\(peer.uid)", "connection refused: \(message)",
                            metadata: ["uid": "\(peer.uid)", "pid": "\(peer.pid)", "reason": "\(reason)"])
        // Refused connections waiting to be answered are bounded too; beyond that, close at once.
        guard core.holdRefused(limit: 64) else {
            channel.close(promise: nil)
            return
        }
        channel.closeFuture.whenComplete { _ in core.releaseRefused() }
        try channel.pipeline.syncOperations.addHandler(RefusedConnectionHandler(message: message))
    }

    private static func bindPath(
        _ path: String,
        bootstrap: ServerBootstrap,
        logger: Logger
    ) async throws -> (any Channel, (device: UInt64, inode: UInt64)) {
        guard path.utf8.count <= maxSocketPathBytes else { throw TTRPCServerError.pathTooLong(path: path) }
        if try probeExisting(path) {
            logger.notice("replacing stale socket file", metadata: ["socket": "\(path)"])
            unlink(path)
        }
        // The socket file takes its mode from the umask at bind(); 0117 gives exactly 0660, so
        // there is no moment where it is more open. chmod afterwards covers unusual filesystems.
        let previous = umask(0o117)
        let channel: any Channel
        do {
            channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: false).get()
        } catch let error as IOError {
            umask(previous)
            // NIO's description names its own function ("bind(descriptor:ptr:bytes:)").
            var reason = "\(String(cString: strerror(error.errnoCode))) (errno \(error.errnoCode))"
            if error.errnoCode == EACCES {
                let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
                reason += "; the user creditd runs as needs write access to \(directory.isEmpty ? "/" : directory)"
            }
            throw TTRPCServerError.bindFailed(path: path, reason: reason)
        } catch {
            umask(previous)
            throw TTRPCServerError.bindFailed(path: path, reason: "\(error)")
        }
        umask(previous)
        chmod(path, 0o660)
        var info = stat()
        guard lstat(path, &info) == 0 else {
            try? await channel.close()
            throw TTRPCServerError.bindFailed(path: path, reason: "socket file vanished after bind")
        }
        return (channel, (UInt64(info.st_dev), UInt64(info.st_ino)))
    }

    /// Checks what is at `path`. Returns false when nothing is there, true for a stale socket
    /// (connect refused) that may be replaced; throws if a server answers or it is no socket.
    static func probeExisting(_ path: String) throws -> Bool {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return false }
            throw TTRPCServerError.cannotProbe(path: path, errno: errno)
        }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else { throw TTRPCServerError.notASocket(path: path) }

        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw TTRPCServerError.cannotProbe(path: path, errno: errno) }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes.prefix(raw.count - 1))
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if result == 0 { throw TTRPCServerError.alreadyServing(path: path) }
        switch errno {
        case ECONNREFUSED: return true
        // Non-blocking connect to a live listener whose backlog is full.
        case EAGAIN, EINPROGRESS: throw TTRPCServerError.alreadyServing(path: path)
        case let code: throw TTRPCServerError.cannotProbe(path: path, errno: code)
        }
    }

    private static func unlinkIfOwned(path: String, device: UInt64, inode: UInt64) {
        var info = stat()
        guard lstat(path, &info) == 0, UInt64(info.st_dev) == device, UInt64(info.st_ino) == inode else { return }
        unlink(path)
    }
}
