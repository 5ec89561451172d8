/// A snapshot's payload: its bytes in order, in one or more pieces that are never joined in
/// memory. The ledger encoder builds its parts in parallel, each in a buffer of its own; joined
/// into one array (and then again behind the snapshot's header), a 1M-subscription snapshot took
/// two more copies of its 300 MB, each in memory touched for the first time, which was a third
/// of the snapshot's time (BENCHMARKS.md, "snapshots written from their parts").
public protocol SnapshotPayload: Sendable {
    /// The payload's length in bytes: the sum of its pieces'.
    var byteCount: Int { get }
    /// Calls `body` with each piece, in order. The pointers are valid only during the call.
    func forEachPiece<Failure: Error>(_ body: (UnsafeRawBufferPointer) throws(Failure) -> Void) throws(Failure)
}

extension Array: SnapshotPayload where Element == UInt8 {
    public var byteCount: Int { count }

    public func forEachPiece<Failure: Error>(_ body: (UnsafeRawBufferPointer) throws(Failure) -> Void) throws(Failure) {
        let result: Result<Void, Failure> = withUnsafeBytes { bytes in
            do throws(Failure) {
                try body(bytes)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }
}

extension SnapshotPayload {
    /// The pieces as one array (a store that needs its payload contiguous, and tests).
    public func joined() -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: byteCount) { buffer, initialized in
            var offset = 0
            forEachPiece { piece in
                guard piece.count > 0 else { return }
                precondition(offset + piece.count <= byteCount, "snapshot payload pieces exceed the \(byteCount) bytes announced")
                UnsafeMutableRawPointer(buffer.baseAddress! + offset).copyMemory(from: piece.baseAddress!, byteCount: piece.count)
                offset += piece.count
            }
            precondition(offset == byteCount, "snapshot payload pieces of \(offset) bytes, \(byteCount) announced")
            initialized = offset
        }
    }

    /// The CRC-32C of all the pieces, as `CRC32C.checksum` of the joined bytes.
    var checksum: UInt32 {
        var crc: UInt32 = 0
        forEachPiece { crc = CRC32C.update(crc, $0) }
        return crc
    }
}
