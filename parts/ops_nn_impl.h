/* ==== Matrix products, activations, softmax, losses ========================================== */

/* 1 if x is an f32 tensor on the CPU; else sets "op: what ..." and returns 0. */
static int dl__nn_check(const char *op, const dl_tensor *x, const char *what) {
    if (x->device != DL_CPU) { dl__fail("%s: %s is not on the CPU", op, what); return 0; }
    if (x->dtype != DL_F32) { dl__fail("%s: %s must be f32, got %s", op, what, dl_dtype_name(x->dtype)); return 0; }
    return 1;
}

/* ---- Matrix products ---- */

/* dl_sgemm with alpha 1 that also takes empty matrices. beta is 0 (C = A B) or 1 (C += A B). */
static void dl__gemm(int ta, int tb, int m, int n, int k, const float *a, int lda, const float *b,
                     int ldb, float beta, float *c, int ldc) {
    int i;
    if (m <= 0 || n <= 0) return;
    if (k <= 0) { /* A B is all zeros */
        if (beta == 0) for (i = 0; i < m; i++) memset(c + (ptrdiff_t)i * ldc, 0, (size_t)n * sizeof(float));
        return;
    }
    dl_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}

/* A [r, c] block of floats as dl_sgemm reads it: element (i, j) is at p[i*ld + j] when t == 0
   (a row-major matrix) and at p[j*ld + i] when t == 1 (a transposed view of one). */
typedef struct dl__mat {
    const float *p;
    int t, ld;
} dl__mat;

/* Describes the block at p with row stride s0 and column stride s1 as a dl__mat; 0 if it is
   neither layout (then the caller copies it). Strides of size-1 axes do not matter. */
static int dl__as_mat(const float *p, int r, int c, ptrdiff_t s0, ptrdiff_t s1, dl__mat *m) {
    m->p = p;
    if (c <= 1 || s1 == 1) {
        ptrdiff_t ld = r <= 1 ? c : s0;
        if (ld < c || ld > 0x7fffffff) return 0;
        m->t = 0;
        m->ld = ld < 1 ? 1 : (int)ld;
        return 1;
    }
    if (r <= 1 || s0 == 1) {
        if (s1 < r || s1 > 0x7fffffff) return 0;
        m->t = 1;
        m->ld = (int)s1;
        return 1;
    }
    return 0;
}

/* Reads x [..., c] as a matrix [r, c] whose rows are the axes first .. ndim-2 flattened (r = 1
   when there are none). In place when those axes nest into one row stride and the block is a
   matrix or a transposed one; otherwise from a contiguous arena copy. Returns 2 if it copied,
   1 if not, 0 on failure. */
static int dl__read_mat(const dl_tensor *x, int first, dl__mat *m) {
    int i, nd = x->ndim, r = 1, c = x->shape[nd - 1], nested = 1;
    ptrdiff_t s0 = 0, span = 0;
    const float *p;
    for (i = nd - 2; i >= first; i--) {
        r *= x->shape[i];
        if (x->shape[i] == 1) continue;
        if (span == 0) { s0 = x->strides[i]; span = s0 * x->shape[i]; }
        else if (x->strides[i] == span) span *= x->shape[i];
        else nested = 0;
    }
    if (span == 0) s0 = c; /* at most one row */
    if (nested && dl__as_mat((const float *)x->data, r, c, s0, x->strides[nd - 1], m)) return 1;
    p = dl_contig_f32(x);
    if (!p) return 0;
    dl__as_mat(p, r, c, c, 1, m);
    return 2;
}

/* A batch of GEMMs C[i] (+)= op(A[i]) op(B[i]) over the batch axes `shape`; the strides of
   each operand's batch axes are in elements, 0 where it is broadcast (or, for C, reduced). */
typedef struct dl__gemm_batch {
    int nb, shape[DL_MAX_DIMS];
    ptrdiff_t sa[DL_MAX_DIMS], sb[DL_MAX_DIMS], sc[DL_MAX_DIMS];
    int ta, tb, m, n, k, lda, ldb, ldc;
    const float *a, *b;
    float *c;
    float beta;
    size_t count, per_task;   /* number of GEMMs, and per parallel task (set when run) */
} dl__gemm_batch;

/* Fewer, bigger GEMMs for the same work: drops size-1 batch axes, merges axes whose strides
   nest, then folds the innermost batch axis into the GEMM itself when the matrices of
   consecutive batches continue each other:
     into m: A's row blocks follow each other and B is shared ([B, T, C] @ [C, D]);
     into k: C is shared (a gradient reduced over a broadcast batch) and A^T, B stack along k. */
static void dl__gemm_batch_simplify(dl__gemm_batch *g) {
    int i, d = 0;
    for (i = 0; i < g->nb; i++) {
        int len = g->shape[i];
        if (len == 1) continue;
        if (d > 0 && g->sa[d - 1] == g->sa[i] * len && g->sb[d - 1] == g->sb[i] * len &&
            g->sc[d - 1] == g->sc[i] * len && (double)g->shape[d - 1] * len <= 0x7fffffff) {
            g->shape[d - 1] *= len;
        } else {
            g->shape[d] = len;
            d++;
        }
        g->sa[d - 1] = g->sa[i];
        g->sb[d - 1] = g->sb[i];
        g->sc[d - 1] = g->sc[i];
    }
    g->nb = d;
    while (g->nb > 0) {
        int len = g->shape[g->nb - 1];
        ptrdiff_t sa = g->sa[g->nb - 1], sb = g->sb[g->nb - 1], sc = g->sc[g->nb - 1];
        if (!g->ta && sb == 0 && sa == (ptrdiff_t)g->m * g->lda && sc == (ptrdiff_t)g->m * g->ldc &&
            (double)g->m * len <= 0x7fffffff)
            g->m *= len;
        else if (sc == 0 && g->ta && !g->tb && sa == (ptrdiff_t)g->k * g->lda &&
                 sb == (ptrdiff_t)g->k * g->ldb && (double)g->k * len <= 0x7fffffff)
            g->k *= len;
        else
            break;
        g->nb--;
    }
}

