/* parts/nn_rnn.h - recurrent layers of dl_nn.h: SimpleRNN, LSTM, GRU, and the Orthogonal
   initializer of their recurrent kernels. Part of dl_nn.h's implementation (included inside its
   DL_IMPLEMENTATION section, after parts/nn_core.h); not a header of its own.

   Layout and math follow Keras (so Keras weights load as they are, PyTorch ones after a
   transpose and, for GRU, a gate reorder). x is [B, T, F]; U = units; G gates:
       kernel            [F, G*U]   glorot_uniform
       recurrent_kernel  [U, G*U]   orthogonal
       bias              [G*U]      zeros (LSTM: ones for the forget gate; GRU: [2, 3U])
   The state starts at zero. The forward pass is built from taped ops, so autograd gives the
   backward pass (BPTT): the input projection of all steps is one GEMM before the loop, in
   time-major order ([T*B, F] @ [F, G*U], dl_linear), so step t's rows are a contiguous block;
   each step adds one GEMM h @ recurrent_kernel (dl_matmul); the gate arithmetic is tanh/add
   for SimpleRNN and one fused op per step for LSTM and GRU (dl__rnn_cell, with its own
   backward, checked by finite differences and against PyTorch in tests/test_nn_rnn.c).
   Step 0 skips the recurrent terms, which are exactly zero there. */

/* ---- Orthogonal initializer ----
   Keras' Orthogonal(gain=1) for a 2-d [rows, cols] tensor: A ~ N(0, 1) of shape
   [max(rows, cols), min(rows, cols)], A = QR (reduced), Q's columns multiplied by sign(diag R)
   (which makes the factorization unique), then Q^T when rows < cols. Householder QR in double
   precision. The draws are dl_rng_normal in row-major order of A, so the values differ from
   Keras' (another generator) but have the same distribution. */
static int dl__init_orthogonal(dl_tensor *t, dl_rng *r) {
    int rows, cols, m, n, i, j, k;
    double *a, *q, *vv, *rdiag;
    float *out;
    if (!t || !r || t->dtype != DL_F32 || t->ndim != 2 || !dl_is_contiguous(t)) {
        dl_set_error("dl_init_tensor: orthogonal needs a contiguous 2-d f32 tensor");
        return -1;
    }
    rows = t->shape[0];
    cols = t->shape[1];
    if (rows == 0 || cols == 0) return 0;
    m = rows > cols ? rows : cols;    /* A is m x n with m >= n */
    n = rows > cols ? cols : rows;
    a = (double *)DL_MALLOC(sizeof(double) * (2 * (size_t)m * (size_t)n + 2 * (size_t)n));
    if (!a) {
        dl_set_error("dl_init_tensor: out of memory for an orthogonal [%d, %d]", rows, cols);
        return -1;
    }
    q = a + (size_t)m * (size_t)n;
    vv = q + (size_t)m * (size_t)n;
    rdiag = vv + n;
#define DL__A(i, j) a[(size_t)(i) * (size_t)n + (size_t)(j)]
#define DL__Q(i, j) q[(size_t)(i) * (size_t)n + (size_t)(j)]
    for (i = 0; i < m * n; i++) a[i] = (double)dl_rng_normal(r);
    /* Householder QR: step k reflects A[k:, k] onto alpha e_0 with H_k = I - 2 v v^T / (v.v),
       v = A[k:, k] - alpha e_0, alpha = -sign(A[k][k]) |A[k:, k]| = R[k][k]. v replaces
       A[k:, k] (that column of R is not needed beyond its diagonal). */
    for (k = 0; k < n; k++) {
        double norm = 0, alpha, s = 0;
        for (i = k; i < m; i++) norm += DL__A(i, k) * DL__A(i, k);
        norm = sqrt(norm);
        alpha = DL__A(k, k) >= 0 ? -norm : norm;
        rdiag[k] = alpha;
        DL__A(k, k) -= alpha;
        for (i = k; i < m; i++) s += DL__A(i, k) * DL__A(i, k);
        vv[k] = s;
        if (s > 0)
            for (j = k + 1; j < n; j++) {   /* A[k:, j] -= v 2 (v . A[k:, j]) / (v . v) */
                double d = 0;
                for (i = k; i < m; i++) d += DL__A(i, k) * DL__A(i, j);
                d = 2 * d / s;
                for (i = k; i < m; i++) DL__A(i, j) -= d * DL__A(i, k);
            }
    }
    /* Q = H_0 H_1 ... H_{n-1} I[m, n] (the reduced Q), applying the reflectors right to left. */
    for (i = 0; i < m * n; i++) q[i] = 0;
    for (i = 0; i < n; i++) DL__Q(i, i) = 1;
    for (k = n - 1; k >= 0; k--) {
        if (vv[k] <= 0) continue;
        for (j = k; j < n; j++) {   /* columns left of k are still e_j, untouched by H_k */
            double d = 0;
            for (i = k; i < m; i++) d += DL__A(i, k) * DL__Q(i, j);
            d = 2 * d / vv[k];
            for (i = k; i < m; i++) DL__Q(i, j) -= d * DL__A(i, k);
        }
    }
    /* Q[:, j] *= sign(R[j][j]), which makes the factors unique (R's diagonal positive), then
       Q [rows, cols] when rows >= cols, else Q^T. */
    out = dl_f32(t);
    for (i = 0; i < m; i++)
        for (j = 0; j < n; j++) {
            float x = (float)(rdiag[j] < 0 ? -DL__Q(i, j) : DL__Q(i, j));
            if (rows >= cols) out[(size_t)i * (size_t)cols + (size_t)j] = x;
            else out[(size_t)j * (size_t)cols + (size_t)i] = x;
        }
#undef DL__A
#undef DL__Q
    DL_FREE(a);
    return 0;
}

