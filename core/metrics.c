#include "core/metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rm_assert.h"

#define METRICS_PREFIX "ringmaster_"
#define METRICS_CACHE_LINE 64
#define METRICS_HISTOGRAM_SLOTS (METRICS_BUCKETS + 2)
#define METRICS_SUM_SLOT METRICS_BUCKETS
#define METRICS_COUNT_SLOT (METRICS_BUCKETS + 1)
#define METRICS_INF_BUCKET (METRICS_BUCKETS - 1)
#define METRICS_RENDER_INITIAL 16384

_Static_assert(METRICS_BUCKETS == METRICS_DECADES * 9 + 1, "1..9 per decade, then +Inf");
_Static_assert(METRICS_DECADES <= 10, "bucket bounds in units of first_bucket fit 64 bits");
_Static_assert((METRICS_SLOTS_MAX * sizeof(uint64_t)) % METRICS_CACHE_LINE == 0,
               "each core's slot array starts on its own cache line");
_Static_assert(METRICS_SLOTS_MAX >= METRICS_HISTOGRAM_SLOTS, "a histogram fits the slots");
_Static_assert(METRICS_SERIES_MAX <= INT32_MAX && METRICS_FAMILIES_MAX <= INT32_MAX, "int ids");

struct metrics_family_info {
    enum metrics_type type;
    uint64_t first_bucket;
    double scale;
    char name[METRICS_NAME_MAX];
    char help[METRICS_HELP_MAX];
};

struct metrics_series_info {
    uint32_t family;
    uint32_t slot;
    char labels[METRICS_LABELS_MAX];
};

/* families[] and series[] entries are written once, under the mutex, before their count is
 * published with a release store; readers load the count with acquire and read only entries
 * below it, which never change again. Slots belong to one writing core each. */
struct metrics_registry {
    uint32_t writers;
    uint64_t *slots;
    void *slots_allocation;
    pthread_mutex_t mutex;
    uint32_t slots_used;
    uint32_t family_count;
    uint32_t series_count;
    struct metrics_family_info families[METRICS_FAMILIES_MAX];
    struct metrics_series_info series[METRICS_SERIES_MAX];
};

/* 10^k for k in [0, METRICS_DECADES). */
static const uint64_t metrics_powers_of_ten[] = {
    1ull,       10ull,       100ull,       1000ull,       10000ull,
    100000ull,  1000000ull,  10000000ull,  100000000ull,  1000000000ull,
};
_Static_assert(RM_ARRAY_LENGTH(metrics_powers_of_ten) >= METRICS_DECADES, "a power per decade");

struct metrics_registry *metrics_create(uint32_t cores)
{
    RM_ASSERT(cores <= METRICS_CORES_MAX);
    struct metrics_registry *registry = rm_calloc(1, sizeof(*registry));
    if (registry == NULL) {
        return NULL;
    }
    registry->writers = cores + 1;
    size_t bytes = (size_t)registry->writers * METRICS_SLOTS_MAX * sizeof(uint64_t);
    registry->slots_allocation = rm_calloc(1, bytes + METRICS_CACHE_LINE);
    if (registry->slots_allocation == NULL) {
        rm_free(registry);
        return NULL;
    }
    uintptr_t base = (uintptr_t)registry->slots_allocation;
    base = (base + METRICS_CACHE_LINE - 1) & ~(uintptr_t)(METRICS_CACHE_LINE - 1);
    registry->slots = (uint64_t *)base;
    RM_ASSERT(base % METRICS_CACHE_LINE == 0);
    RM_ASSERT(pthread_mutex_init(&registry->mutex, NULL) == 0);
    return registry;
}

void metrics_destroy(struct metrics_registry *registry)
{
    if (registry == NULL) {
        return;
    }
    RM_ASSERT(registry->slots_allocation != NULL);
    RM_ASSERT(pthread_mutex_destroy(&registry->mutex) == 0);
    rm_free(registry->slots_allocation);
    rm_free(registry);
}

/* ---- registration ---- */

/* Prometheus metric names: [a-zA-Z_:][a-zA-Z0-9_:]*, short enough for every suffix. */
static bool metrics_name_valid(const char *name)
{
    RM_ASSERT(name != NULL);
    size_t length = strlen(name);
    RM_ASSERT(METRICS_NAME_MAX > 0);
    if (length == 0 || length >= METRICS_NAME_MAX) {
        return false;
    }
    for (size_t i = 0; i < length; i++) {
        char c = name[i];
        bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
        if (!letter && (i == 0 || c < '0' || c > '9')) {
            return false;
        }
    }
    return true;
}

