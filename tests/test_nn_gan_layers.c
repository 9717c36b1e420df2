/* The layers of GANs and image-to-image models in dl_nn.h: LeakyReLU, InstanceNormalization,
   ReflectionPad2D, ZeroPadding2D, UpSampling2D, and the Keras "same" Conv2DTranspose at stride
   2, kernel 5 (DCGAN's layer).
   - gradients through each layer by finite differences (dl_gradcheck on the inputs and weights);
   - forward values against plain C references in double (Keras' / torch's definitions);
   - forward and input/weight gradients against PyTorch: tests/data/nn_gan_layers.safetensors,
     written by tools/make_gan_layer_fixtures.py with torch 1.13 (its docstring derives which
     side TensorFlow's "same" transposed convolution crops);
   - a model holding every new layer: saved and loaded (file and memory), same settings and
     bit-identical predictions; its summary rows;
   - bad settings and inputs: NULL and a message naming the layer and the value, nothing leaked;
     hostile model files (a size that would blow up, a bad setting) refused.
   Allocations are counted (live blocks) so that a leak shows in the plain build too. */
#include <float.h>
#include <stdlib.h>

#include "count_alloc.h"
#define DL_IMPLEMENTATION
#include "../dl_nn.h"
#include "test.h"

static dl_rng g_rng; /* the test's own numbers */
static char tmp_path[512] = "test_nn_gan_layers.tmp.safetensors"; /* main() puts it next to the program */

static dl_tensor *randn(int ndim, const int *shape, float std, int grad) {
    dl_tensor *t = dl_tensor_new(DL_DTYPE_F32, ndim, shape);
    dl_fill_normal(t, 0.0f, std, &g_rng);
    if (grad) dl_set_requires_grad(t, 1);
    return t;
}

static int shape_is(const dl_tensor *t, int ndim, const int *shape) {
    int i;
    if (!t || t->ndim != ndim) return 0;
    for (i = 0; i < ndim; i++) if (t->shape[i] != shape[i]) return 0;
    return 1;
}

static int has(const char *s, const char *part) { return s && part && strstr(s, part) != NULL; }

/* ---- gradient check through dl_layer_call: inputs, then every weight of the layer ---- */
typedef struct lcall { dl_layer *l; int training; } lcall;
static dl_tensor *f_layer(dl_tensor **in, void *user) {
    lcall *c = (lcall *)user;
    return dl_layer_call(c->l, in[0], c->training);
}
static int gradcheck_layer(dl_layer *l, dl_tensor *x, int training) {
    dl_tensor *in[1 + DL_LAYER_MAX_PARAMS];
    lcall c;
    int i, n = 0, ok;
    c.l = l; c.training = training;
    if (!dl_layer_call(l, x, training)) return 0;   /* builds it */
    dl_arena_reset(dl_arena_current());
    in[n++] = x;
    for (i = 0; i < l->n_params; i++) in[n++] = l->params[i];
    ok = dl_gradcheck(f_layer, &c, n, in, 1e-3f, 0) == 0;
    dl_arena_reset(dl_arena_current());
    return ok;
}

/* |y - want| within tol * (1 + |want|) everywhere; reports the first miss. */
static void check_against(const dl_tensor *y, const double *want, double tol, const char *what) {
    const float *v = dl_contig_f32(y);
    size_t i;
    for (i = 0; v && i < y->numel; i++)
        if (!(fabs(v[i] - want[i]) <= tol * (1.0 + fabs(want[i])))) {
            CHECK(0, "%s: element %zu is %.9g, expected %.9g", what, i, (double)v[i], want[i]);
            return;
        }
}

/* ---- LeakyReLU ---- */

static void test_leaky_relu(void) {
    static const float slopes[] = {0.0f, 0.2f, (float)DL_ZERO, 1.5f};   /* 0: Keras' default 0.3 */
    static const float want_slope[] = {0.3f, 0.2f, 0.0f, 1.5f};
    size_t k, i;
    for (k = 0; k < sizeof slopes / sizeof slopes[0]; k++) {
        dl_layer *l = dl_LeakyReLU(slopes[k]);
        dl_tensor *x = randn(4, DL_SHAPE(2, 3, 4, 5), 1.0f, 1), *y;
        double *want = (double *)malloc(sizeof(double) * x->numel);
        CHECK(l != NULL, "%s", dl_error());
        if (!l) { free(want); dl_tensor_free(x); continue; }
        CHECK(l->fconf[0] == want_slope[k], "slope %g is stored as %g (got %g)", (double)slopes[k], (double)want_slope[k],
              (double)l->fconf[0]);
        CHECK(strcmp(l->name, "leaky_re_lu") == 0 && strcmp(l->ops->kind, "LeakyReLU") == 0, "Keras' names: %s (%s)", l->name,
              l->ops->kind);
        dl_f32(x)[3] = 0.0f;   /* at 0: the slope side, as Keras and torch (x > 0 ? x : a x) */
        for (i = 0; i < x->numel; i++) {
            double v = dl_f32(x)[i];
            want[i] = v > 0 ? v : (double)want_slope[k] * v;
        }
        y = dl_layer_call(l, x, 1);
        CHECK(y && dl_same_shape(y, x), "shape kept");
        if (y && dl_same_shape(y, x)) check_against(y, want, 1e-6, "LeakyReLU forward");
        dl_arena_reset(dl_arena_current());
        dl_f32(x)[3] = 0.5f;   /* away from the kink for finite differences */
        CHECK(gradcheck_layer(l, x, 1), "slope %g: %s", (double)want_slope[k], dl_error());
        free(want);
        dl_layer_free(l);
        dl_tensor_free(x);
    }
}

