/* tests/test_cuda.c - dl_cuda.cu: every GPU op against the CPU op, forward and backward.

   Built two ways:
     - by tests/run.sh, like every test, with dl_cuda.cu's CPU emulation compiled into this file
       (DL_CUDA_EMULATE: device memory is host memory, a kernel launch is a loop, cuBLAS is
       dl_sgemm), so that indexing, broadcasting, gradient accumulation and dispatch are checked
       on every CI run and under ASan + UBSan;
     - by tools/gpu_check.sh with DL_TEST_CUDA_LINKED against dl_cuda.cu compiled by nvcc, on a
       machine with a GPU; without one, every test is skipped with the reason.
   Each parity check runs an op on CPU tensors and on GPU copies of them, takes
   sum(out * w) for a fixed random w on each side, runs backward, and compares the outputs and
   every input gradient: relative 1e-4 for GEMM-based ops, 1e-5 for the rest. */
#define DL_CUDA
#define DL_IMPLEMENTATION
#include "dl_tensor.h"
#include "cuda_test.h"   /* dl_cuda.cu (emulated unless DL_TEST_CUDA_LINKED), REQUIRE_GPU, rand_t, parity */

/* ---- op wrappers: user points to ints (axes, flags, op codes) ---- */

static dl_tensor *f_add(dl_tensor **x, void *u) { (void)u; return dl_add(x[0], x[1]); }
static dl_tensor *f_sub(dl_tensor **x, void *u) { (void)u; return dl_sub(x[0], x[1]); }
static dl_tensor *f_mul(dl_tensor **x, void *u) { (void)u; return dl_mul(x[0], x[1]); }
static dl_tensor *f_div(dl_tensor **x, void *u) { (void)u; return dl_div(x[0], x[1]); }
static dl_tensor *f_min(dl_tensor **x, void *u) { (void)u; return dl_minimum(x[0], x[1]); }
static dl_tensor *f_max2(dl_tensor **x, void *u) { (void)u; return dl_maximum(x[0], x[1]); }

