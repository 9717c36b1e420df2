/* GEMM and thread pool: dl_sgemm against a double-precision reference for every transpose,
   alpha/beta case and awkward size, on every micro-kernel this CPU has; bit-identical results
   for 1 and 2 threads; dl_parallel_for runs each task exactly once. */
#define DL_IMPLEMENTATION
#include "../dl_tensor.h"
#include "test.h"

#include <float.h>
#include <stdlib.h>

static unsigned long long rng_state = 88172645463325252ull;
static float rnd(void) {   /* uniform in [-1, 1) */
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (float)((rng_state >> 40) * (1.0 / 8388608.0) - 1.0);
}

static float *rand_matrix(size_t count) {
    float *x = (float *)malloc(count * sizeof(float) + 1);
    size_t i;
    for (i = 0; i < count; i++) x[i] = rnd();
    return x;
}

/* Runs one dl_sgemm and checks all of C, including the padding columns it must not touch.
   Returns 1 when it matched. */
static int check_gemm(int ta, int tb, int m, int n, int k, float alpha, float beta, int pad) {
    int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    int a_rows = ta ? k : m, b_rows = tb ? n : k;
    float *a = rand_matrix((size_t)a_rows * lda + 1), *b = rand_matrix((size_t)b_rows * ldb + 1);
    float *c = rand_matrix((size_t)m * ldc + 1), *c0 = (float *)malloc(((size_t)m * ldc + 1) * sizeof(float));
    int i, j, p, ok = 1;
    if (beta == 0.0f)   /* beta == 0 must not read C: poison it */
        for (i = 0; i < m; i++)
            for (j = 0; j < n; j++) c[(size_t)i * ldc + j] = NAN;
    memcpy(c0, c, ((size_t)m * ldc + 1) * sizeof(float));
    dl_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    for (i = 0; i < m && ok; i++) {
        for (j = 0; j < ldc && ok; j++) {
            size_t at = (size_t)i * ldc + j;
            double want = 0, scale = 0, got = c[at];
            if (j >= n) {   /* outside C: untouched, bit for bit */
                if (memcmp(&c[at], &c0[at], sizeof(float)) != 0) ok = 0;
                continue;
            }
            for (p = 0; p < k; p++) {
                double av = ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p];
                double bv = tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j];
                want += av * bv;
                scale += fabs(av * bv);
            }
            want *= alpha, scale *= fabs(alpha);
            if (beta != 0.0f) want += (double)beta * c0[at], scale += fabs((double)beta * c0[at]);
            if (!(fabs(got - want) <= 4.0 * (k + 4) * FLT_EPSILON * scale + 1e-30)) ok = 0;
            if (!ok)
                printf("    ta=%d tb=%d m=%d n=%d k=%d alpha=%g beta=%g pad=%d: C[%d][%d] = %.9g, "
                       "expected %.9g\n", ta, tb, m, n, k, alpha, beta, pad, i, j, got, want);
        }
    }
    free(a), free(b), free(c), free(c0);
    return ok;
}

static const int odd_sizes[] = {1, 2, 3, 7, 17, 33, 65, 127, 129};
#define N_ODD (int)(sizeof odd_sizes / sizeof odd_sizes[0])

/* Every transpose x (alpha, beta) case on a spread of small and odd shapes. */
static void test_gemm_shapes(void) {
    static const float alphas[] = {1.0f, -0.5f}, betas[] = {0.0f, 1.0f, 0.75f};
    int ta, tb, s, failures = 0;
    for (s = 0; s < 60; s++) {
        int m = odd_sizes[(s * 7) % N_ODD], n = odd_sizes[(s * 5 + 3) % N_ODD];
        int k = odd_sizes[(s * 3 + 1) % N_ODD], pad = s % 3 == 0 ? 3 : 0;
        for (ta = 0; ta < 2; ta++)
            for (tb = 0; tb < 2; tb++)
                failures += !check_gemm(ta, tb, m, n, k, alphas[s % 2], betas[(s + ta + tb) % 3], pad);
    }
    CHECK(failures == 0, "%d shapes failed", failures);
}

