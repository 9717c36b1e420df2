/* Core of dl_tensor.h: arenas, tensors, views, the tape, user-defined ops, gradcheck, RNG. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "count_alloc.h"
#define DL_IMPLEMENTATION
#include "../dl_tensor.h"
#include "test.h"

/* A user-defined op, written the documented way: y = x^3 (elementwise), dy/dx = 3x^2. */
static void cube_backward(dl_node *n) {
    dl_tensor *x = n->in[0];
    float *gx = dl_grad_buf(x);
    const float *xs = dl_contig_f32(x);
    size_t i;
    if (!gx || !xs) return;
    for (i = 0; i < x->numel; i++) gx[i] += 3.0f * xs[i] * xs[i] * n->out->grad[i];
}

static dl_tensor *cube(dl_tensor *x) {
    dl_tensor *y;
    const float *xs;
    size_t i;
    if (!x) return NULL;
    if (x->dtype != DL_DTYPE_F32) { dl_set_error("cube: need f32"); return NULL; }
    xs = dl_contig_f32(x);
    y = dl_tmp_uninit(DL_DTYPE_F32, x->ndim, x->shape);
    if (!y || !xs) return NULL;
    for (i = 0; i < x->numel; i++) dl_f32(y)[i] = xs[i] * xs[i] * xs[i];
    dl_record("cube", y, 1, &x, cube_backward, 0);
    return y;
}

static void test_tensor_basics(void) {
    dl_tensor *t = dl_tensor_new(DL_DTYPE_F32, 3, DL_SHAPE(2, 3, 4));
    int idx[3] = {1, 2, 3};
    CHECK(t != NULL, "%s", dl_error());
    CHECK(t->numel == 24 && t->strides[0] == 12 && t->strides[1] == 4 && t->strides[2] == 1, "strides");
    CHECK(dl_is_contiguous(t), "fresh tensor is contiguous");
    dl_set(t, idx, 5.0f);
    CHECK(dl_f32(t)[23] == 5.0f, "dl_set writes the last element");
    CHECK(dl_get(t, idx) == 5.0f, "dl_get");
    CHECK(dl_i32(t) == NULL, "wrong dtype accessor gives NULL");
    dl_tensor_free(t);
    {
        dl_tensor *five = dl_tensor_new(DL_DTYPE_U8, 5, DL_SHAPE(2, 1, 3, 1, 2));
        CHECK(five && five->numel == 12, "5-d u8 tensor");
        dl_tensor_free(five);
    }
}

static void test_errors(void) {
    dl_clear_error();
    CHECK(dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(2, -1)) == NULL, "negative dim");
    CHECK(strstr(dl_error(), "negative") != NULL, "message: %s", dl_error());
    CHECK(dl_tensor_new(DL_DTYPE_F32, 9, DL_SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1)) == NULL, "too many dims");
    CHECK(dl_tensor_new((dl_dtype)7, 1, DL_SHAPE(2)) == NULL, "bad dtype");
    CHECK(dl_reshape(NULL, 1, DL_SHAPE(2)) == NULL, "NULL propagates");
    dl_clear_error();
    CHECK(dl_reshape(dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(6)), 2, DL_SHAPE(4, 2)) == NULL, "reshape size mismatch");
    CHECK(strstr(dl_error(), "reshape") != NULL, "message names the op: %s", dl_error());
    CHECK(dl_permute(dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(2, 2)), DL_SHAPE(0, 0)) == NULL, "bad permutation");
    CHECK(dl_backward(dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(3))) != 0, "backward of a non-scalar without grad");
    CHECK(dl_slice(dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(3)), 0, 0, 3, 0) == NULL, "zero step");
}

