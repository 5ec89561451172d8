/* The system protobuf-c runtime (Debian: libprotobuf-c-dev), for Swift and
 * for the CCreditClient C target. */
#ifndef CPROTOBUFC_SHIM_H
#define CPROTOBUFC_SHIM_H
#include <protobuf-c/protobuf-c.h>
#endif
