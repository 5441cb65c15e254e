/* Crash and consistency harness: concurrent clients do compare-and-swap on a few keys through
 * the HTTP state API (a `sync` namespace: acknowledged means durable) and start agent
 * invocations against the mock LLM, while the real binary is killed with SIGKILL at random
 * moments and restarted on the same data_dir. Every operation goes into a history (start and
 * end time, kind, outcome ok/fail/unknown, value, version); after the last restart the keys
 * are read, every acknowledged invocation is awaited and its Idempotency-Key sent again, and
 * tests/integration/consistency_history.c checks the whole history: linearizability of each
 * key's versioned CAS register, no lost acknowledged write, no lost acknowledged invocation.
 *
 * The short run is part of `make test`; `make consistency-long` runs the same test longer,
 * with RM_CONSISTENCY_CYCLES, RM_CONSISTENCY_CLIENTS and RM_CONSISTENCY_KEYS. */

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "tests/consistency_history.h"
#include "tests/support.h"

#define RUN_CYCLES 8
#define RUN_CLIENTS 6
#define RUN_KEYS 4
#define RUN_CYCLES_MAX 10000
#define RUN_CLIENTS_MAX 64
#define RUN_KEYS_MAX 1024
/* How long the clients run before the kill: uniform in [MIN, MIN + SPREAD). */
#define RUN_KILL_AFTER_MS_MIN 40
#define RUN_KILL_AFTER_MS_SPREAD 300
/* A client's operations per cycle at most: far above what fits before the kill, a bound. */
#define CLIENT_OPERATIONS_MAX 20000
/* New invocations per client and cycle: each costs the mock two LLM calls and a tool call,
 * and the final phase waits for all of them. */
#define CLIENT_INVOCATIONS_PER_CYCLE 3
/* Invocation starts whose answer was lost, re-sent with their key in the next cycles. */
#define CLIENT_RETRIES_MAX 64
#define CLIENT_RESPONSE_MAX 65536
/* The final wait for every acknowledged invocation to end. */
#define FINAL_WAIT_MS 90000
#define FINAL_POLL_MS 50
#define FINAL_READ_ATTEMPTS 50

struct run_settings {
    uint32_t cycles;
    uint32_t clients;
    uint32_t keys;
};

struct client {
    uint16_t index;
    uint16_t port;
    uint32_t keys;
    unsigned seed;
    int fd;
    uint64_t sequence;             /* makes every written value and idempotency key unique */
    uint64_t known[RUN_KEYS_MAX];  /* the version this client last saw per key */
    uint64_t retries[CLIENT_RETRIES_MAX];
    uint32_t retry_count;
    struct consistency_history *history;
    char response[CLIENT_RESPONSE_MAX];
};

struct reply {
    int status; /* -1: the connection died (the outcome is unknown) */
    uint64_t etag;
    const char *body;
    size_t body_length;
};

static uint32_t run_setting(const char *name, uint32_t fallback, uint32_t maximum)
{
    const char *text = getenv(name);
    if (text == NULL || text[0] == '\0') {
        return fallback;
    }
    char *end = NULL;
    unsigned long value = strtoul(text, &end, 10);
    cr_assert(*end == '\0' && value >= 1 && value <= maximum,
              "%s must be a whole number from 1 to %u (got '%s')", name, maximum, text);
    return (uint32_t)value;
}

/* ---- one client's HTTP: blocking, keep-alive, never asserting on a dead engine ---- */

static bool client_send(int fd, const char *data, size_t length)
{
    for (size_t sent = 0; sent < length;) {
        ssize_t result = send(fd, data + sent, length - sent, MSG_NOSIGNAL);
        if (result <= 0) {
            return false;
        }
        sent += (size_t)result;
    }
    return true;
}

