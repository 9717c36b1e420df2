/* ==== Elementwise math, reductions, shape ops ================================================= */

/* ---- Argument checks (each sets a message naming the op and returns 0 on failure) ---- */

static int dl__check_cpu(const char *op, const dl_tensor *x) {
    if (x->device != DL_CPU) { dl__fail("%s: tensor is not on the CPU", op); return 0; }
    return 1;
}

static int dl__check_f32(const char *op, const dl_tensor *x) {
    if (!dl__check_cpu(op, x)) return 0;
    if (x->dtype != DL_F32) { dl__fail("%s: need an f32 tensor, got %s", op, dl_dtype_name(x->dtype)); return 0; }
    return 1;
}

/* An axis in [-ndim, ndim) made non-negative; -1 (with a message) when out of range. */
static int dl__axis(const char *op, int axis, int ndim) {
    if (axis < -ndim || axis >= ndim) { dl__fail("%s: axis %d out of range for a %d-d tensor", op, axis, ndim); return -1; }
    return axis < 0 ? axis + ndim : axis;
}

/* Product of the sizes before and after axis: a contiguous tensor is then [outer, size, inner]. */
static void dl__outer_inner(const dl_tensor *t, int axis, size_t *outer, size_t *inner) {
    int i;
    *outer = *inner = 1;
    for (i = 0; i < axis; i++) *outer *= (size_t)t->shape[i];
    for (i = axis + 1; i < t->ndim; i++) *inner *= (size_t)t->shape[i];
}

/* t's elements in row-major order, any dtype: t's own data when contiguous, else an arena copy. */
static const void *dl__contig_data(const dl_tensor *t) {
    size_t i, es = dl_dtype_size(t->dtype);
    char *p;
    if (dl_is_contiguous(t)) return t->data;
    if (t->dtype == DL_F32) return dl_contig_f32(t);
    p = (char *)dl__tmp_alloc(t->numel * es);
    if (p) for (i = 0; i < t->numel; i++) memcpy(p + i * es, (const char *)t->data + dl__offset_of(t, i) * (ptrdiff_t)es, es);
    return p;
}

/* ---- The row iterator ----
   Walks a shape row by row for up to four operands, each with its own element strides (0 along
   axes where it is broadcast). Size-1 axes are dropped and neighbouring axes that every operand
   steps through contiguously are merged, so a same-shape contiguous op is one long row,
   x[B, N] + b[N] is B rows of N, and inner loops see strides 1 or 0 whenever they can:
       dl__iter it; dl__iter_begin(&it, ndim, shape); dl__iter_op(&it, strides_a); ...;
       dl__iter_ready(&it);
       for (r = 0; r < it.rows; r++, dl__iter_next(&it)) row(base_a + it.off[0], it.inner[0], ..., it.n); */

#define DL__MAX_OPS 4

typedef struct dl__iter {
    int nops, ndim;
    ptrdiff_t shape[DL_MAX_DIMS];
    ptrdiff_t strides[DL__MAX_OPS][DL_MAX_DIMS];
    ptrdiff_t idx[DL_MAX_DIMS];
    size_t rows;                   /* rows to visit */
    ptrdiff_t n;                   /* elements per row */
    ptrdiff_t inner[DL__MAX_OPS];  /* each operand's stride along a row */
    ptrdiff_t off[DL__MAX_OPS];    /* each operand's offset of the current row's first element */
} dl__iter;

static void dl__iter_begin(dl__iter *it, int ndim, const int *shape) {
    int i;
    memset(it, 0, sizeof *it);
    it->ndim = ndim;
    for (i = 0; i < ndim; i++) it->shape[i] = shape[i];
}

static void dl__iter_op(dl__iter *it, const ptrdiff_t *strides) {
    int i;
    for (i = 0; i < it->ndim; i++) it->strides[it->nops][i] = strides[i];
    it->nops++;
}

static void dl__iter_ready(dl__iter *it) {
    int i, k, nd = 0, m = 0;
    size_t numel = 1;
    for (i = 0; i < it->ndim; i++) { /* drop size-1 axes */
        numel *= (size_t)it->shape[i];
        if (it->shape[i] == 1) continue;
        it->shape[nd] = it->shape[i];
        for (k = 0; k < it->nops; k++) it->strides[k][nd] = it->strides[k][i];
        nd++;
    }
    for (i = 1; i < nd; i++) { /* merge axis i into the kept axis m when all operands allow it */
        int merge = 1;
        for (k = 0; k < it->nops; k++)
            if (it->strides[k][m] != it->strides[k][i] * it->shape[i]) merge = 0;
        if (merge) it->shape[m] *= it->shape[i];
        else it->shape[++m] = it->shape[i];
        for (k = 0; k < it->nops; k++) it->strides[k][m] = it->strides[k][i];
    }
    if (nd == 0) { /* a single element */
        it->shape[0] = 1;
        for (k = 0; k < it->nops; k++) it->strides[k][0] = 0;
        m = 0;
    }
    it->ndim = m + 1;
    it->n = it->shape[m];
    it->rows = numel ? numel / (size_t)it->n : 0;
    for (k = 0; k < it->nops; k++) it->inner[k] = it->strides[k][m];
}

static void dl__iter_next(dl__iter *it) {
    int i, k;
    for (i = it->ndim - 2; i >= 0; i--) { /* odometer over the outer axes */
        for (k = 0; k < it->nops; k++) it->off[k] += it->strides[k][i];
        if (++it->idx[i] < it->shape[i]) return;
        for (k = 0; k < it->nops; k++) it->off[k] -= it->strides[k][i] * it->shape[i];
        it->idx[i] = 0;
    }
}

/* ---- Broadcasting ---- */

/* Strides that read a tensor of shape xshape (element strides xst) at the index of an nd-d
   broadcast result: aligned at the last axis, 0 where x lacks the axis or has size 1. */
static void dl__bcast_strides(int xnd, const int *xshape, const ptrdiff_t *xst, int nd, ptrdiff_t *out) {
    int i;
    for (i = 0; i < nd; i++) {
        int j = i - (nd - xnd);
        out[i] = (j >= 0 && xshape[j] != 1) ? xst[j] : 0;
    }
}

static int dl__broadcast_shape(const char *op, const dl_tensor *a, const dl_tensor *b, int *nd, int *shape) {
    int i;
    *nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (i = 0; i < *nd; i++) {
        int ia = i - (*nd - a->ndim), ib = i - (*nd - b->ndim);
        int sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1) {
            char s1[64], s2[64];
            dl__fail("%s: shapes %s and %s cannot broadcast (axis %d: %d vs %d)", op,
                     dl_shape_str(a, s1, sizeof s1), dl_shape_str(b, s2, sizeof s2), i, sa, sb);
            return 0;
        }
        shape[i] = sa == 1 ? sb : sa;
    }
    return 1;
}

