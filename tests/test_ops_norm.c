/* Normalization, dropout, embedding and Gram matrix ops of dl_tensor.h.
   Reference numbers come from PyTorch 1.13 (torch.nn.functional), on the inputs made by vals(). */
#define DL_IMPLEMENTATION
#include "../dl_tensor.h"
#include "test.h"

/* Deterministic inputs: vals(i) = ((7i + 3) % 11) * a + b + 0.01 i^2 in double, rounded to f32
   (the same expression as the Python that produced the reference numbers). */
static dl_tensor *vals(int ndim, const int *shape, double a, double b, int persistent) {
    dl_tensor *t = persistent ? dl_tensor_new(DL_DTYPE_F32, ndim, shape) : dl_tmp(DL_DTYPE_F32, ndim, shape);
    size_t i;
    for (i = 0; i < t->numel; i++) dl_f32(t)[i] = (float)(((i * 7 + 3) % 11) * a + b + 0.01 * i * i);
    return t;
}

static dl_tensor *param(int ndim, const int *shape, dl_rng *rng, float lo, float hi) {
    dl_tensor *t = dl_tensor_new(DL_DTYPE_F32, ndim, shape);
    dl_fill_uniform(t, lo, hi, rng);
    dl_set_requires_grad(t, 1);
    return t;
}

/* ---- batch norm ---- */

static void test_batch_norm_forward(void) {
    /* F.batch_norm(x, rm, rv, g, b, True, 0.1, 1e-5) twice from rm = 0, rv = 1, then eval. */
    static const float y2[12] = {-1.6592731f, 0.795708f, -2.7126906f, -0.79238492f, 0.49021673f, -1.4370152f, 0.53344411f, 0.047254357f, 0.33783773f, 2.3182139f, -0.5331791f, 2.6118679f};
    static const float rm2[3] = {0.024850003f, 0.057849996f, 0.072650008f};
    static const float rv2[3] = {0.85725367f, 0.86825365f, 0.88153362f};
    static const float dx[12] = {0.39037251f, -0.10344374f, 0.33652696f, -0.30083364f, 0.081787989f, -0.27173206f, -0.34560287f, 0.092615865f, -0.30412951f, 0.25606447f, -0.070960291f, 0.23933475f};
    static const float dg[3] = {-0.9613961f, -0.70354694f, -0.44315878f};
    static const float db[3] = {-3.7400002f, 10.66f, 3.1399999f};
    static const float eval[12] = {-0.42628008f, -0.74018967f, 0.90853477f, -0.76649493f, -0.65970087f, 0.71682227f, -0.81509709f, -0.67579865f, 0.90853477f, -0.57208639f, -0.78848296f, 1.4836726f};
    /* [2, 3, 2, 2] without gamma/beta, one step. */
    static const float y4[24] = {-1.2601731f, -0.10261995f, -0.73475891f, -1.3504786f, -0.53750062f, -1.0396394f, -1.5276333f, -0.4455598f, -0.98790586f, -1.2727484f, -0.55386025f, -0.82061756f, 1.0713525f, 0.61982465f, 0.18471587f, 1.572138f, 0.59407949f, 0.2616778f, 1.4993438f, 1.1952314f, 0.169549f, 0.98790574f, 0.82061744f, 1.6570594f};
    static const float rm4[3] = {0.26350001f, 0.322f, 0.41249999f};
    static const float rv4[3] = {1.0695685f, 1.1284857f, 1.4590657f};
    const float g0[3] = {1.5f, -0.5f, 2.0f}, b0[3] = {0.1f, 0.2f, -0.3f}, ones[3] = {1, 1, 1};
    dl_tensor *g = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(3), g0), *b = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(3), b0);
    dl_tensor *rm = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(3)), *rv = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(3), ones);
    dl_tensor *x1 = vals(2, DL_SHAPE(4, 3), 0.3, -1.2, 0), *x2 = vals(2, DL_SHAPE(4, 3), -0.25, 0.7, 1);
    dl_tensor *w = vals(2, DL_SHAPE(4, 3), 0.5, -2.0, 0), *y;
    dl_set_requires_grad(x2, 1);
    dl_set_requires_grad(g, 1);
    dl_set_requires_grad(b, 1);
    CHECK(dl_batch_norm(x1, g, b, rm, rv, 1, 0.1f, 1e-5f) != NULL, "%s", dl_error());
    y = dl_batch_norm(x2, g, b, rm, rv, 1, 0.1f, 1e-5f);
    CHECK(y != NULL, "%s", dl_error());
    if (!y) return;
    CHECK_ALL_NEAR(dl_f32(y), y2, 12, 1e-5);
    CHECK_ALL_NEAR(dl_f32(rm), rm2, 3, 1e-6);
    CHECK_ALL_NEAR(dl_f32(rv), rv2, 3, 1e-6);
    dl_backward_grad(y, dl_f32(w));
    CHECK_ALL_NEAR(x2->grad, dx, 12, 1e-5);
    CHECK_ALL_NEAR(g->grad, dg, 3, 1e-5);
    CHECK_ALL_NEAR(b->grad, db, 3, 1e-5);
    {
        float before[3];
        memcpy(before, dl_f32(rm), sizeof before);
        y = dl_batch_norm(x1, g, b, rm, rv, 0, 0.1f, 1e-5f);
        CHECK(y != NULL, "%s", dl_error());
        if (y) CHECK_ALL_NEAR(dl_f32(y), eval, 12, 1e-5);
        CHECK(memcmp(before, dl_f32(rm), sizeof before) == 0, "inference leaves the running stats alone");
    }

    dl_fill(rm, 0);
    dl_fill(rv, 1);
    y = dl_batch_norm(vals(4, DL_SHAPE(2, 3, 2, 2), 0.2, 0.5, 0), NULL, NULL, rm, rv, 1, 0.1f, 1e-5f);
    CHECK(y != NULL, "%s", dl_error());
    if (y) CHECK_ALL_NEAR(dl_f32(y), y4, 24, 1e-5);
    CHECK_ALL_NEAR(dl_f32(rm), rm4, 3, 1e-6);
    CHECK_ALL_NEAR(dl_f32(rv), rv4, 3, 1e-6);
    /* Running stats are optional while training. */
    CHECK(dl_batch_norm(x1, NULL, NULL, NULL, NULL, 1, 0.1f, 1e-5f) != NULL, "%s", dl_error());
    dl_tensor_free(g); dl_tensor_free(b); dl_tensor_free(rm); dl_tensor_free(rv); dl_tensor_free(x2);
    dl_arena_reset(dl_arena_current());
}

