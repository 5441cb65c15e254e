/* The store tests' harness: see test_store_harness.h. */

#include "tests/unit/test_store_harness.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct harness_task {
    void (*fn)(struct harness *harness, void *argument);
    void *argument;
    int state; /* 0 idle, 1 posted, 2 done */
};

static struct harness_task harness_tasks[REACTOR_MAX];
static struct harness *harness_current;

static void harness_hook(struct reactor *reactor, void *context)
{
    struct harness_task *task = &harness_tasks[reactor_index(reactor)];
    (void)context;
    if (__atomic_load_n(&task->state, __ATOMIC_ACQUIRE) == 1) {
        task->fn(harness_current, task->argument);
        __atomic_store_n(&task->state, 2, __ATOMIC_RELEASE);
    }
}

static int harness_setup(struct reactor *reactor, void *context)
{
    struct harness *harness = context;
    reactor_hook_add(reactor, (struct reactor_hook){.run = harness_hook, .context = harness});
    return store_shard_open(harness->store, reactor);
}

static void harness_teardown(struct reactor *reactor, void *context)
{
    struct harness *harness = context;
    store_shard_close(harness->store, reactor);
}

static bool harness_busy(struct reactor *reactor, void *context)
{
    struct harness *harness = context;
    return store_shard_busy(harness->store, reactor);
}

void harness_init(struct harness *harness, uint32_t reactors)
{
    memset(harness, 0, sizeof(*harness));
    config_defaults(&harness->config);
    /* mkdtemp replaces the template's last six characters, which must all be 'X'. */
    int length = snprintf(harness->directory, sizeof(harness->directory), "/tmp/rm-store-test-");
    memset(harness->directory + length, 'X', 6);
    harness->directory[length + 6] = '\0';
    cr_assert_not_null(mkdtemp(harness->directory));
    snprintf(harness->config.data_dir, sizeof(harness->config.data_dir), "%s/data",
             harness->directory);
    harness->reactors = reactors;
}

int harness_start(struct harness *harness)
{
    harness_current = harness;
    harness->metrics = metrics_create(harness->reactors);
    int result = store_create(&harness->config, harness->reactors, harness->metrics,
                              &harness->store);
    if (result != 0) {
        return result;
    }
    struct reactor_group_config group = {
        .reactors = harness->reactors,
        .queue_depth = 256,
        .setup = harness_setup,
        .teardown = harness_teardown,
        .busy = harness_busy,
        .context = harness,
        .drain_timeout_ms = 5000,
    };
    cr_assert_eq(reactor_group_create(&group, &harness->group), 0);
    result = reactor_group_start(harness->group);
    if (result != 0) {
        reactor_group_destroy(harness->group);
        store_destroy(harness->store);
        harness->group = NULL;
        harness->store = NULL;
    }
    return result;
}

void harness_stop(struct harness *harness)
{
    reactor_group_stop(harness->group);
    reactor_group_join(harness->group);
    reactor_group_destroy(harness->group);
    store_destroy(harness->store);
    metrics_destroy(harness->metrics);
    harness->group = NULL;
    harness->store = NULL;
    harness->metrics = NULL;
}

void harness_cleanup(struct harness *harness)
{
    char command[512];
    snprintf(command, sizeof(command), "rm -rf '%s'", harness->directory);
    cr_assert_eq(system(command), 0);
}

static void harness_sleep_us(long microseconds)
{
    struct timespec pause = {.tv_sec = 0, .tv_nsec = microseconds * 1000};
    nanosleep(&pause, NULL);
}

void harness_run(struct harness *harness, uint32_t reactor,
                 void (*fn)(struct harness *harness, void *argument), void *argument)
{
    struct harness_task *task = &harness_tasks[reactor];
    cr_assert(reactor < harness->reactors);
    task->fn = fn;
    task->argument = argument;
    __atomic_store_n(&task->state, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&task->state, __ATOMIC_ACQUIRE) != 2) {
        harness_sleep_us(100);
    }
    __atomic_store_n(&task->state, 0, __ATOMIC_RELEASE);
}

struct harness_call {
    enum store_operation operation;
    const char *ns;
    const char *key;
    const void *value;
    uint32_t value_length;
    uint64_t expected;
    uint64_t ttl_ms;
    struct store_request request;
    struct harness_result *result;
    int started;
    int done;
};

static void harness_callback(struct store_request *request, const struct store_result *result)
{
    struct harness_call *call = request->context;
    call->result->status = result->status;
    call->result->version = result->version;
    call->result->value_length = (uint32_t)result->value_length;
    if (result->status == STORE_OK && result->value_length > 0) {
        cr_assert(result->value_length <= HARNESS_VALUE_MAX);
        memcpy(call->result->value, result->value, result->value_length);
    }
    __atomic_store_n(&call->done, 1, __ATOMIC_RELEASE);
}