/* Reads one response (headers and a Content-Length body) into client->response. */
static void client_receive(struct client *client, struct reply *reply)
{
    size_t length = 0;
    reply->status = -1;
    while (length + 1 < sizeof(client->response)) {
        ssize_t got = recv(client->fd, client->response + length,
                           sizeof(client->response) - 1 - length, 0);
        if (got <= 0) {
            return;
        }
        length += (size_t)got;
        client->response[length] = '\0';
        char *end = strstr(client->response, "\r\n\r\n");
        const char *field = strcasestr(client->response, "\r\nContent-Length:");
        if (end == NULL || field == NULL) {
            continue;
        }
        size_t head = (size_t)(end + 4 - client->response);
        size_t body = (size_t)strtoull(field + 17, NULL, 10);
        if (length >= head + body) {
            cr_assert_eq(length, head + body, "bytes after the response: none were asked for");
            const char *etag = strcasestr(client->response, "\r\nETag: \"");
            reply->status = test_status(client->response);
            reply->etag = etag != NULL && etag < end ? strtoull(etag + 9, NULL, 10) : 0;
            reply->body = client->response + head;
            reply->body_length = body;
            return;
        }
    }
}

static void client_exchange(struct client *client, const char *request, struct reply *reply)
{
    reply->status = -1;
    if (client->fd >= 0 && client_send(client->fd, request, strlen(request))) {
        client_receive(client, reply);
    }
    if (reply->status < 0 && client->fd >= 0) {
        close(client->fd); /* the engine died: this client is done for the cycle */
        client->fd = -1;
    }
}

static void client_record(struct client *client, struct consistency_operation *op)
{
    op->complete_ns = consistency_now_ns();
    op->client = client->index;
    cr_assert(consistency_history_append(client->history, op),
              "the history is full (%llu operations); raise its capacity",
              (unsigned long long)client->history->count);
}

/* ---- the operations ---- */

static void client_read(struct client *client, uint32_t key, bool final)
{
    struct consistency_operation op = {.kind = CONSISTENCY_READ, .key = key, .final = final,
                                       .invoke_ns = consistency_now_ns()};
    char request[128];
    snprintf(request, sizeof(request), "GET /v1/state/cons/k%u HTTP/1.1\r\nHost: x\r\n\r\n",
             key);
    struct reply reply;
    client_exchange(client, request, &reply);
    op.status = (uint16_t)(reply.status < 0 ? 0 : reply.status);
    if (reply.status < 0) {
        op.outcome = CONSISTENCY_UNKNOWN;
    } else if (reply.status == 200 || reply.status == 404) {
        op.outcome = CONSISTENCY_OK;
        op.version = reply.status == 200 ? reply.etag : 0;
        /* A longer value is none the harness wrote; cut, it still names no write. */
        snprintf(op.value, sizeof(op.value), "%.*s", (int)reply.body_length, reply.body);
        if (reply.status == 404) {
            op.value[0] = '\0';
        }
        client->known[key] = op.version;
    } else {
        op.outcome = CONSISTENCY_FAIL;
    }
    client_record(client, &op);
}

/* A compare-and-swap from the version this client last saw: often stale on purpose, since
 * the clients share the keys, so 412s are part of the history. */
static void client_write(struct client *client, uint32_t key)
{
    struct consistency_operation op = {.kind = CONSISTENCY_WRITE, .key = key,
                                       .expected = client->known[key]};
    snprintf(op.value, sizeof(op.value), "c%u-%llu", client->index,
             (unsigned long long)++client->sequence);
    char precondition[64], request[512];
    if (op.expected == 0) {
        snprintf(precondition, sizeof(precondition), "If-None-Match: *");
    } else {
        snprintf(precondition, sizeof(precondition), "If-Match: \"%llu\"",
                 (unsigned long long)op.expected);
    }
    snprintf(request, sizeof(request),
             "PUT /v1/state/cons/k%u HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: %zu\r\n\r\n%s",
             key, precondition, strlen(op.value), op.value);
    op.invoke_ns = consistency_now_ns();
    struct reply reply;
    client_exchange(client, request, &reply);
    op.status = (uint16_t)(reply.status < 0 ? 0 : reply.status);
    if (reply.status < 0) {
        op.outcome = CONSISTENCY_UNKNOWN;
    } else if (reply.status == 200 || reply.status == 201) {
        op.outcome = CONSISTENCY_OK;
        op.version = client->known[key] = reply.etag;
    } else {
        op.outcome = CONSISTENCY_FAIL;
        long long current = test_json_number(reply.body, NULL, "current_version");
        op.version = reply.status == 412 && current > 0 ? (uint64_t)current : 0;
        client->known[key] = reply.status == 412 ? op.version : client->known[key];
    }
    client_record(client, &op);
}