static void dl__gemm_batch_task(void *ctx, int task) {
    const dl__gemm_batch *g = (const dl__gemm_batch *)ctx;
    size_t i, lo = (size_t)task * g->per_task, hi = lo + g->per_task;
    if (hi > g->count) hi = g->count;
    for (i = lo; i < hi; i++) {
        ptrdiff_t oa = 0, ob = 0, oc = 0;
        size_t rest = i;
        int d;
        for (d = g->nb - 1; d >= 0; d--) {
            ptrdiff_t j = (ptrdiff_t)(rest % (size_t)g->shape[d]);
            rest /= (size_t)g->shape[d];
            oa += j * g->sa[d];
            ob += j * g->sb[d];
            oc += j * g->sc[d];
        }
        dl__gemm(g->ta, g->tb, g->m, g->n, g->k, g->a + oa, g->lda, g->b + ob, g->ldb, g->beta, g->c + oc, g->ldc);
    }
}

/* Runs the batch. Small GEMMs writing distinct C blocks run in parallel, one per thread; big
   ones in order, each threaded by dl_sgemm. Both give the same bits. */
static void dl__gemm_batch_run(dl__gemm_batch *g) {
    int d, distinct = 1, threads = dl_get_num_threads();
    dl__gemm_batch_simplify(g);
    g->count = 1;
    for (d = 0; d < g->nb; d++) {
        g->count *= (size_t)g->shape[d];
        if (g->sc[d] == 0) distinct = 0;
    }
    if (g->count == 0 || g->m == 0 || g->n == 0) return;
    if (g->count > 1 && distinct && threads > 1 && (double)g->m * g->n * g->k < 64.0 * 64 * 64) {
        size_t tasks = g->count < (size_t)threads * 4 ? g->count : (size_t)threads * 4;
        g->per_task = (g->count + tasks - 1) / tasks;
        dl_parallel_for((int)((g->count + g->per_task - 1) / g->per_task), dl__gemm_batch_task, g);
    } else {
        g->per_task = g->count;
        dl__gemm_batch_task(g, 0);
    }
}

/* The strides of x's batch axes (all but its last two), aligned to the right of the nb batch
   axes of a matmul output; 0 where x has no such axis or broadcasts it. */
static void dl__batch_strides(const dl_tensor *x, const ptrdiff_t *strides, int nb, ptrdiff_t *out) {
    int i, off = nb - (x->ndim - 2);
    for (i = 0; i < nb; i++) out[i] = (i >= off && x->shape[i - off] != 1) ? strides[i - off] : 0;
}

/* What matmul's backward needs: both operands as read, and the user's transpose flags. */
typedef struct dl__matmul_ctx {
    dl__mat a, b;
    ptrdiff_t sa[DL_MAX_DIMS], sb[DL_MAX_DIMS];   /* their batch strides */
    int ta, tb, m, n, k;
} dl__matmul_ctx;

/* Reads a matmul operand's last two axes as a matrix (copying x only when they are not one)
   and its batch strides over nb output batch axes. */
static int dl__matmul_operand(const dl_tensor *x, int nb, dl__mat *m, ptrdiff_t *bs) {
    int copied = dl__read_mat(x, x->ndim - 2, m);
    ptrdiff_t contig[DL_MAX_DIMS];
    if (!copied) return 0;
    dl__contig_strides(x->ndim, x->shape, contig);
    dl__batch_strides(x, copied == 2 ? contig : x->strides, nb, bs);
    return 1;
}

/* A GEMM batch over the batch axes of out, writing or adding into c (batch strides sc). */
static void dl__gemm_batch_init(dl__gemm_batch *g, const dl_tensor *out, float *c, const ptrdiff_t *sc, float beta) {
    int i;
    memset(g, 0, sizeof *g);
    g->nb = out->ndim - 2;
    for (i = 0; i < g->nb; i++) { g->shape[i] = out->shape[i]; g->sc[i] = sc[i]; }
    g->c = c;
    g->beta = beta;
}

static void dl__gemm_batch_set_a(dl__gemm_batch *g, const float *p, int t, int ld, const ptrdiff_t *s) {
    g->a = p; g->ta = t; g->lda = ld;
    memcpy(g->sa, s, sizeof g->sa);
}

static void dl__gemm_batch_set_b(dl__gemm_batch *g, const float *p, int t, int ld, const ptrdiff_t *s) {
    g->b = p; g->tb = t; g->ldb = ld;
    memcpy(g->sb, s, sizeof g->sb);
}

/* C = op(A) op(B) with dC given: dop(A) = dC op(B)^T and dop(B) = op(A)^T dC. When op
   transposes an operand, its gradient is the transpose: dA = op(B) dC^T, dB = dC^T op(A).
   Batches broadcast in the forward are summed here (beta = 1 into the gradient buffers). */
