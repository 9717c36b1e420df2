/* Layers of dl_nn.h: every built-in layer's backward by finite differences through dl_layer_call
   (with respect to the inputs and each weight), forward values against plain C references in
   double (Keras' padding rules, activations, normalizations), output shapes against Keras'
   rules, PyTorch parity of Conv2D / Conv2DTranspose "same" (tests/data/nn_conv_parity.safetensors,
   written by tools/make_keras_fixtures.py with torch 1.13), initializers, dl_nn_seed, and bad
   constructor arguments (NULL + message, nothing leaked, also inside dl_sequential).

   Allocations are counted (live blocks) so that a leak shows in the plain build too, not only
   under the leak checker. */
#include <stdlib.h>

#include "count_alloc.h"
#define DL_IMPLEMENTATION
#include "../dl_nn.h"
#include "test.h"

static dl_rng g_rng; /* the test's own numbers (inputs, set weights) */

/* A persistent f32 tensor of normal values (std), requiring a gradient when grad. */
static dl_tensor *randn(int ndim, const int *shape, float std, int grad) {
    dl_tensor *t = dl_tensor_new(DL_DTYPE_F32, ndim, shape);
    dl_fill_normal(t, 0.0f, std, &g_rng);
    if (grad) dl_set_requires_grad(t, 1);
    return t;
}

static size_t numel_of(int ndim, const int *shape) {
    size_t n = 1;
    int i;
    for (i = 0; i < ndim; i++) n *= (size_t)shape[i];
    return n;
}

static int shape_is(const dl_tensor *t, int ndim, const int *shape) {
    int i;
    if (!t || t->ndim != ndim) return 0;
    for (i = 0; i < ndim; i++) if (t->shape[i] != shape[i]) return 0;
    return 1;
}

/* ---- gradient check of a layer through dl_layer_call_n ------------------------------------
   The inputs of dl_gradcheck are the layer's inputs followed by all its weights, so the check
   covers d/dx and d/dweight (weights that need no gradient, like moving statistics, are
   skipped by dl_gradcheck). reset_rng replays the same dropout mask at every evaluation. */
typedef struct lcall {
    dl_layer *l;
    int n_in, training, reset_rng;
    dl_rng rng;
} lcall;

static dl_tensor *f_layer(dl_tensor **in, void *user) {
    lcall *c = (lcall *)user;
    if (c->reset_rng) c->l->rng = c->rng;
    return dl_layer_call_n(c->l, c->n_in, in, c->training);
}

/* Builds l on xs (one call), then checks. Returns dl_gradcheck's result (message in dl_error). */
static int gradcheck_layer(dl_layer *l, int n_in, dl_tensor **xs, int training, int reset_rng, float tol) {
    dl_tensor *in[16];
    lcall c;
    int i, n = 0, ok;
    c.l = l; c.n_in = n_in; c.training = training; c.reset_rng = reset_rng; c.rng = l->rng;
    if (!dl_layer_call_n(l, n_in, xs, training)) return 0;
    dl_arena_reset(dl_arena_current());
    for (i = 0; i < n_in; i++) in[n++] = xs[i];
    for (i = 0; i < l->n_params; i++) in[n++] = l->params[i];
    ok = dl_gradcheck(f_layer, &c, n, in, 1e-3f, tol) == 0;
    dl_arena_reset(dl_arena_current());
    return ok;
}

/* ---- references in double ---- */

static double act_ref(double v, dl_act act) {
    switch (act) {
    case DL_ACT_LINEAR: return v;
    case DL_ACT_RELU: return v > 0 ? v : 0;
    case DL_ACT_SIGMOID: return 1.0 / (1.0 + exp(-v));
    case DL_ACT_TANH: return tanh(v);
    case DL_ACT_GELU: return 0.5 * v * (1.0 + erf(v / sqrt(2.0)));
    case DL_ACT_ELU: return v > 0 ? v : exp(v) - 1.0;
    case DL_ACT_LEAKY_RELU: return v > 0 ? v : 0.2 * v;
    case DL_ACT_SOFTPLUS: return log1p(exp(v));
    default: return NAN; /* softmax: over rows, see act_rows */
    }
}

/* act over rows of `cols` values in place (softmax over each row). */
static void act_rows(double *v, size_t rows, int cols, dl_act act) {
    size_t r;
    int j;
    for (r = 0; r < rows; r++) {
        double *row = v + r * (size_t)cols;
        if (act == DL_ACT_SOFTMAX) {
            double mx = row[0], s = 0;
            for (j = 1; j < cols; j++) if (row[j] > mx) mx = row[j];
            for (j = 0; j < cols; j++) s += exp(row[j] - mx);
            for (j = 0; j < cols; j++) row[j] = exp(row[j] - mx) / s;
        } else {
            for (j = 0; j < cols; j++) row[j] = act_ref(row[j], act);
        }
    }
}

/* Keras "same": (before, after) padding of one axis. */
static void same_pads(int n, int k, int s, int *before, int *after) {
    int out = (n + s - 1) / s, total = (out - 1) * s + k - n;
    if (total < 0) total = 0;
    *before = total / 2;
    *after = total - total / 2;
}

/* Conv2D reference: x [N,C,H,W], w [F,C,k,k], b [F] -> out (shape given). */
static void conv_ref(const dl_tensor *x, const dl_tensor *w, const dl_tensor *b, int s, int same, double *out, int OH, int OW) {
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], F = w->shape[0], k = w->shape[2];
    int pt = 0, pl = 0, dummy, n, f, oh, ow, c, p, q;
    const float *xs = dl_f32(x), *ws = dl_f32(w);
    if (same) { same_pads(H, k, s, &pt, &dummy); same_pads(W, k, s, &pl, &dummy); }
    for (n = 0; n < N; n++)
        for (f = 0; f < F; f++)
            for (oh = 0; oh < OH; oh++)
                for (ow = 0; ow < OW; ow++) {
                    double acc = dl_f32(b)[f];
                    for (c = 0; c < C; c++)
                        for (p = 0; p < k; p++)
                            for (q = 0; q < k; q++) {
                                int ih = oh * s + p - pt, iw = ow * s + q - pl;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                acc += (double)xs[((n * C + c) * H + ih) * W + iw] * ws[((f * C + c) * k + p) * k + q];
                            }
                    out[((n * F + f) * OH + oh) * OW + ow] = acc;
                }
}

/* Conv2DTranspose reference: the full scatter ((in-1)*s + k), then crop [first, first + out). */
static void convt_ref(const dl_tensor *x, const dl_tensor *w, const dl_tensor *b, int s, int same, double *out, int OH, int OW) {
    int N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3], F = w->shape[1], k = w->shape[2];
    int FH = (H - 1) * s + k, FW = (W - 1) * s + k, first = same ? (k - s > 0 ? (k - s) / 2 : 0) : 0;
    int n, f, c, ih, iw, p, q, oh, ow;
    double *full = (double *)calloc((size_t)N * F * FH * FW, sizeof(double));
    const float *xs = dl_f32(x), *ws = dl_f32(w);
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++)
            for (ih = 0; ih < H; ih++)
                for (iw = 0; iw < W; iw++)
                    for (f = 0; f < F; f++)
                        for (p = 0; p < k; p++)
                            for (q = 0; q < k; q++)
                                full[((size_t)(n * F + f) * FH + ih * s + p) * FW + iw * s + q] +=
                                    (double)xs[((n * C + c) * H + ih) * W + iw] * ws[((c * F + f) * k + p) * k + q];
    for (n = 0; n < N; n++)
        for (f = 0; f < F; f++)
            for (oh = 0; oh < OH; oh++)
                for (ow = 0; ow < OW; ow++)
                    out[((n * F + f) * OH + oh) * OW + ow] =
                        full[((size_t)(n * F + f) * FH + oh + first) * FW + ow + first] + dl_f32(b)[f];
    free(full);
}

static void check_against(const dl_tensor *y, const double *want, double tol, const char *what) {
    size_t i;
    const float *ys = dl_contig_f32(y);
    for (i = 0; i < y->numel; i++)
        if (!(fabs(ys[i] - want[i]) <= tol * (1.0 + fabs(want[i])))) {
            CHECK(0, "%s: element %zu is %.8g, expected %.8g", what, i, (double)ys[i], want[i]);
            return;
        }
}

