/* Matrix products, activations, softmax and losses of dl_tensor.h.
   Reference numbers come from PyTorch 1.13 (torch.nn.functional), pasted as constants. */
#include <stdlib.h>

#include "count_alloc.h"
#define DL_IMPLEMENTATION
#include "../dl_tensor.h"
#include "test.h"

static dl_rng rng;

/* A persistent f32 parameter with values in [-1, 1] that requires a gradient. */
static dl_tensor *param(int ndim, const int *shape) {
    dl_tensor *t = dl_tensor_new(DL_DTYPE_F32, ndim, shape);
    dl_fill_uniform(t, -1, 1, &rng);
    dl_set_requires_grad(t, 1);
    return t;
}

static dl_tensor *from(int ndim, const int *shape, const float *v) { return dl_tmp_from(DL_DTYPE_F32, ndim, shape, v); }

/* ---- matmul ---- */

/* Naive op(a) @ op(b) over broadcast batch axes, read element by element with dl_get. */
static void ref_matmul(const dl_tensor *a, const dl_tensor *b, int ta, int tb, float *out) {
    int nb = (a->ndim > b->ndim ? a->ndim : b->ndim) - 2, bs[DL_MAX_DIMS], i, j, p, d;
    int m = a->shape[a->ndim - 2 + ta], k = a->shape[a->ndim - 1 - ta], n = b->shape[b->ndim - 1 - tb];
    size_t count = 1, bi;
    for (d = 0; d < nb; d++) {
        int ia = d - (nb - (a->ndim - 2)), ib = d - (nb - (b->ndim - 2));
        int da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        bs[d] = da > db ? da : db;
        count *= (size_t)bs[d];
    }
    for (bi = 0; bi < count; bi++) {
        int ia_[DL_MAX_DIMS], ib_[DL_MAX_DIMS];
        size_t rest = bi;
        for (d = nb - 1; d >= 0; d--) {
            int v = (int)(rest % (size_t)bs[d]), oa = d - (nb - (a->ndim - 2)), ob = d - (nb - (b->ndim - 2));
            rest /= (size_t)bs[d];
            if (oa >= 0) ia_[oa] = a->shape[oa] == 1 ? 0 : v;
            if (ob >= 0) ib_[ob] = b->shape[ob] == 1 ? 0 : v;
        }
        for (i = 0; i < m; i++)
            for (j = 0; j < n; j++) {
                double s = 0;
                for (p = 0; p < k; p++) {
                    ia_[a->ndim - 2 + ta] = i; ia_[a->ndim - 1 - ta] = p;
                    ib_[b->ndim - 2 + tb] = p; ib_[b->ndim - 1 - tb] = j;
                    s += (double)dl_get(a, ia_) * (double)dl_get(b, ib_);
                }
                out[(bi * (size_t)m + (size_t)i) * (size_t)n + (size_t)j] = (float)s;
            }
    }
}

static void check_matmul_t(dl_tensor *a, dl_tensor *b, int ta, int tb, const char *what) {
    dl_tensor *y = dl_matmul_t(a, b, ta, tb);
    float *want;
    CHECK(y != NULL, "%s: %s", what, dl_error());
    if (!y) return;
    want = (float *)malloc(y->numel * sizeof(float) + 4);
    ref_matmul(a, b, ta, tb, want);
    CHECK_ALL_NEAR(dl_f32(y), want, y->numel, 1e-5);
    free(want);
}

static void test_matmul_values(void) {
    const float av[6] = {1, 2, 3, 4, 5, 6}, bv[6] = {1, -1, 0.5f, 2, -2, 1};
    const float torch_mm[4] = {-4.0f, 6.0f, -5.5f, 12.0f}; /* torch.tensor(av).view(2,3) @ bv.view(3,2) */
    dl_tensor *a = from(2, DL_SHAPE(2, 3), av), *b = from(2, DL_SHAPE(3, 2), bv), *y;
    y = dl_matmul(a, b);
    CHECK(y && y->ndim == 2 && y->shape[0] == 2 && y->shape[1] == 2, "shape");
    if (y) CHECK_ALL_NEAR(dl_f32(y), torch_mm, 4, 1e-6);
    /* vectors as in torch: [3] @ [3, 2] -> [2]; [2, 3] @ [3] -> [2]; [3] @ [3] -> [] */
    y = dl_matmul(dl_tmp_from(DL_DTYPE_F32, 1, DL_SHAPE(3), av), b);
    CHECK(y && y->ndim == 1 && y->shape[0] == 2 && dl_f32(y)[0] == -4.0f && dl_f32(y)[1] == 6.0f, "vector @ matrix");
    y = dl_matmul(a, dl_tmp_from(DL_DTYPE_F32, 1, DL_SHAPE(3), av));
    CHECK(y && y->ndim == 1 && y->shape[0] == 2 && dl_f32(y)[0] == 14.0f && dl_f32(y)[1] == 32.0f, "matrix @ vector");
    y = dl_matmul(dl_tmp_from(DL_DTYPE_F32, 1, DL_SHAPE(3), av), dl_tmp_from(DL_DTYPE_F32, 1, DL_SHAPE(3), av));
    CHECK(y && y->ndim == 0 && dl_item(y) == 14.0f, "dot");
    dl_arena_reset(dl_arena_current());
}