static bool metrics_ends_with(const char *text, const char *suffix)
{
    RM_ASSERT(text != NULL);
    RM_ASSERT(suffix != NULL);
    size_t length = strlen(text);
    size_t suffix_length = strlen(suffix);
    return length >= suffix_length && strcmp(text + length - suffix_length, suffix) == 0;
}

static int metrics_family_register(struct metrics_registry *registry, const char *name,
                                   const char *help, const struct metrics_family_info *shape)
{
    RM_ASSERT(metrics_name_valid(name));
    RM_ASSERT(help != NULL && strlen(help) < METRICS_HELP_MAX);
    /* promtool requires the _total suffix on counters and only there. */
    RM_ASSERT(metrics_ends_with(name, "_total") == (shape->type == METRICS_COUNTER));
    RM_ASSERT(pthread_mutex_lock(&registry->mutex) == 0);
    uint32_t count = registry->family_count;
    int result = -1;
    for (uint32_t i = 0; i < count && result < 0; i++) {
        const struct metrics_family_info *family = &registry->families[i];
        if (strcmp(family->name, name) == 0) {
            /* Registering a name again must describe the same family. */
            RM_ASSERT(family->type == shape->type);
            RM_ASSERT(family->first_bucket == shape->first_bucket);
            result = (int)i;
        }
    }
    if (result < 0 && count < METRICS_FAMILIES_MAX) {
        struct metrics_family_info *family = &registry->families[count];
        family->type = shape->type;
        family->first_bucket = shape->first_bucket;
        family->scale = shape->scale;
        snprintf(family->name, sizeof(family->name), "%s", name);
        snprintf(family->help, sizeof(family->help), "%s", help);
        __atomic_store_n(&registry->family_count, count + 1, __ATOMIC_RELEASE);
        result = (int)count;
    }
    RM_ASSERT(pthread_mutex_unlock(&registry->mutex) == 0);
    return result;
}

int metrics_family(struct metrics_registry *registry, const char *name, const char *help,
                   enum metrics_type type)
{
    RM_ASSERT(registry != NULL);
    RM_ASSERT(type == METRICS_COUNTER || type == METRICS_GAUGE);
    struct metrics_family_info shape = {.type = type, .first_bucket = 0, .scale = 1.0};
    return metrics_family_register(registry, name, help, &shape);
}

int metrics_histogram_family(struct metrics_registry *registry, const char *name,
                             const char *help, uint64_t first_bucket, double scale)
{
    RM_ASSERT(registry != NULL);
    RM_ASSERT(first_bucket >= 1 && first_bucket <= UINT64_MAX / 10000000000ull);
    RM_ASSERT(scale > 0.0);
    struct metrics_family_info shape = {
        .type = METRICS_HISTOGRAM,
        .first_bucket = first_bucket,
        .scale = scale,
    };
    return metrics_family_register(registry, name, help, &shape);
}

int metrics_series(struct metrics_registry *registry, int family, const char *labels)
{
    RM_ASSERT(registry != NULL && labels != NULL);
    RM_ASSERT(family >= 0 &&
              (uint32_t)family < __atomic_load_n(&registry->family_count, __ATOMIC_ACQUIRE));
    size_t labels_length = strlen(labels);
    if (labels_length >= METRICS_LABELS_MAX) {
        return -1;
    }
    uint32_t needed =
        registry->families[family].type == METRICS_HISTOGRAM ? METRICS_HISTOGRAM_SLOTS : 1;
    RM_ASSERT(pthread_mutex_lock(&registry->mutex) == 0);
    uint32_t count = registry->series_count;
    int result = -1;
    for (uint32_t i = 0; i < count && result < 0; i++) {
        const struct metrics_series_info *series = &registry->series[i];
        if (series->family == (uint32_t)family && strcmp(series->labels, labels) == 0) {
            result = (int)i;
        }
    }
    if (result < 0 && count < METRICS_SERIES_MAX &&
        registry->slots_used + needed <= METRICS_SLOTS_MAX) {
        struct metrics_series_info *series = &registry->series[count];
        series->family = (uint32_t)family;
        series->slot = registry->slots_used;
        memcpy(series->labels, labels, labels_length + 1);
        registry->slots_used += needed;
        __atomic_store_n(&registry->series_count, count + 1, __ATOMIC_RELEASE);
        result = (int)count;
    }
    RM_ASSERT(pthread_mutex_unlock(&registry->mutex) == 0);
    return result;
}

/* ---- writing ---- */

