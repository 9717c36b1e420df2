/* tests/test_cuda_norm.c - dl_cuda.cu's normalization, dropout, embedding, indexing and concat
   ops against the CPU ops, forward and backward.

   Built like tests/test_cuda.c: by tests/run.sh with dl_cuda.cu's CPU emulation compiled in
   (DL_CUDA_EMULATE), or with DL_TEST_CUDA_LINKED against dl_cuda.cu compiled by nvcc on a
   machine with a GPU (without one, every test is skipped with the reason). Each parity check
   runs an op on CPU tensors and on GPU copies, takes sum(out * w) for a fixed random w on each
   side, runs backward, and compares the outputs and every input gradient (relative 1e-4 for
   the GEMM-based dl_gram and the normalizations, whose sums run in another order, 1e-5 for the
   rest). Dropout's GPU mask is not the CPU's (dl_cuda.cu's section comment), so it is checked
   by its properties instead. */
#define DL_CUDA
#define DL_IMPLEMENTATION
#include "dl_tensor.h"
#include "cuda_test.h"   /* dl_cuda.cu (emulated unless DL_TEST_CUDA_LINKED), REQUIRE_GPU, rand_t, parity */

static dl_tensor *ints_t(int nd, const int *shape, const int32_t *v) { return dl_tensor_from(DL_DTYPE_I32, nd, shape, v); }

/* The op fails on the GPU with a message containing want. */
#define CHECK_FAILS(expr, want)                                                                     \
    do {                                                                                            \
        dl_tensor *r_;                                                                              \
        dl_clear_error();                                                                           \
        r_ = (expr);                                                                                \
        CHECK(r_ == NULL && strstr(dl_error(), want) != NULL, "%s: got \"%s\"", #expr, dl_error()); \
    } while (0)

/* ---- Batch norm ---- */

typedef struct bn_case {
    int training, affine, view;
    dl_tensor *rm[2], *rv[2]; /* running statistics on the CPU [0] and on the GPU [1], or NULL */
    int strided_running;      /* running statistics are every other element of a [2C] tensor */
} bn_case;

static dl_tensor *running_view(dl_tensor *t, int strided) { return t && strided ? dl_slice(t, 0, 0, t->shape[0], 2) : t; }

static dl_tensor *f_bn(dl_tensor **x, void *u) {
    bn_case *c = (bn_case *)u;
    int d = x[0]->device == GPU;
    dl_tensor *in = x[0];
    if (c->view) in = dl_permute(dl_contiguous(dl_permute(in, DL_SHAPE(1, 0, 3, 2))), DL_SHAPE(1, 0, 3, 2)); /* non-contiguous */
    return dl_batch_norm(in, c->affine ? x[1] : NULL, c->affine ? x[2] : NULL, running_view(c->rm[d], c->strided_running),
                         running_view(c->rv[d], c->strided_running), c->training, 0.1f, 1e-5f);
}

static void check_running(const char *what, bn_case *c) {
    int k;
    for (k = 0; k < 2; k++) {
        dl_tensor *cpu = k ? c->rv[0] : c->rm[0], *gpu = k ? c->rv[1] : c->rm[1];
        float *h;
        if (!cpu) continue;
        h = (float *)malloc(cpu->numel * 4);
        CHECK(dl_tensor_read(gpu, h) == 0, "%s: read running statistics: %s", what, dl_error());
        CHECK_ALL_NEAR(h, dl_f32(cpu), cpu->numel, 1e-5);
        free(h);
    }
}

/* Running statistics [C] (strided: [2C], used every other element), equal on both devices. */
static void new_running(bn_case *c, int C, int strided) {
    int i, n = strided ? 2 * C : C;
    c->rm[0] = rand_t(1, DL_SHAPE(n));
    c->rv[0] = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(n));
    for (i = 0; i < n; i++) dl_f32(c->rv[0])[i] = 0.5f + (float)i / (float)n; /* positive variances */
    c->rm[1] = dl_tensor_clone(c->rm[0]);
    c->rv[1] = dl_tensor_clone(c->rv[0]);
    c->strided_running = strided;
    CHECK(dl_tensor_move(c->rm[1], GPU) == 0 && dl_tensor_move(c->rv[1], GPU) == 0, "move running statistics: %s", dl_error());
}

static void free_running(bn_case *c) {
    int k;
    for (k = 0; k < 2; k++) {
        dl_tensor_free(c->rm[k]);
        dl_tensor_free(c->rv[k]);
        c->rm[k] = c->rv[k] = NULL;
    }
}

static void test_batch_norm(void) {
    static const struct { int nd, shape[4]; } shapes[] = {
        {2, {6, 4}}, {4, {3, 4, 5, 6}}, {3, {4, 3, 7}}, {4, {2, 3, 70, 70}}, /* 9800 values a channel: 3 chunks */
    };
    size_t s;
    int v;
    REQUIRE_GPU();
    for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (v = 0; v < 6; v++) {
            bn_case c;
            dl_tensor *in[3];
            int C = shapes[s].shape[1];
            char what[64];
            memset(&c, 0, sizeof c);
            c.training = v != 3 && v != 4;
            c.affine = v != 1 && v != 4;
            c.view = v == 5 && shapes[s].nd == 4;
            if (v != 2) new_running(&c, C, v == 0 || v == 3);
            in[0] = rand_t(shapes[s].nd, shapes[s].shape);
            in[1] = rand_t(1, DL_SHAPE(C));
            in[2] = rand_t(1, DL_SHAPE(C));
            snprintf(what, sizeof what, "batch_norm shape %zu variant %d", s, v);
            parity(what, f_bn, &c, 3, in, 1e-4);
            check_running(what, &c);
            free_running(&c);
            dl_tensor_free(in[0]);
            dl_tensor_free(in[1]);
            dl_tensor_free(in[2]);
        }
}

