#ifndef RM_ATOMIC_H
#define RM_ATOMIC_H

/* Loads, stores and exchanges of 64-bit words that other cores change with ck_pr CASes.
 *
 * ThreadSanitizer sees ck_pr loads and stores as plain volatile accesses (CK_USE_CC_BUILTINS;
 * ck_pr_fas starts with one too), so each one racing with an atomic read-modify-write is a
 * report that only the ck_pr suppressions hide: symbolizing it stalls the threads for a
 * while, and it is not hidden at all once TSan has lost the older access's stack. TSan
 * builds use the compiler's atomics instead (the same instructions on x86-64); the others
 * keep ck_pr. */

#include <ck_pr.h>
#include <stdint.h>

#if defined(__SANITIZE_THREAD__)
#define RM_ATOMIC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RM_ATOMIC_TSAN 1
#endif
#endif

#ifdef RM_ATOMIC_TSAN
#define rm_atomic_load_64(target) __atomic_load_n((target), __ATOMIC_ACQUIRE)
#define rm_atomic_store_64(target, value) __atomic_store_n((target), (value), __ATOMIC_RELEASE)
#define rm_atomic_exchange_64(target, value) \
    __atomic_exchange_n((target), (value), __ATOMIC_ACQ_REL)
#else
#define rm_atomic_load_64(target) ck_pr_load_64(target)
#define rm_atomic_store_64(target, value) ck_pr_store_64((target), (value))
#define rm_atomic_exchange_64(target, value) ck_pr_fas_64((target), (value))
#endif

#endif
