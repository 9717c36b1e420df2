/* Elementwise math with broadcasting, reductions, shape and index ops of dl_tensor.h.
   Reference numbers were computed with PyTorch 1.13 (float32) and pasted here as constants. */
#define DL_IMPLEMENTATION
#include "../dl_tensor.h"
#include "test.h"

static dl_rng rng;

/* A persistent f32 tensor that requires a gradient, uniform in [lo, hi). */
static dl_tensor *param(int ndim, const int *shape, float lo, float hi) {
    dl_tensor *t = dl_tensor_new(DL_DTYPE_F32, ndim, shape);
    dl_fill_uniform(t, lo, hi, &rng);
    dl_set_requires_grad(t, 1);
    return t;
}

static dl_tensor *tensor_of(int ndim, const int *shape, const float *v) { return dl_tmp_from(DL_DTYPE_F32, ndim, shape, v); }

/* ---- reference values (PyTorch) ----
   a = [0.5, -1, 2, 1.5, 3, -0.25] as [2, 1, 3], b = [1, -2, 0.5, 4] as [4, 1]. */
static const float ref_a[6] = {0.5f, -1.0f, 2.0f, 1.5f, 3.0f, -0.25f};
static const float ref_b[4] = {1.0f, -2.0f, 0.5f, 4.0f};
static const float ref_add[24] = {1.5f, 0.0f, 3.0f, -1.5f, -3.0f, 0.0f, 1.0f, -0.5f, 2.5f, 4.5f, 3.0f, 6.0f, 2.5f, 4.0f, 0.75f, -0.5f, 1.0f, -2.25f, 2.0f, 3.5f, 0.25f, 5.5f, 7.0f, 3.75f};
static const float ref_sub[24] = {-0.5f, -2.0f, 1.0f, 2.5f, 1.0f, 4.0f, 0.0f, -1.5f, 1.5f, -3.5f, -5.0f, -2.0f, 0.5f, 2.0f, -1.25f, 3.5f, 5.0f, 1.75f, 1.0f, 2.5f, -0.75f, -2.5f, -1.0f, -4.25f};
static const float ref_mul[24] = {0.5f, -1.0f, 2.0f, -1.0f, 2.0f, -4.0f, 0.25f, -0.5f, 1.0f, 2.0f, -4.0f, 8.0f, 1.5f, 3.0f, -0.25f, -3.0f, -6.0f, 0.5f, 0.75f, 1.5f, -0.125f, 6.0f, 12.0f, -1.0f};
static const float ref_div[24] = {0.5f, -1.0f, 2.0f, -0.25f, 0.5f, -1.0f, 1.0f, -2.0f, 4.0f, 0.125f, -0.25f, 0.5f, 1.5f, 3.0f, -0.25f, -0.75f, -1.5f, 0.125f, 3.0f, 6.0f, -0.5f, 0.375f, 0.75f, -0.0625f};
static const float ref_minimum[24] = {0.5f, -1.0f, 1.0f, -2.0f, -2.0f, -2.0f, 0.5f, -1.0f, 0.5f, 0.5f, -1.0f, 2.0f, 1.0f, 1.0f, -0.25f, -2.0f, -2.0f, -2.0f, 0.5f, 0.5f, -0.25f, 1.5f, 3.0f, -0.25f};
static const float ref_maximum[24] = {1.0f, 1.0f, 2.0f, 0.5f, -1.0f, 2.0f, 0.5f, 0.5f, 2.0f, 4.0f, 4.0f, 4.0f, 1.5f, 3.0f, 1.0f, 1.5f, 3.0f, -0.25f, 1.5f, 3.0f, 0.5f, 4.0f, 4.0f, 4.0f};
/* d/da, d/db of sum(w * a / b) with w = arange(24) / 10 - 1 as [2, 4, 3] */
static const float ref_div_ga[6] = {-1.4749999046325684f, -1.2000000476837158f, -0.9249999523162842f, 1.8249999284744263f, 2.0999999046325684f, 2.375f};
static const float ref_div_gb[4] = {0.10000014305114746f, -0.4062500596046448f, -13.399998664855957f, -0.31718751788139343f};

/* x = [0.25, 1, 2.5, 4, 0.5, 3] */
static const float ref_x[6] = {0.25f, 1.0f, 2.5f, 4.0f, 0.5f, 3.0f};
static const float ref_exp[6] = {1.2840254306793213f, 2.7182817459106445f, 12.182494163513184f, 54.59815216064453f, 1.6487212181091309f, 20.08553695678711f};
static const float ref_log[6] = {-1.3862943649291992f, 0.0f, 0.9162907600402832f, 1.3862943649291992f, -0.6931471824645996f, 1.0986123085021973f};
static const float ref_sqrt[6] = {0.5f, 1.0f, 1.5811388492584229f, 2.0f, 0.7071067690849304f, 1.7320507764816284f};
static const float ref_pow3[6] = {0.015625f, 1.0f, 15.625f, 64.0f, 0.125f, 27.0f};
static const float ref_pow_mhalf[6] = {2.0f, 1.0f, 0.6324555277824402f, 0.5f, 1.4142135381698608f, 0.5773502588272095f};

/* xr: [2, 3, 4] */
static const float ref_xr[24] = {0.5f, -1.0f, 2.0f, 1.5f, 3.0f, -0.25f, 0.75f, -2.0f, 1.0f, 2.5f, -1.5f, 0.0f,
                                 -0.5f, 4.0f, 1.25f, -3.0f, 2.0f, 0.5f, -0.75f, 1.75f, 0.25f, -1.25f, 3.5f, 2.25f};
static const float ref_sum02[3] = {4.75f, 5.0f, 6.75f};
static const float ref_mean_last[6] = {0.75f, 0.375f, 0.5f, 0.4375f, 0.875f, 1.1875f};
static const float ref_var1[8] = {1.75f, 3.3958332538604736f, 3.1458332538604736f, 3.0833332538604736f, 1.6458333730697632f, 7.145833492279053f, 4.520833492279053f, 8.395833015441895f};
static const float ref_var0_02[3] = {3.9365234375f, 2.296875f, 2.8427734375f};
static const float ref_amax02[3] = {4.0f, 3.0f, 3.5f};
static const float ref_amax1[8] = {3.0f, 2.5f, 2.0f, 1.5f, 2.0f, 4.0f, 3.5f, 2.25f};
static const int ref_argmax1[8] = {1, 2, 0, 0, 1, 0, 2, 2};
static const int ref_argmax0[12] = {0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 1, 1};
/* d/dxr of sum(g * xr.var(1)) with g = arange(8) / 4 - 0.5 as [2, 4] */
static const float ref_var1_grad[24] = {0.5f, 0.3541666567325592f, 0.0f, 0.4166666567325592f, -0.75f, 0.1666666567325592f, 0.0f, -0.4583333432674408f, 0.25f, -0.5208333134651184f, -0.0f, 0.0416666679084301f, -0.5416666269302368f, 2.1875f, -0.08333337306976318f, -4.166666507720947f, 0.7083333730697632f, -0.4375000298023224f, -2.0833334922790527f, 1.7708332538604736f, -0.1666666567325592f, -1.7500001192092896f, 2.1666665077209473f, 2.3958332538604736f};

