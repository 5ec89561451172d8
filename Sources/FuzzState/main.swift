// libFuzzer entry point only; built with -sanitize=fuzzer (scripts/fuzz.sh), whose runtime
// supplies main. A plain `swift build` links an empty main, so the binary just exits.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzState(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    StateFuzzing.run(Array(UnsafeBufferPointer(start: data, count: size)))
    return 0
}