static void test_memory(void) {
    float v[6] = {1, -2, 3.5f, 4, 5, -6}, back[6] = {0};
    int32_t iv[3] = {7, -1, 2147483647}, ib[3];
    dl_tensor *t, *d, *i32, *di, *view;
    REQUIRE_GPU();
    t = dl_tensor_from(DL_DTYPE_F32, 2, DL_SHAPE(2, 3), v);
    d = dl_tensor_clone_to(t, GPU);
    CHECK(d && d->device == GPU && dl_f32(d) == NULL, "a GPU tensor has no host pointer");
    CHECK(dl_tensor_read(d, back) == 0 && memcmp(back, v, sizeof v) == 0, "round trip");
    CHECK(dl_item(dl_slice(dl_slice(d, 0, 1, 2, 1), 1, 2, 3, 1)) == -6.0f, "dl_item on the GPU");
    CHECK(dl_get(d, DL_SHAPE(1, 2)) == -6.0f, "dl_get on the GPU");
    dl_set(d, DL_SHAPE(0, 1), 9.0f);
    CHECK(dl_get(d, DL_SHAPE(0, 1)) == 9.0f, "dl_set on the GPU");
    /* a transposed view read back in row-major order */
    view = dl_transpose(d, 0, 1);
    CHECK(view && view->device == GPU && dl_tensor_read(view, back) == 0, "read a view: %s", dl_error());
    CHECK(back[0] == 1 && back[1] == 4 && back[2] == 9 && back[3] == 5 && back[4] == 3.5f && back[5] == -6, "transposed read");
    /* dl_copy: GPU view -> CPU tensor, and CPU -> strided GPU view */
    {
        dl_tensor *h = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(3, 2));
        CHECK(dl_copy(h, view) == 0 && dl_f32(h)[1] == 4, "copy GPU view to CPU");
        dl_fill(h, 2.5f);
        CHECK(dl_copy(view, h) == 0 && dl_get(d, DL_SHAPE(1, 2)) == 2.5f, "copy CPU into a GPU view");
        dl_fill(d, -1.0f);
        CHECK(dl_get(d, DL_SHAPE(1, 1)) == -1.0f, "fill on the GPU");
        dl_tensor_free(h);
    }
    /* integers: exact, and converted on the GPU */
    i32 = dl_tensor_from(DL_DTYPE_I32, 1, DL_SHAPE(3), iv);
    di = dl_tensor_clone_to(i32, GPU);
    CHECK(di && dl_tensor_read(di, ib) == 0 && memcmp(ib, iv, sizeof iv) == 0, "i32 round trip");
    {
        dl_tensor *f = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(3));
        CHECK(dl_tensor_move(f, GPU) == 0 && dl_copy(f, di) == 0 && dl_get(f, DL_SHAPE(0)) == 7.0f, "i32 -> f32 on the GPU");
        dl_tensor_free(f);
    }
    /* moving keeps the tensor's address and its gradient */
    {
        dl_tensor *p = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(3), v), *q = p;
        dl_set_requires_grad(p, 1);
        dl_backward(dl_sum_all(dl_mul_scalar(p, 2.0f)));
        CHECK(dl_tensor_move(p, GPU) == 0 && p == q && p->device == GPU, "move to the GPU");
        dl_arena_reset(dl_arena_current());
        dl_backward(dl_sum_all(dl_mul_scalar(p, 3.0f)));
        CHECK(dl_tensor_move(p, DL_DEVICE_CPU) == 0 && p->grad && p->grad[0] == 5.0f && dl_f32(p)[2] == 3.5f,
              "gradient accumulated across the move: %g", p->grad ? p->grad[0] : -1);
        CHECK(dl_tensor_move(dl_slice(p, 0, 0, 1, 1), GPU) != 0 && strstr(dl_error(), "view") != NULL, "a view does not move");
        dl_tensor_free(p);
    }
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(t);
    dl_tensor_free(d);
    dl_tensor_free(i32);
    dl_tensor_free(di);
}

static void test_devices_mixed(void) {
    dl_tensor *a, *b, *da;
    REQUIRE_GPU();
    a = rand_t(1, DL_SHAPE(4));
    b = rand_t(1, DL_SHAPE(4));
    da = dl_tensor_clone_to(a, GPU);
    dl_clear_error();
    CHECK(dl_add(da, b) == NULL && strstr(dl_error(), "never copy") != NULL, "two devices: %s", dl_error());
    dl_clear_error();
    CHECK(dl_add(b, da) == NULL && strstr(dl_error(), "dl_add") != NULL, "two devices, other order: %s", dl_error());
    dl_clear_error();
    CHECK(dl_add(NULL, da) == NULL, "NULL propagates");
    /* random fills of a GPU tensor give the CPU's values (drawn on the host, in the same order) */
    {
        dl_rng r1, r2;
        float want[4], got[4];
        dl_rng_seed(&r1, 3);
        dl_rng_seed(&r2, 3);
        dl_fill_normal(a, 0.0f, 1.0f, &r1);
        dl_fill_normal(da, 0.0f, 1.0f, &r2);
        CHECK(dl_tensor_read(a, want) == 0 && dl_tensor_read(da, got) == 0 && memcmp(want, got, sizeof want) == 0,
              "dl_fill_normal on the GPU");
    }
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(a);
    dl_tensor_free(b);
    dl_tensor_free(da);
}

