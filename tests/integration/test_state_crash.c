/* Crash safety of the state store, through the real binary: writers do compare-and-swap PUTs
 * while the engine is killed with SIGKILL at random moments, then it is restarted on the
 * same data_dir. In sync mode every acknowledged write must be there with its version, and no
 * version may go backwards. In async mode the loss is reported (it is bounded by the flush
 * interval), and a clean SIGTERM must lose nothing. */

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/support.h"

#define CRASH_WRITERS 8
#define CRASH_KEYS_PER_WRITER 4
#define CRASH_CYCLES 20

struct crash_key {
    unsigned long long acknowledged; /* last version the server confirmed */
};

struct crash_writer {
    int index;
    uint16_t port;
    struct crash_key keys[CRASH_KEYS_PER_WRITER];
    unsigned long long acknowledged_writes;
};

static int crash_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval timeout = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    if (connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* One PUT; returns the status, or -1 when the connection failed (the server died). */
static int crash_put(int fd, const char *path, unsigned long long expected, const char *value)
{
    char request[512];
    char precondition[64];
    if (expected == 0) {
        snprintf(precondition, sizeof(precondition), "If-None-Match: *");
    } else {
        snprintf(precondition, sizeof(precondition), "If-Match: \"%llu\"", expected);
    }
    int length = snprintf(request, sizeof(request),
                          "PUT %s HTTP/1.1\r\nHost: x\r\n%s\r\nContent-Length: %zu\r\n\r\n%s",
                          path, precondition, strlen(value), value);
    if (send(fd, request, (size_t)length, MSG_NOSIGNAL) != length) {
        return -1;
    }
    char response[4096];
    if (test_read_response(fd, response, sizeof(response)) == 0) {
        return -1;
    }
    return test_status(response);
}

static void *crash_writer_run(void *argument)
{
    struct crash_writer *writer = argument;
    int fd = crash_connect(writer->port);
    for (unsigned round = 0; fd >= 0; round++) {
        int k = (int)(round % CRASH_KEYS_PER_WRITER);
        struct crash_key *key = &writer->keys[k];
        char path[64], value[64];
        snprintf(path, sizeof(path), "/v1/state/crash/w%d-k%d", writer->index, k);
        snprintf(value, sizeof(value), "w%d-k%d-v%llu", writer->index, k, key->acknowledged + 1);
        int status = crash_put(fd, path, key->acknowledged, value);
        if (status < 0) {
            break;
        }
        if (status == 200 || status == 201) {
            key->acknowledged++;
            writer->acknowledged_writes++;
        } else if (status != 503) {
            fprintf(stderr, "crash writer: unexpected status %d\n", status);
            break;
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    return NULL;
}

/* Reads every key back; returns how many acknowledged writes are missing (the key's version
 * is below the acknowledged one). A version above it by one is a write whose answer was lost
 * in the crash: allowed, and adopted. Anything else fails the test. */
static unsigned long long crash_verify(struct crash_writer *writers, uint16_t port)
{
    int fd = test_connect(port);
    unsigned long long missing = 0;
    for (int w = 0; w < CRASH_WRITERS; w++) {
        for (int k = 0; k < CRASH_KEYS_PER_WRITER; k++) {
            struct crash_key *key = &writers[w].keys[k];
            char request[128], response[4096];
            snprintf(request, sizeof(request),
                     "GET /v1/state/crash/w%d-k%d HTTP/1.1\r\nHost: x\r\n\r\n", w, k);
            test_send_text(fd, request);
            cr_assert_gt(test_read_response(fd, response, sizeof(response)), 0);
            int status = test_status(response);
            unsigned long long version = 0;
            if (status == 200) {
                const char *etag = strstr(response, "ETag: \"");
                cr_assert_not_null(etag);
                version = strtoull(etag + 7, NULL, 10);
                char expected[64];
                snprintf(expected, sizeof(expected), "\r\n\r\nw%d-k%d-v%llu", w, k, version);
                cr_assert_not_null(strstr(response, expected), "wrong value: %s", response);
            } else {
                cr_assert_eq(status, 404, "%s", response);
            }
            cr_assert_leq(version, key->acknowledged + 1, "version from nowhere");
            if (version < key->acknowledged) {
                missing += key->acknowledged - version;
            }
            key->acknowledged = version;
        }
    }
    close(fd);
    return missing;
}

static void crash_write_config(char *config_path, size_t size, const char *directory,
                               const char *mode)
{
    snprintf(config_path, size, "%s/config.json", directory);
    FILE *file = fopen(config_path, "w");
    cr_assert_not_null(file);
    fprintf(file,
            "{\"listen\": \"127.0.0.1:0\", \"threads\": 2, \"data_dir\": \"%s/data\", "
            "\"log\": {\"level\": \"warn\"}, \"durability\": {\"default\": \"%s\"}}",
            directory, mode);
    fclose(file);
}

/* Runs `cycles` stop/restart cycles, stopping with `signal_number` while the writers write;
 * returns the acknowledged writes that were lost. */
static unsigned long long crash_cycles(const char *mode, int signal_number, int cycles,
                                       unsigned long long *acknowledged)
{
    cr_assert_not_null(test_binary(), "RINGMASTER_BIN must name the built binary (make test)");
    char directory[] = "/tmp/rm-crash-XXXXXX";
    cr_assert_not_null(mkdtemp(directory));
    char config_path[128];
    crash_write_config(config_path, sizeof(config_path), directory, mode);
    static struct crash_writer writers[CRASH_WRITERS];
    memset(writers, 0, sizeof(writers));
    unsigned long long lost = 0;
    unsigned seed = (unsigned)getpid();
    for (int cycle = 0; cycle < cycles; cycle++) {
        struct test_process process;
        test_process_start(&process, config_path);
        pthread_t threads[CRASH_WRITERS];
        for (int w = 0; w < CRASH_WRITERS; w++) {
            writers[w].index = w;
            writers[w].port = process.port;
            pthread_create(&threads[w], NULL, crash_writer_run, &writers[w]);
        }
        usleep(50000 + (useconds_t)(rand_r(&seed) % 250000));
        test_process_stop(&process, signal_number);
        for (int w = 0; w < CRASH_WRITERS; w++) {
            pthread_join(threads[w], NULL);
        }
        test_process_start(&process, config_path);
        lost += crash_verify(writers, process.port);
        test_process_stop(&process, SIGTERM);
    }
    *acknowledged = 0;
    for (int w = 0; w < CRASH_WRITERS; w++) {
        *acknowledged += writers[w].acknowledged_writes;
    }
    char command[128];
    snprintf(command, sizeof(command), "rm -rf '%s'", directory);
    cr_assert_eq(system(command), 0);
    return lost;
}

Test(state_crash, sync_mode_keeps_every_acknowledged_write_across_sigkill, .timeout = 240)
{
    unsigned long long acknowledged = 0;
    unsigned long long lost = crash_cycles("sync", SIGKILL, CRASH_CYCLES, &acknowledged);
    cr_assert_gt(acknowledged, 0);
    cr_assert_eq(lost, 0, "%llu of %llu acknowledged sync writes lost", lost, acknowledged);
    printf("state_crash sync: %d SIGKILL cycles, %llu acknowledged writes, 0 lost\n",
           CRASH_CYCLES, acknowledged);
}

Test(state_crash, async_mode_reports_loss_and_loses_nothing_on_sigterm, .timeout = 240)
{
    unsigned long long acknowledged = 0;
    unsigned long long lost = crash_cycles("async", SIGKILL, CRASH_CYCLES, &acknowledged);
    cr_assert_gt(acknowledged, 0);
    unsigned long long clean_acknowledged = 0;
    unsigned long long clean_lost = crash_cycles("async", SIGTERM, 3, &clean_acknowledged);
    cr_assert_gt(clean_acknowledged, 0);
    cr_assert_eq(clean_lost, 0, "a clean SIGTERM lost %llu async writes", clean_lost);
    /* Not asserted: async acknowledges before the flush; this is the measured exposure. */
    printf("state_crash async: %d SIGKILL cycles, %llu acknowledged writes, %llu lost\n",
           CRASH_CYCLES, acknowledged, lost);
    cr_log_info("async mode lost %llu of %llu acknowledged writes over %d SIGKILLs", lost,
                acknowledged, CRASH_CYCLES);
}