/* ---- The layers ---- */

enum { DL__RNN_SIMPLE = 0, DL__RNN_LSTM = 1, DL__RNN_GRU = 2 };

static int dl__rnn_kind(const dl_layer *l) {
    if (strcmp(l->ops->kind, "LSTM") == 0) return DL__RNN_LSTM;
    return strcmp(l->ops->kind, "GRU") == 0 ? DL__RNN_GRU : DL__RNN_SIMPLE;
}

static int dl__rnn_gates(int kind) { return kind == DL__RNN_LSTM ? 4 : kind == DL__RNN_GRU ? 3 : 1; }

/* x must be f32 [B, T, F] with T >= 1 (and F = the kernel's rows once built). */
static int dl__rnn_check_input(const dl_layer *l, const dl_tensor *x) {
    char s[64];
    if (x->dtype != DL_F32 || x->ndim != 3 || x->shape[1] < 1) {
        dl_set_error("%s (%s): expected an f32 input [batch, time, features] with time >= 1, got %s %s",
                     l->name, l->ops->kind, dl_dtype_name(x->dtype), dl_shape_str(x, s, sizeof s));
        return 0;
    }
    if (l->built && l->n_params > 0 && l->params[0]->shape[0] != x->shape[2]) {
        dl_set_error("%s (%s): built for %d features, got input %s", l->name, l->ops->kind,
                     l->params[0]->shape[0], dl_shape_str(x, s, sizeof s));
        return 0;
    }
    return 1;
}

static int dl__rnn_build(dl_layer *l, int n_in, dl_tensor *const *in) {
    int kind = dl__rnn_kind(l), U = l->iconf[0], GU = dl__rnn_gates(kind) * U, F, i;
    dl_tensor *bias;
    (void)n_in;
    if (!dl__rnn_check_input(l, in[0])) return -1;
    F = in[0]->shape[2];
    if (!dl__weight(l, "kernel", 2, F, GU, 0, 0, DL_INIT_GLOROT_UNIFORM, 1)) return -1;
    if (!dl__weight(l, "recurrent_kernel", 2, U, GU, 0, 0, DL_INIT_ORTHOGONAL, 1)) return -1;
    if (kind == DL__RNN_GRU) bias = dl__weight(l, "bias", 2, 2, GU, 0, 0, DL_INIT_ZEROS, 1);
    else bias = dl__weight(l, "bias", 1, GU, 0, 0, 0, DL_INIT_ZEROS, 1);
    if (!bias) return -1;
    if (kind == DL__RNN_LSTM)   /* Keras' unit_forget_bias: the forget gate starts open */
        for (i = U; i < 2 * U; i++) dl_f32(bias)[i] = 1.0f;
    return 0;
}