static void client_retry_forget(struct client *client, uint64_t sequence)
{
    for (uint32_t i = 0; i < client->retry_count; i++) {
        if (client->retries[i] == sequence) {
            client->retries[i] = client->retries[--client->retry_count];
            return;
        }
    }
}

static void client_retry_remember(struct client *client, uint64_t sequence)
{
    client_retry_forget(client, sequence);
    if (client->retry_count < CLIENT_RETRIES_MAX) {
        client->retries[client->retry_count++] = sequence;
    }
}

/* POSTs the invocation whose Idempotency-Key is `key`; the answer's id goes into op.id. */
static enum consistency_outcome client_invoke_key(struct client *client, const char *key,
                                                  bool final)
{
    struct consistency_operation op = {.kind = CONSISTENCY_INVOKE, .final = final,
                                       .invoke_ns = consistency_now_ns()};
    snprintf(op.value, sizeof(op.value), "%s", key);
    char request[512];
    snprintf(request, sizeof(request),
             "POST /v1/agents/assistant/invocations HTTP/1.1\r\nHost: x\r\n"
             "Idempotency-Key: %s\r\nContent-Length: %zu\r\n\r\n{\"input\": \"%s\"}",
             key, strlen(key) + 13, key);
    struct reply reply;
    client_exchange(client, request, &reply);
    op.status = (uint16_t)(reply.status < 0 ? 0 : reply.status);
    const char *id = reply.status < 0 ? NULL : strstr(reply.body, "\"id\":\"");
    if (reply.status < 0) {
        op.outcome = CONSISTENCY_UNKNOWN;
    } else if ((reply.status == 202 || reply.status == 200) && id != NULL) {
        op.outcome = CONSISTENCY_OK;
        snprintf(op.id, sizeof(op.id), "%.16s", id + 6);
    } else {
        /* 429 and 503 are backpressure: not accepted, so nothing is owed. */
        op.outcome = CONSISTENCY_FAIL;
    }
    client_record(client, &op);
    return (enum consistency_outcome)op.outcome;
}

static void client_invoke(struct client *client, uint64_t sequence)
{
    char key[CONSISTENCY_VALUE_MAX];
    snprintf(key, sizeof(key), "inv-c%u-%llu", client->index, (unsigned long long)sequence);
    if (client_invoke_key(client, key, false) == CONSISTENCY_UNKNOWN) {
        client_retry_remember(client, sequence); /* the caller would send it again */
    } else {
        client_retry_forget(client, sequence);
    }
}

/* One cycle of one client: invocations whose answer a crash took are sent again first, then
 * random reads, writes and invocation starts until the engine dies under it. */
static void *client_run(void *argument)
{
    struct client *client = argument;
    client->fd = test_connect_try(client->port);
    uint64_t retries[CLIENT_RETRIES_MAX];
    uint32_t retry_count = client->retry_count;
    memcpy(retries, client->retries, sizeof(retries));
    for (uint32_t i = 0; i < retry_count && client->fd >= 0; i++) {
        client_invoke(client, retries[i]);
    }
    uint32_t invocations = 0;
    for (uint32_t i = 0; i < CLIENT_OPERATIONS_MAX && client->fd >= 0; i++) {
        uint32_t choice = (uint32_t)rand_r(&client->seed) % 32;
        uint32_t key = (uint32_t)rand_r(&client->seed) % client->keys;
        if (choice == 0 && invocations < CLIENT_INVOCATIONS_PER_CYCLE) {
            client_invoke(client, ++client->sequence);
            invocations++;
        } else if (choice < 13) {
            client_read(client, key, false);
        } else {
            client_write(client, key);
        }
    }
    if (client->fd >= 0) {
        close(client->fd);
        client->fd = -1;
    }
    return NULL;
}

