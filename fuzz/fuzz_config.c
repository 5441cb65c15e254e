/* Feeds arbitrary bytes to config_parse. It must never crash; an accepted config must hold
 * every documented range, and a rejected one must be reported with the source's name. */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/rm_assert.h"

#define FUZZ_CONFIG_SOURCE "fuzz.json"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_config_check_limits(const struct config_limits *limits)
{
    RM_ASSERT(limits->max_connections >= 1 && limits->max_connections <= 1000000);
    RM_ASSERT(limits->max_header_bytes >= 1024 && limits->max_header_bytes <= 1048576);
    RM_ASSERT(limits->max_uri_bytes >= 64 && limits->max_uri_bytes <= limits->max_header_bytes);
    RM_ASSERT(limits->max_headers >= 1 && limits->max_headers <= 128);
    RM_ASSERT(limits->max_body_bytes <= 1024ull * 1024 * 1024);
    RM_ASSERT(limits->header_timeout_ms >= 1 && limits->header_timeout_ms <= 3600000);
    RM_ASSERT(limits->body_timeout_ms >= 1 && limits->body_timeout_ms <= 3600000);
    RM_ASSERT(limits->idle_timeout_ms >= 1 && limits->idle_timeout_ms <= 3600000);
    RM_ASSERT(limits->drain_timeout_ms >= 1 && limits->drain_timeout_ms <= 3600000);
    RM_ASSERT(limits->max_value_bytes >= 1 && limits->max_value_bytes <= 64u * 1024 * 1024);
}

static void fuzz_config_check_durability(const struct config *config)
{
    const struct config_durability_section *durability = &config->durability;
    RM_ASSERT(durability->default_mode <= CONFIG_DURABILITY_ASYNC);
    RM_ASSERT(durability->flush_interval_ms >= 1 && durability->flush_interval_ms <= 10000);
    RM_ASSERT(durability->namespace_count <= CONFIG_NAMESPACES_MAX);
    for (uint32_t i = 0; i < durability->namespace_count; i++) {
        const struct config_namespace_durability *entry = &durability->namespaces[i];
        size_t length = strnlen(entry->name, CONFIG_NAME_MAX);
        RM_ASSERT(length >= 1 && length < CONFIG_NAME_MAX);
        RM_ASSERT(strspn(entry->name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789_.-") == length);
        RM_ASSERT(entry->mode <= CONFIG_DURABILITY_ASYNC);
        /* Names are unique (duplicate keys are rejected), so the lookup finds this entry. */
        RM_ASSERT(config_durability_of(config, entry->name, length) == entry->mode);
    }
}

static void fuzz_config_check(const struct config *config)
{
    RM_ASSERT(strcmp(config->source, FUZZ_CONFIG_SOURCE) == 0);
    size_t host_length = strnlen(config->listen_host, CONFIG_HOST_MAX);
    RM_ASSERT(host_length >= 1 && host_length < CONFIG_HOST_MAX);
    RM_ASSERT(config->threads <= 64);
    size_t data_dir_length = strnlen(config->data_dir, CONFIG_PATH_MAX);
    RM_ASSERT(data_dir_length >= 1 && data_dir_length < CONFIG_PATH_MAX);
    fuzz_config_check_limits(&config->limits);
    fuzz_config_check_durability(config);
    RM_ASSERT(config->store.segment_bytes >= 1024ull * 1024);
    RM_ASSERT(config->store.segment_bytes <= 4ull * 1024 * 1024 * 1024);
    RM_ASSERT(config->store.cache_bytes >= 1024ull * 1024);
    RM_ASSERT(config->store.cache_bytes <= 1024ull * 1024 * 1024 * 1024);
    RM_ASSERT(config->store.compact_dead_percent >= 1 && config->store.compact_dead_percent <= 99);
    RM_ASSERT(config->log.level <= CONFIG_LOG_ERROR);
    RM_ASSERT(strnlen(config->log.file, CONFIG_PATH_MAX) < CONFIG_PATH_MAX);
    size_t token_length = strnlen(config->admin.token, CONFIG_SECRET_MAX);
    RM_ASSERT(token_length < CONFIG_SECRET_MAX);
    RM_ASSERT(config->admin.token_set == (token_length > 0));
}

/* An empty environment makes admin.token_env fail the same way on every machine, so that a
 * crash found here replays anywhere. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    RM_ASSERT(argc != NULL);
    RM_ASSERT(argv != NULL);
    RM_ASSERT(clearenv() == 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Over a megabyte: static rather than on the stack of whatever thread drives the target.
     * config_parse resets every field first, so nothing carries over between inputs. */
    static struct config config;
    char err[CONFIG_ERROR_MAX];
    memset(err, 0x55, sizeof(err));
    int result = config_parse(&config, FUZZ_CONFIG_SOURCE, (const char *)data, size, err,
                              sizeof(err));
    RM_ASSERT(result == 0 || result == -1);
    if (result == 0) {
        fuzz_config_check(&config);
        return 0;
    }
    RM_ASSERT(memchr(err, '\0', sizeof(err)) != NULL);
    RM_ASSERT(strncmp(err, FUZZ_CONFIG_SOURCE ":", strlen(FUZZ_CONFIG_SOURCE ":")) == 0);
    RM_ASSERT(!config.admin.token_set);
    return 0;
}
