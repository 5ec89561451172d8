/// Finds length-delimited fields in encoded protobuf without decoding or copying anything:
/// for hints taken from requests before they are dispatched (`RequestLookAhead`). Anything
/// unusual (a group, a malformed varint, a length past the end) ends the scan with nil, and
/// dispatch then decodes and reports the request as usual; nothing here may fail louder.
public enum FieldPeek {
    /// The service, method and payload (fields 1, 2 and 3) of an encoded `Ttrpc_Request`,
    /// each the last occurrence, as a decoder would take them.
    public static func request(_ bytes: UnsafeRawBufferPointer)
        -> (service: UnsafeRawBufferPointer, method: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer)? {
        var service: UnsafeRawBufferPointer?
        var method: UnsafeRawBufferPointer?
        var payload = UnsafeRawBufferPointer(start: nil, count: 0)
        let complete = scan(bytes) { field, value in
            switch field {
            case 1: service = value
            case 2: method = value
            case 3: payload = value
            default: break
            }
        }
        guard complete, let service, let method else { return nil }
        return (service, method, payload)
    }

    /// The last length-delimited field `field` of the message in `bytes`, nil when it has none
    /// or the scan stops early.
    public static func bytesField(_ field: UInt64, in bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        var found: UnsafeRawBufferPointer?
        guard scan(bytes, { number, value in if number == field { found = value } }) else { return nil }
        return found
    }

    /// Calls `body` with each length-delimited field's number and bytes, skipping the other
    /// wire types. Returns whether the whole message was read.
    private static func scan(_ bytes: UnsafeRawBufferPointer,
                             _ body: (UInt64, UnsafeRawBufferPointer) -> Void) -> Bool {
        var offset = 0
        while offset < bytes.count {
            guard let key = varint(bytes, &offset) else { return false }
            switch key & 7 {
            case 0:
                guard varint(bytes, &offset) != nil else { return false }
            case 1:
                guard bytes.count - offset >= 8 else { return false }
                offset += 8
            case 2:
                guard let length = varint(bytes, &offset), length <= UInt64(bytes.count - offset) else { return false }
                let end = offset + Int(length)
                body(key >> 3, UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))
                offset = end
            case 5:
                guard bytes.count - offset >= 4 else { return false }
                offset += 4
            default:
                return false  // groups and invalid wire types: not worth a hint
            }
        }
        return true
    }

    private static func varint(_ bytes: UnsafeRawBufferPointer, _ offset: inout Int) -> UInt64? {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while offset < bytes.count, shift <= 63 {
            let byte = bytes[offset]
            offset += 1
            result |= UInt64(byte & 0x7F) &<< shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
        return nil
    }
}
