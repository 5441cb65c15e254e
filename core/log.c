#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/rm_assert.h"

/* Writes of at most PIPE_BUF bytes to a pipe are atomic, so lines stay whole even when
 * stderr is a pipe to a log collector. */
_Static_assert(LOG_LINE_MAX <= PIPE_BUF, "a log line must fit one atomic pipe write");
_Static_assert(LOG_LINE_MAX >= 256, "a log line needs room for its fixed fields");

/* The macros end the field list with one NULL; a call with more pairs than this is a bug. */
#define LOG_FIELDS_MAX 64
/* Bytes held back so a truncated line can still be closed: the string's quote,
 * ,"truncated":true and the closing brace and newline. */
#define LOG_TAIL_RESERVE 24
#define LOG_TRUNCATED_FIELD ",\"truncated\":true"
#define LOG_FILE_MODE 0640
#define LOG_WRITE_ATTEMPTS 8

_Static_assert(1 + sizeof(LOG_TRUNCATED_FIELD) - 1 + 2 <= LOG_TAIL_RESERVE, "tail reserve");

/* Every thread reads log_fd and log_level with atomic loads. log_fd is either stderr or the
 * log's own descriptor number, which is never closed once allocated: a new file (reopen) is
 * put behind that number with dup3, which the kernel does in one step, so a thread writing
 * concurrently writes its whole line to the old file or to the new one, never to a closed or
 * reused descriptor. On close, stderr is put behind it too (releasing the file) and log_fd
 * goes back to stderr itself. */
static int log_fd = STDERR_FILENO;
static int log_level = CONFIG_LOG_INFO;

/* Open, reopen and close are serialized; the fields below are used only under the mutex. */
static pthread_mutex_t log_mutex = PTHREAD_MUTEX_INITIALIZER;
static int log_own_fd = -1;
static char log_path[CONFIG_PATH_MAX];

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};
_Static_assert(CONFIG_LOG_DEBUG == 0 && CONFIG_LOG_ERROR == 3, "log_level_names follows enum");

/* ---- descriptor management ---- */

/* Puts fd (a new open file, or stderr) in service. Takes ownership of fd unless it is
 * stderr. Returns 0 or -errno; on failure the old destination stays. */
static int log_install(int fd)
{
    RM_ASSERT(fd >= 0);
    RM_ASSERT(log_own_fd != STDERR_FILENO);
    if (fd == STDERR_FILENO) {
        __atomic_store_n(&log_fd, STDERR_FILENO, __ATOMIC_RELEASE);
        /* If stderr itself is closed the file stays open behind the number; harmless. */
        if (log_own_fd >= 0) {
            (void)dup3(STDERR_FILENO, log_own_fd, O_CLOEXEC);
        }
        return 0;
    }
    if (log_own_fd < 0) {
        log_own_fd = fd;
    } else {
        int result = dup3(fd, log_own_fd, O_CLOEXEC) < 0 ? -errno : 0;
        close(fd);
        if (result != 0) {
            return result;
        }
    }
    __atomic_store_n(&log_fd, log_own_fd, __ATOMIC_RELEASE);
    return 0;
}

/* Opens the file above the standard descriptors: in a process started with stderr closed,
 * the file must not take number 2, which the log points back to on close. */
static int log_open_file(const char *path)
{
    RM_ASSERT(path != NULL);
    RM_ASSERT(path[0] != '\0');
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, LOG_FILE_MODE);
    if (fd < 0) {
        return -errno;
    }
    if (fd <= STDERR_FILENO) {
        int moved = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
        int error = errno;
        close(fd);
        return moved < 0 ? -error : moved;
    }
    return fd;
}

int log_open(const char *path, enum config_log_level level)
{
    RM_ASSERT(path != NULL);
    RM_ASSERT(level <= CONFIG_LOG_ERROR);
    size_t length = strlen(path);
    if (length >= sizeof(log_path)) {
        return -ENAMETOOLONG;
    }
    RM_ASSERT(pthread_mutex_lock(&log_mutex) == 0);
    int result = length == 0 ? STDERR_FILENO : log_open_file(path);
    if (result >= 0) {
        result = log_install(result);
    }
    if (result == 0) {
        memcpy(log_path, path, length + 1);
        __atomic_store_n(&log_level, (int)level, __ATOMIC_RELAXED);
    }
    RM_ASSERT(pthread_mutex_unlock(&log_mutex) == 0);
    return result;
}