/* ---- Dense ---- */

static void test_dense(void) {
    int act;
    dl_nn_seed(1);
    for (act = DL_ACT_LINEAR; act <= DL_ACT_SOFTPLUS; act++) {
        dl_layer *l = dl_Dense(4, (dl_act)act);
        dl_tensor *x = randn(2, DL_SHAPE(3, 5), 1.0f, 1), *y, *xs[1];
        double want[12];
        int i, o, k;
        CHECK(l != NULL, "%s", dl_error());
        if (!l) { dl_tensor_free(x); continue; }
        y = dl_layer_call(l, x, 1);
        CHECK(shape_is(y, 2, DL_SHAPE(3, 4)), "Dense(4) on [3, 5]");
        CHECK(l->n_params == 2 && shape_is(dl_layer_weight(l, "kernel"), 2, DL_SHAPE(5, 4)) &&
                  shape_is(dl_layer_weight(l, "bias"), 1, DL_SHAPE(4)), "kernel [in, units], bias [units]");
        dl_fill_normal(dl_layer_weight(l, "bias"), 0.0f, 0.3f, &g_rng); /* not zero: the bias is checked too */
        y = dl_layer_call(l, x, 1);
        for (i = 0; i < 3; i++)
            for (o = 0; o < 4; o++) {
                double acc = dl_f32(l->params[1])[o];
                for (k = 0; k < 5; k++) acc += (double)dl_f32(x)[i * 5 + k] * dl_f32(l->params[0])[k * 4 + o];
                want[i * 4 + o] = acc;
            }
        act_rows(want, 3, 4, (dl_act)act);
        if (y) check_against(y, want, 1e-5, dl_act_name((dl_act)act));
        dl_arena_reset(dl_arena_current());
        xs[0] = x;
        CHECK(gradcheck_layer(l, 1, xs, 1, 0, 0), "Dense %s: %s", dl_act_name((dl_act)act), dl_error());
        dl_layer_free(l);
        dl_tensor_free(x);
    }
    { /* [batch, time, features] -> [batch, time, units]; wrong features after the build */
        dl_layer *l = dl_Dense(3, DL_ACT_TANH);
        dl_tensor *x = randn(3, DL_SHAPE(2, 4, 5), 1.0f, 1), *bad = randn(2, DL_SHAPE(2, 6), 1.0f, 0), *xs[1];
        CHECK(shape_is(dl_layer_call(l, x, 0), 3, DL_SHAPE(2, 4, 3)), "Dense on 3-d input");
        xs[0] = x;
        CHECK(gradcheck_layer(l, 1, xs, 0, 0, 0), "Dense on 3-d: %s", dl_error());
        dl_clear_error();
        CHECK(dl_layer_call(l, bad, 0) == NULL && strstr(dl_error(), "dense"), "6 features into a 5-feature kernel: '%s'", dl_error());
        dl_layer_free(l);
        dl_tensor_free(x);
        dl_tensor_free(bad);
    }
    dl_arena_reset(dl_arena_current());
}

/* ---- Conv2D ---- */

typedef struct conv_case { int h, w, k, s, same; } conv_case;

static void test_conv2d(void) {
    static const conv_case cases[] = {
        {6, 5, 3, 1, 0}, {7, 8, 3, 2, 0}, {6, 5, 3, 1, 1}, {5, 6, 4, 1, 1}, /* even kernel: pads 1 + 2 */
        {7, 7, 3, 2, 1},                                                    /* odd size: ceil(7/2) = 4, pads 1 + 1 */
        {8, 6, 3, 2, 1},                                                    /* even size: pads 0 + 1 (asymmetric) */
        {5, 8, 1, 2, 1}, {4, 4, 5, 2, 1},
    };
    size_t ci;
    dl_nn_seed(2);
    for (ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const conv_case *c = &cases[ci];
        int oh = c->same ? (c->h + c->s - 1) / c->s : (c->h - c->k) / c->s + 1;
        int ow = c->same ? (c->w + c->s - 1) / c->s : (c->w - c->k) / c->s + 1;
        dl_layer *l = dl_Conv2D(3, c->k, c->s, c->same ? DL_PADDING_SAME : DL_PADDING_VALID, DL_ACT_LINEAR);
        dl_tensor *x = randn(4, DL_SHAPE(2, 2, c->h, c->w), 1.0f, 1), *y, *xs[1];
        double *want = (double *)malloc(sizeof(double) * 2 * 3 * (size_t)oh * (size_t)ow);
        y = dl_layer_call(l, x, 0);
        CHECK(shape_is(y, 4, DL_SHAPE(2, 3, oh, ow)), "case %zu: Conv2D k%d s%d %s on %dx%d gives %dx%d (Keras)", ci,
              c->k, c->s, c->same ? "same" : "valid", c->h, c->w, oh, ow);
        CHECK(shape_is(dl_layer_weight(l, "kernel"), 4, DL_SHAPE(3, 2, c->k, c->k)), "kernel [filters, in, k, k]");
        dl_fill_normal(dl_layer_weight(l, "bias"), 0.0f, 0.3f, &g_rng);
        y = dl_layer_call(l, x, 0);
        if (shape_is(y, 4, DL_SHAPE(2, 3, oh, ow))) {
            conv_ref(x, l->params[0], l->params[1], c->s, c->same, want, oh, ow);
            check_against(y, want, 1e-5, "Conv2D forward");
        }
        dl_arena_reset(dl_arena_current());
        xs[0] = x;
        CHECK(gradcheck_layer(l, 1, xs, 1, 0, 0), "case %zu: %s", ci, dl_error());
        free(want);
        dl_layer_free(l);
        dl_tensor_free(x);
    }
    { /* activation applied; errors */
        dl_layer *l = dl_Conv2D(2, 3, 1, DL_PADDING_SAME, DL_ACT_RELU);
        dl_tensor *x = randn(4, DL_SHAPE(1, 2, 4, 4), 1.0f, 0), *y, *x3 = randn(3, DL_SHAPE(2, 4, 4), 1.0f, 0);
        dl_tensor *x5 = randn(4, DL_SHAPE(1, 5, 4, 4), 1.0f, 0);
        size_t i;
        int neg = 0;
        y = dl_layer_call(l, x, 0);
        CHECK(y != NULL, "%s", dl_error());
        for (i = 0; y && i < y->numel; i++) neg += dl_contig_f32(y)[i] < 0;
        CHECK(neg == 0, "relu applied");
        dl_clear_error();
        CHECK(dl_layer_call(l, x3, 0) == NULL && dl_error()[0], "3-d input is an error");
        dl_clear_error();
        CHECK(dl_layer_call(l, x5, 0) == NULL && strstr(dl_error(), "channels"), "5 channels into a 2-channel kernel: '%s'", dl_error());
        dl_layer_free(l);
        dl_tensor_free(x); dl_tensor_free(x3); dl_tensor_free(x5);
        dl_arena_reset(dl_arena_current());
    }
}

/* ---- Conv2DTranspose ---- */

