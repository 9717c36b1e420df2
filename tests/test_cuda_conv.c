/* tests/test_cuda_conv.c - dl_cuda.cu's convolutions, pools, padding and upsampling against the
   CPU ops, forward and backward.

   Built like tests/test_cuda.c: by tests/run.sh with dl_cuda.cu's CPU emulation compiled into
   this file (DL_CUDA_EMULATE; im2col groups made small with DL__CU_COL_FLOATS so that batches
   run in several groups), or with DL_TEST_CUDA_LINKED against dl_cuda.cu compiled by nvcc on a
   machine with a GPU (without one, every test is skipped with the reason).
   Each parity check runs an op on CPU tensors and on GPU copies of them, takes sum(out * w) for
   a fixed random w on each side, runs backward, and compares the outputs and every input
   gradient: relative 1e-4 for the convolutions (GEMMs), 1e-5 for the rest. */
#define DL_CUDA
#define DL_IMPLEMENTATION
#include "dl_tensor.h"
#define DL__CU_COL_FLOATS ((size_t)2000)
#include "cuda_test.h"   /* dl_cuda.cu (emulated unless DL_TEST_CUDA_LINKED), REQUIRE_GPU, rand_t, parity */

/* f fails on CPU inputs and on GPU copies of them with the same message. */
static void same_error(const char *what, op_fn f, void *user, int n, dl_tensor **in) {
    dl_tensor *din[8] = {0};
    char cpu_msg[512];
    int i;
    dl_arena_reset(dl_arena_current());
    for (i = 0; i < n; i++) din[i] = in[i] ? dl_tensor_clone_to(in[i], GPU) : NULL;
    dl_clear_error();
    CHECK(f(in, user) == NULL, "%s: the CPU op should fail", what);
    snprintf(cpu_msg, sizeof cpu_msg, "%s", dl_error());
    dl_clear_error();
    CHECK(f(din, user) == NULL, "%s: the GPU op should fail", what);
    CHECK(cpu_msg[0] && strcmp(cpu_msg, dl_error()) == 0, "%s: CPU says \"%s\", GPU says \"%s\"", what, cpu_msg, dl_error());
    dl_arena_reset(dl_arena_current());
    for (i = 0; i < n; i++) dl_tensor_free(din[i]);
}

/* ---- Convolutions ---- */

typedef struct conv_case {
    int n, cin, h, w, cout, kh, kw, sh, sw, ph, pw, dh, dw, oph, opw, bias, view;
} conv_case;

static dl_conv_opts conv_opts(const conv_case *c) {
    dl_conv_opts o;
    memset(&o, 0, sizeof o);
    o.stride[0] = c->sh;
    o.stride[1] = c->sw;
    o.padding[0] = c->ph;
    o.padding[1] = c->pw;
    o.dilation[0] = c->dh;
    o.dilation[1] = c->dw;
    o.output_padding[0] = c->oph;
    o.output_padding[1] = c->opw;
    return o;
}

/* view 1: x is stored [N, H, C, W] and permuted; view 2: w is stored with its first two axes
   swapped and transposed back. */
static dl_tensor *f_conv(dl_tensor **x, void *u) {
    const conv_case *c = (const conv_case *)u;
    dl_conv_opts o = conv_opts(c);
    dl_tensor *xx = c->view == 1 ? dl_permute(x[0], DL_SHAPE(0, 2, 1, 3)) : x[0];
    dl_tensor *ww = c->view == 2 ? dl_transpose(x[1], 0, 1) : x[1];
    return dl_conv2d(xx, ww, c->bias ? x[2] : NULL, &o);
}

static dl_tensor *f_convt(dl_tensor **x, void *u) {
    const conv_case *c = (const conv_case *)u;
    dl_conv_opts o = conv_opts(c);
    dl_tensor *xx = c->view == 1 ? dl_permute(x[0], DL_SHAPE(0, 2, 1, 3)) : x[0];
    dl_tensor *ww = c->view == 2 ? dl_transpose(x[1], 0, 1) : x[1];
    return dl_conv_transpose2d(xx, ww, c->bias ? x[2] : NULL, &o);
}