/* ---- binary ops ---- */

static void test_binary_forward(void) {
    dl_tensor *a = tensor_of(3, DL_SHAPE(2, 1, 3), ref_a), *b = tensor_of(2, DL_SHAPE(4, 1), ref_b);
    dl_tensor *y = dl_add(a, b);
    CHECK(y && y->ndim == 3 && y->shape[0] == 2 && y->shape[1] == 4 && y->shape[2] == 3, "broadcast shape");
    CHECK_ALL_NEAR(dl_f32(y), ref_add, 24, 1e-6);
    CHECK_ALL_NEAR(dl_f32(dl_sub(a, b)), ref_sub, 24, 1e-6);
    CHECK_ALL_NEAR(dl_f32(dl_mul(a, b)), ref_mul, 24, 1e-6);
    CHECK_ALL_NEAR(dl_f32(dl_div(a, b)), ref_div, 24, 1e-6);
    CHECK_ALL_NEAR(dl_f32(dl_minimum(a, b)), ref_minimum, 24, 1e-6);
    CHECK_ALL_NEAR(dl_f32(dl_maximum(a, b)), ref_maximum, 24, 1e-6);
    /* the other order broadcasts the same way */
    y = dl_sub(b, a);
    {
        int i, ok = 1;
        for (i = 0; i < 24; i++) ok &= dl_f32(y)[i] == -ref_sub[i];
        CHECK(ok, "b - a = -(a - b)");
    }
    /* scalar on either side, a transposed (non-contiguous) operand, row broadcast */
    {
        dl_tensor *m = tensor_of(2, DL_SHAPE(2, 3), ref_a);
        dl_tensor *t = dl_transpose(m, 0, 1); /* [3, 2]: 0.5 1.5 / -1 3 / 2 -0.25 */
        dl_tensor *row = tensor_of(1, DL_SHAPE(2), ref_b);
        float want_t[6] = {1.5f, -0.5f, 0.0f, 1.0f, 3.0f, -2.25f};
        float want_s[6] = {-1.5f, -2.5f, 0.0f, -4.0f, -3.0f, -0.75f};
        CHECK_ALL_NEAR(dl_f32(dl_add(t, row)), want_t, 6, 1e-6);
        CHECK_ALL_NEAR(dl_f32(dl_sub(dl_scalar(-1.0f), t)), want_s, 6, 1e-6);
        y = dl_mul(t, dl_scalar(2.0f));
        CHECK(y && y->ndim == 2 && dl_f32(y)[1] == 3.0f && dl_f32(y)[5] == -0.5f, "tensor * 0-d scalar");
        y = dl_add(dl_scalar(1.0f), dl_scalar(2.0f));
        CHECK(y && y->ndim == 0 && dl_item(y) == 3.0f, "0-d + 0-d is 0-d");
    }
    /* NaN propagates through minimum / maximum, like torch */
    {
        float nan_in[2] = {NAN, 1.0f}, other[2] = {0.0f, NAN};
        dl_tensor *p = tensor_of(1, DL_SHAPE(2), nan_in), *q = tensor_of(1, DL_SHAPE(2), other);
        dl_tensor *mx = dl_maximum(p, q), *mn = dl_minimum(p, q);
        CHECK(isnan(dl_f32(mx)[0]) && isnan(dl_f32(mx)[1]) && isnan(dl_f32(mn)[0]) && isnan(dl_f32(mn)[1]), "NaN wins");
    }
    dl_arena_reset(dl_arena_current());
}

static void test_binary_grad_values(void) {
    dl_tensor *a = dl_tensor_from(DL_DTYPE_F32, 3, DL_SHAPE(2, 1, 3), ref_a), *b = dl_tensor_from(DL_DTYPE_F32, 2, DL_SHAPE(4, 1), ref_b);
    float w[24];
    int i;
    for (i = 0; i < 24; i++) w[i] = (float)i / 10.0f - 1.0f;
    dl_set_requires_grad(a, 1);
    dl_set_requires_grad(b, 1);
    CHECK(dl_backward_grad(dl_div(a, b), w) == 0, "%s", dl_error());
    CHECK_ALL_NEAR(a->grad, ref_div_ga, 6, 1e-5);
    CHECK_ALL_NEAR(b->grad, ref_div_gb, 4, 1e-5);
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(a);
    dl_tensor_free(b);
}

static void test_min_max_ties(void) {
    /* torch.maximum / torch.minimum split the gradient in halves at ties */
    float xv[4] = {1, 3, 3, 2}, yv[4] = {3, 1, 3, 2}, ones[4] = {1, 1, 1, 1};
    float gmax_x[4] = {0, 1, 0.5f, 0.5f}, gmax_y[4] = {1, 0, 0.5f, 0.5f};
    dl_tensor *x = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(4), xv), *y = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(4), yv);
    dl_set_requires_grad(x, 1);
    dl_set_requires_grad(y, 1);
    dl_backward_grad(dl_maximum(x, y), ones);
    CHECK_ALL_NEAR(x->grad, gmax_x, 4, 0);
    CHECK_ALL_NEAR(y->grad, gmax_y, 4, 0);
    dl_zero_grad(x);
    dl_zero_grad(y);
    dl_backward_grad(dl_minimum(x, y), ones); /* minimum picks the other side, ties still halve */
    CHECK_ALL_NEAR(x->grad, gmax_y, 4, 0);
    CHECK_ALL_NEAR(y->grad, gmax_x, 4, 0);
    /* the same tensor on both sides: x * x has gradient 2x, maximum(x, x) has gradient 1 */
    dl_zero_grad(x);
    dl_backward_grad(dl_maximum(x, x), ones);
    CHECK_ALL_NEAR(x->grad, ones, 4, 0);
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
    dl_tensor_free(y);
}

static dl_tensor *f_add(dl_tensor **in, void *u) { (void)u; return dl_add(in[0], in[1]); }
static dl_tensor *f_sub(dl_tensor **in, void *u) { (void)u; return dl_sub(in[0], in[1]); }
static dl_tensor *f_mul(dl_tensor **in, void *u) { (void)u; return dl_mul(in[0], in[1]); }
static dl_tensor *f_div(dl_tensor **in, void *u) { (void)u; return dl_div(in[0], in[1]); }
static dl_tensor *f_minimum(dl_tensor **in, void *u) { (void)u; return dl_minimum(in[0], in[1]); }
static dl_tensor *f_maximum(dl_tensor **in, void *u) { (void)u; return dl_maximum(in[0], in[1]); }
static dl_tensor *f_mul_t(dl_tensor **in, void *u) { (void)u; return dl_mul(dl_transpose(in[0], 0, 1), in[1]); }
static dl_tensor *f_div_t(dl_tensor **in, void *u) { (void)u; return dl_div(in[1], dl_transpose(in[0], 0, 1)); }