/* ---- InstanceNormalization ---- */

static void inorm_ref(const dl_tensor *x, const float *gamma, const float *beta, double eps, double *out) {
    int n, c, N = x->shape[0], C = x->shape[1];
    size_t S = x->numel / (size_t)N / (size_t)C, i;
    const float *v = dl_f32(x);
    for (n = 0; n < N; n++)
        for (c = 0; c < C; c++) {
            const float *p = v + ((size_t)n * (size_t)C + (size_t)c) * S;
            double *o = out + ((size_t)n * (size_t)C + (size_t)c) * S, mean = 0, var = 0;
            for (i = 0; i < S; i++) mean += p[i];
            mean /= (double)S;
            for (i = 0; i < S; i++) var += (p[i] - mean) * (p[i] - mean);
            var /= (double)S;   /* biased, as tensorflow_addons and torch */
            for (i = 0; i < S; i++) o[i] = gamma[c] * (p[i] - mean) / sqrt(var + eps) + beta[c];
        }
}

static void test_instance_norm(void) {
    static const float eps_in[] = {0.0f, 1e-5f, (float)DL_ZERO};
    static const float eps_want[] = {1e-3f, 1e-5f, 0.0f};
    static const int shapes[][5] = {{4, 2, 3, 5, 4}, {3, 3, 2, 6, 0}, {4, 1, 1, 2, 1}};   /* ndim, dims */
    size_t k;
    for (k = 0; k < 3; k++) {
        const int *sh = shapes[k] + 1, nd = shapes[k][0];
        dl_layer *l = dl_InstanceNormalization(eps_in[k]);
        dl_tensor *x = randn(nd, sh, 2.0f, 1), *y, *y2, *gamma, *beta;
        double *want = (double *)malloc(sizeof(double) * x->numel);
        size_t i;
        CHECK(l != NULL, "%s", dl_error());
        if (!l) { free(want); dl_tensor_free(x); continue; }
        CHECK(l->fconf[0] == eps_want[k], "epsilon %g is stored as %g (got %g)", (double)eps_in[k], (double)eps_want[k],
              (double)l->fconf[0]);
        for (i = 0; i < x->numel; i++) dl_f32(x)[i] += 0.5f * (float)(i % 7);   /* not centered */
        y = dl_layer_call(l, x, 1);
        gamma = dl_layer_weight(l, "gamma");
        beta = dl_layer_weight(l, "beta");
        CHECK(gamma && beta && l->n_params == 2 && shape_is(gamma, 1, DL_SHAPE(sh[1])) && shape_is(beta, 1, DL_SHAPE(sh[1])),
              "gamma [C] and beta [C], nothing else");
        if (!gamma || !beta) { free(want); dl_layer_free(l); dl_tensor_free(x); continue; }
        CHECK(l->param_trainable[0] && l->param_trainable[1], "both trainable");
        for (i = 0; i < (size_t)sh[1]; i++) CHECK(dl_f32(gamma)[i] == 1.0f && dl_f32(beta)[i] == 0.0f, "ones and zeros at first");
        dl_fill_uniform(gamma, 0.5f, 1.5f, &g_rng);
        dl_fill_uniform(beta, -0.5f, 0.5f, &g_rng);
        inorm_ref(x, dl_f32(gamma), dl_f32(beta), eps_want[k], want);
        y = dl_layer_call(l, x, 1);
        y2 = dl_layer_call(l, x, 0);
        CHECK(y && dl_same_shape(y, x), "shape kept");
        if (y && dl_same_shape(y, x)) check_against(y, want, 2e-5, "InstanceNormalization forward");
        CHECK(y && y2 && memcmp(dl_contig_f32(y), dl_contig_f32(y2), sizeof(float) * x->numel) == 0,
              "the same in training and inference (no moving statistics)");
        dl_arena_reset(dl_arena_current());
        CHECK(gradcheck_layer(l, x, 1), "input and gamma, beta, shape %d: %s", (int)k, dl_error());
        free(want);
        dl_layer_free(l);
        dl_tensor_free(x);
    }
}

/* ---- ReflectionPad2D, ZeroPadding2D ---- */

/* torch's reflect (no edge repeat) or zeros; i is the padded index, before the pad in front. */
static int src_index(int i, int before, int n, int reflect) {
    int s = i - before;
    if (s >= 0 && s < n) return s;
    if (!reflect) return -1;
    return s < 0 ? -s : 2 * (n - 1) - s;
}