static void test_conv2d_transpose(void) {
    static const conv_case cases[] = {
        {3, 4, 3, 1, 0}, {3, 2, 3, 2, 0}, {2, 3, 2, 2, 0}, {3, 4, 3, 1, 1}, {3, 3, 3, 2, 1}, /* same: crop 0 + 1 */
        {3, 2, 4, 2, 1},                                                                  /* crop 1 + 1 */
        {2, 3, 5, 2, 1}, {2, 2, 2, 2, 1}, {2, 2, 5, 3, 1},
    };
    size_t ci;
    dl_nn_seed(3);
    for (ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const conv_case *c = &cases[ci];
        int oh = c->same ? c->h * c->s : (c->h - 1) * c->s + c->k, ow = c->same ? c->w * c->s : (c->w - 1) * c->s + c->k;
        dl_layer *l = dl_Conv2DTranspose(2, c->k, c->s, c->same ? DL_PADDING_SAME : DL_PADDING_VALID, DL_ACT_LINEAR);
        dl_tensor *x = randn(4, DL_SHAPE(2, 3, c->h, c->w), 1.0f, 1), *y, *xs[1];
        double *want = (double *)malloc(sizeof(double) * 2 * 2 * (size_t)oh * (size_t)ow);
        y = dl_layer_call(l, x, 0);
        CHECK(shape_is(y, 4, DL_SHAPE(2, 2, oh, ow)), "case %zu: Conv2DTranspose k%d s%d %s on %dx%d gives %dx%d", ci,
              c->k, c->s, c->same ? "same" : "valid", c->h, c->w, oh, ow);
        CHECK(shape_is(dl_layer_weight(l, "kernel"), 4, DL_SHAPE(3, 2, c->k, c->k)), "kernel [in, filters, k, k]");
        dl_fill_normal(dl_layer_weight(l, "bias"), 0.0f, 0.3f, &g_rng);
        y = dl_layer_call(l, x, 0);
        if (shape_is(y, 4, DL_SHAPE(2, 2, oh, ow))) {
            convt_ref(x, l->params[0], l->params[1], c->s, c->same, want, oh, ow);
            { char what[64]; snprintf(what, sizeof what, "Conv2DTranspose forward, case %zu", ci); check_against(y, want, 1e-5, what); }
        }
        dl_arena_reset(dl_arena_current());
        xs[0] = x;
        CHECK(gradcheck_layer(l, 1, xs, 1, 0, 0), "case %zu: %s", ci, dl_error());
        free(want);
        dl_layer_free(l);
        dl_tensor_free(x);
    }
}

/* ---- PyTorch parity (tests/data/nn_conv_parity.safetensors) ---- */

static dl_tensor *fx(const dl_safetensors *st, const char *name) {
    dl_tensor *t = dl_safetensors_get(st, name);
    CHECK(t != NULL, "fixture has %s", name);
    return t;
}

static void test_torch_parity(void) {
    dl_safetensors *st = dl_safetensors_load("tests/data/nn_conv_parity.safetensors");
    CHECK(st != NULL, "%s", dl_error());
    if (!st) return;
    { /* Conv2D(4, 3, stride 2, same) on 7x8: forward and all three gradients */
        dl_layer *l = dl_Conv2D(4, 3, 2, DL_PADDING_SAME, DL_ACT_LINEAR);
        dl_tensor *x = dl_tensor_clone(fx(st, "conv.x")), *y, *want = fx(st, "conv.y"), *g = fx(st, "conv.g");
        dl_set_requires_grad(x, 1);
        CHECK(dl_layer_call(l, x, 0) != NULL, "%s", dl_error());
        CHECK(dl_copy(l->params[0], fx(st, "conv.w")) == 0 && dl_copy(l->params[1], fx(st, "conv.b")) == 0, "set weights");
        y = dl_layer_call(l, x, 1);
        CHECK(y && dl_same_shape(y, want), "shape [2, 4, 4, 4]");
        if (y && dl_same_shape(y, want)) {
            CHECK_ALL_NEAR(dl_contig_f32(y), dl_f32(want), y->numel, 1e-5);
            dl_zero_grad(l->params[0]);
            dl_zero_grad(l->params[1]);
            CHECK(dl_backward_grad(y, dl_f32(g)) == 0, "%s", dl_error());
            CHECK(x->grad && l->params[0]->grad && l->params[1]->grad, "gradients reached x, kernel, bias");
            if (x->grad) CHECK_ALL_NEAR(x->grad, dl_f32(fx(st, "conv.dx")), x->numel, 1e-5);
            if (l->params[0]->grad) CHECK_ALL_NEAR(l->params[0]->grad, dl_f32(fx(st, "conv.dw")), l->params[0]->numel, 1e-5);
            if (l->params[1]->grad) CHECK_ALL_NEAR(l->params[1]->grad, dl_f32(fx(st, "conv.db")), 4, 1e-5);
        }
        dl_layer_free(l);
        dl_tensor_free(x);
        dl_arena_reset(dl_arena_current());
    }
    { /* Conv2DTranspose(2, 3, 2, same) and (3, 5, 2, same) */
        static const char *const pre[2] = {"convt3.", "convt5."};
        static const int k[2] = {3, 5}, f[2] = {2, 3};
        int i;
        for (i = 0; i < 2; i++) {
            char nx[32], nw[32], nb[32], ny[32];
            dl_layer *l = dl_Conv2DTranspose(f[i], k[i], 2, DL_PADDING_SAME, DL_ACT_LINEAR);
            dl_tensor *y, *want;
            snprintf(nx, sizeof nx, "%sx", pre[i]); snprintf(nw, sizeof nw, "%sw", pre[i]);
            snprintf(nb, sizeof nb, "%sb", pre[i]); snprintf(ny, sizeof ny, "%sy", pre[i]);
            want = fx(st, ny);
            CHECK(dl_layer_call(l, fx(st, nx), 0) != NULL, "%s", dl_error());
            CHECK(dl_copy(l->params[0], fx(st, nw)) == 0 && dl_copy(l->params[1], fx(st, nb)) == 0, "set weights");
            y = dl_layer_call(l, fx(st, nx), 0);
            CHECK(y && want && dl_same_shape(y, want), "%s shape", pre[i]);
            if (y && want && dl_same_shape(y, want)) CHECK_ALL_NEAR(dl_contig_f32(y), dl_f32(want), y->numel, 1e-5);
            dl_layer_free(l);
            dl_arena_reset(dl_arena_current());
        }
    }
    dl_safetensors_free(st);
}

/* ---- Pooling, Flatten, Reshape ---- */

static void test_pooling(void) {
    static const int cfg[][4] = {{2, 0, 6, 7}, {3, 1, 5, 5}, {3, 2, 7, 6}, {2, 3, 7, 7}}; /* pool, stride, h, w */
    size_t ci;
    for (ci = 0; ci < sizeof cfg / sizeof cfg[0]; ci++) {
        int pool = cfg[ci][0], stride = cfg[ci][1] ? cfg[ci][1] : cfg[ci][0], H = cfg[ci][2], W = cfg[ci][3], kind;
        int oh = (H - pool) / stride + 1, ow = (W - pool) / stride + 1;
        for (kind = 0; kind < 2; kind++) {
            dl_layer *l = kind ? dl_AvgPool2D(pool, cfg[ci][1]) : dl_MaxPool2D(pool, cfg[ci][1]);
            dl_tensor *x = randn(4, DL_SHAPE(2, 3, H, W), 1.0f, 1), *y, *xs[1];
            double want[2 * 3 * 7 * 7];
            int n, c, i, j, p, q;
            y = dl_layer_call(l, x, 0);
            CHECK(shape_is(y, 4, DL_SHAPE(2, 3, oh, ow)), "%s pool %d stride %d on %dx%d: %dx%d (valid)",
                  kind ? "avg" : "max", pool, stride, H, W, oh, ow);
            for (n = 0; n < 2; n++)
                for (c = 0; c < 3; c++)
                    for (i = 0; i < oh; i++)
                        for (j = 0; j < ow; j++) {
                            double acc = kind ? 0 : -INFINITY;
                            for (p = 0; p < pool; p++)
                                for (q = 0; q < pool; q++) {
                                    double v = dl_f32(x)[((n * 3 + c) * H + i * stride + p) * W + j * stride + q];
                                    if (kind) acc += v; else if (v > acc) acc = v;
                                }
                            want[((n * 3 + c) * oh + i) * ow + j] = kind ? acc / (pool * pool) : acc;
                        }
            if (shape_is(y, 4, DL_SHAPE(2, 3, oh, ow))) check_against(y, want, 1e-6, kind ? "AvgPool2D" : "MaxPool2D");
            xs[0] = x;
            CHECK(gradcheck_layer(l, 1, xs, 1, 0, 0), "%s pool %d stride %d: %s", kind ? "avg" : "max", pool, stride, dl_error());
            dl_layer_free(l);
            dl_tensor_free(x);
        }
    }
    { /* global average pooling */
        dl_layer *l = dl_GlobalAvgPool2D();
        dl_tensor *x = randn(4, DL_SHAPE(2, 3, 4, 5), 1.0f, 1), *y, *xs[1];
        double want[6];
        int i, j;
        y = dl_layer_call(l, x, 0);
        CHECK(shape_is(y, 2, DL_SHAPE(2, 3)), "[2, 3, 4, 5] -> [2, 3]");
        for (i = 0; i < 6; i++) {
            double s = 0;
            for (j = 0; j < 20; j++) s += dl_f32(x)[i * 20 + j];
            want[i] = s / 20;
        }
        if (y) check_against(y, want, 1e-6, "GlobalAvgPool2D");
        xs[0] = x;
        CHECK(gradcheck_layer(l, 1, xs, 1, 0, 0), "GlobalAvgPool2D: %s", dl_error());
        dl_layer_free(l);
        dl_tensor_free(x);
    }
    dl_arena_reset(dl_arena_current());
}