/* Five training steps on each device: the running statistics stay equal. */
static void test_batch_norm_running(void) {
    bn_case c;
    int step;
    REQUIRE_GPU();
    memset(&c, 0, sizeof c);
    new_running(&c, 5, 0);
    c.training = 1;
    c.affine = 1;
    for (step = 0; step < 5; step++) {
        dl_tensor *in[3];
        in[0] = rand_t(4, DL_SHAPE(4, 5, 6, 3));
        dl_fill_uniform(in[0], (float)step - 1.0f, 2.0f * (float)step + 1.0f, &rng); /* moving statistics */
        in[1] = rand_t(1, DL_SHAPE(5));
        in[2] = rand_t(1, DL_SHAPE(5));
        parity("batch_norm running statistics", f_bn, &c, 3, in, 1e-4);
        dl_tensor_free(in[0]);
        dl_tensor_free(in[1]);
        dl_tensor_free(in[2]);
    }
    check_running("after 5 steps", &c);
    {   /* and then inference with them */
        dl_tensor *in[3];
        c.training = 0;
        in[0] = rand_t(4, DL_SHAPE(2, 5, 3, 3));
        in[1] = rand_t(1, DL_SHAPE(5));
        in[2] = rand_t(1, DL_SHAPE(5));
        parity("batch_norm eval after training", f_bn, &c, 3, in, 1e-4);
        dl_tensor_free(in[0]);
        dl_tensor_free(in[1]);
        dl_tensor_free(in[2]);
    }
    free_running(&c);
}

/* ---- Layer and instance norm ---- */

typedef struct ln_case { int nd, shape[4], norm_nd, affine, view; } ln_case;

static dl_tensor *f_ln(dl_tensor **x, void *u) {
    const ln_case *c = (const ln_case *)u;
    dl_tensor *in = c->view ? dl_transpose(dl_contiguous(dl_transpose(x[0], 0, -1)), 0, -1) : x[0]; /* a transposed layout */
    return dl_layer_norm(in, c->norm_nd, c->affine ? x[1] : NULL, c->affine ? x[2] : NULL, 1e-5f);
}

static void test_layer_norm(void) {
    static const ln_case cases[] = {
        {2, {4, 10}, 1, 1, 0},  {2, {4, 10}, 1, 0, 0},   {3, {2, 3, 4}, 2, 1, 0},  {3, {2, 3, 4}, 1, 0, 1},
        {2, {3, 5000}, 1, 1, 0}, /* 5000 values a row: 2 chunks */
        {2, {5000, 3}, 1, 1, 0}, /* 5000 rows: d(gamma) in 2 chunks of rows */
        {3, {3, 4, 5}, 3, 1, 1}, {1, {7}, 1, 1, 0},
    };
    size_t k;
    REQUIRE_GPU();
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const ln_case *c = &cases[k];
        dl_tensor *in[3];
        char what[64];
        int nd = c->norm_nd;
        in[0] = rand_t(c->nd, c->shape);
        in[1] = rand_t(nd, c->shape + (c->nd - nd));
        in[2] = rand_t(nd, c->shape + (c->nd - nd));
        snprintf(what, sizeof what, "layer_norm case %zu", k);
        parity(what, f_ln, (void *)c, 3, in, 1e-4);
        dl_tensor_free(in[0]);
        dl_tensor_free(in[1]);
        dl_tensor_free(in[2]);
    }
}

typedef struct in_case { int nd, shape[4], affine, view; } in_case;

static dl_tensor *f_in(dl_tensor **x, void *u) {
    const in_case *c = (const in_case *)u;
    dl_tensor *in = c->view ? dl_transpose(dl_contiguous(dl_transpose(x[0], 1, 2)), 1, 2) : x[0];
    return dl_instance_norm(in, c->affine ? x[1] : NULL, c->affine ? x[2] : NULL, 1e-5f);
}

static void test_instance_norm(void) {
    static const in_case cases[] = {
        {4, {2, 3, 4, 5}, 1, 0}, {4, {2, 3, 4, 5}, 0, 0}, {3, {3, 2, 6}, 1, 1}, {4, {2, 2, 80, 60}, 1, 0}, {4, {2, 3, 4, 5}, 1, 1},
    };
    size_t k;
    REQUIRE_GPU();
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const in_case *c = &cases[k];
        dl_tensor *in[3];
        char what[64];
        in[0] = rand_t(c->nd, c->shape);
        in[1] = rand_t(1, DL_SHAPE(c->shape[1]));
        in[2] = rand_t(1, DL_SHAPE(c->shape[1]));
        snprintf(what, sizeof what, "instance_norm case %zu", k);
        parity(what, f_in, (void *)c, 3, in, 1e-4);
        dl_tensor_free(in[0]);
        dl_tensor_free(in[1]);
        dl_tensor_free(in[2]);
    }
}

/* ---- Gram matrix ---- */

static dl_tensor *f_gram(dl_tensor **x, void *u) {
    int v = *(int *)u;
    if (v == 1) return dl_gram(dl_transpose(x[0], 2, 3));
    return dl_gram(x[0]);
}

static void test_gram(void) {
    static const struct { int nd, shape[4], view; } cases[] = {
        {4, {2, 3, 4, 5}, 0}, {3, {1, 4, 7}, 0}, {4, {2, 3, 4, 5}, 1}, {4, {3, 6, 1, 1}, 0},
    };
    size_t k;
    REQUIRE_GPU();
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        dl_tensor *x = rand_t(cases[k].nd, cases[k].shape);
        int v = cases[k].view;
        char what[64];
        snprintf(what, sizeof what, "gram case %zu", k);
        parity(what, f_gram, &v, 1, &x, 1e-4);
        dl_tensor_free(x);
    }
}