/* ---- Fused cells ----
   The gate arithmetic of one LSTM or GRU step as one op (the GEMMs stay dl_matmul / dl_linear).
   Composed from elementwise ops, a step is about a dozen passes over memory, each with its own
   arena tensor and gradient buffer; a cell is one pass forward and one backward and keeps only
   the gate activations. Rows are cut into tasks by the shapes alone, and every element is
   computed the same way whatever the thread count. */

typedef struct dl__cell {
    const float *x, *m, *prev;   /* inputs (m, prev may be NULL: zero state) */
    const float *gy;             /* backward: the output gradient */
    float *y, *act;              /* forward outputs: the cell's output and saved activations */
    float *gx, *gm, *gprev;      /* backward: gradient buffers (NULL: not needed) */
    int B, U, rows_per_task, backward;
} dl__cell;

static float dl__sigmoidf(float v) { return 1.0f / (1.0f + expf(-v)); }

static int dl__cell_tasks(dl__cell *c, int width) {
    c->rows_per_task = 32768 / (width > 0 ? width : 1);
    if (c->rows_per_task < 1) c->rows_per_task = 1;
    return (c->B + c->rows_per_task - 1) / c->rows_per_task;
}

/* LSTM, per row: z = x + m = [z_i z_f z_c z_o] (x: the input projection with bias, m = h R);
     i = s(z_i), f = s(z_f), g = tanh(z_c), o = s(z_o);  c = f c_prev + i g;  h = o tanh(c)
   y is [2, B, U]: y[0] = h, y[1] = c. act per row: [i f g o tanh(c)], 5U values.
   Backward, with dh and dc the gradients of y[0] and y[1]:
     dc' = dc + dh o (1 - tanh(c)^2);  dz_i = dc' g i (1 - i);  dz_f = dc' c_prev f (1 - f);
     dz_c = dc' i (1 - g^2);  dz_o = dh tanh(c) o (1 - o);  dc_prev = dc' f;  dx = dm = dz */
static void dl__lstm_task(void *ctx, int task) {
    const dl__cell *c = (const dl__cell *)ctx;
    int U = c->U, b0 = task * c->rows_per_task, b1 = b0 + c->rows_per_task, b, u;
    size_t BU = (size_t)c->B * (size_t)U;
    if (b1 > c->B) b1 = c->B;
    for (b = b0; b < b1; b++) {
        const float *x = c->x + (size_t)b * 4 * U, *m = c->m ? c->m + (size_t)b * 4 * U : NULL;
        const float *cp = c->prev ? c->prev + (size_t)b * U : NULL;
        float *a = c->act + (size_t)b * 5 * U;
        if (!c->backward) {
            float *h = c->y + (size_t)b * U, *cn = c->y + BU + (size_t)b * U;
            for (u = 0; u < 4 * U; u++) a[u] = x[u] + (m ? m[u] : 0.0f);
            for (u = 0; u < 2 * U; u++) a[u] = dl__sigmoidf(a[u]);
            for (u = 2 * U; u < 3 * U; u++) a[u] = tanhf(a[u]);
            for (u = 3 * U; u < 4 * U; u++) a[u] = dl__sigmoidf(a[u]);
            for (u = 0; u < U; u++) {
                float cv = a[u] * a[2 * U + u] + (cp ? a[U + u] * cp[u] : 0.0f), tc = tanhf(cv);
                cn[u] = cv;
                a[4 * U + u] = tc;
                h[u] = a[3 * U + u] * tc;
            }
        } else {
            const float *dh = c->gy + (size_t)b * U, *dc = c->gy + BU + (size_t)b * U;
            float *gx = c->gx ? c->gx + (size_t)b * 4 * U : NULL;
            float *gm = c->gm ? c->gm + (size_t)b * 4 * U : NULL;
            float *gp = c->gprev ? c->gprev + (size_t)b * U : NULL;
            for (u = 0; u < U; u++) {
                float i = a[u], f = a[U + u], g = a[2 * U + u], o = a[3 * U + u], tc = a[4 * U + u];
                float d = dc[u] + dh[u] * o * (1.0f - tc * tc), p = cp ? cp[u] : 0.0f;
                float zi = d * g * i * (1.0f - i), zf = d * p * f * (1.0f - f);
                float zc = d * i * (1.0f - g * g), zo = dh[u] * tc * o * (1.0f - o);
                if (gx) { gx[u] += zi; gx[U + u] += zf; gx[2 * U + u] += zc; gx[3 * U + u] += zo; }
                if (gm) { gm[u] += zi; gm[U + u] += zf; gm[2 * U + u] += zc; gm[3 * U + u] += zo; }
                if (gp) gp[u] += d * f;
            }
        }
    }
}