static void test_binary(void) {
    static const struct { int na, sa[3], nb, sb[3]; } cases[] = {
        {2, {3, 4}, 2, {3, 4}}, {3, {2, 3, 4}, 1, {4}}, {3, {2, 1, 4}, 2, {3, 1}}, {1, {5}, 0, {0}}, {2, {1, 4}, 2, {3, 1}},
    };
    static const op_fn fns[] = {f_add, f_sub, f_mul, f_div, f_min, f_max2};
    static const char *const names[] = {"add", "sub", "mul", "div", "minimum", "maximum"};
    size_t c;
    int k;
    REQUIRE_GPU();
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (k = 0; k < 6; k++) {
            dl_tensor *in[2];
            char what[64];
            in[0] = rand_t(cases[c].na, cases[c].sa);
            in[1] = rand_t(cases[c].nb, cases[c].sb);
            if (k == 3) dl_fill(in[1], 0.75f); /* no division by values near 0 */
            if (k >= 4 && in[0]->numel == in[1]->numel) dl_copy(in[1], in[0]); /* ties: halves */
            snprintf(what, sizeof what, "%s case %zu", names[k], c);
            parity(what, fns[k], NULL, 2, in, 1e-5);
            dl_tensor_free(in[0]);
            dl_tensor_free(in[1]);
        }
}

static dl_tensor *f_unary(dl_tensor **x, void *u) {
    switch (*(int *)u) {
    case 0: return dl_add_scalar(x[0], 0.5f);
    case 1: return dl_mul_scalar(x[0], -3.0f);
    case 2: return dl_rsub_scalar(2.0f, x[0]);
    case 3: return dl_pow(dl_abs(x[0]), 1.5f);
    case 4: return dl_pow(x[0], 2.0f);
    case 5: return dl_exp(x[0]);
    case 6: return dl_log(dl_add_scalar(dl_abs(x[0]), 0.1f));
    case 7: return dl_sqrt(dl_add_scalar(dl_abs(x[0]), 0.1f));
    case 8: return dl_abs(x[0]);
    case 9: return dl_clamp(x[0], -0.3f, 0.4f);
    case 10: return dl_neg(x[0]);
    case 11: return dl_relu(x[0]);
    case 12: return dl_leaky_relu(x[0], 0.2f);
    case 13: return dl_elu(x[0], 1.0f);
    case 14: return dl_gelu(x[0]);
    case 15: return dl_gelu_tanh(x[0]);
    case 16: return dl_sigmoid(x[0]);
    case 17: return dl_tanh(x[0]);
    default: return dl_softplus(dl_mul_scalar(x[0], 30.0f)); /* both sides of the x > 20 switch */
    }
}

static void test_unary(void) {
    int k;
    REQUIRE_GPU();
    for (k = 0; k <= 18; k++) {
        dl_tensor *x = rand_t(3, DL_SHAPE(2, 3, 5));
        char what[32];
        snprintf(what, sizeof what, "unary/activation %d", k);
        parity(what, f_unary, &k, 1, &x, 1e-5);
        dl_tensor_free(x);
    }
}

typedef struct red_case { int kind, naxes, axes[3], keepdim; } red_case;

static dl_tensor *f_reduce(dl_tensor **x, void *u) {
    const red_case *r = (const red_case *)u;
    switch (r->kind) {
    case 0: return dl_sum(x[0], r->naxes, r->axes, r->keepdim);
    case 1: return dl_mean(x[0], r->naxes, r->axes, r->keepdim);
    case 2: return dl_var(x[0], r->naxes, r->axes, 1, r->keepdim);
    case 3: return dl_max(x[0], r->naxes, r->axes, r->keepdim);
    case 4: return dl_argmax(x[0], r->axes[0], r->keepdim);
    case 5: return dl_sum_all(x[0]);
    default: return dl_mean_all(dl_permute(x[0], DL_SHAPE(2, 0, 1))); /* through a view */
    }
}