/* Every layout the op reads in place or copies, against the naive reference. */
static void test_matmul_layouts(void) {
    dl_tensor *a = dl_tmp(DL_DTYPE_F32, 3, DL_SHAPE(2, 5, 4)), *b = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(4, 3));
    dl_tensor *a4 = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(2, 1, 5, 4)), *b3 = dl_tmp(DL_DTYPE_F32, 3, DL_SHAPE(3, 4, 3));
    dl_tensor *big = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(8, 12));
    int ta, tb;
    dl_fill_uniform(a, -1, 1, &rng);
    dl_fill_uniform(b, -1, 1, &rng);
    dl_fill_uniform(a4, -1, 1, &rng);
    dl_fill_uniform(b3, -1, 1, &rng);
    dl_fill_uniform(big, -1, 1, &rng);
    check_matmul_t(a, b, 0, 0, "[2,5,4] @ [4,3] (one folded GEMM)");
    check_matmul_t(b, dl_transpose(a, 1, 2), 1, 0, "[4,3]^T @ [2,4,5] (2-D against batched)");
    check_matmul_t(a4, b3, 0, 0, "[2,1,5,4] @ [3,4,3] (broadcast batch)");
    check_matmul_t(dl_transpose(a, 1, 2), dl_transpose(b, 0, 1), 1, 1, "transposed views, both flags");
    check_matmul_t(dl_slice(big, 1, 1, 12, 2), dl_slice(big, 0, 2, 8, 1), 0, 0, "strided slice (copied) @ row slice");
    check_matmul_t(dl_permute(dl_reshape(big, 3, DL_SHAPE(2, 4, 12)), DL_SHAPE(1, 0, 2)), dl_slice(big, 0, 0, 4, 1), 0, 1,
                   "permuted batch axis");
    for (ta = 0; ta < 2; ta++)
        for (tb = 0; tb < 2; tb++) {
            dl_tensor *x = dl_tmp(DL_DTYPE_F32, 3, ta ? DL_SHAPE(6, 7, 5) : DL_SHAPE(6, 5, 7));
            dl_tensor *w = dl_tmp(DL_DTYPE_F32, 3, tb ? DL_SHAPE(6, 3, 7) : DL_SHAPE(6, 7, 3));
            dl_fill_uniform(x, -1, 1, &rng);
            dl_fill_uniform(w, -1, 1, &rng);
            check_matmul_t(x, w, ta, tb, "batch of small GEMMs, flags");
        }
    {   /* empty and k = 0 */
        dl_tensor *y = dl_matmul(dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(3, 0)), dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(0, 2)));
        CHECK(y && y->numel == 6 && dl_f32(y)[5] == 0.0f, "k = 0 gives zeros");
        y = dl_matmul(dl_tmp(DL_DTYPE_F32, 3, DL_SHAPE(0, 3, 2)), dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(2, 2)));
        CHECK(y && y->numel == 0 && y->shape[1] == 3, "empty batch");
    }
    dl_arena_reset(dl_arena_current());
}

/* A transposed view costs no copy: the same arena use as a contiguous operand. */
static void test_matmul_no_copy(void) {
    dl_arena *ar = dl_arena_current();
    dl_tensor *a = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(64, 32)), *at = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(32, 64));
    dl_tensor *w = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(32, 16)), *wt = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(16, 32)), *view;
    size_t before, plain, viewed;
    before = dl_arena_used(ar);
    dl_matmul(a, w);
    plain = dl_arena_used(ar) - before;
    view = dl_transpose(at, 0, 1);
    before = dl_arena_used(ar);
    dl_matmul(view, dl_transpose(wt, 0, 1));
    viewed = dl_arena_used(ar) - before - sizeof(dl_tensor) - 64;  /* the second view's struct */
    CHECK(viewed <= plain, "transposed operands were copied: %zu vs %zu bytes", viewed, plain);
    before = dl_arena_used(ar);
    dl_linear(view, w, NULL);
    plain = dl_arena_used(ar) - before;
    CHECK(plain < 64 * 16 * 4 + 2 * sizeof(dl_tensor) + 128, "dl_linear copied a transposed x: %zu bytes", plain);
    dl_arena_reset(ar);
}

typedef struct { int ta, tb; } flags;
static dl_tensor *f_matmul(dl_tensor **in, void *u) { (void)u; return dl_matmul(in[0], in[1]); }
static dl_tensor *f_matmul_t(dl_tensor **in, void *u) {
    const flags *f = (const flags *)u;
    return dl_matmul_t(in[0], in[1], f->ta, f->tb);
}
static dl_tensor *f_matmul_views(dl_tensor **in, void *u) {
    (void)u; /* [3,4]^T (a transposed view) @ slice of [2,3,6] along its last axis (copied) */
    return dl_matmul(dl_transpose(in[0], 0, 1), dl_slice(in[1], 2, 0, 6, 2));
}

static void gradcheck2(dl_gradcheck_fn f, void *u, dl_tensor *a, dl_tensor *b, const char *what) {
    dl_tensor *in[2];
    in[0] = a;
    in[1] = b;
    CHECK(dl_gradcheck(f, u, 2, in, 0, 0) == 0, "%s: %s", what, dl_error());
    dl_tensor_free(a);
    dl_tensor_free(b);
}

