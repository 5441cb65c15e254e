#ifndef RM_LOG_H
#define RM_LOG_H

/* Structured logs: one JSON object per line, {"ts":"...","level":"info","msg":"...",...},
 * to stderr or a file. Safe from every thread: each line is one write(2) of a line built on
 * the caller's stack (lines longer than LOG_LINE_MAX are truncated and still valid JSON).
 * Writing a log line is a blocking syscall, so reactors log only on rare events. */

#include <stdarg.h>

#include "core/config.h"

#define LOG_LINE_MAX 2048

/* Opens the destination (empty path = stderr). Returns 0 or -errno. */
int log_open(const char *path, enum config_log_level level);
/* Reopens the file after rotation (SIGHUP). Returns 0 or -errno. */
int log_reopen(void);
void log_close(void);

/* fields: pairs of (const char *key, const char *value) ended by NULL; values are escaped. */
void log_event(enum config_log_level level, const char *message, ...);

#define log_debug(...) log_event(CONFIG_LOG_DEBUG, __VA_ARGS__, (const char *)0)
#define log_info(...) log_event(CONFIG_LOG_INFO, __VA_ARGS__, (const char *)0)
#define log_warn(...) log_event(CONFIG_LOG_WARN, __VA_ARGS__, (const char *)0)
#define log_error(...) log_event(CONFIG_LOG_ERROR, __VA_ARGS__, (const char *)0)

#endif