static void test_reduce(void) {
    static const red_case cases[] = {
        {0, 1, {1}, 0}, {0, 2, {0, 2}, 1}, {1, 1, {-1}, 0}, {1, 0, {0}, 0}, {2, 1, {0}, 0}, {2, 2, {1, 2}, 1},
        {3, 1, {2}, 0}, {3, 2, {0, 1}, 1}, {4, 1, {1}, 0}, {4, 1, {-1}, 1}, {5, 0, {0}, 0}, {6, 0, {0}, 0},
        {0, 1, {0}, 0}, {1, 2, {0, 1}, 0},
    };
    size_t c;
    REQUIRE_GPU();
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        /* the last two cases sum over more than one chunk (4096 elements) per result */
        dl_tensor *x = c >= 12 ? rand_t(3, DL_SHAPE(4100, 2, 3)) : rand_t(3, DL_SHAPE(3, 4, 5));
        char what[32];
        snprintf(what, sizeof what, "reduction case %zu", c);
        if (cases[c].kind == 3) dl_set(x, DL_SHAPE(1, 2, 3), 5.0f), dl_set(x, DL_SHAPE(1, 2, 4), 5.0f); /* a tie */
        parity(what, f_reduce, (void *)&cases[c], 1, &x, 1e-5);
        dl_tensor_free(x);
    }
}

typedef struct mm_case { int na, sa[4], nb, sb[4], ta, tb, view; } mm_case;

static dl_tensor *f_mm(dl_tensor **x, void *u) {
    const mm_case *m = (const mm_case *)u;
    dl_tensor *a = x[0], *b = x[1];
    if (m->view == 1) a = dl_transpose(a, -1, -2); /* a stored transposed, read in place */
    if (m->view == 2) b = dl_transpose(b, -1, -2);
    if (m->view == 3) return dl_matmul(a, b);      /* 1-D operands */
    return dl_matmul_t(a, b, m->ta, m->tb);
}

static void test_matmul(void) {
    static const mm_case cases[] = {
        {2, {3, 4}, 2, {4, 5}, 0, 0, 0},          {2, {4, 3}, 2, {4, 5}, 1, 0, 0},
        {2, {3, 4}, 2, {5, 4}, 0, 1, 0},          {2, {4, 3}, 2, {5, 4}, 1, 1, 0},
        {2, {4, 3}, 2, {4, 5}, 0, 0, 1},          {2, {3, 4}, 2, {5, 4}, 0, 0, 2},
        {3, {2, 3, 4}, 3, {2, 4, 5}, 0, 0, 0},    {3, {2, 3, 4}, 2, {4, 5}, 0, 0, 0},
        {2, {3, 4}, 3, {2, 4, 5}, 0, 0, 0},       {4, {2, 1, 3, 4}, 3, {3, 4, 5}, 0, 0, 0},
        {3, {2, 4, 3}, 3, {2, 5, 4}, 1, 1, 0},    {1, {4}, 2, {4, 5}, 0, 0, 3},
        {2, {3, 4}, 1, {4}, 0, 0, 3},             {3, {2, 4, 3}, 3, {2, 4, 5}, 0, 0, 1},
    };
    size_t c;
    REQUIRE_GPU();
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        dl_tensor *in[2];
        char what[32];
        in[0] = rand_t(cases[c].na, cases[c].sa);
        in[1] = rand_t(cases[c].nb, cases[c].sb);
        snprintf(what, sizeof what, "matmul case %zu", c);
        parity(what, f_mm, (void *)&cases[c], 2, in, 1e-4);
        dl_tensor_free(in[0]);
        dl_tensor_free(in[1]);
    }
}

static dl_tensor *f_linear(dl_tensor **x, void *u) {
    int v = *(int *)u;
    if (v == 1) return dl_linear(x[0], dl_transpose(x[1], 0, 1), x[2]); /* torch's [out, in] weight */
    if (v == 2) return dl_linear(x[0], x[1], NULL);
    return dl_linear(x[0], x[1], x[2]);
}

