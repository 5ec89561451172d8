// ProtoWire: the protocol buffer wire format written by hand over raw memory.
//
// Two parts of creditd write protobuf faster than generated messages can: the snapshot's
// ledger encoding (LedgerEncoding, millions of records in seconds) and the encoders of the
// large read responses (CreditService's ResponseEncoding: a page of credits without building
// a message per credit). Both write through `ByteWriter` and the field writers here. This
// module holds no schema: field numbers live next to the code that writes each message.