static void test_binary_gradcheck(void) {
    static dl_gradcheck_fn fns[6] = {f_add, f_sub, f_mul, f_div, f_minimum, f_maximum};
    static const char *names[6] = {"add", "sub", "mul", "div", "minimum", "maximum"};
    /* pairs of shapes: broadcast both ways, scalar, row broadcast, same shape */
    dl_tensor *pairs[5][2];
    int i, k;
    pairs[0][0] = param(3, DL_SHAPE(2, 1, 3), 0.5f, 2); pairs[0][1] = param(2, DL_SHAPE(4, 1), 0.5f, 2);
    pairs[1][0] = param(0, NULL, 0.5f, 2);              pairs[1][1] = param(2, DL_SHAPE(3, 4), 0.5f, 2);
    pairs[2][0] = param(2, DL_SHAPE(5, 4), 0.5f, 2);    pairs[2][1] = param(1, DL_SHAPE(4), 0.5f, 2);
    pairs[3][0] = param(2, DL_SHAPE(3, 4), -2, 2);      pairs[3][1] = param(2, DL_SHAPE(3, 4), 0.5f, 2);
    pairs[4][0] = param(2, DL_SHAPE(3, 1), 0.5f, 2);    pairs[4][1] = param(3, DL_SHAPE(2, 1, 5), 0.5f, 2);
    for (k = 0; k < 5; k++)
        for (i = 0; i < 6; i++)
            CHECK(dl_gradcheck(fns[i], NULL, 2, pairs[k], 0, 0) == 0, "%s pair %d: %s", names[i], k, dl_error());
    /* one input needs no gradient */
    dl_set_requires_grad(pairs[0][1], 0);
    CHECK(dl_gradcheck(f_mul, NULL, 2, pairs[0], 0, 0) == 0, "%s", dl_error());
    /* a transposed view as input, and a transposed view of a parameter given to the checker */
    {
        dl_tensor *p[2];
        p[0] = param(2, DL_SHAPE(4, 3), 0.5f, 2);
        p[1] = param(2, DL_SHAPE(3, 4), 0.5f, 2);
        CHECK(dl_gradcheck(f_mul_t, NULL, 2, p, 0, 0) == 0, "%s", dl_error());
        CHECK(dl_gradcheck(f_div_t, NULL, 2, p, 0, 0) == 0, "%s", dl_error());
        {
            dl_tensor *q[2];
            q[0] = dl_transpose(p[0], 0, 1);
            q[1] = pairs[2][1];
            CHECK(q[0] && !dl_is_contiguous(q[0]), "view");
            CHECK(dl_gradcheck(f_sub, NULL, 2, q, 0, 0) == 0, "%s", dl_error());
        }
        dl_tensor_free(p[0]);
        dl_tensor_free(p[1]);
    }
    for (k = 0; k < 5; k++) { dl_tensor_free(pairs[k][0]); dl_tensor_free(pairs[k][1]); }
    dl_arena_reset(dl_arena_current());
}

/* ---- scalar and unary ops ---- */

static void test_unary_forward(void) {
    dl_tensor *x = tensor_of(1, DL_SHAPE(6), ref_x);
    float want[6];
    int i;
    CHECK_ALL_NEAR(dl_f32(dl_exp(x)), ref_exp, 6, 1e-6);
    CHECK_ALL_NEAR(dl_f32(dl_log(x)), ref_log, 6, 1e-6);
    CHECK_ALL_NEAR(dl_f32(dl_sqrt(x)), ref_sqrt, 6, 1e-6);
    CHECK_ALL_NEAR(dl_f32(dl_pow(x, 3.0f)), ref_pow3, 6, 1e-6);
    CHECK_ALL_NEAR(dl_f32(dl_pow(x, -0.5f)), ref_pow_mhalf, 6, 1e-6);
    for (i = 0; i < 6; i++) want[i] = ref_x[i] * ref_x[i];
    CHECK_ALL_NEAR(dl_f32(dl_pow(x, 2.0f)), want, 6, 0);
    for (i = 0; i < 6; i++) want[i] = ref_x[i] + 1.5f;
    CHECK_ALL_NEAR(dl_f32(dl_add_scalar(x, 1.5f)), want, 6, 0);
    for (i = 0; i < 6; i++) want[i] = ref_x[i] * -3.0f;
    CHECK_ALL_NEAR(dl_f32(dl_mul_scalar(x, -3.0f)), want, 6, 0);
    for (i = 0; i < 6; i++) want[i] = 2.0f - ref_x[i];
    CHECK_ALL_NEAR(dl_f32(dl_rsub_scalar(2.0f, x)), want, 6, 0);
    {
        float v[5] = {-1.5f, 0.0f, 2.0f, 3.0f, NAN}, c[5] = {0, 0, 2, 2, NAN}, ab[5] = {1.5f, 0, 2, 3, NAN};
        dl_tensor *t = tensor_of(1, DL_SHAPE(5), v), *y;
        y = dl_clamp(t, 0.0f, 2.0f);
        CHECK_ALL_NEAR(dl_f32(y), c, 4, 0);
        CHECK(isnan(dl_f32(y)[4]), "clamp keeps NaN");
        CHECK_ALL_NEAR(dl_f32(dl_abs(t)), ab, 4, 0);
        y = dl_clamp(t, -INFINITY, 1.0f);
        CHECK(y && dl_f32(y)[0] == -1.5f && dl_f32(y)[3] == 1.0f, "one-sided clamp");
        y = dl_clamp(t, 3.0f, 2.0f);
        CHECK(y && dl_f32(y)[0] == 2.0f && dl_f32(y)[3] == 2.0f, "lo > hi gives hi (torch)");
        y = dl_neg(t);
        CHECK(y && dl_f32(y)[0] == 1.5f && dl_f32(y)[2] == -2.0f, "neg");
    }
    /* a non-contiguous input */
    {
        dl_tensor *m = tensor_of(2, DL_SHAPE(2, 3), ref_x);
        dl_tensor *y = dl_exp(dl_transpose(m, 0, 1));
        CHECK(y && y->shape[0] == 3 && fabsf(dl_f32(y)[1] - ref_exp[3]) < 1e-5f, "exp of a transposed view");
    }
    dl_arena_reset(dl_arena_current());
}

static void test_unary_grad_kinks(void) {
    /* torch: abs'(0) = 0; clamp passes the gradient where lo <= x <= hi; pow(x, 0)' = 0 */
    float v[4] = {-1, 0, 2, 3}, ones[4] = {1, 1, 1, 1};
    float g_abs[4] = {-1, 0, 1, 1}, g_clamp[4] = {0, 1, 1, 0}, zero[4] = {0, 0, 0, 0};
    dl_tensor *x = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(4), v);
    dl_set_requires_grad(x, 1);
    dl_backward_grad(dl_abs(x), ones);
    CHECK_ALL_NEAR(x->grad, g_abs, 4, 0);
    dl_zero_grad(x);
    dl_backward_grad(dl_clamp(x, 0.0f, 2.0f), ones);
    CHECK_ALL_NEAR(x->grad, g_clamp, 4, 0);
    dl_zero_grad(x);
    dl_backward_grad(dl_pow(x, 0.0f), ones);
    CHECK_ALL_NEAR(x->grad, zero, 4, 0);
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
}