static void test_matmul_grad(void) {
    int ta, tb;
    gradcheck2(f_matmul, NULL, param(2, DL_SHAPE(3, 4)), param(2, DL_SHAPE(4, 5)), "2-D");
    gradcheck2(f_matmul, NULL, param(3, DL_SHAPE(2, 3, 4)), param(2, DL_SHAPE(4, 5)), "batched @ 2-D");
    gradcheck2(f_matmul, NULL, param(2, DL_SHAPE(3, 4)), param(3, DL_SHAPE(2, 4, 5)), "2-D @ batched");
    gradcheck2(f_matmul, NULL, param(4, DL_SHAPE(2, 1, 3, 4)), param(3, DL_SHAPE(3, 4, 2)), "broadcast batch");
    gradcheck2(f_matmul, NULL, param(1, DL_SHAPE(4)), param(3, DL_SHAPE(2, 4, 3)), "vector @ batched");
    gradcheck2(f_matmul_views, NULL, param(2, DL_SHAPE(3, 4)), param(3, DL_SHAPE(2, 3, 6)), "views");
    for (ta = 0; ta < 2; ta++)
        for (tb = 0; tb < 2; tb++) {
            flags f;
            f.ta = ta;
            f.tb = tb;
            gradcheck2(f_matmul_t, &f, param(4, ta ? DL_SHAPE(2, 1, 4, 3) : DL_SHAPE(2, 1, 3, 4)),
                       param(3, tb ? DL_SHAPE(3, 5, 4) : DL_SHAPE(3, 4, 5)), "matmul_t flags, broadcast");
            gradcheck2(f_matmul_t, &f, param(2, DL_SHAPE(4, 4)), param(3, DL_SHAPE(2, 4, 4)), "matmul_t flags, 2-D a");
        }
}

/* ---- linear ---- */

static void test_linear_values(void) {
    const float xv[6] = {0.5f, -1.0f, 2.0f, 1.5f, 0.0f, -0.5f}, wv[6] = {0.1f, 0.2f, -0.3f, 0.4f, 0.5f, -0.6f};
    const float bv[2] = {0.01f, -0.02f};
    const float torch_y[4] = {1.36f, -1.52f, -0.089999996f, 0.58000004f}; /* x @ w + b */
    dl_tensor *y = dl_linear(from(2, DL_SHAPE(2, 3), xv), from(2, DL_SHAPE(3, 2), wv), from(1, DL_SHAPE(2), bv));
    CHECK(y && y->shape[0] == 2 && y->shape[1] == 2, "%s", dl_error());
    if (y) CHECK_ALL_NEAR(dl_f32(y), torch_y, 4, 1e-6);
    /* bigger, 3-D x, against matmul + bias through the naive reference */
    {
        dl_tensor *x = dl_tmp(DL_DTYPE_F32, 3, DL_SHAPE(3, 7, 33)), *w = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(33, 17));
        dl_tensor *b = dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(17));
        float *want = (float *)malloc(3 * 7 * 17 * sizeof(float));
        int i;
        dl_fill_uniform(x, -1, 1, &rng);
        dl_fill_uniform(w, -1, 1, &rng);
        dl_fill_uniform(b, -1, 1, &rng);
        ref_matmul(x, w, 0, 0, want);
        for (i = 0; i < 3 * 7 * 17; i++) want[i] += dl_f32(b)[i % 17];
        y = dl_linear(x, w, b);
        CHECK(y && y->ndim == 3 && y->shape[2] == 17, "%s", dl_error());
        if (y) CHECK_ALL_NEAR(dl_f32(y), want, 3 * 7 * 17, 1e-5);
        y = dl_linear(dl_slice(x, 2, 0, 33, 1), dl_transpose(dl_contiguous(dl_transpose(w, 0, 1)), 0, 1), b);
        if (y) CHECK_ALL_NEAR(dl_f32(y), want, 3 * 7 * 17, 1e-5);
        free(want);
    }
    dl_arena_reset(dl_arena_current());
}

static dl_tensor *f_linear(dl_tensor **in, void *u) { (void)u; return dl_linear(in[0], in[1], in[2]); }
static dl_tensor *f_linear_nobias(dl_tensor **in, void *u) { (void)u; return dl_linear(in[0], in[1], NULL); }
static dl_tensor *f_linear_views(dl_tensor **in, void *u) {
    (void)u; /* x given as [in, rows] and w in torch's [out, in] layout: both transposed views */
    return dl_linear(dl_transpose(in[0], 0, 1), dl_transpose(in[1], 0, 1), in[2]);
}

static void test_linear_grad(void) {
    dl_tensor *in[3];
    int i;
    in[0] = param(3, DL_SHAPE(2, 3, 5));
    in[1] = param(2, DL_SHAPE(5, 4));
    in[2] = param(1, DL_SHAPE(4));
    CHECK(dl_gradcheck(f_linear, NULL, 3, in, 0, 0) == 0, "3-D x: %s", dl_error());
    CHECK(dl_gradcheck(f_linear_nobias, NULL, 2, in, 0, 0) == 0, "no bias: %s", dl_error());
    for (i = 0; i < 3; i++) dl_tensor_free(in[i]);
    in[0] = param(2, DL_SHAPE(5, 6));
    in[1] = param(2, DL_SHAPE(4, 5));
    in[2] = param(1, DL_SHAPE(4));
    CHECK(dl_gradcheck(f_linear_views, NULL, 3, in, 0, 0) == 0, "views: %s", dl_error());
    for (i = 0; i < 3; i++) dl_tensor_free(in[i]);
    in[0] = param(1, DL_SHAPE(5)); /* a single sample, as an RL agent acts */
    in[1] = param(2, DL_SHAPE(5, 3));
    in[2] = param(1, DL_SHAPE(3));
    CHECK(dl_gradcheck(f_linear, NULL, 3, in, 0, 0) == 0, "1-D x: %s", dl_error());
    for (i = 0; i < 3; i++) dl_tensor_free(in[i]);
}