/* Vector-like and degenerate shapes: m = 1, n = 1, k = 1, k = 0, tiny everything. */
static void test_gemm_edges(void) {
    static const int lens[] = {1, 2, 3, 5, 16, 31, 32, 33, 100, 130, 300};
    int ta, tb, i, failures = 0;
    for (ta = 0; ta < 2; ta++)
        for (tb = 0; tb < 2; tb++)
            for (i = 0; i < (int)(sizeof lens / sizeof lens[0]); i++) {
                int L = lens[i], other = lens[(i + 4) % 11];
                failures += !check_gemm(ta, tb, 1, L, other, 1.0f, 0.0f, 0);
                failures += !check_gemm(ta, tb, 1, other, L, 0.5f, 1.0f, 1);
                failures += !check_gemm(ta, tb, 2, L, other, 1.0f, 0.5f, 0);
                failures += !check_gemm(ta, tb, 3, other, L, 1.0f, 0.0f, 2);
                failures += !check_gemm(ta, tb, L, 1, other, 1.0f, 0.0f, 0);
                failures += !check_gemm(ta, tb, L, 1, other, 2.0f, 1.0f, 3);   /* ldc > 1 */
                failures += !check_gemm(ta, tb, other, L, 1, 1.0f, 0.25f, 0);
                failures += !check_gemm(ta, tb, L, other, 2, 1.0f, 0.0f, 1);
                failures += !check_gemm(ta, tb, L, 4, other, 1.0f, 0.0f, 0);
            }
    CHECK(failures == 0, "%d shapes failed", failures);
    {   /* k == 0 and alpha == 0: C = beta * C, A and B never read */
        float c[6] = {1, 2, 3, 4, 5, 6}, nan_c[6] = {NAN, NAN, NAN, NAN, NAN, NAN};
        int j;
        dl_sgemm(0, 0, 2, 3, 0, 1.0f, NULL, 1, NULL, 3, 0.5f, c, 3);
        CHECK(c[0] == 0.5f && c[5] == 3.0f, "k = 0 scales C by beta: %g %g", c[0], c[5]);
        dl_sgemm(1, 1, 2, 3, 0, 1.0f, NULL, 1, NULL, 3, 0.0f, nan_c, 3);
        for (j = 0; j < 6; j++) CHECK(nan_c[j] == 0.0f, "k = 0, beta = 0 zeroes C (%g)", nan_c[j]);
        dl_sgemm(0, 0, 2, 3, 4, 0.0f, NULL, 4, NULL, 3, 2.0f, c, 3);
        CHECK(c[0] == 1.0f && c[5] == 6.0f, "alpha = 0 gives beta * C: %g %g", c[0], c[5]);
        dl_sgemm(0, 0, 0, 3, 4, 1.0f, NULL, 4, NULL, 3, 2.0f, NULL, 3);   /* m == 0: nothing */
    }
}

/* Sizes that cross the cache blocks (KC, MC) and the threading threshold. */
static void test_gemm_large(void) {
    int failures = 0;
    failures += !check_gemm(0, 0, 255, 513, 300, 1.0f, 0.0f, 0);
    failures += !check_gemm(1, 0, 129, 257, 600, -1.0f, 1.0f, 5);
    failures += !check_gemm(0, 1, 400, 65, 257, 1.0f, 0.5f, 0);
    failures += !check_gemm(1, 1, 97, 300, 513, 0.5f, 0.0f, 1);
    failures += !check_gemm(0, 0, 700, 40, 100, 1.0f, 0.0f, 0);   /* tall: split by rows */
    failures += !check_gemm(0, 0, 1, 3000, 200, 1.0f, 1.0f, 0);   /* batch-1 row */
    failures += !check_gemm(0, 1, 1, 3000, 200, 1.0f, 0.0f, 0);
    failures += !check_gemm(1, 0, 3000, 1, 200, 1.0f, 0.0f, 0);   /* column vector output */
    CHECK(failures == 0, "%d shapes failed", failures);
}