/* ---- An input used twice: its gradient is the sum of both uses ---- */

static dl_tensor *f_twice(dl_tensor **x, void *u) {
    int v = *(int *)u;
    dl_tensor *xs[3];
    switch (v) {
    case 0: return dl_add(dl_batch_norm(x[0], x[1], x[2], NULL, NULL, 1, 0.1f, 1e-5f), dl_mul(x[0], dl_instance_norm(x[0], x[1], NULL, 1e-5f)));
    case 1: return dl_mul(dl_layer_norm(x[0], 2, NULL, NULL, 1e-5f), dl_layer_norm(x[0], 1, NULL, NULL, 1e-3f));
    case 2: xs[0] = x[0]; xs[1] = dl_mul_scalar(x[0], 2.0f); xs[2] = x[0]; return dl_concat(3, xs, 1);
    default: return dl_add(dl_gram(x[0]), dl_gram(dl_mul(x[0], x[0])));
    }
}

static void test_accumulation(void) {
    int v;
    REQUIRE_GPU();
    for (v = 0; v < 4; v++) {
        dl_tensor *in[3];
        char what[64];
        in[0] = rand_t(4, DL_SHAPE(2, 3, 4, 5));
        in[1] = rand_t(1, DL_SHAPE(3));
        in[2] = rand_t(1, DL_SHAPE(3));
        snprintf(what, sizeof what, "input used twice, variant %d", v);
        parity(what, f_twice, &v, 3, in, 1e-4);
        dl_tensor_free(in[0]);
        dl_tensor_free(in[1]);
        dl_tensor_free(in[2]);
    }
}

/* ---- Dropout: properties of the GPU mask ---- */

static void test_dropout(void) {
    enum { N = 100000 };
    const float p = 0.3f;
    dl_tensor *x, *dx, *y1, *y2, *y3;
    float *hx, *h1, *h2, *h3, *hg;
    dl_rng r1, r2;
    size_t i, kept = 0, diff2 = 0, diff3 = 0, bad_scale = 0, bad_grad = 0;
    double sigma = sqrt((double)N * p * (1.0 - p));
    REQUIRE_GPU();
    x = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(N / 100, 100));
    dl_fill_uniform(x, 0.5f, 2.0f, &rng); /* no zeros: a zero output means dropped */
    dx = dl_tensor_clone_to(x, GPU);
    dl_set_requires_grad(dx, 1);
    hx = (float *)malloc(N * 4);
    h1 = (float *)malloc(N * 4);
    h2 = (float *)malloc(N * 4);
    h3 = (float *)malloc(N * 4);
    hg = (float *)malloc(N * 4);
    memcpy(hx, dl_f32(x), N * 4);
    dl_arena_reset(dl_arena_current());
    dl_rng_seed(&r1, 123);
    dl_rng_seed(&r2, 123);
    y1 = dl_dropout(dx, p, 1, &r1);
    y2 = dl_dropout(dx, p, 1, &r2); /* the same seed: the same mask */
    y3 = dl_dropout(dx, p, 1, &r1); /* the next draw: another mask */
    CHECK(y1 && y2 && y3 && y1->device == GPU && y1 != dx, "dropout on the GPU: %s", dl_error());
    if (!y1 || !y2 || !y3) goto done;
    CHECK(dl_tensor_read(y1, h1) == 0 && dl_tensor_read(y2, h2) == 0 && dl_tensor_read(y3, h3) == 0, "read");
    for (i = 0; i < N; i++) {
        if (h1[i] != 0.0f) {
            kept++;
            if (h1[i] != hx[i] * (1.0f / (1.0f - p))) bad_scale++;
        }
        if (memcmp(&h1[i], &h2[i], 4) != 0) diff2++;
        if ((h1[i] != 0.0f) != (h3[i] != 0.0f)) diff3++;
    }
    CHECK(diff2 == 0, "same seed, different masks: %zu elements differ", diff2);
    CHECK(diff3 > N / 10, "consecutive calls gave nearly the same mask (%zu differ)", diff3);
    CHECK(fabs((double)kept - N * (1.0 - p)) < 5.0 * sigma, "kept %zu of %d, expected %.0f +- %.0f", kept, N, N * (1.0 - p), 5.0 * sigma);
    CHECK(bad_scale == 0, "%zu kept elements are not x / (1 - p)", bad_scale);
    /* backward uses the forward's mask: d(sum(y1 * x))/dx = x * mask / (1 - p) */
    CHECK(dl_backward(dl_sum_all(dl_mul(y1, dl_detach(dx)))) == 0, "backward: %s", dl_error());
    CHECK(dl_tensor_move(dx, DL_DEVICE_CPU) == 0 && dx->grad, "gradient");
    if (dx->grad) {
        memcpy(hg, dx->grad, N * 4);
        for (i = 0; i < N; i++) {
            float want = h1[i] != 0.0f ? hx[i] * (1.0f / (1.0f - p)) : 0.0f;
            if (fabsf(hg[i] - want) > 1e-6f * (1.0f + fabsf(want))) bad_grad++;
        }
        CHECK(bad_grad == 0, "%zu gradient elements do not follow the forward's mask", bad_grad);
    }
    /* in a row-major view the mask follows the logical order: the same seed, a transposed x */
    CHECK(dl_tensor_move(dx, GPU) == 0, "move");
    dl_arena_reset(dl_arena_current());
    dl_rng_seed(&r1, 123);
    y1 = dl_dropout(dl_transpose(dl_reshape(dx, 2, DL_SHAPE(100, N / 100)), 0, 1), p, 1, &r1);
    CHECK(y1 && dl_tensor_read(y1, h3) == 0, "dropout of a view: %s", dl_error());
    if (y1) { /* x has no zeros: y1's zeros are its mask, which must be the first call's */
        size_t zeros_match = 0;
        for (i = 0; i < N; i++)
            if ((h3[i] == 0.0f) == (h1[i] == 0.0f)) zeros_match++;
        CHECK(zeros_match == N, "the mask of element i depends on i only (%zu of %d match)", zeros_match, N);
    }
    /* p == 0 and !training return x itself; p == 1 gives zeros and a zero gradient */
    dl_arena_reset(dl_arena_current());
    CHECK(dl_dropout(dx, 0.0f, 1, &r1) == dx && dl_dropout(dx, 0.5f, 0, NULL) == dx, "p = 0 / eval return x");
    dl_zero_grad(dx);
    y1 = dl_dropout(dx, 1.0f, 1, &r1);
    CHECK(y1 && dl_tensor_read(y1, h1) == 0, "p = 1: %s", dl_error());
    if (y1) {
        for (i = 0, kept = 0; i < N; i++) kept += h1[i] != 0.0f;
        CHECK(kept == 0, "p = 1 kept %zu", kept);
        CHECK(dl_backward(dl_sum_all(y1)) == 0 && dl_tensor_move(dx, DL_DEVICE_CPU) == 0 && dx->grad, "p = 1 backward: %s", dl_error());
        for (i = 0, kept = 0; dx->grad && i < N; i++) kept += dx->grad[i] != 0.0f;
        CHECK(kept == 0, "p = 1: %zu nonzero gradients", kept);
        dl_tensor_move(dx, GPU);
    }
    CHECK_FAILS(dl_dropout(dx, 1.5f, 1, &r1), "p must be in [0, 1]");
    CHECK_FAILS(dl_dropout(dx, 0.5f, 1, NULL), "rng is NULL");