/* in[0] = x (as stored), in[1] = w (as stored: axes a0, a1 swapped for view 2), in[2] = b */
static void conv_inputs(const conv_case *c, int transpose, dl_tensor **in) {
    int w0 = transpose ? c->cin : c->cout, w1 = transpose ? c->cout : c->cin;
    in[0] = c->view == 1 ? rand_t(4, DL_SHAPE(c->n, c->h, c->cin, c->w)) : rand_t(4, DL_SHAPE(c->n, c->cin, c->h, c->w));
    in[1] = c->view == 2 ? rand_t(4, DL_SHAPE(w1, w0, c->kh, c->kw)) : rand_t(4, DL_SHAPE(w0, w1, c->kh, c->kw));
    in[2] = rand_t(1, DL_SHAPE(c->cout));
}

static void test_conv2d(void) {
    static const conv_case cases[] = {
        /* n cin  h  w cout kh kw sh sw ph pw dh dw op  b  view */
        {1, 1, 5, 5, 1, 3, 3, 1, 1, 0, 0, 1, 1, 0, 0, 1, 0},   /* the plain case */
        {3, 3, 7, 6, 8, 3, 3, 2, 2, 1, 1, 1, 1, 0, 0, 1, 0},   /* stride 2, padding 1, odd sizes */
        {2, 8, 9, 9, 3, 5, 5, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0},   /* 5x5 "same", no bias */
        {3, 3, 11, 10, 4, 3, 3, 1, 1, 2, 2, 2, 2, 0, 0, 1, 0}, /* dilation 2 */
        {3, 8, 6, 5, 8, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 0},   /* 1x1: no im2col */
        {2, 3, 6, 7, 5, 1, 1, 2, 2, 0, 0, 1, 1, 0, 0, 1, 0},   /* 1x1 stride 2 */
        {2, 3, 5, 5, 4, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0},   /* 1x1 with padding */
        {1, 3, 8, 8, 4, 5, 5, 2, 2, 2, 2, 1, 1, 0, 0, 1, 0},   /* 5x5 stride 2 (a GAN discriminator) */
        {3, 3, 7, 9, 2, 3, 2, 2, 1, 1, 0, 2, 1, 0, 0, 1, 1},   /* asymmetric window, x a permuted view */
        {2, 4, 5, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, 1, 2},   /* w a transposed view */
        {4, 8, 3, 3, 6, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0},   /* small planes: groups of 3 + 1 images */
        {3, 1, 6, 6, 8, 4, 4, 2, 2, 1, 1, 1, 1, 0, 0, 1, 0},   /* one input channel, 4x4 stride 2 */
        {2, 3, 4, 4, 2, 3, 3, 3, 3, 0, 0, 1, 1, 0, 0, 0, 0},   /* a stride that skips pixels */
        {3, 1, 40, 40, 2, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0}, /* bias gradient over 3*1600 values: two chunks */
        {0, 3, 5, 5, 2, 3, 3, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0},   /* an empty batch */
    };
    size_t k;
    REQUIRE_GPU();
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        dl_tensor *in[3];
        char what[48];
        conv_inputs(&cases[k], 0, in);
        snprintf(what, sizeof what, "conv2d case %zu", k);
        parity(what, f_conv, (void *)&cases[k], cases[k].bias ? 3 : 2, in, 1e-4);
        dl_tensor_free(in[0]);
        dl_tensor_free(in[1]);
        dl_tensor_free(in[2]);
    }
}