static void test_linear(void) {
    int v;
    REQUIRE_GPU();
    for (v = 0; v < 4; v++) {
        dl_tensor *in[3];
        char what[32];
        in[0] = v == 3 ? rand_t(3, DL_SHAPE(2, 3, 6)) : rand_t(2, DL_SHAPE(5, 6));
        in[1] = v == 1 ? rand_t(2, DL_SHAPE(4, 6)) : rand_t(2, DL_SHAPE(6, 4));
        in[2] = rand_t(1, DL_SHAPE(4));
        snprintf(what, sizeof what, "linear variant %d", v);
        parity(what, f_linear, &v, v == 2 ? 2 : 3, in, 1e-4);
        dl_tensor_free(in[0]);
        dl_tensor_free(in[1]);
        dl_tensor_free(in[2]);
    }
}

static dl_tensor *f_softmax(dl_tensor **x, void *u) {
    int v = *(int *)u;
    return v & 1 ? dl_log_softmax(x[0], v & 2 ? 1 : -1) : dl_softmax(x[0], v & 2 ? 1 : -1);
}

static dl_tensor *f_ce(dl_tensor **x, void *u) { (void)u; return dl_cross_entropy(x[0], x[1]); }

static dl_tensor *f_loss(dl_tensor **x, void *u) {
    switch (*(int *)u) {
    case 0: return dl_mse(x[0], x[1]);
    case 1: return dl_l1(x[0], x[1]);
    case 2: return dl_huber(x[0], x[1], 0.5f);
    default: return dl_bce_with_logits(x[0], dl_sigmoid(x[1]));
    }
}

static void test_softmax_losses(void) {
    int v;
    REQUIRE_GPU();
    for (v = 0; v < 4; v++) {
        dl_tensor *x = rand_t(3, DL_SHAPE(2, 5, 3));
        char what[32];
        snprintf(what, sizeof what, "softmax variant %d", v);
        parity(what, f_softmax, &v, 1, &x, 1e-5);
        dl_tensor_free(x);
    }
    for (v = 0; v < 4; v++) {
        dl_tensor *in[2];
        char what[32];
        in[0] = rand_t(2, DL_SHAPE(7, 3));
        in[1] = rand_t(2, DL_SHAPE(7, 3));
        snprintf(what, sizeof what, "loss %d", v);
        parity(what, f_loss, &v, 2, in, 1e-5);
        dl_tensor_free(in[0]);
        dl_tensor_free(in[1]);
    }
    {   /* cross-entropy: [N, C] and [N, C, d] with the ignore index */
        int32_t l1[6] = {0, 3, 2, -100, 1, 3}, l2[6] = {1, 0, -100, 2, 2, 0};
        dl_tensor *in[2], *d, *bad;
        in[0] = rand_t(2, DL_SHAPE(6, 4));
        in[1] = dl_tensor_from(DL_DTYPE_I32, 1, DL_SHAPE(6), l1);
        parity("cross_entropy [N, C]", f_ce, NULL, 2, in, 1e-5);
        dl_tensor_free(in[0]);
        dl_tensor_free(in[1]);
        in[0] = rand_t(3, DL_SHAPE(2, 3, 3));
        in[1] = dl_tensor_from(DL_DTYPE_I32, 2, DL_SHAPE(2, 3), l2);
        parity("cross_entropy [N, C, d]", f_ce, NULL, 2, in, 1e-5);
        /* a label outside [0, C) is an error on the GPU too */
        l2[1] = 3;
        bad = dl_tensor_from(DL_DTYPE_I32, 2, DL_SHAPE(2, 3), l2);
        d = dl_tensor_clone_to(bad, GPU);
        {
            dl_tensor *z = dl_tensor_clone_to(in[0], GPU);
            dl_clear_error();
            CHECK(dl_cross_entropy(z, d) == NULL && strstr(dl_error(), "outside") != NULL, "bad label: %s", dl_error());
            CHECK(dl_cross_entropy(z, bad) == NULL && strstr(dl_error(), "labels") != NULL, "labels on the CPU: %s", dl_error());
            dl_tensor_free(z);
        }
        dl_arena_reset(dl_arena_current());
        dl_tensor_free(d);
        dl_tensor_free(bad);
        dl_tensor_free(in[0]);
        dl_tensor_free(in[1]);
    }
}

