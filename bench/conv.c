/* bench/conv.c - forward + backward speed of dl_conv2d on the layers of a Keras-style MNIST
   convnet (Conv2D(32, 3) on 28x28x1, MaxPool 2, Conv2D(64, 3) on 13x13x32), batch 128, for 1 and
   2 threads. Every input requires a gradient, so backward computes dX, dW and db.

       cc -O2 -I. bench/conv.c -o build/bench_conv -lm -lpthread && ./build/bench_conv
       /usr/bin/python3 bench/conv_torch.py        (the same lines for PyTorch, if installed)

   Output, one line per layer and thread count (best of the timed runs: the machine may be shared):
       conv name=c1 threads=1 fwd_ms=... bwd_ms=... gflops=...
   FLOPs: 2*N*Cout*Hout*Wout*Cin*kh*kw forward, twice that backward (dX and dW). */
#define _POSIX_C_SOURCE 199309L
#define DL_IMPLEMENTATION
#include "dl_tensor.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define RUNS 15

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static double best(const double *v, int n) {
    double m = v[0];
    int i;
    for (i = 1; i < n; i++) m = v[i] < m ? v[i] : m;
    return m;
}

static void bench(const char *name, int n, int cin, int h, int w, int cout, int k, int threads) {
    int xs[4], ws[4];
    dl_tensor *x, *wt, *b, *y;
    dl_rng rng;
    double fwd[RUNS], bwd[RUNS], flops, t_f, t_b;
    float *ones;
    int it, i, oh = h - k + 1, ow = w - k + 1;
    dl_arena *arena = dl_arena_new((size_t)64 << 20);
    dl_arena_use(arena);
    dl_set_num_threads(threads);
    xs[0] = n; xs[1] = cin; xs[2] = h; xs[3] = w;
    ws[0] = cout; ws[1] = cin; ws[2] = k; ws[3] = k;
    x = dl_tensor_new(DL_DTYPE_F32, 4, xs);
    wt = dl_tensor_new(DL_DTYPE_F32, 4, ws);
    b = dl_tensor_new(DL_DTYPE_F32, 1, &cout);
    dl_rng_seed(&rng, 1);
    dl_fill_uniform(x, 0.0f, 1.0f, &rng);
    dl_init_glorot_uniform(wt, cin * k * k, cout * k * k, &rng);
    dl_set_requires_grad(x, 1);
    dl_set_requires_grad(wt, 1);
    dl_set_requires_grad(b, 1);
    ones = (float *)malloc(sizeof(float) * (size_t)n * cout * oh * ow);
    for (i = 0; i < n * cout * oh * ow; i++) ones[i] = 1.0f;
    for (it = -3; it < RUNS; it++) { /* 3 warm-up runs */
        double t0, t1, t2;
        dl_arena_reset(arena);
        dl_zero_grad(x);
        dl_zero_grad(wt);
        dl_zero_grad(b);
        t0 = now_ms();
        y = dl_conv2d(x, wt, b, NULL);
        t1 = now_ms();
        if (!y || dl_backward_grad(y, ones) != 0) { printf("error: %s\n", dl_error()); exit(1); }
        t2 = now_ms();
        if (it >= 0) { fwd[it] = t1 - t0; bwd[it] = t2 - t1; }
    }
    t_f = best(fwd, RUNS);
    t_b = best(bwd, RUNS);
    flops = 2.0 * n * cout * oh * ow * cin * k * k;
    printf("conv name=%s threads=%d fwd_ms=%.3f bwd_ms=%.3f gflops=%.1f\n", name, threads, t_f, t_b,
           3.0 * flops / ((t_f + t_b) * 1e-3) / 1e9);
    fflush(stdout);
    free(ones);
    dl_tensor_free(x);
    dl_tensor_free(wt);
    dl_tensor_free(b);
    dl_arena_use(NULL);
    dl_arena_free(arena);
}

int main(void) {
    int threads;
    printf("# dl_conv2d, batch 128, gemm kernel %s\n", dl_gemm_kernel_name());
    for (threads = 1; threads <= 2; threads++) {
        bench("c1", 128, 1, 28, 28, 32, 3, threads);
        bench("c2", 128, 32, 13, 13, 64, 3, threads);
    }
    dl_threads_shutdown();
    return 0;
}