/* ---- Binary ops ---- */

enum { DL__ADD, DL__SUB, DL__MUL, DL__DIV, DL__MIN, DL__MAX };
static const char *const dl__binary_names[] = {"dl_add", "dl_sub", "dl_mul", "dl_div", "dl_minimum", "dl_maximum"};

/* o[i] = EXPR for one row, where A and B are the i-th elements of a and b (strides sa, sb).
   The stride patterns get their own loops so the compiler vectorizes the common ones. */
#define DL__BINARY_ROW(EXPR)                                                                               \
    do {                                                                                                   \
        if (sa == 1 && sb == 1) for (i = 0; i < n; i++) { float A = a[i], B = b[i]; o[i] = (EXPR); }        \
        else if (sa == 1 && sb == 0) { float B = b[0]; for (i = 0; i < n; i++) { float A = a[i]; o[i] = (EXPR); } } \
        else if (sa == 0 && sb == 1) { float A = a[0]; for (i = 0; i < n; i++) { float B = b[i]; o[i] = (EXPR); } } \
        else for (i = 0; i < n; i++) { float A = a[i * sa], B = b[i * sb]; o[i] = (EXPR); }               \
    } while (0)

static void dl__binary_row(int op, float *o, const float *a, ptrdiff_t sa, const float *b, ptrdiff_t sb, ptrdiff_t n) {
    ptrdiff_t i;
    switch (op) {
    case DL__ADD: DL__BINARY_ROW(A + B); break;
    case DL__SUB: DL__BINARY_ROW(A - B); break;
    case DL__MUL: DL__BINARY_ROW(A * B); break;
    case DL__DIV: DL__BINARY_ROW(A / B); break;
    case DL__MIN: DL__BINARY_ROW((A != A || A < B) ? A : B); break; /* a NaN on either side wins */
    case DL__MAX: DL__BINARY_ROW((A != A || A > B) ? A : B); break;
    }
}

/* gx[i] += EXPR for one row, where G, A, B are the i-th output gradient, a and b. x's gradient
   steps 1 along the row, or 0 when x is broadcast along it: then the row is summed first. */
#define DL__GRAD_ROW(EXPR)                                                                                 \
    do {                                                                                                   \
        if (sx == 0) {                                                                                     \
            float s = 0;                                                                                   \
            for (i = 0; i < n; i++) { float G = g[i], A = a[i * sa], B = b[i * sb]; (void)A; (void)B; s += (EXPR); } \
            gx[0] += s;                                                                                    \
        } else {                                                                                           \
            for (i = 0; i < n; i++) { float G = g[i], A = a[i * sa], B = b[i * sb]; (void)A; (void)B; gx[i * sx] += (EXPR); } \
        }                                                                                                  \
    } while (0)

/* The gradient of a op b with respect to a (side 0) or b (side 1); at ties of minimum/maximum
   each side gets half, as in PyTorch. */
static void dl__binary_grad_row(int op, int side, float *gx, ptrdiff_t sx, const float *g, const float *a,
                                ptrdiff_t sa, const float *b, ptrdiff_t sb, ptrdiff_t n) {
    ptrdiff_t i;
    switch (op * 2 + side) {
    case DL__ADD * 2: case DL__ADD * 2 + 1: case DL__SUB * 2: DL__GRAD_ROW(G); break;
    case DL__SUB * 2 + 1: DL__GRAD_ROW(-G); break;
    case DL__MUL * 2: DL__GRAD_ROW(G * B); break;
    case DL__MUL * 2 + 1: DL__GRAD_ROW(G * A); break;
    case DL__DIV * 2: DL__GRAD_ROW(G / B); break;
    case DL__DIV * 2 + 1: DL__GRAD_ROW(-G * A / (B * B)); break;
    case DL__MIN * 2: DL__GRAD_ROW(A < B ? G : A == B ? 0.5f * G : 0.0f); break;
    case DL__MIN * 2 + 1: DL__GRAD_ROW(B < A ? G : A == B ? 0.5f * G : 0.0f); break;
    case DL__MAX * 2: DL__GRAD_ROW(A > B ? G : A == B ? 0.5f * G : 0.0f); break;
    case DL__MAX * 2 + 1: DL__GRAD_ROW(B > A ? G : A == B ? 0.5f * G : 0.0f); break;
    }
}

static void dl__binary_backward(dl_node *n) {
    int op = *(const int *)n->ctx, side;
    dl_tensor *a = n->in[0], *b = n->in[1], *out = n->out;
    ptrdiff_t sa[DL_MAX_DIMS], sb[DL_MAX_DIMS];
    dl__bcast_strides(a->ndim, a->shape, a->strides, out->ndim, sa);
    dl__bcast_strides(b->ndim, b->shape, b->strides, out->ndim, sb);
    for (side = 0; side < 2; side++) {
        dl_tensor *x = n->in[side];
        float *gx = dl_grad_buf(x);
        ptrdiff_t xst[DL_MAX_DIMS], sx[DL_MAX_DIMS];
        dl__iter it;
        size_t r;
        if (!gx) continue;
        dl__contig_strides(x->ndim, x->shape, xst);
        dl__bcast_strides(x->ndim, x->shape, xst, out->ndim, sx);
        dl__iter_begin(&it, out->ndim, out->shape);
        dl__iter_op(&it, out->strides); /* out's gradient has out's (contiguous) strides */
        dl__iter_op(&it, sa);
        dl__iter_op(&it, sb);
        dl__iter_op(&it, sx);
        dl__iter_ready(&it);
        for (r = 0; r < it.rows; r++, dl__iter_next(&it))
            dl__binary_grad_row(op, side, gx + it.off[3], it.inner[3], out->grad + it.off[0],
                                (const float *)a->data + it.off[1], it.inner[1],
                                (const float *)b->data + it.off[2], it.inner[2], it.n);
    }
}

