#ifndef RM_ALLOC_H
#define RM_ALLOC_H

/* The process allocator. Release builds route every allocation through mimalloc (linked in,
 * and it also replaces malloc for the libraries we use); sanitizer and fuzz builds use the
 * C library so that AddressSanitizer sees every allocation. */

#include <stddef.h>

#ifdef RM_LIBC_MALLOC
#include <stdlib.h>
#define rm_malloc(size) malloc(size)
#define rm_calloc(count, size) calloc(count, size)
#define rm_realloc(pointer, size) realloc(pointer, size)
#define rm_malloc_aligned(size, alignment) aligned_alloc(alignment, size)
#define rm_free(pointer) free(pointer)
#else
#include <mimalloc.h>
#define rm_malloc(size) mi_malloc(size)
#define rm_calloc(count, size) mi_calloc(count, size)
#define rm_realloc(pointer, size) mi_realloc(pointer, size)
#define rm_malloc_aligned(size, alignment) mi_malloc_aligned(size, alignment)
#define rm_free(pointer) mi_free(pointer)
#endif

#endif