/* ---- activations ---- */

static dl_tensor *leaky_01(dl_tensor *x) { return dl_leaky_relu(x, 0.1f); }
static dl_tensor *elu_07(dl_tensor *x) { return dl_elu(x, 0.7f); }

typedef dl_tensor *(*unary_fn)(dl_tensor *);
static const struct { const char *name; unary_fn f; } acts[8] = {
    {"relu", dl_relu}, {"leaky_relu", leaky_01}, {"elu", elu_07}, {"gelu", dl_gelu},
    {"gelu_tanh", dl_gelu_tanh}, {"sigmoid", dl_sigmoid}, {"tanh", dl_tanh}, {"softplus", dl_softplus},
};

/* torch: y = f(x) and x.grad after y.sum().backward(), for x below (leaky_relu slope 0.1, elu
   alpha 0.7); the gradients at 0 are torch's choices at the kinks. */
static const float act_x[8] = {-3.0f, -1.5f, -0.5f, 0.0f, 0.25f, 1.0f, 2.5f, 25.0f};
static const float act_y[8][8] = {
    {0.0f, 0.0f, 0.0f, 0.0f, 0.25f, 1.0f, 2.5f, 25.0f},
    {-0.30000001f, -0.15000001f, -0.050000001f, 0.0f, 0.25f, 1.0f, 2.5f, 25.0f},
    {-0.66514903f, -0.54380888f, -0.27542853f, 0.0f, 0.25f, 1.0f, 2.5f, 25.0f},
    {-0.0040498674f, -0.10021086f, -0.15426879f, 0.0f, 0.14967656f, 0.84134471f, 2.4844759f, 25.0f},
    {-0.0036374331f, -0.10042843f, -0.154286f, 0.0f, 0.14967535f, 0.84119201f, 2.4849157f, 25.0f},
    {0.047425874f, 0.18242553f, 0.37754068f, 0.5f, 0.56217653f, 0.7310586f, 0.92414182f, 1.0f},
    {-0.99505478f, -0.90514827f, -0.46211717f, 0.0f, 0.24491866f, 0.76159418f, 0.98661429f, 1.0f},
    {0.048587352f, 0.20141329f, 0.47407699f, 0.69314718f, 0.82593942f, 1.3132616f, 2.5788898f, 25.0f},
};
static const float act_g[8][8] = {
    {0.0f, 0.0f, 0.0f, 0.0f, 1.0f, 1.0f, 1.0f, 1.0f},
    {0.1f, 0.1f, 0.1f, 0.1f, 1.0f, 1.0f, 1.0f, 1.0f},
    {0.034850948f, 0.15619111f, 0.42457145f, 0.69999999f, 1.0f, 1.0f, 1.0f, 1.0f},
    {-0.011945605f, -0.12746915f, 0.13250491f, 0.5f, 0.6953733f, 1.0833154f, 1.037611f, 1.0f},
    {-0.011584297f, -0.12771082f, 0.13263011f, 0.5f, 0.6953541f, 1.0829641f, 1.0379517f, 1.0f},
    {0.045176659f, 0.14914647f, 0.23500371f, 0.25f, 0.24613407f, 0.19661193f, 0.070103712f, 0.0f},
    {0.0098659815f, 0.18070662f, 0.7864477f, 1.0f, 0.94001484f, 0.4199743f, 0.026592249f, 0.0f},
    {0.047425874f, 0.18242551f, 0.37754068f, 0.5f, 0.56217653f, 0.7310586f, 0.92414182f, 1.0f},
};

static void test_activation_values(void) {
    int i;
    for (i = 0; i < 8; i++) {
        dl_tensor *x = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(8), act_x), *y;
        dl_set_requires_grad(x, 1);
        y = acts[i].f(x);
        CHECK(y != NULL, "%s: %s", acts[i].name, dl_error());
        if (y) {
            CHECK_ALL_NEAR(dl_f32(y), act_y[i], 8, 2e-6);
            CHECK(dl_backward_grad(y, dl_f32(dl_full(1, DL_SHAPE(8), 1.0f))) == 0, "%s", dl_error());
            CHECK_ALL_NEAR(x->grad, act_g[i], 8, 2e-6);
        }
        dl_tensor_free(x);
        dl_arena_reset(dl_arena_current());
    }
    {   /* torch: relu(nan) is nan; softplus(-100) is a positive denormal-free 0 */
        float v[2] = {NAN, -100.0f};
        dl_tensor *x = from(1, DL_SHAPE(2), v);
        CHECK(isnan(dl_f32(dl_relu(x))[0]), "relu keeps NaN");
        CHECK(dl_f32(dl_softplus(x))[1] >= 0.0f && dl_f32(dl_sigmoid(x))[1] >= 0.0f, "no negative underflow");
    }
    dl_arena_reset(dl_arena_current());
}

static dl_tensor *f_act(dl_tensor **in, void *u) { return acts[*(const int *)u].f(in[0]); }
static dl_tensor *f_act_view(dl_tensor **in, void *u) { return acts[*(const int *)u].f(dl_transpose(in[0], 0, 2)); }

