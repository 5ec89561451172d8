#define _GNU_SOURCE
#include <stddef.h>
#include <malloc.h>
#include <sys/socket.h>
#include <fcntl.h>
#include "CCreditSystem.h"

_Static_assert(sizeof(credit_ucred) == sizeof(struct ucred), "credit_ucred size");
_Static_assert(offsetof(credit_ucred, pid) == offsetof(struct ucred, pid), "pid offset");
_Static_assert(offsetof(credit_ucred, uid) == offsetof(struct ucred, uid), "uid offset");
_Static_assert(offsetof(credit_ucred, gid) == offsetof(struct ucred, gid), "gid offset");

_Static_assert(sizeof(gid_t) == sizeof(uint32_t), "gid_t size");

int credit_so_peergroups(void) {
#ifdef SO_PEERGROUPS
    return SO_PEERGROUPS;
#else
    return -1;
#endif
}

int credit_malloc_trim(void) { return malloc_trim(0); }

int credit_o_direct(void) { return O_DIRECT; }