static dl_tensor *dl__binary(int op, dl_tensor *a, dl_tensor *b) {
    const char *name = dl__binary_names[op];
    int nd, shape[DL_MAX_DIMS] = {0};
    ptrdiff_t sa[DL_MAX_DIMS], sb[DL_MAX_DIMS];
    dl_tensor *out, *in[2];
    dl_node *node;
    dl__iter it;
    size_t r;
    if (!a || !b) return NULL;
    if (!dl__check_f32(name, a) || !dl__check_f32(name, b)) return NULL;
    if (!dl__broadcast_shape(name, a, b, &nd, shape)) return NULL;
    out = dl_tmp_uninit(DL_F32, nd, shape);
    if (!out) return NULL;
    dl__bcast_strides(a->ndim, a->shape, a->strides, nd, sa);
    dl__bcast_strides(b->ndim, b->shape, b->strides, nd, sb);
    dl__iter_begin(&it, nd, shape);
    dl__iter_op(&it, out->strides);
    dl__iter_op(&it, sa);
    dl__iter_op(&it, sb);
    dl__iter_ready(&it);
    for (r = 0; r < it.rows; r++, dl__iter_next(&it)) /* out is contiguous: its rows step 1 */
        dl__binary_row(op, (float *)out->data + it.off[0], (const float *)a->data + it.off[1], it.inner[1],
                       (const float *)b->data + it.off[2], it.inner[2], it.n);
    in[0] = a;
    in[1] = b;
    node = dl_record(name + 3, out, 2, in, dl__binary_backward, sizeof(int)); /* "dl_add" -> "add" */
    if (node) *(int *)node->ctx = op;
    return out;
}

DLDEF dl_tensor *dl_add(dl_tensor *a, dl_tensor *b) { return dl__binary(DL__ADD, a, b); }
DLDEF dl_tensor *dl_sub(dl_tensor *a, dl_tensor *b) { return dl__binary(DL__SUB, a, b); }
DLDEF dl_tensor *dl_mul(dl_tensor *a, dl_tensor *b) { return dl__binary(DL__MUL, a, b); }
DLDEF dl_tensor *dl_div(dl_tensor *a, dl_tensor *b) { return dl__binary(DL__DIV, a, b); }
DLDEF dl_tensor *dl_minimum(dl_tensor *a, dl_tensor *b) { return dl__binary(DL__MIN, a, b); }
DLDEF dl_tensor *dl_maximum(dl_tensor *a, dl_tensor *b) { return dl__binary(DL__MAX, a, b); }

/* ---- Unary ops (including those with a float scalar) ----
   y = f(x) elementwise on a contiguous copy of x; backward uses x or y as the formula needs. */

enum { DL__AFFINE, DL__POW, DL__EXP, DL__LOG, DL__SQRT, DL__ABS, DL__CLAMP };

typedef struct dl__unary_ctx {
    int op;
    float p, q;        /* affine: y = p x + q; pow: exponent p; clamp: [p, q] */
    const float *x;    /* x's elements, contiguous */
} dl__unary_ctx;

static void dl__unary_backward(dl_node *n) {
    const dl__unary_ctx *c = (const dl__unary_ctx *)n->ctx;
    const float *x = c->x, *y = (const float *)n->out->data, *g = n->out->grad;
    float *gx = dl_grad_buf(n->in[0]), p = c->p, q = c->q;
    size_t i, len = n->out->numel;
    if (!gx) return;
    switch (c->op) {
    case DL__AFFINE: for (i = 0; i < len; i++) gx[i] += p * g[i]; break;
    case DL__POW:
        if (p == 0.0f) break; /* d(x^0) = 0 everywhere, also at x = 0 (PyTorch) */
        if (p == 2.0f) for (i = 0; i < len; i++) gx[i] += 2.0f * x[i] * g[i];
        else for (i = 0; i < len; i++) gx[i] += g[i] * p * powf(x[i], p - 1.0f);
        break;
    case DL__EXP: for (i = 0; i < len; i++) gx[i] += g[i] * y[i]; break;
    case DL__LOG: for (i = 0; i < len; i++) gx[i] += g[i] / x[i]; break;
    case DL__SQRT: for (i = 0; i < len; i++) gx[i] += g[i] / (2.0f * y[i]); break;
    case DL__ABS: for (i = 0; i < len; i++) gx[i] += x[i] > 0 ? g[i] : x[i] < 0 ? -g[i] : 0.0f; break;
    case DL__CLAMP: for (i = 0; i < len; i++) gx[i] += (x[i] >= p && x[i] <= q) ? g[i] : 0.0f; break;
    }
}

static dl_tensor *dl__unary(const char *name, int op, dl_tensor *xt, float p, float q) {
    dl_tensor *out;
    const float *x;
    float *y;
    size_t i, len;
    dl_node *node;
    if (!xt) return NULL;
    if (!dl__check_f32(name, xt)) return NULL;
    x = dl_contig_f32(xt);
    out = dl_tmp_uninit(DL_F32, xt->ndim, xt->shape);
    if (!x || !out) return NULL;
    y = (float *)out->data;
    len = out->numel;
    switch (op) {
    case DL__AFFINE: /* the special cases keep -0.0 and skip needless work */
        if (q == 0.0f) for (i = 0; i < len; i++) y[i] = p * x[i];
        else if (p == 1.0f) for (i = 0; i < len; i++) y[i] = x[i] + q;
        else for (i = 0; i < len; i++) y[i] = p * x[i] + q;
        break;
    case DL__POW:
        if (p == 2.0f) for (i = 0; i < len; i++) y[i] = x[i] * x[i];
        else for (i = 0; i < len; i++) y[i] = powf(x[i], p);
        break;
    case DL__EXP: for (i = 0; i < len; i++) y[i] = expf(x[i]); break;
    case DL__LOG: for (i = 0; i < len; i++) y[i] = logf(x[i]); break;
    case DL__SQRT: for (i = 0; i < len; i++) y[i] = sqrtf(x[i]); break;
    case DL__ABS: for (i = 0; i < len; i++) y[i] = fabsf(x[i]); break;
    case DL__CLAMP: /* NaN stays NaN; lo > hi gives hi everywhere, like torch.clamp */
        for (i = 0; i < len; i++) { float v = x[i] < p ? p : x[i]; y[i] = v > q ? q : v; }
        break;
    }
    node = dl_record(name + 3, out, 1, &xt, dl__unary_backward, sizeof(dl__unary_ctx));
    if (node) {
        dl__unary_ctx *c = (dl__unary_ctx *)node->ctx;
        c->op = op;
        c->p = p;
        c->q = q;
        c->x = x;
    }
    return out;
}

