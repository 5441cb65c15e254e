#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

#define TEST_LOG_THREADS 4
#define TEST_LOG_LINES_PER_THREAD 2000

struct test_log_file {
    char directory[64];
    char path[128];
};

static void test_log_file_make(struct test_log_file *file)
{
    snprintf(file->directory, sizeof(file->directory), "/tmp/rm_test_log_XXXXXX");
    cr_assert_not_null(mkdtemp(file->directory));
    snprintf(file->path, sizeof(file->path), "%s/ringmaster.log", file->directory);
}

static void test_log_file_remove(struct test_log_file *file, const char *other)
{
    unlink(file->path);
    if (other != NULL) {
        unlink(other);
    }
    rmdir(file->directory);
}

/* Reads a whole file (tests keep them small) into a NUL-terminated buffer to free. */
static char *test_log_read(const char *path, size_t *length)
{
    FILE *stream = fopen(path, "rb");
    cr_assert_not_null(stream, "%s: %s", path, strerror(errno));
    size_t capacity = 1 << 16;
    char *data = malloc(capacity);
    size_t used = 0;
    size_t got;
    while ((got = fread(data + used, 1, capacity - used - 1, stream)) > 0) {
        used += got;
        if (capacity - used - 1 == 0) {
            capacity *= 2;
            data = realloc(data, capacity);
            cr_assert_not_null(data);
        }
    }
    fclose(stream);
    data[used] = '\0';
    *length = used;
    return data;
}

/* Parses every line of the file as one JSON object; returns them in an array to decref. */
static json_t *test_log_lines(const char *path)
{
    size_t length = 0;
    char *data = test_log_read(path, &length);
    json_t *lines = json_array();
    char *cursor = data;
    while (*cursor != '\0') {
        char *end = strchr(cursor, '\n');
        cr_assert_not_null(end, "last line not terminated: %s", cursor);
        cr_assert_leq((size_t)(end - cursor + 1), (size_t)LOG_LINE_MAX);
        json_error_t error;
        json_t *line = json_loadb(cursor, (size_t)(end - cursor), 0, &error);
        cr_assert_not_null(line, "not JSON (%s): %.*s", error.text, (int)(end - cursor), cursor);
        cr_assert(json_is_object(line));
        json_array_append_new(lines, line);
        cursor = end + 1;
    }
    free(data);
    return lines;
}

static const char *test_log_field(json_t *line, const char *key)
{
    json_t *value = json_object_get(line, key);
    cr_assert_not_null(value, "no %s", key);
    cr_assert(json_is_string(value), "%s is not a string", key);
    return json_string_value(value);
}

Test(log_format, lines_are_json_objects)
{
    struct test_log_file file;
    test_log_file_make(&file);
    cr_assert_eq(log_open(file.path, CONFIG_LOG_DEBUG), 0);
    log_info("listening", "address", "127.0.0.1:8080", "threads", "4");
    log_debug("plain");
    log_error("failed", "error", "No such file or directory");
    log_close();
    json_t *lines = test_log_lines(file.path);
    cr_assert_eq(json_array_size(lines), 3);
    json_t *first = json_array_get(lines, 0);
    cr_assert_eq(json_object_size(first), 5);
    const char *ts = test_log_field(first, "ts");
    int year, month, day, hour, minute, second, millisecond;
    char zone = 0;
    cr_assert_eq(sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &year, &month, &day, &hour,
                        &minute, &second, &millisecond, &zone),
                 8, "%s", ts);
    cr_assert_eq(strlen(ts), 24);
    cr_assert_eq(zone, 'Z');
    cr_assert_geq(year, 2024);
    cr_assert_str_eq(test_log_field(first, "level"), "info");
    cr_assert_str_eq(test_log_field(first, "msg"), "listening");
    cr_assert_str_eq(test_log_field(first, "address"), "127.0.0.1:8080");
    cr_assert_str_eq(test_log_field(first, "threads"), "4");
    cr_assert_str_eq(test_log_field(json_array_get(lines, 1), "level"), "debug");
    cr_assert_eq(json_object_size(json_array_get(lines, 1)), 3);
    cr_assert_str_eq(test_log_field(json_array_get(lines, 2), "level"), "error");
    json_decref(lines);
    test_log_file_remove(&file, NULL);
}