static void test_conv_transpose2d(void) {
    static const conv_case cases[] = {
        /* n cin  h  w cout kh kw sh sw ph pw dh dw oph opw b view */
        {1, 1, 4, 4, 1, 3, 3, 1, 1, 0, 0, 1, 1, 0, 0, 1, 0},  /* the plain case */
        {3, 8, 4, 4, 3, 5, 5, 2, 2, 2, 2, 1, 1, 1, 1, 1, 0},  /* Keras "same", kernel 5 stride 2: 4x4 -> 8x8 */
        {2, 3, 5, 6, 4, 4, 4, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0},  /* DCGAN's kernel 4 stride 2 padding 1, no bias */
        {3, 3, 3, 4, 2, 3, 3, 2, 2, 1, 1, 2, 2, 1, 1, 1, 0},  /* dilation 2 with output_padding */
        {2, 8, 5, 5, 8, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 0},  /* 1x1: no col2im */
        {2, 4, 3, 5, 3, 3, 2, 3, 2, 0, 1, 1, 1, 2, 1, 1, 1},  /* asymmetric, x a permuted view */
        {1, 3, 7, 7, 1, 5, 5, 1, 1, 2, 2, 1, 1, 0, 0, 1, 0},  /* 5x5 stride 1 "same" */
        {5, 8, 2, 2, 5, 5, 5, 2, 2, 2, 2, 1, 1, 1, 1, 1, 2},  /* w a view; groups of 4 + 1 images */
        {2, 3, 3, 3, 2, 1, 1, 2, 2, 0, 0, 1, 1, 1, 1, 1, 0},  /* 1x1 stride 2: outputs no tap reaches */
        {3, 2, 20, 20, 2, 4, 4, 2, 2, 1, 1, 1, 1, 0, 0, 1, 0}, /* bias gradient over 3*40*40 values: two chunks */
        {0, 2, 3, 3, 2, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 1, 0},  /* an empty batch */
    };
    size_t k;
    REQUIRE_GPU();
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        dl_tensor *in[3];
        char what[48];
        conv_inputs(&cases[k], 1, in);
        snprintf(what, sizeof what, "conv_transpose2d case %zu", k);
        parity(what, f_convt, (void *)&cases[k], cases[k].bias ? 3 : 2, in, 1e-4);
        dl_tensor_free(in[0]);
        dl_tensor_free(in[1]);
        dl_tensor_free(in[2]);
    }
}

/* x and w each used twice in one graph: their gradients are sums over the uses. */
static dl_tensor *f_twice(dl_tensor **x, void *u) {
    dl_conv_opts same = {{1, 1}, {1, 1}, {0, 0}, {0, 0}}, up = {{2, 2}, {2, 2}, {0, 0}, {1, 1}};
    dl_tensor *y = dl_conv2d(dl_conv2d(x[0], x[1], x[2], &same), x[1], NULL, &same);
    dl_tensor *pooled = dl_max_pool2d(dl_add(y, x[0]), 2, 2, NULL);
    (void)u;
    /* conv_transpose2d reads the pooled map twice (kernel 5 stride 2 "same": back to 6x6) */
    return dl_add(dl_add(dl_conv_transpose2d(pooled, x[3], NULL, &up), dl_conv_transpose2d(pooled, x[3], x[2], &up)),
                  dl_pad2d(dl_avg_pool2d(x[0], 3, 3, &same), 0, 0, 0, 0, DL_PAD_REFLECT));
}

static void test_used_twice(void) {
    dl_tensor *in[4];
    REQUIRE_GPU();
    in[0] = rand_t(4, DL_SHAPE(2, 4, 6, 6));
    in[1] = rand_t(4, DL_SHAPE(4, 4, 3, 3));
    in[2] = rand_t(1, DL_SHAPE(4));
    in[3] = rand_t(4, DL_SHAPE(4, 4, 5, 5));
    parity("inputs used twice", f_twice, NULL, 4, in, 1e-4);
    dl_tensor_free(in[0]);
    dl_tensor_free(in[1]);
    dl_tensor_free(in[2]);
    dl_tensor_free(in[3]);
}

/* ---- Pools ---- */

typedef struct pool_case {
    int n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw, is_max, data, view;
} pool_case;

static dl_tensor *f_pool(dl_tensor **x, void *u) {
    const pool_case *c = (const pool_case *)u;
    dl_conv_opts o;
    dl_tensor *xx = c->view ? dl_permute(x[0], DL_SHAPE(0, 2, 1, 3)) : x[0];
    memset(&o, 0, sizeof o);
    o.stride[0] = c->sh;
    o.stride[1] = c->sw;
    o.padding[0] = c->ph;
    o.padding[1] = c->pw;
    o.dilation[0] = c->dh;
    o.dilation[1] = c->dw;
    return c->is_max ? dl_max_pool2d(xx, c->kh, c->kw, &o) : dl_avg_pool2d(xx, c->kh, c->kw, &o);
}

/* data 1: values in steps of 0.5 (many ties); 2: all negative (padding must be -inf, not 0);
   3: all equal (the gradient goes to each window's first tap). */
static dl_tensor *pool_input(const pool_case *c) {
    dl_tensor *x = c->view ? rand_t(4, DL_SHAPE(c->n, c->h, c->c, c->w)) : rand_t(4, DL_SHAPE(c->n, c->c, c->h, c->w));
    float *p = dl_f32(x);
    size_t i;
    for (i = 0; i < x->numel; i++) {
        if (c->data == 1) p[i] = floorf(p[i] * 2.0f) * 0.5f;
        if (c->data == 2) p[i] = -2.0f + 0.5f * p[i];
        if (c->data == 3) p[i] = 0.25f;
    }
    return x;
}