/* GRU (reset_after), per row: x = [x_z x_r x_h] (input projection with its bias), a = h R + b_rec
   = [a_z a_r a_h] (here m);  z = s(x_z + a_z), r = s(x_r + a_r), n = tanh(x_h + r a_h);
   h = z h_prev + (1 - z) n. act per row: [z r n a_h], 4U values.
   Backward: dn = dh (1 - z), dp = dn (1 - n^2) (= dx_h), da_h = dp r, dr = dp a_h,
     dz = dh (h_prev - n);  dx_z = da_z = dz z (1 - z);  dx_r = da_r = dr r (1 - r);  dh_prev = dh z */
static void dl__gru_task(void *ctx, int task) {
    const dl__cell *c = (const dl__cell *)ctx;
    int U = c->U, b0 = task * c->rows_per_task, b1 = b0 + c->rows_per_task, b, u;
    if (b1 > c->B) b1 = c->B;
    for (b = b0; b < b1; b++) {
        const float *x = c->x + (size_t)b * 3 * U, *m = c->m + (size_t)b * 3 * U;
        const float *hp = c->prev ? c->prev + (size_t)b * U : NULL;
        float *a = c->act + (size_t)b * 4 * U;
        if (!c->backward) {
            float *h = c->y + (size_t)b * U;
            for (u = 0; u < 2 * U; u++) a[u] = dl__sigmoidf(x[u] + m[u]);
            for (u = 0; u < U; u++) {
                float z = a[u], n = tanhf(x[2 * U + u] + a[U + u] * m[2 * U + u]);
                a[2 * U + u] = n;
                a[3 * U + u] = m[2 * U + u];
                h[u] = z * (hp ? hp[u] : 0.0f) + (1.0f - z) * n;
            }
        } else {
            const float *dh = c->gy + (size_t)b * U;
            float *gx = c->gx ? c->gx + (size_t)b * 3 * U : NULL;
            float *gm = c->gm ? c->gm + (size_t)b * 3 * U : NULL;
            float *gp = c->gprev ? c->gprev + (size_t)b * U : NULL;
            for (u = 0; u < U; u++) {
                float z = a[u], r = a[U + u], n = a[2 * U + u], ah = a[3 * U + u], p = hp ? hp[u] : 0.0f;
                float dp = dh[u] * (1.0f - z) * (1.0f - n * n);
                float dz = dh[u] * (p - n) * z * (1.0f - z), dr = dp * ah * r * (1.0f - r);
                if (gx) { gx[u] += dz; gx[U + u] += dr; gx[2 * U + u] += dp; }
                if (gm) { gm[u] += dz; gm[U + u] += dr; gm[2 * U + u] += dp * r; }
                if (gp) gp[u] += dh[u] * z;
            }
        }
    }
}

typedef struct dl__cell_ctx {
    const float *act;   /* saved activations */
    int lstm, B, U;
    size_t x_off;       /* where the step's rows start in the input projection */
} dl__cell_ctx;

static void dl__cell_backward(dl_node *nd) {
    const dl__cell_ctx *k = (const dl__cell_ctx *)nd->ctx;
    dl__cell c;
    int width = (k->lstm ? 4 : 3) * k->U, n;
    memset(&c, 0, sizeof c);
    c.B = k->B;
    c.U = k->U;
    c.backward = 1;
    c.act = (float *)k->act;
    c.gy = nd->out->grad;
    c.prev = nd->in[2] ? dl_contig_f32(nd->in[2]) : NULL;
    c.gx = dl_grad_buf(nd->in[0]);
    if (c.gx) c.gx += k->x_off;
    c.gm = dl_grad_buf(nd->in[1]);
    c.gprev = dl_grad_buf(nd->in[2]);
    if (nd->in[2] && !c.prev) return;
    n = dl__cell_tasks(&c, width);
    dl_parallel_for(n, k->lstm ? dl__lstm_task : dl__gru_task, &c);
}