static void test_padding(void) {
    static const struct { int reflect, sides, p[4], h, w; } cases[] = {
        {1, 0, {1, 1, 1, 1}, 4, 5}, {1, 0, {3, 3, 3, 3}, 4, 5}, {1, 1, {1, 2, 3, 0}, 4, 5}, {1, 0, {0, 0, 0, 0}, 2, 3},
        {0, 0, {2, 2, 2, 2}, 3, 4}, {0, 1, {0, 1, 2, 3}, 3, 4}, {1, 0, {1, 1, 1, 1}, 2, 2},
    };
    size_t k;
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int *p = cases[k].p, h = cases[k].h, w = cases[k].w, oh = h + p[2] + p[3], ow = w + p[0] + p[1];
        dl_layer *l = cases[k].reflect ? (cases[k].sides ? dl_ReflectionPad2D_sides(p[0], p[1], p[2], p[3]) : dl_ReflectionPad2D(p[0]))
                                       : (cases[k].sides ? dl_ZeroPadding2D_sides(p[0], p[1], p[2], p[3]) : dl_ZeroPadding2D(p[0]));
        dl_tensor *x = randn(4, DL_SHAPE(2, 3, h, w), 1.0f, 1), *y;
        double *want = (double *)malloc(sizeof(double) * 2 * 3 * (size_t)oh * (size_t)ow);
        int b, i, j;
        CHECK(l != NULL, "%s", dl_error());
        if (!l) { free(want); dl_tensor_free(x); continue; }
        CHECK(strcmp(l->ops->kind, cases[k].reflect ? "ReflectionPad2D" : "ZeroPadding2D") == 0 &&
              strcmp(l->name, cases[k].reflect ? "reflection_pad2d" : "zero_padding2d") == 0, "names: %s (%s)", l->name, l->ops->kind);
        CHECK(l->iconf[0] == p[0] && l->iconf[1] == p[1] && l->iconf[2] == p[2] && l->iconf[3] == p[3], "pads stored left, right, top, bottom");
        for (b = 0; b < 6; b++)
            for (i = 0; i < oh; i++)
                for (j = 0; j < ow; j++) {
                    int si = src_index(i, p[2], h, cases[k].reflect), sj = src_index(j, p[0], w, cases[k].reflect);
                    want[((size_t)b * (size_t)oh + (size_t)i) * (size_t)ow + (size_t)j] =
                        si < 0 || sj < 0 ? 0.0 : dl_f32(x)[((size_t)b * (size_t)h + (size_t)si) * (size_t)w + (size_t)sj];
                }
        y = dl_layer_call(l, x, 0);
        CHECK(shape_is(y, 4, DL_SHAPE(2, 3, oh, ow)), "case %zu: %dx%d padded to %dx%d", k, h, w, oh, ow);
        if (shape_is(y, 4, DL_SHAPE(2, 3, oh, ow))) check_against(y, want, 0, "padding forward");
        dl_arena_reset(dl_arena_current());
        CHECK(gradcheck_layer(l, x, 1), "case %zu: %s", k, dl_error());
        free(want);
        dl_layer_free(l);
        dl_tensor_free(x);
    }
}

/* ---- UpSampling2D ---- */

static void test_upsampling(void) {
    static const int sizes[] = {1, 2, 3};
    size_t k;
    for (k = 0; k < 3; k++) {
        int s = sizes[k], h = 3, w = 4, b, i, j;
        dl_layer *l = dl_UpSampling2D(s);
        dl_tensor *x = randn(4, DL_SHAPE(2, 2, h, w), 1.0f, 1), *y;
        double *want = (double *)malloc(sizeof(double) * 4 * (size_t)(h * s) * (size_t)(w * s));
        CHECK(l != NULL && strcmp(l->name, "up_sampling2d") == 0 && strcmp(l->ops->kind, "UpSampling2D") == 0 && l->iconf[0] == s,
              "%s", dl_error());
        if (!l) { free(want); dl_tensor_free(x); continue; }
        for (b = 0; b < 4; b++)
            for (i = 0; i < h * s; i++)
                for (j = 0; j < w * s; j++)
                    want[((size_t)b * (size_t)(h * s) + (size_t)i) * (size_t)(w * s) + (size_t)j] =
                        dl_f32(x)[((size_t)b * (size_t)h + (size_t)(i / s)) * (size_t)w + (size_t)(j / s)];
        y = dl_layer_call(l, x, 0);
        CHECK(shape_is(y, 4, DL_SHAPE(2, 2, h * s, w * s)), "size %d: %dx%d", s, h * s, w * s);
        if (shape_is(y, 4, DL_SHAPE(2, 2, h * s, w * s))) check_against(y, want, 0, "UpSampling2D forward");
        dl_arena_reset(dl_arena_current());
        CHECK(gradcheck_layer(l, x, 1), "size %d: %s", s, dl_error());
        free(want);
        dl_layer_free(l);
        dl_tensor_free(x);
    }
}

/* DCGAN's Conv2DTranspose(k 5, stride 2, same) on odd and even sizes, by finite differences. */
static void test_conv2d_transpose_k5s2_gradients(void) {
    static const int hw[2] = {7, 8};
    int k;
    dl_nn_seed(5);
    for (k = 0; k < 2; k++) {
        dl_layer *l = dl_Conv2DTranspose(2, 5, 2, DL_PADDING_SAME, DL_ACT_LINEAR);
        dl_tensor *x = randn(4, DL_SHAPE(1, 2, hw[k], hw[k]), 1.0f, 1), *y = dl_layer_call(l, x, 0);
        CHECK(shape_is(y, 4, DL_SHAPE(1, 2, 2 * hw[k], 2 * hw[k])), "%dx%d -> %dx%d", hw[k], hw[k], 2 * hw[k], 2 * hw[k]);
        dl_arena_reset(dl_arena_current());
        CHECK(gradcheck_layer(l, x, 1), "%dx%d: %s", hw[k], hw[k], dl_error());
        dl_layer_free(l);
        dl_tensor_free(x);
    }
}

/* ---- PyTorch parity (tests/data/nn_gan_layers.safetensors) ---- */

static dl_tensor *fx(const dl_safetensors *st, const char *prefix, const char *name) {
    char full[64];
    dl_tensor *t;
    snprintf(full, sizeof full, "%s%s", prefix, name);
    t = dl_safetensors_get(st, full);
    CHECK(t != NULL, "fixture has %s", full);
    return t;
}

