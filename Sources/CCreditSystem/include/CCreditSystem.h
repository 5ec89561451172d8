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

/// Room for the peer's supplementary groups as SO_PEERGROUPS returns them (an array of
/// gid_t). Peers in more groups than this make getsockopt fail with ERANGE.
#define CREDIT_PEERGROUPS_MAX 256
typedef struct {
    uint32_t gids[CREDIT_PEERGROUPS_MAX];
} credit_peergroups;

/// The SO_PEERGROUPS option name (Linux >= 4.13), or -1 where it is unknown.
int credit_so_peergroups(void);

/// Returns freed heap pages to the kernel (glibc's malloc_trim, which
/// Swift's Glibc module does not export). Used once after recovery.
int credit_malloc_trim(void);

/// open(2)'s O_DIRECT flag (Swift's Glibc module does not export it; it needs _GNU_SOURCE).
int credit_o_direct(void);

/// Asks the CPU to bring the cache line at `address` in for writing, without waiting for it
/// (Swift has no prefetch of its own). A hint: an invalid address is ignored.
static inline void credit_prefetch_for_write(const void *address) { __builtin_prefetch(address, 1, 3); }

/// Asks the CPU to bring the cache line at `address` in for reading, without waiting for it.
/// A hint: an invalid address is ignored.
static inline void credit_prefetch(const void *address) { __builtin_prefetch(address, 0, 3); }

#endif