static dl_tensor *f_views(dl_tensor **x, void *u) {
    (void)u; /* permute, slice, reshape of a non-contiguous view (a copy), then ops */
    dl_tensor *p = dl_permute(x[0], DL_SHAPE(1, 0, 2));
    dl_tensor *s = dl_slice(p, 2, 1, 5, 2);
    return dl_mul(dl_reshape(s, 2, DL_SHAPE(-1, 4)), dl_reshape(dl_slice(x[1], 0, 0, 6, 1), 2, DL_SHAPE(-1, 1)));
}

static void test_views(void) {
    dl_tensor *in[2];
    REQUIRE_GPU();
    in[0] = rand_t(3, DL_SHAPE(3, 4, 5));
    in[1] = rand_t(1, DL_SHAPE(8));
    parity("views", f_views, NULL, 2, in, 1e-5);
    dl_tensor_free(in[0]);
    dl_tensor_free(in[1]);
}

/* dl_to_device is an op: a CPU parameter used on the GPU gets its gradient on the CPU. */
static void test_to_device_grad(void) {
    dl_tensor *w, *x, *dx, *loss;
    float want[4];
    int i;
    REQUIRE_GPU();
    w = rand_t(1, DL_SHAPE(4));
    x = rand_t(1, DL_SHAPE(4));
    dl_set_requires_grad(w, 1);
    dx = dl_tensor_clone_to(x, GPU);
    loss = dl_sum_all(dl_mul(dl_to_device(w, GPU), dx));
    CHECK(loss && loss->device == GPU && dl_backward(loss) == 0, "backward across devices: %s", dl_error());
    for (i = 0; i < 4; i++) want[i] = dl_f32(x)[i];
    CHECK(w->grad != NULL, "w has a gradient");
    if (w->grad) CHECK_ALL_NEAR(w->grad, want, 4, 1e-6);
    /* and back: a GPU tensor brought to the CPU */
    dl_arena_reset(dl_arena_current());
    dl_set_requires_grad(dx, 1);
    loss = dl_sum_all(dl_mul_scalar(dl_to_device(dx, DL_DEVICE_CPU), 2.0f));
    CHECK(loss && loss->device == DL_DEVICE_CPU && dl_backward(loss) == 0, "GPU -> CPU backward: %s", dl_error());
    CHECK(dl_tensor_move(dx, DL_DEVICE_CPU) == 0 && dx->grad && dx->grad[3] == 2.0f, "gradient of the GPU tensor");
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(w);
    dl_tensor_free(x);
    dl_tensor_free(dx);
}

static void test_numerics(void) {
    dl_tensor *x, *d;
    int prev;
    REQUIRE_GPU();
    x = rand_t(1, DL_SHAPE(3));
    dl_set(x, DL_SHAPE(1), -1.0f);
    d = dl_tensor_clone_to(x, GPU);
    prev = dl_check_numerics(1);
    dl_clear_error();
    CHECK(dl_log(d) == NULL && strstr(dl_error(), "not finite") != NULL, "check_numerics on the GPU: %s", dl_error());
    dl_check_numerics(prev);
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
    dl_tensor_free(d);
}