static void test_views_share_memory(void) {
    dl_tensor *x = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(3, 4));
    dl_tensor *t, *s, *r;
    int i, idx[2];
    for (i = 0; i < 12; i++) dl_f32(x)[i] = (float)i;
    t = dl_transpose(x, 0, 1);
    CHECK(t && t->shape[0] == 4 && t->shape[1] == 3 && !dl_is_contiguous(t), "transpose view");
    CHECK(t->data == x->data, "transpose shares data");
    idx[0] = 3; idx[1] = 1;
    CHECK(dl_get(t, idx) == 7.0f, "t[3][1] = x[1][3] = 7");
    s = dl_slice(x, 1, 1, 4, 2); /* columns 1 and 3 */
    CHECK(s && s->shape[1] == 2 && s->numel == 6, "slice shape");
    idx[0] = 2; idx[1] = 1;
    CHECK(dl_get(s, idx) == 11.0f, "s[2][1] = x[2][3]");
    s = dl_slice(x, 0, -2, 100, 1); /* Python x[-2:100] */
    CHECK(s && s->shape[0] == 2 && dl_f32(s)[0] == 4.0f, "negative start, clamped stop");
    r = dl_reshape(t, 2, DL_SHAPE(2, -1)); /* non-contiguous: copies */
    CHECK(r && r->shape[1] == 6 && dl_f32(r)[1] == 4.0f, "reshape of a transposed view copies in logical order");
    r = dl_reshape(x, 3, DL_SHAPE(2, 2, 3));
    CHECK(r && r->data == x->data, "reshape of contiguous is a view");
    r = dl_unsqueeze(x, 0);
    CHECK(r && r->ndim == 3 && r->shape[0] == 1, "unsqueeze");
    r = dl_flatten(dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(2, 3, 4, 5)), 1, -1);
    CHECK(r && r->ndim == 2 && r->shape[1] == 60, "flatten");
    dl_arena_reset(dl_arena_current());
}

static void test_integer_copies_are_exact(void) {
    int32_t v[4] = {16777217, -2147483647 - 1, 2147483647, 5};
    dl_tensor *x = dl_tmp_from(DL_DTYPE_I32, 2, DL_SHAPE(2, 2), v);
    dl_tensor *c = dl_contiguous(dl_transpose(x, 0, 1));
    dl_tensor *u = dl_tmp(DL_DTYPE_U8, 1, DL_SHAPE(3)), *f = dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(3));
    CHECK(c && dl_i32(c)[0] == 16777217 && dl_i32(c)[1] == 2147483647 && dl_i32(c)[2] == -2147483647 - 1,
          "i32 values above 2^24 survive a strided copy");
    dl_f32(f)[0] = -3.0f; dl_f32(f)[1] = 300.0f; dl_f32(f)[2] = 7.9f;
    CHECK(dl_copy(u, f) == 0 && dl_u8(u)[0] == 0 && dl_u8(u)[1] == 255 && dl_u8(u)[2] == 7, "f32 -> u8 saturates, truncates");
    dl_arena_reset(dl_arena_current());
}

static dl_tensor *f_cube(dl_tensor **in, void *user) { (void)user; return cube(in[0]); }
static dl_tensor *f_cube_of_transpose(dl_tensor **in, void *user) { (void)user; return cube(dl_transpose(in[0], 0, 1)); }
static dl_tensor *f_cube_of_slice(dl_tensor **in, void *user) { (void)user; return cube(dl_slice(dl_transpose(in[0], 0, 2), 1, 1, 3, 1)); }
static dl_tensor *f_reshape_permute(dl_tensor **in, void *user) {
    (void)user;
    return cube(dl_permute(dl_reshape(dl_slice(in[0], 0, 0, 4, 2), 3, DL_SHAPE(2, 3, 2)), DL_SHAPE(2, 0, 1)));
}