static void test_activation_grad(void) {
    dl_tensor *x = param(3, DL_SHAPE(2, 3, 4));
    size_t j;
    int i;
    /* keep away from the kinks at 0, where finite differences straddle two slopes */
    for (j = 0; j < x->numel; j++) dl_f32(x)[j] += dl_f32(x)[j] < 0 ? -0.05f : 0.05f;
    for (i = 0; i < 8; i++) {
        CHECK(dl_gradcheck(f_act, &i, 1, &x, 0, 0) == 0, "%s: %s", acts[i].name, dl_error());
        CHECK(dl_gradcheck(f_act_view, &i, 1, &x, 0, 0) == 0, "%s on a view: %s", acts[i].name, dl_error());
    }
    dl_tensor_free(x);
}

/* More elements than one parallel chunk: the split over threads must not change anything. */
static void test_activation_large(void) {
    dl_tensor *x = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(100003)), *y;
    size_t j, bad = 0;
    dl_fill_uniform(x, -4, 4, &rng);
    dl_set_requires_grad(x, 1);
    y = dl_gelu(x);
    for (j = 0; j < x->numel; j++) {
        float v = dl_f32(x)[j];
        if (fabsf(dl_f32(y)[j] - 0.5f * v * (1.0f + erff(v * 0.70710678f))) > 1e-6f) bad++;
    }
    CHECK(bad == 0, "%zu wrong gelu values", bad);
    dl_backward_grad(y, dl_f32(dl_full(1, DL_SHAPE(100003), 1.0f)));
    CHECK(x->grad && fabsf(x->grad[100002] - 0.5f * (1.0f + erff(dl_f32(x)[100002] * 0.70710678f)) -
                           dl_f32(x)[100002] * 0.39894228f * expf(-0.5f * dl_f32(x)[100002] * dl_f32(x)[100002])) < 1e-5f,
          "gelu gradient in the last chunk");
    dl_tensor_free(x);
    dl_arena_reset(dl_arena_current());
}

/* ---- softmax ---- */

static void test_softmax_values(void) {
    const float sv[6] = {1.0f, 2.0f, 3.0f, -1.0f, 0.5f, 4.0f};
    const float sm_last[6] = {0.090030573f, 0.24472848f, 0.66524094f, 0.0064979433f, 0.029121762f, 0.96438032f};
    const float sm_0[6] = {0.88079703f, 0.81757444f, 0.26894143f, 0.11920292f, 0.18242551f, 0.7310586f};
    const float lsm_last[6] = {-2.4076059f, -1.4076059f, -0.40760595f, -5.0362697f, -3.5362697f, -0.036269564f};
    const float lsm_0[6] = {-0.12692805f, -0.20141333f, -1.3132616f, -2.1269281f, -1.7014134f, -0.31326166f};
    dl_tensor *s = from(2, DL_SHAPE(2, 3), sv), *y;
    y = dl_softmax(s, -1);
    CHECK(y != NULL, "%s", dl_error());
    if (y) CHECK_ALL_NEAR(dl_f32(y), sm_last, 6, 1e-6);
    y = dl_softmax(s, 0);
    if (y) CHECK_ALL_NEAR(dl_f32(y), sm_0, 6, 1e-6);
    y = dl_log_softmax(s, 1);
    if (y) CHECK_ALL_NEAR(dl_f32(y), lsm_last, 6, 1e-6);
    y = dl_log_softmax(s, -2);
    if (y) CHECK_ALL_NEAR(dl_f32(y), lsm_0, 6, 1e-6);
    /* axis 0 of s is the last axis of its transposed view */
    y = dl_softmax(dl_transpose(s, 0, 1), 1);
    CHECK(y && fabsf(dl_f32(y)[1] - sm_0[3]) < 1e-6f && fabsf(dl_f32(y)[4] - sm_0[2]) < 1e-6f, "softmax of a view");
    {   /* extreme values stay finite */
        const float big[3] = {1e4f, -1e4f, 1e4f};
        y = dl_softmax(from(1, DL_SHAPE(3), big), 0);
        CHECK(y && dl_f32(y)[0] == 0.5f && dl_f32(y)[1] == 0.0f, "softmax of 1e4");
        y = dl_log_softmax(from(1, DL_SHAPE(3), big), 0);
        CHECK(y && fabsf(dl_f32(y)[0] + 0.69314718f) < 1e-6f && fabsf(dl_f32(y)[1] + 20000.693f) < 1e-2f, "log_softmax of 1e4");
    }
    dl_arena_reset(dl_arena_current());
}

static dl_tensor *f_softmax(dl_tensor **in, void *u) { return dl_softmax(in[0], *(const int *)u); }
static dl_tensor *f_log_softmax(dl_tensor **in, void *u) { return dl_log_softmax(in[0], *(const int *)u); }
static dl_tensor *f_softmax_view(dl_tensor **in, void *u) { return dl_softmax(dl_transpose(in[0], 0, 2), *(const int *)u); }
static dl_tensor *f_log_softmax_view(dl_tensor **in, void *u) {
    return dl_log_softmax(dl_slice(in[0], 1, 0, 3, 2), *(const int *)u);
}