/* A two-layer network trained 30 steps by plain SGD on each device: the weights agree. */
static void test_train_mlp(void) {
    dl_tensor *p[4], *q[4], *x, *dx, *y, *dy;
    int32_t labels[16];
    int i, step;
    REQUIRE_GPU();
    p[0] = rand_t(2, DL_SHAPE(8, 16));
    p[1] = rand_t(1, DL_SHAPE(16));
    p[2] = rand_t(2, DL_SHAPE(16, 3));
    p[3] = rand_t(1, DL_SHAPE(3));
    x = rand_t(2, DL_SHAPE(16, 8));
    for (i = 0; i < 16; i++) labels[i] = i % 3;
    y = dl_tensor_from(DL_DTYPE_I32, 1, DL_SHAPE(16), labels);
    dx = dl_tensor_clone_to(x, GPU);
    dy = dl_tensor_clone_to(y, GPU);
    for (i = 0; i < 4; i++) {
        q[i] = dl_tensor_clone_to(p[i], GPU);
        dl_set_requires_grad(p[i], 1);
        dl_set_requires_grad(q[i], 1);
    }
    for (step = 0; step < 30; step++) {
        int dev;
        for (dev = 0; dev < 2; dev++) {
            dl_tensor **w = dev ? q : p;
            dl_tensor *h, *loss;
            dl_arena_reset(dl_arena_current());
            for (i = 0; i < 4; i++) dl_zero_grad(w[i]);
            h = dl_relu(dl_linear(dev ? dx : x, w[0], w[1]));
            loss = dl_cross_entropy(dl_linear(h, w[2], w[3]), dev ? dy : y);
            CHECK(loss && dl_backward(loss) == 0, "step %d on device %d: %s", step, dev, dl_error());
            if (!loss) return;
            for (i = 0; i < 4; i++) { /* w -= 0.1 grad, as a GPU op when on the GPU */
                dl_tensor g = *w[i];
                g.data = w[i]->grad;
                g.grad = NULL;
                g.requires_grad = 0;
                g.flags = 0;
                g.node = NULL;
                {
                    int grad = dl_no_grad(1);
                    dl_tensor *nw = dl_sub(dl_detach(w[i]), dl_mul_scalar(&g, 0.1f));
                    CHECK(nw && dl_copy(w[i], nw) == 0, "update: %s", dl_error());
                    dl_no_grad(grad);
                }
            }
        }
    }
    for (i = 0; i < 4; i++) {
        float *h = (float *)malloc(p[i]->numel * 4);
        CHECK(dl_tensor_read(q[i], h) == 0, "read");
        CHECK_ALL_NEAR(h, dl_f32(p[i]), p[i]->numel, 1e-4);
        free(h);
        dl_tensor_free(p[i]);
        dl_tensor_free(q[i]);
    }
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(x);
    dl_tensor_free(dx);
    dl_tensor_free(y);
    dl_tensor_free(dy);
}

/* The device arena keeps its memory: a second identical step allocates no device memory. */
static void test_arena_steady(void) {
    dl_tensor *w, *x;
    size_t n0 = 0, n1 = 0;
    int step;
    REQUIRE_GPU();
    w = rand_t(2, DL_SHAPE(64, 64));
    x = rand_t(2, DL_SHAPE(32, 64));
    CHECK(dl_tensor_move(w, GPU) == 0 && dl_tensor_move(x, GPU) == 0, "move");
    dl_set_requires_grad(w, 1);
    for (step = 0; step < 3; step++) {
        dl_arena_reset(dl_arena_current());
        dl_backward(dl_mean_all(dl_tanh(dl_matmul(x, w))));
        if (step == 1) n0 = dl_arena_device_bytes(dl_arena_current());
        if (step == 2) n1 = dl_arena_device_bytes(dl_arena_current());
    }
    CHECK(n0 > 0 && n0 == n1, "device arena grew in steady state: %zu -> %zu", n0, n1);
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(w);
    dl_tensor_free(x);
}

int main(void) {
    dl_rng_seed(&rng, 7);
    RUN(test_memory);
    RUN(test_devices_mixed);
    RUN(test_binary);
    RUN(test_unary);
    RUN(test_reduce);
    RUN(test_matmul);
    RUN(test_linear);
    RUN(test_softmax_losses);
    RUN(test_views);
    RUN(test_to_device_grad);
    RUN(test_numerics);
    RUN(test_train_mlp);
    RUN(test_arena_steady);
    dl_arena_free_default();
    return test_summary();
}