static void test_pools(void) {
    static const pool_case cases[] = {
        /* n c  h  w kh kw sh sw ph pw dh dw max data view */
        {2, 3, 6, 6, 2, 2, 0, 0, 0, 0, 0, 0, 1, 0, 0},  /* 2x2, stride = kernel by default */
        {2, 3, 7, 7, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 0},  /* ties, padding */
        {1, 2, 7, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 2, 0},  /* negative values: -inf padding */
        {2, 2, 9, 9, 3, 3, 1, 2, 2, 2, 2, 2, 1, 1, 0},  /* dilation 2, the largest padding allowed */
        {3, 1, 5, 6, 2, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1},  /* asymmetric, ties, a view */
        {2, 3, 6, 6, 2, 2, 0, 0, 0, 0, 0, 0, 1, 3, 0},  /* all equal */
        {1, 2, 5, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 3, 0},  /* all equal, overlapping windows */
        {2, 3, 6, 6, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0},  /* avg 2x2 */
        {2, 3, 7, 5, 3, 3, 2, 2, 1, 1, 0, 0, 0, 0, 0},  /* avg: padding counts in the mean */
        {1, 2, 5, 7, 3, 2, 1, 2, 1, 0, 0, 0, 0, 0, 1},  /* avg, asymmetric, a view */
        {3, 8, 4, 4, 4, 4, 1, 1, 0, 0, 0, 0, 0, 0, 0},  /* avg over the whole plane */
    };
    size_t k;
    REQUIRE_GPU();
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        dl_tensor *x = pool_input(&cases[k]);
        char what[48];
        snprintf(what, sizeof what, "%s case %zu", cases[k].is_max ? "max_pool2d" : "avg_pool2d", k);
        parity(what, f_pool, (void *)&cases[k], 1, &x, 1e-5);
        dl_tensor_free(x);
    }
}

/* A NaN in a window wins the max and takes its gradient (the last NaN of the window). */
static void test_max_pool_nan(void) {
    dl_tensor *x, *dx, *y, *dy, *g;
    float out_c[9], out_g[9], gc[36], gg[36];
    dl_conv_opts o = {{2, 2}, {1, 1}, {0, 0}, {0, 0}};
    int i;
    REQUIRE_GPU();
    x = rand_t(4, DL_SHAPE(1, 1, 6, 6));
    dl_f32(x)[7] = NAN;
    dl_f32(x)[8] = NAN;   /* same window as 7 */
    dl_f32(x)[33] = NAN;
    dx = dl_tensor_clone_to(x, GPU);
    dl_set_requires_grad(x, 1);
    dl_set_requires_grad(dx, 1);
    y = dl_max_pool2d(x, 3, 3, &o);
    dy = dl_max_pool2d(dx, 3, 3, &o);
    CHECK(y && dy && y->numel == 9 && dl_tensor_read(y, out_c) == 0 && dl_tensor_read(dy, out_g) == 0, "max_pool2d: %s", dl_error());
    for (i = 0; i < 9; i++) CHECK(isnan(out_c[i]) == isnan(out_g[i]) && (isnan(out_c[i]) || out_c[i] == out_g[i]), "output %d", i);
    g = rand_t(4, DL_SHAPE(1, 1, 3, 3));
    CHECK(dl_backward(dl_sum_all(dl_mul(y, g))) == 0 && dl_backward(dl_sum_all(dl_mul(dy, dl_to_device(g, GPU)))) == 0, "backward: %s",
          dl_error());
    CHECK(dl_tensor_move(dx, DL_DEVICE_CPU) == 0 && x->grad && dx->grad, "grads");
    if (x->grad && dx->grad) {
        memcpy(gc, x->grad, sizeof gc);
        memcpy(gg, dx->grad, sizeof gg);
        CHECK(memcmp(gc, gg, sizeof gc) == 0, "gradients with NaNs differ");
    }
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
    dl_tensor_free(dx);
    dl_tensor_free(g);
}

static dl_tensor *f_gap(dl_tensor **x, void *u) {
    return *(int *)u ? dl_global_avg_pool2d(dl_transpose(x[0], 2, 3)) : dl_global_avg_pool2d(x[0]);
}

