/* tests/count_alloc.h - route dl's allocations through counters: test_mallocs proves that a
   steady-state step allocates nothing, test_live (blocks allocated and not yet freed) that a
   failure path frees everything it allocated, test_max_alloc (the largest request) that a
   loader asked for no more than its input justifies. Include before dl_tensor.h, in place of defining
   DL_MALLOC yourself.
   A test built alone (cc tests/test_x.c) has the counters to itself. tests/run.sh builds it with
   -DDL_IMPLEMENTATION_ELSEWHERE and links tests/dl_impl.c, which holds the implementation, counts
   its allocations with this file and defines the counters (DL_TEST_COUNT_ALLOC_HERE); here they
   are then declared extern, so the test reads the same numbers either way. */
#ifndef DL_TEST_COUNT_ALLOC_H
#define DL_TEST_COUNT_ALLOC_H
#include <stdlib.h>

#if defined(DL_TEST_COUNT_ALLOC_HERE)
long test_mallocs, test_live, test_max_alloc;  /* tests/dl_impl.c: the program's one set */
#elif defined(DL_IMPLEMENTATION_ELSEWHERE)
extern long test_mallocs, test_live, test_max_alloc;   /* in tests/dl_impl.c */
#else
static long test_mallocs;   /* DL_MALLOC + DL_REALLOC calls so far, from any thread */
static long test_live;      /* DL_MALLOC'ed blocks not yet freed, from any thread */
static long test_max_alloc; /* the largest single request so far (a test may reset it) */
#endif
/* gcc, clang; unused: a test linked to tests/dl_impl.c may call none of them itself */
#define DL_TEST__UNUSED __attribute__((unused))
static DL_TEST__UNUSED void test_count_add(long *c, long d) { __atomic_fetch_add(c, d, __ATOMIC_RELAXED); }
static DL_TEST__UNUSED void test_count_max(size_t n) {
    long seen = __atomic_load_n(&test_max_alloc, __ATOMIC_RELAXED);
    long want = n > (size_t)0x7fffffffffffffffL ? 0x7fffffffffffffffL : (long)n;
    while (want > seen && !__atomic_compare_exchange_n(&test_max_alloc, &seen, want, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {}
}
static DL_TEST__UNUSED void *count_malloc(size_t n) {
    void *p = malloc(n);
    test_count_max(n);
    test_count_add(&test_mallocs, 1);
    if (p) test_count_add(&test_live, 1);
    return p;
}
static DL_TEST__UNUSED void *count_realloc(void *p, size_t n) {
    void *q = realloc(p, n);
    test_count_max(n);
    test_count_add(&test_mallocs, 1);
    if (q && !p) test_count_add(&test_live, 1);
    return q;
}
static DL_TEST__UNUSED void count_free(void *p) {
    if (p) test_count_add(&test_live, -1);
    free(p);
}
#define DL_MALLOC(n) count_malloc(n)
#define DL_REALLOC(p, n) count_realloc(p, n)
#define DL_FREE(p) count_free(p)
#endif
