/* Minimal unit-test harness: each TEST is a case; CHECK records a failure
 * with file:line and keeps going; main() prints "N passed, N failed". */
#ifndef POLYMORPH_TEST_H
#define POLYMORPH_TEST_H

#include <stdint.h>
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

/* xorshift64: the tests' one random source. Each test keeps its own state,
 * so its seed (and with it every value it draws) stays its own. */
static inline uint32_t pm_test_xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (uint32_t)(*s >> 16);
}

#endif