DLDEF dl_tensor *dl_add_scalar(dl_tensor *x, float s) { return dl__unary("dl_add_scalar", DL__AFFINE, x, 1.0f, s); }
DLDEF dl_tensor *dl_mul_scalar(dl_tensor *x, float s) { return dl__unary("dl_mul_scalar", DL__AFFINE, x, s, 0.0f); }
DLDEF dl_tensor *dl_rsub_scalar(float s, dl_tensor *x) { return dl__unary("dl_rsub_scalar", DL__AFFINE, x, -1.0f, s); }
DLDEF dl_tensor *dl_neg(dl_tensor *x) { return dl__unary("dl_neg", DL__AFFINE, x, -1.0f, 0.0f); }
DLDEF dl_tensor *dl_pow(dl_tensor *x, float p) { return dl__unary("dl_pow", DL__POW, x, p, 0.0f); }
DLDEF dl_tensor *dl_exp(dl_tensor *x) { return dl__unary("dl_exp", DL__EXP, x, 0.0f, 0.0f); }
DLDEF dl_tensor *dl_log(dl_tensor *x) { return dl__unary("dl_log", DL__LOG, x, 0.0f, 0.0f); }
DLDEF dl_tensor *dl_sqrt(dl_tensor *x) { return dl__unary("dl_sqrt", DL__SQRT, x, 0.0f, 0.0f); }
DLDEF dl_tensor *dl_abs(dl_tensor *x) { return dl__unary("dl_abs", DL__ABS, x, 0.0f, 0.0f); }
DLDEF dl_tensor *dl_clamp(dl_tensor *x, float lo, float hi) { return dl__unary("dl_clamp", DL__CLAMP, x, lo, hi); }

/* ---- Reductions ----
   Every reduction walks x once (in memory order, through its strides) with the row iterator and
   a second operand that indexes the result: the result's contiguous strides placed at x's axes,
   0 along reduced axes. Reducing the last axis then sums rows into one value, reducing the
   first axis adds whole rows into the result; both are plain stride-1 loops. Sums accumulate
   in double. */

typedef struct dl__reduce {
    int kind;                         /* 0 sum, 1 mean, 2 var, 3 max */
    int ndim, shape[DL_MAX_DIMS];     /* the result's shape (with or without kept axes) */
    ptrdiff_t rst[DL_MAX_DIMS];       /* the result's strides at x's index, 0 along reduced axes */
    size_t count;                     /* elements of x reduced into each result element */
    float scale;                      /* backward: sum 1, mean 1/N, var 2/(N - correction) */
    float *res;                       /* result values: the maxima of max, the means of var */
} dl__reduce;

static int dl__reduce_setup(const char *op, const dl_tensor *x, int naxes, const int *axes, int keepdim, dl__reduce *r) {
    int i, reduced[DL_MAX_DIMS] = {0}, kept[DL_MAX_DIMS];
    memset(r, 0, sizeof *r);
    if (naxes < 0 || naxes > DL_MAX_DIMS || (naxes > 0 && !axes)) { dl__fail("%s: bad naxes %d", op, naxes); return 0; }
    for (i = 0; i < x->ndim; i++) reduced[i] = naxes == 0;
    for (i = 0; i < naxes; i++) {
        int ax;
        if (x->ndim == 0 && (axes[i] == 0 || axes[i] == -1)) continue; /* a 0-d tensor has axis 0 (torch) */
        ax = dl__axis(op, axes[i], x->ndim);
        if (ax < 0) return 0;
        if (reduced[ax]) { dl__fail("%s: axis %d given twice", op, axes[i]); return 0; }
        reduced[ax] = 1;
    }
    r->count = 1;
    for (i = 0; i < x->ndim; i++) {
        kept[i] = reduced[i] ? 1 : x->shape[i];
        if (reduced[i]) r->count *= (size_t)x->shape[i];
        if (!reduced[i] || keepdim) r->shape[r->ndim++] = kept[i];
    }
    dl__contig_strides(x->ndim, kept, r->rst);
    for (i = 0; i < x->ndim; i++) if (reduced[i]) r->rst[i] = 0;
    return 1;
}

/* What one pass over x does, per element v of x and j of the result. */
enum {
    DL__R_SUM,       /* acc[j] += v */
    DL__R_SQDEV,     /* acc[j] += (v - res[j])^2 */
    DL__R_MAX,       /* res[j] = max(res[j], v), NaN wins */
    DL__R_COUNT,     /* acc[j] += (v == res[j]) */
    DL__R_GRAD_SUM,  /* gx += scale g[j] */
    DL__R_GRAD_VAR,  /* gx += scale g[j] (v - res[j]) */
    DL__R_GRAD_MAX   /* gx += g[j] / acc[j] where v == res[j] */
};

/* Sum of v[i * sv] for i < n in double, or of (v[i * sv] - *mean)^2 when mean is given. Four
   running sums keep the adds independent (about 3x faster than one dependency chain). */
static double dl__reduce_row_sum(const float *v, ptrdiff_t sv, ptrdiff_t n, const float *mean) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0, m = mean ? *mean : 0.0, d0, d1, d2, d3;
    ptrdiff_t i;
    for (i = 0; i + 3 < n; i += 4) {
        d0 = v[i * sv] - m; d1 = v[(i + 1) * sv] - m; d2 = v[(i + 2) * sv] - m; d3 = v[(i + 3) * sv] - m;
        if (mean) { d0 *= d0; d1 *= d1; d2 *= d2; d3 *= d3; }
        s0 += d0; s1 += d1; s2 += d2; s3 += d3;
    }
    for (; i < n; i++) { d0 = v[i * sv] - m; s0 += mean ? d0 * d0 : d0; }
    return (s0 + s1) + (s2 + s3);
}

/* Maximum of v[i * sv] for i < n (n >= 1), NaN if any is NaN: four running maxima and a NaN
   flag, so no element waits for the previous comparison. */
static float dl__reduce_row_max(const float *v, ptrdiff_t sv, ptrdiff_t n) {
    float m0 = v[0], m1 = v[0], m2 = v[0], m3 = v[0], a0, a1, a2, a3;
    int nan = 0;
    ptrdiff_t i;
    for (i = 0; i + 3 < n; i += 4) {
        a0 = v[i * sv]; a1 = v[(i + 1) * sv]; a2 = v[(i + 2) * sv]; a3 = v[(i + 3) * sv];
        m0 = a0 > m0 ? a0 : m0; m1 = a1 > m1 ? a1 : m1; m2 = a2 > m2 ? a2 : m2; m3 = a3 > m3 ? a3 : m3;
        nan |= (a0 != a0) | (a1 != a1) | (a2 != a2) | (a3 != a3);
    }
    for (; i < n; i++) { a0 = v[i * sv]; m0 = a0 > m0 ? a0 : m0; nan |= a0 != a0; }
    m0 = m1 > m0 ? m1 : m0;
    m2 = m3 > m2 ? m3 : m2;
    return nan ? NAN : m2 > m0 ? m2 : m0;
}

