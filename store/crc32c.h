#ifndef RM_STORE_CRC32C_H
#define RM_STORE_CRC32C_H

/* CRC32C (Castagnoli), the checksum of every store record and hint file. The SSE4.2 crc32
 * instruction computes 8 bytes per cycle-ish and is present on every x86-64 server since
 * 2008, so it is the fast path; a slicing-by-8 table fallback keeps other CPUs (and the
 * sanitizer builds on any machine) correct. The choice is made once, at first use, from
 * cpuid; both paths produce identical results (tested). */

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC: pass 0 to start; the result of one call may be fed to the next. */
uint32_t store_crc32c(uint32_t crc, const void *data, size_t length);

/* The table-driven path alone, for tests that compare both implementations. */
uint32_t store_crc32c_software(uint32_t crc, const void *data, size_t length);

#endif
