/* tests/count_alloc.h - route dl's allocations through counters: test_mallocs proves that a
   steady-state step allocates nothing, test_live (blocks allocated and not yet freed) that a
   failure path frees everything it allocated. Include before dl_tensor.h, in place of defining
   DL_MALLOC yourself. */
#ifndef DL_TEST_COUNT_ALLOC_H
#define DL_TEST_COUNT_ALLOC_H
#include <stdlib.h>

static long test_mallocs; /* DL_MALLOC + DL_REALLOC calls so far, from any thread */
static long test_live;    /* DL_MALLOC'ed blocks not yet freed, from any thread */
static void test_count_add(long *c, long d) { __atomic_fetch_add(c, d, __ATOMIC_RELAXED); } /* gcc, clang */
static void *count_malloc(size_t n) {
    void *p = malloc(n);
    test_count_add(&test_mallocs, 1);
    if (p) test_count_add(&test_live, 1);
    return p;
}
static void *count_realloc(void *p, size_t n) {
    void *q = realloc(p, n);
    test_count_add(&test_mallocs, 1);
    if (q && !p) test_count_add(&test_live, 1);
    return q;
}
static void count_free(void *p) {
    if (p) test_count_add(&test_live, -1);
    free(p);
}
#define DL_MALLOC(n) count_malloc(n)
#define DL_REALLOC(p, n) count_realloc(p, n)
#define DL_FREE(p) count_free(p)
#endif
