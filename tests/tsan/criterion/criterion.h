#ifndef RM_TSAN_CRITERION_H
#define RM_TSAN_CRITERION_H

/* A minimal in-process stand-in for the part of Criterion our tests use, for the
 * ThreadSanitizer build only: Criterion 2.4 cannot start under TSan (its inheritable arena
 * is mapped at fixed addresses TSan reserves; Snaipe/Criterion#274). The TSan build puts
 * tests/tsan first on the include path, so the test files compile unchanged. Tests run one
 * after the other in this process; a failed assertion ends that test (longjmp) and the run
 * closes with the plain "N passed, N failed" line. */

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct criterion_shim_suite_options {
    void (*init)(void);
    void (*fini)(void);
    double timeout;
};

struct criterion_shim_test_options {
    void (*init)(void);
    void (*fini)(void);
    double timeout;
};

void criterion_shim_register(const char *suite, const char *name, void (*function)(void),
                             struct criterion_shim_test_options options);
void criterion_shim_register_suite(const char *suite,
                                   struct criterion_shim_suite_options options);
void criterion_shim_fail(const char *file, int line, const char *expression);
void criterion_shim_skip(void);

#define Test(suite, name, ...)                                                                 \
    static void suite##_##name##_impl(void);                                                   \
    __attribute__((constructor)) static void suite##_##name##_register(void)                   \
    {                                                                                          \
        criterion_shim_register(#suite, #name, suite##_##name##_impl,                          \
                                (struct criterion_shim_test_options){__VA_ARGS__});            \
    }                                                                                          \
    static void suite##_##name##_impl(void)

#define TestSuite(suite, ...)                                                                  \
    __attribute__((constructor)) static void suite##_suite_register(void)                      \
    {                                                                                          \
        criterion_shim_register_suite(#suite,                                                  \
                                      (struct criterion_shim_suite_options){__VA_ARGS__});     \
    }

#define CRITERION_SHIM_CHECK(condition, text)                                                  \
    do {                                                                                       \
        if (!(condition)) {                                                                    \
            criterion_shim_fail(__FILE__, __LINE__, text);                                     \
        }                                                                                      \
    } while (0)

#define cr_assert(condition, ...) CRITERION_SHIM_CHECK(condition, #condition)
#define cr_assert_not(condition, ...) CRITERION_SHIM_CHECK(!(condition), "!(" #condition ")")
#define cr_assert_eq(a, b, ...) CRITERION_SHIM_CHECK((a) == (b), #a " == " #b)
#define cr_assert_neq(a, b, ...) CRITERION_SHIM_CHECK((a) != (b), #a " != " #b)
#define cr_assert_gt(a, b, ...) CRITERION_SHIM_CHECK((a) > (b), #a " > " #b)
#define cr_assert_geq(a, b, ...) CRITERION_SHIM_CHECK((a) >= (b), #a " >= " #b)
#define cr_assert_lt(a, b, ...) CRITERION_SHIM_CHECK((a) < (b), #a " < " #b)
#define cr_assert_leq(a, b, ...) CRITERION_SHIM_CHECK((a) <= (b), #a " <= " #b)
#define cr_assert_null(p, ...) CRITERION_SHIM_CHECK((p) == NULL, #p " == NULL")
#define cr_assert_not_null(p, ...) CRITERION_SHIM_CHECK((p) != NULL, #p " != NULL")
#define cr_assert_str_eq(a, b, ...) CRITERION_SHIM_CHECK(strcmp((a), (b)) == 0, #a " eq " #b)
#define cr_assert_str_neq(a, b, ...) CRITERION_SHIM_CHECK(strcmp((a), (b)) != 0, #a " ne " #b)
#define cr_assert_fail(...) criterion_shim_fail(__FILE__, __LINE__, "cr_assert_fail")
#define cr_skip_test(...) criterion_shim_skip()
#define cr_log_info(...) (fprintf(stderr, __VA_ARGS__), fputc('\n', stderr))

#endif
