#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reads a few variables from the process environment.
///
/// The types in this module take an explicit `[String: String]` so tests can pass
/// their own values; these helpers build that dictionary from the real environment
/// for just the keys a type needs.
enum ProcessEnvironment {
    static func values(for keys: [String]) -> [String: String] {
        var result: [String: String] = [:]
        for key in keys {
            if let raw = getenv(key) {
                result[key] = String(cString: raw)
            }
        }
        return result
    }
}

/// Parses a non-negative decimal integer the way systemd does for its variables:
/// digits only, no sign, no surrounding space.
func parseDecimal(_ text: String) -> UInt64? {
    guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
    return UInt64(text)
}