/* The shapes of dense layers' backward passes and of dot-product paths, every transpose: weight
   gradients X^T dY with few outputs (n <= 16, op(A) transposed), n == 1, m == 1 against a
   transposed B, dX = dY W^T, and their awkward neighbours (row tails, every n up to 17). */
static void test_gemm_backward_shapes(void) {
    static const int shapes[][3] = {   /* m, n, k */
        {64, 2, 256}, {256, 10, 32}, {784, 10, 128}, {256, 4, 64}, {32, 1, 256}, {1, 256, 256},
        {1, 37, 100}, {32, 784, 256}, {32, 256, 10}, {64, 64, 64}, {100, 33, 17}, {5, 16, 3}};
    static const float betas[] = {0.0f, 1.0f, 0.5f};
    int ta, tb, s, n, failures = 0;
    for (s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++)
        for (ta = 0; ta < 2; ta++)
            for (tb = 0; tb < 2; tb++)
                failures += !check_gemm(ta, tb, shapes[s][0], shapes[s][1], shapes[s][2],
                                        s % 2 ? -0.5f : 1.0f, betas[(s + ta + tb) % 3], s % 3 == 0 ? 2 : 0);
    for (n = 1; n <= 17; n++)   /* op(A) transposed, every small n, rows that end mid-vector */
        for (tb = 0; tb < 2; tb++) {
            failures += !check_gemm(1, tb, 16 * n + 5, n, 33, 1.0f, betas[n % 3], n % 2);
            failures += !check_gemm(1, tb, 4 + n, n, 1 + n, 0.5f, betas[(n + 1) % 3], 0);
            failures += !check_gemm(0, 1, 1, 16 * n + n % 5, 17 + n, 1.0f, betas[n % 3], 0);
            failures += !check_gemm(tb, 0, 16 * n + 3, 1, 40, 1.0f, betas[n % 3], 0);
        }
    CHECK(failures == 0, "%d shapes failed", failures);
}

/* The same GEMM with 1 and 2 threads gives the same bits. */
static void test_gemm_thread_determinism(void) {
    static const int shapes[][5] = {   /* ta, tb, m, n, k */
        {0, 0, 256, 256, 256}, {0, 1, 333, 517, 301}, {1, 0, 1000, 70, 90}, {1, 1, 77, 1000, 300},
        {0, 0, 1, 5000, 300},  {0, 1, 2, 999, 400},   {0, 0, 4000, 1, 300}, {0, 0, 50, 4000, 64},
        {1, 0, 784, 10, 128}, {1, 0, 3000, 2, 256}, {1, 1, 2050, 13, 100}, {0, 0, 3000, 1, 257},
        {0, 1, 1, 3001, 300}, {0, 1, 32, 784, 256}, {0, 0, 64, 64, 64}, {0, 0, 333, 7, 500}};
    int s, threads_before = dl_num_threads();
    for (s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++) {
        int ta = shapes[s][0], tb = shapes[s][1], m = shapes[s][2], n = shapes[s][3], k = shapes[s][4];
        size_t na = (size_t)m * k, nb = (size_t)k * n, nc = (size_t)m * n;
        float *a = rand_matrix(na), *b = rand_matrix(nb), *c1 = rand_matrix(nc);
        float *c2 = (float *)malloc(nc * sizeof(float));
        memcpy(c2, c1, nc * sizeof(float));
        dl_set_num_threads(1);
        dl_sgemm(ta, tb, m, n, k, 1.0f, a, ta ? m : k, b, tb ? k : n, 0.5f, c1, n);
        dl_set_num_threads(2);
        dl_sgemm(ta, tb, m, n, k, 1.0f, a, ta ? m : k, b, tb ? k : n, 0.5f, c2, n);
        CHECK(memcmp(c1, c2, nc * sizeof(float)) == 0, "1 vs 2 threads differ: ta=%d tb=%d %dx%dx%d",
              ta, tb, m, n, k);
        free(a), free(b), free(c1), free(c2);
    }
    dl_set_num_threads(threads_before);
}