done:
    dl_arena_reset(dl_arena_current());
    free(hx);
    free(h1);
    free(h2);
    free(h3);
    free(hg);
    dl_tensor_free(x);
    dl_tensor_free(dx);
}

/* ---- Embedding, index_select, gather ---- */

static dl_tensor *f_emb(dl_tensor **x, void *u) {
    int v = *(int *)u;
    if (v == 1) return dl_embedding(x[0], dl_transpose(x[1], 0, 1)); /* indices as a view */
    if (v == 2) return dl_embedding(dl_transpose(x[0], 0, 1), x[1]); /* the weight as a view */
    return dl_embedding(x[0], x[1]);
}

static void test_embedding(void) {
    int32_t idx[8] = {3, 0, 3, 6, 1, 3, 0, 5}, bad[3] = {1, 7, 2}, neg[2] = {0, -1}, one = 4;
    int v;
    REQUIRE_GPU();
    for (v = 0; v < 4; v++) {
        dl_tensor *in[2];
        char what[64];
        in[0] = v == 2 ? rand_t(2, DL_SHAPE(3, 7)) : rand_t(2, DL_SHAPE(7, 3));
        in[1] = v == 3 ? ints_t(0, NULL, &one) : ints_t(2, DL_SHAPE(2, 4), idx); /* repeated indices accumulate */
        snprintf(what, sizeof what, "embedding variant %d", v);
        parity(what, f_emb, &v, 2, in, 1e-5);
        dl_tensor_free(in[0]);
        dl_tensor_free(in[1]);
    }
    {   /* many repeats of a few rows: the gradient is their sum, in order */
        int32_t many[3000];
        dl_tensor *in[2];
        int i;
        for (i = 0; i < 3000; i++) many[i] = (i * 7) % 5;
        in[0] = rand_t(2, DL_SHAPE(5, 16));
        in[1] = ints_t(1, DL_SHAPE(3000), many);
        v = 0;
        parity("embedding, 3000 indices over 5 rows", f_emb, &v, 2, in, 1e-5);
        dl_tensor_free(in[0]);
        dl_tensor_free(in[1]);
    }
    {   /* errors */
        dl_tensor *w = rand_t(2, DL_SHAPE(7, 3)), *dw = dl_tensor_clone_to(w, GPU);
        dl_tensor *b = ints_t(1, DL_SHAPE(3), bad), *db = dl_tensor_clone_to(b, GPU);
        dl_tensor *n = ints_t(1, DL_SHAPE(2), neg), *dn = dl_tensor_clone_to(n, GPU);
        dl_tensor *fi = dl_tensor_clone_to(w, GPU);
        dl_arena_reset(dl_arena_current());
        CHECK_FAILS(dl_embedding(dw, db), "index 7 out of range for 7 rows");
        CHECK_FAILS(dl_embedding(dw, dn), "index -1 out of range");
        CHECK_FAILS(dl_embedding(dw, n), "never copy");
        CHECK_FAILS(dl_embedding(w, dn), "never copy");
        CHECK_FAILS(dl_embedding(dw, fi), "indices must be i32");
        CHECK_FAILS(dl_embedding(db, db), "weight must be a 2-d f32");
        dl_arena_reset(dl_arena_current());
        dl_tensor_free(w);
        dl_tensor_free(dw);
        dl_tensor_free(b);
        dl_tensor_free(db);
        dl_tensor_free(n);
        dl_tensor_free(dn);
        dl_tensor_free(fi);
    }
}

typedef struct isel_case { int axis, view; } isel_case;

