/* bench/gemm.c - dl_sgemm against OpenBLAS cblas_sgemm, square and small/RL shapes.

   Build and run (OpenBLAS's OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE overrides, if set, slow it down;
   unset them to compare against its best):
     cc -O2 -I. bench/gemm.c -o build/bench_gemm -lopenblas -lpthread -lm
     env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ./build/bench_gemm [--quick | --all] [--only S]

   --all adds the shapes of small networks and RL (acting, an MLP's forward and backward, dense
   weight gradients with few outputs, conv); --only S keeps the shapes whose label contains S
   ("square" for the square ones). Each figure is the best of several repetitions, dl and
   OpenBLAS interleaved (dl, openblas, dl, openblas, ...) so that noise from other processes hits
   both alike. One repetition loops the call until at least 50 ms have passed. With one thread
   the time is the thread's CPU time (other processes on a shared machine do not count), with
   more it is wall time. GFLOP/s counts 2*m*n*k. */
#define _POSIX_C_SOURCE 200809L
#define DL_IMPLEMENTATION
#include "dl_tensor.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int use_cpu_time;   /* 1 thread: measure this thread's CPU time */
static const char *only;   /* --only: label filter */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(use_cpu_time ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    int ta, tb, m, n, k;
    float *a, *b, *c;
} problem;

static void run_dl(const problem *p) {
    dl_sgemm(p->ta, p->tb, p->m, p->n, p->k, 1.0f, p->a, p->ta ? p->m : p->k, p->b,
             p->tb ? p->k : p->n, 0.0f, p->c, p->n);
}

static void run_openblas(const problem *p) {
    cblas_sgemm(CblasRowMajor, p->ta ? CblasTrans : CblasNoTrans, p->tb ? CblasTrans : CblasNoTrans,
                p->m, p->n, p->k, 1.0f, p->a, p->ta ? p->m : p->k, p->b, p->tb ? p->k : p->n, 0.0f,
                p->c, p->n);
}

/* GFLOP/s of one repetition: calls fn `*iters` times (grown until it takes >= min_seconds). */
static double time_rep(void (*fn)(const problem *), const problem *p, int *iters, double min_seconds) {
    for (;;) {
        double t0 = now_seconds(), dt;
        int i;
        for (i = 0; i < *iters; i++) fn(p);
        dt = now_seconds() - t0;
        if (dt >= min_seconds) return 2.0 * p->m * p->n * p->k * *iters / dt * 1e-9;
        *iters = dt <= 0 ? *iters * 10 : (int)(*iters * 1.3 * min_seconds / dt) + 1;
    }
}

static void bench(const char *label, int ta, int tb, int m, int n, int k, int threads, int reps) {
    problem p;
    double best_dl = 0, best_ob = 0;
    int it_dl = 1, it_ob = 1, r;
    size_t i;
    if (only && !strstr(label ? label : "square", only)) return;
    p.ta = ta, p.tb = tb, p.m = m, p.n = n, p.k = k;
    p.a = (float *)malloc((size_t)m * k * sizeof(float));
    p.b = (float *)malloc((size_t)k * n * sizeof(float));
    p.c = (float *)malloc((size_t)m * n * sizeof(float));
    for (i = 0; i < (size_t)m * k; i++) p.a[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    for (i = 0; i < (size_t)k * n; i++) p.b[i] = (float)((i * 104729) % 1000) * 1e-3f - 0.5f;
    memset(p.c, 0, (size_t)m * n * sizeof(float));
    dl_set_num_threads(threads);
    openblas_set_num_threads(threads);
    use_cpu_time = threads == 1;
    run_dl(&p), run_openblas(&p);   /* warm up: pool started, buffers grown */
    for (r = 0; r < reps; r++) {
        double g = time_rep(run_dl, &p, &it_dl, 0.05);
        if (g > best_dl) best_dl = g;
        g = time_rep(run_openblas, &p, &it_ob, 0.05);
        if (g > best_ob) best_ob = g;
    }
    if (label)
        printf("gemm %s m=%d n=%d k=%d ta=%d tb=%d threads=%d dl=%.2f openblas=%.2f ratio=%.2f\n",
               label, m, n, k, ta, tb, threads, best_dl, best_ob, best_dl / best_ob);
    else
        printf("gemm n=%d threads=%d dl=%.2f openblas=%.2f ratio=%.2f\n", n, threads, best_dl,
               best_ob, best_dl / best_ob);
    fflush(stdout);
    free(p.a), free(p.b), free(p.c);
}

int main(int argc, char **argv) {
    static const int sizes[] = {64, 128, 256, 512, 1024, 2048};
    int quick = 0, all = 0, reps, s, t, i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else if (strcmp(argv[i], "--all") == 0) all = 1;
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
    }
    reps = quick ? 3 : 5;
    printf("dl gemm kernel: %s; openblas: %s (core %s)\n", dl_gemm_kernel_name(),
           openblas_get_config(), openblas_get_corename());
    for (t = 1; t <= 2; t++)
        for (s = 0; s < 6; s++) bench(NULL, 0, 0, sizes[s], sizes[s], sizes[s], t, reps);
    if (all) {
        /* shapes of small networks and RL: batch-1 acting, a 32-batch MLP, its backward */
        for (t = 1; t <= 2; t++) {
            bench("rl-act", 0, 0, 1, 256, 64, t, reps);
            bench("rl-act", 0, 0, 1, 4, 256, t, reps);
            bench("rl-actT", 0, 1, 1, 256, 256, t, reps);
            bench("value", 0, 0, 32, 1, 256, t, reps);
            bench("valueT", 1, 0, 32, 1, 256, t, reps);
            bench("mlp", 0, 0, 32, 256, 784, t, reps);
            bench("mlp", 0, 0, 32, 10, 256, t, reps);
            bench("mlp-dW", 1, 0, 784, 256, 32, t, reps);
            bench("mlp-dX", 0, 1, 32, 784, 256, t, reps);
            bench("mlp-dX", 0, 1, 32, 256, 10, t, reps);
            /* weight gradients dW = X^T dY of dense layers with few outputs */
            bench("dW-small", 1, 0, 64, 2, 256, t, reps);
            bench("dW-small", 1, 0, 256, 10, 32, t, reps);
            bench("dW-small", 1, 0, 784, 10, 128, t, reps);
            bench("dW-small", 1, 0, 256, 4, 64, t, reps);
            bench("conv", 0, 0, 64, 3136, 576, t, reps);
            /* conv c2 of the MNIST convnet (13x13x32 -> 11x11x64, 3x3), one image and groups of
               2, 4, 8 side by side: forward W @ cols, dW += dY @ cols^T, dcols = W^T @ dY */
            bench("conv-img", 0, 0, 64, 121, 288, t, reps);
            bench("conv-img2", 0, 0, 64, 242, 288, t, reps);
            bench("conv-img4", 0, 0, 64, 484, 288, t, reps);
            bench("conv-img8", 0, 0, 64, 968, 288, t, reps);
            bench("conv-imgdW", 0, 1, 64, 288, 121, t, reps);
            bench("conv-imgdX", 1, 0, 288, 121, 64, t, reps);
            bench("tn", 1, 0, 512, 512, 512, t, reps);
            bench("nt", 0, 1, 512, 512, 512, t, reps);
            bench("tt", 1, 1, 512, 512, 512, t, reps);
        }
    }
    dl_threads_shutdown();
    return 0;
}
