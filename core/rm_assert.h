#ifndef RM_ASSERT_H
#define RM_ASSERT_H

/* Assertions for programmer errors. RM_ASSERT stays on in every build: a broken invariant in
 * production must stop the process with its location rather than corrupt state silently.
 * Never assert on bytes that came from the network or the disk; those are returned errors. */

#include <stdio.h>
#include <stdlib.h>

#define RM_ASSERT(expression)                                                                  \
    do {                                                                                       \
        if (__builtin_expect(!(expression), 0)) {                                              \
            fprintf(stderr, "ringmaster: assertion failed: %s (%s:%d, %s)\n", #expression,     \
                    __FILE__, __LINE__, __func__);                                             \
            abort();                                                                           \
        }                                                                                      \
    } while (0)

/* For checks that cost O(n); compiled only into debug and sanitizer builds. */
#ifdef RM_DEBUG
#define RM_DEBUG_ASSERT(expression) RM_ASSERT(expression)
#else
#define RM_DEBUG_ASSERT(expression) ((void)0)
#endif

#define RM_ARRAY_LENGTH(array) (sizeof(array) / sizeof((array)[0]))
#define RM_IS_POWER_OF_TWO(value) ((value) != 0 && (((value) & ((value)-1)) == 0))

#endif
