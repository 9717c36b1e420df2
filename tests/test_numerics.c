/* dl_check_numerics: the first op whose output (forward) or input gradient (backward) holds a
   NaN or an infinity fails, naming the op and the shapes; off, values propagate as before. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "count_alloc.h"
#define DL_IMPLEMENTATION
#include "../dl_tensor.h"
#include "test.h"

static int has(const char *needle) { return strstr(dl_error(), needle) != NULL; }

static dl_tensor *vec(int n, const float *v) { return dl_tmp_from(DL_DTYPE_F32, 1, &n, v); }

static void test_off_by_default(void) {
    float v[3] = {1.0f, -1.0f, 2.0f};
    dl_tensor *y;
    CHECK(dl_check_numerics(0) == 0, "checking starts off");
    dl_clear_error();
    y = dl_log(vec(3, v));
    CHECK(y != NULL, "off: a NaN is a value, not an error");
    CHECK(y && dl_f32(y)[1] != dl_f32(y)[1], "log(-1) is NaN");
    CHECK(y && dl_f32(y)[0] == 0.0f, "log(1) is 0");
    CHECK(dl_error()[0] == 0, "no message: %s", dl_error());
    y = dl_add_scalar(y, 1.0f);
    CHECK(y && dl_f32(y)[1] != dl_f32(y)[1], "the NaN propagates");
    dl_arena_reset(dl_arena_current());
}

static void test_log_of_negative(void) {
    float v[3] = {1.0f, -1.0f, 2.0f};
    dl_tensor *x;
    CHECK(dl_check_numerics(1) == 0, "previous setting: off");
    CHECK(dl_check_numerics(1) == 1, "previous setting: on");
    x = vec(3, v);
    dl_clear_error();
    CHECK(dl_log(x) == NULL, "log(-1) fails");
    CHECK(has("log:") && has("[3]") && has("nan") && has("element 1"), "message: %s", dl_error());
    CHECK(has("dl_check_numerics"), "message names the mode: %s", dl_error());
    CHECK(!has("already"), "the NaN was made here: %s", dl_error());
    dl_clear_error();
    CHECK(dl_sqrt(dl_abs(x)) != NULL, "finite outputs pass");
    CHECK(dl_error()[0] == 0, "no message: %s", dl_error());
    dl_check_numerics(0);
    dl_arena_reset(dl_arena_current());
}

static void test_div_zero_by_zero(void) {
    float a[6] = {1, 2, 3, 4, 0, 6}, b[3] = {1, 0, 2};
    dl_tensor *ta = dl_tmp_from(DL_DTYPE_F32, 2, DL_SHAPE(2, 3), a), *tb = vec(3, b);
    dl_check_numerics(1);
    CHECK(dl_div(ta, tb) == NULL, "x / 0 fails");
    CHECK(has("div:") && has("inputs [2, 3], [3]") && has("output [2, 3]"), "message: %s", dl_error());
    CHECK(has("inf at element 1"), "2 / 0 is the first bad element: %s", dl_error());
    CHECK(dl_div(dl_slice(ta, 0, 1, 2, 1), tb) == NULL, "0 / 0 fails");
    CHECK(has("div:") && has("nan at element 1") && has("inputs [1, 3], [3]"), "message: %s", dl_error());
    dl_check_numerics(0);
    CHECK(dl_div(ta, tb) != NULL, "off again: no failure");
    dl_arena_reset(dl_arena_current());
}

static void test_exp_overflow(void) {
    float v[2] = {1.0f, 100.0f};
    dl_tensor *x = vec(2, v);
    dl_check_numerics(1);
    CHECK(dl_exp(x) == NULL, "exp(100) overflows f32");
    CHECK(has("exp:") && has("inf at element 1") && has("inputs [2]"), "message: %s", dl_error());
    v[0] = v[1] = 3e38f;
    CHECK(dl_sum_all(vec(2, v)) == NULL, "a sum of finite values can overflow too");
    CHECK(has("sum_all:") && has("output []") && has("inf at element 0"), "message: %s", dl_error());
    dl_check_numerics(0);
    dl_arena_reset(dl_arena_current());
}

static void test_grad_and_no_grad_modes(void) {
    float v[2] = {-1.0f, 4.0f};
    dl_tensor *x = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(2), v);
    int prev;
    dl_set_requires_grad(x, 1);
    dl_check_numerics(1);
    CHECK(dl_sqrt(x) == NULL, "recorded op fails");
    CHECK(has("sqrt:") && has("nan at element 0"), "message: %s", dl_error());
    prev = dl_no_grad(1);
    CHECK(dl_sqrt(x) == NULL, "checked in no-grad mode too");
    dl_no_grad(prev);
    dl_check_numerics(0);
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
}

/* NaN or inf only in backward: sqrt'(0) = inf, and pow(x, 0.5) the same. */
static dl_tensor *sqrt_loss(dl_tensor *x) { return dl_sum_all(dl_mul_scalar(dl_sqrt(x), 2.0f)); }
static dl_tensor *pow_loss(dl_tensor *x) { return dl_mean_all(dl_pow(x, 0.5f)); }