/* The acquire load pairs with registration's release store, so a core that was handed a
 * series id by any means sees the series' fields. */
static const struct metrics_series_info *metrics_series_of(struct metrics_registry *registry,
                                                           uint32_t core, int series)
{
    RM_ASSERT(core < registry->writers);
    RM_ASSERT(series >= 0 &&
              (uint32_t)series < __atomic_load_n(&registry->series_count, __ATOMIC_ACQUIRE));
    return &registry->series[series];
}

static uint64_t *metrics_slot(struct metrics_registry *registry, uint32_t core, uint32_t slot)
{
    RM_ASSERT(core < registry->writers);
    RM_ASSERT(slot < METRICS_SLOTS_MAX);
    return &registry->slots[(size_t)core * METRICS_SLOTS_MAX + slot];
}

/* Only the owning core writes a slot, so load-then-store loses nothing; both are atomic so
 * that a concurrent scrape reads whole values. */
static void metrics_slot_add(uint64_t *slot, uint64_t delta)
{
    RM_ASSERT(slot != NULL);
    __atomic_store_n(slot, __atomic_load_n(slot, __ATOMIC_RELAXED) + delta, __ATOMIC_RELAXED);
}

void metrics_add(struct metrics_registry *registry, uint32_t core, int series, int64_t delta)
{
    const struct metrics_series_info *info = metrics_series_of(registry, core, series);
    RM_ASSERT(registry->families[info->family].type != METRICS_HISTOGRAM);
    metrics_slot_add(metrics_slot(registry, core, info->slot), (uint64_t)delta);
}

void metrics_set(struct metrics_registry *registry, uint32_t core, int series, int64_t value)
{
    const struct metrics_series_info *info = metrics_series_of(registry, core, series);
    RM_ASSERT(registry->families[info->family].type != METRICS_HISTOGRAM);
    __atomic_store_n(metrics_slot(registry, core, info->slot), (uint64_t)value,
                     __ATOMIC_RELAXED);
}

/* The first bucket whose bound m * 10^k * first_bucket is >= value: the first decade whose
 * top bound (9 * 10^k * first_bucket) is, then the first multiple m of its unit. Comparisons
 * and multiplications only, since this runs once per observation; metrics_histogram_family's
 * bound on first_bucket keeps every product within 64 bits. */
static uint32_t metrics_bucket_of(uint64_t value, uint64_t first_bucket)
{
    RM_ASSERT(first_bucket >= 1);
    uint64_t unit = first_bucket;
    for (uint32_t decade = 0; decade < METRICS_DECADES; decade++, unit *= 10) {
        if (value <= 9 * unit) {
            uint32_t multiple = 1;
            while (value > multiple * unit) {
                multiple++;
            }
            RM_ASSERT(multiple <= 9);
            return decade * 9 + multiple - 1;
        }
    }
    return METRICS_INF_BUCKET;
}

void metrics_observe(struct metrics_registry *registry, uint32_t core, int series,
                     uint64_t value)
{
    const struct metrics_series_info *info = metrics_series_of(registry, core, series);
    const struct metrics_family_info *family = &registry->families[info->family];
    RM_ASSERT(family->type == METRICS_HISTOGRAM);
    uint32_t bucket = metrics_bucket_of(value, family->first_bucket);
    RM_ASSERT(bucket < METRICS_BUCKETS);
    metrics_slot_add(metrics_slot(registry, core, info->slot + bucket), 1);
    metrics_slot_add(metrics_slot(registry, core, info->slot + METRICS_SUM_SLOT), value);
    metrics_slot_add(metrics_slot(registry, core, info->slot + METRICS_COUNT_SLOT), 1);
}

/* ---- reading ---- */

static uint64_t metrics_slot_sum(struct metrics_registry *registry, uint32_t slot)
{
    RM_ASSERT(slot < METRICS_SLOTS_MAX);
    RM_ASSERT(registry->writers >= 1);
    uint64_t sum = 0;
    for (uint32_t core = 0; core < registry->writers; core++) {
        sum += __atomic_load_n(metrics_slot(registry, core, slot), __ATOMIC_RELAXED);
    }
    return sum;
}

int64_t metrics_value(struct metrics_registry *registry, int series)
{
    const struct metrics_series_info *info = metrics_series_of(registry, 0, series);
    RM_ASSERT(registry->families[info->family].type != METRICS_HISTOGRAM);
    return (int64_t)metrics_slot_sum(registry, info->slot);
}

