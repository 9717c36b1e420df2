/* tests/test.h - the tiny test framework of dl's test programs.

   A test is a function `static void test_x(void)` containing CHECKs; RUN(test_x) runs it and
   counts it as passed when none of its checks failed. main() ends with `return test_summary();`
   which prints "N passed, N failed[, N skipped]" and returns nonzero on failure. SKIP("why")
   inside a test marks it skipped (for hardware that is absent).

     static void test_add(void) { CHECK(1 + 1 == 2, "arithmetic"); }
     int main(void) { RUN(test_add); return test_summary(); }
*/
#ifndef DL_TEST_H
#define DL_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int test__passed, test__failed, test__skipped;
static int test__checks_failed, test__skip_now;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            test__checks_failed++;                                         \
            printf("    FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            printf(__VA_ARGS__);                                           \
            printf("\n");                                                  \
        }                                                                  \
    } while (0)

/* |a - b| <= tol * (1 + |b|): absolute near zero, relative for large values. */
#define CHECK_NEAR(a, b, tol)                                                               \
    do {                                                                                    \
        double test__a = (double)(a), test__b = (double)(b);                                \
        if (!(fabs(test__a - test__b) <= (tol) * (1.0 + fabs(test__b)))) {                  \
            test__checks_failed++;                                                          \
            printf("    FAIL %s:%d: %s = %.9g, expected %s = %.9g\n", __FILE__, __LINE__, #a, \
                   test__a, #b, test__b);                                                   \
        }                                                                                   \
    } while (0)

/* Elementwise CHECK_NEAR over n floats; reports the first mismatch only. */
#define CHECK_ALL_NEAR(got, want, n, tol)                                                         \
    do {                                                                                          \
        size_t test__i, test__n = (size_t)(n);                                                    \
        for (test__i = 0; test__i < test__n; test__i++) {                                         \
            double test__a = (double)(got)[test__i], test__b = (double)(want)[test__i];           \
            if (!(fabs(test__a - test__b) <= (tol) * (1.0 + fabs(test__b)))) {                    \
                test__checks_failed++;                                                            \
                printf("    FAIL %s:%d: %s[%zu] = %.9g, expected %.9g\n", __FILE__, __LINE__, #got, \
                       test__i, test__a, test__b);                                                \
                break;                                                                            \
            }                                                                                     \
        }                                                                                         \
    } while (0)

#define SKIP(...)                      \
    do {                               \
        printf("    skip: ");          \
        printf(__VA_ARGS__);           \
        printf("\n");                  \
        test__skip_now = 1;            \
        return;                        \
    } while (0)

#define RUN(fn)                                                   \
    do {                                                          \
        test__checks_failed = 0;                                  \
        test__skip_now = 0;                                       \
        fn();                                                     \
        if (test__skip_now) {                                     \
            test__skipped++;                                      \
            printf("skip %s\n", #fn);                             \
        } else if (test__checks_failed) {                         \
            test__failed++;                                       \
            printf("FAIL %s\n", #fn);                             \
        } else {                                                  \
            test__passed++;                                       \
            printf("ok   %s\n", #fn);                             \
        }                                                         \
        fflush(stdout);                                           \
    } while (0)

static int test_summary(void) {
    if (test__skipped) printf("%d passed, %d failed, %d skipped\n", test__passed, test__failed, test__skipped);
    else printf("%d passed, %d failed\n", test__passed, test__failed);
    return test__failed != 0;
}

#endif