typedef struct bn_args {
    int training, affine, transpose;
    dl_tensor *rm, *rv;
} bn_args;

/* inputs: x, gamma, beta */
static dl_tensor *f_bn(dl_tensor **in, void *user) {
    const bn_args *a = (const bn_args *)user;
    dl_tensor *x = a->transpose ? dl_transpose(in[0], 0, 1) : in[0];
    return dl_batch_norm(x, a->affine ? in[1] : NULL, a->affine ? in[2] : NULL, a->rm, a->rv, a->training, 0.1f, 1e-5f);
}

static void test_batch_norm_gradcheck(void) {
    dl_rng rng;
    bn_args a;
    dl_tensor *in[3];
    dl_rng_seed(&rng, 11);
    memset(&a, 0, sizeof a);
    a.rm = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(3));
    a.rv = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(3));
    dl_fill_uniform(a.rv, 0.5f, 2.0f, &rng);
    in[1] = param(1, DL_SHAPE(3), &rng, 0.5f, 1.5f);
    in[2] = param(1, DL_SHAPE(3), &rng, -0.5f, 0.5f);

    in[0] = param(2, DL_SHAPE(5, 3), &rng, -2, 2);
    a.training = 1; a.affine = 1;
    CHECK(dl_gradcheck(f_bn, &a, 3, in, 0, 0) == 0, "[N,C] training affine: %s", dl_error());
    a.affine = 0;
    CHECK(dl_gradcheck(f_bn, &a, 1, in, 0, 0) == 0, "[N,C] training no affine: %s", dl_error());
    a.training = 0; a.affine = 1;
    CHECK(dl_gradcheck(f_bn, &a, 3, in, 0, 0) == 0, "[N,C] inference: %s", dl_error());
    dl_tensor_free(in[0]);

    in[0] = param(4, DL_SHAPE(2, 3, 2, 3), &rng, -2, 2);
    a.training = 1; a.affine = 1;
    CHECK(dl_gradcheck(f_bn, &a, 3, in, 0, 0) == 0, "[N,C,H,W] training affine: %s", dl_error());
    a.affine = 0;
    CHECK(dl_gradcheck(f_bn, &a, 1, in, 0, 0) == 0, "[N,C,H,W] training no affine: %s", dl_error());
    a.training = 0; a.affine = 1;
    CHECK(dl_gradcheck(f_bn, &a, 3, in, 0, 0) == 0, "[N,C,H,W] inference: %s", dl_error());
    dl_tensor_free(in[0]);

    /* 12 values per row: the vectorized row sums. */
    in[0] = param(4, DL_SHAPE(2, 3, 3, 4), &rng, -2, 2);
    a.training = 1; a.affine = 1;
    CHECK(dl_gradcheck(f_bn, &a, 3, in, 0, 0) == 0, "[N,C,H,W] with long rows: %s", dl_error());
    dl_tensor_free(in[0]);

    /* Non-contiguous: x is the transpose of a [C, N, H] parameter. */
    in[0] = param(3, DL_SHAPE(3, 4, 2), &rng, -2, 2);
    a.training = 1; a.affine = 1; a.transpose = 1;
    CHECK(dl_gradcheck(f_bn, &a, 3, in, 0, 0) == 0, "transposed view: %s", dl_error());
    dl_tensor_free(in[0]);
    dl_tensor_free(in[1]); dl_tensor_free(in[2]); dl_tensor_free(a.rm); dl_tensor_free(a.rv);
}