uint64_t metrics_histogram_count(struct metrics_registry *registry, int series)
{
    const struct metrics_series_info *info = metrics_series_of(registry, 0, series);
    RM_ASSERT(registry->families[info->family].type == METRICS_HISTOGRAM);
    return metrics_slot_sum(registry, info->slot + METRICS_COUNT_SLOT);
}

size_t metrics_label_escape(char *dst, size_t dst_length, const char *value, size_t length)
{
    RM_ASSERT(dst != NULL && dst_length > 0);
    RM_ASSERT(value != NULL || length == 0);
    size_t written = 0;
    for (size_t i = 0; i < length; i++) {
        char c = value[i];
        bool escaped = c == '\\' || c == '"' || c == '\n';
        size_t needed = escaped ? 2 : 1;
        if (written + needed >= dst_length) {
            break;
        }
        if (escaped) {
            dst[written++] = '\\';
            c = c == '\n' ? 'n' : c;
        }
        dst[written++] = c;
    }
    dst[written] = '\0';
    return written;
}

/* ---- rendering ---- */

struct metrics_buffer {
    char *data;
    size_t length;
    size_t capacity;
    bool failed;
};

__attribute__((format(printf, 2, 3))) static void metrics_print(struct metrics_buffer *buffer,
                                                               const char *format, ...)
{
    RM_ASSERT(buffer != NULL && format != NULL);
    RM_ASSERT(buffer->failed || buffer->length < buffer->capacity);
    for (int attempt = 0; attempt < 2 && !buffer->failed; attempt++) {
        va_list arguments;
        va_start(arguments, format);
        size_t room = buffer->capacity - buffer->length;
        int written = vsnprintf(buffer->data + buffer->length, room, format, arguments);
        va_end(arguments);
        RM_ASSERT(written >= 0);
        if ((size_t)written < room) {
            buffer->length += (size_t)written;
            return;
        }
        size_t capacity = buffer->capacity * 2;
        capacity = capacity > buffer->length + (size_t)written + 1
                       ? capacity
                       : buffer->length + (size_t)written + 1;
        char *grown = rm_realloc(buffer->data, capacity);
        buffer->failed = grown == NULL;
        buffer->data = grown != NULL ? grown : buffer->data;
        buffer->capacity = grown != NULL ? capacity : buffer->capacity;
    }
}

/* HELP text escapes backslash and newline (the text format's rule for it). */
static void metrics_render_header(struct metrics_buffer *buffer,
                                  const struct metrics_family_info *family)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    RM_ASSERT(family->type <= METRICS_HISTOGRAM);
    RM_ASSERT(strlen(family->help) < METRICS_HELP_MAX);
    char help[2 * METRICS_HELP_MAX];
    size_t used = 0;
    for (const char *c = family->help; *c != '\0'; c++) {
        if (*c == '\\' || *c == '\n') {
            help[used++] = '\\';
        }
        help[used++] = *c == '\n' ? 'n' : *c;
    }
    help[used] = '\0';
    metrics_print(buffer, "# HELP " METRICS_PREFIX "%s %s\n# TYPE " METRICS_PREFIX "%s %s\n",
                  family->name, help, family->name, type_names[family->type]);
}

static void metrics_render_histogram(struct metrics_buffer *buffer,
                                     struct metrics_registry *registry,
                                     const struct metrics_family_info *family,
                                     const struct metrics_series_info *series)
{
    RM_ASSERT(family->type == METRICS_HISTOGRAM);
    RM_ASSERT(series->slot + METRICS_HISTOGRAM_SLOTS <= METRICS_SLOTS_MAX);
    const char *comma = series->labels[0] != '\0' ? "," : "";
    /* _count is the +Inf bucket's cumulative value rather than the count slot: writers update
     * the slots one by one, and the format requires the two to be equal. */
    uint64_t cumulative = 0;
    for (uint32_t bucket = 0; bucket < METRICS_BUCKETS; bucket++) {
        cumulative += metrics_slot_sum(registry, series->slot + bucket);
        if (bucket == METRICS_INF_BUCKET) {
            metrics_print(buffer, METRICS_PREFIX "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n",
                          family->name, series->labels, comma, cumulative);
            break;
        }
        uint32_t multiplier = bucket % 9 + 1;
        if (multiplier != 1 && multiplier != 2 && multiplier != 5) {
            continue; /* exposed at 1-2-5 steps to keep scrapes small; kept finer inside */
        }
        uint64_t bound = (uint64_t)multiplier * metrics_powers_of_ten[bucket / 9];
        double le = (double)bound * (double)family->first_bucket * family->scale;
        metrics_print(buffer, METRICS_PREFIX "%s_bucket{%s%sle=\"%.9g\"} %" PRIu64 "\n",
                      family->name, series->labels, comma, le, cumulative);
    }
    uint64_t sum = metrics_slot_sum(registry, series->slot + METRICS_SUM_SLOT);
    const char *open = series->labels[0] != '\0' ? "{" : "";
    const char *close = series->labels[0] != '\0' ? "}" : "";
    if (family->scale == 1.0) {
        metrics_print(buffer, METRICS_PREFIX "%s_sum%s%s%s %" PRIu64 "\n", family->name, open,
                      series->labels, close, sum);
    } else {
        metrics_print(buffer, METRICS_PREFIX "%s_sum%s%s%s %.15g\n", family->name, open,
                      series->labels, close, (double)sum * family->scale);
    }
    metrics_print(buffer, METRICS_PREFIX "%s_count%s%s%s %" PRIu64 "\n", family->name, open,
                  series->labels, close, cumulative);
}

