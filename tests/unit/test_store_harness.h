#ifndef RM_TEST_STORE_HARNESS_H
#define RM_TEST_STORE_HARNESS_H

/* A real reactor group with one store shard per reactor over a temporary data directory,
 * driven from the test thread: each call runs a function on a chosen reactor (through a
 * tick hook) and waits for the store's callback. */

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/metrics.h"
#include "core/reactor.h"
#include "store/store.h"

#define HARNESS_VALUE_MAX (64u << 10)

struct harness {
    struct config config;
    struct store *store;
    struct reactor_group *group;
    struct metrics_registry *metrics;
    uint32_t reactors;
    char directory[256];
};

struct harness_result {
    int status;
    uint64_t version;
    uint32_t value_length;
    uint8_t value[HARNESS_VALUE_MAX];
};

/* Fills defaults and a fresh temporary data_dir. */
void harness_init(struct harness *harness, uint32_t reactors);
/* Creates the store and starts the group; returns the first error. */
int harness_start(struct harness *harness);
/* Stops (draining), joins and destroys the store; the directory stays. */
void harness_stop(struct harness *harness);
/* Removes the data directory. */
void harness_cleanup(struct harness *harness);

/* Runs fn(harness, argument) on the reactor and waits until it returned. */
void harness_run(struct harness *harness, uint32_t reactor,
                 void (*fn)(struct harness *harness, void *argument), void *argument);

int harness_put(struct harness *harness, uint32_t reactor, const char *ns, const char *key,
                const char *value, uint64_t expected, uint64_t ttl_ms,
                struct harness_result *result);
int harness_put_bytes(struct harness *harness, uint32_t reactor, const char *ns,
                      const char *key, const void *value, uint32_t length, uint64_t expected,
                      struct harness_result *result);
int harness_delete(struct harness *harness, uint32_t reactor, const char *ns, const char *key,
                   uint64_t expected, struct harness_result *result);
int harness_get(struct harness *harness, uint32_t reactor, const char *ns, const char *key,
                struct harness_result *result);

/* Sum of the sizes of every segment file under the data directory. */
uint64_t harness_segment_bytes(const struct harness *harness, uint32_t *files);
/* Path of the shard's segment file with the highest id, "" when none. */
void harness_last_segment(const struct harness *harness, uint32_t shard, char *path,
                          size_t length);
/* A key in namespace ns whose shard is `shard`: "k<n>" for the first fitting n >= start;
 * returns n. */
uint32_t harness_key_on_shard(struct harness *harness, const char *ns, uint32_t shard,
                          uint32_t start, char *key, size_t length);

#endif