static void dl__matmul_backward(dl_node *nd) {
    const dl__matmul_ctx *c = (const dl__matmul_ctx *)nd->ctx;
    dl_tensor *a = nd->in[0], *b = nd->in[1], *out = nd->out;
    float *ga = dl_grad_buf(a), *gb = dl_grad_buf(b);
    const float *gc = out->grad;
    ptrdiff_t so[DL_MAX_DIMS], contig[DL_MAX_DIMS], sg[DL_MAX_DIMS];
    int nb = out->ndim - 2, opa = c->ta ^ c->a.t, opb = c->tb ^ c->b.t; /* dl_sgemm flags giving op(A), op(B) */
    dl__gemm_batch g;
    dl__contig_strides(out->ndim, out->shape, so);
    if (ga) {
        dl__contig_strides(a->ndim, a->shape, contig);
        dl__batch_strides(a, contig, nb, sg);
        dl__gemm_batch_init(&g, out, ga, sg, 1.0f);
        if (!c->ta) { /* dA [m, k] = dC [m, n] @ op(B)^T [n, k] */
            g.m = c->m; g.n = c->k; g.k = c->n; g.ldc = c->k;
            dl__gemm_batch_set_a(&g, gc, 0, c->n, so);
            dl__gemm_batch_set_b(&g, c->b.p, !opb, c->b.ld, c->sb);
        } else {      /* dA [k, m] = op(B) [k, n] @ dC^T [n, m] */
            g.m = c->k; g.n = c->m; g.k = c->n; g.ldc = c->m;
            dl__gemm_batch_set_a(&g, c->b.p, opb, c->b.ld, c->sb);
            dl__gemm_batch_set_b(&g, gc, 1, c->n, so);
        }
        dl__gemm_batch_run(&g);
    }
    if (gb) {
        dl__contig_strides(b->ndim, b->shape, contig);
        dl__batch_strides(b, contig, nb, sg);
        dl__gemm_batch_init(&g, out, gb, sg, 1.0f);
        if (!c->tb) { /* dB [k, n] = op(A)^T [k, m] @ dC [m, n] */
            g.m = c->k; g.n = c->n; g.k = c->m; g.ldc = c->n;
            dl__gemm_batch_set_a(&g, c->a.p, !opa, c->a.ld, c->sa);
            dl__gemm_batch_set_b(&g, gc, 0, c->n, so);
        } else {      /* dB [n, k] = dC^T [n, m] @ op(A) [m, k] */
            g.m = c->n; g.n = c->k; g.k = c->m; g.ldc = c->k;
            dl__gemm_batch_set_a(&g, gc, 1, c->n, so);
            dl__gemm_batch_set_b(&g, c->a.p, opa, c->a.ld, c->sa);
        }
        dl__gemm_batch_run(&g);
    }
}

