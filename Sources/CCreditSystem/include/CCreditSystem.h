#ifndef CCREDIT_SYSTEM_H
#define CCREDIT_SYSTEM_H
#include <stdint.h>

/// Peer credentials as the kernel returns them for SO_PEERCRED.
/// Swift's Glibc module lacks `struct ucred` (it needs _GNU_SOURCE), so the
/// layout is declared here and checked against the real one in the .c file.
typedef struct {
    int32_t pid;
    uint32_t uid;
    uint32_t gid;
} credit_ucred;

#endif