/* y = l(x), then backward of sum(g * y): y, dx and each named weight's gradient against the
   fixture. weights/wnames: the layer's weights set from the fixture after its build. */
static void parity(const dl_safetensors *st, const char *prefix, dl_layer *l, int n_w, const char *const *wnames,
                   const char *const *fixture_w, const char *const *fixture_dw, double tol) {
    dl_tensor *x0 = fx(st, prefix, "x"), *want = fx(st, prefix, "y"), *g = fx(st, prefix, "g"), *dx = fx(st, prefix, "dx"), *x, *y;
    int i;
    CHECK(l != NULL, "%s: %s", prefix, dl_error());
    if (!l || !x0 || !want || !g || !dx) { dl_layer_free(l); return; }
    x = dl_tensor_clone(x0);
    dl_set_requires_grad(x, 1);
    CHECK(dl_layer_call(l, x, 1) != NULL, "%s: %s", prefix, dl_error());
    for (i = 0; i < n_w; i++) {
        dl_tensor *w = dl_layer_weight(l, wnames[i]), *src = fx(st, prefix, fixture_w[i]);
        CHECK(w && src && dl_copy(w, src) == 0, "%s: set %s: %s", prefix, wnames[i], dl_error());
        if (w) dl_zero_grad(w);
    }
    dl_arena_reset(dl_arena_current());
    y = dl_layer_call(l, x, 1);
    CHECK(y && dl_same_shape(y, want), "%s: output shape", prefix);
    if (y && dl_same_shape(y, want)) {
        CHECK_ALL_NEAR(dl_contig_f32(y), dl_f32(want), y->numel, tol);
        CHECK(dl_backward_grad(y, dl_f32(g)) == 0, "%s: %s", prefix, dl_error());
        CHECK(x->grad != NULL, "%s: the input got a gradient", prefix);
        if (x->grad) CHECK_ALL_NEAR(x->grad, dl_f32(dx), x->numel, tol);
        for (i = 0; i < n_w; i++) {
            dl_tensor *w = dl_layer_weight(l, wnames[i]), *dw = fx(st, prefix, fixture_dw[i]);
            CHECK(w && w->grad && dw && w->numel == dw->numel, "%s: %s got a gradient", prefix, wnames[i]);
            if (w && w->grad && dw && w->numel == dw->numel) CHECK_ALL_NEAR(w->grad, dl_f32(dw), w->numel, tol);
        }
    }
    dl_arena_reset(dl_arena_current());
    dl_layer_free(l);
    dl_tensor_free(x);
}

static void test_torch_parity(void) {
    static const char *const in_w[2] = {"gamma", "beta"}, *const in_fw[2] = {"gamma", "beta"},
                             *const in_dw[2] = {"dgamma", "dbeta"};
    static const char *const ct_w[2] = {"kernel", "bias"}, *const ct_fw[2] = {"w", "b"}, *const ct_dw[2] = {"dw", "db"};
    dl_safetensors *st = dl_safetensors_load("tests/data/nn_gan_layers.safetensors");
    CHECK(st != NULL, "%s", dl_error());
    if (!st) return;
    parity(st, "leaky.", dl_LeakyReLU(0.2f), 0, NULL, NULL, NULL, 1e-6);
    parity(st, "inorm.", dl_InstanceNormalization(0), 2, in_w, in_fw, in_dw, 1e-5);   /* torch with eps 1e-3 */
    { /* torch's default eps 1e-5, forward */
        dl_layer *l = dl_InstanceNormalization(1e-5f);
        dl_tensor *x = fx(st, "inorm.", "x"), *want = fx(st, "inorm5.", "y"), *y;
        if (l && x && want && dl_layer_call(l, x, 0)) {
            dl_copy(dl_layer_weight(l, "gamma"), fx(st, "inorm.", "gamma"));
            dl_copy(dl_layer_weight(l, "beta"), fx(st, "inorm.", "beta"));
            y = dl_layer_call(l, x, 0);
            CHECK(y && dl_same_shape(y, want), "inorm5 shape");
            if (y && dl_same_shape(y, want)) CHECK_ALL_NEAR(dl_contig_f32(y), dl_f32(want), y->numel, 1e-5);
        } else
            CHECK(0, "inorm5: %s", dl_error());
        dl_arena_reset(dl_arena_current());
        dl_layer_free(l);
    }
    parity(st, "rpad1.", dl_ReflectionPad2D(1), 0, NULL, NULL, NULL, 1e-6);
    parity(st, "rpad3.", dl_ReflectionPad2D(3), 0, NULL, NULL, NULL, 1e-6);
    parity(st, "rpads.", dl_ReflectionPad2D_sides(1, 2, 3, 0), 0, NULL, NULL, NULL, 1e-6);
    parity(st, "zpad.", dl_ZeroPadding2D_sides(2, 1, 0, 3), 0, NULL, NULL, NULL, 1e-6);
    parity(st, "up2.", dl_UpSampling2D(2), 0, NULL, NULL, NULL, 1e-6);
    /* Keras' Conv2DTranspose(3, 5, strides=2, padding="same"): 7x7 -> 14x14 and 8x8 -> 16x16,
       cropped 1 at the top/left and 2 at the bottom/right (tools/make_gan_layer_fixtures.py) */
    parity(st, "convt7.", dl_Conv2DTranspose(3, 5, 2, DL_PADDING_SAME, DL_ACT_LINEAR), 2, ct_w, ct_fw, ct_dw, 1e-5);
    parity(st, "convt8.", dl_Conv2DTranspose(3, 5, 2, DL_PADDING_SAME, DL_ACT_LINEAR), 2, ct_w, ct_fw, ct_dw, 1e-5);
    dl_safetensors_free(st);
}

