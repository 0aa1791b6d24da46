/* Minimal unit-test harness: each TEST is a case; CHECK records a failure
 * with file:line and keeps going; main() prints "N passed, N failed". */
#ifndef POLYMORPH_TEST_H
#define POLYMORPH_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int pm_test_case_failed;
static int pm_test_passed, pm_test_failed;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            pm_test_case_failed = 1;                                                 \
        }                                                                            \
    } while (0)

#define CHECK_MSG(cond, ...)                                                   \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            pm_test_case_failed = 1;                                           \
        }                                                                      \
    } while (0)

#define TEST(name) static void name(void)

#define RUN(name)                                                        \
    do {                                                                 \
        pm_test_case_failed = 0;                                         \
        name();                                                          \
        if (pm_test_case_failed) {                                       \
            pm_test_failed++;                                            \
            fprintf(stderr, "FAIL %s\n", #name);                         \
        } else {                                                         \
            pm_test_passed++;                                            \
        }                                                                \
    } while (0)

#define TEST_SUMMARY()                                                            \
    (printf("%d passed, %d failed\n", pm_test_passed, pm_test_failed), pm_test_failed ? 1 : 0)

#endif