/* The raw text too: the escapes are the ones documented, not just something jansson reads. */
Test(log_format, escaping)
{
    struct test_log_file file;
    test_log_file_make(&file);
    cr_assert_eq(log_open(file.path, CONFIG_LOG_INFO), 0);
    log_info("say \"hi\"\\ now\n\t\x01\x1f\x7f", "k\"ey", "caf\xc3\xa9 \xf0\x9f\x98\x80");
    log_info("bad", "bytes", "a\xff" "b\xc0\xaf" "c\xed\xa0\x80" "d\xf4\x90\x80\x80" "e\xe2\x82");
    log_close();
    size_t length = 0;
    char *raw = test_log_read(file.path, &length);
    cr_assert_not_null(strstr(raw, "\"msg\":\"say \\\"hi\\\"\\\\ now\\u000a\\u0009\\u0001\\u001f"
                                   "\\u007f\",\"k\\\"ey\":\"caf\xc3\xa9 \xf0\x9f\x98\x80\"}\n"),
                       "%s", raw);
    free(raw);
    json_t *lines = test_log_lines(file.path);
    cr_assert_eq(json_array_size(lines), 2);
    json_t *first = json_array_get(lines, 0);
    cr_assert_str_eq(test_log_field(first, "msg"), "say \"hi\"\\ now\n\t\x01\x1f\x7f");
    cr_assert_str_eq(test_log_field(first, "k\"ey"), "caf\xc3\xa9 \xf0\x9f\x98\x80");
    const char *replaced = test_log_field(json_array_get(lines, 1), "bytes");
    const char *fffd = "\xef\xbf\xbd";
    char expected[128];
    snprintf(expected, sizeof(expected), "a%sb%s%sc%s%s%sd%s%s%s%se%s%s", fffd, fffd, fffd,
             fffd, fffd, fffd, fffd, fffd, fffd, fffd, fffd, fffd);
    cr_assert_str_eq(replaced, expected);
    json_decref(lines);
    test_log_file_remove(&file, NULL);
}

Test(log_format, null_value_ends_fields)
{
    struct test_log_file file;
    test_log_file_make(&file);
    cr_assert_eq(log_open(file.path, CONFIG_LOG_INFO), 0);
    log_info("m", "a", "1", "b", (const char *)NULL, "c", "3");
    log_close();
    json_t *lines = test_log_lines(file.path);
    json_t *line = json_array_get(lines, 0);
    cr_assert(json_is_null(json_object_get(line, "b")));
    cr_assert_null(json_object_get(line, "c"));
    json_decref(lines);
    test_log_file_remove(&file, NULL);
}

static void test_log_long_line(const char *value, const char *key)
{
    log_warn("long", key, value, "after", "x");
}

/* Whatever is cut, the line stays one valid JSON object within LOG_LINE_MAX. */
Test(log_format, truncation_keeps_json)
{
    struct test_log_file file;
    test_log_file_make(&file);
    cr_assert_eq(log_open(file.path, CONFIG_LOG_INFO), 0);
    static char value[3 * LOG_LINE_MAX];
    static const char *const units[] = {"a", "\x01", "\xc3\xa9", "\xf0\x9f\x98\x80", "\"", "\xff"};
    size_t unit_count = sizeof(units) / sizeof(units[0]);
    for (size_t u = 0; u < unit_count; u++) {
        for (size_t offset = 0; offset < 4; offset++) {
            size_t used = offset;
            memset(value, 'o', offset);
            while (used + strlen(units[u]) < sizeof(value)) {
                memcpy(value + used, units[u], strlen(units[u]));
                used += strlen(units[u]);
            }
            value[used] = '\0';
            test_log_long_line(value, "k");
            log_warn(value);
            test_log_long_line("short", value);
        }
    }
    log_close();
    json_t *lines = test_log_lines(file.path);
    cr_assert_eq(json_array_size(lines), unit_count * 4 * 3);
    for (size_t i = 0; i < json_array_size(lines); i++) {
        json_t *line = json_array_get(lines, i);
        cr_assert(json_is_true(json_object_get(line, "truncated")), "line %zu", i);
        cr_assert_null(json_object_get(line, "after"));
    }
    json_decref(lines);
    test_log_file_remove(&file, NULL);
}

Test(log_format, many_fields_truncate)
{
    struct test_log_file file;
    test_log_file_make(&file);
    cr_assert_eq(log_open(file.path, CONFIG_LOG_INFO), 0);
    char value[200];
    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    log_info("fields", "f1", value, "f2", value, "f3", value, "f4", value, "f5", value, "f6",
             value, "f7", value, "f8", value, "f9", value, "f10", value, "f11", value, "f12",
             value);
    log_close();
    json_t *lines = test_log_lines(file.path);
    json_t *line = json_array_get(lines, 0);
    cr_assert(json_is_true(json_object_get(line, "truncated")));
    cr_assert_not_null(json_object_get(line, "f9"));
    cr_assert_null(json_object_get(line, "f12"));
    json_decref(lines);
    test_log_file_remove(&file, NULL);
}