static dl_tensor *f_isel(dl_tensor **x, void *u) {
    const isel_case *c = (const isel_case *)u;
    dl_tensor *in = c->view ? dl_permute(x[0], DL_SHAPE(2, 0, 1)) : x[0];
    dl_tensor *idx = c->view == 2 ? dl_slice(x[1], 0, 0, x[1]->shape[0], 2) : x[1];
    return dl_index_select(in, c->axis, idx);
}

static void test_index_select(void) {
    static const isel_case cases[] = {{0, 0}, {1, 0}, {-1, 0}, {1, 1}, {2, 2}};
    int32_t idx[6] = {2, 0, 2, 2, 1, 0};
    size_t k;
    int dt;
    REQUIRE_GPU();
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (dt = 0; dt < 3; dt++) { /* f32, i32, u8 */
            dl_tensor *in[2], *f = rand_t(3, DL_SHAPE(3, 4, 5));
            char what[64];
            if (dt) {
                in[0] = dl_tensor_new(dt == 1 ? DL_DTYPE_I32 : DL_DTYPE_U8, 3, DL_SHAPE(3, 4, 5));
                dl_copy(in[0], dl_mul_scalar(dl_add_scalar(f, 1.0f), 100.0f));
                dl_tensor_free(f);
            } else {
                in[0] = f;
            }
            in[1] = ints_t(1, DL_SHAPE(6), idx);
            snprintf(what, sizeof what, "index_select case %zu dtype %d", k, dt);
            parity(what, f_isel, (void *)&cases[k], 2, in, 1e-5);
            dl_tensor_free(in[0]);
            dl_tensor_free(in[1]);
        }
    {
        int32_t bad[2] = {0, 3};
        dl_tensor *x = rand_t(2, DL_SHAPE(3, 4)), *dx = dl_tensor_clone_to(x, GPU);
        dl_tensor *b = ints_t(1, DL_SHAPE(2), bad), *db = dl_tensor_clone_to(b, GPU);
        dl_tensor *b2 = ints_t(2, DL_SHAPE(1, 2), bad), *db2 = dl_tensor_clone_to(b2, GPU);
        dl_arena_reset(dl_arena_current());
        CHECK_FAILS(dl_index_select(dx, 0, db), "index 3 out of range [0, 3)");
        CHECK(dl_index_select(dx, 1, db) != NULL, "in range on axis 1: %s", dl_error());
        CHECK_FAILS(dl_index_select(dx, 2, db), "axis 2 out of range");
        CHECK_FAILS(dl_index_select(dx, 0, db2), "indices must be 1-d");
        CHECK_FAILS(dl_index_select(dx, 1, b), "never copy");
        CHECK_FAILS(dl_index_select(x, 1, db), "never copy");
        CHECK_FAILS(dl_index_select(dx, 1, dl_reshape(dx, 1, DL_SHAPE(-1))), "indices must be i32");
        dl_arena_reset(dl_arena_current());
        dl_tensor_free(x);
        dl_tensor_free(dx);
        dl_tensor_free(b);
        dl_tensor_free(db);
        dl_tensor_free(b2);
        dl_tensor_free(db2);
    }
}

typedef struct gather_case { int axis, ishape[3], view; } gather_case;

static dl_tensor *f_gather(dl_tensor **x, void *u) {
    const gather_case *c = (const gather_case *)u;
    dl_tensor *in = c->view ? dl_permute(x[0], DL_SHAPE(1, 2, 0)) : x[0];
    return dl_gather(in, c->axis, x[1]);
}

static void test_gather(void) {
    static const gather_case cases[] = {
        {1, {3, 6, 5}, 0}, {0, {2, 4, 5}, 0}, {2, {3, 2, 7}, 0}, {-1, {2, 3, 4}, 0}, {1, {4, 5, 3}, 1}, {0, {1, 1, 1}, 0},
    };
    size_t k;
    REQUIRE_GPU();
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const gather_case *c = &cases[k];
        dl_tensor *in[2];
        int32_t iv[256];
        int i, n = c->ishape[0] * c->ishape[1] * c->ishape[2], axis = c->axis < 0 ? c->axis + 3 : c->axis;
        int xs[3] = {3, 4, 5}, lim;
        char what[64];
        if (c->view) xs[0] = 4, xs[1] = 5, xs[2] = 3; /* the permuted view's shape */
        lim = xs[axis];
        for (i = 0; i < n; i++) iv[i] = (i * 5 + i / 3) % lim; /* repeats along the axis */
        in[0] = rand_t(3, DL_SHAPE(3, 4, 5));
        in[1] = ints_t(3, c->ishape, iv);
        snprintf(what, sizeof what, "gather case %zu", k);
        parity(what, f_gather, (void *)c, 2, in, 1e-5);
        dl_tensor_free(in[0]);
        dl_tensor_free(in[1]);
    }
    {
        int32_t bad[4] = {0, 1, 4, 2};
        dl_tensor *x = rand_t(2, DL_SHAPE(3, 4)), *dx = dl_tensor_clone_to(x, GPU);
        dl_tensor *b = ints_t(2, DL_SHAPE(2, 2), bad), *db = dl_tensor_clone_to(b, GPU);
        dl_tensor *b1 = ints_t(1, DL_SHAPE(4), bad), *db1 = dl_tensor_clone_to(b1, GPU);
        dl_tensor *big = ints_t(2, DL_SHAPE(4, 1), bad), *dbig = dl_tensor_clone_to(big, GPU);
        dl_arena_reset(dl_arena_current());
        CHECK_FAILS(dl_gather(dx, 1, db), "index 4 out of range [0, 4)");
        CHECK_FAILS(dl_gather(dx, 0, db1), "indices are 1-d, x is 2-d");
        CHECK_FAILS(dl_gather(dx, 1, dbig), "larger than x");
        CHECK_FAILS(dl_gather(dx, 1, b), "never copy");
        CHECK_FAILS(dl_gather(db, 1, db), "need an f32 tensor");
        dl_arena_reset(dl_arena_current());
        dl_tensor_free(x);
        dl_tensor_free(dx);
        dl_tensor_free(b);
        dl_tensor_free(db);
        dl_tensor_free(b1);
        dl_tensor_free(db1);
        dl_tensor_free(big);
        dl_tensor_free(dbig);
    }
}