static void test_global_avg_pool(void) {
    int v;
    REQUIRE_GPU();
    for (v = 0; v < 2; v++) {
        dl_tensor *x = rand_t(4, DL_SHAPE(3, 5, 7, 4));
        parity(v ? "global_avg_pool2d of a view" : "global_avg_pool2d", f_gap, &v, 1, &x, 1e-5);
        dl_tensor_free(x);
    }
}

/* ---- Upsampling and padding ---- */

typedef struct remap_case { int nd, shape[4], op, a, b, c, d, view; } remap_case;

static dl_tensor *f_remap(dl_tensor **x, void *u) {
    const remap_case *r = (const remap_case *)u;
    dl_tensor *xx = r->view ? dl_transpose(x[0], -1, -2) : x[0];
    if (r->op == 0) return dl_upsample_nearest2d(xx, r->a, r->b);
    return dl_pad2d(xx, r->a, r->b, r->c, r->d, r->op == 1 ? DL_PAD_ZERO : DL_PAD_REFLECT);
}

static void test_upsample_pad(void) {
    static const remap_case cases[] = {
        {4, {2, 3, 4, 5}, 0, 2, 2, 0, 0, 0},  /* upsample 2x2 */
        {4, {1, 2, 3, 3}, 0, 1, 3, 0, 0, 0},  /* 1x3 */
        {4, {2, 2, 3, 4}, 0, 3, 2, 0, 0, 1},  /* 3x2 of a view */
        {4, {2, 3, 5, 4}, 1, 1, 2, 0, 3, 0},  /* zeros, asymmetric */
        {4, {1, 2, 3, 3}, 1, 0, 0, 0, 0, 0},  /* zeros, no padding */
        {2, {5, 6}, 1, 3, 1, 2, 2, 0},        /* zeros, a 2-d tensor */
        {4, {2, 3, 5, 4}, 2, 2, 1, 3, 2, 0},  /* reflect */
        {4, {1, 2, 5, 4}, 2, 3, 3, 4, 4, 0},  /* reflect, the largest pads: elements read 3 times per axis */
        {3, {2, 4, 3}, 2, 1, 2, 2, 0, 1},     /* reflect, a 3-d view */
        {4, {1, 1, 2, 2}, 2, 1, 1, 1, 1, 0},  /* reflect of 2x2 */
    };
    size_t k;
    REQUIRE_GPU();
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        dl_tensor *x = rand_t(cases[k].nd, cases[k].shape);
        char what[48];
        snprintf(what, sizeof what, "%s case %zu", cases[k].op ? "pad2d" : "upsample_nearest2d", k);
        parity(what, f_remap, (void *)&cases[k], 1, &x, 1e-5);
        dl_tensor_free(x);
    }
}

/* ---- Errors ---- */

typedef struct err_case { int op, kh, kw; dl_conv_opts o; int a, b, c, d; } err_case;

static dl_tensor *f_err(dl_tensor **x, void *u) {
    const err_case *e = (const err_case *)u;
    switch (e->op) {
    case 0: return dl_conv2d(x[0], x[1], x[2], &e->o);
    case 1: return dl_conv_transpose2d(x[0], x[1], x[2], &e->o);
    case 2: return dl_max_pool2d(x[0], e->kh, e->kw, &e->o);
    case 3: return dl_avg_pool2d(x[0], e->kh, e->kw, &e->o);
    case 4: return dl_global_avg_pool2d(x[0]);
    case 5: return dl_upsample_nearest2d(x[0], e->a, e->b);
    default: return dl_pad2d(x[0], e->a, e->b, e->c, e->d, (dl_pad_mode)e->kh);
    }
}

#define OPTS(s0, s1, p0, p1, d0, d1, o0, o1) {{s0, s1}, {p0, p1}, {d0, d1}, {o0, o1}}

