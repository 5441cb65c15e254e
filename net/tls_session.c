#include "net/tls_session.h"

#include <string.h>
#include <strings.h>

#include "core/rm_assert.h"

_Static_assert(TLS_SESSION_ENTRIES > 0, "the cache needs at least one entry");

static void tls_session_assert_owner(const struct tls_session_cache *cache) {
    RM_ASSERT(cache != NULL);
    RM_ASSERT(pthread_equal(cache->owner, pthread_self()));
}

void tls_session_init(struct tls_session_cache *cache) {
    RM_ASSERT(cache != NULL);
    memset(cache, 0, sizeof(*cache));
    cache->owner = pthread_self();
    tls_session_assert_owner(cache);
}

static void tls_session_wipe(struct tls_session_entry *entry) {
    RM_ASSERT(entry != NULL);
    explicit_bzero(entry, sizeof(*entry));
    RM_ASSERT(entry->used == 0);
}

void tls_session_clear(struct tls_session_cache *cache) {
    tls_session_assert_owner(cache);
    for (size_t index = 0; index < TLS_SESSION_ENTRIES; index++) {
        tls_session_wipe(&cache->entries[index]);
    }
    RM_ASSERT(cache->entries[0].used == 0);
}

/* Host names compare without case (DNS); the cache is small enough for a linear scan. */
static struct tls_session_entry *tls_session_find(struct tls_session_cache *cache,
                                                  const char *name) {
    tls_session_assert_owner(cache);
    RM_ASSERT(name != NULL);
    for (size_t index = 0; index < TLS_SESSION_ENTRIES; index++) {
        struct tls_session_entry *entry = &cache->entries[index];
        if (entry->used != 0 && strcasecmp(entry->name, name) == 0) {
            return entry;
        }
    }
    return NULL;
}

bool tls_session_lookup(struct tls_session_cache *cache, const char *name,
                        br_ssl_session_parameters *out) {
    RM_ASSERT(out != NULL);
    struct tls_session_entry *entry = tls_session_find(cache, name);
    if (entry == NULL) {
        cache->misses++;
        return false;
    }
    RM_ASSERT(entry->parameters.session_id_len > 0);
    entry->used = ++cache->clock;
    cache->hits++;
    *out = entry->parameters;
    return true;
}

/* An empty entry if there is one, else the least recently used. */
static struct tls_session_entry *tls_session_victim(struct tls_session_cache *cache) {
    tls_session_assert_owner(cache);
    struct tls_session_entry *victim = &cache->entries[0];
    for (size_t index = 0; index < TLS_SESSION_ENTRIES; index++) {
        struct tls_session_entry *entry = &cache->entries[index];
        if (entry->used < victim->used) {
            victim = entry;
        }
    }
    RM_ASSERT(victim != NULL);
    return victim;
}

void tls_session_store(struct tls_session_cache *cache, const char *name,
                       const br_ssl_session_parameters *parameters) {
    RM_ASSERT(parameters != NULL);
    RM_ASSERT(parameters->session_id_len > 0);
    size_t length = strlen(name);
    if (length == 0 || length >= TLS_SESSION_NAME_MAX) {
        return;
    }
    struct tls_session_entry *entry = tls_session_find(cache, name);
    if (entry == NULL) {
        entry = tls_session_victim(cache);
    }
    tls_session_wipe(entry);
    memcpy(entry->name, name, length + 1);
    entry->parameters = *parameters;
    entry->used = ++cache->clock;
}

void tls_session_forget(struct tls_session_cache *cache, const char *name) {
    struct tls_session_entry *entry = tls_session_find(cache, name);
    if (entry != NULL) {
        tls_session_wipe(entry);
    }
    RM_ASSERT(tls_session_find(cache, name) == NULL);
}
