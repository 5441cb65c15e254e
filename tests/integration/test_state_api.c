/* The state API over HTTP: compare-and-swap semantics, validation, persistence across
 * restarts, and the lost-update test with 64 concurrent read-modify-write clients. */

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support.h"

#define STATE_RESPONSE_MAX 65536

struct state_reply {
    int status;
    unsigned long long etag; /* 0 when absent */
    char body[4096];
};

/* One request on an open connection; the reply is parsed into *reply. */
static void state_call(int fd, const char *method, const char *path, const char *headers,
                       const char *body, struct state_reply *reply)
{
    char request[8192];
    size_t body_length = body != NULL ? strlen(body) : 0;
    int length = snprintf(request, sizeof(request),
                          "%s %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %zu\r\n\r\n%s", method,
                          path, headers, body_length, body != NULL ? body : "");
    cr_assert(length > 0 && (size_t)length < sizeof(request));
    test_send(fd, request, (size_t)length);
    static __thread char response[STATE_RESPONSE_MAX];
    size_t got = test_read_response(fd, response, sizeof(response));
    cr_assert_gt(got, 0, "no response to %s %s", method, path);
    reply->status = test_status(response);
    const char *etag = strcasestr(response, "\r\nETag: \"");
    reply->etag = etag != NULL ? strtoull(etag + 9, NULL, 10) : 0;
    const char *separator = strstr(response, "\r\n\r\n");
    snprintf(reply->body, sizeof(reply->body), "%.*s", (int)(got - (size_t)(separator + 4 - response)),
             separator + 4);
}

static struct test_engine engine;

static void state_engine_start(void) { test_engine_start(&engine, 2, "\"limits\": {\"max_value_bytes\": 1024}"); }
static void state_engine_stop(void) { test_engine_stop(&engine); }

TestSuite(state_api, .init = state_engine_start, .fini = state_engine_stop);

Test(state_api, compare_and_swap_life_cycle)
{
    int fd = test_connect(engine.port);
    struct state_reply reply;
    state_call(fd, "GET", "/v1/state/app/k1", "", NULL, &reply);
    cr_assert_eq(reply.status, 404);
    state_call(fd, "PUT", "/v1/state/app/k1", "If-None-Match: *\r\n", "one", &reply);
    cr_assert_eq(reply.status, 201, "%s", reply.body);
    cr_assert_eq(reply.etag, 1);
    state_call(fd, "PUT", "/v1/state/app/k1", "If-None-Match: *\r\n", "again", &reply);
    cr_assert_eq(reply.status, 412);
    cr_assert_not_null(strstr(reply.body, "\"current_version\":1"), "%s", reply.body);
    state_call(fd, "GET", "/v1/state/app/k1", "", NULL, &reply);
    cr_assert_eq(reply.status, 200);
    cr_assert_eq(reply.etag, 1);
    cr_assert_str_eq(reply.body, "one");
    state_call(fd, "PUT", "/v1/state/app/k1", "If-Match: \"1\"\r\n", "two", &reply);
    cr_assert_eq(reply.status, 200);
    cr_assert_eq(reply.etag, 2);
    state_call(fd, "PUT", "/v1/state/app/k1", "If-Match: \"1\"\r\n", "stale", &reply);
    cr_assert_eq(reply.status, 412);
    cr_assert_not_null(strstr(reply.body, "\"current_version\":2"));
    state_call(fd, "PUT", "/v1/state/app/k1", "", "blind", &reply);
    cr_assert_eq(reply.status, 428);
    state_call(fd, "DELETE", "/v1/state/app/k1", "", NULL, &reply);
    cr_assert_eq(reply.status, 428);
    state_call(fd, "DELETE", "/v1/state/app/k1", "If-Match: \"1\"\r\n", NULL, &reply);
    cr_assert_eq(reply.status, 412);
    state_call(fd, "DELETE", "/v1/state/app/k1", "If-Match: \"2\"\r\n", NULL, &reply);
    cr_assert_eq(reply.status, 200);
    state_call(fd, "GET", "/v1/state/app/k1", "", NULL, &reply);
    cr_assert_eq(reply.status, 404);
    /* A recreated key continues its version: no client can confuse it with the old one. */
    state_call(fd, "PUT", "/v1/state/app/k1", "", "three", &reply);
    cr_assert_eq(reply.status, 201);
    cr_assert_gt(reply.etag, 2);
    close(fd);
}

Test(state_api, bad_names_preconditions_and_sizes)
{
    int fd = test_connect(engine.port);
    struct state_reply reply;
    state_call(fd, "GET", "/v1/state/bad$ns/k", "", NULL, &reply);
    cr_assert_eq(reply.status, 400);
    state_call(fd, "GET", "/v1/state/app/", "", NULL, &reply);
    cr_assert_eq(reply.status, 400);
    state_call(fd, "GET", "/v1/state/app", "", NULL, &reply);
    cr_assert_eq(reply.status, 400);
    state_call(fd, "GET", "/v1/state/app/a%zz", "", NULL, &reply);
    cr_assert_eq(reply.status, 400);
    static char long_key[700];
    memset(long_key, 'k', sizeof(long_key) - 1);
    char path[800];
    snprintf(path, sizeof(path), "/v1/state/app/%s", long_key);
    state_call(fd, "GET", path, "", NULL, &reply);
    cr_assert_eq(reply.status, 400);
    state_call(fd, "PUT", "/v1/state/app/x", "If-Match: abc\r\n", "v", &reply);
    cr_assert_eq(reply.status, 400);
    static char big[1100];
    memset(big, 'v', sizeof(big) - 1);
    state_call(fd, "PUT", "/v1/state/app/x", "If-None-Match: *\r\n", big, &reply);
    cr_assert_eq(reply.status, 413);
    state_call(fd, "POST", "/v1/state/app/x", "", "v", &reply);
    cr_assert_eq(reply.status, 405);
    /* Percent-encoded keys are decoded: %2F is part of the key, not a separator. */
    state_call(fd, "PUT", "/v1/state/app/a%2Fb", "If-None-Match: *\r\n", "enc", &reply);
    cr_assert_eq(reply.status, 201);
    state_call(fd, "GET", "/v1/state/app/a/b", "", NULL, &reply);
    cr_assert_eq(reply.status, 200);
    cr_assert_str_eq(reply.body, "enc");
    close(fd);
}