static void test_user_op_and_gradcheck(void) {
    dl_rng rng;
    dl_tensor *x = dl_tensor_new(DL_DTYPE_F32, 3, DL_SHAPE(2, 3, 4));
    dl_tensor *y;
    dl_rng_seed(&rng, 7);
    dl_fill_uniform(x, -1, 1, &rng);
    dl_set_requires_grad(x, 1);
    CHECK(dl_gradcheck(f_cube, NULL, 1, &x, 0, 0) == 0, "%s", dl_error());
    CHECK(dl_gradcheck(f_cube_of_slice, NULL, 1, &x, 0, 0) == 0, "%s", dl_error());
    {
        dl_tensor *x2 = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(3, 5));
        dl_tensor *x4 = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(4, 6));
        dl_fill_uniform(x2, -1, 1, &rng);
        dl_fill_uniform(x4, -1, 1, &rng);
        dl_set_requires_grad(x2, 1);
        dl_set_requires_grad(x4, 1);
        CHECK(dl_gradcheck(f_cube_of_transpose, NULL, 1, &x2, 0, 0) == 0, "%s", dl_error());
        CHECK(dl_gradcheck(f_reshape_permute, NULL, 1, &x4, 0, 0) == 0, "%s", dl_error());
        dl_tensor_free(x2);
        dl_tensor_free(x4);
    }
    /* A non-contiguous input (a transposed view of a parameter) to the checker itself. */
    {
        dl_tensor *xt = dl_transpose(x, 0, 2);
        CHECK(xt && !dl_is_contiguous(xt), "view input");
        CHECK(dl_gradcheck(f_cube, NULL, 1, &xt, 0, 0) == 0, "%s", dl_error());
    }
    /* The checker must also catch a wrong backward. */
    {
        dl_tensor *w = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(3));
        dl_fill_uniform(w, 0.5f, 1, &rng);
        dl_set_requires_grad(w, 1);
        CHECK(dl_gradcheck(f_cube, NULL, 1, &w, 0, 0) == 0, "%s", dl_error());
        dl_tensor_free(w);
    }
    /* Gradients of leaves accumulate until zeroed; exact values: d(sum x^3) = 3x^2. */
    dl_zero_grad(x);
    y = cube(x);
    {
        float ones[24];
        int i;
        for (i = 0; i < 24; i++) ones[i] = 1.0f;
        dl_backward_grad(y, ones);
        dl_backward_grad(y, ones);
        CHECK_NEAR(x->grad[5], 6.0f * dl_f32(x)[5] * dl_f32(x)[5], 1e-5);
        dl_zero_grad(x);
        CHECK(x->grad[5] == 0.0f, "zero_grad");
    }
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
}

static void cube_wrong_backward(dl_node *n) {
    float *gx = dl_grad_buf(n->in[0]);
    size_t i;
    if (gx) for (i = 0; i < n->out->numel; i++) gx[i] += 2.0f * n->out->grad[i];
}
static dl_tensor *f_wrong(dl_tensor **in, void *user) {
    dl_tensor *y = dl_tmp_uninit(DL_DTYPE_F32, in[0]->ndim, in[0]->shape);
    size_t i;
    (void)user;
    for (i = 0; i < y->numel; i++) dl_f32(y)[i] = dl_f32(in[0])[i] * dl_f32(in[0])[i] * dl_f32(in[0])[i];
    dl_record("wrong", y, 1, in, cube_wrong_backward, 0);
    return y;
}

static void test_gradcheck_catches_bugs(void) {
    dl_tensor *x = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(4));
    dl_rng rng;
    dl_rng_seed(&rng, 3);
    dl_fill_uniform(x, 1, 2, &rng);
    dl_set_requires_grad(x, 1);
    CHECK(dl_gradcheck(f_wrong, NULL, 1, &x, 0, 0) != 0, "a wrong backward must fail");
    CHECK(strstr(dl_error(), "analytic") != NULL, "message: %s", dl_error());
    dl_tensor_free(x);
}

static void test_no_grad_and_detach(void) {
    dl_tensor *x = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(3));
    dl_tensor *y;
    int prev;
    dl_set_requires_grad(x, 1);
    prev = dl_no_grad(1);
    y = cube(x);
    CHECK(y && !y->requires_grad && y->node == NULL, "no tape in no-grad mode");
    dl_no_grad(prev);
    y = cube(dl_detach(x));
    CHECK(y && !y->requires_grad, "detached input needs no gradient");
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
}

