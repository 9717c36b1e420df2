/* tests/cuda_test.h - what the GPU test programs (tests/test_cuda*.c) share.

   A GPU test program defines DL_CUDA and DL_IMPLEMENTATION, includes the dl header it tests,
   then this file, which brings in
     - dl_cuda.cu's CPU emulation (DL_CUDA_EMULATE: device memory is host memory, a kernel launch
       is a loop, cuBLAS is dl_sgemm), unless DL_TEST_CUDA_LINKED says that the program is linked
       against dl_cuda.cu compiled by nvcc (tools/gpu_check.sh, test_compile.sh);
     - test.h, and REQUIRE_GPU(), which skips a test with the reason when there is no GPU;
     - rand_t(), uniform [-1, 1) tensors from the file's `rng`;
     - parity(): an op on CPU tensors and on GPU copies of them; sum(out * w) for one random w
       on each side, backward on each; the outputs and the gradient of every f32 input must agree
       within tol, relative (|gpu - cpu| <= tol (1 + |cpu|)), or be equal for integer outputs;
     - check_same() (two tensors on any devices) and check_same_weights() (two models, with dl_nn.h). */
#ifndef DL_CUDA_TEST_H
#define DL_CUDA_TEST_H

#ifndef DL_TEST_CUDA_LINKED
#define DL_CUDA_EMULATE
#include "dl_cuda.cu"
#endif
#include "test.h"

#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define CUDA_TEST_UNUSED __attribute__((unused))
#else
#define CUDA_TEST_UNUSED
#endif

#define GPU DL_DEVICE_CUDA

static dl_rng rng;

/* In a test: skip it, with the reason, when there is no GPU (a real build on a CPU machine). */
#define REQUIRE_GPU()                                  \
    do {                                               \
        if (!dl_cuda_available()) {                    \
            dl_cuda_init();                            \
            SKIP("no GPU: %s", dl_error());            \
        }                                              \
    } while (0)

CUDA_TEST_UNUSED static dl_tensor *rand_t(int nd, const int *shape) {
    dl_tensor *t = dl_tensor_new(DL_DTYPE_F32, nd, shape);
    if (t) dl_fill_uniform(t, -1.0f, 1.0f, &rng);
    return t;
}

typedef dl_tensor *(*op_fn)(dl_tensor **in, void *user);

CUDA_TEST_UNUSED static void parity(const char *what, op_fn f, void *user, int n, dl_tensor **in, double tol) {
    dl_tensor *din[8] = {0}, *out, *dout, *w = NULL, *loss, *dloss;
    float *a = NULL, *b = NULL;
    int i, diff = 0;
    dl_arena_reset(dl_arena_current());
    dl_clear_error();
    for (i = 0; i < n; i++) {
        if (in[i]->dtype == DL_DTYPE_F32) {
            dl_set_requires_grad(in[i], 1);
            dl_zero_grad(in[i]);
        }
        din[i] = dl_tensor_clone_to(in[i], GPU);
        CHECK(din[i] && din[i]->device == GPU, "%s: clone_to GPU: %s", what, dl_error());
        if (!din[i]) goto done;
        if (in[i]->dtype == DL_DTYPE_F32) dl_set_requires_grad(din[i], 1);
    }
    out = f(in, user);
    CHECK(out != NULL, "%s: CPU op failed: %s", what, dl_error());
    dout = f(din, user);
    CHECK(dout != NULL, "%s: GPU op failed: %s", what, dl_error());
    if (!out || !dout) goto done;
    CHECK(dout->device == GPU && dl_same_shape(out, dout) && out->dtype == dout->dtype,
          "%s: GPU output is not a GPU tensor of the same shape", what);
    a = (float *)malloc(out->numel * 4 + 4);
    b = (float *)malloc(out->numel * 4 + 4);
    CHECK(dl_tensor_read(out, a) == 0 && dl_tensor_read(dout, b) == 0, "%s: read: %s", what, dl_error());
    if (out->dtype == DL_DTYPE_F32) {
        CHECK_ALL_NEAR(b, a, out->numel, tol);
    } else {
        CHECK(memcmp(a, b, out->numel * dl_dtype_size(out->dtype)) == 0, "%s: integer outputs differ", what);
        goto done;
    }
    if (!out->requires_grad) goto done;
    w = rand_t(out->ndim, out->shape);
    loss = dl_sum_all(dl_mul(out, w));
    dloss = dl_sum_all(dl_mul(dout, dl_to_device(w, GPU)));
    CHECK(loss && dloss && dl_backward(loss) == 0 && dl_backward(dloss) == 0, "%s: backward: %s", what, dl_error());
    for (i = 0; i < n; i++) {
        if (in[i]->dtype != DL_DTYPE_F32) continue;
        CHECK(dl_tensor_move(din[i], DL_DEVICE_CPU) == 0, "%s: move back: %s", what, dl_error());
        CHECK((in[i]->grad == NULL) == (din[i]->grad == NULL), "%s: input %d has a gradient on one device only", what, i);
        if (in[i]->grad && din[i]->grad) {
            size_t k;
            for (k = 0; k < in[i]->numel && !diff; k++)
                if (!(fabs((double)din[i]->grad[k] - in[i]->grad[k]) <= tol * (1.0 + fabs((double)in[i]->grad[k])))) {
                    printf("    FAIL %s: gradient of input %d at %zu: GPU %.9g, CPU %.9g\n", what, i, k, din[i]->grad[k],
                           in[i]->grad[k]);
                    test__checks_failed++;
                    diff = 1;
                }
        }
    }
done:
    free(a);
    free(b);
    dl_tensor_free(w);
    for (i = 0; i < n; i++) dl_tensor_free(din[i]);
}

/* Two tensors of the same shape on any devices: values within tol, relative (0: the same bits). */
CUDA_TEST_UNUSED static void check_same(const char *what, const dl_tensor *got, const dl_tensor *want, double tol) {
    float *a, *b;
    if (!got || !want || got->numel != want->numel) {
        CHECK(0, "%s: missing or different sizes (%s)", what, dl_error());
        return;
    }
    a = (float *)malloc(got->numel * 4 + 4);
    b = (float *)malloc(want->numel * 4 + 4);
    CHECK(dl_tensor_read(got, a) == 0 && dl_tensor_read(want, b) == 0, "%s: read: %s", what, dl_error());
    if (tol == 0) {
        CHECK(memcmp(a, b, got->numel * 4) == 0, "%s: not the same bits", what);
    } else {
        size_t k;
        for (k = 0; k < got->numel; k++)
            if (!(fabs((double)a[k] - b[k]) <= tol * (1.0 + fabs((double)b[k])))) {
                printf("    FAIL %s: element %zu: GPU %.9g, CPU %.9g\n", what, k, a[k], b[k]);
                test__checks_failed++;
                break;
            }
    }
    free(a);
    free(b);
}

#ifdef DL_NN_H
/* Every weight of a model on the GPU against its CPU twin (dl_model_weights order). */
CUDA_TEST_UNUSED static void check_same_weights(const char *what, dl_model *gpu, dl_model *cpu, double tol) {
    dl_tensor *a[64], *b[64];
    int n = dl_model_weights(cpu, 0, b, 64), i;
    CHECK(dl_model_weights(gpu, 0, a, 64) == n, "%s: weight counts", what);
    for (i = 0; i < n && i < 64; i++) {
        char w[96];
        snprintf(w, sizeof w, "%s: weight %d", what, i);
        CHECK(a[i]->device == GPU && b[i]->device == DL_DEVICE_CPU, "%s: on the wrong device", w);
        check_same(w, a[i], b[i], tol);
    }
}
#endif

#endif