static void test_backward(void) {
    float v[3] = {4.0f, 0.0f, 1.0f};
    dl_tensor *x = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(3), v), *loss;
    dl_set_requires_grad(x, 1);

    loss = sqrt_loss(x);  /* off: the infinite gradient arrives in x->grad */
    CHECK(loss && dl_backward(loss) == 0, "off: backward succeeds: %s", dl_error());
    CHECK(x->grad && x->grad[1] > 3e38f && x->grad[0] == 0.5f, "grad: %g %g", x->grad ? x->grad[0] : 0.0, x->grad ? x->grad[1] : 0.0);
    dl_arena_reset(dl_arena_current());

    dl_zero_grad(x);
    dl_check_numerics(1);
    loss = sqrt_loss(x);
    CHECK(loss != NULL, "forward is finite: %s", dl_error());
    CHECK(loss && dl_backward(loss) == -1, "backward fails");
    CHECK(has("dl_backward:") && has("backward of sqrt") && has("inf at element 1") && has("inputs [3]"),
          "message names sqrt, not mul_scalar or sum_all: %s", dl_error());
    dl_arena_reset(dl_arena_current());

    dl_zero_grad(x);
    loss = pow_loss(x);
    CHECK(loss && dl_backward(loss) == -1, "pow's backward fails");
    CHECK(has("backward of pow") && has("inf at element 1"), "message: %s", dl_error());
    dl_arena_reset(dl_arena_current());

    /* a NaN only in backward: sqrt(x) * 0 is 0, but its gradient 0 / (2 sqrt(0)) is NaN */
    dl_zero_grad(x);
    loss = dl_sum_all(dl_mul_scalar(dl_sqrt(x), 0.0f));
    CHECK(loss != NULL && dl_item(loss) == 0.0f, "forward is finite: %s", dl_error());
    CHECK(loss && dl_backward(loss) == -1, "backward fails");
    CHECK(has("backward of sqrt") && has("nan at element 1") && has("output [3]"), "message: %s", dl_error());
    dl_arena_reset(dl_arena_current());

    {
        float seed[1] = {NAN};
        loss = sqrt_loss(dl_abs(x));
        CHECK(loss && dl_backward_grad(loss, seed) == -1 && has("seed"), "a NaN seed fails: %s", dl_error());
    }
    dl_check_numerics(0);
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
}

static void test_input_already_bad(void) {
    float v[4] = {1.0f, 2.0f, NAN, 3.0f};
    dl_tensor *x = dl_tmp_from(DL_DTYPE_F32, 2, DL_SHAPE(2, 2), v), *t;
    dl_check_numerics(1);
    t = dl_transpose(x, 0, 1);  /* views are not checked: they compute nothing */
    CHECK(t != NULL && dl_reshape(x, 1, DL_SHAPE(4)) != NULL, "views pass: %s", dl_error());
    CHECK(dl_add_scalar(t, 1.0f) == NULL, "the next op fails");
    /* x[1][0] is t[0][1]: flat element 1 of the output */
    CHECK(has("add_scalar:") && has("nan at element 1") && has("input 0 already was not finite"), "message: %s", dl_error());
    dl_check_numerics(0);
    dl_arena_reset(dl_arena_current());
}

/* An op of one's own that returns a strided view: y = x, read through a transpose or a slice of
   a scratch buffer that holds other values outside the view. */
static void own_backward(dl_node *n) { (void)n; }
static dl_tensor *own_op(dl_tensor *x, float outside, int transpose) {
    dl_tensor *buf = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(3, 3)), *y;
    int i, j;
    if (!x || !buf) return NULL;
    for (i = 0; i < 3; i++)
        for (j = 0; j < 3; j++) dl_f32(buf)[i * 3 + j] = j == 2 ? outside : dl_get(x, DL_SHAPE(transpose ? j : i, transpose ? i : j));
    y = transpose ? dl_transpose(buf, 0, 1) : dl_slice(buf, 1, 0, 2, 1);
    if (!y) return NULL;
    dl_record("own_op", y, 1, &x, own_backward, 0);
    return y;
}