static void test_softmax_grad(void) {
    dl_tensor *x = param(3, DL_SHAPE(2, 3, 4));
    int axes[3] = {0, 1, -1}, i;
    for (i = 0; i < 3; i++) {
        CHECK(dl_gradcheck(f_softmax, &axes[i], 1, &x, 0, 0) == 0, "softmax axis %d: %s", axes[i], dl_error());
        CHECK(dl_gradcheck(f_log_softmax, &axes[i], 1, &x, 0, 0) == 0, "log_softmax axis %d: %s", axes[i], dl_error());
        CHECK(dl_gradcheck(f_softmax_view, &axes[i], 1, &x, 0, 0) == 0, "softmax view axis %d: %s", axes[i], dl_error());
        CHECK(dl_gradcheck(f_log_softmax_view, &axes[i], 1, &x, 0, 0) == 0, "log_softmax view axis %d: %s", axes[i], dl_error());
    }
    dl_tensor_free(x);
}

/* ---- losses ---- */

static void test_cross_entropy_values(void) {
    const float zv[12] = {2.0f, -1.0f, 0.5f, 0.0f, 0.1f, 0.2f, 0.3f, 0.4f, -3.0f, 5.0f, 1.0f, 2.0f};
    const int32_t lv[3] = {0, 3, 1};
    const float torch_grad[12] = {-0.096633375f, 0.011784598f, 0.052814901f, 0.032033861f, 0.071279407f, 0.07877592f,
                                  0.087060861f, -0.23711622f, 0.00010465821f, -0.021351477f, 0.0057141478f, 0.015532664f};
    dl_tensor *z = dl_tensor_from(DL_DTYPE_F32, 2, DL_SHAPE(3, 4), zv), *loss;
    dl_set_requires_grad(z, 1);
    loss = dl_cross_entropy(z, dl_tmp_from(DL_DTYPE_I32, 1, DL_SHAPE(3), lv));
    CHECK(loss && loss->ndim == 0, "%s", dl_error());
    if (loss) {
        CHECK_NEAR(dl_item(loss), 0.55036104f, 1e-6);
        CHECK(dl_backward(loss) == 0, "%s", dl_error());
        CHECK_ALL_NEAR(z->grad, torch_grad, 12, 1e-6);
    }
    dl_tensor_free(z);
    {   /* [N, C, d] with ignore_index -100; torch: sin(arange(24)).view(2, 3, 4) * 3 */
        const int32_t lab[8] = {0, 2, -100, 1, 1, 1, 0, 2};
        float v[24];
        int i;
        for (i = 0; i < 24; i++) v[i] = (float)sin((double)i) * 3.0f;
        loss = dl_cross_entropy(from(3, DL_SHAPE(2, 3, 4), v), dl_tmp_from(DL_DTYPE_I32, 2, DL_SHAPE(2, 4), lab));
        CHECK(loss != NULL, "%s", dl_error());
        if (loss) CHECK_NEAR(dl_item(loss), 2.686043f, 1e-5);
    }
    {   /* extreme logits: torch gives 10000.347 */
        const float ext[6] = {1e4f, -1e4f, 0.0f, -1e4f, 1e4f, 1e4f};
        const int32_t lab[2] = {1, 2};
        loss = dl_cross_entropy(from(2, DL_SHAPE(2, 3), ext), dl_tmp_from(DL_DTYPE_I32, 1, DL_SHAPE(2), lab));
        CHECK(loss && isfinite(dl_item(loss)), "finite");
        if (loss) CHECK_NEAR(dl_item(loss), 10000.347f, 1e-6);
    }
    {   /* labels given as a strided view */
        const int32_t lab[6] = {0, 9, 3, 9, 1, 9};
        dl_tensor *l = dl_slice(dl_tmp_from(DL_DTYPE_I32, 1, DL_SHAPE(6), lab), 0, 0, 6, 2);
        loss = dl_cross_entropy(from(2, DL_SHAPE(3, 4), zv), l);
        CHECK(loss && fabsf(dl_item(loss) - 0.55036104f) < 1e-6f, "strided labels: %s", dl_error());
    }
    dl_arena_reset(dl_arena_current());
}

static void test_pair_loss_values(void) {
    const float pv[6] = {0.5f, -1.0f, 2.0f, 3.0f, -0.2f, 0.0f}, tv[6] = {1.0f, 0.0f, 2.5f, -1.0f, -0.2f, 0.3f};
    const float bp[6] = {0.5f, -1.0f, 2.0f, 30.0f, -40.0f, 0.0f}, bt[6] = {1.0f, 0.0f, 0.3f, 1.0f, 0.0f, 0.5f};
    dl_tensor *p = from(1, DL_SHAPE(6), pv), *t = from(1, DL_SHAPE(6), tv);
    dl_tensor *y;
    y = dl_mse(p, t);
    CHECK(y && y->ndim == 0, "%s", dl_error());
    if (y) CHECK_NEAR(dl_item(y), 2.9316666f, 1e-6);
    y = dl_l1(p, t);
    if (y) CHECK_NEAR(dl_item(y), 1.0500001f, 1e-6);
    y = dl_huber(p, t, 0.8f);
    if (y) CHECK_NEAR(dl_item(y), 0.60916668f, 1e-6);
    y = dl_bce_with_logits(from(1, DL_SHAPE(6), bp), from(1, DL_SHAPE(6), bt));
    if (y) CHECK_NEAR(dl_item(y), 0.50123566f, 1e-6);
    /* the same through [2, 3]^T views */
    y = dl_mse(dl_transpose(from(2, DL_SHAPE(3, 2), pv), 0, 1), dl_transpose(from(2, DL_SHAPE(3, 2), tv), 0, 1));
    if (y) CHECK_NEAR(dl_item(y), 2.9316666f, 1e-6);
    dl_arena_reset(dl_arena_current());
}

