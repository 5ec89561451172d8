// CreditWire: containerd's ttrpc protocol as bytes, with no sockets.
//
// What it owns. The 10-byte frame header, frame types and flags (Frame.swift), the incremental
// frame decoder and encoder with the 4 MiB limit and oversize discard (FrameCodec.swift), the
// ttrpc.Request/Response envelope (Envelope.swift), a scan for fields without decoding them, for
// hints taken ahead of dispatch (FieldPeek.swift), gRPC status codes (StatusCode.swift) and the
// error value that crosses the wire with its stable reason (RPCError.swift).
// The protocol is described in docs/wire-protocol.md; section numbers in comments refer to it.
//
// Invariants.
//   - A decoder never allocates the announced length of an oversize frame: it skips exactly
//     that many bytes and reports the frame, so the connection survives (wire-protocol §7.5).
//   - Buffering is bounded by one frame; frames split across reads decode the same as whole ones.
//   - Success omits the status; a missing status or code 0 decodes as OK (wire-protocol §3).
//   - Nothing here knows about NIO channels, peers or the domain.
//
// Entry points.
//   - TTRPCFrameParser / TTRPCFrameDecoder (a ByteToMessageDecoder) and TTRPCFrameEncoder;
//     TTRPCFrameParser.scanCompleteFrames looks at the frames a read brought without parsing them.
//   - TTRPCEnvelope: encode and decode requests and responses.
//   - RPCError and StatusCode for everything that fails.
