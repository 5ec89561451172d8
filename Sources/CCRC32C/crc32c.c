// CRC-32C with the SSE 4.2 crc32 instruction: the journal's records and the snapshots are
// checksummed on every write and every recovery, and the table-driven loop in Swift runs at
// about 1 GB/s against several GB/s here. Swift cannot name the instruction itself.
#include "CCRC32C.h"
#include <string.h>

#if defined(__x86_64__)
int credit_crc32c_hardware(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("sse4.2") ? 1 : 0;
}

__attribute__((target("sse4.2")))
uint32_t credit_crc32c_hardware_update(uint32_t state, const void *bytes, size_t count) {
    const unsigned char *p = bytes;
    uint64_t crc = state;
    while (count > 0 && ((uintptr_t)p & 7) != 0) {
        crc = __builtin_ia32_crc32qi((uint32_t)crc, *p++);
        count--;
    }
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        crc = __builtin_ia32_crc32di(crc, word);
        p += 8;
        count -= 8;
    }
    while (count > 0) {
        crc = __builtin_ia32_crc32qi((uint32_t)crc, *p++);
        count--;
    }
    return (uint32_t)crc;
}
#else
int credit_crc32c_hardware(void) { return 0; }
uint32_t credit_crc32c_hardware_update(uint32_t state, const void *bytes, size_t count) {
    (void)bytes;
    (void)count;
    return state;
}
#endif