static dl_tensor *f_exp(dl_tensor **in, void *u) { (void)u; return dl_exp(in[0]); }
static dl_tensor *f_log(dl_tensor **in, void *u) { (void)u; return dl_log(in[0]); }
static dl_tensor *f_sqrt(dl_tensor **in, void *u) { (void)u; return dl_sqrt(in[0]); }
static dl_tensor *f_abs(dl_tensor **in, void *u) { (void)u; return dl_abs(in[0]); }
static dl_tensor *f_neg(dl_tensor **in, void *u) { (void)u; return dl_neg(in[0]); }
static dl_tensor *f_pow(dl_tensor **in, void *u) { return dl_pow(in[0], *(float *)u); }
static dl_tensor *f_clamp(dl_tensor **in, void *u) { (void)u; return dl_clamp(in[0], 0.7f, 1.6f); }
static dl_tensor *f_scalars(dl_tensor **in, void *u) {
    (void)u;
    return dl_rsub_scalar(0.5f, dl_mul_scalar(dl_add_scalar(in[0], 2.0f), -1.5f));
}
static dl_tensor *f_exp_t(dl_tensor **in, void *u) { (void)u; return dl_log(dl_transpose(in[0], 0, 1)); }

static void test_unary_gradcheck(void) {
    static dl_gradcheck_fn fns[7] = {f_exp, f_log, f_sqrt, f_abs, f_neg, f_clamp, f_scalars};
    dl_tensor *x = param(2, DL_SHAPE(3, 4), 0.5f, 2);
    dl_tensor *s = param(2, DL_SHAPE(3, 4), -2, 2);
    float p[4] = {3.0f, 2.0f, -0.5f, 1.5f};
    int i;
    for (i = 0; i < 7; i++) CHECK(dl_gradcheck(fns[i], NULL, 1, &x, 0, 0) == 0, "fn %d: %s", i, dl_error());
    for (i = 0; i < 4; i++) CHECK(dl_gradcheck(f_pow, &p[i], 1, &x, 0, 0) == 0, "pow %g: %s", p[i], dl_error());
    CHECK(dl_gradcheck(f_abs, NULL, 1, &s, 0, 0) == 0, "abs of mixed signs: %s", dl_error());
    CHECK(dl_gradcheck(f_exp_t, NULL, 1, &x, 0, 0) == 0, "log of a transposed view: %s", dl_error());
    dl_tensor_free(x);
    dl_tensor_free(s);
}

/* ---- reductions ---- */

static void test_reduce_forward(void) {
    dl_tensor *x = tensor_of(3, DL_SHAPE(2, 3, 4), ref_xr), *y;
    int ax02[2] = {0, -1}, ax1 = 1, ax0 = 0, i, ok;
    y = dl_sum(x, 2, ax02, 0);
    CHECK(y && y->ndim == 1 && y->shape[0] == 3, "sum shape");
    CHECK_ALL_NEAR(dl_f32(y), ref_sum02, 3, 1e-6);
    y = dl_sum(x, 2, ax02, 1);
    CHECK(y && y->ndim == 3 && y->shape[0] == 1 && y->shape[1] == 3 && y->shape[2] == 1, "keepdim shape");
    CHECK_ALL_NEAR(dl_f32(y), ref_sum02, 3, 1e-6);
    y = dl_mean(x, 1, DL_SHAPE(-1), 0);
    CHECK(y && y->ndim == 2 && y->shape[1] == 3, "mean shape");
    CHECK_ALL_NEAR(dl_f32(y), ref_mean_last, 6, 1e-6);
    CHECK_ALL_NEAR(dl_f32(dl_var(x, 1, &ax1, 1, 0)), ref_var1, 8, 1e-6);
    CHECK_ALL_NEAR(dl_f32(dl_var(x, 2, ax02, 0, 0)), ref_var0_02, 3, 1e-6);
    CHECK_ALL_NEAR(dl_f32(dl_max(x, 2, ax02, 0)), ref_amax02, 3, 0);
    CHECK_ALL_NEAR(dl_f32(dl_max(x, 1, &ax1, 0)), ref_amax1, 8, 0);
    y = dl_sum_all(x);
    CHECK(y && y->ndim == 0 && dl_item(y) == 16.5f, "sum_all");
    y = dl_mean_all(x);
    CHECK(y && y->ndim == 0 && dl_item(y) == 0.6875f, "mean_all");
    y = dl_argmax(x, 1, 0);
    CHECK(y && y->dtype == DL_DTYPE_I32 && y->ndim == 2 && y->shape[1] == 4, "argmax shape");
    for (i = 0, ok = 1; i < 8; i++) ok &= dl_i32(y)[i] == ref_argmax1[i];
    CHECK(ok, "argmax axis 1");
    y = dl_argmax(x, ax0, 1);
    CHECK(y && y->ndim == 3 && y->shape[0] == 1, "argmax keepdim");
    for (i = 0, ok = 1; i < 12; i++) ok &= dl_i32(y)[i] == ref_argmax0[i];
    CHECK(ok, "argmax axis 0");
    /* the same reductions of a transposed view: sum over x^T's axis 0 is x's axis 1 */
    {
        dl_tensor *t = dl_permute(x, DL_SHAPE(1, 0, 2));
        CHECK_ALL_NEAR(dl_f32(dl_var(t, 1, &ax0, 1, 0)), ref_var1, 8, 1e-6);
        CHECK_ALL_NEAR(dl_f32(dl_max(t, 1, &ax0, 0)), ref_amax1, 8, 0);
        y = dl_argmax(t, 0, 0);
        for (i = 0, ok = 1; i < 8; i++) ok &= y && dl_i32(y)[i] == ref_argmax1[i];
        CHECK(ok, "argmax of a view");
    }
    /* ties and NaN in argmax: first maximum; NaN counts as the maximum (torch) */
    {
        float v[5] = {1, 3, 3, 2, 3}, w[4] = {1, NAN, 5, NAN};
        y = dl_argmax(tensor_of(1, DL_SHAPE(5), v), 0, 0);
        CHECK(y && y->ndim == 0 && dl_i32(y)[0] == 1, "first of tied maxima");
        y = dl_argmax(tensor_of(1, DL_SHAPE(4), w), -1, 0);
        CHECK(y && dl_i32(y)[0] == 1, "NaN is the maximum");
        y = dl_max(tensor_of(1, DL_SHAPE(4), w), 0, NULL, 0);
        CHECK(y && isnan(dl_item(y)), "max propagates NaN");
    }
    /* empty reductions: sum 0, mean NaN (torch) */
    {
        dl_tensor *e = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(0, 3));
        y = dl_sum(e, 1, &ax0, 0);
        CHECK(y && y->numel == 3 && dl_f32(y)[2] == 0.0f, "empty sum");
        y = dl_mean(e, 1, &ax0, 0);
        CHECK(y && isnan(dl_f32(y)[0]), "empty mean is NaN");
    }
    /* correction larger than N: inf or NaN like torch, not a crash */
    y = dl_var(tensor_of(1, DL_SHAPE(1), ref_x), 0, NULL, 1, 0);
    CHECK(y && isnan(dl_item(y)), "var of one element, unbiased");
    dl_arena_reset(dl_arena_current());
}