int log_reopen(void)
{
    RM_ASSERT(pthread_mutex_lock(&log_mutex) == 0);
    int result = 0;
    if (log_path[0] != '\0') {
        RM_ASSERT(log_own_fd >= 0);
        result = log_open_file(log_path);
        if (result >= 0) {
            result = log_install(result);
        }
    }
    RM_ASSERT(pthread_mutex_unlock(&log_mutex) == 0);
    return result;
}

/* The log's descriptor number is kept, pointing at stderr, rather than closed: a thread
 * that loaded it just before would otherwise write into whatever the number is reused for. */
void log_close(void)
{
    RM_ASSERT(pthread_mutex_lock(&log_mutex) == 0);
    if (log_path[0] != '\0') {
        RM_ASSERT(log_own_fd >= 0);
        (void)log_install(STDERR_FILENO);
        log_path[0] = '\0';
    }
    RM_ASSERT(pthread_mutex_unlock(&log_mutex) == 0);
}

/* ---- line building ---- */

struct log_line {
    char *data;
    size_t length;
    size_t limit; /* content stops here; LOG_TAIL_RESERVE bytes remain after it */
    bool truncated;
};

/* Returns the length of the valid UTF-8 sequence at text, or 0 if it is not one (overlong
 * forms, surrogates and code points above U+10FFFF are invalid). Stops at the first bad
 * byte, so it never reads past a NUL. */
static size_t log_utf8_length(const unsigned char *text)
{
    RM_ASSERT(text != NULL);
    RM_ASSERT(text[0] >= 0x80);
    unsigned char lead = text[0];
    unsigned char low = 0x80;
    unsigned char high = 0xbf;
    size_t length = 0;
    if (lead >= 0xc2 && lead <= 0xdf) {
        length = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        length = 3;
        low = lead == 0xe0 ? 0xa0 : low;
        high = lead == 0xed ? 0x9f : high;
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        length = 4;
        low = lead == 0xf0 ? 0x90 : low;
        high = lead == 0xf4 ? 0x8f : high;
    } else {
        return 0;
    }
    if (text[1] < low || text[1] > high) {
        return 0;
    }
    for (size_t i = 2; i < length; i++) {
        if (text[i] < 0x80 || text[i] > 0xbf) {
            return 0;
        }
    }
    return length;
}

/* Escapes the character at text into piece; returns the input bytes it used. Invalid UTF-8
 * becomes U+FFFD so that every line is valid JSON whatever bytes a caller passes. */
static size_t log_escape_one(const unsigned char *text, char piece[8], size_t *piece_length)
{
    RM_ASSERT(text[0] != '\0');
    RM_ASSERT(piece_length != NULL);
    unsigned char c = text[0];
    if (c == '"' || c == '\\') {
        piece[0] = '\\';
        piece[1] = (char)c;
        *piece_length = 2;
        return 1;
    }
    if (c < 0x20 || c == 0x7f) {
        static const char hex[] = "0123456789abcdef";
        memcpy(piece, "\\u00", 4);
        piece[4] = hex[c >> 4];
        piece[5] = hex[c & 0xf];
        *piece_length = 6;
        return 1;
    }
    if (c < 0x80) {
        piece[0] = (char)c;
        *piece_length = 1;
        return 1;
    }
    size_t length = log_utf8_length(text);
    if (length == 0) {
        memcpy(piece, "\\ufffd", 6);
        *piece_length = 6;
        return 1;
    }
    memcpy(piece, text, length);
    *piece_length = length;
    return length;
}

/* Content bytes still free. A closed string's quote may stand one byte past the limit. */
static size_t log_line_room(const struct log_line *line)
{
    RM_ASSERT(line->length <= line->limit + 1);
    RM_ASSERT(line->limit + LOG_TAIL_RESERVE <= LOG_LINE_MAX);
    return line->length < line->limit ? line->limit - line->length : 0;
}

/* Appends bytes that need no escaping; all or nothing. */
static bool log_line_raw(struct log_line *line, const char *text, size_t length)
{
    RM_ASSERT(text != NULL);
    RM_ASSERT(length > 0);
    if (line->truncated || length > log_line_room(line)) {
        line->truncated = true;
        return false;
    }
    memcpy(line->data + line->length, text, length);
    line->length += length;
    return true;
}

/* Appends text as a JSON string. What does not fit is cut at a character boundary and the
 * string is still closed (its quote comes from the reserve). Returns false if cut. */