/* The parallel path (large inputs) must give the same bits as one thread. */
static void test_batch_norm_threads(void) {
    dl_rng rng;
    dl_tensor *x = dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(8, 16, 16, 16)), *g, *b, *y1, *y4;
    dl_tensor *l1, *l4, *c1, *c4; /* layer norm; batch norm of [N, C] */
    size_t i;
    float *gx1;
    int same = 1, prev = dl_num_threads();
    dl_rng_seed(&rng, 5);
    dl_fill_normal(x, 1, 3, &rng);
    dl_set_requires_grad(x, 1);
    g = param(1, DL_SHAPE(16), &rng, 0.5f, 1.5f);
    b = param(1, DL_SHAPE(16), &rng, -1, 1);
    dl_set_num_threads(1);
    y1 = dl_batch_norm(x, g, b, NULL, NULL, 1, 0.1f, 1e-5f);
    l1 = dl_layer_norm(x, 2, NULL, NULL, 1e-5f);
    c1 = dl_batch_norm(dl_reshape(x, 2, DL_SHAPE(32, 1024)), NULL, NULL, NULL, NULL, 1, 0.1f, 1e-5f);
    dl_backward_grad(y1, dl_f32(x));
    gx1 = (float *)dl_arena_alloc(dl_arena_current(), x->numel * sizeof(float));
    memcpy(gx1, x->grad, x->numel * sizeof(float));
    dl_zero_grad(x);
    dl_set_num_threads(4);
    y4 = dl_batch_norm(x, g, b, NULL, NULL, 1, 0.1f, 1e-5f);
    l4 = dl_layer_norm(x, 2, NULL, NULL, 1e-5f);
    c4 = dl_batch_norm(dl_reshape(x, 2, DL_SHAPE(32, 1024)), NULL, NULL, NULL, NULL, 1, 0.1f, 1e-5f);
    dl_backward_grad(y4, dl_f32(x));
    CHECK(y1 && y4 && l1 && l4 && c1 && c4, "%s", dl_error());
    if (!y1 || !y4 || !l1 || !l4 || !c1 || !c4) return;
    for (i = 0; i < x->numel; i++)
        same &= dl_f32(y1)[i] == dl_f32(y4)[i] && gx1[i] == x->grad[i] && dl_f32(l1)[i] == dl_f32(l4)[i] &&
                dl_f32(c1)[i] == dl_f32(c4)[i];
    CHECK(same, "1 and 4 threads differ");
    /* Each channel of the output has mean beta and std gamma (up to eps). */
    {
        double s = 0, s2 = 0;
        int n, k;
        for (n = 0; n < 8; n++)
            for (k = 0; k < 256; k++) { double v = dl_f32(y4)[(n * 16 + 3) * 256 + k]; s += v; s2 += v * v; }
        s /= 2048; s2 = s2 / 2048 - s * s;
        CHECK_NEAR(s, dl_f32(b)[3], 1e-4);
        CHECK_NEAR(sqrt(s2), fabs(dl_f32(g)[3]), 1e-4);
    }
    dl_set_num_threads(prev);
    dl_tensor_free(x); dl_tensor_free(g); dl_tensor_free(b);
    dl_arena_reset(dl_arena_current());
}

