#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// Bytes read from a file, read-only: a mapping of the file when it is large, else an array.
///
/// Recovery reads the newest snapshot whole, 300 MB at 1M subscriptions. Read into an array,
/// that cost a copy of every byte out of the page cache, and as many fresh pages for the kernel
/// to clear, one fault each (a few microseconds apiece on a virtual machine); and the array
/// then had its header cut off with a second copy. A mapping reads the page cache in place.
/// Unmapped when the last copy of the value goes, so a decoded snapshot leaves nothing behind.
///
/// A mapped file must not shrink while mapped (reading past its new end raises SIGBUS):
/// creditd's snapshots are never truncated, only replaced by rename and removed by unlink,
/// which leave a mapping readable, and the state directory's lock keeps other creditd
/// processes out.
public struct FileBytes: Sendable, Equatable {
    private let storage: Storage
    private let range: Range<Int>

    /// Files at least this large are mapped.
    static let mappingThreshold = 1 << 20
    /// Mappings not yet unmapped, in this process (tests).
    static let liveMappings = Atomic<Int>(0)

    /// The bytes of an array.
    public init(_ bytes: [UInt8]) {
        storage = .array(bytes)
        range = 0..<bytes.count
    }

    /// `length` bytes mapped read-only at `address`, unmapped when no longer used.
    init(mapping address: UnsafeRawPointer, length: Int) {
        storage = .mapping(Mapping(address: address, length: length))
        range = 0..<length
    }

    private init(storage: Storage, range: Range<Int>) {
        self.storage = storage
        self.range = range
    }

    public var count: Int { range.count }

    /// Whether the bytes are a mapping of the file (else an array).
    var isMapped: Bool {
        if case .mapping = storage { true } else { false }
    }

    /// The same bytes without the first `count` (no copy).
    public func dropFirst(_ count: Int) -> FileBytes {
        FileBytes(storage: storage, range: min(range.lowerBound + max(count, 0), range.upperBound)..<range.upperBound)
    }

    /// The bytes, valid only inside `body`.
    public func withUnsafeBufferPointer<Result, Failure: Error>(
        _ body: (UnsafeBufferPointer<UInt8>) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        switch storage {
        case .array(let bytes):
            let outcome: Swift.Result<Result, Failure> = bytes.withUnsafeBufferPointer { whole in
                do throws(Failure) {
                    return .success(try body(UnsafeBufferPointer(rebasing: whole[range])))
                } catch {
                    return .failure(error)
                }
            }
            return try outcome.get()
        case .mapping(let mapping):
            let whole = UnsafeBufferPointer(start: mapping.address.assumingMemoryBound(to: UInt8.self), count: mapping.length)
            return try withExtendedLifetime(mapping) { () throws(Failure) -> Result in
                try body(UnsafeBufferPointer(rebasing: whole[range]))
            }
        }
    }

    /// A copy in an array.
    public var array: [UInt8] {
        if case .array(let bytes) = storage, range == 0..<bytes.count { return bytes }
        return withUnsafeBufferPointer { Array($0) }
    }

    public static func == (lhs: FileBytes, rhs: FileBytes) -> Bool {
        lhs.count == rhs.count && lhs.withUnsafeBufferPointer { left in
            rhs.withUnsafeBufferPointer { right in
                left.count == 0 || memcmp(left.baseAddress!, right.baseAddress!, left.count) == 0
            }
        }
    }

    private enum Storage: Sendable {
        case array([UInt8])
        case mapping(Mapping)
    }

    /// Owns a read-only mapping; never written after `init`.
    private final class Mapping: @unchecked Sendable {
        let address: UnsafeRawPointer
        let length: Int

        init(address: UnsafeRawPointer, length: Int) {
            self.address = address
            self.length = length
            FileBytes.liveMappings.add(1, ordering: .relaxed)
        }

        deinit {
            munmap(UnsafeMutableRawPointer(mutating: address), length)
            FileBytes.liveMappings.subtract(1, ordering: .relaxed)
        }
    }
}
