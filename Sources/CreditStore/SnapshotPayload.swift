/// A snapshot's payload: its bytes in order, in one or more pieces that are never joined in
/// memory. The ledger encoder builds its parts in parallel, each in a buffer of its own; joined
/// into one array (and then again behind the snapshot's header), a 1M-subscription snapshot took
/// two more copies of its 300 MB, each in memory touched for the first time, which was a third
/// of the snapshot's time (BENCHMARKS.md, "snapshots written from their parts").
public protocol SnapshotPayload: Sendable {
    /// Calls `body` with each piece, in order. The pointers are valid only during the call. A
    /// payload may make each piece when it is asked for and free it after `body` returns, so
    /// its length is known only at the end, and a store reads it once per write (a second
    /// reading need not give the same bytes: checksum them as they are written).
    func forEachPiece<Failure: Error>(_ body: (UnsafeRawBufferPointer) throws(Failure) -> Void) throws(Failure)
}

extension Array: SnapshotPayload where Element == UInt8 {
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
    /// The pieces as one array (tests, fuzzers, small payloads).
    public func joined() -> [UInt8] {
        var bytes: [UInt8] = []
        forEachPiece { bytes.append(contentsOf: $0) }
        return bytes
    }

    /// The bytes in arrays of `size` bytes each, the last one shorter (at least one array,
    /// perhaps empty): for a store that keeps a snapshot as rows, without joining the payload
    /// first (joining an array of unknown length copies it again each time it doubles).
    public func chunked(into size: Int) -> [[UInt8]] {
        precondition(size > 0, "snapshot chunks of \(size) bytes")
        var chunks: [[UInt8]] = []
        var current: [UInt8] = []
        current.reserveCapacity(size)
        forEachPiece { piece in
            var rest = piece
            while !rest.isEmpty {
                let part = min(size - current.count, rest.count)
                current.append(contentsOf: UnsafeRawBufferPointer(rebasing: rest[..<part]))
                rest = UnsafeRawBufferPointer(rebasing: rest[part...])
                if current.count == size {
                    chunks.append(current)
                    current = []
                    current.reserveCapacity(size)
                }
            }
        }
        if !current.isEmpty || chunks.isEmpty { chunks.append(current) }
        return chunks
    }
}
