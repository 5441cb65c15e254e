/* The runner behind tests/tsan/criterion/criterion.h: runs every registered test whose suite
 * starts with "crosscore", each between its suite's init and fini. */

#include <criterion/criterion.h>
#include <setjmp.h>
#include <stdlib.h>

#define RUNNER_TESTS_MAX 512
#define RUNNER_SUITES_MAX 128

struct runner_test {
    const char *suite;
    const char *name;
    void (*function)(void);
    struct criterion_shim_test_options options;
};

struct runner_suite {
    const char *name;
    struct criterion_shim_suite_options options;
};

static struct runner_test runner_tests[RUNNER_TESTS_MAX];
static size_t runner_test_count;
static struct runner_suite runner_suites[RUNNER_SUITES_MAX];
static size_t runner_suite_count;
static jmp_buf runner_jump;
static int runner_outcome; /* 0 passed, 1 failed, 2 skipped */

void criterion_shim_register(const char *suite, const char *name, void (*function)(void),
                             struct criterion_shim_test_options options)
{
    if (runner_test_count == RUNNER_TESTS_MAX) {
        fprintf(stderr, "tsan runner: more than %d tests\n", RUNNER_TESTS_MAX);
        abort();
    }
    runner_tests[runner_test_count++] = (struct runner_test){suite, name, function, options};
}

void criterion_shim_register_suite(const char *suite, struct criterion_shim_suite_options options)
{
    if (runner_suite_count == RUNNER_SUITES_MAX) {
        fprintf(stderr, "tsan runner: more than %d suites\n", RUNNER_SUITES_MAX);
        abort();
    }
    runner_suites[runner_suite_count++] = (struct runner_suite){suite, options};
}

void criterion_shim_fail(const char *file, int line, const char *expression)
{
    fprintf(stderr, "[FAIL] %s:%d: %s\n", file, line, expression);
    runner_outcome = 1;
    longjmp(runner_jump, 1);
}

void criterion_shim_skip(void)
{
    runner_outcome = 2;
    longjmp(runner_jump, 1);
}

static const struct runner_suite *runner_suite_of(const char *name)
{
    for (size_t i = 0; i < runner_suite_count; i++) {
        if (strcmp(runner_suites[i].name, name) == 0) {
            return &runner_suites[i];
        }
    }
    return NULL;
}

static int runner_run(const struct runner_test *test)
{
    const struct runner_suite *volatile suite = runner_suite_of(test->suite);
    runner_outcome = 0;
    if (setjmp(runner_jump) == 0) {
        if (suite != NULL && suite->options.init != NULL) {
            suite->options.init();
        }
        if (test->options.init != NULL) {
            test->options.init();
        }
        test->function();
    }
    if (test->options.fini != NULL) {
        test->options.fini();
    }
    if (suite != NULL && suite->options.fini != NULL) {
        suite->options.fini();
    }
    return runner_outcome;
}

int main(void)
{
    int counts[3] = {0, 0, 0};
    for (size_t i = 0; i < runner_test_count; i++) {
        const struct runner_test *test = &runner_tests[i];
        if (strncmp(test->suite, "crosscore", 9) != 0) {
            continue;
        }
        int outcome = runner_run(test);
        counts[outcome]++;
        fprintf(stderr, "[%s] %s::%s\n", outcome == 0 ? "PASS" : outcome == 1 ? "FAIL" : "SKIP",
                test->suite, test->name);
    }
    printf("tsan: %d passed, %d failed, %d skipped\n", counts[0], counts[1], counts[2]);
    return counts[1] != 0 || counts[0] == 0;
}