static void harness_call_start(struct harness *harness, void *argument)
{
    struct harness_call *call = argument;
    struct store_key key = {call->ns, strlen(call->ns), call->key, strlen(call->key)};
    struct store_write write = {call->expected, call->value, call->value_length, call->ttl_ms};
    struct store *store = harness->store;
    switch (call->operation) {
    case STORE_OPERATION_GET:
        call->started = store_get(store, &call->request, key, harness_callback, call);
        break;
    case STORE_OPERATION_DELETE:
        call->started = store_delete(store, &call->request, key, call->expected,
                                     harness_callback, call);
        break;
    default:
        call->started = store_put(store, &call->request, key, &write, harness_callback, call);
        break;
    }
}

static int harness_call(struct harness *harness, uint32_t reactor, struct harness_call *call)
{
    harness_run(harness, reactor, harness_call_start, call);
    if (call->started != 0) {
        call->result->status = call->started;
        return call->started;
    }
    while (!__atomic_load_n(&call->done, __ATOMIC_ACQUIRE)) {
        harness_sleep_us(50);
    }
    return call->result->status;
}

int harness_put_bytes(struct harness *harness, uint32_t reactor, const char *ns,
                      const char *key, const void *value, uint32_t length, uint64_t expected,
                      struct harness_result *result)
{
    struct harness_call call = {.operation = STORE_OPERATION_PUT, .ns = ns, .key = key,
                                .value = value, .value_length = length, .expected = expected,
                                .result = result};
    return harness_call(harness, reactor, &call);
}

int harness_put(struct harness *harness, uint32_t reactor, const char *ns, const char *key,
                const char *value, uint64_t expected, uint64_t ttl_ms,
                struct harness_result *result)
{
    struct harness_call call = {.operation = STORE_OPERATION_PUT, .ns = ns, .key = key,
                                .value = value, .value_length = (uint32_t)strlen(value),
                                .expected = expected, .ttl_ms = ttl_ms, .result = result};
    return harness_call(harness, reactor, &call);
}

int harness_delete(struct harness *harness, uint32_t reactor, const char *ns, const char *key,
                   uint64_t expected, struct harness_result *result)
{
    struct harness_call call = {.operation = STORE_OPERATION_DELETE, .ns = ns, .key = key,
                                .expected = expected, .result = result};
    return harness_call(harness, reactor, &call);
}

int harness_get(struct harness *harness, uint32_t reactor, const char *ns, const char *key,
                struct harness_result *result)
{
    struct harness_call call = {.operation = STORE_OPERATION_GET, .ns = ns, .key = key,
                                .result = result};
    return harness_call(harness, reactor, &call);
}

uint64_t harness_segment_bytes(const struct harness *harness, uint32_t *files)
{
    uint64_t total = 0;
    *files = 0;
    for (uint32_t shard = 0; shard < harness->reactors; shard++) {
        char path[600];
        snprintf(path, sizeof(path), "%s/shard-%u", harness->config.data_dir, shard);
        DIR *directory = opendir(path);
        if (directory == NULL) {
            continue;
        }
        struct dirent *item;
        while ((item = readdir(directory)) != NULL) {
            if (strstr(item->d_name, ".log") == NULL) {
                continue;
            }
            char file[1000];
            struct stat status;
            snprintf(file, sizeof(file), "%s/%s", path, item->d_name);
            if (stat(file, &status) == 0) {
                total += (uint64_t)status.st_size;
                (*files)++;
            }
        }
        closedir(directory);
    }
    return total;
}

void harness_last_segment(const struct harness *harness, uint32_t shard, char *path,
                          size_t length)
{
    char directory_path[600];
    snprintf(directory_path, sizeof(directory_path), "%s/shard-%u", harness->config.data_dir,
             shard);
    path[0] = '\0';
    DIR *directory = opendir(directory_path);
    cr_assert_not_null(directory);
    char best[256] = "";
    struct dirent *item;
    while ((item = readdir(directory)) != NULL) {
        if (strstr(item->d_name, ".log") != NULL && strcmp(item->d_name, best) > 0) {
            snprintf(best, sizeof(best), "%s", item->d_name);
        }
    }
    closedir(directory);
    if (best[0] != '\0') {
        snprintf(path, length, "%s/%s", directory_path, best);
    }
}

uint32_t harness_key_on_shard(struct harness *harness, const char *ns, uint32_t shard,
                          uint32_t start, char *key, size_t length)
{
    for (uint32_t n = start;; n++) {
        snprintf(key, length, "k%u", n);
        struct store_key probe = {ns, strlen(ns), key, strlen(key)};
        if (store_shard_of(harness->store, probe) == shard) {
            return n;
        }
    }
}