static void dl__reduce_pass(int kind, const dl_tensor *x, const dl__reduce *r, double *acc, const float *g, float *gx) {
    ptrdiff_t gst[DL_MAX_DIMS], i;
    float *res = r->res, scale = r->scale;
    dl__iter it;
    size_t row;
    dl__contig_strides(x->ndim, x->shape, gst);
    dl__iter_begin(&it, x->ndim, x->shape);
    dl__iter_op(&it, x->strides);
    dl__iter_op(&it, r->rst);
    dl__iter_op(&it, gst);
    dl__iter_ready(&it);
    for (row = 0; row < it.rows; row++, dl__iter_next(&it)) {
        const float *v = (const float *)x->data + it.off[0];
        ptrdiff_t sv = it.inner[0], j = it.off[1], sj = it.inner[1], n = it.n;
        float *gxr = gx ? gx + it.off[2] : NULL; /* x's gradient is contiguous: steps 1 */
        switch (kind) {
        case DL__R_SUM:
            if (sj == 0) acc[j] += dl__reduce_row_sum(v, sv, n, NULL);
            else for (i = 0; i < n; i++) acc[j + i * sj] += v[i * sv];
            break;
        case DL__R_SQDEV:
            if (sj == 0) acc[j] += dl__reduce_row_sum(v, sv, n, &res[j]);
            else for (i = 0; i < n; i++) { double d = (double)v[i * sv] - res[j + i * sj]; acc[j + i * sj] += d * d; }
            break;
        case DL__R_MAX: /* a NaN wins: once m is NaN, a > m is false and m stays */
            if (sj == 0) {
                float m = dl__reduce_row_max(v, sv, n);
                res[j] = (m > res[j] || m != m) ? m : res[j];
            } else {
                for (i = 0; i < n; i++) {
                    float a = v[i * sv], m = res[j + i * sj];
                    res[j + i * sj] = (a > m || a != a) ? a : m;
                }
            }
            break;
        case DL__R_COUNT:
            for (i = 0; i < n; i++) acc[j + i * sj] += v[i * sv] == res[j + i * sj];
            break;
        case DL__R_GRAD_SUM:
            for (i = 0; i < n; i++) gxr[i] += scale * g[j + i * sj];
            break;
        case DL__R_GRAD_VAR:
            for (i = 0; i < n; i++) gxr[i] += scale * g[j + i * sj] * (v[i * sv] - res[j + i * sj]);
            break;
        case DL__R_GRAD_MAX:
            for (i = 0; i < n; i++)
                if (v[i * sv] == res[j + i * sj]) gxr[i] += g[j + i * sj] / (float)acc[j + i * sj];
            break;
        }
    }
}

static void dl__reduce_backward(dl_node *n) {
    const dl__reduce *r = (const dl__reduce *)n->ctx;
    dl_tensor *x = n->in[0];
    float *gx = dl_grad_buf(x);
    double *count;
    if (!gx) return;
    if (r->kind < 2) { dl__reduce_pass(DL__R_GRAD_SUM, x, r, NULL, n->out->grad, gx); return; }
    if (r->kind == 2) { dl__reduce_pass(DL__R_GRAD_VAR, x, r, NULL, n->out->grad, gx); return; }
    /* max: the gradient is shared evenly by all elements equal to the maximum */
    count = (double *)dl__tmp_alloc(n->out->numel * sizeof(double));
    if (!count) return;
    memset(count, 0, n->out->numel * sizeof(double));
    dl__reduce_pass(DL__R_COUNT, x, r, count, NULL, NULL);
    dl__reduce_pass(DL__R_GRAD_MAX, x, r, count, n->out->grad, gx);
}

static dl_tensor *dl__reduction(const char *name, int kind, dl_tensor *x, int naxes, const int *axes, int correction, int keepdim) {
    dl__reduce r;
    dl_tensor *out;
    double *acc = NULL;
    float *o;
    size_t i, m;
    dl_node *node;
    if (!x) return NULL;
    if (!dl__check_f32(name, x) || !dl__reduce_setup(name, x, naxes, axes, keepdim, &r)) return NULL;
    r.kind = kind;
    if (kind == 3 && r.count == 0) return (dl_tensor *)dl__fail("%s: cannot reduce over an empty axis", name);
    out = dl_tmp_uninit(DL_F32, r.ndim, r.shape);
    if (!out) return NULL;
    o = (float *)out->data;
    m = out->numel;
    if (kind == 3) {
        for (i = 0; i < m; i++) o[i] = -INFINITY;
        r.res = o;
        dl__reduce_pass(DL__R_MAX, x, &r, NULL, NULL, NULL);
    } else {
        acc = (double *)dl__tmp_alloc(m * sizeof(double));
        if (!acc) return NULL;
        memset(acc, 0, m * sizeof(double));
        dl__reduce_pass(DL__R_SUM, x, &r, acc, NULL, NULL);
        r.scale = kind == 0 ? 1.0f : (float)(1.0 / (double)r.count); /* 0 elements: 0 * inf = NaN, as torch */
        for (i = 0; i < m; i++) o[i] = (float)(acc[i] * (kind == 0 ? 1.0 : 1.0 / (double)r.count));
    }
    if (kind == 2) { /* second pass: squared deviations from the mean */
        double denom = (double)r.count - (double)correction;
        if (denom < 0) denom = 0; /* torch: max(0, N - correction); 0 gives inf or NaN */
        r.res = (float *)dl__tmp_alloc(m * sizeof(float));
        if (!r.res) return NULL;
        memcpy(r.res, o, m * sizeof(float));
        memset(acc, 0, m * sizeof(double));
        dl__reduce_pass(DL__R_SQDEV, x, &r, acc, NULL, NULL);
        for (i = 0; i < m; i++) o[i] = (float)(acc[i] / denom);
        r.scale = (float)(2.0 / denom);
    }
    node = dl_record(name + 3, out, 1, &x, dl__reduce_backward, sizeof(dl__reduce));
    if (node) *(dl__reduce *)node->ctx = r;
    return out;
}

DLDEF dl_tensor *dl_sum(dl_tensor *x, int naxes, const int *axes, int keepdim) { return dl__reduction("dl_sum", 0, x, naxes, axes, 0, keepdim); }
DLDEF dl_tensor *dl_mean(dl_tensor *x, int naxes, const int *axes, int keepdim) { return dl__reduction("dl_mean", 1, x, naxes, axes, 0, keepdim); }
DLDEF dl_tensor *dl_var(dl_tensor *x, int naxes, const int *axes, int correction, int keepdim) { return dl__reduction("dl_var", 2, x, naxes, axes, correction, keepdim); }
DLDEF dl_tensor *dl_max(dl_tensor *x, int naxes, const int *axes, int keepdim) { return dl__reduction("dl_max", 3, x, naxes, axes, 0, keepdim); }
DLDEF dl_tensor *dl_sum_all(dl_tensor *x) { return dl__reduction("dl_sum_all", 0, x, 0, NULL, 0, 0); }
DLDEF dl_tensor *dl_mean_all(dl_tensor *x) { return dl__reduction("dl_mean_all", 1, x, 0, NULL, 0, 0); }