static void test_errors(void) {
    static const struct {
        const char *what;
        int op, nx, sx[4], nw, sw[4], nb, sb;
        err_case e;
    } cases[] = {
        {"conv2d x 3-d", 0, 3, {3, 5, 5}, 4, {2, 3, 3, 3}, 0, 0, {0, 0, 0, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 0, 0, 0, 0}},
        {"conv2d channels", 0, 4, {1, 3, 5, 5}, 4, {2, 4, 3, 3}, 0, 0, {0, 0, 0, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 0, 0, 0, 0}},
        {"conv2d bias", 0, 4, {1, 3, 5, 5}, 4, {2, 3, 3, 3}, 1, 3, {0, 0, 0, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 0, 0, 0, 0}},
        {"conv2d kernel too large", 0, 4, {1, 3, 2, 5}, 4, {2, 3, 3, 3}, 0, 0, {0, 0, 0, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 0, 0, 0, 0}},
        {"conv2d negative stride", 0, 4, {1, 3, 5, 5}, 4, {2, 3, 3, 3}, 0, 0, {0, 0, 0, OPTS(-1, 1, 0, 0, 0, 0, 0, 0), 0, 0, 0, 0}},
        {"conv2d output_padding", 0, 4, {1, 3, 5, 5}, 4, {2, 3, 3, 3}, 0, 0, {0, 0, 0, OPTS(0, 0, 0, 0, 0, 0, 1, 0), 0, 0, 0, 0}},
        {"conv2d w 3-d", 0, 4, {1, 3, 5, 5}, 3, {2, 3, 3}, 0, 0, {0, 0, 0, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 0, 0, 0, 0}},
        {"conv_transpose2d channels", 1, 4, {1, 3, 5, 5}, 4, {2, 3, 3, 3}, 0, 0, {1, 0, 0, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 0, 0, 0, 0}},
        {"conv_transpose2d bias", 1, 4, {1, 3, 5, 5}, 4, {3, 2, 3, 3}, 1, 3, {1, 0, 0, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 0, 0, 0, 0}},
        {"conv_transpose2d output_padding", 1, 4, {1, 3, 5, 5}, 4, {3, 2, 3, 3}, 0, 0, {1, 0, 0, OPTS(2, 2, 0, 0, 0, 0, 2, 0), 0, 0, 0, 0}},
        {"conv_transpose2d empty output", 1, 4, {1, 3, 1, 1}, 4, {3, 2, 1, 1}, 0, 0, {1, 0, 0, OPTS(0, 0, 1, 1, 0, 0, 0, 0), 0, 0, 0, 0}},
        {"max_pool2d padding", 2, 4, {1, 3, 5, 5}, 0, {0}, 0, 0, {2, 3, 3, OPTS(0, 0, 2, 0, 0, 0, 0, 0), 0, 0, 0, 0}},
        {"max_pool2d kernel too large", 2, 4, {1, 3, 2, 5}, 0, {0}, 0, 0, {2, 3, 3, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 0, 0, 0, 0}},
        {"max_pool2d kernel 0", 2, 4, {1, 3, 5, 5}, 0, {0}, 0, 0, {2, 0, 3, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 0, 0, 0, 0}},
        {"avg_pool2d dilation", 3, 4, {1, 3, 5, 5}, 0, {0}, 0, 0, {3, 2, 2, OPTS(0, 0, 0, 0, 2, 1, 0, 0), 0, 0, 0, 0}},
        {"avg_pool2d x 2-d", 3, 2, {5, 5}, 0, {0}, 0, 0, {3, 2, 2, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 0, 0, 0, 0}},
        {"global_avg_pool2d x 3-d", 4, 3, {3, 5, 5}, 0, {0}, 0, 0, {4, 0, 0, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 0, 0, 0, 0}},
        {"global_avg_pool2d empty", 4, 4, {1, 3, 0, 5}, 0, {0}, 0, 0, {4, 0, 0, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 0, 0, 0, 0}},
        {"upsample scale 0", 5, 4, {1, 3, 5, 5}, 0, {0}, 0, 0, {5, 0, 0, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 0, 2, 0, 0}},
        {"pad2d negative", 6, 4, {1, 3, 5, 5}, 0, {0}, 0, 0, {6, 0, 0, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 1, -1, 0, 0}},
        {"pad2d reflect too large", 6, 4, {1, 3, 5, 5}, 0, {0}, 0, 0, {6, 1, 0, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 1, 1, 5, 0}},
        {"pad2d mode", 6, 4, {1, 3, 5, 5}, 0, {0}, 0, 0, {6, 7, 0, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 1, 1, 1, 1}},
        {"pad2d 1-d", 6, 1, {5}, 0, {0}, 0, 0, {6, 0, 0, OPTS(0, 0, 0, 0, 0, 0, 0, 0), 1, 1, 1, 1}},
    };
    size_t k;
    REQUIRE_GPU();
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        dl_tensor *in[3] = {NULL, NULL, NULL};
        in[0] = rand_t(cases[k].nx, cases[k].sx);
        if (cases[k].nw) in[1] = rand_t(cases[k].nw, cases[k].sw);
        if (cases[k].nb) in[2] = rand_t(1, &cases[k].sb);
        same_error(cases[k].what, f_err, (void *)&cases[k].e, 3, in);
        dl_tensor_free(in[0]);
        dl_tensor_free(in[1]);
        dl_tensor_free(in[2]);
    }
    {   /* an i32 image */
        dl_tensor *in[3] = {NULL, NULL, NULL};
        err_case e;
        memset(&e, 0, sizeof e);
        e.op = 2;
        e.kh = e.kw = 2;
        in[0] = dl_tensor_new(DL_DTYPE_I32, 4, DL_SHAPE(1, 1, 4, 4));
        same_error("max_pool2d of i32", f_err, &e, 1, in);
        dl_tensor_free(in[0]);
    }
}

