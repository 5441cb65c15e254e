/* Feeds arbitrary bytes to invocation_journal_load, the parser of invocation records read
 * back from the store at recovery. A record is untrusted (a torn or foreign write that still
 * passed its CRC, an older version): it must load into a consistent invocation or be refused,
 * never crash. */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/invocation_internal.h"
#include "core/metrics.h"
#include "core/rm_assert.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct invocation_runtime *fuzz_runtime;

static const char fuzz_config_text[] =
    "{\"endpoints\": {\"e\": {\"url\": \"http://127.0.0.1:9/v1\", \"keys\": [{\"name\": \"k\"}]}},"
    " \"agents\": {\"assistant\": {\"endpoint\": \"e\", \"model\": \"m\"},"
    "              \"other\": {\"endpoint\": \"e\", \"model\": \"m\"}}}";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    static struct config config;
    char err[CONFIG_ERROR_MAX];
    RM_ASSERT(config_parse(&config, "fuzz.json", fuzz_config_text, strlen(fuzz_config_text),
                           err, sizeof(err)) == 0);
    struct metrics_registry *metrics = metrics_create(1);
    RM_ASSERT(metrics != NULL);
    RM_ASSERT(invocation_runtime_create(&config, 1, metrics, NULL, NULL, &fuzz_runtime, err,
                                        sizeof(err)) == 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char session[INVOCATION_SESSION_MAX + 1];
    struct invocation *invocation =
        invocation_journal_load(fuzz_runtime, "0123456789abcdef", data, size, session);
    if (invocation == NULL) {
        return 0;
    }
    RM_ASSERT(invocation->agent < fuzz_runtime->config->agent_count);
    RM_ASSERT(invocation->status <= INVOCATION_CANCELLED);
    RM_ASSERT(invocation->input != NULL);
    RM_ASSERT(json_is_array(invocation->messages));
    RM_ASSERT(json_is_array(invocation->steps));
    RM_ASSERT(strlen(session) <= INVOCATION_SESSION_MAX);
    RM_ASSERT(strcmp(invocation->id, "0123456789abcdef") == 0);
    /* What was loaded can be journaled again. */
    size_t length = 0;
    char *text = invocation_journal_text(fuzz_runtime, invocation, &length);
    RM_ASSERT(text == NULL || strlen(text) == length);
    free(text);
    invocation_free(invocation);
    return 0;
}