static void metrics_render_series(struct metrics_buffer *buffer,
                                  struct metrics_registry *registry,
                                  const struct metrics_family_info *family,
                                  const struct metrics_series_info *series)
{
    RM_ASSERT(family != NULL);
    RM_ASSERT(series != NULL);
    if (family->type == METRICS_HISTOGRAM) {
        metrics_render_histogram(buffer, registry, family, series);
        return;
    }
    const char *open = series->labels[0] != '\0' ? "{" : "";
    const char *close = series->labels[0] != '\0' ? "}" : "";
    uint64_t sum = metrics_slot_sum(registry, series->slot);
    if (family->type == METRICS_COUNTER) {
        metrics_print(buffer, METRICS_PREFIX "%s%s%s%s %" PRIu64 "\n", family->name, open,
                      series->labels, close, sum);
    } else {
        metrics_print(buffer, METRICS_PREFIX "%s%s%s%s %" PRId64 "\n", family->name, open,
                      series->labels, close, (int64_t)sum);
    }
}

/* Groups series by family with a counting sort: order[] lists series ids family by family,
 * first[f] .. first[f + 1] being family f's range. */
static void metrics_group(const struct metrics_registry *registry, uint32_t family_count,
                          uint32_t series_count, uint32_t *first, uint32_t *order)
{
    RM_ASSERT(family_count <= METRICS_FAMILIES_MAX);
    RM_ASSERT(series_count <= METRICS_SERIES_MAX);
    memset(first, 0, (family_count + 1) * sizeof(*first));
    for (uint32_t i = 0; i < series_count; i++) {
        RM_ASSERT(registry->series[i].family < family_count);
        first[registry->series[i].family + 1]++;
    }
    for (uint32_t f = 0; f < family_count; f++) {
        first[f + 1] += first[f];
    }
    uint32_t next[METRICS_FAMILIES_MAX];
    memcpy(next, first, family_count * sizeof(*first));
    for (uint32_t i = 0; i < series_count; i++) {
        order[next[registry->series[i].family]++] = i;
    }
}

size_t metrics_render(struct metrics_registry *registry, char **out)
{
    RM_ASSERT(registry != NULL && out != NULL);
    /* Series first: every published series' family was published before it. */
    uint32_t series_count = __atomic_load_n(&registry->series_count, __ATOMIC_ACQUIRE);
    uint32_t family_count = __atomic_load_n(&registry->family_count, __ATOMIC_ACQUIRE);
    *out = NULL;
    uint32_t first[METRICS_FAMILIES_MAX + 1];
    uint32_t *order = rm_malloc((series_count + 1) * sizeof(*order));
    struct metrics_buffer buffer = {
        .data = rm_malloc(METRICS_RENDER_INITIAL),
        .length = 0,
        .capacity = METRICS_RENDER_INITIAL,
        .failed = false,
    };
    if (order == NULL || buffer.data == NULL) {
        rm_free(order);
        rm_free(buffer.data);
        return 0;
    }
    buffer.data[0] = '\0';
    metrics_group(registry, family_count, series_count, first, order);
    for (uint32_t f = 0; f < family_count && !buffer.failed; f++) {
        if (first[f] == first[f + 1]) {
            continue;
        }
        const struct metrics_family_info *family = &registry->families[f];
        metrics_render_header(&buffer, family);
        for (uint32_t i = first[f]; i < first[f + 1]; i++) {
            metrics_render_series(&buffer, registry, family, &registry->series[order[i]]);
        }
    }
    rm_free(order);
    if (buffer.failed) {
        rm_free(buffer.data);
        return 0;
    }
    *out = buffer.data;
    return buffer.length;
}
