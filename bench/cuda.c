/* bench/cuda.c - dl on the GPU: GEMM throughput of the cuBLAS path, and the training step of the
   Fashion-MNIST MLP (784-128-10, ReLU, cross-entropy, plain SGD written with dl's ops) at
   batch 32 and 256, steps per second.

   Build (tools/gpu_check.sh does it; needs a GPU to run):
     nvcc -O2 -arch=sm_90 -I. -c dl_cuda.cu -o build/gpu/dl_cuda.o
     cc -O2 -DDL_CUDA -I. bench/cuda.c build/gpu/dl_cuda.o -o build/gpu/bench_cuda \
        -L/usr/local/cuda/lib64 -lcudart -lcublas -lstdc++ -lm -lpthread
     ./build/gpu/bench_cuda            (DL_CUDA_TF32=1: cuBLAS's TF32 mode)
   GEMM: C = A B on n x n matrices already on the GPU, the best of 5 timed runs of 10 products
   each after a warm-up, with dl_device_synchronize around them; GFLOP/s counts 2 n^3. The peak
   it is compared with is the H100/H200 SXM datasheet's dense FP32 rate, 67 TFLOP/s (pass
   --peak G in GFLOP/s for another GPU). The MLP step: forward, backward and an SGD update of
   the four parameters, the batch already on the GPU; the median of 5 runs of 200 steps.
   Output: one line per figure, "name value unit", for tools/gpu_check.sh to collect. */
#define _POSIX_C_SOURCE 200809L
#define DL_CUDA
#define DL_IMPLEMENTATION
#include "dl_tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static dl_tensor *gpu_rand(int nd, const int *shape, dl_rng *r) {
    dl_tensor *t = dl_tensor_new(DL_DTYPE_F32, nd, shape);
    if (!t) return NULL;
    dl_fill_uniform(t, -0.1f, 0.1f, r);
    if (dl_tensor_move(t, DL_DEVICE_CUDA) != 0) { dl_tensor_free(t); return NULL; }
    return t;
}

static int bench_gemm(int n, double peak) {
    dl_rng r;
    dl_tensor *a, *b;
    double best = 0;
    int rep, i;
    dl_rng_seed(&r, 1);
    a = gpu_rand(2, DL_SHAPE(n, n), &r);
    b = gpu_rand(2, DL_SHAPE(n, n), &r);
    if (!a || !b) return -1;
    dl_no_grad(1);
    for (rep = 0; rep < 6; rep++) {
        double t0, dt;
        dl_arena_reset(dl_arena_current());
        if (dl_device_synchronize() != 0) return -1;
        t0 = now();
        for (i = 0; i < 10; i++)
            if (!dl_matmul(a, b)) return -1;
        if (dl_device_synchronize() != 0) return -1;
        dt = now() - t0;
        if (rep > 0 && 2.0 * n * (double)n * n * 10 / dt * 1e-9 > best) best = 2.0 * n * (double)n * n * 10 / dt * 1e-9;
    }
    dl_no_grad(0);
    printf("gemm_%d_gflops %.0f GFLOP/s (%.0f%% of %.0f)\n", n, best, 100.0 * best / peak, peak);
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(a);
    dl_tensor_free(b);
    return 0;
}

static int bench_mlp(int batch) {
    dl_rng r;
    dl_tensor *p[4], *x, *y, *yh;
    int32_t *labels;
    double times[5];
    int i, rep, step;
    dl_rng_seed(&r, 2);
    p[0] = gpu_rand(2, DL_SHAPE(784, 128), &r);
    p[1] = gpu_rand(1, DL_SHAPE(128), &r);
    p[2] = gpu_rand(2, DL_SHAPE(128, 10), &r);
    p[3] = gpu_rand(1, DL_SHAPE(10), &r);
    x = gpu_rand(2, DL_SHAPE(batch, 784), &r);
    labels = (int32_t *)malloc((size_t)batch * sizeof *labels);
    for (i = 0; i < batch; i++) labels[i] = i % 10;
    yh = dl_tensor_from(DL_DTYPE_I32, 1, DL_SHAPE(batch), labels);
    y = dl_tensor_clone_to(yh, DL_DEVICE_CUDA);
    free(labels);
    if (!p[0] || !p[1] || !p[2] || !p[3] || !x || !y) return -1;
    for (i = 0; i < 4; i++) dl_set_requires_grad(p[i], 1);
    for (rep = 0; rep < 6; rep++) {
        double t0;
        if (dl_device_synchronize() != 0) return -1;
        t0 = now();
        for (step = 0; step < 200; step++) {
            dl_tensor *loss;
            dl_arena_reset(dl_arena_current());
            for (i = 0; i < 4; i++) dl_zero_grad(p[i]);
            loss = dl_cross_entropy(dl_linear(dl_relu(dl_linear(x, p[0], p[1])), p[2], p[3]), y);
            if (!loss || dl_backward(loss) != 0) return -1;
            {
                int grad = dl_no_grad(1);
                for (i = 0; i < 4; i++) { /* p -= 0.01 grad, on the GPU */
                    dl_tensor g = *p[i];
                    g.data = p[i]->grad;
                    g.grad = NULL;
                    g.node = NULL;
                    g.flags = 0;
                    if (dl_copy(p[i], dl_sub(dl_detach(p[i]), dl_mul_scalar(&g, 0.01f))) != 0) return -1;
                }
                dl_no_grad(grad);
            }
        }
        if (dl_device_synchronize() != 0) return -1;
        if (rep > 0) times[rep - 1] = now() - t0;
    }
    qsort(times, 5, sizeof times[0], cmp_double);
    printf("mlp_step_b%d %.1f us/step (%.0f steps/s)\n", batch, times[2] / 200 * 1e6, 200 / times[2]);
    dl_arena_reset(dl_arena_current());
    for (i = 0; i < 4; i++) dl_tensor_free(p[i]);
    dl_tensor_free(x);
    dl_tensor_free(y);
    dl_tensor_free(yh);
    return 0;
}

int main(int argc, char **argv) {
    double peak = 67000;
    int i;
    for (i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--peak") == 0) peak = atof(argv[i + 1]);
    if (dl_cuda_init() != 0) {
        printf("bench_cuda: %s\n", dl_error());
        return 1;
    }
    if (bench_gemm(1024, peak) || bench_gemm(4096, peak) || bench_gemm(8192, peak) || bench_mlp(32) || bench_mlp(256)) {
        printf("bench_cuda: %s\n", dl_error());
        return 1;
    }
    dl_arena_free_default();
    return 0;
}
