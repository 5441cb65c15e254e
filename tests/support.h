#ifndef RM_TESTS_SUPPORT_H
#define RM_TESTS_SUPPORT_H

/* Helpers shared by the integration tests: an embedded engine on a free loopback port, plain
 * blocking sockets as a raw HTTP client (for bytes curl would never send), and running real
 * client programs (curl, wrk) with their output captured. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct rm_engine;

struct test_engine {
    struct rm_engine *engine;
    uint16_t port;
    char data_dir[64];
};

/* Starts an engine on 127.0.0.1:0 with `threads` reactors and a fresh temporary data_dir;
 * `extra` is more JSON members ("" or e.g. "\"limits\": {...}"). Fails the test on error. */
void test_engine_start(struct test_engine *test, uint32_t threads, const char *extra);
/* Starts an engine again on the data_dir of a stopped one (test_engine_halt). */
void test_engine_restart(struct test_engine *test, uint32_t threads, const char *extra);
/* Stops the engine (graceful drain) and keeps its data_dir. */
void test_engine_halt(struct test_engine *test);
/* Stops the engine and removes its data_dir. */
void test_engine_stop(struct test_engine *test);

/* A blocking loopback connection with 5 s receive/send timeouts. */
int test_connect(uint16_t port);
/* The same without the assertion on connect: -1 when nobody listens (an engine killed on
 * purpose). Sends and receives time out after 5 s. */
int test_connect_try(uint16_t port);
void test_send(int fd, const char *data, size_t length);
void test_send_text(int fd, const char *text);
/* Reads until the peer closes (or 5 s pass); returns the bytes read, NUL-terminated. */
size_t test_read_all(int fd, char *buffer, size_t capacity);
/* Reads exactly one response (headers + Content-Length body); returns its length or 0. */
size_t test_read_response(int fd, char *buffer, size_t capacity);
/* True once the peer has closed: a read returns 0 (or an error) within 5 s. */
bool test_peer_closed(int fd);
int test_status(const char *response);
/* Runs a shell command; stores stdout (NUL-terminated) and returns the exit status. */
int test_run(const char *command, char *output, size_t capacity);
/* Counts occurrences of needle in haystack. */
size_t test_count(const char *haystack, const char *needle);
/* The path of the built ringmaster binary (RINGMASTER_BIN), or NULL. */
const char *test_binary(void);

/* The ringmaster binary running as a child process. Its stderr goes to a file (never a pipe
 * nobody reads, which could block the engine's log writes). */
struct test_process {
    pid_t pid;
    uint16_t port;
    char stderr_path[64];
};

/* Starts RINGMASTER_BIN --config config_path and waits (up to 10 s) for the port it reports. */
void test_process_start(struct test_process *process, const char *config_path);
/* Sends signal_number, waits, removes the stderr file; returns the exit code (128 + signal
 * when killed). */
int test_process_stop(struct test_process *process, int signal_number);

/* ringmaster-mock (RINGMASTER_MOCK) as a child process with 2 threads on 127.0.0.1:port
 * (0: a free port) and more command-line flags. */
struct test_mock {
    pid_t pid;
    uint16_t port;
    char stderr_path[64];
};
void test_mock_start(struct test_mock *mock, uint16_t port, const char *flags);
/* SIGTERM; the mock must exit 0 (under ASan that also means no leak). */
void test_mock_stop(struct test_mock *mock);

/* The number after "name": in json, first looked for after the text `after` (NULL: from the
 * start); -1 when absent. */
long long test_json_number(const char *json, const char *after, const char *name);

#endif