static void test_flatten_reshape(void) {
    dl_layer *fl = dl_Flatten(), *rs = dl_Reshape(2, DL_SHAPE(3, -1)), *rs2 = dl_Reshape(3, DL_SHAPE(2, 2, 3));
    dl_tensor *x = randn(4, DL_SHAPE(2, 3, 4, 5), 1.0f, 1), *x2 = randn(2, DL_SHAPE(2, 12), 1.0f, 1), *y, *xs[1];
    dl_tensor *x1 = randn(1, DL_SHAPE(4), 1.0f, 0), *bad = randn(2, DL_SHAPE(2, 10), 1.0f, 0);
    y = dl_layer_call(fl, x, 0);
    CHECK(shape_is(y, 2, DL_SHAPE(2, 60)), "Flatten [2,3,4,5] -> [2, 60]");
    if (y) CHECK(memcmp(dl_contig_f32(y), dl_f32(x), 120 * sizeof(float)) == 0, "row-major order kept");
    CHECK(shape_is(dl_layer_call(fl, x1, 0), 2, DL_SHAPE(4, 1)), "Flatten [4] -> [4, 1] (Keras)");
    xs[0] = x;
    CHECK(gradcheck_layer(fl, 1, xs, 1, 0, 0), "Flatten: %s", dl_error());
    y = dl_layer_call(rs, x2, 0);
    CHECK(shape_is(y, 3, DL_SHAPE(2, 3, 4)), "Reshape (3, -1) of [2, 12]");
    if (y) CHECK(memcmp(dl_contig_f32(y), dl_f32(x2), 24 * sizeof(float)) == 0, "values kept");
    CHECK(shape_is(dl_layer_call(rs2, x2, 0), 4, DL_SHAPE(2, 2, 2, 3)), "Reshape (2, 2, 3) of [2, 12]");
    xs[0] = x2;
    CHECK(gradcheck_layer(rs, 1, xs, 1, 0, 0), "Reshape: %s", dl_error());
    dl_clear_error();
    CHECK(dl_layer_call(rs2, bad, 0) == NULL && dl_error()[0], "10 values per sample into (2, 2, 3)");
    dl_layer_free(fl); dl_layer_free(rs); dl_layer_free(rs2);
    dl_tensor_free(x); dl_tensor_free(x2); dl_tensor_free(x1); dl_tensor_free(bad);
    dl_arena_reset(dl_arena_current());
}

/* ---- Dropout ---- */

static void test_dropout(void) {
    dl_layer *l, *l2;
    dl_tensor *ones = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(100, 100)), *x = randn(2, DL_SHAPE(4, 6), 1.0f, 1), *y, *y2, *xs[1];
    dl_rng saved;
    size_t i, zeros = 0, other = 0;
    dl_fill(ones, 1.0f);
    dl_nn_seed(4);
    l = dl_Dropout(0.4f);
    saved = l->rng;
    y = dl_layer_call(l, ones, 1);
    CHECK(y && shape_is(y, 2, DL_SHAPE(100, 100)), "shape kept");
    for (i = 0; y && i < y->numel; i++) {
        float v = dl_contig_f32(y)[i];
        if (v == 0.0f) zeros++;
        else if (fabsf(v - 1.0f / 0.6f) > 1e-6f) other++;
    }
    CHECK(other == 0, "kept values scaled by 1/(1 - rate): %zu others", other);
    CHECK(fabs((double)zeros / 10000.0 - 0.4) < 0.02, "fraction dropped %g, rate 0.4", (double)zeros / 10000.0);
    y = dl_layer_call(l, ones, 0);
    CHECK(y && memcmp(dl_contig_f32(y), dl_f32(ones), 10000 * sizeof(float)) == 0, "inference: identity");
    /* the mask is a function of the layer's generator: replaying it replays the mask */
    l->rng = saved;
    y = dl_layer_call(l, x, 1);
    l->rng = saved;
    y2 = dl_layer_call(l, x, 1);
    CHECK(y && y2 && memcmp(dl_contig_f32(y), dl_contig_f32(y2), 24 * sizeof(float)) == 0, "same generator state, same mask");
    y2 = dl_layer_call(l, x, 1);
    CHECK(y && y2 && memcmp(dl_contig_f32(y), dl_contig_f32(y2), 24 * sizeof(float)) != 0, "the next call draws a new mask");
    xs[0] = x;
    CHECK(gradcheck_layer(l, 1, xs, 1, 1, 0), "Dropout training (mask replayed): %s", dl_error());
    /* the same seed gives a layer the same masks */
    dl_nn_seed(4);
    l2 = dl_Dropout(0.4f);
    CHECK(memcmp(&l2->rng, &saved, sizeof saved) == 0, "dl_nn_seed(4) again: same dropout generator");
    dl_layer_free(l);
    dl_layer_free(l2);
    dl_tensor_free(ones);
    dl_tensor_free(x);
    dl_arena_reset(dl_arena_current());
}

/* ---- RandomFlip ---- */

static void test_random_flip(void) {
    dl_tensor *x = randn(4, DL_SHAPE(16, 2, 3, 5), 1.0f, 7), *y, *xs[1];
    dl_layer *l;
    int b, c, i, j, flipped = 0, bad = 0;
    dl_nn_seed(9);
    l = dl_RandomFlip();
    y = dl_layer_call(l, x, 1);
    CHECK(y && shape_is(y, 4, DL_SHAPE(16, 2, 3, 5)), "shape kept");
    for (b = 0; y && b < 16; b++) {   /* each sample is x or x mirrored along the last axis, whole */
        const float *xb = dl_f32(x) + b * 30, *yb = dl_contig_f32(y) + b * 30;
        int same = 1, mirror = 1;
        for (c = 0; c < 2; c++)
            for (i = 0; i < 3; i++)
                for (j = 0; j < 5; j++) {
                    same &= yb[(c * 3 + i) * 5 + j] == xb[(c * 3 + i) * 5 + j];
                    mirror &= yb[(c * 3 + i) * 5 + j] == xb[(c * 3 + i) * 5 + 4 - j];
                }
        bad += !same && !mirror;
        flipped += mirror && !same;
    }
    CHECK(bad == 0, "%d samples neither kept nor mirrored", bad);
    CHECK(flipped > 2 && flipped < 14, "about half mirrored: %d of 16", flipped);
    CHECK(dl_layer_call(l, x, 0) == x, "inference: the input itself");
    xs[0] = x;
    CHECK(gradcheck_layer(l, 1, xs, 1, 1, 0), "RandomFlip backward (flips replayed): %s", dl_error());
    dl_layer_free(l);
    dl_tensor_free(x);
    dl_arena_reset(dl_arena_current());
}

/* ---- BatchNormalization ---- */

/* Per channel (axis 1) mean and variance (biased and unbiased) of x, in double. */
static void channel_stats(const dl_tensor *x, int c, double *mean, double *var_b, double *var_u) {
    int N = x->shape[0], C = x->shape[1], n;
    size_t inner = x->numel / (size_t)N / (size_t)C, k, cnt = (size_t)N * inner;
    double s = 0, ss = 0;
    for (n = 0; n < N; n++)
        for (k = 0; k < inner; k++) s += dl_f32(x)[((size_t)n * C + c) * inner + k];
    *mean = s / cnt;
    for (n = 0; n < N; n++)
        for (k = 0; k < inner; k++) {
            double d = dl_f32(x)[((size_t)n * C + c) * inner + k] - *mean;
            ss += d * d;
        }
    *var_b = ss / cnt;
    *var_u = ss / (cnt - 1);
}

