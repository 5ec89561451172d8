#ifndef CCRC32C_H
#define CCRC32C_H
#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU computes CRC-32C in hardware (x86-64 SSE 4.2), else 0.
int credit_crc32c_hardware(void);

/// Runs the CRC-32C register `state` (the checksum's complement, as a table-driven loop keeps
/// it) over `count` bytes with the CPU's crc32 instruction. Only when
/// `credit_crc32c_hardware()` returned 1.
uint32_t credit_crc32c_hardware_update(uint32_t state, const void *bytes, size_t count);

#endif
