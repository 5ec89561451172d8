// CreditClient: the Swift ttrpc client that creditctl and the tests use.
//
// What it owns. Connecting to a Unix socket, odd increasing stream ids, one outstanding call
// per stream with its deadline sent as timeout_nano and enforced locally, decoding responses
// and statuses into RPCError, and typed wrappers for the Credits, Admin and Health calls.
//
// Invariants.
//   - A call never outlives its timeout; a late response for an abandoned stream is dropped.
//   - Keys of metadata are sent in lower case (docs/wire-protocol.md §5).
//   - Connection failures surface as ClientError (connect failed, timed out, connection closed),
//     distinct from a server's RPCError, so callers can map them to exit codes.
//
// Entry points.
//   - CreditClient.connect(socketPath:timeout:), call(service:method:request:responseType:timeout:),
//     callRaw, the typed calls in TypedCalls.swift, close().
