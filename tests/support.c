#include "tests/support.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/ringmaster.h"

void test_engine_restart(struct test_engine *test, uint32_t threads, const char *extra)
{
    char json[4096];
    snprintf(json, sizeof(json),
             "{\"listen\": \"127.0.0.1:0\", \"threads\": %u, \"data_dir\": \"%s\", "
             "\"log\": {\"level\": \"warn\"}%s%s}",
             threads, test->data_dir, extra[0] != '\0' ? ", " : "", extra);
    char err[512] = "";
    int result = rm_engine_create_json(json, &test->engine, err, sizeof(err));
    cr_assert_eq(result, 0, "engine create failed: %s", err);
    result = rm_engine_start(test->engine, err, sizeof(err));
    cr_assert_eq(result, 0, "engine start failed: %s", err);
    test->port = rm_engine_port(test->engine);
    cr_assert_neq(test->port, 0);
}

void test_engine_start(struct test_engine *test, uint32_t threads, const char *extra)
{
    snprintf(test->data_dir, sizeof(test->data_dir), "/tmp/rm-test-XXXXXX");
    cr_assert_not_null(mkdtemp(test->data_dir), "mkdtemp: %s", strerror(errno));
    test_engine_restart(test, threads, extra);
}

void test_engine_halt(struct test_engine *test)
{
    rm_engine_stop(test->engine);
    rm_engine_wait(test->engine);
    rm_engine_destroy(test->engine);
    test->engine = NULL;
}

void test_engine_stop(struct test_engine *test)
{
    test_engine_halt(test);
    char command[128];
    snprintf(command, sizeof(command), "rm -rf '%s'", test->data_dir);
    cr_assert_eq(system(command), 0);
}

