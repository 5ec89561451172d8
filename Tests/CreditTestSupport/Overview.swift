// CreditTestSupport: what the test targets share, so that there is one of each.
//
// What it owns. Starting the real binaries and running commands for tests, the private
// directories they work in, the environment they get, and raw ttrpc on a socket.
//
// Invariants.
//   - A test leaves nothing behind: every directory made by TemporaryDirectory (DaemonProcess's
//     included) is removed and every daemon started is killed when the test ends, or for a class
//     setUp when the test process exits (TestCleanup; EndToEndTests.TestSupportTests shows it).
//   - Child processes get TestEnvironment.scrubbed: no inherited LISTEN_*, NOTIFY_SOCKET,
//     WATCHDOG_*, JOURNAL_STREAM, *_DIRECTORY, CREDITD_SOCKET or CREDITD_TEST_SERVICE.
//   - Output of a child goes to files, not pipes, so a full pipe never stalls it.
//
// Entry points.
//   - DaemonProcess.start(arguments:directory:socketPath:environment:testService:waitUntilServing:
//     timeout:), stop(signal:timeout:), kill(), waitForExit(timeout:), socketPath, stateDirectory,
//     stderr, runToExit(arguments:directory:timeout:), makeTemporaryDirectory(), binaryPath().
//   - CreditctlProcess.run(_:prefix:environment:stdin:timeout:) -> OpsResult;
//     OpsProcess.run(_:environment:stdin:currentDirectory:timeout:), OpsProcess.creditctl(...).
//   - TemporaryDirectory.make(_:) / makePath(_:) / remove(_:); XCTestCase.makeTemporaryDirectory(_:).
//   - TestEnvironment.scrubbed(_:), TestEnvironment.scrubbedVariables.
//   - RawTTRPCConnection (hand-made frames), UnixSocketAddress, FaultInjectionShim.build(into:).
//   - FakeServer (a one-connection ttrpc server with a scripted side, for answers the real daemon
//     cannot be made to give), ServerConnection, RequestLog.
//   - For systemd tests: ActivatedDaemon (systemd-socket-activate), NotifyReceiver,
//     BackgroundProcess, OpsTools.
