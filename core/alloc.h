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
#define rm_malloc_aligned(size, alignment) rm_libc_malloc_aligned(size, alignment)
#define rm_free(pointer) free(pointer)
/* aligned_alloc wants a size that is a multiple of the alignment; posix_memalign does not. */
static inline void *rm_libc_malloc_aligned(size_t size, size_t alignment)
{
    void *pointer = NULL;
    return posix_memalign(&pointer, alignment, size) == 0 ? pointer : NULL;
}
#else
#include <mimalloc.h>
#define rm_malloc(size) mi_malloc(size)
#define rm_calloc(count, size) mi_calloc(count, size)
#define rm_realloc(pointer, size) mi_realloc(pointer, size)
#define rm_malloc_aligned(size, alignment) mi_malloc_aligned(size, alignment)
#define rm_free(pointer) mi_free(pointer)
#endif

#endif
