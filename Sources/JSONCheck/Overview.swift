// JSONCheck: where a JSON text is wrong, in words a person can act on.
//
// What it owns. `JSONSyntaxError.find(in:)`: the first RFC 8259 syntax error of a document,
// with its line and column in characters, or a key given twice in one object. Foundation's
// decoders say only "not valid JSON" and keep the first of two equal keys, where jq and
// Python keep the last; creditd's config files (DaemonConfiguration) and creditctl's JSON
// lines imports refuse such an object rather than let the reader decide.
//
// Invariants.
//   - A checker, not a parser: it builds no values; what it accepts, Foundation decodes.
//   - Keys are compared by their text with escapes decoded, scalar by scalar (not by
//     canonical equivalence, as ids are compared in billing-rules.md O2).
//   - Nesting deeper than 512 levels is an error, not a stack overflow.
//   - Two limits RFC 8259 leaves to readers are errors with a place, because Foundation
//     refuses them without one: bytes that are not UTF-8, and a number past a 64-bit
//     float's range (`1e400`).
//
// Entry point. `JSONSyntaxError.find(in: bytes)`: nil when the bytes are good.