static dl_tensor *f_ce(dl_tensor **in, void *u) { return dl_cross_entropy(in[0], (dl_tensor *)u); }
static dl_tensor *f_ce_view(dl_tensor **in, void *u) { return dl_cross_entropy(dl_transpose(in[0], 0, 1), (dl_tensor *)u); }
static dl_tensor *f_mse(dl_tensor **in, void *u) { (void)u; return dl_mse(in[0], in[1]); }
static dl_tensor *f_l1(dl_tensor **in, void *u) { (void)u; return dl_l1(in[0], in[1]); }
static dl_tensor *f_huber(dl_tensor **in, void *u) { (void)u; return dl_huber(in[0], in[1], 0.3f); }
static dl_tensor *f_bce(dl_tensor **in, void *u) { (void)u; return dl_bce_with_logits(in[0], in[1]); }
static dl_tensor *f_mse_view(dl_tensor **in, void *u) { (void)u; return dl_mse(dl_transpose(in[0], 0, 1), in[1]); }

static void test_loss_grad(void) {
    const int32_t lab[4] = {2, 0, 4, 1}, lab3[6] = {0, 2, 1, -100, 1, 0};
    dl_tensor *z = param(2, DL_SHAPE(4, 5)), *zt = param(2, DL_SHAPE(5, 4)), *z3 = param(3, DL_SHAPE(2, 3, 3));
    dl_tensor *labels = dl_tensor_from(DL_DTYPE_I32, 1, DL_SHAPE(4), lab), *labels3 = dl_tensor_from(DL_DTYPE_I32, 2, DL_SHAPE(2, 3), lab3);
    dl_tensor *in[2];
    size_t j;
    CHECK(dl_gradcheck(f_ce, labels, 1, &z, 0, 0) == 0, "cross_entropy: %s", dl_error());
    CHECK(dl_gradcheck(f_ce_view, labels, 1, &zt, 0, 0) == 0, "cross_entropy of a view: %s", dl_error());
    CHECK(dl_gradcheck(f_ce, labels3, 1, &z3, 0, 0) == 0, "cross_entropy [N, C, d]: %s", dl_error());
    in[0] = param(2, DL_SHAPE(3, 4));
    in[1] = param(2, DL_SHAPE(3, 4));
    /* keep pred - target away from l1's and huber's kinks (0 and +-0.3) */
    for (j = 0; j < 12; j++) dl_f32(in[1])[j] = dl_f32(in[0])[j] + ((j % 3) == 0 ? 0.1f : (j % 3) == 1 ? -0.45f : 0.7f);
    CHECK(dl_gradcheck(f_mse, NULL, 2, in, 0, 0) == 0, "mse: %s", dl_error());
    CHECK(dl_gradcheck(f_l1, NULL, 2, in, 0, 0) == 0, "l1: %s", dl_error());
    CHECK(dl_gradcheck(f_huber, NULL, 2, in, 0, 0) == 0, "huber: %s", dl_error());
    dl_fill_uniform(in[1], 0, 1, &rng);
    CHECK(dl_gradcheck(f_bce, NULL, 2, in, 0, 0) == 0, "bce_with_logits: %s", dl_error());
    dl_tensor_free(in[0]);
    in[0] = param(2, DL_SHAPE(4, 3));
    CHECK(dl_gradcheck(f_mse_view, NULL, 2, in, 0, 0) == 0, "mse of a view: %s", dl_error());
    dl_tensor_free(in[0]);
    dl_tensor_free(in[1]);
    dl_tensor_free(z);
    dl_tensor_free(zt);
    dl_tensor_free(z3);
    dl_tensor_free(labels);
    dl_tensor_free(labels3);
}

/* ---- a training step ---- */

/* A two-layer MLP step with every op of this file: after the first steps (arena growth, GEMM
   packing buffers, gradient buffers of the parameters) a step calls malloc zero times. */
static void test_mlp_step_no_malloc(void) {
    dl_arena *ar = dl_arena_new(1024), *prev = dl_arena_use(ar);
    dl_tensor *x = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(16, 20)), *w1 = param(2, DL_SHAPE(20, 32)), *b1 = param(1, DL_SHAPE(32));
    dl_tensor *w2 = param(2, DL_SHAPE(32, 5)), *b2 = param(1, DL_SHAPE(5)), *lab = dl_tensor_new(DL_DTYPE_I32, 1, DL_SHAPE(16));
    long before = 0;
    int step, i;
    dl_fill_uniform(x, -1, 1, &rng);
    for (i = 0; i < 16; i++) dl_i32(lab)[i] = i % 5;
    for (step = 0; step < 5; step++) {
        dl_tensor *h, *p;
        dl_arena_reset(ar);
        if (step == 2) before = test_mallocs;
        h = dl_gelu(dl_linear(x, w1, b1));
        CHECK(dl_backward(dl_cross_entropy(dl_linear(h, w2, b2), lab)) == 0, "%s", dl_error());
        /* a second loss on the same tape, through the other ops */
        p = dl_softmax(dl_matmul(dl_tanh(h), w2), 0);
        CHECK(dl_backward(dl_mse(dl_log_softmax(p, -1), dl_detach(p))) == 0, "%s", dl_error());
    }
    CHECK(test_mallocs == before, "steady state steps called malloc %ld times", test_mallocs - before);
    dl_arena_use(prev);
    dl_arena_free(ar);
    dl_tensor_free(x);
    dl_tensor_free(w1);
    dl_tensor_free(b1);
    dl_tensor_free(w2);
    dl_tensor_free(b2);
    dl_tensor_free(lab);
}

