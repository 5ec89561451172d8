// DaemonProcess, RawTTRPCConnection, OpsProcess, CreditctlProcess, TemporaryDirectory and the
// other helpers live in Tests/CreditTestSupport; re-exported so every file here sees them.
@_exported import CreditTestSupport