Test(log_level, filter)
{
    struct test_log_file file;
    test_log_file_make(&file);
    cr_assert_eq(log_open(file.path, CONFIG_LOG_WARN), 0);
    log_debug("d");
    log_info("i");
    log_warn("w");
    log_error("e");
    cr_assert_eq(log_open(file.path, CONFIG_LOG_ERROR), 0);
    log_warn("w2");
    log_error("e2");
    log_close();
    json_t *lines = test_log_lines(file.path);
    cr_assert_eq(json_array_size(lines), 3);
    cr_assert_str_eq(test_log_field(json_array_get(lines, 0), "msg"), "w");
    cr_assert_str_eq(test_log_field(json_array_get(lines, 1), "msg"), "e");
    cr_assert_str_eq(test_log_field(json_array_get(lines, 2), "msg"), "e2");
    json_decref(lines);
    test_log_file_remove(&file, NULL);
}

Test(log_file, reopen_after_rename)
{
    struct test_log_file file;
    test_log_file_make(&file);
    char rotated[160];
    snprintf(rotated, sizeof(rotated), "%s.1", file.path);
    cr_assert_eq(log_open(file.path, CONFIG_LOG_INFO), 0);
    log_info("one");
    cr_assert_eq(rename(file.path, rotated), 0);
    log_info("two");
    cr_assert_eq(log_reopen(), 0);
    log_info("three");
    log_close();
    json_t *old_lines = test_log_lines(rotated);
    json_t *new_lines = test_log_lines(file.path);
    cr_assert_eq(json_array_size(old_lines), 2);
    cr_assert_str_eq(test_log_field(json_array_get(old_lines, 1), "msg"), "two");
    cr_assert_eq(json_array_size(new_lines), 1);
    cr_assert_str_eq(test_log_field(json_array_get(new_lines, 0), "msg"), "three");
    struct stat status;
    cr_assert_eq(stat(file.path, &status), 0);
    cr_assert_eq(status.st_mode & 0777, 0640);
    json_decref(old_lines);
    json_decref(new_lines);
    test_log_file_remove(&file, rotated);
}

Test(log_file, failed_reopen_keeps_old_file)
{
    struct test_log_file file;
    test_log_file_make(&file);
    char moved[96];
    snprintf(moved, sizeof(moved), "%s.gone", file.directory);
    cr_assert_eq(log_open(file.path, CONFIG_LOG_INFO), 0);
    log_info("before");
    cr_assert_eq(rename(file.directory, moved), 0);
    cr_assert_eq(log_reopen(), -ENOENT);
    log_info("after");
    cr_assert_eq(rename(moved, file.directory), 0);
    log_close();
    json_t *lines = test_log_lines(file.path);
    cr_assert_eq(json_array_size(lines), 2);
    cr_assert_str_eq(test_log_field(json_array_get(lines, 1), "msg"), "after");
    json_decref(lines);
    test_log_file_remove(&file, NULL);
}

