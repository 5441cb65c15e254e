#ifndef RM_TLS_SESSION_H
#define RM_TLS_SESSION_H

/* Per-core cache of TLS session parameters for resumption, keyed by server name. Fixed
 * capacity with least-recently-used replacement. Owned by one thread (the reactor that
 * created it): every call asserts that. Entries hold master secrets; they are wiped when
 * replaced, forgotten or destroyed. */

#include <bearssl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define TLS_SESSION_ENTRIES 64
#define TLS_SESSION_NAME_MAX 256 /* server name bytes with the NUL */

struct tls_session_entry {
    char name[TLS_SESSION_NAME_MAX];
    br_ssl_session_parameters parameters;
    uint64_t used; /* cache clock at the last hit or store; 0 = empty */
};

struct tls_session_cache {
    struct tls_session_entry entries[TLS_SESSION_ENTRIES];
    uint64_t clock;
    pthread_t owner;
    uint64_t hits;
    uint64_t misses;
};

/* Initialises an empty cache owned by the calling thread. */
void tls_session_init(struct tls_session_cache *cache);
/* Wipes every entry (key material included). */
void tls_session_clear(struct tls_session_cache *cache);
/* Copies the cached session for `name` into `out` and returns true, or returns false. */
bool tls_session_lookup(struct tls_session_cache *cache, const char *name,
                        br_ssl_session_parameters *out);
/* Stores (or replaces) the session for `name`; names too long to fit are not cached. */
void tls_session_store(struct tls_session_cache *cache, const char *name,
                       const br_ssl_session_parameters *parameters);
/* Drops the session for `name`, if any. */
void tls_session_forget(struct tls_session_cache *cache, const char *name);

#endif
