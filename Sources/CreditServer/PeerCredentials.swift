import CreditProto
import CCreditSystem
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Who is on the other end of a connection, as the kernel recorded it at connect()
/// (SO_PEERCRED; supplementary groups from SO_PEERGROUPS). Read once per connection, at accept.
public struct PeerCredentials: Sendable, Hashable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32
    /// Supplementary groups; empty when the kernel could not report them.
    public var groups: [UInt32]

    public init(pid: Int32, uid: UInt32, gid: UInt32, groups: [UInt32] = []) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.groups = groups
    }

    /// Credentials of a peer that could not be identified: matches no configured id
    /// (uid/gid 0xFFFFFFFF is "no id" for the kernel too).
    public static let unknown = PeerCredentials(pid: 0, uid: .max, gid: .max)

    /// True when the peer's primary or any supplementary group is in `gids`.
    public func isMember(ofAny gids: Set<UInt32>) -> Bool {
        gids.contains(gid) || groups.contains(where: gids.contains)
    }

    public var description: String { "pid=\(pid) uid=\(uid) gid=\(gid)" }

    /// Reads the credentials of a connected Unix socket channel.
    static func read(from channel: any Channel) -> EventLoopFuture<PeerCredentials> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeSucceededFuture(.unknown)
        }
        let ucred: EventLoopFuture<credit_ucred> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET),
            name: SocketOptionName(SO_PEERCRED)
        )
        return ucred.flatMap { cred in
            let base = PeerCredentials(pid: cred.pid, uid: cred.uid, gid: cred.gid)
            let option = credit_so_peergroups()
            guard option >= 0 else { return channel.eventLoop.makeSucceededFuture(base) }
            let groups: EventLoopFuture<credit_peergroups> = provider.unsafeGetSocketOption(
                level: SocketOptionLevel(SOL_SOCKET),
                name: SocketOptionName(option)
            )
            return groups.map { list in
                var result = base
                result.groups = Self.decodeGroups(list)
                return result
            }.recover { _ in base }  // ERANGE (very many groups) or an old kernel: primary gid only
        }.recover { _ in .unknown }
    }

    /// NIO zero-fills the option buffer and does not report the returned length. The kernel
    /// returns the groups sorted ascending, so the list ends at the last non-zero entry; a lone
    /// supplementary group 0 is therefore not seen (root's group is still seen as a primary gid).
    static func decodeGroups(_ list: credit_peergroups) -> [UInt32] {
        withUnsafeBytes(of: list.gids) { raw in
            let gids = raw.bindMemory(to: UInt32.self)
            guard let last = gids.lastIndex(where: { $0 != 0 }) else { return [] }
            return Array(gids[...last])
        }
    }
}