static void test_reduce_grad_values(void) {
    dl_tensor *x = dl_tensor_from(DL_DTYPE_F32, 3, DL_SHAPE(2, 3, 4), ref_xr);
    float g[8];
    int i, ax1 = 1;
    for (i = 0; i < 8; i++) g[i] = (float)i / 4.0f - 0.5f;
    dl_set_requires_grad(x, 1);
    CHECK(dl_backward_grad(dl_var(x, 1, &ax1, 1, 0), g) == 0, "%s", dl_error());
    CHECK_ALL_NEAR(x->grad, ref_var1_grad, 24, 1e-5);
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
}

static void test_max_ties(void) {
    /* torch.amax shares the gradient evenly among tied maxima */
    float v[6] = {1, 3, 3, 2, 2, 0}, want[6] = {0, 0.5f, 0.5f, 0.5f, 0.5f, 0}, ones[2] = {1, 1};
    float want_all[6] = {0, 0.5f, 0.5f, 0, 0, 0};
    dl_tensor *x = dl_tensor_from(DL_DTYPE_F32, 2, DL_SHAPE(2, 3), v);
    dl_set_requires_grad(x, 1);
    dl_backward_grad(dl_max(x, 1, DL_SHAPE(1), 0), ones);
    CHECK_ALL_NEAR(x->grad, want, 6, 0);
    dl_zero_grad(x);
    dl_backward(dl_max(x, 0, NULL, 0));
    CHECK_ALL_NEAR(x->grad, want_all, 6, 0);
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
}

typedef struct reduce_case { int kind, naxes, axes[3], keepdim, correction, transposed; } reduce_case;

static dl_tensor *f_reduce(dl_tensor **in, void *u) {
    const reduce_case *c = (const reduce_case *)u;
    dl_tensor *x = c->transposed ? dl_transpose(in[0], 0, 2) : in[0];
    switch (c->kind) {
    case 0: return dl_sum(x, c->naxes, c->axes, c->keepdim);
    case 1: return dl_mean(x, c->naxes, c->axes, c->keepdim);
    case 2: return dl_var(x, c->naxes, c->axes, c->correction, c->keepdim);
    case 3: return dl_max(x, c->naxes, c->axes, c->keepdim);
    case 4: return dl_sum_all(x);
    default: return dl_mean_all(x);
    }
}

static void test_reduce_gradcheck(void) {
    static const reduce_case cases[] = {
        {0, 2, {0, 2, 0}, 0, 0, 0}, {0, 2, {0, -1, 0}, 1, 0, 1}, {0, 1, {1, 0, 0}, 0, 0, 0}, {0, 0, {0, 0, 0}, 1, 0, 0},
        {1, 1, {-1, 0, 0}, 0, 0, 1}, {1, 2, {1, 0, 0}, 1, 0, 0}, {1, 3, {0, 1, 2}, 0, 0, 0},
        {2, 1, {1, 0, 0}, 0, 1, 0}, {2, 2, {0, 2, 0}, 1, 0, 1}, {2, 0, {0, 0, 0}, 0, 1, 0},
        {3, 1, {2, 0, 0}, 0, 0, 0}, {3, 2, {0, 1, 0}, 1, 0, 1}, {3, 0, {0, 0, 0}, 0, 0, 0},
        {4, 0, {0, 0, 0}, 0, 0, 1}, {5, 0, {0, 0, 0}, 0, 0, 0},
    };
    dl_tensor *x = param(3, DL_SHAPE(2, 3, 4), -2, 2);
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(dl_gradcheck(f_reduce, (void *)&cases[i], 1, &x, 0, 0) == 0, "case %zu: %s", i, dl_error());
    dl_tensor_free(x);
}

/* ---- shape and index ops ---- */

static dl_tensor *f_concat0(dl_tensor **in, void *u) { (void)u; return dl_concat(3, in, 0); }
static dl_tensor *f_concat_inner(dl_tensor **in, void *u) {
    dl_tensor *xs[3];
    (void)u;
    xs[0] = in[0];
    xs[1] = dl_transpose(in[1], 0, 2); /* a non-contiguous part */
    xs[2] = in[0];                     /* the same tensor twice */
    return dl_concat(3, xs, -1);
}