static void test_steady_state_no_malloc(void) {
    dl_arena *a = dl_arena_new(1024);
    dl_arena *prev = dl_arena_use(a);
    dl_tensor *w = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(64, 64));
    long before = 0;
    int step;
    dl_set_requires_grad(w, 1);
    for (step = 0; step < 5; step++) {
        dl_tensor *y;
        dl_arena_reset(a);
        if (step == 2) before = test_mallocs;
        y = cube(dl_slice(dl_transpose(w, 0, 1), 0, 1, 60, 3));
        dl_backward_grad(y, dl_f32(dl_full(y->ndim, y->shape, 1.0f)));
    }
    CHECK(test_mallocs == before, "steady state steps called malloc %ld times", test_mallocs - before);
    CHECK(dl_arena_used(a) > 0 && dl_arena_capacity(a) >= dl_arena_used(a), "arena accounting");
    dl_arena_use(prev);
    dl_arena_free(a);
    dl_tensor_free(w);
}

static void test_rng(void) {
    dl_rng a, b;
    int perm[100], seen[100] = {0}, i, ok = 1;
    double mean = 0, var = 0;
    dl_rng_seed(&a, 42);
    dl_rng_seed(&b, 42);
    for (i = 0; i < 10; i++) ok &= dl_rng_u64(&a) == dl_rng_u64(&b);
    CHECK(ok, "same seed, same stream");
    /* xoshiro256** reference: state {1,2,3,4} gives 11520 first (Vigna's reference code). */
    a.s[0] = 1; a.s[1] = 2; a.s[2] = 3; a.s[3] = 4;
    CHECK(dl_rng_u64(&a) == 11520u, "xoshiro256** reference value");
    dl_rng_permutation(&b, 100, perm);
    for (i = 0; i < 100; i++) seen[perm[i]]++;
    for (i = 0; i < 100; i++) ok &= seen[i] == 1;
    CHECK(ok, "permutation");
    for (i = 0; i < 20000; i++) { double z = dl_rng_normal(&b); mean += z; var += z * z; }
    mean /= 20000; var = var / 20000 - mean * mean;
    CHECK(fabs(mean) < 0.03 && fabs(var - 1) < 0.05, "normal moments: mean %g var %g", mean, var);
    {
        dl_tensor *t = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(10000));
        float limit = sqrtf(6.0f / 300.0f), mx = 0;
        size_t j;
        double s2 = 0;
        dl_init_glorot_uniform(t, 100, 200, &b);
        for (j = 0; j < t->numel; j++) { float v = fabsf(dl_f32(t)[j]); if (v > mx) mx = v; }
        CHECK(mx <= limit && mx > 0.95f * limit, "glorot uniform bound");
        dl_init_he_normal(t, 50, &b);
        for (j = 0; j < t->numel; j++) s2 += dl_f32(t)[j] * dl_f32(t)[j];
        CHECK(fabs(s2 / 10000 - 2.0 / 50) < 0.004, "he_normal variance %g", s2 / 10000);
        dl_fill_bernoulli(t, 0.3f, &b);
        s2 = 0;
        for (j = 0; j < t->numel; j++) s2 += dl_f32(t)[j];
        CHECK(fabs(s2 / 10000 - 0.3) < 0.02, "bernoulli rate");
        dl_tensor_free(t);
    }
}

/* One version for the family: the macros agree with each other and with every header's first line. */
static void test_version(void) {
    static const char *const files[] = {"dl_tensor.h", "dl_optim.h", "dl_nn.h", "dl_rl.h", "dl_gan.h"};
    char want[32], line[256];
    size_t i;
    snprintf(want, sizeof want, "%d.%d.%d", DL_VERSION_MAJOR, DL_VERSION_MINOR, DL_VERSION_PATCH);
    CHECK(strcmp(want, DL_VERSION_STRING) == 0, "%s vs %s", want, DL_VERSION_STRING);
    CHECK(DL_VERSION == DL_VERSION_MAJOR * 10000 + DL_VERSION_MINOR * 100 + DL_VERSION_PATCH, "DL_VERSION");
    snprintf(want, sizeof want, " - v%s - ", DL_VERSION_STRING);
    for (i = 0; i < sizeof files / sizeof files[0]; i++) {
        FILE *f = fopen(files[i], "r");
        if (!f) continue;   /* a header not written yet */
        CHECK(fgets(line, sizeof line, f) && strstr(line, want), "%s's first line: %s", files[i], line);
        fclose(f);
    }
}