/* Step t: x = rows t*B .. t*B+B-1 of xw [T*B, G*U] (the input projection of every step, read
   in place), m [B, G*U] (LSTM: h R, NULL at t = 0; GRU: h R + b_rec), prev [B, U] (LSTM: c; GRU:
   h; NULL at t = 0); m and prev may have extra leading axes of size 1. Returns LSTM's [2, B, U]
   (h, c) or GRU's h [B, U]. After t = 0 a NULL m or prev means an earlier op failed. */
static dl_tensor *dl__rnn_cell(int lstm, int B, int U, dl_tensor *xw, int t, dl_tensor *m, dl_tensor *prev) {
    dl__cell c;
    dl_tensor *y, *in[3];
    dl_node *nd;
    int width = (lstm ? 4 : 3) * U, n, shape[3];
    size_t x_off = (size_t)t * (size_t)B * (size_t)width;
    if (!xw || (!m && (!lstm || t)) || (!prev && t)) return NULL;
    memset(&c, 0, sizeof c);
    c.B = B;
    c.U = U;
    c.x = dl_contig_f32(xw);   /* xw is a fresh dl_linear output: contiguous, no copy */
    c.m = m ? dl_contig_f32(m) : NULL;
    c.prev = prev ? dl_contig_f32(prev) : NULL;
    shape[0] = 2;
    shape[1] = B;
    shape[2] = U;
    y = dl_tmp_uninit(DL_F32, lstm ? 3 : 2, lstm ? shape : shape + 1);
    c.act = (float *)dl_arena_alloc(dl_arena_current(), sizeof(float) * (size_t)B * (size_t)(width + U));
    if (!c.x || (m && !c.m) || (prev && !c.prev) || !y || !c.act) return NULL;
    c.x += x_off;
    c.y = dl_f32(y);
    n = dl__cell_tasks(&c, width);
    dl_parallel_for(n, lstm ? dl__lstm_task : dl__gru_task, &c);
    in[0] = xw;
    in[1] = m;
    in[2] = prev;
    nd = dl_record(lstm ? "lstm_cell" : "gru_cell", y, 3, in, dl__cell_backward, sizeof(dl__cell_ctx));
    if (nd) {
        dl__cell_ctx *k = (dl__cell_ctx *)nd->ctx;
        k->act = c.act;
        k->lstm = lstm;
        k->B = B;
        k->U = U;
        k->x_off = x_off;
    }
    return y;
}

