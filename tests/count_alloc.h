/* tests/count_alloc.h - route dl's allocations through counters, to prove that a steady-state
   step allocates nothing. Include before dl_tensor.h, in place of defining DL_MALLOC yourself. */
#ifndef DL_TEST_COUNT_ALLOC_H
#define DL_TEST_COUNT_ALLOC_H
#include <stdlib.h>

static long test_mallocs; /* DL_MALLOC + DL_REALLOC calls so far, from any thread */
static void test_count_one(void) { __atomic_fetch_add(&test_mallocs, 1, __ATOMIC_RELAXED); } /* gcc, clang */
static void *count_malloc(size_t n) { test_count_one(); return malloc(n); }
static void *count_realloc(void *p, size_t n) { test_count_one(); return realloc(p, n); }
#define DL_MALLOC(n) count_malloc(n)
#define DL_REALLOC(p, n) count_realloc(p, n)
#define DL_FREE(p) free(p)
#endif