static void bn_check_one(int ndim, const int *shape) {
    dl_layer *l = dl_BatchNormalization(0.9f, 0.0f); /* epsilon default 1e-3 */
    dl_tensor *x = randn(ndim, shape, 1.5f, 1), *x2 = randn(ndim, shape, 0.7f, 0), *y, *xs[1];
    dl_tensor *gamma, *beta, *mm, *mv;
    int C = shape[1], c;
    size_t inner = numel_of(ndim, shape) / (size_t)shape[0] / (size_t)C, i;
    double *want = (double *)malloc(sizeof(double) * numel_of(ndim, shape)), em[8], ev[8];
    for (i = 0; i < x->numel; i++) dl_f32(x)[i] += 0.5f; /* a non-zero mean */
    CHECK(dl_layer_call(l, x, 0) != NULL, "%s", dl_error());
    gamma = dl_layer_weight(l, "gamma"); beta = dl_layer_weight(l, "beta");
    mm = dl_layer_weight(l, "moving_mean"); mv = dl_layer_weight(l, "moving_variance");
    CHECK(gamma && beta && mm && mv && l->n_params == 4, "gamma, beta, moving_mean, moving_variance");
    if (!(gamma && beta && mm && mv)) goto out;
    CHECK(gamma->requires_grad && beta->requires_grad && !mm->requires_grad && !mv->requires_grad, "moving stats are not trained");
    for (c = 0; c < C; c++)
        CHECK(dl_f32(mm)[c] == 0.0f && dl_f32(mv)[c] == 1.0f && dl_f32(gamma)[c] == 1.0f && dl_f32(beta)[c] == 0.0f,
              "initial values (inference call changed nothing)");
    dl_fill_normal(gamma, 1.0f, 0.3f, &g_rng);
    dl_fill_normal(beta, 0.0f, 0.3f, &g_rng);
    /* training: batch statistics (biased variance) normalize; moving stats follow Keras' momentum
       with the unbiased variance (as documented) */
    for (c = 0; c < C; c++) { em[c] = 0.0; ev[c] = 1.0; }
    {
        int step;
        for (step = 0; step < 2; step++) {
            dl_tensor *in = step ? x2 : x;
            y = dl_layer_call(l, in, 1);
            CHECK(y != NULL, "%s", dl_error());
            if (!y) break;
            for (c = 0; c < C; c++) {
                double mean, vb, vu;
                int n;
                size_t k;
                channel_stats(in, c, &mean, &vb, &vu);
                em[c] = 0.9 * em[c] + 0.1 * mean;
                ev[c] = 0.9 * ev[c] + 0.1 * vu;
                for (n = 0; n < shape[0]; n++)
                    for (k = 0; k < inner; k++) {
                        size_t idx = ((size_t)n * C + c) * inner + k;
                        want[idx] = (dl_f32(in)[idx] - mean) / sqrt(vb + 1e-3) * dl_f32(gamma)[c] + dl_f32(beta)[c];
                    }
            }
            check_against(y, want, 1e-4, "BatchNormalization training output");
            for (c = 0; c < C; c++) {
                CHECK_NEAR(dl_f32(mm)[c], em[c], 1e-5);
                CHECK_NEAR(dl_f32(mv)[c], ev[c], 1e-5);
            }
        }
    }
    /* inference: the moving statistics */
    y = dl_layer_call(l, x2, 0);
    for (c = 0; y && c < C; c++) {
        int n;
        size_t k;
        for (n = 0; n < shape[0]; n++)
            for (k = 0; k < inner; k++) {
                size_t idx = ((size_t)n * C + c) * inner + k;
                want[idx] = (dl_f32(x2)[idx] - dl_f32(mm)[c]) / sqrt(dl_f32(mv)[c] + 1e-3) * dl_f32(gamma)[c] + dl_f32(beta)[c];
            }
    }
    if (y) check_against(y, want, 1e-4, "BatchNormalization inference output");
    {   /* inference leaves the statistics alone; a frozen layer runs in inference mode while training */
        float before[16];
        memcpy(before, dl_f32(mm), (size_t)C * sizeof(float));
        y = dl_layer_call(l, x, 0);
        CHECK(memcmp(before, dl_f32(mm), (size_t)C * sizeof(float)) == 0, "inference keeps moving_mean");
        l->trainable = 0;
        y = dl_layer_call(l, x2, 1);
        CHECK(memcmp(before, dl_f32(mm), (size_t)C * sizeof(float)) == 0, "frozen: keeps moving_mean");
        if (y) check_against(y, want, 1e-4, "frozen BatchNormalization = inference");
        l->trainable = 1;
    }
    dl_arena_reset(dl_arena_current());
    xs[0] = x;
    CHECK(gradcheck_layer(l, 1, xs, 1, 0, 0), "BatchNormalization training %dd: %s", ndim, dl_error());
    CHECK(gradcheck_layer(l, 1, xs, 0, 0, 0), "BatchNormalization inference %dd: %s", ndim, dl_error());
out:
    free(want);
    dl_layer_free(l);
    dl_tensor_free(x);
    dl_tensor_free(x2);
    dl_arena_reset(dl_arena_current());
}

static void test_batch_norm(void) {
    bn_check_one(4, DL_SHAPE(3, 2, 2, 3));
    bn_check_one(2, DL_SHAPE(6, 4));
    { /* default momentum 0.99: moving_mean = 0.01 * batch mean after one step */
        dl_layer *l = dl_BatchNormalization(0.0f, 0.0f);
        dl_tensor *x = randn(2, DL_SHAPE(5, 2), 1.0f, 0);
        double mean, vb, vu;
        int c;
        CHECK(dl_layer_call(l, x, 1) != NULL, "%s", dl_error());
        for (c = 0; c < 2; c++) {
            channel_stats(x, c, &mean, &vb, &vu);
            CHECK_NEAR(dl_f32(dl_layer_weight(l, "moving_mean"))[c], 0.01 * mean, 1e-6);
            CHECK_NEAR(dl_f32(dl_layer_weight(l, "moving_variance"))[c], 0.99 + 0.01 * vu, 1e-6);
        }
        dl_layer_free(l);
        dl_tensor_free(x);
        dl_arena_reset(dl_arena_current());
    }
}

/* ---- LayerNormalization ---- */

static void test_layer_norm(void) {
    dl_layer *l = dl_LayerNormalization(0.0f);
    dl_tensor *x = randn(3, DL_SHAPE(2, 3, 5), 2.0f, 1), *y, *xs[1], *g, *b;
    double want[30];
    int r, j;
    CHECK(dl_layer_call(l, x, 0) != NULL, "%s", dl_error());
    g = dl_layer_weight(l, "gamma");
    b = dl_layer_weight(l, "beta");
    CHECK(shape_is(g, 1, DL_SHAPE(5)) && shape_is(b, 1, DL_SHAPE(5)), "gamma, beta over the last axis");
    if (!g || !b) goto out;
    dl_fill_normal(g, 1.0f, 0.3f, &g_rng);
    dl_fill_normal(b, 0.0f, 0.3f, &g_rng);
    y = dl_layer_call(l, x, 1);
    for (r = 0; r < 6; r++) {
        double m = 0, v = 0;
        for (j = 0; j < 5; j++) m += dl_f32(x)[r * 5 + j];
        m /= 5;
        for (j = 0; j < 5; j++) v += (dl_f32(x)[r * 5 + j] - m) * (dl_f32(x)[r * 5 + j] - m);
        v /= 5;
        for (j = 0; j < 5; j++) want[r * 5 + j] = (dl_f32(x)[r * 5 + j] - m) / sqrt(v + 1e-3) * dl_f32(g)[j] + dl_f32(b)[j];
    }
    if (y) check_against(y, want, 1e-5, "LayerNormalization (epsilon 1e-3)");
    xs[0] = x;
    CHECK(gradcheck_layer(l, 1, xs, 1, 0, 0), "LayerNormalization: %s", dl_error());
out:
    dl_layer_free(l);
    dl_tensor_free(x);
    dl_arena_reset(dl_arena_current());
}