/* ---- dl_parallel_for ---- */

typedef struct { int *count; int n; } count_ctx;

static void count_task(void *ctx, int task) { ((count_ctx *)ctx)->count[task]++; }

static void nested_task(void *ctx, int task) {   /* a task that starts a parallel loop itself */
    count_ctx *outer = (count_ctx *)ctx;
    int inner[8] = {0};
    count_ctx inner_ctx;
    int i, ok = 1;
    inner_ctx.count = inner, inner_ctx.n = 8;
    dl_parallel_for(8, count_task, &inner_ctx);
    for (i = 0; i < 8; i++) ok &= inner[i] == 1;
    outer->count[task] += ok;
}

static void test_parallel_for(void) {
    int threads[] = {1, 2, 3, 8}, t, i, round, before = dl_num_threads();
    for (t = 0; t < 4; t++) {
        dl_set_num_threads(threads[t]);
#ifdef DL_NO_THREADS
        CHECK(dl_num_threads() == 1, "threads = %d without threads", dl_num_threads());
#else
        CHECK(dl_num_threads() == threads[t], "threads = %d", dl_num_threads());
#endif
        for (round = 0; round < 50; round++) {
            int n = 1 + (round * 37) % 200, bad = 0, *count = (int *)calloc((size_t)n, sizeof(int));
            count_ctx ctx;
            ctx.count = count, ctx.n = n;
            dl_parallel_for(n, round % 5 == 0 ? nested_task : count_task, &ctx);
            for (i = 0; i < n; i++) bad += count[i] != 1;
            CHECK(bad == 0, "%d of %d tasks not run exactly once (threads %d)", bad, n, threads[t]);
            free(count);
        }
    }
    dl_parallel_for(0, count_task, NULL);   /* nothing to do */
    dl_set_num_threads(0);
    CHECK(dl_num_threads() >= 1, "default thread count");
    dl_set_num_threads(before);
}

static void test_shutdown_and_restart(void) {
    dl_threads_shutdown();
    CHECK(check_gemm(0, 0, 300, 300, 100, 1.0f, 0.0f, 0), "GEMM after shutdown");
    dl_threads_shutdown();
}

static void test_kernel_choice(void) {
    const char *before = dl_gemm_kernel_name();
    CHECK(!dl_gemm_set_kernel("no such kernel"), "an unknown kernel name is refused");
    CHECK(strcmp(dl_gemm_kernel_name(), before) == 0, "and changes nothing");
    CHECK(dl_gemm_set_kernel("generic"), "the generic kernel is always there");
    CHECK(strcmp(dl_gemm_kernel_name(), "generic") == 0, "now %s", dl_gemm_kernel_name());
    CHECK(dl_gemm_set_kernel(before), "back to %s", before);
}

int main(void) {
    static const char *kernels[] = {"avx512", "avx2", "generic"};
    int i;
    printf("gemm kernel by default: %s, threads: %d\n", dl_gemm_kernel_name(), dl_num_threads());
    for (i = 0; i < 3; i++) {
        if (!dl_gemm_set_kernel(kernels[i])) {
            printf("kernel %s: not supported on this CPU, skipped\n", kernels[i]);
            continue;
        }
        printf("kernel %s\n", dl_gemm_kernel_name());
        RUN(test_gemm_shapes);
        RUN(test_gemm_edges);
        RUN(test_gemm_large);
        RUN(test_gemm_backward_shapes);
        RUN(test_gemm_thread_determinism);
    }
    RUN(test_kernel_choice);
    RUN(test_parallel_for);
    RUN(test_shutdown_and_restart);
    return test_summary();
}