Test(log_file, open_errors_and_stderr)
{
    cr_assert_eq(log_open("/nonexistent/dir/ringmaster.log", CONFIG_LOG_INFO), -ENOENT);
    char huge[CONFIG_PATH_MAX + 8];
    memset(huge, 'p', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    cr_assert_eq(log_open(huge, CONFIG_LOG_INFO), -ENAMETOOLONG);
    /* Point stderr at a file to see what reaches it: before log_open, after log_close. */
    struct test_log_file file;
    test_log_file_make(&file);
    char captured[160];
    snprintf(captured, sizeof(captured), "%s.stderr", file.path);
    int saved = dup(STDERR_FILENO);
    int capture = open(captured, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(capture, 0);
    cr_assert_eq(dup2(capture, STDERR_FILENO), STDERR_FILENO);
    close(capture);
    log_info("to stderr");
    cr_assert_eq(log_open(file.path, CONFIG_LOG_INFO), 0);
    log_info("to file");
    log_close();
    log_info("stderr again");
    cr_assert_eq(log_reopen(), 0);
    cr_assert_eq(log_open("", CONFIG_LOG_INFO), 0);
    log_info("stderr still");
    dup2(saved, STDERR_FILENO);
    close(saved);
    json_t *on_stderr = test_log_lines(captured);
    json_t *on_file = test_log_lines(file.path);
    cr_assert_eq(json_array_size(on_stderr), 3);
    cr_assert_str_eq(test_log_field(json_array_get(on_stderr, 1), "msg"), "stderr again");
    cr_assert_eq(json_array_size(on_file), 1);
    json_decref(on_stderr);
    json_decref(on_file);
    test_log_file_remove(&file, captured);
}

struct test_log_writer {
    pthread_t thread;
    int index;
};

static void *test_log_writer_run(void *argument)
{
    struct test_log_writer *writer = argument;
    char thread_name[16];
    snprintf(thread_name, sizeof(thread_name), "%d", writer->index);
    char padding[300];
    memset(padding, 'a' + writer->index, sizeof(padding) - 1);
    padding[sizeof(padding) - 1] = '\0';
    for (int i = 0; i < TEST_LOG_LINES_PER_THREAD; i++) {
        char sequence[16];
        snprintf(sequence, sizeof(sequence), "%d", i);
        log_info("line", "thread", thread_name, "sequence", sequence, "padding", padding);
    }
    return NULL;
}

/* Checks that each thread's lines arrived whole and in order; returns how many. */
static size_t test_log_check_sequences(json_t *lines, int *next)
{
    for (size_t i = 0; i < json_array_size(lines); i++) {
        json_t *line = json_array_get(lines, i);
        int thread = atoi(test_log_field(line, "thread"));
        cr_assert(thread >= 0 && thread < TEST_LOG_THREADS);
        cr_assert_eq(atoi(test_log_field(line, "sequence")), next[thread]);
        cr_assert_eq(strlen(test_log_field(line, "padding")), 299);
        next[thread]++;
    }
    return json_array_size(lines);
}

static void test_log_run_writers(struct test_log_writer *writers)
{
    for (int i = 0; i < TEST_LOG_THREADS; i++) {
        writers[i].index = i;
        cr_assert_eq(pthread_create(&writers[i].thread, NULL, test_log_writer_run, &writers[i]),
                     0);
    }
}

/* Runs under ThreadSanitizer too: concurrent log_event calls share only atomics. */
Test(crosscore_log, threads_never_interleave)
{
    struct test_log_file file;
    test_log_file_make(&file);
    cr_assert_eq(log_open(file.path, CONFIG_LOG_INFO), 0);
    struct test_log_writer writers[TEST_LOG_THREADS];
    test_log_run_writers(writers);
    for (int i = 0; i < TEST_LOG_THREADS; i++) {
        pthread_join(writers[i].thread, NULL);
    }
    log_close();
    json_t *lines = test_log_lines(file.path);
    int next[TEST_LOG_THREADS] = {0};
    cr_assert_eq(test_log_check_sequences(lines, next),
                 TEST_LOG_THREADS * TEST_LOG_LINES_PER_THREAD);
    json_decref(lines);
    test_log_file_remove(&file, NULL);
}

/* Rotation while threads log: no line is lost, torn or written to a closed descriptor. */
Test(crosscore_log, reopen_while_threads_log)
{
    struct test_log_file file;
    test_log_file_make(&file);
    cr_assert_eq(log_open(file.path, CONFIG_LOG_INFO), 0);
    struct test_log_writer writers[TEST_LOG_THREADS];
    test_log_run_writers(writers);
    enum { rotations = 20 };
    char rotated[rotations][160];
    for (int r = 0; r < rotations; r++) {
        usleep(500);
        snprintf(rotated[r], sizeof(rotated[r]), "%s.%d", file.path, r);
        cr_assert_eq(rename(file.path, rotated[r]), 0);
        cr_assert_eq(log_reopen(), 0);
    }
    for (int i = 0; i < TEST_LOG_THREADS; i++) {
        pthread_join(writers[i].thread, NULL);
    }
    log_close();
    int next[TEST_LOG_THREADS] = {0};
    size_t total = 0;
    for (int r = 0; r < rotations; r++) {
        json_t *lines = test_log_lines(rotated[r]);
        total += test_log_check_sequences(lines, next);
        json_decref(lines);
        unlink(rotated[r]);
    }
    json_t *lines = test_log_lines(file.path);
    total += test_log_check_sequences(lines, next);
    json_decref(lines);
    cr_assert_eq(total, TEST_LOG_THREADS * TEST_LOG_LINES_PER_THREAD);
    test_log_file_remove(&file, NULL);
}