/* ---- Embedding ---- */

static void test_embedding(void) {
    static const float idsf[6] = {0, 4, 2, 2, 6, 1};
    static const int32_t idsi[6] = {0, 4, 2, 2, 6, 1};
    dl_layer *l;
    dl_tensor *f = dl_tensor_from(DL_DTYPE_F32, 2, DL_SHAPE(2, 3), idsf), *i32 = dl_tensor_from(DL_DTYPE_I32, 2, DL_SHAPE(2, 3), idsi);
    dl_tensor *bad = dl_tensor_from(DL_DTYPE_I32, 1, DL_SHAPE(1), idsi), *y, *y2, *xs[1], *e;
    int i, ok = 1;
    dl_nn_seed(5);
    l = dl_Embedding(7, 4);
    y = dl_layer_call(l, f, 1);
    CHECK(shape_is(y, 3, DL_SHAPE(2, 3, 4)), "ids [2, 3] -> [2, 3, 4]");
    e = dl_layer_weight(l, "embeddings");
    CHECK(shape_is(e, 2, DL_SHAPE(7, 4)), "embeddings [input_dim, output_dim]");
    for (i = 0; e && y && i < 6; i++) ok &= memcmp(dl_contig_f32(y) + i * 4, dl_f32(e) + idsi[i] * 4, 4 * sizeof(float)) == 0;
    CHECK(ok, "f32 ids are cast: rows of the table");
    y2 = dl_layer_call(l, i32, 1);
    CHECK(y && y2 && memcmp(dl_contig_f32(y), dl_contig_f32(y2), 24 * sizeof(float)) == 0, "i32 ids give the same");
    for (i = 0, ok = 1; e && i < 28; i++) ok &= fabsf(dl_f32(e)[i]) <= 0.05f && dl_f32(e)[i] != 0.0f;
    CHECK(ok, "uniform(-0.05, 0.05) initial values");
    xs[0] = f;
    CHECK(gradcheck_layer(l, 1, xs, 1, 0, 0), "Embedding (with f32 ids): %s", dl_error());
    xs[0] = i32;
    CHECK(gradcheck_layer(l, 1, xs, 1, 0, 0), "Embedding (with i32 ids): %s", dl_error());
    dl_i32(bad)[0] = 7;
    dl_clear_error();
    CHECK(dl_layer_call(l, bad, 0) == NULL && dl_error()[0], "id 7 of 7 is an error");
    dl_i32(bad)[0] = -1;
    dl_clear_error();
    CHECK(dl_layer_call(l, bad, 0) == NULL && dl_error()[0], "id -1 is an error");
    dl_layer_free(l);
    dl_tensor_free(f); dl_tensor_free(i32); dl_tensor_free(bad);
    dl_arena_reset(dl_arena_current());
}

/* ---- Activation, merging ---- */

static void test_activation(void) {
    int act;
    for (act = DL_ACT_LINEAR; act <= DL_ACT_SOFTPLUS; act++) {
        dl_layer *l = dl_Activation((dl_act)act);
        dl_tensor *x = randn(2, DL_SHAPE(3, 4), 1.5f, 1), *y, *xs[1];
        double want[12];
        int i;
        for (i = 0; i < 12; i++) want[i] = dl_f32(x)[i];
        act_rows(want, 3, 4, (dl_act)act);
        y = dl_layer_call(l, x, 0);
        CHECK(shape_is(y, 2, DL_SHAPE(3, 4)), "shape kept");
        if (y) check_against(y, want, 1e-5, dl_act_name((dl_act)act));
        if (act != DL_ACT_LINEAR) { /* linear returns its input: nothing to differentiate */
            xs[0] = x;
            CHECK(gradcheck_layer(l, 1, xs, 1, 0, 0), "Activation %s: %s", dl_act_name((dl_act)act), dl_error());
        }
        dl_layer_free(l);
        dl_tensor_free(x);
    }
    CHECK(strcmp(dl_act_name(DL_ACT_LEAKY_RELU), "leaky_relu") == 0 && strcmp(dl_act_name(DL_ACT_SOFTMAX), "softmax") == 0, "Keras names");
    dl_arena_reset(dl_arena_current());
}

static void test_merge(void) {
    dl_tensor *a = randn(2, DL_SHAPE(2, 3), 1.0f, 1), *b = randn(2, DL_SHAPE(2, 3), 1.0f, 1), *c = randn(2, DL_SHAPE(2, 3), 1.0f, 1);
    dl_tensor *d = randn(2, DL_SHAPE(2, 5), 1.0f, 1), *in[3], *y;
    dl_layer *add = dl_Add(), *mul = dl_Multiply(), *cat = dl_Concatenate(-1), *cat0 = dl_Concatenate(1);
    int i, j;
    double want[16];
    in[0] = a; in[1] = b; in[2] = c;
    y = dl_layer_call_n(add, 3, in, 0);
    for (i = 0; i < 6; i++) want[i] = (double)dl_f32(a)[i] + dl_f32(b)[i] + dl_f32(c)[i];
    CHECK(shape_is(y, 2, DL_SHAPE(2, 3)), "Add shape");
    if (y) check_against(y, want, 1e-6, "Add of 3");
    CHECK(gradcheck_layer(add, 3, in, 1, 0, 0), "Add: %s", dl_error());
    y = dl_layer_call_n(mul, 3, in, 0);
    for (i = 0; i < 6; i++) want[i] = (double)dl_f32(a)[i] * dl_f32(b)[i] * dl_f32(c)[i];
    if (y) check_against(y, want, 1e-6, "Multiply of 3");
    CHECK(gradcheck_layer(mul, 2, in, 1, 0, 0), "Multiply: %s", dl_error());
    in[1] = d;
    y = dl_layer_call_n(cat, 2, in, 0);
    CHECK(shape_is(y, 2, DL_SHAPE(2, 8)), "Concatenate(-1) of [2,3] and [2,5]");
    for (i = 0; i < 2; i++)
        for (j = 0; j < 8; j++) want[i * 8 + j] = j < 3 ? dl_f32(a)[i * 3 + j] : dl_f32(d)[i * 5 + j - 3];
    if (y) check_against(y, want, 0, "Concatenate values");
    CHECK(shape_is(dl_layer_call_n(cat0, 2, in, 0), 2, DL_SHAPE(2, 8)), "Concatenate(1) is the same axis");
    CHECK(gradcheck_layer(cat, 2, in, 1, 0, 0), "Concatenate: %s", dl_error());
    dl_clear_error();
    CHECK(dl_layer_call_n(add, 2, in, 0) == NULL && dl_error()[0], "Add of [2,3] and [2,5] is an error");
    dl_clear_error();
    CHECK(dl_layer_call_n(add, 1, in, 0) == NULL && strstr(dl_error(), "inputs"), "Add of one input: '%s'", dl_error());
    in[1] = randn(2, DL_SHAPE(3, 5), 1.0f, 0);
    dl_clear_error();
    CHECK(dl_layer_call_n(cat, 2, in, 0) == NULL && dl_error()[0], "Concatenate with different batch sizes");
    dl_tensor_free(in[1]);
    dl_layer_free(add); dl_layer_free(mul); dl_layer_free(cat); dl_layer_free(cat0);
    dl_tensor_free(a); dl_tensor_free(b); dl_tensor_free(c); dl_tensor_free(d);
    dl_arena_reset(dl_arena_current());
}

/* ---- Initializers and seeding ---- */

static void check_uniform(const dl_tensor *t, double bound, const char *what) {
    double mx = 0, s = 0, ss = 0, var;
    size_t i;
    for (i = 0; i < t->numel; i++) {
        double v = dl_f32(t)[i];
        if (fabs(v) > mx) mx = fabs(v);
        s += v;
        ss += v * v;
    }
    var = ss / (double)t->numel - (s / (double)t->numel) * (s / (double)t->numel);
    CHECK(mx <= bound * (1 + 1e-6), "%s: max |w| %g within the bound %g", what, mx, bound);
    CHECK(mx >= bound * 0.95, "%s: max |w| %g reaches near the bound %g", what, mx, bound);
    CHECK(fabs(var / (bound * bound / 3.0) - 1.0) < 0.08, "%s: variance %g, U(+-b) has %g", what, var, bound * bound / 3.0);
    CHECK(fabs(s / (double)t->numel) < bound * 0.05, "%s: mean %g", what, s / (double)t->numel);
}