static void test_devices_mixed(void) {
    dl_tensor *x, *w, *b, *dx, *dw, *db;
    REQUIRE_GPU();
    x = rand_t(4, DL_SHAPE(1, 3, 5, 5));
    w = rand_t(4, DL_SHAPE(3, 3, 3, 3));
    b = rand_t(1, DL_SHAPE(3));
    dx = dl_tensor_clone_to(x, GPU);
    dw = dl_tensor_clone_to(w, GPU);
    db = dl_tensor_clone_to(b, GPU);
    dl_clear_error();
    CHECK(dl_conv2d(dx, w, db, NULL) == NULL && strstr(dl_error(), "dl_conv2d: w is on the cpu") && strstr(dl_error(), "never copy"),
          "conv2d, w on the CPU: %s", dl_error());
    dl_clear_error();
    CHECK(dl_conv2d(x, dw, NULL, NULL) == NULL && strstr(dl_error(), "dl_conv2d: x is on the cpu"), "conv2d, x on the CPU: %s", dl_error());
    dl_clear_error();
    CHECK(dl_conv2d(dx, dw, b, NULL) == NULL && strstr(dl_error(), "dl_conv2d: b is on the cpu"), "conv2d, b on the CPU: %s", dl_error());
    dl_clear_error();
    CHECK(dl_conv_transpose2d(dx, w, NULL, NULL) == NULL && strstr(dl_error(), "dl_conv_transpose2d: w is on the cpu"),
          "conv_transpose2d, w on the CPU: %s", dl_error());
    dl_clear_error();
    CHECK(dl_conv_transpose2d(x, dw, db, NULL) == NULL && strstr(dl_error(), "never copy"), "conv_transpose2d, x on the CPU: %s", dl_error());
    dl_clear_error();
    CHECK(dl_conv2d(NULL, dw, db, NULL) == NULL, "NULL propagates");
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
    dl_tensor_free(w);
    dl_tensor_free(b);
    dl_tensor_free(dx);
    dl_tensor_free(dw);
    dl_tensor_free(db);
}

/* ---- A small conv net step on both devices ---- */