static void test_concat(void) {
    float a[6] = {1, 2, 3, 4, 5, 6}, b[4] = {7, 8, 9, 10};
    float want0[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, want1[10] = {1, 2, 3, 7, 8, 4, 5, 6, 9, 10};
    dl_tensor *xs[2], *y;
    xs[0] = tensor_of(2, DL_SHAPE(2, 3), a);
    xs[1] = tensor_of(2, DL_SHAPE(2, 2), b);
    y = dl_concat(2, xs, 1);
    CHECK(y && y->shape[0] == 2 && y->shape[1] == 5, "concat shape");
    CHECK_ALL_NEAR(dl_f32(y), want1, 10, 0);
    xs[1] = NULL; /* as from a failed op */
    CHECK(dl_concat(2, xs, 0) == NULL, "NULL element propagates");
    xs[1] = tensor_of(2, DL_SHAPE(4, 1), b);
    xs[0] = tensor_of(2, DL_SHAPE(6, 1), a);
    y = dl_concat(2, xs, 0);
    CHECK(y && y->shape[0] == 10, "outer concat");
    CHECK_ALL_NEAR(dl_f32(y), want0, 10, 0);
    {   /* integer tensors concatenate exactly */
        int32_t ia[2] = {16777217, -5}, ib[1] = {2147483647};
        dl_tensor *is[2];
        is[0] = dl_tmp_from(DL_DTYPE_I32, 1, DL_SHAPE(2), ia);
        is[1] = dl_tmp_from(DL_DTYPE_I32, 1, DL_SHAPE(1), ib);
        y = dl_concat(2, is, 0);
        CHECK(y && y->dtype == DL_DTYPE_I32 && dl_i32(y)[0] == 16777217 && dl_i32(y)[2] == 2147483647, "i32 concat");
    }
    {
        dl_tensor *p[3];
        p[0] = param(3, DL_SHAPE(2, 3, 4), -1, 1);
        p[1] = param(3, DL_SHAPE(1, 3, 4), -1, 1);
        p[2] = param(3, DL_SHAPE(3, 3, 4), -1, 1);
        CHECK(dl_gradcheck(f_concat0, NULL, 3, p, 0, 0) == 0, "outer axis: %s", dl_error());
        dl_tensor_free(p[1]);
        p[1] = param(3, DL_SHAPE(5, 3, 2), -1, 1); /* transposed to [2, 3, 5] */
        CHECK(dl_gradcheck(f_concat_inner, NULL, 2, p, 0, 0) == 0, "inner axis: %s", dl_error());
        dl_tensor_free(p[0]); dl_tensor_free(p[1]); dl_tensor_free(p[2]);
    }
    dl_arena_reset(dl_arena_current());
}

static dl_tensor *f_split(dl_tensor **in, void *u) {
    dl_tensor *outs[3], *parts[3];
    (void)u;
    if (dl_split(in[0], 1, 3, DL_SHAPE(1, 3, 1), outs) != 0) return NULL;
    /* weigh the parts differently so a mixed-up backward shows */
    parts[0] = dl_mul_scalar(outs[2], 3.0f);
    parts[1] = outs[0];
    parts[2] = dl_exp(outs[1]);
    return dl_concat(3, parts, 1);
}

static void test_split(void) {
    float v[10] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    dl_tensor *x = tensor_of(2, DL_SHAPE(2, 5), v), *outs[3];
    CHECK(dl_split(x, 1, 3, DL_SHAPE(2, 2, 1), outs) == 0, "%s", dl_error());
    CHECK(outs[0]->shape[1] == 2 && outs[2]->shape[1] == 1, "split sizes");
    CHECK(dl_get(outs[1], DL_SHAPE(1, 0)) == 7.0f && dl_get(outs[2], DL_SHAPE(0, 0)) == 4.0f, "split values");
    CHECK(dl_split(x, 0, 2, NULL, outs) == 0 && outs[1]->shape[0] == 1 && dl_get(outs[1], DL_SHAPE(0, 4)) == 9.0f, "equal split");
    dl_clear_error();
    CHECK(dl_split(x, 1, 2, DL_SHAPE(2, 2), outs) == -1 && strstr(dl_error(), "dl_split"), "sizes must add up");
    CHECK(dl_split(x, 1, 2, NULL, outs) == -1, "5 does not split in 2");
    CHECK(dl_split(x, 2, 1, NULL, outs) == -1, "bad axis");
    {
        dl_tensor *p = param(2, DL_SHAPE(3, 5), -1, 1);
        CHECK(dl_gradcheck(f_split, NULL, 1, &p, 0, 0) == 0, "%s", dl_error());
        dl_tensor_free(p);
    }
    dl_arena_reset(dl_arena_current());
}

static dl_tensor *f_index_select(dl_tensor **in, void *u) {
    int32_t iv[5] = {2, 0, 2, 3, 2};
    (void)u;
    return dl_index_select(dl_transpose(in[0], 0, 1), 1, dl_tmp_from(DL_DTYPE_I32, 1, DL_SHAPE(5), iv));
}

static void test_index_select(void) {
    float v[6] = {1, 2, 3, 4, 5, 6}, want[6] = {5, 6, 1, 2, 5, 6}, ones[6] = {1, 1, 1, 1, 1, 1};
    float gwant[6] = {1, 1, 0, 0, 2, 2}, want1[6] = {2, 1, 4, 3, 6, 5};
    int32_t iv[3] = {2, 0, 2}, iv1[2] = {1, 0};
    dl_tensor *x = dl_tensor_from(DL_DTYPE_F32, 2, DL_SHAPE(3, 2), v), *idx = dl_tmp_from(DL_DTYPE_I32, 1, DL_SHAPE(3), iv), *y;
    dl_set_requires_grad(x, 1);
    y = dl_index_select(x, 0, idx);
    CHECK(y && y->shape[0] == 3 && y->shape[1] == 2, "shape");
    CHECK_ALL_NEAR(dl_f32(y), want, 6, 0);
    dl_backward_grad(y, ones);
    CHECK_ALL_NEAR(x->grad, gwant, 6, 0); /* repeated index 2 accumulates */
    y = dl_index_select(x, -1, dl_tmp_from(DL_DTYPE_I32, 1, DL_SHAPE(2), iv1));
    CHECK_ALL_NEAR(dl_f32(y), want1, 6, 0);
    {   /* u8 rows (a dataset batch) */
        uint8_t px[6] = {10, 11, 20, 21, 30, 31};
        y = dl_index_select(dl_tmp_from(DL_DTYPE_U8, 2, DL_SHAPE(3, 2), px), 0, idx);
        CHECK(y && y->dtype == DL_DTYPE_U8 && dl_u8(y)[0] == 30 && dl_u8(y)[3] == 11, "u8 index_select");
    }
    {
        dl_tensor *p = param(3, DL_SHAPE(4, 3, 2), -1, 1);
        CHECK(dl_gradcheck(f_index_select, NULL, 1, &p, 0, 0) == 0, "%s", dl_error());
        dl_tensor_free(p);
    }
    dl_clear_error();
    iv[1] = 3;
    CHECK(dl_index_select(x, 0, dl_tmp_from(DL_DTYPE_I32, 1, DL_SHAPE(3), iv)) == NULL, "index 3 out of range");
    CHECK(strstr(dl_error(), "dl_index_select") && strstr(dl_error(), "3"), "message: %s", dl_error());
    iv[1] = -1;
    CHECK(dl_index_select(x, 0, dl_tmp_from(DL_DTYPE_I32, 1, DL_SHAPE(3), iv)) == NULL, "negative index");
    CHECK(dl_index_select(x, 0, dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(3))) == NULL, "f32 indices");
    CHECK(dl_index_select(x, 0, dl_tmp(DL_DTYPE_I32, 2, DL_SHAPE(1, 1))) == NULL, "2-d indices");
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
}

static dl_tensor *f_gather(dl_tensor **in, void *u) {
    int32_t iv[6] = {0, 2, 1, 3, 3, 0};
    (void)u;
    return dl_gather(in[0], 1, dl_tmp_from(DL_DTYPE_I32, 2, DL_SHAPE(2, 3), iv));
}
static dl_tensor *f_gather_t(dl_tensor **in, void *u) {
    int32_t iv[6] = {1, 0, 0, 2, 2, 2}; /* [2, 3] gathering along axis 0 of a [3, 4] view */
    (void)u;
    return dl_gather(dl_transpose(in[0], 0, 1), 0, dl_transpose(dl_tmp_from(DL_DTYPE_I32, 2, DL_SHAPE(3, 2), iv), 0, 1));
}