static dl_tensor *dl__rnn_forward(dl_layer *l, int n_in, dl_tensor *const *in, int training) {
    dl_tensor *x = in[0], *W, *R, *bias, *b_in, *b_rec = NULL, *xw, *h = NULL, *c = NULL, **hs;
    int kind = dl__rnn_kind(l), U = l->iconf[0], B, T, t, shape[3], bshape[2];
    (void)n_in;
    (void)training;
    if (!x) return NULL;
    if (!dl__rnn_check_input(l, x)) return NULL;
    W = dl_layer_weight(l, "kernel");
    R = dl_layer_weight(l, "recurrent_kernel");
    bias = dl_layer_weight(l, "bias");
    if (!W || !R || !bias) { dl_set_error("%s (%s): weights missing", l->name, l->ops->kind); return NULL; }
    B = x->shape[0];
    T = x->shape[1];
    hs = (dl_tensor **)dl_arena_alloc(dl_arena_current(), sizeof(dl_tensor *) * (size_t)T);
    if (!hs) return NULL;
    b_in = bias;
    if (kind == DL__RNN_GRU) {   /* reset_after: row 0 is the input bias, row 1 the recurrent bias */
        b_in = dl_squeeze(dl_slice(bias, 0, 0, 1, 1), 0);
        b_rec = dl_squeeze(dl_slice(bias, 0, 1, 2, 1), 0);
    }
    /* xw = x W + b for every step at once, time-major: rows t*B .. t*B+B-1 are step t. */
    shape[0] = T * B;
    shape[1] = x->shape[2];
    xw = dl_linear(dl_reshape(dl_transpose(x, 0, 1), 2, shape), W, b_in);
    shape[0] = B;   /* from here: the output [B, T, U], and GRU's [B, 3U] */
    shape[1] = T;
    shape[2] = U;
    bshape[0] = B;
    bshape[1] = 3 * U;
    if (!xw) return NULL;
    for (t = 0; t < T; t++) {
        if (kind == DL__RNN_SIMPLE) {
            /* h = tanh(x W + b + h R) */
            dl_tensor *xt = dl_slice(xw, 0, t * B, t * B + B, 1);   /* [B, U], contiguous */
            h = dl_tanh(t ? dl_add(xt, dl_matmul(h, R)) : xt);
        } else if (kind == DL__RNN_LSTM) {
            /* (h, c) = cell(x W + b, h R, c), see dl__lstm_task; h and c are [1, B, U] views */
            dl_tensor *hc = dl__rnn_cell(1, B, U, xw, t, t ? dl_matmul(h, R) : NULL, c);
            h = dl_slice(hc, 0, 0, 1, 1);
            c = dl_slice(hc, 0, 1, 2, 1);
        } else {
            /* h = cell(x W + b_in, h R + b_rec, h), see dl__gru_task */
            dl_tensor *a = t ? dl_add(dl_matmul(h, R), b_rec) : dl_broadcast_to(b_rec, 2, bshape);
            h = dl__rnn_cell(0, B, U, xw, t, a, t ? h : NULL);
        }
        if (!h) return NULL;
        hs[t] = h;
    }
    if (!l->iconf[1]) {   /* the last step: [(1,) B, U] -> [B, U] */
        bshape[1] = U;
        return h->ndim == 2 ? h : dl_reshape(h, 2, bshape);
    }
    /* every step: [(1,) B, U] x T -> [(1,) B, T*U] -> [B, T, U] */
    return dl_reshape(dl_concat(T, hs, -1), 3, shape);
}

static const dl_layer_ops dl__simple_rnn_ops = { "SimpleRNN", dl__rnn_build, dl__rnn_forward, NULL, 1, 1 };
static const dl_layer_ops dl__lstm_ops = { "LSTM", dl__rnn_build, dl__rnn_forward, NULL, 1, 1 };
static const dl_layer_ops dl__gru_ops = { "GRU", dl__rnn_build, dl__rnn_forward, NULL, 1, 1 };

/* iconf[0] units, iconf[1] return_sequences (0 or 1). */
static dl_layer *dl__rnn_new(const dl_layer_ops *ops, const char *fn, const char *name, int units,
                             int return_sequences) {
    dl_layer *l;
    if (units <= 0) return dl__ctor_fail("%s: units must be > 0, got %d", fn, units);
    if (!(l = dl__builtin(ops, name))) return NULL;
    l->iconf[0] = units;
    l->iconf[1] = return_sequences != 0;
    return l;
}

DLDEF dl_layer *dl_SimpleRNN(int units, int return_sequences) {
    return dl__rnn_new(&dl__simple_rnn_ops, "dl_SimpleRNN", "simple_rnn", units, return_sequences);
}
DLDEF dl_layer *dl_LSTM(int units, int return_sequences) {
    return dl__rnn_new(&dl__lstm_ops, "dl_LSTM", "lstm", units, return_sequences);
}
DLDEF dl_layer *dl_GRU(int units, int return_sequences) {
    return dl__rnn_new(&dl__gru_ops, "dl_GRU", "gru", units, return_sequences);
}

/* For the model loader: a new layer of `kind` from its saved settings (iconf[0] units, iconf[1]
   return_sequences); NULL without an error when kind is not a recurrent layer, NULL + dl_error()
   for bad settings. */
static dl_layer *dl__rnn_from_conf(const char *kind, const int *iconf, const float *fconf) {
    (void)fconf;
    if (!kind || !iconf) return NULL;
    if (strcmp(kind, "SimpleRNN") == 0) return dl_SimpleRNN(iconf[0], iconf[1]);
    if (strcmp(kind, "LSTM") == 0) return dl_LSTM(iconf[0], iconf[1]);
    if (strcmp(kind, "GRU") == 0) return dl_GRU(iconf[0], iconf[1]);
    return NULL;
}