/* ---- the engine's life: kill cycles ---- */

static void run_write_config(const char *path, const char *directory, unsigned mock_port)
{
    FILE *file = fopen(path, "w");
    cr_assert_not_null(file, "%s: %s", path, strerror(errno));
    fprintf(file,
            "{\"listen\": \"127.0.0.1:0\", \"threads\": 2, \"data_dir\": \"%s/data\","
            " \"log\": {\"level\": \"warn\"},"
            " \"durability\": {\"default\": \"sync\", \"namespaces\": {\"cons\": \"sync\"}},"
            " \"endpoints\": {\"mock\": {\"url\": \"http://127.0.0.1:%u/v1\","
            "  \"keys\": [{\"name\": \"local\"}]}},"
            " \"tools\": {\"weather\": {\"url\": \"http://127.0.0.1:%u/tools/weather\"}},"
            " \"agents\": {\"assistant\": {\"endpoint\": \"mock\", \"model\": \"gpt-mock\","
            "  \"tools\": [\"weather\"]}}}",
            directory, mock_port, mock_port);
    fclose(file);
}

/* The end of the engine's log, for a failure message: the file goes with the process. */
static void run_log_tail(const struct test_process *engine, char *tail, size_t capacity)
{
    tail[0] = '\0';
    FILE *file = fopen(engine->stderr_path, "r");
    if (file == NULL) {
        return;
    }
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    fseek(file, size > (long)capacity - 1 ? size - (long)capacity + 1 : 0, SEEK_SET);
    size_t got = fread(tail, 1, capacity - 1, file);
    tail[got] = '\0';
    fclose(file);
}

/* Stops the engine with signal_number; it must not have died on its own before. */
static void run_engine_stop(struct test_process *engine, int signal_number, int expected_code)
{
    char tail[2048];
    run_log_tail(engine, tail, sizeof(tail));
    int code = test_process_stop(engine, signal_number);
    cr_assert_eq(code, expected_code, "the engine ended with code %d, not %d; its log ends:\n%s",
                 code, expected_code, tail);
}

static void run_cycle(struct client *clients, uint32_t client_count, const char *config,
                      unsigned *seed)
{
    struct test_process engine;
    test_process_start(&engine, config);
    pthread_t threads[RUN_CLIENTS_MAX];
    for (uint32_t c = 0; c < client_count; c++) {
        clients[c].port = engine.port;
        cr_assert_eq(pthread_create(&threads[c], NULL, client_run, &clients[c]), 0);
    }
    useconds_t kill_after_ms =
        RUN_KILL_AFTER_MS_MIN + (useconds_t)rand_r(seed) % RUN_KILL_AFTER_MS_SPREAD;
    usleep(kill_after_ms * 1000);
    run_engine_stop(&engine, SIGKILL, 128 + SIGKILL);
    for (uint32_t c = 0; c < client_count; c++) {
        cr_assert_eq(pthread_join(threads[c], NULL), 0);
    }
}

/* ---- after the last restart ---- */

struct acknowledged {
    char key[CONSISTENCY_VALUE_MAX];
    char id[CONSISTENCY_ID_MAX];
    bool ended;
    struct consistency_operation last; /* the latest status read */
};

static int acknowledged_by_key(const void *left, const void *right)
{
    return strcmp(((const struct acknowledged *)left)->key,
                  ((const struct acknowledged *)right)->key);
}

/* The invocations acknowledged before the last restart, one per Idempotency-Key. */
static size_t final_acknowledged(const struct consistency_history *history,
                                 struct acknowledged **out)
{
    struct acknowledged *list = calloc(history->count + 1, sizeof(*list));
    cr_assert_not_null(list);
    size_t count = 0;
    for (uint64_t i = 0; i < history->count; i++) {
        const struct consistency_operation *op = &history->operations[i];
        if (op->kind == CONSISTENCY_INVOKE && op->outcome == CONSISTENCY_OK && !op->final) {
            memcpy(list[count].key, op->value, sizeof(list[count].key));
            memcpy(list[count].id, op->id, sizeof(list[count].id));
            count++;
        }
    }
    qsort(list, count, sizeof(*list), acknowledged_by_key);
    size_t unique = 0;
    for (size_t i = 0; i < count; i++) {
        if (unique == 0 || strcmp(list[unique - 1].key, list[i].key) != 0) {
            list[unique++] = list[i];
        }
    }
    *out = list;
    return unique;
}