static void test_initializers(void) {
    dl_layer *d = dl_Dense(200, DL_ACT_LINEAR), *cv = dl_Conv2D(16, 3, 1, DL_PADDING_VALID, DL_ACT_LINEAR), *ct = dl_Conv2DTranspose(8, 4, 2, DL_PADDING_SAME, DL_ACT_LINEAR);
    dl_tensor *x1 = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(1, 300)), *x2 = dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(1, 8, 5, 5));
    dl_tensor *x3 = dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(1, 16, 2, 2)), *t;
    dl_rng r;
    size_t i;
    int zero = 1;
    dl_nn_seed(6);
    CHECK(dl_layer_call(d, x1, 0) && dl_layer_call(cv, x2, 0) && dl_layer_call(ct, x3, 0), "%s", dl_error());
    if (d->n_params) check_uniform(d->params[0], sqrt(6.0 / (300 + 200)), "Dense kernel glorot_uniform");
    if (cv->n_params) check_uniform(cv->params[0], sqrt(6.0 / (8 * 9 + 16 * 9)), "Conv2D kernel glorot_uniform");
    if (ct->n_params) check_uniform(ct->params[0], sqrt(6.0 / (16 * 16 + 8 * 16)), "Conv2DTranspose kernel glorot_uniform");
    for (i = 0; d->n_params > 1 && i < 200; i++) zero &= dl_f32(d->params[1])[i] == 0.0f;
    CHECK(zero, "Dense bias zeros");
    /* dl_init_tensor directly */
    t = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(400, 100));
    dl_rng_seed(&r, 9);
    CHECK(dl_init_tensor(t, DL_INIT_HE_UNIFORM, &r) == 0, "%s", dl_error());
    check_uniform(t, sqrt(6.0 / 400), "he_uniform");
    CHECK(dl_init_tensor(t, DL_INIT_UNIFORM_005, &r) == 0, "%s", dl_error());
    check_uniform(t, 0.05, "uniform 0.05");
    CHECK(dl_init_tensor(t, DL_INIT_ONES, &r) == 0 && dl_f32(t)[123] == 1.0f, "ones");
    CHECK(dl_init_tensor(t, (dl_init)99, &r) != 0 && dl_error()[0], "unknown initializer");
    dl_tensor_free(t);
    dl_layer_free(d); dl_layer_free(cv); dl_layer_free(ct);
    dl_tensor_free(x1); dl_tensor_free(x2); dl_tensor_free(x3);
    dl_arena_reset(dl_arena_current());
}

/* The weights of a two-layer model built right after dl_nn_seed(seed), in `out`. */
static int seeded_weights(uint64_t seed, float *out) {
    dl_model *m;
    dl_tensor *w[4];
    int n, i, k = 0;
    size_t j;
    dl_nn_seed(seed);
    m = dl_sequential(dl_Dense(6, DL_ACT_RELU), dl_Dropout(0.5f), dl_Dense(3, DL_ACT_LINEAR));
    if (!m || dl_model_build(m, 1, DL_SHAPE(5)) != 0) { dl_model_free(m); return -1; }
    n = dl_model_weights(m, 0, w, 4);
    for (i = 0; i < n; i++)
        for (j = 0; j < w[i]->numel; j++) out[k++] = dl_f32(w[i])[j];
    dl_model_free(m);
    return k;
}

static void test_seed(void) {
    float a[64], b[64], c[64];
    int na = seeded_weights(123, a), nb = seeded_weights(123, b), nc = seeded_weights(124, c), i, same = 0;
    CHECK(na == 30 + 6 + 18 + 3 && nb == na && nc == na, "weight counts %d %d %d", na, nb, nc);
    if (na != nb || na != nc || na < 0) return;
    CHECK(memcmp(a, b, (size_t)na * sizeof(float)) == 0, "same seed, same weights");
    for (i = 0; i < na; i++) same += a[i] == c[i] && a[i] != 0.0f;
    CHECK(same == 0, "another seed: %d equal nonzero weights", same);
}

/* ---- Bad constructor arguments ---- */

