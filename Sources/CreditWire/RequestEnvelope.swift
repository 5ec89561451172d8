import NIOCore

/// A ttrpc `Request` envelope read straight from the frame's bytes (docs/wire-protocol.md).
///
/// The server decodes one per call; doing it by hand instead of through SwiftProtobuf's
/// `Ttrpc_Request` saves two copies of the payload and the generic message machinery on the
/// hottest path. It accepts exactly what `Ttrpc_Request(serializedBytes:)` accepts (the
/// envelope tests and the frame fuzzer compare the two): proto3 rules, unknown fields and
/// known fields of another wire type skipped, the last value of a repeated scalar field wins,
/// strings must be valid UTF-8.
public struct RequestEnvelope: Sendable, Equatable {
    public var service = ""
    public var method = ""
    public var payload: [UInt8] = []
    public var timeoutNano: Int64 = 0
    /// The first `maxMetadataEntries` entries; `metadataCount` says how many the frame held.
    public var metadata: [(key: String, value: String)] = []
    public var metadataCount = 0

    /// Metadata entries a request may carry. Each costs two strings and, for the call, a
    /// lowercased copy: a 4 MiB frame of empty entries decoded into ~2 million, 64 MiB held for
    /// as long as the call (a Watch stream: for ever). The server refuses a request over it.
    public static let maxMetadataEntries = 64

    public init() {}

    public static func == (lhs: RequestEnvelope, rhs: RequestEnvelope) -> Bool {
        lhs.service == rhs.service && lhs.method == rhs.method && lhs.payload == rhs.payload
            && lhs.timeoutNano == rhs.timeoutNano && lhs.metadataCount == rhs.metadataCount
            && lhs.metadata.map(\.key) == rhs.metadata.map(\.key) && lhs.metadata.map(\.value) == rhs.metadata.map(\.value)
    }

    public struct DecodeError: Error, CustomStringConvertible, Equatable {
        public let description: String
    }

    /// Decodes a Request frame's data. Zero bytes decode as an empty Request.
    public init(decoding buffer: ByteBuffer) throws(DecodeError) {
        var reader = ProtoReader(buffer.readableBytesView)
        while let (field, wireType) = try reader.tag() {
            switch (field, wireType) {
            case (1, 2): service = try reader.string()
            case (2, 2): method = try reader.string()
            case (3, 2): payload = try reader.bytes()
            case (4, 0): timeoutNano = Int64(bitPattern: try reader.varint())
            case (5, 2):
                var entry = ProtoReader(try reader.slice(), depth: 1)
                var key = ""
                var value = ""
                while let (entryField, entryType) = try entry.tag() {
                    switch (entryField, entryType) {
                    case (1, 2): key = try entry.string()
                    case (2, 2): value = try entry.string()
                    default: try entry.skip(entryType, field: entryField)
                    }
                }
                metadataCount += 1
                if metadataCount <= Self.maxMetadataEntries { metadata.append((key: key, value: value)) }
            default:
                try reader.skip(wireType, field: field)
            }
        }
    }

    /// The encoded `Response` data of a successful call: `status` omitted, the payload as
    /// field 2 (absent when empty), written into one buffer with no intermediate copy.
    public static func successResponse(payload: [UInt8], allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: successResponseLength(payloadCount: payload.count))
        writeSuccessResponse(payload: payload, into: &buffer)
        return buffer
    }

    /// How many bytes `writeSuccessResponse` writes for a payload of `payloadCount` bytes.
    public static func successResponseLength(payloadCount: Int) -> Int {
        guard payloadCount > 0 else { return 0 }
        var lengthBytes = 1
        var length = payloadCount >> 7
        while length > 0 {
            lengthBytes += 1
            length >>= 7
        }
        return 1 + lengthBytes + payloadCount
    }

    /// Appends the encoded `Response` data of a successful call (see `successResponse`).
    public static func writeSuccessResponse(payload: [UInt8], into buffer: inout ByteBuffer) {
        guard !payload.isEmpty else { return }
        buffer.writeInteger(UInt8(0x12))
        var length = UInt64(payload.count)
        while length >= 0x80 {
            buffer.writeInteger(UInt8(truncatingIfNeeded: length) | 0x80)
            length >>= 7
        }
        buffer.writeInteger(UInt8(length))
        buffer.writeBytes(payload)
    }
}

/// A reader of the protobuf wire format over contiguous bytes.
struct ProtoReader {
    private let data: ByteBufferView
    private var index: ByteBufferView.Index

    /// How many messages and groups enclose what this reader reads, the Request itself
    /// counted: SwiftProtobuf refuses input nested deeper than 100 of them.
    private let depth: Int
    private static let depthLimit = 100

    init(_ data: ByteBufferView, depth: Int = 0) {
        self.data = data
        index = data.startIndex
        self.depth = depth + 1
    }

    private typealias DecodeError = RequestEnvelope.DecodeError