int test_connect_try(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    struct timeval timeout = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
    if (connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int test_connect(uint16_t port)
{
    int fd = test_connect_try(port);
    cr_assert_geq(fd, 0, "connect to port %u: %s", port, strerror(errno));
    return fd;
}

void test_send(int fd, const char *data, size_t length)
{
    size_t sent = 0;
    while (sent < length) {
        ssize_t result = send(fd, data + sent, length - sent, MSG_NOSIGNAL);
        if (result <= 0) {
            return; /* the server may close early on bad input; the test checks the reply */
        }
        sent += (size_t)result;
    }
}

void test_send_text(int fd, const char *text) { test_send(fd, text, strlen(text)); }

size_t test_read_all(int fd, char *buffer, size_t capacity)
{
    size_t length = 0;
    while (length + 1 < capacity) {
        ssize_t got = recv(fd, buffer + length, capacity - 1 - length, 0);
        if (got <= 0) {
            break;
        }
        length += (size_t)got;
    }
    buffer[length] = '\0';
    return length;
}

static size_t test_content_length(const char *head)
{
    const char *field = strcasestr(head, "\r\ncontent-length:");
    return field == NULL ? 0 : (size_t)strtoull(field + 17, NULL, 10);
}

size_t test_read_response(int fd, char *buffer, size_t capacity)
{
    size_t length = 0;
    for (;;) {
        buffer[length] = '\0';
        char *end = strstr(buffer, "\r\n\r\n");
        if (end != NULL) {
            size_t want = (size_t)(end + 4 - buffer) + test_content_length(buffer);
            if (length >= want) {
                return want;
            }
        }
        if (length + 1 >= capacity) {
            return 0;
        }
        /* One byte at a time, so a pipelined next response stays in the socket. */
        ssize_t got = recv(fd, buffer + length, 1, 0);
        if (got <= 0) {
            return 0;
        }
        length += (size_t)got;
    }
}

bool test_peer_closed(int fd)
{
    char byte;
    for (int i = 0; i < 1000; i++) {
        ssize_t got = recv(fd, &byte, 1, 0);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            return true;
        }
        if (got < 0) {
            return false; /* timed out: still open */
        }
    }
    return false;
}

int test_status(const char *response)
{
    int status = 0;
    if (sscanf(response, "HTTP/1.%*d %d", &status) != 1) {
        return -1;
    }
    return status;
}

int test_run(const char *command, char *output, size_t capacity)
{
    FILE *pipe = popen(command, "r");
    cr_assert_not_null(pipe, "popen %s", command);
    size_t length = 0;
    size_t got;
    while (length + 1 < capacity &&
           (got = fread(output + length, 1, capacity - 1 - length, pipe)) > 0) {
        length += got;
    }
    output[length] = '\0';
    int status = pclose(pipe);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

size_t test_count(const char *haystack, const char *needle)
{
    size_t count = 0;
    size_t length = strlen(needle);
    for (const char *at = strstr(haystack, needle); at != NULL; at = strstr(at + length, needle)) {
        count++;
    }
    return count;
}

const char *test_binary(void) { return getenv("RINGMASTER_BIN"); }

static uint16_t test_process_read_port(const char *path)
{
    FILE *file = fopen(path, "r");
    if (file == NULL) {
        return 0;
    }
    char line[1024];
    uint16_t port = 0;
    while (port == 0 && fgets(line, sizeof(line), file) != NULL) {
        const char *at = strstr(line, "listening on port ");
        if (at != NULL) {
            port = (uint16_t)strtoul(at + 18, NULL, 10);
        }
    }
    fclose(file);
    return port;
}

void test_process_start(struct test_process *process, const char *config_path)
{
    cr_assert_not_null(test_binary(), "RINGMASTER_BIN must name the built binary (make test)");
    snprintf(process->stderr_path, sizeof(process->stderr_path), "/tmp/rm-stderr-XXXXXX");
    int fd = mkstemp(process->stderr_path);
    cr_assert_geq(fd, 0);
    process->pid = fork();
    cr_assert_geq(process->pid, 0);
    if (process->pid == 0) {
        dup2(fd, 2);
        execl(test_binary(), "ringmaster", "--config", config_path, (char *)NULL);
        _exit(127);
    }
    close(fd);
    process->port = 0;
    for (int i = 0; i < 1000 && process->port == 0; i++) {
        process->port = test_process_read_port(process->stderr_path);
        if (process->port == 0) {
            usleep(10000);
        }
    }
    cr_assert_neq(process->port, 0, "the engine did not report its port (see %s)",
                  process->stderr_path);
}

int test_process_stop(struct test_process *process, int signal_number)
{
    kill(process->pid, signal_number);
    int status = 0;
    cr_assert_eq(waitpid(process->pid, &status, 0), process->pid);
    unlink(process->stderr_path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* The mock's stderr goes to a file (a pipe nobody reads could block its log writes); the
 * port is read from its "listening on port" line. */
void test_mock_start(struct test_mock *mock, uint16_t port, const char *flags)
{
    const char *binary = getenv("RINGMASTER_MOCK");
    cr_assert_not_null(binary, "RINGMASTER_MOCK must name the built ringmaster-mock (make test)");
    char command[2048];
    snprintf(command, sizeof(command), "exec %s --listen 127.0.0.1:%u --threads 2 %s", binary,
             port, flags);
    snprintf(mock->stderr_path, sizeof(mock->stderr_path), "/tmp/rm-mock-XXXXXX");
    int fd = mkstemp(mock->stderr_path);
    cr_assert_geq(fd, 0);
    mock->pid = fork();
    cr_assert_geq(mock->pid, 0);
    if (mock->pid == 0) {
        /* A failed assertion ends the test process without test_mock_stop: the mock goes too. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(fd, 2);
        execl("/bin/sh", "sh", "-c", command, (char *)NULL);
        _exit(127);
    }
    close(fd);
    mock->port = 0;
    for (int i = 0; i < 1000 && mock->port == 0; i++) {
        mock->port = test_process_read_port(mock->stderr_path);
        if (mock->port == 0) {
            usleep(10000);
        }
    }
    cr_assert_neq(mock->port, 0, "the mock did not report its port (see %s)", mock->stderr_path);
}

void test_mock_stop(struct test_mock *mock)
{
    kill(mock->pid, SIGTERM);
    int status = 0;
    cr_assert_eq(waitpid(mock->pid, &status, 0), mock->pid);
    unlink(mock->stderr_path);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "mock exit status %d", status);
}

/* Pulls "name":NUMBER out of a flat piece of JSON: the first occurrence after `after` (NULL:
 * from the start). Returns -1 when absent. */
long long test_json_number(const char *json, const char *after, const char *name)
{
    const char *from = after != NULL ? strstr(json, after) : json;
    char needle[128];
    snprintf(needle, sizeof(needle), "\"%s\":", name);
    const char *at = from != NULL ? strstr(from, needle) : NULL;
    return at != NULL ? strtoll(at + strlen(needle), NULL, 10) : -1;
}