static void test_strided_output(void) {
    float v[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    dl_tensor *x = dl_tmp_from(DL_DTYPE_F32, 2, DL_SHAPE(3, 3), v), *y;
    dl_check_numerics(1);
    dl_clear_error();
    y = own_op(x, NAN, 0);  /* slice [:, 0:2]: the NaN column is outside the view */
    CHECK(y && !dl_is_contiguous(y) && dl_error()[0] == 0, "a finite strided view passes: %s", dl_error());
    CHECK(y && dl_add_scalar(y, 1.0f) != NULL, "and the next op too: %s", dl_error());
    y = own_op(x, NAN, 1);  /* transpose: buf column 2 is row 2 of y, flat elements 6..8 */
    CHECK(y && !dl_is_contiguous(y), "own op still returns its tensor");
    CHECK(has("own_op:") && has("nan at element 6") && has("output [3, 3]"), "message: %s", dl_error());
    CHECK(dl_mul_scalar(y, 2.0f) == NULL, "ops given the failed output fail");
    CHECK(dl_relu(dl_reshape(y, 1, DL_SHAPE(9))) == NULL, "also through a view");
    CHECK(has("own_op:"), "the first message is kept: %s", dl_error());
    dl_check_numerics(0);
    dl_arena_reset(dl_arena_current());
}

/* A small MLP's training step: with checking on and finite values, the same bits, and in steady
   state no allocation (not even from the arena: the same bytes used). */
static size_t train(int check, int steps, float *w_out, long *mallocs) {
    float xs[8 * 4], ys[8];
    dl_rng rng;
    dl_arena *a = dl_arena_new(1 << 16), *prev = dl_arena_use(a);
    dl_tensor *w1 = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(4, 16)), *b1 = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(16));
    dl_tensor *w2 = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(16, 1)), *b2 = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(1));
    dl_tensor *ps[4];
    size_t used = 0;
    long before = 0;
    int s, i, k, was = dl_check_numerics(check);
    ps[0] = w1; ps[1] = b1; ps[2] = w2; ps[3] = b2;
    dl_rng_seed(&rng, 7);
    for (i = 0; i < 32; i++) xs[i] = dl_rng_uniform(&rng) * 2.0f - 1.0f;
    for (i = 0; i < 8; i++) ys[i] = xs[4 * i] - 2.0f * xs[4 * i + 3];
    dl_fill_uniform(w1, -0.5f, 0.5f, &rng);
    dl_fill_uniform(w2, -0.5f, 0.5f, &rng);
    for (i = 0; i < 4; i++) dl_set_requires_grad(ps[i], 1);
    for (s = 0; s < steps; s++) {
        dl_tensor *x, *y, *loss;
        dl_arena_reset(a);
        if (s == 2) before = test_mallocs;
        x = dl_tmp_from(DL_DTYPE_F32, 2, DL_SHAPE(8, 4), xs);
        y = dl_tmp_from(DL_DTYPE_F32, 2, DL_SHAPE(8, 1), ys);
        loss = dl_mse(dl_linear(dl_tanh(dl_linear(x, w1, b1)), w2, b2), y);
        for (i = 0; i < 4; i++) dl_zero_grad(ps[i]);
        CHECK(loss && dl_backward(loss) == 0, "step %d: %s", s, dl_error());
        if (!loss) break;
        for (i = 0; i < 4; i++)
            for (k = 0; k < (int)ps[i]->numel; k++) dl_f32(ps[i])[k] -= 0.1f * ps[i]->grad[k];
        used = dl_arena_used(a);
    }
    *mallocs = test_mallocs - before;
    memcpy(w_out, dl_f32(w1), 64 * sizeof(float));
    memcpy(w_out + 64, dl_f32(w2), 16 * sizeof(float));
    dl_check_numerics(was);
    dl_arena_use(prev);
    dl_arena_free(a);
    for (i = 0; i < 4; i++) dl_tensor_free(ps[i]);
    return used;
}

static void test_training_step_unchanged(void) {
    float off[80], on[80];
    long m_off, m_on;
    size_t used_off = train(0, 6, off, &m_off), used_on = train(1, 6, on, &m_on);
    CHECK(memcmp(off, on, sizeof off) == 0, "the same weights, bit for bit");
    CHECK(off[0] != 0.0f || off[1] != 0.0f, "weights are set");
    CHECK(m_on == 0 && m_off == 0, "steady state mallocs: on %ld, off %ld", m_on, m_off);
    CHECK(used_on == used_off && used_on > 0, "arena bytes per step: on %zu, off %zu", used_on, used_off);
}

static void *other_thread(void *arg) {
    *(int *)arg = dl_check_numerics(0); /* this thread's own setting: off */
    return NULL;
}

static void test_per_thread(void) {
    pthread_t t;
    int seen = -1;
    dl_check_numerics(1);
    CHECK(pthread_create(&t, NULL, other_thread, &seen) == 0, "thread");
    pthread_join(t, NULL);
    CHECK(seen == 0, "another thread starts off (saw %d)", seen);
    CHECK(dl_check_numerics(0) == 1, "this thread's setting is untouched");
}

int main(void) {
    RUN(test_off_by_default);
    RUN(test_log_of_negative);
    RUN(test_div_zero_by_zero);
    RUN(test_exp_overflow);
    RUN(test_grad_and_no_grad_modes);
    RUN(test_backward);
    RUN(test_input_already_bad);
    RUN(test_strided_output);
    RUN(test_training_step_unchanged);
    RUN(test_per_thread);
    dl_arena_free_default();
    return test_summary();
}