/* C[..., m, n] = op(A)[..., m, k] @ op(B)[..., k, n], batch axes broadcast. */
static dl_tensor *dl__matmul(const char *op, dl_tensor *a, dl_tensor *b, int ta, int tb) {
    dl__matmul_ctx c;
    dl__gemm_batch g;
    dl_tensor *out, *in[2];
    dl_node *nd;
    int shape[DL_MAX_DIMS], nb, i, kb;
    ptrdiff_t so[DL_MAX_DIMS];
    char sa_str[64], sb_str[64];
    if (!a || !b) return NULL;
    if (!dl__nn_check(op, a, "a") || !dl__nn_check(op, b, "b")) return NULL;
    if (a->ndim < 2 || b->ndim < 2)
        return (dl_tensor *)dl__fail("%s: operands need at least 2 axes, got %s and %s", op,
                                     dl_shape_str(a, sa_str, sizeof sa_str), dl_shape_str(b, sb_str, sizeof sb_str));
    c.ta = ta = ta != 0;
    c.tb = tb = tb != 0;
    c.m = a->shape[a->ndim - 2 + ta];
    c.k = a->shape[a->ndim - 1 - ta];
    kb = b->shape[b->ndim - 2 + tb];
    c.n = b->shape[b->ndim - 1 - tb];
    if (c.k != kb)
        return (dl_tensor *)dl__fail("%s: inner dimensions differ: %s%s @ %s%s", op, dl_shape_str(a, sa_str, sizeof sa_str),
                                     ta ? "^T" : "", dl_shape_str(b, sb_str, sizeof sb_str), tb ? "^T" : "");
    nb = (a->ndim > b->ndim ? a->ndim : b->ndim) - 2;
    for (i = 0; i < nb; i++) { /* broadcast the batch axes, aligned right */
        int ia = i - (nb - (a->ndim - 2)), ib = i - (nb - (b->ndim - 2));
        int da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return (dl_tensor *)dl__fail("%s: batch axes of %s and %s do not broadcast", op,
                                         dl_shape_str(a, sa_str, sizeof sa_str), dl_shape_str(b, sb_str, sizeof sb_str));
        shape[i] = da == 1 ? db : da;
    }
    shape[nb] = c.m;
    shape[nb + 1] = c.n;
    out = dl_tmp_uninit(DL_F32, nb + 2, shape);
    if (!out || !dl__matmul_operand(a, nb, &c.a, c.sa) || !dl__matmul_operand(b, nb, &c.b, c.sb)) return NULL;
    dl__contig_strides(out->ndim, out->shape, so);
    dl__gemm_batch_init(&g, out, (float *)out->data, so, 0.0f);
    g.m = c.m; g.n = c.n; g.k = c.k; g.ldc = c.n;
    dl__gemm_batch_set_a(&g, c.a.p, ta ^ c.a.t, c.a.ld, c.sa);
    dl__gemm_batch_set_b(&g, c.b.p, tb ^ c.b.t, c.b.ld, c.sb);
    dl__gemm_batch_run(&g);
    in[0] = a;
    in[1] = b;
    nd = dl_record(op + 3, out, 2, in, dl__matmul_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return out;
}

DLDEF dl_tensor *dl_matmul_t(dl_tensor *a, dl_tensor *b, int trans_a, int trans_b) {
    return dl__matmul("dl_matmul_t", a, b, trans_a, trans_b);
}

DLDEF dl_tensor *dl_matmul(dl_tensor *a, dl_tensor *b) {
    int a_vec, b_vec;
    dl_tensor *y;
    if (!a || !b) return NULL;
    if (a->ndim == 0 || b->ndim == 0) return (dl_tensor *)dl__fail("dl_matmul: operands need at least 1 axis, not 0-d");
    /* torch: a vector is a one-row (a) or one-column (b) matrix, and that axis is dropped. */
    a_vec = a->ndim == 1;
    b_vec = b->ndim == 1;
    if (a_vec) a = dl_unsqueeze(a, 0);
    if (b_vec) b = dl_unsqueeze(b, 1);
    y = dl__matmul("dl_matmul", a, b, 0, 0);
    if (y && b_vec) y = dl_squeeze(y, -1);
    if (y && a_vec) y = dl_squeeze(y, b_vec ? -1 : -2);
    return y;
}

/* ---- Dense layer ---- */

typedef struct dl__linear_ctx {
    dl__mat x, w;   /* x as [rows, in], w as [in, out], as read in the forward */
    int rows;
} dl__linear_ctx;

/* y = x w + b: dx = dy w^T, dw = x^T dy, db = sum of dy over rows. */
static void dl__linear_backward(dl_node *nd) {
    const dl__linear_ctx *c = (const dl__linear_ctx *)nd->ctx;
    int in = nd->in[1]->shape[0], out = nd->in[1]->shape[1], i, j;
    float *gx = dl_grad_buf(nd->in[0]), *gw = dl_grad_buf(nd->in[1]);
    float *gb = nd->n_in > 2 ? dl_grad_buf(nd->in[2]) : NULL;
    const float *gy = nd->out->grad;
    if (gx) dl__gemm(0, !c->w.t, c->rows, in, out, gy, out, c->w.p, c->w.ld, 1.0f, gx, in);
    if (gw) dl__gemm(!c->x.t, 0, in, out, c->rows, c->x.p, c->x.ld, gy, out, 1.0f, gw, out);
    if (gb)
        for (i = 0; i < c->rows; i++)
            for (j = 0; j < out; j++) gb[j] += gy[(size_t)i * (size_t)out + (size_t)j];
}

DLDEF dl_tensor *dl_linear(dl_tensor *x, dl_tensor *w, dl_tensor *b) {
    dl__linear_ctx c;
    dl_tensor *y, *in[3];
    dl_node *nd;
    int shape[DL_MAX_DIMS], i, out;
    size_t rows = 1;
    char sx[64], sw[64];
    float *yp;
    if (!x || !w) return NULL;
    if (!dl__nn_check("dl_linear", x, "x") || !dl__nn_check("dl_linear", w, "w")) return NULL;
    if (b && !dl__nn_check("dl_linear", b, "b")) return NULL;
    if (x->ndim < 1 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[0])
        return (dl_tensor *)dl__fail("dl_linear: x %s does not match w %s (want x [..., in], w [in, out])",
                                     dl_shape_str(x, sx, sizeof sx), dl_shape_str(w, sw, sizeof sw));
    out = w->shape[1];
    if (b && (b->ndim != 1 || b->shape[0] != out))
        return (dl_tensor *)dl__fail("dl_linear: bias %s does not match w %s (want [%d])",
                                     dl_shape_str(b, sx, sizeof sx), dl_shape_str(w, sw, sizeof sw), out);
    for (i = 0; i < x->ndim - 1; i++) rows *= (size_t)x->shape[i];
    if (rows > 0x7fffffff) return (dl_tensor *)dl__fail("dl_linear: x %s has too many rows", dl_shape_str(x, sx, sizeof sx));
    c.rows = (int)rows;
    for (i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = out;
    y = dl_tmp_uninit(DL_F32, x->ndim, shape);
    if (!y || !dl__read_mat(x, 0, &c.x) || !dl__read_mat(w, 0, &c.w)) return NULL;
    yp = (float *)y->data;
    if (b) { /* beta trick: every row starts as b, the GEMM adds x w */
        const float *bp = dl_contig_f32(b);
        if (!bp) return NULL;
        for (i = 0; i < c.rows; i++) memcpy(yp + (size_t)i * (size_t)out, bp, (size_t)out * sizeof(float));
    }
    dl__gemm(c.x.t, c.w.t, c.rows, out, w->shape[0], c.x.p, c.x.ld, c.w.p, c.w.ld, b ? 1.0f : 0.0f, yp, out);
    in[0] = x;
    in[1] = w;
    in[2] = b;
    nd = dl_record("linear", y, b ? 3 : 2, in, dl__linear_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return y;
}

/* ---- Activations ---- */

enum { DL__RELU, DL__LEAKY_RELU, DL__ELU, DL__GELU, DL__GELU_TANH, DL__SIGMOID, DL__TANH, DL__SOFTPLUS };

#define DL__SQRT1_2 0.70710678118654752f       /* 1 / sqrt(2) */
#define DL__INV_SQRT_2PI 0.39894228040143268f  /* 1 / sqrt(2 pi) */
#define DL__SQRT_2_PI 0.79788456080286536f     /* sqrt(2 / pi) */

/* One elementwise activation over n contiguous floats: forward writes y from x; backward adds
   dy * f'(x) into gx (sigmoid and tanh use y). alpha: leaky_relu's slope, elu's alpha. */
typedef struct dl__act {
    int kind, backward;
    float alpha;
    const float *x, *y, *gy;
    float *out;         /* y (forward) or x's gradient (backward) */
    size_t n;
} dl__act;

static void dl__act_forward(const dl__act *a, size_t lo, size_t hi) {
    const float *x = a->x;
    float *y = a->out, al = a->alpha;
    size_t i;
    switch (a->kind) {
    case DL__RELU: for (i = lo; i < hi; i++) y[i] = x[i] < 0 ? 0.0f : x[i]; break; /* NaN stays NaN */
    case DL__LEAKY_RELU: for (i = lo; i < hi; i++) y[i] = x[i] > 0 ? x[i] : al * x[i]; break;
    case DL__ELU: for (i = lo; i < hi; i++) y[i] = x[i] > 0 ? x[i] : al * expm1f(x[i]); break;
    case DL__GELU: for (i = lo; i < hi; i++) y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * DL__SQRT1_2)); break;
    case DL__GELU_TANH:
        for (i = lo; i < hi; i++) y[i] = 0.5f * x[i] * (1.0f + tanhf(DL__SQRT_2_PI * (x[i] + 0.044715f * x[i] * x[i] * x[i])));
        break;
    case DL__SIGMOID: for (i = lo; i < hi; i++) y[i] = 1.0f / (1.0f + expf(-x[i])); break;
    case DL__TANH: for (i = lo; i < hi; i++) y[i] = tanhf(x[i]); break;
    case DL__SOFTPLUS: for (i = lo; i < hi; i++) y[i] = x[i] > 20.0f ? x[i] : log1pf(expf(x[i])); break;
    }
}

static void dl__act_backward(const dl__act *a, size_t lo, size_t hi) {
    const float *x = a->x, *y = a->y, *gy = a->gy;
    float *gx = a->out, al = a->alpha;
    size_t i;
    switch (a->kind) {
    /* g loaded before the test lets compilers select without a branch (random signs mispredict) */
    case DL__RELU: for (i = lo; i < hi; i++) { float g = gy[i]; gx[i] += x[i] > 0 ? g : 0.0f; } break;
    case DL__LEAKY_RELU: for (i = lo; i < hi; i++) { float g = gy[i]; gx[i] += x[i] > 0 ? g : al * g; } break;
    case DL__ELU: for (i = lo; i < hi; i++) { float g = gy[i]; gx[i] += x[i] > 0 ? g : g * al * expf(x[i]); } break;
    case DL__GELU:
        for (i = lo; i < hi; i++) {
            float cdf = 0.5f * (1.0f + erff(x[i] * DL__SQRT1_2)), pdf = DL__INV_SQRT_2PI * expf(-0.5f * x[i] * x[i]);
            gx[i] += gy[i] * (cdf + x[i] * pdf);
        }
        break;
    case DL__GELU_TANH:
        for (i = lo; i < hi; i++) {
            float x2 = x[i] * x[i], t = tanhf(DL__SQRT_2_PI * x[i] * (1.0f + 0.044715f * x2));
            gx[i] += gy[i] * (0.5f * (1.0f + t) + 0.5f * x[i] * (1.0f - t * t) * DL__SQRT_2_PI * (1.0f + 3.0f * 0.044715f * x2));
        }
        break;
    case DL__SIGMOID: for (i = lo; i < hi; i++) gx[i] += gy[i] * y[i] * (1.0f - y[i]); break;
    case DL__TANH: for (i = lo; i < hi; i++) gx[i] += gy[i] * (1.0f - y[i] * y[i]); break;
    case DL__SOFTPLUS:
        for (i = lo; i < hi; i++) gx[i] += x[i] > 20.0f ? gy[i] : gy[i] / (1.0f + expf(-x[i]));
        break;
    }
}

#define DL__ACT_CHUNK ((size_t)1 << 15)   /* elements per parallel task */

static void dl__act_task(void *ctx, int task) {
    const dl__act *a = (const dl__act *)ctx;
    size_t lo = (size_t)task * DL__ACT_CHUNK, hi = lo + DL__ACT_CHUNK < a->n ? lo + DL__ACT_CHUNK : a->n;
    if (a->backward) dl__act_backward(a, lo, hi);
    else dl__act_forward(a, lo, hi);
}

/* Elementwise, so any split over threads gives the same bits. */
static void dl__act_run(dl__act *a) {
    if (a->n <= DL__ACT_CHUNK) dl__act_task(a, 0);
    else dl_parallel_for((int)((a->n + DL__ACT_CHUNK - 1) / DL__ACT_CHUNK), dl__act_task, a);
}

static void dl__activation_backward(dl_node *nd) {
    dl__act a = *(const dl__act *)nd->ctx;
    a.out = dl_grad_buf(nd->in[0]);
    a.gy = nd->out->grad;
    a.backward = 1;
    if (a.out) dl__act_run(&a);
}

static dl_tensor *dl__activation(const char *op, int kind, dl_tensor *x, float alpha) {
    dl__act a;
    dl_tensor *y;
    dl_node *nd;
    if (!x) return NULL;
    if (!dl__nn_check(op, x, "x")) return NULL;
    memset(&a, 0, sizeof a);
    a.kind = kind;
    a.alpha = alpha;
    a.x = dl_contig_f32(x);
    y = dl_tmp_uninit(DL_F32, x->ndim, x->shape);
    if (!a.x || !y) return NULL;
    a.out = (float *)y->data;
    a.y = a.out;
    a.n = x->numel;
    dl__act_run(&a);
    nd = dl_record(op + 3, y, 1, &x, dl__activation_backward, sizeof a);
    if (nd) memcpy(nd->ctx, &a, sizeof a);
    return y;
}

/* relu(x) = max(x, 0); d/dx = [x > 0] (0 at x == 0, as torch and TF). */
DLDEF dl_tensor *dl_relu(dl_tensor *x) { return dl__activation("dl_relu", DL__RELU, x, 0); }
/* x > 0 ? x : s x; d/dx = x > 0 ? 1 : s (s at 0). torch's default s is 0.01; Keras' LeakyReLU
   layer defaults to 0.3 and keras.activations.leaky_relu to 0.2. */
DLDEF dl_tensor *dl_leaky_relu(dl_tensor *x, float negative_slope) {
    return dl__activation("dl_leaky_relu", DL__LEAKY_RELU, x, negative_slope);
}
/* x > 0 ? x : alpha (e^x - 1); d/dx = x > 0 ? 1 : alpha e^x (alpha at 0). Keras: same. */
DLDEF dl_tensor *dl_elu(dl_tensor *x, float alpha) { return dl__activation("dl_elu", DL__ELU, x, alpha); }
/* x Phi(x) = x/2 (1 + erf(x/sqrt2)); d/dx = Phi(x) + x phi(x). torch's and
   keras.activations.gelu's default; keras.ops.gelu defaults to the tanh form. */
DLDEF dl_tensor *dl_gelu(dl_tensor *x) { return dl__activation("dl_gelu", DL__GELU, x, 0); }
/* x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3);
   d/dx = (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2) with t = tanh(u). */
DLDEF dl_tensor *dl_gelu_tanh(dl_tensor *x) { return dl__activation("dl_gelu_tanh", DL__GELU_TANH, x, 0); }
/* 1 / (1 + e^-x); d/dx = y (1 - y). */
DLDEF dl_tensor *dl_sigmoid(dl_tensor *x) { return dl__activation("dl_sigmoid", DL__SIGMOID, x, 0); }
/* tanh x; d/dx = 1 - y^2. */
DLDEF dl_tensor *dl_tanh(dl_tensor *x) { return dl__activation("dl_tanh", DL__TANH, x, 0); }
/* log(1 + e^x), or x where x > 20 (torch's threshold, invisible in f32); d/dx = sigmoid(x), or 1. */
DLDEF dl_tensor *dl_softplus(dl_tensor *x) { return dl__activation("dl_softplus", DL__SOFTPLUS, x, 0); }

/* ---- Softmax ---- */

/* softmax: y_i = e^(x_i - max) / sum_j e^(x_j - max); log_softmax: y_i = x_i - max - log(sum).
   One line of n values at stride s. */
static void dl__softmax_line(const float *x, float *y, int n, ptrdiff_t s, int log_space) {
    float mx = x[0], sum = 0;
    int i;
    for (i = 1; i < n; i++) mx = x[i * s] > mx ? x[i * s] : mx;
    for (i = 0; i < n; i++) {
        float e = expf(x[i * s] - mx);
        sum += e;
        if (!log_space) y[i * s] = e;
    }
    if (log_space) { /* (x - max) - log(sum) keeps the bits that x - (max + log(sum)) would lose */
        float ls = logf(sum);
        for (i = 0; i < n; i++) y[i * s] = (x[i * s] - mx) - ls;
    } else {
        float inv = 1.0f / sum;
        for (i = 0; i < n; i++) y[i * s] *= inv;
    }
}

/* softmax: dx_i = y_i (dy_i - sum_j dy_j y_j); log_softmax: dx_i = dy_i - e^(y_i) sum_j dy_j. */
static void dl__softmax_line_backward(const float *y, const float *gy, float *gx, int n, ptrdiff_t s, int log_space) {
    float dot = 0;
    int i;
    if (log_space) {
        for (i = 0; i < n; i++) dot += gy[i * s];
        for (i = 0; i < n; i++) gx[i * s] += gy[i * s] - expf(y[i * s]) * dot;
    } else {
        for (i = 0; i < n; i++) dot += gy[i * s] * y[i * s];
        for (i = 0; i < n; i++) gx[i * s] += y[i * s] * (gy[i * s] - dot);
    }
}

typedef struct dl__softmax_ctx {
    size_t outer, inner;   /* x is [outer, len, inner] around the axis */
    int len, log_space;
} dl__softmax_ctx;

/* Runs the forward (gy == NULL: y from x) or the backward (gx += from y, gy) over every line.
   The last axis (inner == 1) is the contiguous fast path. */
static void dl__softmax_lines(const dl__softmax_ctx *c, const float *x, float *y, const float *gy, float *gx) {
    size_t o, j, line = (size_t)c->len * c->inner;
    for (o = 0; o < c->outer; o++)
        for (j = 0; j < c->inner; j++) {
            size_t at = o * line + j;
            if (c->inner == 1) {
                if (gy) dl__softmax_line_backward(y + at, gy + at, gx + at, c->len, 1, c->log_space);
                else dl__softmax_line(x + at, y + at, c->len, 1, c->log_space);
            } else {
                if (gy) dl__softmax_line_backward(y + at, gy + at, gx + at, c->len, (ptrdiff_t)c->inner, c->log_space);
                else dl__softmax_line(x + at, y + at, c->len, (ptrdiff_t)c->inner, c->log_space);
            }
        }
}

static void dl__softmax_backward(dl_node *nd) {
    float *gx = dl_grad_buf(nd->in[0]);
    if (gx) dl__softmax_lines((const dl__softmax_ctx *)nd->ctx, NULL, (float *)nd->out->data, nd->out->grad, gx);
}

/* Splits x's shape around axis (negative counts from the end) into outer, len, inner. */
static int dl__split_axis(const char *op, const dl_tensor *x, int axis, size_t *outer, int *len, size_t *inner) {
    int i;
    if (axis < 0) axis += x->ndim;
    if (axis < 0 || axis >= x->ndim) { dl__fail("%s: axis out of range for a %d-d tensor", op, x->ndim); return 0; }
    *outer = *inner = 1;
    for (i = 0; i < axis; i++) *outer *= (size_t)x->shape[i];
    for (i = axis + 1; i < x->ndim; i++) *inner *= (size_t)x->shape[i];
    *len = x->shape[axis];
    return 1;
}

static dl_tensor *dl__softmax(const char *op, dl_tensor *x, int axis, int log_space) {
    dl__softmax_ctx c;
    const float *xs;
    dl_tensor *y;
    dl_node *nd;
    if (!x) return NULL;
    if (!dl__nn_check(op, x, "x") || !dl__split_axis(op, x, axis, &c.outer, &c.len, &c.inner)) return NULL;
    c.log_space = log_space;
    xs = dl_contig_f32(x);
    y = dl_tmp_uninit(DL_F32, x->ndim, x->shape);
    if (!xs || !y) return NULL;
    if (c.len > 0) dl__softmax_lines(&c, xs, (float *)y->data, NULL, NULL);
    nd = dl_record(op + 3, y, 1, &x, dl__softmax_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return y;
}

DLDEF dl_tensor *dl_softmax(dl_tensor *x, int axis) { return dl__softmax("dl_softmax", x, axis, 0); }
DLDEF dl_tensor *dl_log_softmax(dl_tensor *x, int axis) { return dl__softmax("dl_log_softmax", x, axis, 1); }

/* ---- Losses ---- */

#define DL__IGNORE_INDEX (-100)   /* torch's default ignore_index */

typedef struct dl__ce_ctx {
    const float *z;         /* logits, contiguous [outer, C, inner] */
    const int32_t *label;   /* [outer, inner] */
    float *mx, *ls;         /* each position's max logit and log(sum(e^(z - max))) */
    size_t outer, inner;
    int classes;
    double count;           /* positions not ignored */
} dl__ce_ctx;

/* loss = mean over positions of logsumexp(z) - z[label]; dz = (softmax(z) - onehot(label)) / count. */
static void dl__cross_entropy_backward(dl_node *nd) {
    const dl__ce_ctx *c = (const dl__ce_ctx *)nd->ctx;
    float *gz = dl_grad_buf(nd->in[0]), g;
    size_t o, j, at;
    int k;
    if (!gz) return;
    g = (float)(nd->out->grad[0] / c->count);
    for (o = 0; o < c->outer; o++)
        for (j = 0; j < c->inner; j++) {
            const float *z = c->z + o * (size_t)c->classes * c->inner + j;
            float *gzp = gz + o * (size_t)c->classes * c->inner + j;
            float mx = c->mx[o * c->inner + j], ls = c->ls[o * c->inner + j];
            int label = c->label[o * c->inner + j];
            if (label == DL__IGNORE_INDEX) continue;
            for (k = 0, at = 0; k < c->classes; k++, at += c->inner) gzp[at] += g * expf((z[at] - mx) - ls);
            gzp[(size_t)label * c->inner] -= g;
        }
}

DLDEF dl_tensor *dl_cross_entropy(dl_tensor *logits, dl_tensor *labels) {
    dl__ce_ctx c;
    dl_tensor *loss;
    dl_node *nd;
    double total = 0;
    size_t o, j;
    int i, ok;
    char sz[64], sl[64];
    if (!logits || !labels) return NULL;
    if (!dl__nn_check("dl_cross_entropy", logits, "logits")) return NULL;
    if (labels->device != DL_CPU || labels->dtype != DL_I32)
        return (dl_tensor *)dl__fail("dl_cross_entropy: labels must be an i32 CPU tensor, got %s", dl_dtype_name(labels->dtype));
    ok = logits->ndim >= 2 && labels->ndim == logits->ndim - 1 && labels->shape[0] == logits->shape[0];
    for (i = 1; ok && i < labels->ndim; i++) ok = labels->shape[i] == logits->shape[i + 1];
    if (!ok)
        return (dl_tensor *)dl__fail("dl_cross_entropy: logits %s and labels %s do not match (want [N, C, ...] and [N, ...])",
                                     dl_shape_str(logits, sz, sizeof sz), dl_shape_str(labels, sl, sizeof sl));
    c.classes = logits->shape[1];
    c.outer = (size_t)logits->shape[0];
    c.inner = labels->numel / (c.outer ? c.outer : 1);
    c.z = dl_contig_f32(logits);
    c.mx = (float *)dl__tmp_alloc(labels->numel * sizeof(float));
    c.ls = (float *)dl__tmp_alloc(labels->numel * sizeof(float));
    if (dl_is_contiguous(labels)) {
        c.label = (const int32_t *)labels->data;
    } else {
        dl_tensor *copy = dl_tmp_uninit(DL_I32, labels->ndim, labels->shape);
        if (!copy || dl_copy(copy, labels) != 0) return NULL;
        c.label = (const int32_t *)copy->data;
    }
    loss = dl_tmp_uninit(DL_F32, 0, NULL);
    if (!c.z || !c.mx || !c.ls || !loss) return NULL;
    c.count = 0;
    for (o = 0; o < c.outer; o++)
        for (j = 0; j < c.inner; j++) {
            const float *z = c.z + o * (size_t)c.classes * c.inner + j;
            int label = c.label[o * c.inner + j];
            float mx, sum = 0;
            if (label == DL__IGNORE_INDEX) continue;
            if (label < 0 || label >= c.classes)
                return (dl_tensor *)dl__fail("dl_cross_entropy: label %d at position %zu is outside [0, %d)", label,
                                             o * c.inner + j, c.classes);
            mx = z[0];
            for (i = 1; i < c.classes; i++) mx = z[(size_t)i * c.inner] > mx ? z[(size_t)i * c.inner] : mx;
            for (i = 0; i < c.classes; i++) sum += expf(z[(size_t)i * c.inner] - mx);
            c.mx[o * c.inner + j] = mx;
            c.ls[o * c.inner + j] = logf(sum);
            total += (double)(mx - z[(size_t)label * c.inner]) + (double)c.ls[o * c.inner + j];
            c.count++;
        }
    ((float *)loss->data)[0] = c.count > 0 ? (float)(total / c.count) : NAN; /* torch: nan when all ignored */
    nd = dl_record("cross_entropy", loss, 1, &logits, dl__cross_entropy_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return loss;
}

enum { DL__MSE, DL__L1, DL__HUBER, DL__BCE_LOGITS };

typedef struct dl__loss_ctx {
    int kind;
    float delta;
    const float *p, *t;   /* contiguous pred (or logits) and target */
} dl__loss_ctx;

/* Elementwise losses, mean-reduced. With d = p - t:
     mse:   d^2                                   dp = 2 d                     dt = -dp
     l1:    |d|                                   dp = sign(d) (0 at 0)        dt = -dp
     huber: |d| < delta ? d^2/2 : delta (|d| - delta/2)   dp = clamp(d, -delta, delta)   dt = -dp
     bce:   max(p, 0) - p t + log(1 + e^-|p|)      dp = sigmoid(p) - t          dt = -p */
static void dl__loss_backward(dl_node *nd) {
    const dl__loss_ctx *c = (const dl__loss_ctx *)nd->ctx;
    size_t i, n = nd->in[0]->numel;
    float *gp = dl_grad_buf(nd->in[0]), *gt = dl_grad_buf(nd->in[1]), *d, g, delta = c->delta;
    const float *p = c->p, *t = c->t;
    if (n == 0 || (!gp && !gt)) return;
    g = nd->out->grad[0] / (float)n;
    d = (float *)dl__tmp_alloc(n * sizeof(float)); /* d loss_i / d p_i, times g */
    if (!d) return;
    switch (c->kind) {
    case DL__MSE: for (i = 0; i < n; i++) d[i] = 2.0f * g * (p[i] - t[i]); break;
    case DL__L1: for (i = 0; i < n; i++) d[i] = p[i] > t[i] ? g : (p[i] < t[i] ? -g : 0.0f); break;
    case DL__HUBER:
        for (i = 0; i < n; i++) {
            float e = p[i] - t[i];
            d[i] = g * (e < -delta ? -delta : (e > delta ? delta : e));
        }
        break;
    case DL__BCE_LOGITS: for (i = 0; i < n; i++) d[i] = g * (1.0f / (1.0f + expf(-p[i])) - t[i]); break;
    }
    if (gp) for (i = 0; i < n; i++) gp[i] += d[i];
    if (gt && c->kind == DL__BCE_LOGITS) for (i = 0; i < n; i++) gt[i] -= g * p[i];
    else if (gt) for (i = 0; i < n; i++) gt[i] -= d[i];
}

static dl_tensor *dl__loss(const char *op, int kind, dl_tensor *pred, dl_tensor *target, float delta) {
    dl__loss_ctx c;
    dl_tensor *loss, *in[2];
    dl_node *nd;
    double sum = 0;
    size_t i, n;
    char sp[64], st[64];
    if (!pred || !target) return NULL;
    if (!dl__nn_check(op, pred, "input") || !dl__nn_check(op, target, "target")) return NULL;
    if (!dl_same_shape(pred, target))
        return (dl_tensor *)dl__fail("%s: input %s and target %s have different shapes", op,
                                     dl_shape_str(pred, sp, sizeof sp), dl_shape_str(target, st, sizeof st));
    if (kind == DL__HUBER && !(delta > 0)) return (dl_tensor *)dl__fail("%s: delta must be positive, got %g", op, (double)delta);
    c.kind = kind;
    c.delta = delta;
    c.p = dl_contig_f32(pred);
    c.t = dl_contig_f32(target);
    loss = dl_tmp_uninit(DL_F32, 0, NULL);
    if (!c.p || !c.t || !loss) return NULL;
    n = pred->numel;
    switch (kind) {
    case DL__MSE: for (i = 0; i < n; i++) sum += (double)(c.p[i] - c.t[i]) * (double)(c.p[i] - c.t[i]); break;
    case DL__L1: for (i = 0; i < n; i++) sum += fabs((double)c.p[i] - (double)c.t[i]); break;
    case DL__HUBER:
        for (i = 0; i < n; i++) {
            double e = fabs((double)c.p[i] - (double)c.t[i]);
            sum += e < delta ? 0.5 * e * e : delta * (e - 0.5 * delta);
        }
        break;
    case DL__BCE_LOGITS:
        for (i = 0; i < n; i++) {
            float x = c.p[i];
            sum += (double)((x > 0 ? x : 0.0f) - x * c.t[i] + log1pf(expf(-fabsf(x))));
        }
        break;
    }
    ((float *)loss->data)[0] = n ? (float)(sum / (double)n) : NAN; /* torch: the mean of nothing is nan */
    in[0] = pred;
    in[1] = target;
    nd = dl_record(op + 3, loss, 2, in, dl__loss_backward, sizeof c);
    if (nd) memcpy(nd->ctx, &c, sizeof c);
    return loss;
}

DLDEF dl_tensor *dl_mse(dl_tensor *pred, dl_tensor *target) { return dl__loss("dl_mse", DL__MSE, pred, target, 0); }
DLDEF dl_tensor *dl_l1(dl_tensor *pred, dl_tensor *target) { return dl__loss("dl_l1", DL__L1, pred, target, 0); }
DLDEF dl_tensor *dl_huber(dl_tensor *pred, dl_tensor *target, float delta) {
    return dl__loss("dl_huber", DL__HUBER, pred, target, delta);
}
DLDEF dl_tensor *dl_bce_with_logits(dl_tensor *logits, dl_tensor *targets) {
    return dl__loss("dl_bce_with_logits", DL__BCE_LOGITS, logits, targets, 0);
}