DLDEF dl_tensor *dl_argmax(dl_tensor *x, int axis, int keepdim) {
    dl__reduce r;
    dl__iter it;
    dl_tensor *out;
    int32_t *o;
    ptrdiff_t step, i, k;
    int len, shape1[DL_MAX_DIMS];
    size_t row;
    if (!x) return NULL;
    if (!dl__check_f32("dl_argmax", x) || (axis = dl__axis("dl_argmax", axis, x->ndim)) < 0) return NULL;
    if (x->shape[axis] == 0) return (dl_tensor *)dl__fail("dl_argmax: cannot reduce over an empty axis");
    if (!dl__reduce_setup("dl_argmax", x, 1, &axis, keepdim, &r)) return NULL;
    out = dl_tmp_uninit(DL_I32, r.ndim, r.shape);
    if (!out) return NULL;
    o = (int32_t *)out->data;
    /* Walk x with the reduced axis squeezed to 1 (one visit per result) and scan along it. */
    len = x->shape[axis];
    step = x->strides[axis];
    memcpy(shape1, x->shape, sizeof shape1);
    shape1[axis] = 1;
    dl__iter_begin(&it, x->ndim, shape1);
    dl__iter_op(&it, x->strides);
    dl__iter_op(&it, r.rst);
    dl__iter_ready(&it);
    for (row = 0; row < it.rows; row++, dl__iter_next(&it)) {
        for (i = 0; i < it.n; i++) {
            const float *v = (const float *)x->data + it.off[0] + i * it.inner[0];
            float best = v[0];
            int32_t bi = 0;
            for (k = 1; k < len; k++) {
                float a = v[k * step];
                if (a > best || (a != a && best == best)) { best = a; bi = (int32_t)k; } /* first max, NaN wins */
            }
            o[it.off[1] + i * it.inner[1]] = bi;
        }
    }
    return out;
}

/* ---- Shape and index ops ---- */

typedef struct dl__shape_ctx {
    int axis;
    const int32_t *idx;   /* index_select: the indices, contiguous */
} dl__shape_ctx;

static void dl__concat_backward(dl_node *n) {
    int axis = ((const dl__shape_ctx *)n->ctx)->axis, k;
    size_t outer, inner, total = (size_t)n->out->shape[axis], off = 0, o, t;
    dl__outer_inner(n->out, axis, &outer, &inner);
    for (k = 0; k < n->n_in; k++) {
        dl_tensor *x = n->in[k];
        size_t block = (size_t)x->shape[axis] * inner;
        float *gx = dl_grad_buf(x);
        if (gx) /* x's gradient is [outer, len, inner]; its part of out's is at column off */
            for (o = 0; o < outer; o++) {
                const float *g = n->out->grad + (o * total + off) * inner;
                for (t = 0; t < block; t++) gx[o * block + t] += g[t];
            }
        off += (size_t)x->shape[axis];
    }
}

DLDEF dl_tensor *dl_concat(int n, dl_tensor *const *xs, int axis) {
    int k, d, shape[DL_MAX_DIMS];
    size_t outer, inner, total, off = 0, o, es;
    dl_tensor *x0, *out;
    dl_node *node;
    if (n < 1 || !xs) return (dl_tensor *)dl__fail("dl_concat: need at least one tensor");
    for (k = 0; k < n; k++) if (!xs[k]) return NULL;
    x0 = xs[0];
    if (x0->ndim == 0) return (dl_tensor *)dl__fail("dl_concat: cannot concatenate 0-d tensors");
    if ((axis = dl__axis("dl_concat", axis, x0->ndim)) < 0) return NULL;
    memcpy(shape, x0->shape, sizeof shape);
    shape[axis] = 0;
    for (k = 0; k < n; k++) {
        dl_tensor *x = xs[k];
        char s1[64], s2[64];
        if (!dl__check_cpu("dl_concat", x)) return NULL;
        if (x->dtype != x0->dtype) return (dl_tensor *)dl__fail("dl_concat: tensor %d is %s, tensor 0 is %s", k, dl_dtype_name(x->dtype), dl_dtype_name(x0->dtype));
        for (d = 0; d < x0->ndim && x->ndim == x0->ndim; d++)
            if (d != axis && x->shape[d] != x0->shape[d]) break;
        if (x->ndim != x0->ndim || d < x0->ndim)
            return (dl_tensor *)dl__fail("dl_concat: tensor %d has shape %s, tensor 0 has %s (must match except on axis %d)", k,
                                         dl_shape_str(x, s1, sizeof s1), dl_shape_str(x0, s2, sizeof s2), axis);
        shape[axis] += x->shape[axis];
    }
    out = dl_tmp_uninit(x0->dtype, x0->ndim, shape);
    if (!out) return NULL;
    es = dl_dtype_size(x0->dtype);
    total = (size_t)shape[axis];
    dl__outer_inner(out, axis, &outer, &inner);
    for (k = 0; k < n; k++) {
        const char *src = (const char *)dl__contig_data(xs[k]);
        size_t block = (size_t)xs[k]->shape[axis] * inner * es;
        if (!src) return NULL;
        for (o = 0; o < outer; o++) memcpy((char *)out->data + (o * total + off) * inner * es, src + o * block, block);
        off += (size_t)xs[k]->shape[axis];
    }
    node = dl_record("concat", out, n, xs, dl__concat_backward, sizeof(dl__shape_ctx));
    if (node) ((dl__shape_ctx *)node->ctx)->axis = axis;
    return out;
}

DLDEF int dl_split(dl_tensor *x, int axis, int n, const int *sizes, dl_tensor **outs) {
    int k, start = 0;
    if (!x) return -1;
    if (n < 1 || !outs) { dl__fail("dl_split: need n >= 1 and an outs array"); return -1; }
    if ((axis = dl__axis("dl_split", axis, x->ndim)) < 0) return -1;
    if (!sizes && x->shape[axis] % n) { dl__fail("dl_split: axis %d of size %d does not split into %d equal parts", axis, x->shape[axis], n); return -1; }
    for (k = 0; k < n; k++) {
        int len = sizes ? sizes[k] : x->shape[axis] / n;
        if (len < 0 || start + len > x->shape[axis]) break;
        start += len;
    }
    if (k < n || start != x->shape[axis]) { dl__fail("dl_split: sizes do not add up to %d (axis %d)", x->shape[axis], axis); return -1; }
    for (k = 0, start = 0; k < n; k++) {
        int len = sizes ? sizes[k] : x->shape[axis] / n;
        outs[k] = dl_slice(x, axis, start, start + len, 1);
        if (!outs[k]) return -1;
        start += len;
    }
    return 0;
}

