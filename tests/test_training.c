/* Whole training steps through many ops at once: a small convnet with batch norm and dropout.
   - a steady-state step calls DL_MALLOC zero times (counted through the override);
   - the same seed gives bit-identical weights for 1 and 2 threads;
   - plain autograd + SGD actually learns (XOR, and the convnet on a separable toy task). */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <stdlib.h>
#include <time.h>

/* Every pool worker starts 2 ms late, as on a loaded machine: the workspace of a worker that
   first runs in steady state must already exist (it once was allocated then, in CI). */
static void test_late_worker_start(void) {
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
}
#define DL__TEST_WORKER_START() test_late_worker_start()

#include "count_alloc.h"
#define DL_IMPLEMENTATION
#include "../dl_tensor.h"
#include "test.h"

#define BATCH 16

typedef struct convnet {
    dl_tensor *conv_w, *conv_b, *bn_gamma, *bn_beta, *bn_mean, *bn_var, *fc_w, *fc_b;
} convnet;

static void convnet_init(convnet *m, uint64_t seed) {
    dl_rng rng;
    dl_rng_seed(&rng, seed);
    m->conv_w = dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(8, 1, 3, 3));
    m->conv_b = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(8));
    m->bn_gamma = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(8));
    m->bn_beta = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(8));
    m->bn_mean = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(8));
    m->bn_var = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(8));
    m->fc_w = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(8 * 6 * 6, 2));
    m->fc_b = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(2));
    dl_init_he_uniform(m->conv_w, 9, &rng);
    dl_init_glorot_uniform(m->fc_w, 288, 2, &rng);
    dl_fill(m->bn_gamma, 1.0f);
    dl_fill(m->bn_var, 1.0f);
    dl_set_requires_grad(m->conv_w, 1);
    dl_set_requires_grad(m->conv_b, 1);
    dl_set_requires_grad(m->bn_gamma, 1);
    dl_set_requires_grad(m->bn_beta, 1);
    dl_set_requires_grad(m->fc_w, 1);
    dl_set_requires_grad(m->fc_b, 1);
}

static dl_tensor **convnet_params(convnet *m) { return &m->conv_w; } /* the first 8 fields */

static void convnet_free(convnet *m) {
    int i;
    for (i = 0; i < 8; i++) dl_tensor_free(convnet_params(m)[i]);
}

/* A toy task: 14x14 images with a bright 3x3 blob in the left (class 0) or right half (1). */
static void make_batch(dl_rng *rng, float *images, int32_t *labels) {
    int n, i, j;
    memset(images, 0, sizeof(float) * BATCH * 14 * 14);
    for (n = 0; n < BATCH; n++) {
        int label = dl_rng_int(rng, 2), r = 1 + dl_rng_int(rng, 10), c = 1 + dl_rng_int(rng, 4) + 7 * label;
        labels[n] = label;
        for (i = 0; i < 14 * 14; i++) images[n * 196 + i] = 0.1f * dl_rng_uniform(rng);
        for (i = 0; i < 3; i++)
            for (j = 0; j < 3; j++) images[n * 196 + (r + i) * 14 + c + j] += 1.0f;
    }
}

/* One SGD step; returns the loss. conv 3x3 -> batch norm -> relu -> max pool 2 -> dropout ->
   flatten -> dense -> cross-entropy. */
static float convnet_step(convnet *m, dl_rng *rng, float lr) {
    float images[BATCH * 14 * 14];
    int32_t labels[BATCH];
    dl_tensor *x, *y, *h, *loss;
    int i;
    size_t j;
    make_batch(rng, images, labels);
    x = dl_tmp_from(DL_DTYPE_F32, 4, DL_SHAPE(BATCH, 1, 14, 14), images);
    y = dl_tmp_from(DL_DTYPE_I32, 1, DL_SHAPE(BATCH), labels);
    h = dl_conv2d(x, m->conv_w, m->conv_b, NULL);                       /* [B, 8, 12, 12] */
    h = dl_batch_norm(h, m->bn_gamma, m->bn_beta, m->bn_mean, m->bn_var, 1, 0.1f, 1e-5f);
    h = dl_max_pool2d(dl_relu(h), 2, 2, NULL);                          /* [B, 8, 6, 6] */
    h = dl_dropout(h, 0.25f, 1, rng);
    h = dl_linear(dl_flatten(h, 1, -1), m->fc_w, m->fc_b);              /* [B, 2] */
    loss = dl_cross_entropy(h, y);
    for (i = 0; i < 8; i++) dl_zero_grad(convnet_params(m)[i]);
    if (dl_backward(loss) != 0) return NAN;
    for (i = 0; i < 8; i++) {
        dl_tensor *p = convnet_params(m)[i];
        if (!p->grad) continue;
        for (j = 0; j < p->numel; j++) dl_f32(p)[j] -= lr * p->grad[j];
    }
    return dl_item(loss);
}