    /// At most ten bytes; bits of the tenth past the 64th are dropped. That is what
    /// SwiftProtobuf (and protobuf's C++ parser) accept, and the two readers must agree on
    /// every input (the frame fuzzer compares them).
    mutating func varint() throws(RequestEnvelope.DecodeError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while index < data.endIndex {
            guard shift <= 63 else { throw DecodeError(description: "varint longer than ten bytes") }
            let byte = data[index]
            index += 1
            result |= UInt64(byte & 0x7F) &<< shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
        throw DecodeError(description: "truncated varint")
    }

    /// The next field's number and wire type; nil at the end.
    ///
    /// A field's tag is at most five bytes, the fifth no more than 15 (a 32-bit key), as
    /// SwiftProtobuf reads a message's fields; a padded longer form is refused. Tags inside
    /// a skipped group are read as any varint below 2^32 instead (`groupTag`): SwiftProtobuf
    /// reads the two with different code, and the frame fuzzer found the difference.
    mutating func tag() throws(RequestEnvelope.DecodeError) -> (field: UInt64, wireType: UInt64)? {
        guard index < data.endIndex else { return nil }
        var key: UInt64 = 0
        for position in 0..<5 {
            guard index < data.endIndex else { throw DecodeError(description: "truncated field tag") }
            let byte = data[index]
            index += 1
            if position == 4, byte > 15 { throw DecodeError(description: "field tag longer than 32 bits") }
            key |= UInt64(byte & 0x7F) &<< UInt64(7 * position)
            if byte & 0x80 == 0 { break }
        }
        return try fieldAndWireType(of: key)
    }

    /// A tag inside a group being skipped: any varint of up to ten bytes whose value is
    /// below 2^32 - 1.
    private mutating func groupTag() throws(RequestEnvelope.DecodeError) -> (field: UInt64, wireType: UInt64)? {
        guard index < data.endIndex else { return nil }
        let key = try varint()
        guard key < 0xFFFF_FFFF else { throw DecodeError(description: "field tag longer than 32 bits") }
        return try fieldAndWireType(of: key)
    }

    private func fieldAndWireType(of key: UInt64) throws(RequestEnvelope.DecodeError) -> (field: UInt64, wireType: UInt64) {
        let field = key >> 3
        guard field > 0, field <= 0x1FFF_FFFF else { throw DecodeError(description: "invalid field number \(field)") }
        return (field, key & 7)
    }

    mutating func slice() throws(RequestEnvelope.DecodeError) -> ByteBufferView {
        let length = try varint()
        guard length <= UInt64(data.endIndex - index) else { throw DecodeError(description: "truncated length-delimited field") }
        let start = index
        index += Int(length)
        return data[start..<index]
    }

    mutating func bytes() throws(RequestEnvelope.DecodeError) -> [UInt8] {
        Array(try slice())
    }

    mutating func string() throws(RequestEnvelope.DecodeError) -> String {
        let raw = try slice()
        // Service and method names (and metadata, in practice) are ASCII, which is valid UTF-8
        // as it is. Validating a `ByteBufferView` runs the standard library's unspecialized
        // generic validation, which looks up generic metadata on every call: ~3% of a read's
        // CPU on the event loop (BENCHMARKS.md). Any other byte takes the full check below.
        if case let text?? = raw.withContiguousStorageIfAvailable({ bytes -> String? in
            var highBits: UInt8 = 0
            for byte in bytes { highBits |= byte }
            return highBits < 0x80 ? String(decoding: bytes, as: UTF8.self) : nil
        }) {
            return text
        }
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw DecodeError(description: "string field is not valid UTF-8")
        }
        return text
    }

    /// Skips an unknown field's value. Groups (wire types 3 and 4, long deprecated but still
    /// valid protobuf) are skipped to their matching end, as SwiftProtobuf does.
    mutating func skip(_ wireType: UInt64, field: UInt64) throws(RequestEnvelope.DecodeError) {
        try skip(wireType, field: field, groupsOpen: 0)
    }

    private mutating func skip(_ wireType: UInt64, field: UInt64, groupsOpen: Int) throws(RequestEnvelope.DecodeError) {
        switch wireType {
        case 0: _ = try varint()
        case 1: try advance(8)
        case 2: _ = try slice()
        case 3:
            guard depth + groupsOpen < Self.depthLimit else { throw DecodeError(description: "groups nested too deeply") }
            while true {
                guard let (inner, innerType) = try groupTag() else { throw DecodeError(description: "truncated group") }
                if innerType == 4 {
                    guard inner == field else { throw DecodeError(description: "mismatched end of group") }
                    return
                }
                try skip(innerType, field: inner, groupsOpen: groupsOpen + 1)
            }
        case 5: try advance(4)
        default: throw DecodeError(description: "unsupported wire type \(wireType)")
        }
    }

    private mutating func advance(_ count: Int) throws(RequestEnvelope.DecodeError) {
        guard data.endIndex - index >= count else { throw DecodeError(description: "truncated fixed-size field") }
        index += count
    }
}