/* Checks idx (DL_I32, any strides) against [0, limit): returns idx's values contiguous, or NULL. */
static const int32_t *dl__indices(const char *op, const dl_tensor *idx, int limit) {
    const int32_t *v;
    size_t i;
    if (!dl__check_cpu(op, idx)) return NULL;
    if (idx->dtype != DL_I32) return (const int32_t *)dl__fail("%s: indices must be i32, got %s", op, dl_dtype_name(idx->dtype));
    v = (const int32_t *)dl__contig_data(idx);
    if (!v) return NULL;
    for (i = 0; i < idx->numel; i++)
        if (v[i] < 0 || v[i] >= limit) return (const int32_t *)dl__fail("%s: index %d out of range [0, %d)", op, (int)v[i], limit);
    return v;
}

static void dl__index_select_backward(dl_node *n) {
    const dl__shape_ctx *c = (const dl__shape_ctx *)n->ctx;
    dl_tensor *x = n->in[0];
    float *gx = dl_grad_buf(x);
    const float *g = n->out->grad;
    size_t outer, inner, o, k, t, len = (size_t)x->shape[c->axis], m = (size_t)n->out->shape[c->axis];
    if (!gx) return;
    dl__outer_inner(x, c->axis, &outer, &inner);
    for (o = 0; o < outer; o++)
        for (k = 0; k < m; k++) {
            float *dst = gx + (o * len + (size_t)c->idx[k]) * inner;
            const float *src = g + (o * m + k) * inner;
            for (t = 0; t < inner; t++) dst[t] += src[t];
        }
}

DLDEF dl_tensor *dl_index_select(dl_tensor *x, int axis, dl_tensor *idx) {
    int shape[DL_MAX_DIMS];
    size_t outer, inner, o, k, m, len, es;
    const int32_t *iv;
    const char *src;
    dl_tensor *out;
    dl_node *node;
    if (!x || !idx) return NULL;
    if (!dl__check_cpu("dl_index_select", x)) return NULL;
    if (x->ndim == 0) return (dl_tensor *)dl__fail("dl_index_select: x is 0-d");
    if ((axis = dl__axis("dl_index_select", axis, x->ndim)) < 0) return NULL;
    if (idx->ndim != 1) return (dl_tensor *)dl__fail("dl_index_select: indices must be 1-d, got %d-d", idx->ndim);
    iv = dl__indices("dl_index_select", idx, x->shape[axis]);
    src = (const char *)dl__contig_data(x);
    if (!iv || !src) return NULL;
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = idx->shape[0];
    out = dl_tmp_uninit(x->dtype, x->ndim, shape);
    if (!out) return NULL;
    es = dl_dtype_size(x->dtype);
    len = (size_t)x->shape[axis];
    m = (size_t)idx->shape[0];
    dl__outer_inner(x, axis, &outer, &inner);
    for (o = 0; o < outer; o++)
        for (k = 0; k < m; k++)
            memcpy((char *)out->data + (o * m + k) * inner * es, src + (o * len + (size_t)iv[k]) * inner * es, inner * es);
    node = dl_record("index_select", out, 1, &x, dl__index_select_backward, sizeof(dl__shape_ctx));
    if (node) {
        dl__shape_ctx *c = (dl__shape_ctx *)node->ctx;
        c->axis = axis;
        c->idx = iv;
    }
    return out;
}

/* gather (scatter == 0): o[i] = x[i with axis coordinate idx[i]];
   its backward (scatter == 1): x[i with axis coordinate idx[i]] += o[i].
   x has strides xst; o and idx (contiguous, validated) have the shape of idx. */
static void dl__gather_pass(int scatter, float *x, const ptrdiff_t *xst, int axis, const dl_tensor *idx,
                            const int32_t *iv, float *o) {
    ptrdiff_t xs0[DL_MAX_DIMS], ist[DL_MAX_DIMS], i;
    dl__iter it;
    size_t r;
    memcpy(xs0, xst, sizeof xs0);
    xs0[axis] = 0; /* the axis coordinate comes from idx */
    dl__contig_strides(idx->ndim, idx->shape, ist);
    dl__iter_begin(&it, idx->ndim, idx->shape);
    dl__iter_op(&it, ist);
    dl__iter_op(&it, xs0);
    dl__iter_ready(&it);
    for (r = 0; r < it.rows; r++, dl__iter_next(&it)) {
        float *orow = o + it.off[0], *xrow = x + it.off[1];
        const int32_t *irow = iv + it.off[0];
        ptrdiff_t so = it.inner[0], sx = it.inner[1];
        if (scatter) for (i = 0; i < it.n; i++) xrow[i * sx + irow[i * so] * xst[axis]] += orow[i * so];
        else for (i = 0; i < it.n; i++) orow[i * so] = xrow[i * sx + irow[i * so] * xst[axis]];
    }
}

static void dl__gather_backward(dl_node *n) {
    const dl__shape_ctx *c = (const dl__shape_ctx *)n->ctx;
    dl_tensor *x = n->in[0];
    ptrdiff_t gst[DL_MAX_DIMS];
    float *gx = dl_grad_buf(x);
    if (!gx) return;
    dl__contig_strides(x->ndim, x->shape, gst);
    dl__gather_pass(1, gx, gst, c->axis, n->out, c->idx, n->out->grad);
}

DLDEF dl_tensor *dl_gather(dl_tensor *x, int axis, dl_tensor *idx) {
    const int32_t *iv;
    dl_tensor *out;
    dl_node *node;
    int d;
    if (!x || !idx) return NULL;
    if (!dl__check_f32("dl_gather", x)) return NULL;
    if (x->ndim == 0) return (dl_tensor *)dl__fail("dl_gather: x is 0-d");
    if ((axis = dl__axis("dl_gather", axis, x->ndim)) < 0) return NULL;
    if (idx->ndim != x->ndim) return (dl_tensor *)dl__fail("dl_gather: indices are %d-d, x is %d-d", idx->ndim, x->ndim);
    for (d = 0; d < x->ndim; d++)
        if (d != axis && idx->shape[d] > x->shape[d]) {
            char s1[64], s2[64];
            return (dl_tensor *)dl__fail("dl_gather: indices %s larger than x %s on axis %d",
                                         dl_shape_str(idx, s1, sizeof s1), dl_shape_str(x, s2, sizeof s2), d);
        }
    iv = dl__indices("dl_gather", idx, x->shape[axis]);
    out = dl_tmp_uninit(DL_F32, idx->ndim, idx->shape);
    if (!iv || !out) return NULL;
    dl__gather_pass(0, (float *)x->data, x->strides, axis, idx, iv, (float *)out->data);
    node = dl_record("gather", out, 1, &x, dl__gather_backward, sizeof(dl__shape_ctx));
    if (node) {
        dl__shape_ctx *c = (dl__shape_ctx *)node->ctx;
        c->axis = axis;
        c->idx = iv;
    }
    return out;
}

