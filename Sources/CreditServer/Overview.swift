// CreditServer: the NIO ttrpc server on a Unix socket.
//
// What it owns. Binding the socket or adopting a socket-activated one (TTRPCServer), reading
// the peer's SO_PEERCRED/SO_PEERGROUPS once per connection (PeerCredentials), the per-connection
// state machine: stream ids, limits, deadlines, draining, slow consumers (ConnectionHandler),
// the method table with roles and dispatch (RPCService, ServerCore), authorization and limits
// (ServerSettings), grpc.health.v1 (Health), and the daemon's configuration value with its
// JSON file and flag layers (DaemonConfiguration). Limits against misbehaving clients
// (docs/operations.md §1): admission per uid with reserved slots and idle-first eviction
// (ServerCore.admit), backpressure and fair dispatch (ConnectionHandler), the partial-frame
// memory budget and refused connections (FrameBudget), per-uid log rate limits (LogRateLimiter).
// Replies completed together off their event loops (a durable batch's) reach each loop as one
// task (ReplyBatch). The frame decoder shows each read burst's requests to the application's
// RequestLookAhead before passing them on, so that what they read is warmed together.
// Wire rules: docs/wire-protocol.md §2, §4-§6; roles: docs/operations.md §1; health: §2.
//
// Invariants.
//   - A malformed frame never crashes the server, never stalls other streams and never reaches
//     a handler; every protocol error answers on its own stream and keeps the connection,
//     except EOF or a read error, which cancels the connection's handlers and closes it.
//   - Stream ids are odd and increase per connection; an answer never exceeds 4 MiB.
//   - The role check comes from the kernel's credentials, never from the request.
//   - Health is read from an atomic value and never waits on a call.
//   - The server knows no billing: handlers are closures in RPCService tables built elsewhere.
//   - A connection holds at most max_buffered_response_bytes of unwritten answers (then it is not
//     read) and its large partial frames come out of one global budget; a call is in flight
//     until its answer is on the socket.
//
// Entry points.
//   - TTRPCServer(services:settings:health:observer:logger:eventLoopGroup:lookAhead:), start(_ ListenTarget),
//     reload, shutdown.
//   - RPCService / RPCMethod to describe services; HealthStatus to publish health.
//   - DaemonConfiguration.resolve(configFile:flags:environment:).