#define BAD(expr, fn)                                                                         \
    do {                                                                                      \
        dl_layer *test__l;                                                                    \
        dl_clear_error();                                                                     \
        test__l = (expr);                                                                     \
        CHECK(test__l == NULL && strstr(dl_error(), fn) != NULL, "%s: '%s'", #expr, dl_error()); \
        dl_layer_free(test__l);                                                               \
    } while (0)

static void test_bad_arguments(void) {
    long live0;
    dl_threads_shutdown();
    live0 = test_live;
    BAD(dl_Dense(0, DL_ACT_RELU), "dl_Dense");
    BAD(dl_Dense(-3, DL_ACT_RELU), "dl_Dense");
    BAD(dl_Dense(3, (dl_act)99), "dl_Dense");
    BAD(dl_Conv2D(0, 3, 1, DL_PADDING_SAME, DL_ACT_RELU), "dl_Conv2D");
    BAD(dl_Conv2D(4, 0, 1, DL_PADDING_SAME, DL_ACT_RELU), "dl_Conv2D");
    BAD(dl_Conv2D(4, 3, 0, DL_PADDING_SAME, DL_ACT_RELU), "dl_Conv2D");
    BAD(dl_Conv2D(4, 3, 1, (dl_padding)7, DL_ACT_RELU), "dl_Conv2D");
    BAD(dl_Conv2D(4, 3, 1, DL_PADDING_SAME, (dl_act)-1), "dl_Conv2D");
    BAD(dl_Conv2DTranspose(4, 2, 3, DL_PADDING_SAME, DL_ACT_RELU), "dl_Conv2DTranspose");
    BAD(dl_Conv2DTranspose(4, 3, -1, DL_PADDING_VALID, DL_ACT_RELU), "dl_Conv2DTranspose");
    BAD(dl_MaxPool2D(0, 0), "dl_MaxPool2D");
    BAD(dl_AvgPool2D(2, -1), "dl_AvgPool2D");
    BAD(dl_Reshape(2, DL_SHAPE(-1, -1)), "dl_Reshape");
    BAD(dl_Reshape(2, DL_SHAPE(3, 0)), "dl_Reshape");
    BAD(dl_Reshape(0, DL_SHAPE(3)), "dl_Reshape");
    BAD(dl_Reshape(2, NULL), "dl_Reshape");
    BAD(dl_Dropout(1.0f), "dl_Dropout");
    BAD(dl_Dropout(-0.1f), "dl_Dropout");
    BAD(dl_Dropout(NAN), "dl_Dropout");
    BAD(dl_BatchNormalization(1.0f, 1e-3f), "dl_BatchNormalization");
    BAD(dl_Embedding(0, 4), "dl_Embedding");
    BAD(dl_Embedding(4, -1), "dl_Embedding");
    BAD(dl_Activation((dl_act)42), "dl_Activation");
    dl_threads_shutdown();
    CHECK(test_live == live0, "failed constructors allocate nothing (%ld blocks more)", test_live - live0);
}

/* A constructor that failed on its own (its NULL checked by the caller, as documented) must not
   make a later, unrelated dl_sequential fail. */
static void test_failure_does_not_linger(void) {
    dl_layer *bad = dl_Dense(0, DL_ACT_RELU);
    dl_model *m;
    CHECK(bad == NULL, "dl_Dense(0) fails");
    m = dl_sequential(dl_Dense(2, DL_ACT_RELU));
    CHECK(m != NULL, "a later dl_sequential of good layers: '%s'", dl_error());
    dl_model_free(m);
}

static void test_sequential_with_failing_constructor(void) {
    long live0;
    dl_model *m;
    dl_layer *ls[3];
    /* warm up what allocates once (default arena, ...), so the live count is meaningful */
    m = dl_sequential(dl_Flatten(), dl_Dense(3, DL_ACT_RELU));
    dl_model_free(m);
    dl_threads_shutdown();
    live0 = test_live;
    dl_clear_error();
    m = dl_sequential(dl_Flatten(), dl_Dense(8, DL_ACT_RELU), dl_Dense(0, DL_ACT_RELU)); /* the last one fails */
    CHECK(m == NULL && strstr(dl_error(), "dl_Dense"), "NULL with the constructor's message: '%s'", dl_error());
    CHECK(test_live == live0, "the other layers are freed (%ld blocks left)", test_live - live0);
    dl_clear_error();
    m = dl_sequential(dl_Flatten(), dl_Dropout(2.0f), dl_Dense(8, DL_ACT_RELU), dl_Dense(4, DL_ACT_LINEAR)); /* in the middle */
    CHECK(m == NULL && strstr(dl_error(), "dl_Dropout"), "NULL with the constructor's message: '%s'", dl_error());
    CHECK(test_live == live0, "a failure in the middle: %ld blocks left", test_live - live0);
    dl_clear_error();
    m = dl_sequential(dl_Dense(8, DL_ACT_RELU), NULL); /* a stray terminator: no constructor failed */
    CHECK(m == NULL && strstr(dl_error(), "NULL"), "a NULL terminator is an error: '%s'", dl_error());
    CHECK(test_live == live0, "the layer before it is freed (%ld blocks left)", test_live - live0);
    ls[0] = dl_Dense(4, DL_ACT_RELU); ls[1] = NULL; ls[2] = dl_Dense(2, DL_ACT_RELU);
    dl_clear_error();
    CHECK(dl_sequential_n(3, ls) == NULL && dl_error()[0], "dl_sequential_n with a NULL");
    CHECK(test_live == live0, "dl_sequential_n takes over all layers even when failing (%ld blocks left)", test_live - live0);
    ls[0] = dl_Dense(4, DL_ACT_RELU); ls[1] = ls[0];
    dl_clear_error();
    CHECK(dl_sequential_n(2, ls) == NULL && strstr(dl_error(), "twice"), "a layer twice: '%s'", dl_error());
    CHECK(test_live == live0, "a layer given twice is freed once (%ld blocks left)", test_live - live0);
    m = dl_sequential(dl_Dense(8, DL_ACT_RELU), dl_Dense(2, DL_ACT_LINEAR));
    CHECK(m != NULL, "a good dl_sequential afterwards works: '%s'", dl_error());
    CHECK(m && dl_model_num_layers(m) == 2, "two layers");
    dl_model_free(m);
    dl_threads_shutdown();
    CHECK(test_live == live0, "and frees everything");
}

/* Constructor messages name what is wrong, and only that; several-argument constructors say
   their argument list (dl_Conv2D(16, 3, DL_ACT_RELU) is Keras' order, not dl's). */
static void test_constructor_messages(void) {
    static const struct { int which; const char *want, *not_want; } cases[] = {
        {0, "dl_Dense(units, act): units 0 must be > 0", "activation 1"},
        {1, "dl_Dense(units, act): unknown activation 99", "units 3"},
        {2, "dl_Conv2D(filters, kernel, stride, padding, act): stride 0 must be > 0", "kernel 3"},
        {3, "dl_Conv2D(filters, kernel, stride, padding, act): filters -16 must be > 0", "stride 0"},
        {4, "padding 7 must be DL_PADDING_VALID or DL_PADDING_SAME", "filters 4"},
        {5, "dl_Conv2DTranspose(filters, kernel, stride, padding, act): unknown activation -1", "kernel 3"},
        {6, "dl_AvgPool2D(pool, stride): stride -1 must be >= 0", "pool 2"},
        {7, "dl_MaxPool2D(pool, stride): pool 0 must be > 0", "stride 0"},
        {8, "dl_Embedding(input_dim, output_dim): output_dim -1 must be > 0", "input_dim 4"},
        {9, "dl_Reshape(ndim, shape): shape is NULL", "axes"},
        {10, "dl_Reshape(ndim, shape): ndim 0 must be in 1..6", "NULL"},
        {11, "dl_LSTM(units, return_sequences): units 0 must be > 0", "got"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dl_layer *l = NULL;
        dl_clear_error();
        switch (cases[i].which) {
        case 0: l = dl_Dense(0, DL_ACT_RELU); break;
        case 1: l = dl_Dense(3, (dl_act)99); break;
        case 2: l = dl_Conv2D(16, 3, 0, DL_PADDING_SAME, DL_ACT_RELU); break;
        case 3: l = dl_Conv2D(-16, 3, 0, DL_PADDING_SAME, DL_ACT_RELU); break;
        case 4: l = dl_Conv2D(4, 3, 1, (dl_padding)7, DL_ACT_RELU); break;
        case 5: l = dl_Conv2DTranspose(4, 3, 1, DL_PADDING_VALID, (dl_act)-1); break;
        case 6: l = dl_AvgPool2D(2, -1); break;
        case 7: l = dl_MaxPool2D(0, 0); break;
        case 8: l = dl_Embedding(4, -1); break;
        case 9: l = dl_Reshape(2, NULL); break;
        case 10: l = dl_Reshape(0, DL_SHAPE(3)); break;
        default: l = dl_LSTM(0, 1); break;
        }
        CHECK(l == NULL && strstr(dl_error(), cases[i].want) && !strstr(dl_error(), cases[i].not_want),
              "case %d: '%s' should say '%s' and not '%s'", cases[i].which, dl_error(), cases[i].want, cases[i].not_want);
        dl_layer_free(l);
    }
}

/* dl_sequential writes its arguments once in its expansion (they were written twice, inside a
   sizeof and in the list, so a compiler error in one was reported twice), and the count it
   passes is right from 1 to 64 layers. */
#define TEST_STR(...) #__VA_ARGS__
#define TEST_XSTR(...) TEST_STR(__VA_ARGS__)
#define ACT1 dl_Activation(DL_ACT_TANH)
#define ACT8 ACT1, ACT1, ACT1, ACT1, ACT1, ACT1, ACT1, ACT1
#define ACT64 ACT8, ACT8, ACT8, ACT8, ACT8, ACT8, ACT8, ACT8
static void test_sequential_expands_arguments_once(void) {
    const char *expansion = TEST_XSTR(dl_sequential(first_layer_marker, second_layer_marker(1, 2)));
    const char *p = strstr(expansion, "first_layer_marker");
    dl_model *m;
    CHECK(p && !strstr(p + 1, "first_layer_marker"), "the first argument once: %s", expansion);
    p = strstr(expansion, "second_layer_marker(1, 2)");
    CHECK(p && !strstr(p + 1, "second_layer_marker"), "the second argument once: %s", expansion);
    m = dl_sequential(dl_Dense(3, DL_ACT_RELU));
    CHECK(m && dl_model_num_layers(m) == 1, "one layer: %s", dl_error());
    dl_model_free(m);
    m = dl_sequential(dl_Flatten(), dl_Dense(3, DL_ACT_RELU), dl_Dense(2, DL_ACT_LINEAR));
    CHECK(m && dl_model_num_layers(m) == 3, "three layers: %s", dl_error());
    dl_model_free(m);
    m = dl_sequential(ACT64);
    CHECK(m && dl_model_num_layers(m) == 64, "64 layers (%d): %s", m ? dl_model_num_layers(m) : -1, dl_error());
    dl_model_free(m);
}

int main(void) {
    dl_rng_seed(&g_rng, 2024);
    RUN(test_dense);
    RUN(test_conv2d);
    RUN(test_conv2d_transpose);
    RUN(test_torch_parity);
    RUN(test_pooling);
    RUN(test_flatten_reshape);
    RUN(test_dropout);
    RUN(test_random_flip);
    RUN(test_batch_norm);
    RUN(test_layer_norm);
    RUN(test_embedding);
    RUN(test_activation);
    RUN(test_merge);
    RUN(test_initializers);
    RUN(test_seed);
    RUN(test_bad_arguments);
    RUN(test_failure_does_not_linger);
    RUN(test_sequential_with_failing_constructor);
    RUN(test_constructor_messages);
    RUN(test_sequential_expands_arguments_once);
    dl_arena_free_default();
    dl_threads_shutdown();
    {
        int r = test_summary();
        fflush(stdout); /* before the leak checker's report at exit */
        return r;
    }
}