/* ---- layer norm and instance norm ---- */

static void test_layer_instance_forward(void) {
    /* F.layer_norm(x, (3, 4), g, b, 1e-5) and F.layer_norm(x, (4,)) */
    static const float ln_y[24] = {-0.90894985f, 1.5093586f, -0.19989011f, -0.94153172f, 1.5136825f, -0.068051197f, -0.87533081f, 2.2042046f, 0.4861134f, -0.62680918f, 3.7360671f, 1.6893485f, -0.24426983f, -1.7067298f, -1.8562399f, 0.16499262f, -0.96142757f, -1.2383643f, 0.93982643f, 0.19395135f, -0.28273261f, 2.3877969f, 2.1098886f, 5.7969766f};
    static const float ln1_y[24] = {-0.77427733f, 1.5267437f, 0.25082219f, -1.0032889f, 0.89158905f, -0.31531775f, -1.5004785f, 0.9242081f, -0.15331532f, -1.4166341f, 1.3921037f, 0.17784587f, 0.63363928f, -0.40421849f, -1.4202265f, 1.1908053f, -0.40289399f, -1.3632181f, 1.3411423f, 0.42497128f, -1.3854483f, 0.24334578f, -0.25632408f, 1.3984267f};
    /* F.instance_norm(x, weight=g, bias=b, eps=1e-5) */
    static const float in_y[30] = {-0.49359187f, 0.60719633f, -0.0078347549f, -0.61503112f, 0.50926149f, 0.57576489f, -0.79386735f, 1.8994364f, 0.56657273f, -0.74790657f, -0.040028751f, 1.9063693f, -2.336498f, -0.44611174f, 1.4162689f, 0.35801071f, -0.23408386f, -0.81699878f, 0.62881351f, 0.064258195f, -1.316583f, 0.44846168f, -0.19487247f, 1.5921667f, 0.97082716f, 2.231658f, -0.89037216f, 0.11886467f, 1.1092364f, -2.0693865f};
    const float ig[3] = {0.5f, 1.0f, -1.5f}, ib[3] = {0.0f, 0.3f, 0.1f};
    dl_tensor *x = vals(3, DL_SHAPE(2, 3, 4), 0.3, -0.4, 0), *y;
    y = dl_layer_norm(x, 2, vals(2, DL_SHAPE(3, 4), 0.1, 0.5, 0), vals(2, DL_SHAPE(3, 4), -0.05, 0.1, 0), 1e-5f);
    CHECK(y != NULL, "%s", dl_error());
    if (y) CHECK_ALL_NEAR(dl_f32(y), ln_y, 24, 1e-5);
    y = dl_layer_norm(x, 1, NULL, NULL, 1e-5f);
    CHECK(y != NULL, "%s", dl_error());
    if (y) CHECK_ALL_NEAR(dl_f32(y), ln1_y, 24, 1e-5);
    y = dl_instance_norm(vals(3, DL_SHAPE(2, 3, 5), 0.4, -0.3, 0), dl_tmp_from(DL_DTYPE_F32, 1, DL_SHAPE(3), ig),
                         dl_tmp_from(DL_DTYPE_F32, 1, DL_SHAPE(3), ib), 1e-5f);
    CHECK(y != NULL, "%s", dl_error());
    if (y) CHECK_ALL_NEAR(dl_f32(y), in_y, 30, 1e-5);
    dl_arena_reset(dl_arena_current());
}

