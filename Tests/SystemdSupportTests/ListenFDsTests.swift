import XCTest
import SystemdSupport
#if canImport(Glibc)
import Glibc
#endif

final class ListenFDsTests: XCTestCase {
    private let pid: pid_t = 777

    func testIgnoredUnlessListenPIDIsOurs() throws {
        XCTAssertFalse(try ListenFDs(environment: [:], pid: pid).isActivated)
        XCTAssertFalse(try ListenFDs(environment: ["LISTEN_PID": "778", "LISTEN_FDS": "1"], pid: pid).isActivated)
        XCTAssertFalse(try ListenFDs(environment: ["LISTEN_PID": "abc", "LISTEN_FDS": "1"], pid: pid).isActivated)
    }

    func testNamedDescriptorsStartAtThree() throws {
        let fds = try ListenFDs(
            environment: ["LISTEN_PID": "777", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "metrics:rpc"],
            pid: pid
        )
        XCTAssertEqual(fds.descriptors, [.init(fd: 3, name: "metrics"), .init(fd: 4, name: "rpc")])
        XCTAssertEqual(try fds.descriptor(named: "rpc"), 4)
        XCTAssertThrowsError(try fds.descriptor(named: "admin")) { error in
            XCTAssertEqual(error as? ListenFDsError, .missingName("admin", available: ["metrics", "rpc"]))
        }
    }

    func testSingleUnnamedDescriptorIsTheRPCSocket() throws {
        let fds = try ListenFDs(environment: ["LISTEN_PID": "777", "LISTEN_FDS": "1"], pid: pid)
        XCTAssertEqual(fds.descriptors, [.init(fd: 3, name: "unknown")])
        XCTAssertEqual(try fds.descriptor(named: ListenFDs.rpcName), 3)

        let two = try ListenFDs(environment: ["LISTEN_PID": "777", "LISTEN_FDS": "2"], pid: pid)
        XCTAssertThrowsError(try two.descriptor(named: "rpc"))
    }

    func testMalformedVariablesAreErrors() {
        XCTAssertThrowsError(try ListenFDs(environment: ["LISTEN_PID": "777", "LISTEN_FDS": "0"], pid: pid)) {
            XCTAssertEqual($0 as? ListenFDsError, .invalidCount("0"))
        }
        XCTAssertThrowsError(try ListenFDs(environment: ["LISTEN_PID": "777"], pid: pid)) {
            XCTAssertEqual($0 as? ListenFDsError, .invalidCount(""))
        }
        XCTAssertThrowsError(
            try ListenFDs(environment: ["LISTEN_PID": "777", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "rpc"], pid: pid)
        ) {
            XCTAssertEqual($0 as? ListenFDsError, .nameCountMismatch(names: 1, fds: 2))
        }
    }

    func testTakeUnsetsTheVariablesEvenForAnotherProcess() throws {
        // A LISTEN_PID that is not ours: no fds are touched, but the variables go.
        setenv("LISTEN_PID", String(getpid() + 1), 1)
        setenv("LISTEN_FDS", "1", 1)
        setenv("LISTEN_FDNAMES", "rpc", 1)
        let fds = try ListenFDs.takeFromProcessEnvironment()
        XCTAssertFalse(fds.isActivated)
        XCTAssertNil(getenv("LISTEN_PID"))
        XCTAssertNil(getenv("LISTEN_FDS"))
        XCTAssertNil(getenv("LISTEN_FDNAMES"))
    }

    // MARK: Validation on real sockets

    func testListeningUnixStreamSocketPasses() throws {
        let (fd, directory) = try makeUnixStreamSocket(listening: true)
        defer { close(fd); TemporaryDirectory.remove(atPath: directory) }
        XCTAssertNoThrow(try ListenFDs.validateListeningUnixStream(fd))
    }

    func testNonListeningUnixStreamSocketFails() throws {
        let (fd, directory) = try makeUnixStreamSocket(listening: false)
        defer { close(fd); TemporaryDirectory.remove(atPath: directory) }
        XCTAssertThrowsError(try ListenFDs.validateListeningUnixStream(fd)) {
            XCTAssertEqual($0 as? ListenFDsError, .notListening(fd: fd))
        }
    }

    func testDatagramSocketFails() throws {
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        XCTAssertThrowsError(try ListenFDs.validateListeningUnixStream(fd)) {
            XCTAssertEqual($0 as? ListenFDsError, .notStream(fd: fd, type: Int32(SOCK_DGRAM.rawValue)))
        }
    }

    func testListeningTCPSocketFails() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        XCTAssertEqual(listen(fd, 1), 0, "listen on an unbound TCP socket binds an ephemeral port")
        XCTAssertThrowsError(try ListenFDs.validateListeningUnixStream(fd)) {
            XCTAssertEqual($0 as? ListenFDsError, .notUnixDomain(fd: fd, domain: AF_INET))
        }
    }

    func testRegularFileFails() throws {
        let fd = open("/dev/null", O_RDONLY)
        defer { close(fd) }
        XCTAssertThrowsError(try ListenFDs.validateListeningUnixStream(fd)) { error in
            guard case .systemCall(_, _, let code)? = error as? ListenFDsError else {
                return XCTFail("unexpected \(error)")
            }
            XCTAssertEqual(code, ENOTSOCK)
            XCTAssertTrue("\(error)".contains("SO_DOMAIN"))
        }
    }
}
