#ifndef RM_LOG_H
#define RM_LOG_H

/* Structured logs: one JSON object per line, {"ts":"...","level":"info","msg":"...",...},
 * to stderr or a file. Safe from every thread: each line is one write(2) of a line built on
 * the caller's stack (lines longer than LOG_LINE_MAX are truncated and still valid JSON, with
 * "truncated":true added). Quotes, backslashes and control characters are escaped (controls
 * as \u00XX); bytes that are not valid UTF-8 become U+FFFD, so every line parses.
 * Writing a log line is a blocking syscall, so reactors log only on rare events. */

#include <stdarg.h>

#include "core/config.h"

#define LOG_LINE_MAX 2048

/* Opens the destination (empty path = stderr; a file is opened O_APPEND, created 0640) and
 * sets the level. Returns 0 or -errno; on failure nothing changes. May be called again. */
int log_open(const char *path, enum config_log_level level);
/* Reopens the file by its path after rotation (SIGHUP). Returns 0 or -errno; on failure the
 * old file stays in use. The new file replaces the old one behind the same descriptor number
 * (dup3), so threads logging meanwhile lose no line. A no-op when logging to stderr. */
int log_reopen(void);
/* Sends lines back to stderr and releases the file. Safe while other threads log. */
void log_close(void);

/* fields: pairs of (const char *key, const char *value) ended by NULL; keys and values are
 * escaped. A NULL value is written as null and ends the list. Lines below the level are
 * dropped before any formatting. */
void log_event(enum config_log_level level, const char *message, ...);

#define log_debug(...) log_event(CONFIG_LOG_DEBUG, __VA_ARGS__, (const char *)0)
#define log_info(...) log_event(CONFIG_LOG_INFO, __VA_ARGS__, (const char *)0)
#define log_warn(...) log_event(CONFIG_LOG_WARN, __VA_ARGS__, (const char *)0)
#define log_error(...) log_event(CONFIG_LOG_ERROR, __VA_ARGS__, (const char *)0)

#endif