static void final_connect(struct client *client)
{
    if (client->fd < 0) {
        client->fd = test_connect_try(client->port);
        cr_assert_geq(client->fd, 0, "the restarted engine refuses connections");
    }
}

static bool final_terminal(const char *status)
{
    return strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
           strcmp(status, "cancelled") == 0;
}

/* One GET of the invocation's status into entry->last; true once it has ended. */
static bool final_status(struct client *client, struct acknowledged *entry)
{
    final_connect(client);
    struct consistency_operation *op = &entry->last;
    *op = (struct consistency_operation){.kind = CONSISTENCY_INVOCATION_GET, .final = true,
                                         .invoke_ns = consistency_now_ns()};
    memcpy(op->id, entry->id, sizeof(op->id));
    char request[128];
    snprintf(request, sizeof(request), "GET /v1/invocations/%s HTTP/1.1\r\nHost: x\r\n\r\n",
             entry->id);
    struct reply reply;
    client_exchange(client, request, &reply);
    op->complete_ns = consistency_now_ns();
    op->status = (uint16_t)(reply.status < 0 ? 0 : reply.status);
    const char *status = reply.status == 200 ? strstr(reply.body, "\"status\":\"") : NULL;
    op->outcome = reply.status < 0 ? CONSISTENCY_UNKNOWN
                  : status != NULL ? CONSISTENCY_OK
                                   : CONSISTENCY_FAIL;
    if (status != NULL) {
        const char *end = strchr(status + 10, '"');
        int length = end != NULL ? (int)(end - status - 10) : 0;
        snprintf(op->value, sizeof(op->value), "%.*s", length, status + 10);
    }
    return op->outcome == CONSISTENCY_OK && final_terminal(op->value);
}

/* Re-sends every acknowledged Idempotency-Key, then waits (bounded) for every acknowledged
 * invocation to end; the last status read of each goes into the history. */
static void final_invocations(struct client *client, struct consistency_history *history)
{
    struct acknowledged *list = NULL;
    size_t count = final_acknowledged(history, &list);
    for (size_t i = 0; i < count; i++) {
        final_connect(client);
        client_invoke_key(client, list[i].key, true);
    }
    uint64_t deadline_ns = consistency_now_ns() + FINAL_WAIT_MS * 1000000ull;
    size_t pending = count;
    while (pending > 0 && consistency_now_ns() < deadline_ns) {
        for (size_t i = 0; i < count; i++) {
            if (!list[i].ended && final_status(client, &list[i])) {
                list[i].ended = true;
                pending--;
            }
        }
        if (pending > 0) {
            usleep(FINAL_POLL_MS * 1000);
        }
    }
    for (size_t i = 0; i < count; i++) {
        list[i].last.client = client->index;
        cr_assert(consistency_history_append(history, &list[i].last));
    }
    free(list);
}

/* Reads every key (again while the engine answers 503) after the last restart. */
static void final_reads(struct client *client, uint32_t keys)
{
    for (uint32_t key = 0; key < keys; key++) {
        for (int attempt = 0; attempt < FINAL_READ_ATTEMPTS; attempt++) {
            final_connect(client);
            uint64_t before = client->history->count;
            client_read(client, key, true);
            if (client->history->operations[before].outcome == CONSISTENCY_OK) {
                break;
            }
            usleep(FINAL_POLL_MS * 1000);
        }
    }
}

static void run_final(struct client *checker_client, uint32_t keys, const char *config)
{
    struct test_process engine;
    test_process_start(&engine, config);
    checker_client->port = engine.port;
    checker_client->fd = -1;
    final_reads(checker_client, keys);
    final_invocations(checker_client, checker_client->history);
    if (checker_client->fd >= 0) {
        close(checker_client->fd);
        checker_client->fd = -1;
    }
    run_engine_stop(&engine, SIGTERM, 0);
}