/* ---- concat and split ---- */

typedef struct cat_case { int axis, view; } cat_case;

static dl_tensor *f_cat(dl_tensor **x, void *u) {
    const cat_case *c = (const cat_case *)u;
    dl_tensor *xs[3];
    xs[0] = x[0];
    xs[1] = c->view ? dl_transpose(x[1], 0, 2) : x[1];
    xs[2] = x[2];
    return dl_concat(3, xs, c->axis);
}

static void test_concat(void) {
    static const cat_case cases[] = {{0, 0}, {1, 0}, {-1, 0}, {1, 1}};
    size_t k;
    int dt;
    REQUIRE_GPU();
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (dt = 0; dt < 3; dt++) {
            const cat_case *c = &cases[k];
            int a = c->axis < 0 ? 2 : c->axis, s0[3] = {2, 3, 4}, s1[3] = {2, 3, 4}, s2[3] = {2, 3, 4}, i;
            dl_tensor *in[3];
            char what[64];
            s0[a] = 1;
            s1[a] = 5;
            s2[a] = 2;
            if (c->view) { int t = s1[0]; s1[0] = s1[2]; s1[2] = t; } /* stored transposed */
            in[0] = rand_t(3, s0);
            in[1] = rand_t(3, s1);
            in[2] = rand_t(3, s2);
            for (i = 0; dt && i < 3; i++) {
                dl_tensor *t = dl_tensor_new(dt == 1 ? DL_DTYPE_I32 : DL_DTYPE_U8, 3, in[i]->shape);
                dl_copy(t, dl_mul_scalar(dl_add_scalar(in[i], 1.0f), 100.0f));
                dl_tensor_free(in[i]);
                in[i] = t;
            }
            snprintf(what, sizeof what, "concat case %zu dtype %d", k, dt);
            parity(what, f_cat, (void *)c, 3, in, 1e-5);
            for (i = 0; i < 3; i++) dl_tensor_free(in[i]);
        }
    {
        dl_tensor *a = rand_t(2, DL_SHAPE(2, 3)), *b = rand_t(2, DL_SHAPE(2, 4)), *xs[2];
        dl_tensor *da = dl_tensor_clone_to(a, GPU), *db = dl_tensor_clone_to(b, GPU);
        dl_tensor *di = dl_tensor_new(DL_DTYPE_I32, 2, DL_SHAPE(2, 4));
        dl_tensor_move(di, GPU);
        dl_arena_reset(dl_arena_current());
        xs[0] = da; xs[1] = db;
        CHECK(dl_concat(2, xs, 1) != NULL, "concat on axis 1: %s", dl_error());
        CHECK_FAILS(dl_concat(2, xs, 0), "tensor 1 has shape [2, 4], tensor 0 has [2, 3]");
        CHECK_FAILS(dl_concat(2, xs, 2), "axis 2 out of range");
        xs[1] = b;
        CHECK_FAILS(dl_concat(2, xs, 1), "never copy");
        xs[0] = a; xs[1] = db;
        CHECK_FAILS(dl_concat(2, xs, 1), "tensor 0 is on the cpu");
        xs[0] = da; xs[1] = di;
        CHECK_FAILS(dl_concat(2, xs, 1), "tensor 1 is i32, tensor 0 is f32");
        dl_arena_reset(dl_arena_current());
        dl_tensor_free(a);
        dl_tensor_free(b);
        dl_tensor_free(da);
        dl_tensor_free(db);
        dl_tensor_free(di);
    }
}

/* dl_split is views: its parts used on the GPU, reordered and differently weighted */
static dl_tensor *f_split(dl_tensor **x, void *u) {
    dl_tensor *parts[3], *xs[3];
    int sizes[3] = {1, 3, 2};
    (void)u;
    if (dl_split(x[0], 1, 3, sizes, parts) != 0) return NULL;
    xs[0] = dl_mul_scalar(parts[2], 3.0f);
    xs[1] = parts[0];
    xs[2] = dl_exp(parts[1]);
    if (!xs[0] || parts[0]->device != x[0]->device) return NULL;
    return dl_concat(3, xs, 1);
}

static void test_split(void) {
    dl_tensor *x;
    REQUIRE_GPU();
    x = rand_t(3, DL_SHAPE(2, 6, 3));
    parity("split into views, concatenated", f_split, NULL, 1, &x, 1e-5);
    {
        dl_tensor *dx = dl_tensor_clone_to(x, GPU), *parts[2];
        dl_arena_reset(dl_arena_current());
        CHECK(dl_split(dx, 1, 2, NULL, parts) == 0 && parts[0]->device == GPU && parts[1]->shape[1] == 3, "split on the GPU: %s", dl_error());
        CHECK(dl_split(dx, 1, 4, NULL, parts) != 0 && strstr(dl_error(), "equal parts"), "uneven split: %s", dl_error());
        dl_arena_reset(dl_arena_current());
        dl_tensor_free(dx);
    }
    dl_tensor_free(x);
}

/* ---- one_hot, cast, broadcast_to ---- */

typedef struct oh_case { int classes, view; } oh_case;

static dl_tensor *f_one_hot(dl_tensor **x, void *u) {
    const oh_case *c = (const oh_case *)u;
    return dl_one_hot(c->view ? dl_transpose(x[0], 0, 1) : x[0], c->classes);
}

