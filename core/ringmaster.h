#ifndef RINGMASTER_H
#define RINGMASTER_H

/* Ringmaster's public embedding API: run the engine inside another C program.
 *
 *   struct rm_engine *engine;
 *   char err[512];
 *   if (rm_engine_create_json("{\"listen\": \"127.0.0.1:0\"}", &engine, err, sizeof err) ||
 *       rm_engine_start(engine, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(1); }
 *   printf("serving on port %u\n", rm_engine_port(engine));
 *   ...
 *   rm_engine_stop(engine);      // from any thread or a signal handler
 *   rm_engine_wait(engine);      // drains in-flight requests, joins the reactors
 *   rm_engine_destroy(engine);
 *
 * Functions return 0 or a negative errno; errors a user can cause also fill `err` with a
 * message that says what went wrong and what to do. */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct rm_engine;

const char *rm_version(void);

/* Creates an engine from a JSON config file, or from JSON text ("{}" = every default). */
int rm_engine_create_file(const char *path, struct rm_engine **out, char *err, size_t err_length);
int rm_engine_create_json(const char *json, struct rm_engine **out, char *err, size_t err_length);

/* A tool of kind "c" in the config, implemented by the embedding program. It runs on a
 * reactor thread and must not block: it returns 0 with its result (JSON text, allocated with
 * malloc; the engine frees it) or -1 with an error text allocated the same way. */
typedef int (*rm_tool_function)(void *context, const char *arguments, size_t length,
                                char **result, size_t *result_length);

/* Registers the function of the config's tool `name` (kind "c"), before rm_engine_start.
 * Returns 0, or -ENOENT when the config has no tool of kind "c" with that name. */
int rm_engine_register_tool(struct rm_engine *engine, const char *name, rm_tool_function function,
                            void *context);

/* Opens the listeners and starts one reactor thread per configured core; returns once every
 * reactor is serving. */
int rm_engine_start(struct rm_engine *engine, char *err, size_t err_length);

/* The bound TCP port (useful with "listen": "127.0.0.1:0"). */
uint16_t rm_engine_port(const struct rm_engine *engine);

/* Number of reactor threads. */
uint32_t rm_engine_threads(const struct rm_engine *engine);

/* Begins a graceful stop: stop accepting, finish in-flight requests within
 * limits.drain_timeout_ms. Async-signal-safe and idempotent. */
void rm_engine_stop(struct rm_engine *engine);

/* Waits until the engine has stopped. */
void rm_engine_wait(struct rm_engine *engine);

/* Reopens the log file (after rotation). */
int rm_engine_reopen_log(struct rm_engine *engine);

/* Frees everything; the engine must be stopped (or never started). */
void rm_engine_destroy(struct rm_engine *engine);

#ifdef __cplusplus
}
#endif

#endif