/* An element of an integer or float tensor as int32: floats are truncated toward zero and
   saturated, NaN gives 0. */
static int32_t dl__load_i32(const dl_tensor *t, ptrdiff_t off) {
    float f;
    switch (t->dtype) {
    case DL_I32: return ((const int32_t *)t->data)[off];
    case DL_U8: return ((const uint8_t *)t->data)[off];
    case DL_F32:
        f = ((const float *)t->data)[off];
        if (f != f) return 0;
        if (f >= 2147483647.0f) return INT32_MAX;
        if (f <= -2147483648.0f) return INT32_MIN;
        return (int32_t)f;
    }
    return 0;
}

DLDEF dl_tensor *dl_one_hot(dl_tensor *labels, int num_classes) {
    int shape[DL_MAX_DIMS];
    size_t i;
    int32_t v;
    dl_tensor *out;
    float *o;
    if (!labels) return NULL;
    if (!dl__check_cpu("dl_one_hot", labels)) return NULL;
    if (labels->dtype != DL_I32 && labels->dtype != DL_U8)
        return (dl_tensor *)dl__fail("dl_one_hot: labels must be i32 or u8, got %s", dl_dtype_name(labels->dtype));
    if (labels->ndim >= DL_MAX_DIMS) return (dl_tensor *)dl__fail("dl_one_hot: labels have too many axes (%d)", labels->ndim);
    if (num_classes == -1) { /* infer max + 1 */
        if (labels->numel == 0) return (dl_tensor *)dl__fail("dl_one_hot: cannot infer num_classes from no labels");
        for (i = 0; i < labels->numel; i++) {
            v = dl__load_i32(labels, dl__offset_of(labels, i));
            if (v < 0) return (dl_tensor *)dl__fail("dl_one_hot: label %d is negative", (int)v);
            if (v >= num_classes) num_classes = v == INT32_MAX ? v : v + 1;
        }
    }
    if (num_classes < 1) return (dl_tensor *)dl__fail("dl_one_hot: num_classes must be >= 1 or -1, got %d", num_classes);
    memcpy(shape, labels->shape, sizeof(int) * (size_t)labels->ndim);
    shape[labels->ndim] = num_classes;
    out = dl_tmp(DL_F32, labels->ndim + 1, shape);
    if (!out) return NULL;
    o = (float *)out->data;
    for (i = 0; i < labels->numel; i++) {
        v = dl__load_i32(labels, dl__offset_of(labels, i));
        if (v < 0 || v >= num_classes) return (dl_tensor *)dl__fail("dl_one_hot: label %d out of range [0, %d)", (int)v, num_classes);
        o[i * (size_t)num_classes + (size_t)v] = 1.0f;
    }
    return out;
}

DLDEF dl_tensor *dl_cast(dl_tensor *x, dl_dtype dtype) {
    dl_tensor *out;
    size_t i;
    int contig;
    if (!x) return NULL;
    if (!dl__check_cpu("dl_cast", x)) return NULL;
    if (dl_dtype_size(dtype) == 0) return (dl_tensor *)dl__fail("dl_cast: unknown dtype %d", (int)dtype);
    out = dl_tmp_uninit(dtype, x->ndim, x->shape);
    if (!out) return NULL;
    if (dtype == DL_F32 && x->dtype == DL_F32) {
        dl_copy(out, x);
        dl_record("cast", out, 1, &x, dl__copy_backward, 0); /* core's flat gradient add */
        return out;
    }
    contig = dl_is_contiguous(x);
    for (i = 0; i < x->numel; i++) {
        ptrdiff_t off = contig ? (ptrdiff_t)i : dl__offset_of(x, i);
        if (dtype == DL_F32) ((float *)out->data)[i] = dl__load(x, off); /* i32 rounds to nearest float */
        else if (dtype == DL_I32) ((int32_t *)out->data)[i] = dl__load_i32(x, off);
        else ((uint8_t *)out->data)[i] = (uint8_t)dl__load_i32(x, off); /* modulo 256 */
    }
    return out;
}

static void dl__broadcast_to_backward(dl_node *n) {
    dl_tensor *x = n->in[0], *out = n->out;
    ptrdiff_t xst[DL_MAX_DIMS], sx[DL_MAX_DIMS];
    float *gx = dl_grad_buf(x);
    if (!gx) return;
    dl__contig_strides(x->ndim, x->shape, xst);
    dl__bcast_strides(x->ndim, x->shape, xst, out->ndim, sx);
    /* stride 0 along broadcast axes: the copy accumulates (sums) them into one element */
    dl__strided_copy_f32(gx, sx, out->grad, out->strides, out->ndim, out->shape, 1);
}

DLDEF dl_tensor *dl_broadcast_to(dl_tensor *x, int ndim, const int *shape) {
    ptrdiff_t sx[DL_MAX_DIMS];
    dl_tensor *out;
    int i;
    if (!x) return NULL;
    if (!dl__check_f32("dl_broadcast_to", x)) return NULL;
    if (ndim < x->ndim || ndim > DL_MAX_DIMS || (ndim && !shape))
        return (dl_tensor *)dl__fail("dl_broadcast_to: cannot broadcast a %d-d tensor to %d axes", x->ndim, ndim);
    for (i = 0; i < x->ndim; i++) {
        int want = shape[i + ndim - x->ndim];
        if (x->shape[i] != want && x->shape[i] != 1) {
            char s[64];
            return (dl_tensor *)dl__fail("dl_broadcast_to: shape %s does not broadcast to size %d at axis %d",
                                         dl_shape_str(x, s, sizeof s), want, i + ndim - x->ndim);
        }
    }
    out = dl_tmp_uninit(DL_F32, ndim, shape);
    if (!out) return NULL;
    dl__bcast_strides(x->ndim, x->shape, x->strides, ndim, sx);
    dl__strided_copy_f32((float *)out->data, out->strides, (const float *)x->data, sx, ndim, shape, 0);
    dl_record("broadcast_to", out, 1, &x, dl__broadcast_to_backward, 0);
    return out;
}
