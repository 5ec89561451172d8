/*
 * LD_PRELOAD fault injector for creditd's end-to-end tests.
 *
 * While the file named by CREDITD_FAULTINJECT_TRIGGER exists, writes and/or syncs of files
 * whose path starts with CREDITD_FAULTINJECT_DIR fail with CREDITD_FAULTINJECT_ERRNO
 * (default EIO). CREDITD_FAULTINJECT_OPS selects what fails: "write", "fsync" or
 * "write,fsync" (default). "fsync" covers fsync and fdatasync; "write" covers write, pwrite,
 * pwrite64, writev and pwritev. "hold" does not fail anything: fsync and fdatasync wait while
 * the trigger exists, then go through (an fsync held back, to observe what is not durable).
 *
 * CREDITD_FAULTINJECT_BUDGET=N models a disk filling up instead: once the trigger exists, writes
 * to those files may add N more bytes in all; the write that would pass that writes what still
 * fits (a short write, as the kernel returns on a full disk) and every later one fails with
 * CREDITD_FAULTINJECT_ERRNO (default ENOSPC here). Syncs are not affected in this mode.
 *
 * Build: cc -shared -fPIC -o faultinject.so faultinject.c -ldl
 * Use:   LD_PRELOAD=/path/faultinject.so CREDITD_FAULTINJECT_DIR=/var/lib/creditd \
 *        CREDITD_FAULTINJECT_TRIGGER=/tmp/fail-now creditd ...   then: touch /tmp/fail-now
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum { FAIL_WRITE = 1, FAIL_SYNC = 2, HOLD_SYNC = 4 };

/* Bytes still allowed in budget mode; -1 until the trigger is first seen. */
static long budget_left = -1;

static int budget_mode(void) {
    const char *budget = getenv("CREDITD_FAULTINJECT_BUDGET");
    return budget != NULL && *budget != '\0';
}

static int enabled_ops(void) {
    const char *ops = getenv("CREDITD_FAULTINJECT_OPS");
    if (ops == NULL || *ops == '\0') return FAIL_WRITE | FAIL_SYNC;
    int result = 0;
    if (strstr(ops, "write") != NULL) result |= FAIL_WRITE;
    if (strstr(ops, "sync") != NULL) result |= FAIL_SYNC;
    if (strstr(ops, "hold") != NULL) result |= HOLD_SYNC;
    return result;
}

/* CREDITD_FAULTINJECT_DIR without symlinks, "//" or "..", to compare with /proc/self/fd links.
 * Resolved once it exists; until then the raw value is used. */
static const char *resolved_dir(void) {
    static char resolved[PATH_MAX];
    static int done;
    const char *dir = getenv("CREDITD_FAULTINJECT_DIR");
    if (dir == NULL || done) return done ? resolved : dir;
    if (realpath(dir, resolved) != NULL) {
        done = 1;
        return resolved;
    }
    return dir;
}

/* Returns the errno to fail with, or 0 to let the call through. errno is preserved. */
static int injected_error(int fd, int op) {
    /* In budget mode, syncs always pass. */
    if (op == FAIL_SYNC && budget_mode()) return 0;
    int saved = errno;
    int result = 0;
    const char *dir = resolved_dir();
    const char *trigger = getenv("CREDITD_FAULTINJECT_TRIGGER");
    if (dir != NULL && trigger != NULL && (enabled_ops() & op) && access(trigger, F_OK) == 0) {
        char link[64];
        char target[PATH_MAX];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t length = readlink(link, target, sizeof target - 1);
        if (length > 0) {
            target[length] = '\0';
            size_t prefix = strlen(dir);
            if (strncmp(target, dir, prefix) == 0 && (target[prefix] == '/' || target[prefix] == '\0')) {
                const char *code = getenv("CREDITD_FAULTINJECT_ERRNO");
                result = (code != NULL && atoi(code) > 0) ? atoi(code) : (budget_mode() ? ENOSPC : EIO);
            }
        }
    }
    errno = saved;
    return result;
}