static void test_one_hot(void) {
    static const oh_case cases[] = {{5, 0}, {-1, 0}, {7, 1}, {-1, 1}};
    int32_t lab[6] = {3, 0, 4, 1, 1, 2};
    size_t k;
    int u8;
    REQUIRE_GPU();
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++)
        for (u8 = 0; u8 < 2; u8++) {
            dl_tensor *in = ints_t(2, DL_SHAPE(2, 3), lab);
            char what[64];
            if (u8) {
                dl_tensor *t = dl_tensor_new(DL_DTYPE_U8, 2, DL_SHAPE(2, 3));
                dl_copy(t, in);
                dl_tensor_free(in);
                in = t;
            }
            snprintf(what, sizeof what, "one_hot case %zu %s", k, u8 ? "u8" : "i32");
            parity(what, f_one_hot, (void *)&cases[k], 1, &in, 0);
            dl_tensor_free(in);
        }
    {
        int32_t bad[4] = {1, 5, -2, 0}, many[5000];
        int i;
        dl_tensor *b = ints_t(1, DL_SHAPE(4), bad), *db = dl_tensor_clone_to(b, GPU);
        dl_tensor *f = rand_t(1, DL_SHAPE(3)), *df = dl_tensor_clone_to(f, GPU), *dm, *y;
        for (i = 0; i < 5000; i++) many[i] = i % 9;
        many[4999] = 12; /* the maximum in the second chunk */
        dm = ints_t(1, DL_SHAPE(5000), many);
        dl_tensor_move(dm, GPU);
        dl_arena_reset(dl_arena_current());
        CHECK_FAILS(dl_one_hot(db, 5), "label 5 out of range [0, 5)");
        CHECK_FAILS(dl_one_hot(db, 6), "label -2 out of range [0, 6)");
        CHECK_FAILS(dl_one_hot(db, -1), "label -2 is negative");
        CHECK_FAILS(dl_one_hot(db, 0), "num_classes must be >= 1 or -1");
        CHECK_FAILS(dl_one_hot(df, 3), "labels must be i32 or u8");
        y = dl_one_hot(dm, -1);
        CHECK(y && y->ndim == 2 && y->shape[1] == 13 && dl_get(y, DL_SHAPE(4999, 12)) == 1.0f && dl_get(y, DL_SHAPE(10, 1)) == 1.0f,
              "inferred 13 classes from 5000 labels: %s", dl_error());
        dl_arena_reset(dl_arena_current());
        dl_tensor_free(b);
        dl_tensor_free(db);
        dl_tensor_free(f);
        dl_tensor_free(df);
        dl_tensor_free(dm);
    }
}

typedef struct cast_case { int to, view; } cast_case;

static dl_tensor *f_cast(dl_tensor **x, void *u) {
    const cast_case *c = (const cast_case *)u;
    return dl_cast(c->view ? dl_transpose(x[0], 0, 1) : x[0], (dl_dtype)c->to);
}

static void test_cast(void) {
    static const float special[12] = {-1.0f, 300.0f, 2.9f, -2.9f, 1e10f, -1e10f, 255.5f, 0.0f, -0.0f, 256.0f, 1e-3f, 65.0f};
    int from, to, view;
    REQUIRE_GPU();
    for (from = 0; from < 3; from++)
        for (to = 0; to < 3; to++)
            for (view = 0; view < 2; view++) {
                dl_tensor *f = dl_tensor_from(DL_DTYPE_F32, 2, DL_SHAPE(3, 4), special), *in;
                cast_case c;
                char what[64];
                in = f;
                if (from) {
                    in = dl_tensor_new((dl_dtype)from, 2, DL_SHAPE(3, 4));
                    dl_copy(in, f); /* saturated: big and negative values */
                    dl_tensor_free(f);
                }
                c.to = to;
                c.view = view;
                snprintf(what, sizeof what, "cast %s -> %s%s", dl_dtype_name((dl_dtype)from), dl_dtype_name((dl_dtype)to), view ? ", a view" : "");
                parity(what, f_cast, &c, 1, &in, 0);
                dl_tensor_free(in);
            }
    {   /* NaN -> 0 and the u8 wrap, read back */
        float v[3] = {NAN, -1.0f, 300.0f};
        uint8_t back[3];
        int32_t bi[3];
        dl_tensor *x = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(3), v), *dx = dl_tensor_clone_to(x, GPU);
        dl_arena_reset(dl_arena_current());
        CHECK(dl_tensor_read(dl_cast(dx, DL_DTYPE_U8), back) == 0 && back[0] == 0 && back[1] == 255 && back[2] == 44, "u8 wraps: %d %d %d",
              back[0], back[1], back[2]);
        CHECK(dl_tensor_read(dl_cast(dx, DL_DTYPE_I32), bi) == 0 && bi[0] == 0 && bi[1] == -1 && bi[2] == 300, "i32");
        CHECK_FAILS(dl_cast(dx, (dl_dtype)9), "unknown dtype");
        dl_arena_reset(dl_arena_current());
        dl_tensor_free(x);
        dl_tensor_free(dx);
    }
}

typedef struct bc_case { int nx, sx[3], nd, shape[4], view; } bc_case;

static dl_tensor *f_bcast(dl_tensor **x, void *u) {
    const bc_case *c = (const bc_case *)u;
    return dl_broadcast_to(c->view ? dl_transpose(x[0], 0, 1) : x[0], c->nd, c->shape);
}