static void test_conv_net_step(void) {
    dl_tensor *p[4], *q[4], *x, *dx, *y, *dy;
    dl_tensor *loss[2];
    dl_conv_opts same = {{1, 1}, {1, 1}, {0, 0}, {0, 0}};
    int32_t labels[4] = {0, 2, 4, 1};
    int i, dev;
    float lv[2];
    REQUIRE_GPU();
    p[0] = rand_t(4, DL_SHAPE(6, 3, 3, 3));
    p[1] = rand_t(1, DL_SHAPE(6));
    p[2] = rand_t(2, DL_SHAPE(96, 5));
    p[3] = rand_t(1, DL_SHAPE(5));
    x = rand_t(4, DL_SHAPE(4, 3, 8, 8));
    y = dl_tensor_from(DL_DTYPE_I32, 1, DL_SHAPE(4), labels);
    dx = dl_tensor_clone_to(x, GPU);
    dy = dl_tensor_clone_to(y, GPU);
    for (i = 0; i < 4; i++) {
        q[i] = dl_tensor_clone_to(p[i], GPU);
        dl_set_requires_grad(p[i], 1);
        dl_set_requires_grad(q[i], 1);
    }
    dl_arena_reset(dl_arena_current());
    for (dev = 0; dev < 2; dev++) {
        dl_tensor **w = dev ? q : p;
        dl_tensor *h = dl_max_pool2d(dl_relu(dl_conv2d(dev ? dx : x, w[0], w[1], &same)), 2, 2, NULL);
        loss[dev] = dl_cross_entropy(dl_linear(dl_reshape(h, 2, DL_SHAPE(4, 96)), w[2], w[3]), dev ? dy : y);
        CHECK(loss[dev] && dl_backward(loss[dev]) == 0, "device %d: %s", dev, dl_error());
        if (!loss[dev]) return;
        lv[dev] = dl_item(loss[dev]);
    }
    CHECK_NEAR(lv[1], lv[0], 1e-5);
    for (i = 0; i < 4; i++) {
        CHECK(dl_tensor_move(q[i], DL_DEVICE_CPU) == 0 && q[i]->grad && p[i]->grad, "gradient of parameter %d", i);
        if (q[i]->grad && p[i]->grad) CHECK_ALL_NEAR(q[i]->grad, p[i]->grad, p[i]->numel, 1e-4);
        dl_tensor_free(p[i]);
        dl_tensor_free(q[i]);
    }
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
    dl_tensor_free(dx);
    dl_tensor_free(y);
    dl_tensor_free(dy);
}

/* The same graph run twice on the GPU gives the same bits (no atomics). */
static void test_deterministic(void) {
    dl_tensor *x, *w, *wt, *g[2][3];
    dl_conv_opts o = {{2, 2}, {2, 2}, {0, 0}, {1, 1}};
    int run, i;
    REQUIRE_GPU();
    x = rand_t(4, DL_SHAPE(3, 4, 8, 8));
    w = rand_t(4, DL_SHAPE(6, 4, 5, 5));
    wt = rand_t(4, DL_SHAPE(6, 2, 5, 5));
    CHECK(dl_tensor_move(x, GPU) == 0 && dl_tensor_move(w, GPU) == 0 && dl_tensor_move(wt, GPU) == 0, "move: %s", dl_error());
    dl_set_requires_grad(x, 1);
    dl_set_requires_grad(w, 1);
    dl_set_requires_grad(wt, 1);
    for (run = 0; run < 2; run++) {
        dl_tensor *ts[3] = {x, w, wt};
        dl_conv_opts s2 = {{2, 2}, {2, 2}, {0, 0}, {0, 0}};
        dl_arena_reset(dl_arena_current());
        dl_zero_grad(x);
        dl_zero_grad(w);
        dl_zero_grad(wt);
        CHECK(dl_backward(dl_mean_all(dl_tanh(dl_conv_transpose2d(dl_conv2d(x, w, NULL, &s2), wt, NULL, &o)))) == 0, "backward: %s",
              dl_error());
        for (i = 0; i < 3; i++) {
            dl_tensor gt = *ts[i]; /* the gradient as a tensor header, to read it back */
            g[run][i] = dl_tensor_new(DL_DTYPE_F32, ts[i]->ndim, ts[i]->shape);
            gt.data = ts[i]->grad;
            gt.grad = NULL;
            gt.node = NULL;
            gt.flags = 0;
            CHECK(ts[i]->grad && dl_tensor_read(&gt, dl_f32(g[run][i])) == 0, "read gradient %d: %s", i, dl_error());
        }
    }
    for (i = 0; i < 3; i++) {
        CHECK(memcmp(dl_f32(g[0][i]), dl_f32(g[1][i]), g[0][i]->numel * sizeof(float)) == 0, "gradient %d differs between runs", i);
        dl_tensor_free(g[0][i]);
        dl_tensor_free(g[1][i]);
    }
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
    dl_tensor_free(w);
    dl_tensor_free(wt);
}

int main(void) {
    dl_rng_seed(&rng, 11);
    RUN(test_conv2d);
    RUN(test_conv_transpose2d);
    RUN(test_used_twice);
    RUN(test_pools);
    RUN(test_max_pool_nan);
    RUN(test_global_avg_pool);
    RUN(test_upsample_pad);
    RUN(test_errors);
    RUN(test_devices_mixed);
    RUN(test_conv_net_step);
    RUN(test_deterministic);
    dl_arena_free_default();
    return test_summary();
}