typedef struct norm_args { int nd, affine, view; } norm_args;

static dl_tensor *f_ln(dl_tensor **in, void *user) {
    const norm_args *a = (const norm_args *)user;
    dl_tensor *x = a->view ? dl_slice(dl_transpose(in[0], 1, 2), 1, 1, 4, 1) : in[0];
    return dl_layer_norm(x, a->nd, a->affine ? in[1] : NULL, a->affine ? in[2] : NULL, 1e-5f);
}

static dl_tensor *f_in(dl_tensor **in, void *user) {
    const norm_args *a = (const norm_args *)user;
    dl_tensor *x = a->view ? dl_transpose(in[0], 2, 3) : in[0];
    return dl_instance_norm(x, a->affine ? in[1] : NULL, a->affine ? in[2] : NULL, 1e-5f);
}

static void test_layer_instance_gradcheck(void) {
    dl_rng rng;
    norm_args a;
    dl_tensor *in[3];
    dl_rng_seed(&rng, 12);
    in[0] = param(3, DL_SHAPE(2, 3, 4), &rng, -2, 2);
    in[1] = param(2, DL_SHAPE(3, 4), &rng, 0.5f, 1.5f);
    in[2] = param(2, DL_SHAPE(3, 4), &rng, -0.5f, 0.5f);
    a.nd = 2; a.affine = 1; a.view = 0;
    CHECK(dl_gradcheck(f_ln, &a, 3, in, 0, 0) == 0, "layer norm 2 axes: %s", dl_error());
    a.affine = 0;
    CHECK(dl_gradcheck(f_ln, &a, 1, in, 0, 0) == 0, "layer norm no affine: %s", dl_error());
    dl_tensor_free(in[1]); dl_tensor_free(in[2]);
    in[1] = param(1, DL_SHAPE(4), &rng, 0.5f, 1.5f);
    in[2] = param(1, DL_SHAPE(4), &rng, -0.5f, 0.5f);
    a.nd = 1; a.affine = 1;
    CHECK(dl_gradcheck(f_ln, &a, 3, in, 0, 0) == 0, "layer norm 1 axis: %s", dl_error());
    dl_tensor_free(in[1]); dl_tensor_free(in[2]);
    /* view: transpose(1, 2) then rows 1..3 of axis 1: [2, 3, 3] -> normalize the last axis (3) */
    in[1] = param(1, DL_SHAPE(3), &rng, 0.5f, 1.5f);
    in[2] = param(1, DL_SHAPE(3), &rng, -0.5f, 0.5f);
    a.view = 1;
    CHECK(dl_gradcheck(f_ln, &a, 3, in, 0, 0) == 0, "layer norm of a view: %s", dl_error());
    dl_tensor_free(in[0]);

    in[0] = param(4, DL_SHAPE(2, 3, 2, 3), &rng, -2, 2);
    a.affine = 1; a.view = 0;
    CHECK(dl_gradcheck(f_in, &a, 3, in, 0, 0) == 0, "instance norm: %s", dl_error());
    a.affine = 0;
    CHECK(dl_gradcheck(f_in, &a, 1, in, 0, 0) == 0, "instance norm no affine: %s", dl_error());
    a.affine = 1; a.view = 1;
    CHECK(dl_gradcheck(f_in, &a, 3, in, 0, 0) == 0, "instance norm of a view: %s", dl_error());
    dl_tensor_free(in[0]); dl_tensor_free(in[1]); dl_tensor_free(in[2]);
}

/* ---- dropout ---- */

static dl_tensor *f_dropout(dl_tensor **in, void *user) {
    dl_rng rng;
    (void)user;
    dl_rng_seed(&rng, 99); /* the same mask on every evaluation */
    return dl_dropout(dl_transpose(in[0], 0, 1), 0.4f, 1, &rng);
}

