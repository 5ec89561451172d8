import XCTest
import SystemdSupport
#if canImport(Glibc)
import Glibc
#endif

final class PeerCredentialsTests: XCTestCase {
    func testPeerCredentialsAndGroupsOfASocketPair() throws {
        var pair: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair), 0)
        defer { close(pair[0]); close(pair[1]) }

        let credentials = try PeerCredentials.credentials(ofSocket: pair[0])
        XCTAssertEqual(credentials.pid, getpid())
        XCTAssertEqual(credentials.uid, getuid())
        XCTAssertEqual(credentials.gid, getgid())

        let count = getgroups(0, nil)
        var own = [gid_t](repeating: 0, count: Int(count))
        XCTAssertEqual(getgroups(count, &own), count)
        let peer = try PeerCredentials.supplementaryGroups(ofSocket: pair[0])
        XCTAssertEqual(Set(peer), Set(own))
    }

    func testPeerGroupsOnANonSocketFail() {
        let fd = open("/dev/null", O_RDONLY)
        defer { close(fd) }
        XCTAssertThrowsError(try PeerCredentials.supplementaryGroups(ofSocket: fd)) {
            XCTAssertEqual(($0 as? SystemCallError)?.errno, ENOTSOCK)
        }
    }

    func testNameLookups() throws {
        XCTAssertEqual(try PeerCredentials.userID(named: "root"), 0)
        XCTAssertEqual(try PeerCredentials.groupID(named: "root"), 0)
        XCTAssertNil(try PeerCredentials.userID(named: "creditd-no-such-user"))
        XCTAssertNil(try PeerCredentials.groupID(named: "creditd-no-such-group"))
    }
}
