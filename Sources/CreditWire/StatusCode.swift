/// gRPC status codes (google/rpc/code.proto) as carried in `google.rpc.Status.code`.
public enum StatusCode: Int32, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case ok = 0
    case cancelled = 1
    case unknown = 2
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case alreadyExists = 6
    case permissionDenied = 7
    case resourceExhausted = 8
    case failedPrecondition = 9
    case aborted = 10
    case outOfRange = 11
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14
    case dataLoss = 15
    case unauthenticated = 16

    /// Maps any wire value to a code; values outside 0...16 read as UNKNOWN, as gRPC does.
    public init(wireValue: Int32) {
        self = StatusCode(rawValue: wireValue) ?? .unknown
    }

    /// The canonical upper-case name, e.g. "INVALID_ARGUMENT".
    public var name: String {
        switch self {
        case .ok: "OK"
        case .cancelled: "CANCELLED"
        case .unknown: "UNKNOWN"
        case .invalidArgument: "INVALID_ARGUMENT"
        case .deadlineExceeded: "DEADLINE_EXCEEDED"
        case .notFound: "NOT_FOUND"
        case .alreadyExists: "ALREADY_EXISTS"
        case .permissionDenied: "PERMISSION_DENIED"
        case .resourceExhausted: "RESOURCE_EXHAUSTED"
        case .failedPrecondition: "FAILED_PRECONDITION"
        case .aborted: "ABORTED"
        case .outOfRange: "OUT_OF_RANGE"
        case .unimplemented: "UNIMPLEMENTED"
        case .internal: "INTERNAL"
        case .unavailable: "UNAVAILABLE"
        case .dataLoss: "DATA_LOSS"
        case .unauthenticated: "UNAUTHENTICATED"
        }
    }

    /// Parses a canonical name ("NOT_FOUND"); nil for anything else.
    public init?(name: String) {
        guard let code = StatusCode.allCases.first(where: { $0.name == name }) else { return nil }
        self = code
    }

    public var description: String { name }
}