/* Budget mode: how many of `count` bytes may be written now (0: fail with *code). Returns
 * `count` when the file is not affected. */
static size_t budget_allows(int fd, size_t count, int *code) {
    if (!budget_mode()) return count;
    int failure = injected_error(fd, FAIL_WRITE);
    if (failure == 0) return count;
    long start = atol(getenv("CREDITD_FAULTINJECT_BUDGET"));
    long expected = -1;
    __atomic_compare_exchange_n(&budget_left, &expected, start, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    while (1) {
        long left = __atomic_load_n(&budget_left, __ATOMIC_SEQ_CST);
        size_t allowed = (size_t)left < count ? (size_t)left : count;
        if (__atomic_compare_exchange_n(&budget_left, &left, left - (long)allowed, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            if (allowed == 0) *code = failure;
            return allowed;
        }
    }
}

/* The next definition of `name` (libc's), looked up once. */
#define REAL(name) \
    static __typeof__(&name) real_##name; \
    if (real_##name == NULL) real_##name = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

ssize_t write(int fd, const void *buffer, size_t count) {
    REAL(write);
    int code = 0;
    if (budget_mode()) {
        count = budget_allows(fd, count, &code);
    } else {
        code = injected_error(fd, FAIL_WRITE);
    }
    if (code != 0) { errno = code; return -1; }
    return real_write(fd, buffer, count);
}

ssize_t pwrite(int fd, const void *buffer, size_t count, off_t offset) {
    REAL(pwrite);
    int code = 0;
    if (budget_mode()) {
        count = budget_allows(fd, count, &code);
    } else {
        code = injected_error(fd, FAIL_WRITE);
    }
    if (code != 0) { errno = code; return -1; }
    return real_pwrite(fd, buffer, count, offset);
}

ssize_t pwrite64(int fd, const void *buffer, size_t count, off64_t offset) {
    REAL(pwrite64);
    int code = 0;
    if (budget_mode()) {
        count = budget_allows(fd, count, &code);
    } else {
        code = injected_error(fd, FAIL_WRITE);
    }
    if (code != 0) { errno = code; return -1; }
    return real_pwrite64(fd, buffer, count, offset);
}

ssize_t writev(int fd, const struct iovec *vector, int count) {
    REAL(writev);
    /* Budget mode: all or nothing (creditd writes with pwrite). */
    size_t total = 0;
    for (int index = 0; index < count; index++) total += vector[index].iov_len;
    int code = 0;
    if (budget_mode()) {
        if (budget_allows(fd, total, &code) < total && code == 0) code = ENOSPC;
    } else {
        code = injected_error(fd, FAIL_WRITE);
    }
    if (code != 0) { errno = code; return -1; }
    return real_writev(fd, vector, count);
}

ssize_t pwritev(int fd, const struct iovec *vector, int count, off_t offset) {
    REAL(pwritev);
    /* Budget mode: all or nothing (creditd writes with pwrite). */
    size_t total = 0;
    for (int index = 0; index < count; index++) total += vector[index].iov_len;
    int code = 0;
    if (budget_mode()) {
        if (budget_allows(fd, total, &code) < total && code == 0) code = ENOSPC;
    } else {
        code = injected_error(fd, FAIL_WRITE);
    }
    if (code != 0) { errno = code; return -1; }
    return real_pwritev(fd, vector, count, offset);
}

/* Waits while a held sync is requested for fd. */
static void hold_sync(int fd) {
    while (injected_error(fd, HOLD_SYNC) != 0) usleep(1000);
}

int fsync(int fd) {
    REAL(fsync);
    hold_sync(fd);
    int code = injected_error(fd, FAIL_SYNC);
    if (code != 0) { errno = code; return -1; }
    return real_fsync(fd);
}

int fdatasync(int fd) {
    REAL(fdatasync);
    hold_sync(fd);
    int code = injected_error(fd, FAIL_SYNC);
    if (code != 0) { errno = code; return -1; }
    return real_fdatasync(fd);
}