static void test_steady_state_step_does_not_malloc(void) {
    convnet m;
    dl_rng rng;
    dl_arena *arena = dl_arena_new(1 << 16), *prev = dl_arena_use(arena);
    long before = 0;
    int step;
    convnet_init(&m, 1);
    dl_rng_seed(&rng, 2);
    for (step = 0; step < 6; step++) {
        dl_arena_reset(arena);
        if (step == 3) before = test_mallocs;  /* warm: arena blocks, grads, GEMM buffers */
        CHECK(!isnan(convnet_step(&m, &rng, 0.05f)), "step %d: %s", step, dl_error());
    }
    CHECK(test_mallocs == before, "steady-state steps called malloc %ld times", test_mallocs - before);
    dl_arena_use(prev);
    dl_arena_free(arena);
    convnet_free(&m);
}

static void train_with_threads(int threads, convnet *m, float *final_loss) {
    dl_rng rng;
    dl_arena *arena = dl_arena_new(1 << 20), *prev = dl_arena_use(arena);
    int step;
    dl_set_num_threads(threads);
    convnet_init(m, 11);
    dl_rng_seed(&rng, 12);
    for (step = 0; step < 40; step++) {
        dl_arena_reset(arena);
        *final_loss = convnet_step(m, &rng, 0.05f);
    }
    dl_arena_use(prev);
    dl_arena_free(arena);
}

static void test_same_bits_for_1_and_2_threads_and_learns(void) {
    convnet a, b;
    float loss_a, loss_b;
    int i, same = 1;
    train_with_threads(1, &a, &loss_a);
    train_with_threads(2, &b, &loss_b);
    dl_set_num_threads(0);
    for (i = 0; i < 8; i++)
        same &= memcmp(convnet_params(&a)[i]->data, convnet_params(&b)[i]->data, convnet_params(&a)[i]->numel * 4) == 0;
    CHECK(same, "weights differ between 1 and 2 threads");
    CHECK(loss_a == loss_b, "losses %.9g vs %.9g", loss_a, loss_b);
    printf("    convnet loss after 40 steps: %g\n", loss_a);
    CHECK(loss_a < 0.2f, "the convnet learns the toy task: final loss %g", loss_a);
    convnet_free(&a);
    convnet_free(&b);
}

static void test_xor_with_plain_autograd(void) {
    static const float xs[8] = {0, 0, 0, 1, 1, 0, 1, 1}, ys[4] = {0, 1, 1, 0};
    dl_rng rng;
    dl_tensor *w1 = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(2, 8)), *b1 = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(8));
    dl_tensor *w2 = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(8, 1)), *b2 = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(1));
    dl_tensor *params[4];
    dl_arena *arena = dl_arena_new(1 << 16), *prev = dl_arena_use(arena);
    float loss = 1;
    int step, i;
    size_t j;
    params[0] = w1; params[1] = b1; params[2] = w2; params[3] = b2;
    dl_rng_seed(&rng, 5);
    dl_init_glorot_uniform(w1, 2, 8, &rng);
    dl_init_glorot_uniform(w2, 8, 1, &rng);
    for (i = 0; i < 4; i++) dl_set_requires_grad(params[i], 1);
    for (step = 0; step < 2000; step++) {
        dl_tensor *x, *t, *out, *l;
        dl_arena_reset(arena);
        x = dl_tmp_from(DL_DTYPE_F32, 2, DL_SHAPE(4, 2), xs);
        t = dl_tmp_from(DL_DTYPE_F32, 2, DL_SHAPE(4, 1), ys);
        out = dl_linear(dl_tanh(dl_linear(x, w1, b1)), w2, b2);
        l = dl_bce_with_logits(out, t);
        for (i = 0; i < 4; i++) dl_zero_grad(params[i]);
        if (dl_backward(l) != 0) break;
        loss = dl_item(l);
        for (i = 0; i < 4; i++)
            for (j = 0; j < params[i]->numel; j++) dl_f32(params[i])[j] -= 0.5f * params[i]->grad[j];
    }
    printf("    XOR loss after 2000 steps: %g\n", loss);
    CHECK(loss < 0.02f, "XOR loss after 2000 steps: %g (%s)", loss, dl_error());
    dl_arena_use(prev);
    dl_arena_free(arena);
    for (i = 0; i < 4; i++) dl_tensor_free(params[i]);
}

int main(void) {
    (void)count_realloc;
    RUN(test_steady_state_step_does_not_malloc);
    RUN(test_same_bits_for_1_and_2_threads_and_learns);
    RUN(test_xor_with_plain_autograd);
    dl_arena_free_default();
    dl_threads_shutdown();
    return test_summary();
}