static void test_dropout(void) {
    dl_rng r1, r2;
    dl_tensor *x = dl_full(2, DL_SHAPE(100, 100), 2.0f), *y, *y2, *leaf;
    size_t i, kept = 0;
    int ok = 1, same = 1;
    dl_rng_seed(&r1, 3);
    dl_rng_seed(&r2, 3);
    y = dl_dropout(x, 0.3f, 1, &r1);
    y2 = dl_dropout(x, 0.3f, 1, &r2);
    CHECK(y && y2, "%s", dl_error());
    if (!y || !y2) return;
    for (i = 0; i < y->numel; i++) {
        float v = dl_f32(y)[i];
        kept += v != 0;
        ok &= v == 0 || v == 2.0f / 0.7f;
        same &= v == dl_f32(y2)[i];
    }
    CHECK(ok, "kept values are scaled by 1 / (1 - p)");
    CHECK(same, "same seed, same mask");
    CHECK(fabs((double)kept / 10000 - 0.7) < 0.015, "kept fraction %g", (double)kept / 10000);
    y2 = dl_dropout(x, 0.3f, 1, &r1);
    same = 1;
    for (i = 0; i < y->numel; i++) same &= dl_f32(y)[i] == dl_f32(y2)[i];
    CHECK(!same, "the next call draws a new mask");
    CHECK(dl_dropout(x, 0.3f, 0, &r1) == x, "inference is the identity");
    CHECK(dl_dropout(x, 0.3f, 0, NULL) == x, "inference needs no rng");
    CHECK(dl_dropout(x, 0.0f, 1, &r1) == x, "p = 0 is the identity");
    y = dl_dropout(x, 1.0f, 1, &r1);
    ok = y != NULL;
    for (i = 0; y && i < y->numel; i++) ok &= dl_f32(y)[i] == 0.0f;
    CHECK(ok, "p = 1 gives zeros");

    /* Backward uses the forward's mask: dx = dy * mask / (1 - p). */
    leaf = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(1000));
    dl_fill(leaf, 1.0f);
    dl_set_requires_grad(leaf, 1);
    y = dl_dropout(leaf, 0.5f, 1, &r1);
    dl_backward_grad(y, dl_f32(dl_full(1, DL_SHAPE(1000), 3.0f)));
    ok = 1;
    for (i = 0; i < 1000; i++) ok &= leaf->grad[i] == 3.0f * dl_f32(y)[i];
    CHECK(ok, "gradient follows the mask");
    dl_tensor_free(leaf);
    leaf = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(4, 5));
    dl_fill_uniform(leaf, -1, 1, &r1);
    dl_set_requires_grad(leaf, 1);
    CHECK(dl_gradcheck(f_dropout, NULL, 1, &leaf, 0, 0) == 0, "dropout of a transposed view: %s", dl_error());
    dl_tensor_free(leaf);
    dl_arena_reset(dl_arena_current());
}

/* ---- embedding ---- */

static dl_tensor *f_embedding(dl_tensor **in, void *user) { return dl_embedding(in[0], (dl_tensor *)user); }
static dl_tensor *f_embedding_t(dl_tensor **in, void *user) {
    return dl_embedding(dl_transpose(in[0], 0, 1), (dl_tensor *)user); /* weight is stored [D, V] */
}

static void test_embedding(void) {
    const int32_t idx[6] = {2, 0, 2, 3, 2, 1};
    dl_tensor *w = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(4, 3)), *ix, *y, *wt;
    dl_rng rng;
    int i, ok = 1;
    for (i = 0; i < 12; i++) dl_f32(w)[i] = (float)i;
    dl_set_requires_grad(w, 1);
    ix = dl_tmp_from(DL_DTYPE_I32, 2, DL_SHAPE(2, 3), idx);
    y = dl_embedding(w, ix);
    CHECK(y && y->ndim == 3 && y->shape[0] == 2 && y->shape[1] == 3 && y->shape[2] == 3, "shape [2, 3, 3]");
    if (!y) return;
    for (i = 0; i < 18; i++) ok &= dl_f32(y)[i] == (float)(idx[i / 3] * 3 + i % 3);
    CHECK(ok, "rows gathered");
    /* d(sum(y * k)) with k = 1..18: row 2 is used at positions 0, 2, 4. */
    {
        float k[18];
        for (i = 0; i < 18; i++) k[i] = (float)(i + 1);
        dl_backward_grad(y, k);
        CHECK(w->grad[6] == 1 + 7 + 13 && w->grad[7] == 2 + 8 + 14 && w->grad[8] == 3 + 9 + 15, "repeated rows accumulate");
        CHECK(w->grad[0] == 4 && w->grad[3] == 16 && w->grad[9] == 10, "single rows");
    }
    /* Non-contiguous indices: the transpose of ix. */
    y = dl_embedding(w, dl_transpose(ix, 0, 1));
    CHECK(y && y->shape[0] == 3 && y->shape[1] == 2 && dl_f32(y)[3] == 9.0f, "transposed indices: y[0][1] = w[3]");
    dl_rng_seed(&rng, 4);
    dl_fill_uniform(w, -1, 1, &rng);
    CHECK(dl_gradcheck(f_embedding, ix, 1, &w, 0, 0) == 0, "%s", dl_error());
    wt = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(3, 4));
    dl_fill_uniform(wt, -1, 1, &rng);
    dl_set_requires_grad(wt, 1);
    CHECK(dl_gradcheck(f_embedding_t, ix, 1, &wt, 0, 0) == 0, "transposed weight: %s", dl_error());
    dl_tensor_free(wt);
    dl_tensor_free(w);
    dl_arena_reset(dl_arena_current());
}