/* ---- the test ---- */

static void run_clients_init(struct client *clients, uint32_t count, uint32_t keys,
                             unsigned seed, struct consistency_history *history)
{
    for (uint32_t c = 0; c < count; c++) {
        clients[c].index = (uint16_t)c;
        clients[c].keys = keys;
        clients[c].seed = seed + c;
        clients[c].fd = -1;
        clients[c].history = history;
    }
}

static void run_report(const struct run_settings *settings,
                       const struct consistency_report *report, unsigned seed, double seconds)
{
    printf("consistency: %u clients, %u keys, %u SIGKILL cycles in %.1f s (seed %u)\n",
           settings->clients, settings->keys, settings->cycles, seconds, seed);
    consistency_report_print(stdout, report, settings->cycles);
    fflush(stdout);
}

/* Every violation fails the run, an undurable read included (a version shown before its
 * fdatasync and taken by the crash: the store once did that, see store_read_resolve). */
static void run_verdict(const struct consistency_report *report)
{
    cr_assert_gt(report->operations[CONSISTENCY_WRITE][CONSISTENCY_OK], 0,
                 "no write went through");
    cr_assert_gt(report->operations[CONSISTENCY_INVOKE][CONSISTENCY_OK], 0,
                 "no invocation started");
    cr_assert_eq(report->violations_total, 0, "%llu violations; the first: %s",
                 (unsigned long long)report->violations_total,
                 report->message_count > 0 ? report->messages[0]
                                           : "(beyond the described ones; see the counts)");
}

Test(consistency, cas_and_invocations_stay_linearizable_across_sigkill)
{
    struct run_settings settings = {
        .cycles = run_setting("RM_CONSISTENCY_CYCLES", RUN_CYCLES, RUN_CYCLES_MAX),
        .clients = run_setting("RM_CONSISTENCY_CLIENTS", RUN_CLIENTS, RUN_CLIENTS_MAX),
        .keys = run_setting("RM_CONSISTENCY_KEYS", RUN_KEYS, RUN_KEYS_MAX),
    };
    unsigned seed = run_setting("RM_CONSISTENCY_SEED", (uint32_t)getpid(), UINT32_MAX);
    struct test_mock mock;
    test_mock_start(&mock, 0, "--llm-latency uniform:5:40 --tool-latency uniform:1:10");
    char directory[] = "/tmp/rm-consistency-XXXXXX";
    cr_assert_not_null(mkdtemp(directory), "mkdtemp: %s", strerror(errno));
    char config[64];
    snprintf(config, sizeof(config), "%s/config.json", directory);
    run_write_config(config, directory, mock.port);
    static struct consistency_history history;
    consistency_history_init(&history, (uint64_t)settings.cycles * settings.clients *
                                           (CLIENT_OPERATIONS_MAX + CLIENT_RETRIES_MAX) +
                                       (uint64_t)settings.keys * FINAL_READ_ATTEMPTS + 1000000);
    /* One more client makes the final reads and waits, under its own index. */
    struct client *clients = calloc(settings.clients + 1, sizeof(*clients));
    cr_assert_not_null(clients);
    run_clients_init(clients, settings.clients + 1, settings.keys, seed, &history);
    uint64_t start_ns = consistency_now_ns();
    unsigned kill_seed = seed;
    for (uint32_t cycle = 0; cycle < settings.cycles; cycle++) {
        run_cycle(clients, settings.clients, config, &kill_seed);
    }
    run_final(&clients[settings.clients], settings.keys, config);
    double seconds = (double)(consistency_now_ns() - start_ns) / 1e9;
    test_mock_stop(&mock);
    char command[128];
    snprintf(command, sizeof(command), "rm -rf '%s'", directory);
    cr_assert_eq(system(command), 0);
    struct consistency_report report;
    uint64_t violations = consistency_check(&history, &report);
    run_report(&settings, &report, seed, seconds);
    cr_assert_eq(violations, report.violations_total);
    run_verdict(&report);
    free(clients);
    consistency_history_free(&history);
}
