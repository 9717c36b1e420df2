/* tests/fuzz_alloc.h - for libFuzzer harnesses: dl's allocations abort when one request is
   larger than fuzz_limit, which the harness sets from the input size before each call (a
   loader must never allocate more than its input justifies). Include before dl_tensor.h. */
#ifndef DL_TEST_FUZZ_ALLOC_H
#define DL_TEST_FUZZ_ALLOC_H
#include <stdio.h>
#include <stdlib.h>

static size_t fuzz_limit;
static void *fuzz_malloc(size_t n) {
    if (n > fuzz_limit) {
        fprintf(stderr, "allocation of %zu bytes over the limit %zu\n", n, fuzz_limit);
        abort();
    }
    return malloc(n);
}
#define DL_MALLOC(n) fuzz_malloc(n)
#define DL_REALLOC(p, n) realloc(p, n)
#define DL_FREE(p) free(p)
#endif