/* ---- a model with every new layer: save/load, summary ---- */

/* [2, 5, 5] -> ... -> [2, 46, 38]; every new kind, both padding forms, the special settings. */
static dl_model *gan_model(void) {
    dl_model *m;
    dl_nn_seed(11);
    m = dl_sequential(dl_ReflectionPad2D(1),                           /* [2, 7, 7] */
                      dl_Conv2D(4, 3, 1, DL_PADDING_VALID, DL_ACT_LINEAR), /* [4, 5, 5] */
                      dl_InstanceNormalization(0),                     /* epsilon 1e-3 */
                      dl_LeakyReLU(0.2f),
                      dl_ZeroPadding2D_sides(1, 0, 2, 1),              /* [4, 8, 6] */
                      dl_ReflectionPad2D_sides(2, 1, 0, 3),            /* [4, 11, 9] */
                      dl_UpSampling2D(2),                              /* [4, 22, 18] */
                      dl_Conv2DTranspose(2, 5, 2, DL_PADDING_SAME, DL_ACT_LINEAR), /* [2, 44, 36] */
                      dl_InstanceNormalization((float)DL_ZERO),        /* a real 0 */
                      dl_LeakyReLU((float)DL_ZERO),                    /* a ReLU */
                      dl_ZeroPadding2D(1),                             /* [2, 46, 38] */
                      dl_LeakyReLU(0));                                /* Keras' 0.3 */
    if (m && dl_model_build(m, 3, DL_SHAPE(2, 5, 5)) != 0) { dl_model_free(m); return NULL; }
    if (m) {   /* weights away from their initial values */
        int i, j;
        for (i = 0; i < dl_model_num_layers(m); i++) {
            dl_layer *l = dl_model_layer(m, i);
            for (j = 0; j < l->n_params; j++) dl_fill_uniform(l->params[j], -0.5f, 1.0f, &g_rng);
        }
    }
    return m;
}

static void same_layers(dl_model *a, dl_model *b) {
    int i, j;
    CHECK(dl_model_num_layers(a) == dl_model_num_layers(b), "layer count %d vs %d", dl_model_num_layers(a), dl_model_num_layers(b));
    for (i = 0; i < dl_model_num_layers(a) && i < dl_model_num_layers(b); i++) {
        dl_layer *x = dl_model_layer(a, i), *y = dl_model_layer(b, i);
        CHECK(strcmp(x->ops->kind, y->ops->kind) == 0 && strcmp(x->name, y->name) == 0, "layer %d: %s (%s) vs %s (%s)", i, x->name,
              x->ops->kind, y->name, y->ops->kind);
        CHECK(memcmp(x->iconf, y->iconf, sizeof x->iconf) == 0 && memcmp(x->fconf, y->fconf, sizeof x->fconf) == 0,
              "layer %d (%s): the same settings", i, x->name);
        CHECK(x->n_params == y->n_params, "layer %d: weights", i);
        for (j = 0; j < x->n_params && j < y->n_params; j++)
            CHECK(dl_same_shape(x->params[j], y->params[j]) &&
                      memcmp(dl_f32(x->params[j]), dl_f32(y->params[j]), sizeof(float) * x->params[j]->numel) == 0,
                  "layer %d weight %d: the same bits", i, j);
    }
}

static void test_save_load(void) {
    dl_model *m = gan_model(), *l;
    dl_tensor *x, *y1, *y2;
    size_t size;
    unsigned char *buf;
    CHECK(m != NULL, "%s", dl_error());
    if (!m) return;
    CHECK(dl_model_layer(m, 9)->fconf[0] == 0.0f && dl_model_layer(m, 11)->fconf[0] == 0.3f &&
              dl_model_layer(m, 8)->fconf[0] == 0.0f && dl_model_layer(m, 2)->fconf[0] == 1e-3f,
          "settings as given: DL_ZERO is 0, 0 is the default");
    x = randn(4, DL_SHAPE(3, 2, 5, 5), 1.0f, 0);
    y1 = dl_predict(m, x, 2);
    CHECK(shape_is(y1, 4, DL_SHAPE(3, 2, 46, 38)), "output [3, 2, 46, 38]: %s", dl_error());
    /* through a file */
    CHECK(dl_model_save(m, tmp_path, 0) == 0, "%s", dl_error());
    l = dl_model_load(tmp_path);
    CHECK(l != NULL, "%s", dl_error());
    if (l && y1) {
        same_layers(m, l);
        CHECK(dl_model_layer(l, 9)->fconf[0] == 0.0f && dl_model_layer(l, 8)->fconf[0] == 0.0f,
              "a saved real 0 loads as 0, not as the default (%g, %g)", (double)dl_model_layer(l, 9)->fconf[0],
              (double)dl_model_layer(l, 8)->fconf[0]);
        y2 = dl_predict(l, x, 3);
        CHECK(y2 && dl_same_shape(y1, y2) && memcmp(dl_f32(y1), dl_f32(y2), sizeof(float) * y1->numel) == 0,
              "predictions bit-identical after dl_model_load");
        dl_tensor_free(y2);
    }
    dl_model_free(l);
    remove(tmp_path);
    /* through memory, once trained a step (so it also runs backward inside a model) */
    {
        dl_tensor *xb, *yb;
        CHECK(dl_compile(m, dl_optim_new(DL_OPTIM_ADAM, NULL), DL_LOSS_MSE, 0) == 0, "%s", dl_error());
        dl_arena_reset(dl_arena_current());
        xb = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(2, 2, 5, 5));
        yb = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(2, 2, 46, 38));
        dl_fill_normal(xb, 0, 1, &g_rng);
        dl_fill_normal(yb, 0, 1, &g_rng);
        CHECK(isfinite(dl_train_on_batch(m, xb, yb)), "a training step: %s", dl_error());
        dl_arena_reset(dl_arena_current());
    }
    size = dl_model_serialize(m, 1, NULL, 0);
    CHECK(size > 0, "%s", dl_error());
    buf = (unsigned char *)malloc(size ? size : 1);
    CHECK(dl_model_serialize(m, 1, buf, size) == size, "serialize");
    l = dl_model_parse(buf, size);
    CHECK(l != NULL, "%s", dl_error());
    if (l) {
        dl_tensor *a, *b;
        same_layers(m, l);
        a = dl_predict(m, x, 3);
        b = dl_predict(l, x, 1);
        CHECK(a && b && dl_same_shape(a, b) && memcmp(dl_f32(a), dl_f32(b), sizeof(float) * a->numel) == 0,
              "predictions bit-identical after dl_model_parse");
        CHECK(a && y1 && memcmp(dl_f32(a), dl_f32(y1), sizeof(float) * a->numel) != 0, "(the step changed them)");
        dl_tensor_free(a);
        dl_tensor_free(b);
    }
    dl_model_free(l);
    free(buf);
    dl_tensor_free(y1);
    dl_tensor_free(x);
    dl_model_free(m);
    dl_arena_reset(dl_arena_current());
}

