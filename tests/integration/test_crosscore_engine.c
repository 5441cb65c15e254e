/* The whole engine with several reactors under concurrent clients: connections land on
 * either reactor, state writes travel to the owner shard's reactor by message and back, and
 * /metrics merges every core's counters while they change. Runs under ThreadSanitizer. */

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/support.h"

#define CROSSCORE_CLIENTS 8
#define CROSSCORE_ROUNDS 100

struct crosscore_client {
    uint16_t port;
    int index;
    int failures;
};

static void *crosscore_client_run(void *argument)
{
    struct crosscore_client *client = argument;
    int fd = test_connect(client->port);
    static __thread char response[65536];
    for (int round = 0; round < CROSSCORE_ROUNDS; round++) {
        char request[256];
        snprintf(request, sizeof(request),
                 "PUT /v1/state/cross/c%d-r%d HTTP/1.1\r\nHost: x\r\nIf-None-Match: *\r\n"
                 "Content-Length: 5\r\n\r\nvalue",
                 client->index, round);
        test_send_text(fd, request);
        if (test_read_response(fd, response, sizeof(response)) == 0 ||
            test_status(response) != 201) {
            client->failures++;
        }
        snprintf(request, sizeof(request),
                 "GET /v1/state/cross/c%d-r%d HTTP/1.1\r\nHost: x\r\n\r\n", client->index,
                 round);
        test_send_text(fd, request);
        if (test_read_response(fd, response, sizeof(response)) == 0 ||
            test_status(response) != 200 || strstr(response, "\r\n\r\nvalue") == NULL) {
            client->failures++;
        }
    }
    close(fd);
    return NULL;
}

Test(crosscore_engine, clients_on_every_reactor_with_scrapes, .timeout = 120)
{
    struct test_engine engine;
    test_engine_start(&engine, 2, "");
    static struct crosscore_client clients[CROSSCORE_CLIENTS];
    pthread_t threads[CROSSCORE_CLIENTS];
    for (int i = 0; i < CROSSCORE_CLIENTS; i++) {
        clients[i] = (struct crosscore_client){.port = engine.port, .index = i};
        cr_assert_eq(pthread_create(&threads[i], NULL, crosscore_client_run, &clients[i]), 0);
    }
    int scraper = test_connect(engine.port);
    static char metrics[262144];
    for (int i = 0; i < 20; i++) {
        test_send_text(scraper, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        cr_assert_gt(test_read_response(scraper, metrics, sizeof(metrics)), 0);
        cr_assert_eq(test_status(metrics), 200);
    }
    int failures = 0;
    for (int i = 0; i < CROSSCORE_CLIENTS; i++) {
        pthread_join(threads[i], NULL);
        failures += clients[i].failures;
    }
    cr_assert_eq(failures, 0);
    test_send_text(scraper, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    cr_assert_gt(test_read_response(scraper, metrics, sizeof(metrics)), 0);
    char expected[128];
    snprintf(expected, sizeof(expected),
             "ringmaster_http_requests_total{route=\"/v1/state/{ns}/{key}\",code=\"201\"} %d\n",
             CROSSCORE_CLIENTS * CROSSCORE_ROUNDS);
    cr_assert_not_null(strstr(metrics, expected), "%s", metrics);
    close(scraper);
    test_engine_stop(&engine);
}
