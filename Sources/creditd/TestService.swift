import CreditProto
import CreditServer
import CreditWire
import Foundation
import SwiftProtobuf

/// `creditd.test.Debug`: calls that let end-to-end tests exercise the transport (slow reads,
/// late writes, metadata, oversize replies). Mounted only when CREDITD_TEST_SERVICE=1.
enum TestService {
    static let name = MethodTable.Debug.serviceName

    static func make() -> RPCService {
        let methods = MethodTable.Debug.self
        return RPCService(name: name, methods: [
            // Returns its input after sleeping `sleep-ms` (metadata) milliseconds.
            .async(methods.echo) { request, context in
                try await sleep(context)
                return request
            },
            // The same as a writer: not abandoned at its deadline.
            .async(methods.echoWrite) { request, context in
                try? await sleep(context)
                return request
            },
            // The received metadata as "key=value" lines, in order.
            .immediate(methods.metadata) { _, context in
                var response = Google_Protobuf_StringValue()
                response.value = context.metadata.map { "\($0.key)=\($0.value)" }.joined(separator: "\n")
                return response
            },
            // A reply of `value` bytes (to test replies over the frame limit).
            .immediate(methods.big) { request, _ in
                guard request.value <= 16 << 20 else { throw RPCError.invalidArgument("at most 16 MiB") }
                var response = Google_Protobuf_BytesValue()
                response.value = Data(repeating: 0x42, count: Int(request.value))
                return response
            },
        ])
    }

    private static func sleep(_ context: CallContext) async throws {
        if let text = context.metadataValues("sleep-ms").first, let millis = Int64(text), millis > 0 {
            try await Task.sleep(for: .milliseconds(millis))
        }
    }
}