/* The row of the layer "name (Kind)" in a sequential summary: that text, its output shape
   padded as Keras does (27 + 25 columns), its parameter count. */
static void check_row(const char *summary, const char *layer, const char *shape, long params) {
    char row[160];
    snprintf(row, sizeof row, "\n %-27s %-25s %ld\n", layer, shape, params);
    CHECK(has(summary, row), "summary row '%s %s %ld' in:\n%s", layer, shape, params, summary);
}

static void test_model_summary(void) {
    dl_model *m = gan_model();
    char buf[8192];
    CHECK(m != NULL, "%s", dl_error());
    if (!m) return;
    CHECK(dl_model_summary(m, buf, sizeof buf) > 0, "%s", dl_error());
    check_row(buf, "reflection_pad2d (ReflectionPad2D)", "(None, 2, 7, 7)", 0);
    check_row(buf, "instance_normalization (InstanceNormalization)", "(None, 4, 5, 5)", 8);
    check_row(buf, "leaky_re_lu (LeakyReLU)", "(None, 4, 5, 5)", 0);
    check_row(buf, "zero_padding2d (ZeroPadding2D)", "(None, 4, 8, 6)", 0);
    check_row(buf, "reflection_pad2d_1 (ReflectionPad2D)", "(None, 4, 11, 9)", 0);
    check_row(buf, "up_sampling2d (UpSampling2D)", "(None, 4, 22, 18)", 0);
    check_row(buf, "conv2d_transpose (Conv2DTranspose)", "(None, 2, 44, 36)", 4 * 2 * 25 + 2);
    check_row(buf, "instance_normalization_1 (InstanceNormalization)", "(None, 2, 44, 36)", 4);
    check_row(buf, "leaky_re_lu_1 (LeakyReLU)", "(None, 2, 44, 36)", 0);
    check_row(buf, "zero_padding2d_1 (ZeroPadding2D)", "(None, 2, 46, 38)", 0);
    check_row(buf, "leaky_re_lu_2 (LeakyReLU)", "(None, 2, 46, 38)", 0);
    CHECK(has(buf, "\nTotal params: 290\n"), "total: conv2d 4*2*9+4, instance norms 8 + 4, transpose 202:\n%s", buf);
    dl_model_free(m);
}

/* ---- bad settings, bad inputs, hostile files ---- */

static void expect_ctor_fail(dl_layer *l, const char *fn, const char *value) {
    CHECK(l == NULL, "%s with %s must fail", fn, value);
    CHECK(has(dl_error(), fn) && has(dl_error(), value), "message names %s and %s: '%s'", fn, value, dl_error());
    dl_layer_free(l);
}