/* ---- Gram matrix ---- */

static dl_tensor *f_gram(dl_tensor **in, void *user) {
    return user ? dl_gram(dl_transpose(in[0], 2, 3)) : dl_gram(in[0]);
}

static void test_gram(void) {
    /* torch.einsum('bchw,bdhw->bcd', x, x) / (h * w) */
    static const float want[8] = {6.1596503f, 5.5093169f, 5.5093169f, 5.0165834f, 17.051582f, 23.408751f, 23.408751f, 38.626251f};
    dl_tensor *y = dl_gram(vals(4, DL_SHAPE(2, 2, 2, 3), 0.5, -1.0, 0)), *x;
    dl_rng rng;
    int flag = 1;
    CHECK(y && y->ndim == 3 && y->shape[0] == 2 && y->shape[1] == 2 && y->shape[2] == 2, "%s", dl_error());
    if (y) CHECK_ALL_NEAR(dl_f32(y), want, 8, 1e-5);
    dl_rng_seed(&rng, 8);
    x = param(4, DL_SHAPE(2, 3, 2, 4), &rng, -1, 1);
    CHECK(dl_gradcheck(f_gram, NULL, 1, &x, 0, 0) == 0, "%s", dl_error());
    CHECK(dl_gradcheck(f_gram, &flag, 1, &x, 0, 0) == 0, "transposed view: %s", dl_error());
    dl_tensor_free(x);
    dl_arena_reset(dl_arena_current());
}

/* ---- bad inputs ---- */