/* ---- errors ---- */

#define CHECK_FAILS(expr, opname)                                                                   \
    do {                                                                                            \
        dl_clear_error();                                                                           \
        CHECK((expr) == NULL, "should fail");                                                       \
        CHECK(strstr(dl_error(), opname) != NULL, "message %s should name %s", dl_error(), opname); \
    } while (0)

static void test_errors(void) {
    dl_tensor *a = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(2, 3)), *b = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(4, 5));
    dl_tensor *ai = dl_tmp(DL_DTYPE_I32, 2, DL_SHAPE(2, 3)), *v = dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(3));
    dl_tensor *z = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(2, 3));
    const int32_t bad_lab[2] = {0, 3};
    CHECK_FAILS(dl_matmul(a, b), "dl_matmul");
    CHECK_FAILS(dl_matmul(dl_tmp(DL_DTYPE_F32, 3, DL_SHAPE(2, 3, 4)), dl_tmp(DL_DTYPE_F32, 3, DL_SHAPE(3, 4, 5))), "dl_matmul");
    CHECK_FAILS(dl_matmul(ai, dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(3, 3))), "dl_matmul");
    CHECK_FAILS(dl_matmul(dl_scalar(1), a), "dl_matmul");
    CHECK_FAILS(dl_matmul_t(a, a, 0, 0), "dl_matmul_t");
    CHECK_FAILS(dl_matmul_t(v, a, 0, 0), "dl_matmul_t");
    CHECK_FAILS(dl_linear(a, b, NULL), "dl_linear");
    CHECK_FAILS(dl_linear(a, dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(3, 4)), v), "dl_linear");
    CHECK_FAILS(dl_linear(a, v, NULL), "dl_linear");
    CHECK_FAILS(dl_relu(ai), "dl_relu");
    CHECK_FAILS(dl_gelu_tanh(ai), "dl_gelu_tanh");
    CHECK_FAILS(dl_softmax(a, 2), "dl_softmax");
    CHECK_FAILS(dl_log_softmax(a, -3), "dl_log_softmax");
    CHECK_FAILS(dl_cross_entropy(z, dl_tmp_from(DL_DTYPE_I32, 1, DL_SHAPE(2), bad_lab)), "dl_cross_entropy");
    CHECK(strstr(dl_error(), "label 3") != NULL, "%s", dl_error());
    CHECK_FAILS(dl_cross_entropy(z, dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(2))), "dl_cross_entropy");
    CHECK_FAILS(dl_cross_entropy(z, dl_tmp(DL_DTYPE_I32, 1, DL_SHAPE(3))), "dl_cross_entropy");
    CHECK_FAILS(dl_cross_entropy(v, dl_tmp(DL_DTYPE_I32, 0, NULL)), "dl_cross_entropy");
    CHECK_FAILS(dl_mse(a, dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(3, 2))), "dl_mse");
    CHECK_FAILS(dl_l1(a, dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(6))), "dl_l1");
    CHECK_FAILS(dl_huber(a, a, 0.0f), "dl_huber");
    CHECK_FAILS(dl_bce_with_logits(a, ai), "dl_bce_with_logits");
    /* a NULL input gives NULL and keeps the first message */
    dl_set_error("first");
    CHECK(dl_matmul(NULL, a) == NULL && dl_matmul_t(a, NULL, 0, 1) == NULL && dl_linear(NULL, a, NULL) == NULL &&
              dl_relu(NULL) == NULL && dl_softplus(NULL) == NULL && dl_softmax(NULL, 0) == NULL &&
              dl_cross_entropy(NULL, ai) == NULL && dl_cross_entropy(a, NULL) == NULL && dl_mse(a, NULL) == NULL &&
              dl_huber(NULL, a, 1.0f) == NULL,
          "NULL in, NULL out");
    CHECK(strcmp(dl_error(), "first") == 0, "message kept: %s", dl_error());
    dl_clear_error();
    dl_arena_reset(dl_arena_current());
}

/* torch's relu backward zeroes where x <= 0: a NaN input passes the gradient through. */
static void test_relu_nan_gradient_like_torch(void) {
    float xv[3] = {NAN, -1, 1}, ones[3] = {1, 1, 1}, want[3] = {1, 0, 1};
    dl_tensor *x = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(3), xv);
    dl_tensor *y;
    dl_set_requires_grad(x, 1);
    y = dl_relu(x);
    CHECK(y && isnan(dl_f32(y)[0]) && dl_backward_grad(y, ones) == 0, "%s", dl_error());
    CHECK_ALL_NEAR(x->grad, want, 3, 0);
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
}

int main(void) {
    dl_rng_seed(&rng, 2024);
    RUN(test_matmul_values);
    RUN(test_matmul_layouts);
    RUN(test_matmul_no_copy);
    RUN(test_matmul_grad);
    RUN(test_linear_values);
    RUN(test_linear_grad);
    RUN(test_activation_values);
    RUN(test_activation_grad);
    RUN(test_activation_large);
    RUN(test_softmax_values);
    RUN(test_softmax_grad);
    RUN(test_cross_entropy_values);
    RUN(test_pair_loss_values);
    RUN(test_loss_grad);
    RUN(test_mlp_step_no_malloc);
    RUN(test_errors);
    RUN(test_relu_nan_gradient_like_torch);
    dl_arena_free_default();
    (void)count_realloc;
    return test_summary();
}