static void test_broadcast_to(void) {
    static const bc_case cases[] = {
        {2, {3, 1}, 3, {2, 3, 4}, 0}, {1, {4}, 2, {3, 4}, 0}, {0, {0}, 2, {2, 2}, 0}, {2, {1, 3}, 3, {5, 3, 1}, 1},
        {3, {2, 1, 4}, 4, {3, 2, 5, 4}, 0}, {2, {3, 4}, 2, {3, 4}, 0},
    };
    size_t k;
    REQUIRE_GPU();
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        dl_tensor *x = rand_t(cases[k].nx, cases[k].sx);
        char what[64];
        snprintf(what, sizeof what, "broadcast_to case %zu", k);
        parity(what, f_bcast, (void *)&cases[k], 1, &x, 1e-5);
        dl_tensor_free(x);
    }
    {
        dl_tensor *x = rand_t(2, DL_SHAPE(3, 2)), *dx = dl_tensor_clone_to(x, GPU);
        dl_arena_reset(dl_arena_current());
        CHECK_FAILS(dl_broadcast_to(dx, 2, DL_SHAPE(3, 4)), "does not broadcast to size 4 at axis 1");
        CHECK_FAILS(dl_broadcast_to(dx, 1, DL_SHAPE(6)), "cannot broadcast a 2-d tensor to 1 axes");
        dl_arena_reset(dl_arena_current());
        dl_tensor_free(x);
        dl_tensor_free(dx);
    }
}

/* ---- Errors of the normalizations and the Gram matrix on the GPU ---- */

static void test_norm_errors(void) {
    dl_tensor *x, *dx, *g, *dg, *g5, *dg5, *rm, *x1, *dx1, *x2, *dx2;
    REQUIRE_GPU();
    x = rand_t(4, DL_SHAPE(2, 3, 4, 5));
    g = rand_t(1, DL_SHAPE(3));
    g5 = rand_t(1, DL_SHAPE(5));
    x1 = rand_t(2, DL_SHAPE(1, 3));
    x2 = rand_t(3, DL_SHAPE(2, 3, 1));
    dx = dl_tensor_clone_to(x, GPU);
    dg = dl_tensor_clone_to(g, GPU);
    dg5 = dl_tensor_clone_to(g5, GPU);
    dx1 = dl_tensor_clone_to(x1, GPU);
    dx2 = dl_tensor_clone_to(x2, GPU);
    rm = dl_tensor_clone_to(g, GPU);
    dl_arena_reset(dl_arena_current());
    CHECK_FAILS(dl_batch_norm(dx, g, NULL, NULL, NULL, 1, 0.1f, 1e-5f), "gamma is on the cpu");
    CHECK_FAILS(dl_batch_norm(x, dg, NULL, NULL, NULL, 1, 0.1f, 1e-5f), "never copy");
    CHECK_FAILS(dl_batch_norm(dx, dg5, NULL, NULL, NULL, 1, 0.1f, 1e-5f), "gamma has shape [5], expected [3]");
    CHECK_FAILS(dl_batch_norm(dx, NULL, NULL, rm, NULL, 0, 0.1f, 1e-5f), "required when not training");
    CHECK_FAILS(dl_batch_norm(dx, NULL, NULL, NULL, dg5, 1, 0.1f, 1e-5f), "running_var has shape [5]");
    CHECK_FAILS(dl_batch_norm(dx1, NULL, NULL, NULL, NULL, 1, 0.1f, 1e-5f), "more than 1 value per channel");
    CHECK(dl_batch_norm(dx1, NULL, NULL, rm, rm, 0, 0.1f, 1e-5f) != NULL, "one value per channel is fine in eval: %s", dl_error());
    CHECK_FAILS(dl_batch_norm(dg, NULL, NULL, NULL, NULL, 1, 0.1f, 1e-5f), "needs at least 2 dimensions");
    CHECK_FAILS(dl_batch_norm(dx, NULL, NULL, NULL, NULL, 1, 0.1f, -1.0f), "eps must be >= 0");
    CHECK_FAILS(dl_layer_norm(dx, 2, dg, NULL, 1e-5f), "gamma has shape [3], expected [4, 5]");
    CHECK_FAILS(dl_layer_norm(dx, 5, NULL, NULL, 1e-5f), "normalized_ndim 5 out of range 1..4");
    CHECK_FAILS(dl_layer_norm(dx, 1, g5, NULL, 1e-5f), "never copy");
    CHECK_FAILS(dl_instance_norm(dx2, NULL, NULL, 1e-5f), "more than 1 spatial element");
    CHECK_FAILS(dl_instance_norm(dx, dg5, NULL, 1e-5f), "gamma has shape [5], expected [3]");
    CHECK_FAILS(dl_instance_norm(dx1, NULL, NULL, 1e-5f), "needs at least 3 dimensions");
    CHECK_FAILS(dl_gram(dx1), "needs at least 3 dimensions");
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
    dl_tensor_free(dx);
    dl_tensor_free(g);
    dl_tensor_free(dg);
    dl_tensor_free(g5);
    dl_tensor_free(dg5);
    dl_tensor_free(x1);
    dl_tensor_free(dx1);
    dl_tensor_free(x2);
    dl_tensor_free(dx2);
    dl_tensor_free(rm);
}

int main(void) {
    dl_rng_seed(&rng, 11);
    RUN(test_batch_norm);
    RUN(test_batch_norm_running);
    RUN(test_layer_norm);
    RUN(test_instance_norm);
    RUN(test_gram);
    RUN(test_accumulation);
    RUN(test_dropout);
    RUN(test_embedding);
    RUN(test_index_select);
    RUN(test_gather);
    RUN(test_concat);
    RUN(test_split);
    RUN(test_one_hot);
    RUN(test_cast);
    RUN(test_broadcast_to);
    RUN(test_norm_errors);
    dl_arena_free_default();
    return test_summary();
}