static void test_bad_settings(void) {
    long live0;
    dl_model *m;
    dl_layer *l;
    m = dl_sequential(dl_LeakyReLU(0)); /* warm up what allocates once */
    dl_model_free(m);
    dl_threads_shutdown();
    live0 = test_live;
    dl_clear_error();
    expect_ctor_fail(dl_LeakyReLU(NAN), "dl_LeakyReLU", "nan");
    expect_ctor_fail(dl_LeakyReLU(-0.5f), "dl_LeakyReLU", "-0.5");
    expect_ctor_fail(dl_LeakyReLU(INFINITY), "dl_LeakyReLU", "inf");
    expect_ctor_fail(dl_InstanceNormalization(NAN), "dl_InstanceNormalization", "nan");
    expect_ctor_fail(dl_InstanceNormalization(-1e-3f), "dl_InstanceNormalization", "-0.001");
    expect_ctor_fail(dl_ReflectionPad2D(-1), "dl_ReflectionPad2D", "pad -1");
    expect_ctor_fail(dl_ReflectionPad2D_sides(1, 1, -2, 1), "dl_ReflectionPad2D_sides", "-2");
    expect_ctor_fail(dl_ZeroPadding2D(-3), "dl_ZeroPadding2D", "pad -3");
    expect_ctor_fail(dl_ZeroPadding2D_sides(0, -1, 0, 0), "dl_ZeroPadding2D_sides", "-1");
    expect_ctor_fail(dl_UpSampling2D(0), "dl_UpSampling2D", "size 0");
    expect_ctor_fail(dl_UpSampling2D(-2), "dl_UpSampling2D", "size -2");
    m = dl_sequential(dl_ZeroPadding2D(1), dl_UpSampling2D(0), dl_LeakyReLU(0.2f));
    CHECK(m == NULL && has(dl_error(), "dl_UpSampling2D"), "dl_sequential keeps the message: '%s'", dl_error());
    dl_threads_shutdown();
    CHECK(test_live == live0, "failed constructors leave nothing behind (%ld blocks)", test_live - live0);

    /* reflection pads must be smaller than the input: found at the first call, naming the layer */
    l = dl_ReflectionPad2D(3);
    {
        dl_tensor *x = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(1, 1, 3, 8));
        dl_fill_normal(x, 0, 1, &g_rng);
        dl_clear_error();
        CHECK(dl_layer_call(l, x, 0) == NULL && has(dl_error(), "reflection_pad2d (ReflectionPad2D)") && has(dl_error(), "pad 3") &&
                  has(dl_error(), "3x8"),
              "pad 3 on 3x8: '%s'", dl_error());
    }
    dl_layer_free(l);
    l = dl_ReflectionPad2D_sides(4, 0, 1, 1);
    {
        dl_tensor *x = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(1, 1, 5, 4));
        dl_fill_normal(x, 0, 1, &g_rng);
        CHECK(dl_layer_call(l, x, 0) == NULL && has(dl_error(), "left 4") && has(dl_error(), "5x4"), "left 4 on width 4: '%s'", dl_error());
    }
    dl_layer_free(l);
    m = dl_sequential(dl_ReflectionPad2D(2), dl_LeakyReLU(0));
    CHECK(m && dl_model_build(m, 3, DL_SHAPE(1, 2, 9)) != 0 && has(dl_error(), "reflection_pad2d") && has(dl_error(), "pad 2"),
          "in a model, at build: '%s'", dl_error());
    dl_model_free(m);
    { /* functional: at dl_apply, where the graph is written */
        dl_sym *in = dl_Input(3, DL_SHAPE(1, 4, 1)), *out;
        dl_clear_error();
        out = dl_apply(dl_ReflectionPad2D(1), in);
        CHECK(out == NULL && has(dl_error(), "pad 1") && has(dl_error(), "4x1"), "dl_apply: '%s'", dl_error());
        dl_sym_free_unused();
    }
    /* inputs of the wrong rank */
    {
        dl_tensor *x2 = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(2, 6)), *x3 = dl_tmp(DL_DTYPE_F32, 3, DL_SHAPE(2, 3, 4)),
                  *x1 = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(2, 3, 1, 1));
        dl_layer *ls[4];
        int i;
        ls[0] = dl_UpSampling2D(2); ls[1] = dl_ZeroPadding2D(1); ls[2] = dl_ReflectionPad2D(1); ls[3] = dl_InstanceNormalization(0);
        dl_fill_normal(x2, 0, 1, &g_rng);
        dl_fill_normal(x3, 0, 1, &g_rng);
        for (i = 0; i < 4; i++) {
            dl_clear_error();
            CHECK(dl_layer_call(ls[i], i < 3 ? x3 : x2, 0) == NULL && has(dl_error(), ls[i]->name), "%s on the wrong rank: '%s'",
                  ls[i]->ops->kind, dl_error());
        }
        dl_clear_error();
        CHECK(dl_layer_call(ls[3], x1, 0) == NULL && has(dl_error(), "spatial"), "instance norm over one spatial element: '%s'",
              dl_error());
        for (i = 0; i < 4; i++) dl_layer_free(ls[i]);
    }
    {   /* instance norm built for 3 channels, called with 2 */
        dl_tensor *a = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(1, 3, 2, 2)), *b = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(1, 2, 2, 2));
        l = dl_InstanceNormalization(0);
        dl_fill_normal(a, 0, 1, &g_rng);
        dl_fill_normal(b, 0, 1, &g_rng);
        CHECK(dl_layer_call(l, a, 0) != NULL, "%s", dl_error());
        CHECK(dl_layer_call(l, b, 0) == NULL && has(dl_error(), "instance_normalization") && has(dl_error(), "2 channels"), "'%s'",
              dl_error());
        dl_layer_free(l);
    }
    dl_arena_reset(dl_arena_current());
}

static char *replace_once(const char *s, const char *from, const char *to) {
    const char *p = strstr(s, from);
    char *r;
    if (!p) return NULL;
    r = (char *)malloc(strlen(s) + strlen(to) + 1);
    memcpy(r, s, (size_t)(p - s));
    strcpy(r + (p - s), to);
    strcat(r, p + strlen(from));
    return r;
}