static void test_gather(void) {
    float v[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, want[6] = {0, 2, 1, 7, 7, 4}, ones[6] = {1, 1, 1, 1, 1, 1};
    float gwant[12] = {1, 1, 1, 0, 1, 0, 0, 2, 0, 0, 0, 0};
    dl_tensor *x = dl_tensor_from(DL_DTYPE_F32, 2, DL_SHAPE(3, 4), v), *y;
    dl_set_requires_grad(x, 1);
    y = f_gather(&x, NULL);
    CHECK(y && y->shape[0] == 2 && y->shape[1] == 3, "gather shape");
    CHECK_ALL_NEAR(dl_f32(y), want, 6, 0);
    dl_backward_grad(y, ones);
    CHECK_ALL_NEAR(x->grad, gwant, 12, 0);
    {
        dl_tensor *p = param(2, DL_SHAPE(4, 3), -1, 1);
        CHECK(dl_gradcheck(f_gather, NULL, 1, &x, 0, 0) == 0, "%s", dl_error());
        CHECK(dl_gradcheck(f_gather_t, NULL, 1, &p, 0, 0) == 0, "views: %s", dl_error());
        dl_tensor_free(p);
    }
    dl_clear_error();
    CHECK(dl_gather(x, 1, dl_tmp(DL_DTYPE_I32, 2, DL_SHAPE(4, 1))) == NULL, "index larger than x on axis 0");
    CHECK(strstr(dl_error(), "dl_gather"), "message: %s", dl_error());
    CHECK(dl_gather(x, 1, dl_full(2, DL_SHAPE(1, 1), 4.0f)) == NULL, "f32 indices");
    {
        int32_t bad = 4;
        CHECK(dl_gather(x, 1, dl_tmp_from(DL_DTYPE_I32, 2, DL_SHAPE(1, 1), &bad)) == NULL, "index out of range");
        CHECK(strstr(dl_error(), "out of range"), "message: %s", dl_error());
    }
    CHECK(dl_gather(x, 0, dl_tmp(DL_DTYPE_I32, 1, DL_SHAPE(1))) == NULL, "ndim mismatch");
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
}

static void test_one_hot_and_cast(void) {
    int32_t lv[4] = {2, 0, 1, 2};
    uint8_t uv[2] = {3, 1};
    dl_tensor *labels = dl_tmp_from(DL_DTYPE_I32, 2, DL_SHAPE(2, 2), lv), *y;
    float want[12] = {0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1};
    y = dl_one_hot(labels, 3);
    CHECK(y && y->dtype == DL_DTYPE_F32 && y->ndim == 3 && y->shape[2] == 3, "one_hot shape");
    CHECK_ALL_NEAR(dl_f32(y), want, 12, 0);
    y = dl_one_hot(labels, -1);
    CHECK(y && y->shape[2] == 3, "inferred num_classes");
    y = dl_one_hot(dl_tmp_from(DL_DTYPE_U8, 1, DL_SHAPE(2), uv), 5);
    CHECK(y && y->shape[1] == 5 && dl_f32(y)[3] == 1.0f && dl_f32(y)[6] == 1.0f, "u8 labels");
    y = dl_one_hot(dl_transpose(labels, 0, 1), 3); /* labels [[2, 1], [0, 2]] */
    CHECK(y && dl_f32(y)[2] == 1.0f && dl_f32(y)[4] == 1.0f && dl_f32(y)[6] == 1.0f, "strided labels");
    dl_clear_error();
    CHECK(dl_one_hot(labels, 2) == NULL && strstr(dl_error(), "dl_one_hot"), "label 2 out of range for 2 classes");
    lv[0] = -1;
    CHECK(dl_one_hot(dl_tmp_from(DL_DTYPE_I32, 1, DL_SHAPE(4), lv), 3) == NULL, "negative label");
    CHECK(dl_one_hot(dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(2)), 3) == NULL, "f32 labels");
    /* casts: truncation toward zero, u8 wraps like torch on x86 */
    {
        float f[5] = {-1.0f, 256.0f, 300.0f, -3.7f, 2.9f};
        uint8_t u8want[5] = {255, 0, 44, 253, 2};
        int32_t i32want[5] = {-1, 256, 300, -3, 2};
        dl_tensor *x = tensor_of(1, DL_SHAPE(5), f), *c;
        int i, ok = 1;
        c = dl_cast(x, DL_DTYPE_U8);
        for (i = 0; i < 5; i++) ok &= c && dl_u8(c)[i] == u8want[i];
        CHECK(ok, "f32 -> u8");
        c = dl_cast(x, DL_DTYPE_I32);
        for (i = 0; i < 5; i++) ok &= c && dl_i32(c)[i] == i32want[i];
        CHECK(ok, "f32 -> i32");
        c = dl_cast(dl_cast(c, DL_DTYPE_U8), DL_DTYPE_F32);
        CHECK(c && dl_f32(c)[0] == 255.0f && dl_f32(c)[2] == 44.0f, "i32 -> u8 -> f32");
        {
            int32_t big = 16777217;
            c = dl_cast(dl_tmp_from(DL_DTYPE_I32, 0, NULL, &big), DL_DTYPE_I32);
            CHECK(c && dl_i32(c)[0] == 16777217, "i32 -> i32 is exact");
        }
    }
    {
        dl_tensor *p = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(2), lv), *c;
        float ones[2] = {1, 1};
        dl_set_requires_grad(p, 1);
        c = dl_cast(p, DL_DTYPE_F32);
        CHECK(c && c->requires_grad && dl_backward_grad(c, ones) == 0 && p->grad[1] == 1.0f, "f32 -> f32 is differentiable");
        c = dl_cast(p, DL_DTYPE_I32);
        CHECK(c && !c->requires_grad, "to i32 is not differentiable");
        dl_tensor_free(p);
    }
    dl_arena_reset(dl_arena_current());
}

static dl_tensor *f_broadcast_to(dl_tensor **in, void *u) { (void)u; return dl_broadcast_to(in[0], 3, DL_SHAPE(2, 4, 3)); }
static dl_tensor *f_broadcast_to_t(dl_tensor **in, void *u) { (void)u; return dl_broadcast_to(dl_transpose(in[0], 0, 1), 3, DL_SHAPE(2, 4, 3)); }

static void test_broadcast_to(void) {
    float v[3] = {1, 2, 3};
    dl_tensor *y = dl_broadcast_to(tensor_of(2, DL_SHAPE(3, 1), v), 3, DL_SHAPE(2, 3, 2));
    float want[12] = {1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3};
    CHECK(y && y->ndim == 3 && dl_is_contiguous(y), "materialized");
    CHECK_ALL_NEAR(dl_f32(y), want, 12, 0);
    {
        dl_tensor *p = param(2, DL_SHAPE(1, 3), -1, 1), *q = param(2, DL_SHAPE(1, 4), -1, 1), *s = param(0, NULL, -1, 1);
        CHECK(dl_gradcheck(f_broadcast_to, NULL, 1, &p, 0, 0) == 0, "%s", dl_error());
        CHECK(dl_gradcheck(f_broadcast_to, NULL, 1, &s, 0, 0) == 0, "scalar: %s", dl_error());
        CHECK(dl_gradcheck(f_broadcast_to_t, NULL, 1, &q, 0, 0) == 0, "view: %s", dl_error());
        dl_tensor_free(p); dl_tensor_free(q); dl_tensor_free(s);
    }
    dl_clear_error();
    CHECK(dl_broadcast_to(tensor_of(1, DL_SHAPE(3), v), 2, DL_SHAPE(2, 2)) == NULL, "3 does not broadcast to 2");
    CHECK(strstr(dl_error(), "dl_broadcast_to"), "message: %s", dl_error());
    CHECK(dl_broadcast_to(tensor_of(2, DL_SHAPE(3, 1), v), 1, DL_SHAPE(3)) == NULL, "fewer axes");
    dl_arena_reset(dl_arena_current());
}

/* ---- errors ---- */