static bool log_line_string(struct log_line *line, const char *text)
{
    RM_ASSERT(text != NULL);
    if (!log_line_raw(line, "\"", 1)) {
        return false;
    }
    const unsigned char *cursor = (const unsigned char *)text;
    while (*cursor != '\0') {
        char piece[8];
        size_t piece_length = 0;
        size_t used = log_escape_one(cursor, piece, &piece_length);
        if (piece_length > log_line_room(line)) {
            line->truncated = true;
            break;
        }
        memcpy(line->data + line->length, piece, piece_length);
        line->length += piece_length;
        cursor += used;
    }
    RM_ASSERT(line->length < LOG_LINE_MAX);
    line->data[line->length++] = '"';
    return !line->truncated;
}

static void log_line_start(struct log_line *line, enum config_log_level level,
                           const char *message)
{
    RM_ASSERT(line->length == 0);
    RM_ASSERT(level <= CONFIG_LOG_ERROR);
    struct timespec now;
    struct tm calendar;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &calendar);
    char head[128];
    int length = snprintf(head, sizeof(head),
                          "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\","
                          "\"msg\":",
                          calendar.tm_year + 1900, calendar.tm_mon + 1, calendar.tm_mday,
                          calendar.tm_hour, calendar.tm_min, calendar.tm_sec,
                          now.tv_nsec / 1000000, log_level_names[level]);
    RM_ASSERT(length > 0 && (size_t)length < sizeof(head));
    bool fits = log_line_raw(line, head, (size_t)length);
    RM_ASSERT(fits);
    log_line_string(line, message);
}

/* Appends "key":"value" pairs until the NULL that ends the list. A field whose key does not
 * fit is left out whole; a value that does not fit is cut. */
static void log_line_fields(struct log_line *line, va_list fields)
{
    RM_ASSERT(line->length > 0);
    for (int count = 0; !line->truncated; count++) {
        RM_ASSERT(count < LOG_FIELDS_MAX);
        const char *key = va_arg(fields, const char *);
        if (key == NULL) {
            return;
        }
        const char *value = va_arg(fields, const char *);
        size_t start = line->length;
        if (!log_line_raw(line, ",", 1) || !log_line_string(line, key) ||
            !log_line_raw(line, ":", 1)) {
            line->length = start;
            return;
        }
        /* A NULL value is a missing argument; the list cannot be read past it. */
        if (value == NULL) {
            line->length = log_line_raw(line, "null", 4) ? line->length : start;
            return;
        }
        log_line_string(line, value);
    }
}

static size_t log_line_finish(struct log_line *line)
{
    RM_ASSERT(line->length <= line->limit + 1);
    RM_ASSERT(line->limit + LOG_TAIL_RESERVE <= LOG_LINE_MAX);
    if (line->truncated) {
        memcpy(line->data + line->length, LOG_TRUNCATED_FIELD, sizeof(LOG_TRUNCATED_FIELD) - 1);
        line->length += sizeof(LOG_TRUNCATED_FIELD) - 1;
    }
    memcpy(line->data + line->length, "}\n", 2);
    line->length += 2;
    RM_ASSERT(line->length <= LOG_LINE_MAX);
    return line->length;
}

/* One write(2) per line: with O_APPEND (or a pipe and at most PIPE_BUF bytes) lines of
 * different threads never interleave. A failed write loses the line; there is nowhere else
 * to report it. */
static void log_write(const char *data, size_t length)
{
    RM_ASSERT(data != NULL);
    RM_ASSERT(length > 0 && length <= LOG_LINE_MAX);
    int fd = __atomic_load_n(&log_fd, __ATOMIC_ACQUIRE);
    for (int attempt = 0; attempt < LOG_WRITE_ATTEMPTS; attempt++) {
        ssize_t written = write(fd, data, length);
        if (written >= 0 || errno != EINTR) {
            return;
        }
    }
}

void log_event(enum config_log_level level, const char *message, ...)
{
    RM_ASSERT(level <= CONFIG_LOG_ERROR);
    RM_ASSERT(message != NULL);
    if ((int)level < __atomic_load_n(&log_level, __ATOMIC_RELAXED)) {
        return;
    }
    char data[LOG_LINE_MAX];
    struct log_line line = {
        .data = data,
        .length = 0,
        .limit = LOG_LINE_MAX - LOG_TAIL_RESERVE,
        .truncated = false,
    };
    log_line_start(&line, level, message);
    va_list fields;
    va_start(fields, message);
    log_line_fields(&line, fields);
    va_end(fields);
    log_write(data, log_line_finish(&line));
}