/* good's bytes with the architecture text edited (from -> to); NULL when from is absent. */
static unsigned char *with_arch(const unsigned char *good, size_t good_size, const char *from, const char *to, size_t *size) {
    dl_safetensors *st = dl_safetensors_parse(good, good_size);
    const char *names[64], *keys[32], *values[32];
    dl_tensor *ts[64];
    int n = 0, nm = 0, i;
    unsigned char *out = NULL;
    char *arch = NULL;
    *size = 0;
    if (!st) return NULL;
    for (i = 0; i < dl_safetensors_num_tensors(st) && n < 64; i++) {
        names[n] = dl_safetensors_name(st, i);
        ts[n] = dl_safetensors_get(st, names[n]);
        n++;
    }
    for (i = 0; i < dl_safetensors_num_meta(st) && nm < 32; i++) {
        keys[nm] = dl_safetensors_meta_key(st, i);
        values[nm] = dl_safetensors_meta(st, keys[nm]);
        if (strcmp(keys[nm], "dl.architecture") == 0) values[nm] = arch = replace_once(values[nm], from, to);
        nm++;
    }
    if (arch) {
        *size = dl_safetensors_serialize(n, names, ts, nm, keys, values, NULL, 0);
        if (*size && (out = (unsigned char *)malloc(*size)) != NULL) dl_safetensors_serialize(n, names, ts, nm, keys, values, out, *size);
    }
    free(arch);
    dl_safetensors_free(st);
    return out;
}

static void test_hostile_files(void) {
    static const struct { const char *from, *to, *want; } edits[] = {
        /* an UpSampling2D whose output would be huge: refused before anything is built */
        {"layer UpSampling2D up_sampling2d 1 i 2 ", "layer UpSampling2D up_sampling2d 1 i 40000 ", "DL_MODEL_LOAD_MAX_VALUES"},
        {"layer ZeroPadding2D zero_padding2d_1 1 i 1 1 1 1 ", "layer ZeroPadding2D zero_padding2d_1 1 i 1 1 2000000000 1 ",
         "DL_MODEL_LOAD_MAX_VALUES"},
        /* settings the constructors refuse */
        {"layer UpSampling2D up_sampling2d 1 i 2 ", "layer UpSampling2D up_sampling2d 1 i 0 ", "size 0"},
        {"layer ReflectionPad2D reflection_pad2d 1 i 1 1 1 1 ", "layer ReflectionPad2D reflection_pad2d 1 i 1 -7 1 1 ", "-7"},
        {"layer LeakyReLU leaky_re_lu 1 i 0 0 0 0 0 0 0 0 f 0.200000003 ", "layer LeakyReLU leaky_re_lu 1 i 0 0 0 0 0 0 0 0 f -5 ",
         "negative_slope -5"},
        {"layer LeakyReLU leaky_re_lu 1 i 0 0 0 0 0 0 0 0 f 0.200000003 ", "layer LeakyReLU leaky_re_lu 1 i 0 0 0 0 0 0 0 0 f nan ", NULL},
        {"layer InstanceNormalization instance_normalization 1 i 0 0 0 0 0 0 0 0 f 0.00100000005 ",
         "layer InstanceNormalization instance_normalization 1 i 0 0 0 0 0 0 0 0 f -3 ", "epsilon -3"},
        /* a reflection pad as large as its input: found by the build, not a crash */
        {"layer ReflectionPad2D reflection_pad2d 1 i 1 1 1 1 ", "layer ReflectionPad2D reflection_pad2d 1 i 5 5 5 5 ", "pad 5"},
    };
    dl_model *m = gan_model(), *l;
    size_t size, ed_size, k;
    unsigned char *good;
    long live0;
    CHECK(m != NULL, "%s", dl_error());
    if (!m) return;
    size = dl_model_serialize(m, 0, NULL, 0);
    good = (unsigned char *)malloc(size);
    dl_model_serialize(m, 0, good, size);
    l = dl_model_parse(good, size);
    CHECK(l != NULL, "the good file parses: %s", dl_error());
    dl_model_free(l);
    dl_threads_shutdown();
    live0 = test_live;
    for (k = 0; k < sizeof edits / sizeof edits[0]; k++) {
        unsigned char *ed = with_arch(good, size, edits[k].from, edits[k].to, &ed_size);
        CHECK(ed != NULL, "edit %zu: '%s' is in the architecture", k, edits[k].from);
        if (!ed) continue;
        dl_clear_error();
        test_max_alloc = 0;
        l = dl_model_parse(ed, ed_size);
        CHECK(l == NULL && dl_error()[0] && (!edits[k].want || has(dl_error(), edits[k].want)), "edit %zu refused with '%s': '%s'", k,
              edits[k].want ? edits[k].want : "a message", dl_error());
        CHECK(test_max_alloc < 64L << 20, "edit %zu: no allocation of %ld bytes", k, test_max_alloc);
        dl_model_free(l);
        free(ed);
        dl_sym_free_unused();
        dl_arena_reset(dl_arena_current());
    }
    dl_threads_shutdown();
    CHECK(test_live == live0, "failed loads leave nothing behind (%ld blocks)", test_live - live0);
    free(good);
    dl_model_free(m);
}

int main(int argc, char **argv) {
    (void)argc;
    if (argv[0] && strlen(argv[0]) < sizeof tmp_path - 20) snprintf(tmp_path, sizeof tmp_path, "%s.tmp.safetensors", argv[0]);
    dl_rng_seed(&g_rng, 2026);
    RUN(test_leaky_relu);
    RUN(test_instance_norm);
    RUN(test_padding);
    RUN(test_upsampling);
    RUN(test_conv2d_transpose_k5s2_gradients);
    RUN(test_torch_parity);
    RUN(test_save_load);
    RUN(test_model_summary);
    RUN(test_bad_settings);
    RUN(test_hostile_files);
    return test_summary();
}