Test(state_api, values_and_versions_survive_a_restart)
{
    int fd = test_connect(engine.port);
    struct state_reply reply;
    char path[64];
    for (int i = 0; i < 50; i++) {
        snprintf(path, sizeof(path), "/v1/state/app/persist-%d", i);
        char value[32];
        snprintf(value, sizeof(value), "value-%d", i);
        state_call(fd, "PUT", path, "If-None-Match: *\r\n", value, &reply);
        cr_assert_eq(reply.status, 201);
        state_call(fd, "PUT", path, "If-Match: \"1\"\r\n", value, &reply);
        cr_assert_eq(reply.status, 200);
    }
    close(fd);
    test_engine_halt(&engine);
    test_engine_restart(&engine, 2, "\"limits\": {\"max_value_bytes\": 1024}");
    fd = test_connect(engine.port);
    for (int i = 0; i < 50; i++) {
        snprintf(path, sizeof(path), "/v1/state/app/persist-%d", i);
        char value[32];
        snprintf(value, sizeof(value), "value-%d", i);
        state_call(fd, "GET", path, "", NULL, &reply);
        cr_assert_eq(reply.status, 200);
        cr_assert_eq(reply.etag, 2);
        cr_assert_str_eq(reply.body, value);
    }
    close(fd);
}

#define LOST_UPDATE_CLIENTS 64
#define LOST_UPDATE_KEYS 10
#define LOST_UPDATE_WRITES 25

struct lost_update_client {
    uint16_t port;
    unsigned seed;
    int successes[LOST_UPDATE_KEYS];
};

/* Read-modify-write: GET the counter and its ETag, PUT counter+1 with If-Match; a 412 means
 * somebody else won, so read again. */
static void *lost_update_run(void *argument)
{
    struct lost_update_client *client = argument;
    int fd = test_connect(client->port);
    struct state_reply reply;
    for (int done = 0; done < LOST_UPDATE_WRITES;) {
        int key = (int)(rand_r(&client->seed) % LOST_UPDATE_KEYS);
        char path[64], headers[64], value[32];
        snprintf(path, sizeof(path), "/v1/state/counters/hot-%d", key);
        state_call(fd, "GET", path, "", NULL, &reply);
        cr_assert_eq(reply.status, 200);
        snprintf(headers, sizeof(headers), "If-Match: \"%llu\"\r\n", reply.etag);
        snprintf(value, sizeof(value), "%lld", atoll(reply.body) + 1);
        state_call(fd, "PUT", path, headers, value, &reply);
        cr_assert(reply.status == 200 || reply.status == 412, "status %d", reply.status);
        if (reply.status == 200) {
            client->successes[key]++;
            done++;
        }
    }
    close(fd);
    return NULL;
}

Test(state_api, no_lost_updates_under_64_concurrent_writers)
{
    int fd = test_connect(engine.port);
    struct state_reply reply;
    for (int key = 0; key < LOST_UPDATE_KEYS; key++) {
        char path[64];
        snprintf(path, sizeof(path), "/v1/state/counters/hot-%d", key);
        state_call(fd, "PUT", path, "If-None-Match: *\r\n", "0", &reply);
        cr_assert_eq(reply.status, 201);
    }
    static struct lost_update_client clients[LOST_UPDATE_CLIENTS];
    pthread_t threads[LOST_UPDATE_CLIENTS];
    for (int i = 0; i < LOST_UPDATE_CLIENTS; i++) {
        clients[i] = (struct lost_update_client){.port = engine.port, .seed = (unsigned)i + 1};
        cr_assert_eq(pthread_create(&threads[i], NULL, lost_update_run, &clients[i]), 0);
    }
    for (int i = 0; i < LOST_UPDATE_CLIENTS; i++) {
        pthread_join(threads[i], NULL);
    }
    long long total = 0;
    for (int key = 0; key < LOST_UPDATE_KEYS; key++) {
        int successes = 0;
        for (int i = 0; i < LOST_UPDATE_CLIENTS; i++) {
            successes += clients[i].successes[key];
        }
        char path[64];
        snprintf(path, sizeof(path), "/v1/state/counters/hot-%d", key);
        state_call(fd, "GET", path, "", NULL, &reply);
        cr_assert_eq(reply.status, 200);
        cr_assert_eq(atoll(reply.body), successes, "key %d: counter %s after %d successful writes",
                     key, reply.body, successes);
        cr_assert_eq(reply.etag, (unsigned long long)successes + 1);
        total += successes;
    }
    cr_assert_eq(total, LOST_UPDATE_CLIENTS * LOST_UPDATE_WRITES);
    close(fd);
}