static void test_errors(void) {
    dl_tensor *a = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(2, 3)), *b = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(4, 3));
    dl_tensor *i = dl_tmp(DL_DTYPE_I32, 2, DL_SHAPE(2, 3));
    dl_clear_error();
    CHECK(dl_add(a, b) == NULL, "[2,3] + [4,3]");
    CHECK(strstr(dl_error(), "dl_add") && strstr(dl_error(), "[2, 3]") && strstr(dl_error(), "[4, 3]"), "message: %s", dl_error());
    CHECK(dl_maximum(a, i) == NULL && strstr(dl_error(), "dl_maximum") && strstr(dl_error(), "i32"), "dtype: %s", dl_error());
    dl_set_error("first");
    CHECK(dl_mul(NULL, a) == NULL && dl_div(a, NULL) == NULL && dl_exp(NULL) == NULL && dl_sum(NULL, 0, NULL, 0) == NULL, "NULL in, NULL out");
    CHECK(dl_argmax(NULL, 0, 0) == NULL && dl_concat(1, &b, 0) != NULL, "NULL argmax");
    dl_set_error("first");
    b = NULL;
    CHECK(dl_concat(1, &b, 0) == NULL && dl_gather(NULL, 0, i) == NULL && dl_one_hot(NULL, 3) == NULL && dl_cast(NULL, DL_DTYPE_F32) == NULL, "NULL");
    CHECK(dl_broadcast_to(NULL, 1, DL_SHAPE(2)) == NULL && dl_index_select(a, 0, NULL) == NULL, "NULL");
    CHECK(strcmp(dl_error(), "first") == 0, "NULL inputs keep the first message: %s", dl_error());
    CHECK(dl_log(i) == NULL && strstr(dl_error(), "dl_log"), "unary dtype: %s", dl_error());
    CHECK(dl_sum(a, 1, DL_SHAPE(2), 0) == NULL && strstr(dl_error(), "dl_sum") && strstr(dl_error(), "axis"), "axis range: %s", dl_error());
    CHECK(dl_mean(a, 2, DL_SHAPE(1, -1), 0) == NULL && strstr(dl_error(), "twice"), "repeated axis: %s", dl_error());
    CHECK(dl_max(dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(0)), 0, NULL, 0) == NULL && strstr(dl_error(), "dl_max"), "empty max");
    CHECK(dl_argmax(a, -3, 0) == NULL && strstr(dl_error(), "dl_argmax"), "argmax axis");
    {
        dl_tensor *xs[2];
        xs[0] = a;
        xs[1] = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(3, 3));
        CHECK(dl_concat(2, xs, 1) == NULL && strstr(dl_error(), "dl_concat"), "concat shapes: %s", dl_error());
        xs[1] = i;
        CHECK(dl_concat(2, xs, 0) == NULL && strstr(dl_error(), "i32"), "concat dtypes: %s", dl_error());
        CHECK(dl_concat(0, xs, 0) == NULL, "concat of nothing");
    }
    {   /* a tensor that claims to be on the GPU */
        dl_tensor g = *a;
        g.device = DL_DEVICE_CUDA;
        CHECK(dl_add(&g, a) == NULL && strstr(dl_error(), "CPU"), "device: %s", dl_error());
        CHECK(dl_sum_all(&g) == NULL && strstr(dl_error(), "CPU"), "device: %s", dl_error());
    }
    dl_arena_reset(dl_arena_current());
}

/* A Dense-like step: y = relu-free x W + b through the fast paths, no malloc after warm-up. */
static void test_large_shapes(void) {
    dl_tensor *x = param(2, DL_SHAPE(256, 300), -1, 1), *b = param(1, DL_SHAPE(300), -1, 1), *y;
    double s = 0;
    size_t k;
    y = dl_sum_all(dl_mul(dl_add(x, b), dl_scalar(0.5f)));
    for (k = 0; k < x->numel; k++) s += 0.5 * ((double)dl_f32(x)[k] + dl_f32(b)[k % 300]);
    CHECK_NEAR(dl_item(y), s, 1e-5);
    CHECK(dl_backward(y) == 0, "%s", dl_error());
    CHECK_NEAR(b->grad[7], 128.0, 1e-6);
    CHECK_NEAR(x->grad[1000], 0.5, 1e-6);
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
    dl_tensor_free(b);
}

/* NaN inputs: gradients as PyTorch 1.13 computes them (found by tools/torch_parity.py).
   minimum/maximum give g to both sides where either is NaN; amax over a slice whose maximum
   is NaN gives NaN to the whole slice (0 / 0 in torch's formula). */
static void test_nan_gradients_like_torch(void) {
    float av[3] = {1, NAN, 2}, bv[3] = {NAN, 0.5f, 2}, ones[3] = {1, 1, 1}, xv[6] = {1, NAN, 2, 0, 1, 1};
    float want[3] = {1, 1, 0.5f}, gm[2] = {1, 1};
    dl_tensor *a = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(3), av), *b = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(3), bv);
    dl_tensor *x = dl_tensor_from(DL_DTYPE_F32, 2, DL_SHAPE(2, 3), xv);
    int op, axis = 1;
    dl_set_requires_grad(a, 1);
    dl_set_requires_grad(b, 1);
    dl_set_requires_grad(x, 1);
    for (op = 0; op < 2; op++) {
        dl_tensor *y = op ? dl_maximum(a, b) : dl_minimum(a, b);
        dl_zero_grad(a);
        dl_zero_grad(b);
        CHECK(y && dl_backward_grad(y, ones) == 0, "%s", dl_error());
        CHECK_ALL_NEAR(a->grad, want, 3, 0);
        CHECK_ALL_NEAR(b->grad, want, 3, 0);
    }
    CHECK(dl_backward_grad(dl_max(x, 1, &axis, 0), gm) == 0, "%s", dl_error());
    CHECK(isnan(x->grad[0]) && isnan(x->grad[1]) && isnan(x->grad[2]), "NaN slice of amax gets NaN gradients");
    CHECK(x->grad[3] == 0 && x->grad[4] == 0.5f && x->grad[5] == 0.5f, "ties split evenly: %g %g %g",
          x->grad[3], x->grad[4], x->grad[5]);
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(a);
    dl_tensor_free(b);
    dl_tensor_free(x);
}

int main(void) {
    dl_rng_seed(&rng, 2024);
    RUN(test_binary_forward);
    RUN(test_binary_grad_values);
    RUN(test_min_max_ties);
    RUN(test_binary_gradcheck);
    RUN(test_unary_forward);
    RUN(test_unary_grad_kinks);
    RUN(test_unary_gradcheck);
    RUN(test_reduce_forward);
    RUN(test_reduce_grad_values);
    RUN(test_max_ties);
    RUN(test_reduce_gradcheck);
    RUN(test_concat);
    RUN(test_split);
    RUN(test_index_select);
    RUN(test_gather);
    RUN(test_one_hot_and_cast);
    RUN(test_broadcast_to);
    RUN(test_errors);
    RUN(test_large_shapes);
    RUN(test_nan_gradients_like_torch);
    dl_arena_free_default();
    return test_summary();
}