#define CHECK_FAILS(expr, opname)                                                          \
    do {                                                                                   \
        dl_clear_error();                                                                  \
        CHECK((expr) == NULL, "%s should fail", #expr);                                    \
        CHECK(strstr(dl_error(), opname) != NULL, "message names %s: '%s'", opname, dl_error()); \
    } while (0)

static void test_errors(void) {
    dl_rng rng;
    dl_tensor *x = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(4, 3)), *x4 = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(2, 3, 2, 2));
    dl_tensor *c3 = dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(3)), *c4 = dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(4));
    dl_tensor *xi = dl_tmp(DL_DTYPE_I32, 2, DL_SHAPE(4, 3)), *w = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(5, 2));
    dl_rng_seed(&rng, 1);
    /* NULL inputs propagate without overwriting the message. */
    dl_set_error("earlier");
    CHECK(dl_batch_norm(NULL, c3, c3, c3, c3, 1, 0.1f, 1e-5f) == NULL && strcmp(dl_error(), "earlier") == 0, "NULL x");
    CHECK(dl_layer_norm(NULL, 1, NULL, NULL, 1e-5f) == NULL && strcmp(dl_error(), "earlier") == 0, "NULL x");
    CHECK(dl_instance_norm(NULL, NULL, NULL, 1e-5f) == NULL, "NULL x");
    CHECK(dl_dropout(NULL, 0.5f, 1, &rng) == NULL, "NULL x");
    CHECK(dl_embedding(NULL, xi) == NULL && dl_embedding(w, NULL) == NULL, "NULL");
    CHECK(dl_gram(NULL) == NULL && strcmp(dl_error(), "earlier") == 0, "NULL x");

    CHECK_FAILS(dl_batch_norm(x, c4, NULL, NULL, NULL, 1, 0.1f, 1e-5f), "dl_batch_norm");
    CHECK_FAILS(dl_batch_norm(x4, NULL, NULL, c3, c4, 1, 0.1f, 1e-5f), "dl_batch_norm");
    CHECK_FAILS(dl_batch_norm(xi, NULL, NULL, NULL, NULL, 1, 0.1f, 1e-5f), "dl_batch_norm");
    CHECK_FAILS(dl_batch_norm(c3, NULL, NULL, NULL, NULL, 1, 0.1f, 1e-5f), "dl_batch_norm");
    CHECK_FAILS(dl_batch_norm(dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(1, 3)), NULL, NULL, NULL, NULL, 1, 0.1f, 1e-5f), "more than 1 value");
    CHECK_FAILS(dl_batch_norm(x, NULL, NULL, NULL, NULL, 0, 0.1f, 1e-5f), "running_mean");
    CHECK_FAILS(dl_layer_norm(x, 3, NULL, NULL, 1e-5f), "dl_layer_norm");
    CHECK_FAILS(dl_layer_norm(x, 1, c4, NULL, 1e-5f), "dl_layer_norm");
    CHECK_FAILS(dl_layer_norm(x, 2, NULL, c3, 1e-5f), "dl_layer_norm");
    CHECK_FAILS(dl_layer_norm(xi, 1, NULL, NULL, 1e-5f), "dl_layer_norm");
    CHECK_FAILS(dl_instance_norm(x, NULL, NULL, 1e-5f), "dl_instance_norm");
    CHECK_FAILS(dl_instance_norm(x4, c4, NULL, 1e-5f), "dl_instance_norm");
    CHECK_FAILS(dl_instance_norm(dl_tmp(DL_DTYPE_F32, 3, DL_SHAPE(2, 3, 1)), NULL, NULL, 1e-5f), "spatial");
    CHECK_FAILS(dl_dropout(x, 1.5f, 1, &rng), "dl_dropout");
    CHECK_FAILS(dl_dropout(x, -0.1f, 1, &rng), "dl_dropout");
    CHECK_FAILS(dl_dropout(x, 0.5f, 1, NULL), "dl_dropout");
    CHECK_FAILS(dl_dropout(xi, 0.5f, 1, &rng), "dl_dropout");
    CHECK_FAILS(dl_embedding(w, x), "dl_embedding");
    CHECK_FAILS(dl_embedding(c3, xi), "dl_embedding");
    CHECK(dl_embedding(w, xi) != NULL, "%s", dl_error()); /* zeros are valid indices */
    {
        const int32_t bad[2] = {0, 5}, neg[2] = {-1, 0};
        CHECK_FAILS(dl_embedding(w, dl_tmp_from(DL_DTYPE_I32, 1, DL_SHAPE(2), bad)), "out of range");
        CHECK_FAILS(dl_embedding(w, dl_tmp_from(DL_DTYPE_I32, 1, DL_SHAPE(2), neg)), "dl_embedding");
    }
    CHECK_FAILS(dl_gram(x), "dl_gram");
    CHECK_FAILS(dl_gram(dl_tmp(DL_DTYPE_I32, 3, DL_SHAPE(1, 2, 2))), "dl_gram");
    x4->device = DL_DEVICE_CUDA;
    CHECK_FAILS(dl_batch_norm(x4, NULL, NULL, NULL, NULL, 1, 0.1f, 1e-5f), "not on the CPU");
    CHECK_FAILS(dl_gram(x4), "not on the CPU");
    dl_arena_reset(dl_arena_current());
}

int main(void) {
    RUN(test_batch_norm_forward);
    RUN(test_batch_norm_gradcheck);
    RUN(test_batch_norm_threads);
    RUN(test_layer_instance_forward);
    RUN(test_layer_instance_gradcheck);
    RUN(test_dropout);
    RUN(test_embedding);
    RUN(test_gram);
    RUN(test_errors);
    dl_threads_shutdown();
    dl_arena_free_default();
    return test_summary();
}