/* Absurd sizes fail with a message; no size arithmetic wraps into a small or wrong result. */
static void test_absurd_sizes(void) {
    dl_arena *a = dl_arena_new(0);
    dl_tensor *x, *v, *xs[2];
    int i;
    float vals[5] = {0, 1, 2, 3, 4};
    dl_clear_error();
    CHECK(dl_arena_alloc(a, SIZE_MAX) == NULL, "SIZE_MAX bytes must fail, not round to 64");
    CHECK(strstr(dl_error(), "dl_arena_alloc") != NULL, "message: %s", dl_error());
    CHECK(dl_arena_alloc(a, SIZE_MAX - 8) == NULL, "SIZE_MAX - 8 bytes");
    dl_arena_free(a);
    dl_clear_error();
    CHECK(dl_arena_new(SIZE_MAX - 8) == NULL, "an arena of SIZE_MAX - 8 bytes");
    CHECK(strstr(dl_error(), "dl_arena_new") != NULL, "message: %s", dl_error());
    /* a zero axis first: numel is 0, but the strides would be INT_MAX^3 */
    dl_clear_error();
    CHECK(dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(0, INT_MAX, INT_MAX, INT_MAX)) == NULL, "strides overflow");
    CHECK(strstr(dl_error(), "dl_tensor_new") != NULL, "message: %s", dl_error());
    CHECK(dl_tmp(DL_DTYPE_F32, 3, DL_SHAPE(INT_MAX, INT_MAX, 4)) == NULL, "numel over 2^40");
    x = dl_tmp_from(DL_DTYPE_F32, 1, DL_SHAPE(5), vals);
    for (i = 0; i < 2; i++) { /* a step near INT_MAX takes one element, as in Python */
        v = dl_slice(x, 0, 1, 5, INT_MAX - i);
        CHECK(v && v->shape[0] == 1 && v->numel == 1, "slice with step INT_MAX - %d", i);
        if (v) CHECK(dl_f32(v)[0] == 1.0f, "x[1::huge]");
    }
    v = dl_slice(x, 0, INT_MIN, INT_MAX, INT_MAX);
    CHECK(v && v->numel == 1 && dl_f32(v)[0] == 0.0f, "x[-big:big:huge]");
    /* reshape: 8 axes of INT_MAX multiply (mod 2^64) to a small number */
    dl_clear_error();
    CHECK(dl_reshape(x, 8, DL_SHAPE(INT_MAX, INT_MAX, INT_MAX, INT_MAX, INT_MAX, INT_MAX, INT_MAX, INT_MAX)) == NULL, "reshape");
    CHECK(strstr(dl_error(), "dl_reshape") != NULL, "message: %s", dl_error());
    /* flatten of 2^16 x 2^16: the product is over INT_MAX (zero axis keeps it cheap) */
    x = dl_tmp(DL_DTYPE_F32, 3, DL_SHAPE(0, 65536, 65536));
    dl_clear_error();
    CHECK(x && dl_flatten(x, 1, 2) == NULL, "flatten to 2^32");
    CHECK(strstr(dl_error(), "dl_flatten") != NULL, "message: %s", dl_error());
    xs[0] = xs[1] = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(0, INT_MAX));
    dl_clear_error();
    CHECK(dl_concat(2, xs, 1) == NULL, "concat of two INT_MAX axes");
    CHECK(strstr(dl_error(), "dl_concat") != NULL, "message: %s", dl_error());
    {
        dl_tensor *outs[2];
        x = dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(4));
        CHECK(dl_split(x, 0, 2, DL_SHAPE(2, INT_MAX), outs) == -1, "split sizes overflow");
    }
    dl_clear_error();
    dl_arena_reset(dl_arena_current());
}

int main(void) {
    (void)count_realloc; /* counted too, should the library ever realloc */
    RUN(test_tensor_basics);
    RUN(test_errors);
    RUN(test_views_share_memory);
    RUN(test_integer_copies_are_exact);
    RUN(test_user_op_and_gradcheck);
    RUN(test_gradcheck_catches_bugs);
    RUN(test_no_grad_and_detach);
    RUN(test_steady_state_no_malloc);
    RUN(test_rng);
    RUN(test_version);
    RUN(test_absurd_sizes);
    dl_arena_free_default();
    return test_summary();
}
