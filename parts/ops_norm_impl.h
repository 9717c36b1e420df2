/* ==== Normalization, dropout, embedding, Gram matrix ========================================= */

/* restrict lets compilers vectorize loops whose output cannot overlap their inputs. */
#ifndef DL__RESTRICT
#if defined(__cplusplus)
#define DL__RESTRICT __restrict
#else
#define DL__RESTRICT restrict
#endif
#endif

/* ---- The normalization engine ----
   Batch, instance and layer norm are one computation on x viewed as contiguous [A, G, B]:
   group g holds the A*B elements (a, g, b) and gets its own mean and 1/std.
       batch norm     A = N, G = C,     B = d1*d2*...   (statistics per channel)
       instance norm  A = 1, G = N*C,   B = d1*d2*...   (statistics per sample and channel)
       layer norm     A = 1, G = rows,  B = normalized size
   gamma/beta hold one value per group (g % period: batch and instance norm) or one per position
   b (layer norm). Loops run a, then g, then b, so memory is read in order even when B is 1
   (batch norm of [N, C]). Work is split over groups and each group is summed in the same order
   whatever the split, so results do not depend on the number of threads. */
typedef struct dl__norm {
    int A, G, B, period, per_position;
    float eps;
    const float *x, *gamma, *beta;  /* x contiguous [A, G, B]; gamma/beta contiguous or NULL */
    const float *ones, *zeros;      /* rows of B ones and zeros, standing in for gamma/beta rows */
    float *y;
    float *mean, *var, *invstd;     /* [G] */
    float *k0, *k1, *k2;            /* [G] per-group coefficients of the elementwise passes */
    double *s1, *s2;                /* [G] sums */
    int batch_stats;                /* backward also flows through mean and var */
    const float *dy;
    float *dx;                      /* NULL when x needs no gradient */
    int n_tasks;
} dl__norm;

/* Row sums in 8 float lanes added in a fixed order (compilers vectorize this), then in double
   across rows: accurate enough, and as fast as float. */
#define DL__LANES 8

static double dl__row_sum(const float *x, int n) {
    float l[DL__LANES] = {0};
    double s = 0;
    int i, j;
    for (i = 0; i + DL__LANES <= n; i += DL__LANES)
        for (j = 0; j < DL__LANES; j++) l[j] += x[i + j];
    for (; i < n; i++) s += x[i];
    for (j = 0; j < DL__LANES && n >= DL__LANES; j++) s += l[j];
    return s;
}

static double dl__row_sqdev(const float *x, int n, float mu) { /* sum((x - mu)^2) */
    float l[DL__LANES] = {0};
    double s = 0;
    int i, j;
    for (i = 0; i + DL__LANES <= n; i += DL__LANES)
        for (j = 0; j < DL__LANES; j++) { float d = x[i + j] - mu; l[j] += d * d; }
    for (; i < n; i++) { double d = x[i] - mu; s += d * d; }
    for (j = 0; j < DL__LANES && n >= DL__LANES; j++) s += l[j];
    return s;
}

/* *s1 += sum(dy * w), *s2 += sum(dy * w * xhat) with xhat = (x - mu) * is */
static void dl__row_grad_sums(const float *dy, const float *w, const float *x, int n, float mu,
                              float is, double *s1, double *s2) {
    float l1[DL__LANES] = {0}, l2[DL__LANES] = {0};
    int i, j;
    for (i = 0; i + DL__LANES <= n; i += DL__LANES)
        for (j = 0; j < DL__LANES; j++) {
            float d = dy[i + j] * w[i + j];
            l1[j] += d;
            l2[j] += d * ((x[i + j] - mu) * is);
        }
    for (; i < n; i++) {
        double d = (double)dy[i] * w[i];
        *s1 += d;
        *s2 += d * ((x[i] - mu) * is);
    }
    for (j = 0; j < DL__LANES && n >= DL__LANES; j++) { *s1 += l1[j]; *s2 += l2[j]; }
}

/* [N, C] batch norm (B = 1) walks each row of x across the groups; per-group values are arrays. */
static void dl__cols_sum(double *DL__RESTRICT s, const float *DL__RESTRICT x, int n) {
    int i;
    for (i = 0; i < n; i++) s[i] += x[i];
}

static void dl__cols_sqdev(double *DL__RESTRICT s, const float *DL__RESTRICT x, const float *DL__RESTRICT mu, int n) {
    int i;
    for (i = 0; i < n; i++) { double d = x[i] - mu[i]; s[i] += d * d; }
}

static void dl__cols_grad_sums(double *DL__RESTRICT s1, double *DL__RESTRICT s2, const float *DL__RESTRICT dy,
                               const float *DL__RESTRICT x, const float *DL__RESTRICT mu,
                               const float *DL__RESTRICT is, int n) {
    int i;
    for (i = 0; i < n; i++) {
        s1[i] += dy[i];
        s2[i] += (double)dy[i] * ((x[i] - mu[i]) * is[i]);
    }
}

/* The elementwise passes, per row (scalars per group) and across a row (arrays per group). */
static void dl__row_affine(float *DL__RESTRICT y, const float *DL__RESTRICT x, const float *DL__RESTRICT gw,
                           const float *DL__RESTRICT bw, int n, float mu, float k0, float k1) {
    int i;
    for (i = 0; i < n; i++) y[i] = (x[i] - mu) * k0 * gw[i] + bw[i] + k1;
}

static void dl__cols_affine(float *DL__RESTRICT y, const float *DL__RESTRICT x, const float *DL__RESTRICT mu,
                            const float *DL__RESTRICT k0, const float *DL__RESTRICT k1, int n) {
    int i;
    for (i = 0; i < n; i++) y[i] = (x[i] - mu[i]) * k0[i] + k1[i];
}

static void dl__row_dx(float *DL__RESTRICT dx, const float *DL__RESTRICT dy, const float *DL__RESTRICT x,
                       const float *DL__RESTRICT gw, int n, float mu, float k0, float k1, float k2) {
    int i;
    for (i = 0; i < n; i++) dx[i] += dy[i] * gw[i] * k0 + (x[i] - mu) * k1 + k2;
}

static void dl__cols_dx(float *DL__RESTRICT dx, const float *DL__RESTRICT dy, const float *DL__RESTRICT x,
                        const float *DL__RESTRICT mu, const float *DL__RESTRICT k0,
                        const float *DL__RESTRICT k1, const float *DL__RESTRICT k2, int n) {
    int i;
    for (i = 0; i < n; i++) dx[i] += dy[i] * k0[i] + (x[i] - mu[i]) * k1[i] + k2[i];
}

static void dl__norm_range(const dl__norm *c, int task, int *g0, int *g1) {
    *g0 = (int)((long long)c->G * task / c->n_tasks);
    *g1 = (int)((long long)c->G * (task + 1) / c->n_tasks);
}

static size_t dl__norm_at(const dl__norm *c, int a, int g) {
    return ((size_t)a * (size_t)c->G + (size_t)g) * (size_t)c->B;
}

/* The gamma and beta rows every position b reads: the real rows per position, else ones and
   zeros (per group, gamma[g] and beta[g] go into the per-group coefficients instead). */
static const float *dl__norm_gamma_row(const dl__norm *c) { return c->per_position && c->gamma ? c->gamma : c->ones; }
static const float *dl__norm_beta_row(const dl__norm *c) { return c->per_position && c->beta ? c->beta : c->zeros; }
static float dl__norm_group_gamma(const dl__norm *c, int g) { return !c->per_position && c->gamma ? c->gamma[g % c->period] : 1.0f; }

/* mean = sum(x) / m, var = sum((x - mean)^2) / m (biased, two passes), invstd = 1/sqrt(var + eps) */
static void dl__norm_stats_task(void *ctx, int task) {
    dl__norm *c = (dl__norm *)ctx;
    double m = (double)c->A * (double)c->B;
    int g, g0, g1, a;
    dl__norm_range(c, task, &g0, &g1);
    for (g = g0; g < g1; g++) c->s1[g] = c->s2[g] = 0;
    for (a = 0; a < c->A; a++) {
        const float *xa = c->x + dl__norm_at(c, a, 0);
        if (c->B == 1) dl__cols_sum(c->s1 + g0, xa + g0, g1 - g0);
        else for (g = g0; g < g1; g++) c->s1[g] += dl__row_sum(xa + (size_t)g * c->B, c->B);
    }
    for (g = g0; g < g1; g++) c->mean[g] = (float)(m > 0 ? c->s1[g] / m : 0.0);
    for (a = 0; a < c->A; a++) {
        const float *xa = c->x + dl__norm_at(c, a, 0);
        if (c->B == 1) dl__cols_sqdev(c->s2 + g0, xa + g0, c->mean + g0, g1 - g0);
        else for (g = g0; g < g1; g++) c->s2[g] += dl__row_sqdev(xa + (size_t)g * c->B, c->B, c->mean[g]);
    }
    for (g = g0; g < g1; g++) {
        double v = m > 0 ? c->s2[g] / m : 0.0;
        c->var[g] = (float)v;
        c->invstd[g] = (float)(1.0 / sqrt(v + (double)c->eps));
    }
}

/* y = (x - mean) * invstd * gamma + beta, as (x - mean) * k0[g] * gw[b] + bw[b] + k1[g] */
static void dl__norm_apply_task(void *ctx, int task) {
    dl__norm *c = (dl__norm *)ctx;
    const float *gw = dl__norm_gamma_row(c), *bw = dl__norm_beta_row(c);
    int g, g0, g1, a;
    dl__norm_range(c, task, &g0, &g1);
    for (g = g0; g < g1; g++) {
        c->k0[g] = c->invstd[g] * dl__norm_group_gamma(c, g);
        c->k1[g] = !c->per_position && c->beta ? c->beta[g % c->period] : 0.0f;
    }
    for (a = 0; a < c->A; a++) {
        size_t at = dl__norm_at(c, a, 0);
        if (c->B == 1 && !c->per_position) {
            dl__cols_affine(c->y + at + g0, c->x + at + g0, c->mean + g0, c->k0 + g0, c->k1 + g0, g1 - g0);
            continue;
        }
        for (g = g0; g < g1; g++)
            dl__row_affine(c->y + at + (size_t)g * c->B, c->x + at + (size_t)g * c->B, gw, bw, c->B,
                           c->mean[g], c->k0[g], c->k1[g]);
    }
}

/* Backward, with xhat = (x - mean) * invstd and dxhat = dy * gamma:
   s1[g] = sum(dy * gw), s2[g] = sum(dy * gw * xhat) over the group, gw the gamma row (or ones).
   With a per-group gamma, s1 and s2 are the group's d(beta) and d(gamma), and
   sum(dxhat) = gamma * s1, sum(dxhat * xhat) = gamma * s2. */
static void dl__norm_sums_task(void *ctx, int task) {
    dl__norm *c = (dl__norm *)ctx;
    const float *gw = dl__norm_gamma_row(c);
    int g, g0, g1, a;
    dl__norm_range(c, task, &g0, &g1);
    for (g = g0; g < g1; g++) c->s1[g] = c->s2[g] = 0;
    for (a = 0; a < c->A; a++) {
        const float *xa = c->x + dl__norm_at(c, a, 0), *dya = c->dy + dl__norm_at(c, a, 0);
        if (c->B == 1 && !c->per_position) {
            dl__cols_grad_sums(c->s1 + g0, c->s2 + g0, dya + g0, xa + g0, c->mean + g0, c->invstd + g0, g1 - g0);
        } else {
            for (g = g0; g < g1; g++)
                dl__row_grad_sums(dya + (size_t)g * c->B, gw, xa + (size_t)g * c->B, c->B, c->mean[g],
                                  c->invstd[g], &c->s1[g], &c->s2[g]);
        }
    }
}

/* dx += invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))   with batch statistics,
   dx += invstd * dxhat                                                with fixed statistics;
   as dx += dy * gw[b] * k0[g] + (x - mean) * k1[g] + k2[g]. */
static void dl__norm_dx_task(void *ctx, int task) {
    dl__norm *c = (dl__norm *)ctx;
    const float *gw = dl__norm_gamma_row(c);
    double m = (double)c->A * (double)c->B;
    int g, g0, g1, a;
    dl__norm_range(c, task, &g0, &g1);
    for (g = g0; g < g1; g++) {
        double gk = dl__norm_group_gamma(c, g), is = c->invstd[g];
        int batch = c->batch_stats && m > 0;
        c->k0[g] = (float)(is * gk);
        c->k1[g] = batch ? (float)(-is * is * gk * c->s2[g] / m) : 0.0f;  /* -invstd^2 mean(dxhat*xhat) */
        c->k2[g] = batch ? (float)(-is * gk * c->s1[g] / m) : 0.0f;       /* -invstd mean(dxhat) */
    }
    for (a = 0; a < c->A; a++) {
        size_t at = dl__norm_at(c, a, 0);
        if (c->B == 1 && !c->per_position) {
            dl__cols_dx(c->dx + at + g0, c->dy + at + g0, c->x + at + g0, c->mean + g0, c->k0 + g0,
                        c->k1 + g0, c->k2 + g0, g1 - g0);
            continue;
        }
        for (g = g0; g < g1; g++) {
            size_t r = at + (size_t)g * c->B;
            dl__row_dx(c->dx + r, c->dy + r, c->x + r, gw, c->B, c->mean[g], c->k0[g], c->k1[g], c->k2[g]);
        }
    }
}

static void dl__norm_run(dl__norm *c, dl_parallel_fn fn) {
    if (c->n_tasks > 1) dl_parallel_for(c->n_tasks, fn, c);
    else fn(c, 0);
}

/* Fills the engine for contiguous x data [A, G, B]; allocates the per-group arrays and rows. */
static int dl__norm_init(dl__norm *c, const float *x, int A, int G, int B, float eps) {
    size_t total = (size_t)A * (size_t)G * (size_t)B;
    float *f;
    int b;
    memset(c, 0, sizeof *c);
    c->A = A; c->G = G; c->B = B; c->period = G ? G : 1; c->eps = eps; c->x = x;
    c->n_tasks = 1;
    if (total >= ((size_t)1 << 15) && G > 1) { /* big enough to be worth waking the pool */
        c->n_tasks = 4 * dl_get_num_threads();
        if (c->n_tasks > G) c->n_tasks = G;
    }
    c->s1 = (double *)dl__tmp_alloc(2 * (size_t)G * sizeof(double) + (6 * (size_t)G + 2 * (size_t)B) * sizeof(float));
    if (!c->s1) return 0;
    c->s2 = c->s1 + G;
    f = (float *)(c->s2 + G);
    c->mean = f; c->var = f + G; c->invstd = f + 2 * G;
    c->k0 = f + 3 * G; c->k1 = f + 4 * G; c->k2 = f + 5 * G;
    f += 6 * G;
    for (b = 0; b < B; b++) { f[b] = 1.0f; f[B + b] = 0.0f; }
    c->ones = f;
    c->zeros = f + B;
    return 1;
}

/* The shared forward: normalizes c->x into a new tensor shaped like x, computing the statistics
   first unless the caller filled mean/invstd (batch norm inference). Records `op` with inputs
   {x, gamma, beta} and keeps the engine as the node's context. */
static void dl__norm_backward(dl_node *n);

static dl_tensor *dl__norm_forward(const char *op, dl__norm *c, dl_tensor *x, dl_tensor *gamma,
                                   dl_tensor *beta, int compute_stats) {
    dl_tensor *in[3], *y = dl_tmp_uninit(DL_F32, x->ndim, x->shape);
    dl_node *n;
    if (!y) return NULL;
    c->gamma = gamma ? dl_contig_f32(gamma) : NULL;
    c->beta = beta ? dl_contig_f32(beta) : NULL;
    if ((gamma && !c->gamma) || (beta && !c->beta)) return NULL;
    c->y = (float *)y->data;
    c->batch_stats = compute_stats;
    if (compute_stats) dl__norm_run(c, dl__norm_stats_task);
    dl__norm_run(c, dl__norm_apply_task);
    in[0] = x; in[1] = gamma; in[2] = beta;
    n = dl_record(op, y, 3, in, dl__norm_backward, sizeof(dl__norm));
    if (n) *(dl__norm *)n->ctx = *c;
    return y;
}

static void dl__norm_backward(dl_node *n) {
    dl__norm *c = (dl__norm *)n->ctx;
    float *dx = dl_grad_buf(n->in[0]), *dgamma = dl_grad_buf(n->in[1]), *dbeta = dl_grad_buf(n->in[2]);
    int g, a, b;
    c->dy = n->out->grad;
    c->dx = dx;
    if ((dx && c->batch_stats) || (!c->per_position && (dgamma || dbeta))) dl__norm_run(c, dl__norm_sums_task);
    if (dx) dl__norm_run(c, dl__norm_dx_task);
    if (!dgamma && !dbeta) return;
    if (!c->per_position) { /* d(gamma[ch]) = sum(dy * xhat), d(beta[ch]) = sum(dy) over ch's groups */
        for (g = 0; g < c->G; g++) {
            if (dgamma) dgamma[g % c->period] += (float)c->s2[g];
            if (dbeta) dbeta[g % c->period] += (float)c->s1[g];
        }
    } else { /* layer norm: the same sums per position b, over all rows (serial, double sums) */
        double *dg = (double *)dl__tmp_alloc(2 * ((size_t)c->B + 1) * sizeof(double)), *db;
        if (!dg) return;
        db = dg + c->B + 1;
        memset(dg, 0, 2 * ((size_t)c->B + 1) * sizeof(double));
        for (a = 0; a < c->A; a++)
            for (g = 0; g < c->G; g++) {
                const float *xr = c->x + dl__norm_at(c, a, g), *dyr = c->dy + dl__norm_at(c, a, g);
                float mu = c->mean[g], is = c->invstd[g];
                for (b = 0; b < c->B; b++) {
                    dg[b] += (double)dyr[b] * ((xr[b] - mu) * is);
                    db[b] += dyr[b];
                }
            }
        for (b = 0; b < c->B; b++) {
            if (dgamma) dgamma[b] += (float)dg[b];
            if (dbeta) dbeta[b] += (float)db[b];
        }
    }
}

/* ---- Argument checks shared by the ops ---- */

/* 1 when t is an f32 CPU tensor of exactly the given shape (t NULL is allowed when optional). */
static int dl__check_shaped(const char *op, const char *name, const dl_tensor *t, int ndim, const int *shape) {
    char s[64];
    int i, ok;
    if (!t) return 1;
    if (t->device != DL_CPU) { dl__fail("%s: %s is not on the CPU", op, name); return 0; }
    if (t->dtype != DL_F32) { dl__fail("%s: %s must be f32, got %s", op, name, dl_dtype_name(t->dtype)); return 0; }
    ok = t->ndim == ndim;
    for (i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (!ok) {
        char want[64];
        size_t u = 0;
        want[0] = 0;
        for (i = 0; i < ndim && u < sizeof want; i++)
            u += (size_t)snprintf(want + u, sizeof want - u, i ? ", %d" : "%d", shape[i]);
        dl__fail("%s: %s has shape %s, expected [%s]", op, name, dl_shape_str(t, s, sizeof s), want);
        return 0;
    }
    return 1;
}

/* 1 when x is an f32 CPU tensor with at least min_ndim dimensions. */
static int dl__check_input(const char *op, const dl_tensor *x, int min_ndim) {
    char s[64];
    if (x->device != DL_CPU) { dl__fail("%s: input is not on the CPU", op); return 0; }
    if (x->dtype != DL_F32) { dl__fail("%s: input must be f32, got %s", op, dl_dtype_name(x->dtype)); return 0; }
    if (x->ndim < min_ndim) {
        dl__fail("%s: input %s needs at least %d dimensions", op, dl_shape_str(x, s, sizeof s), min_ndim);
        return 0;
    }
    return 1;
}

/* Product of x's dimensions from..to-1. */
static int dl__dims_prod(const dl_tensor *x, int from, int to) {
    int i, p = 1;
    for (i = from; i < to; i++) p *= x->shape[i];
    return p;
}

/* ---- Batch, layer and instance norm ---- */

/* Training: y = (x - mean_B) / sqrt(var_B + eps) * gamma + beta with the biased batch variance;
   running = (1 - momentum) * running + momentum * (mean_B, var_B * m / (m - 1)).
   Backward (m values per channel): dx = invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),
   dgamma = sum(dy * xhat), dbeta = sum(dy). Inference: the running statistics, dx = invstd * dxhat.
   Keras' momentum is 1 - ours (its 0.99 is our 0.01). */
DLDEF dl_tensor *dl_batch_norm(dl_tensor *x, dl_tensor *gamma, dl_tensor *beta,
                               dl_tensor *running_mean, dl_tensor *running_var,
                               int training, float momentum, float eps) {
    const char *op = "dl_batch_norm";
    const float *xs;
    dl__norm c;
    dl_tensor *y;
    int C, N, S, g;
    size_t m;
    if (!x) return NULL;
    if (!dl__check_input(op, x, 2)) return NULL;
    N = x->shape[0];
    C = x->shape[1];
    S = dl__dims_prod(x, 2, x->ndim);
    m = (size_t)N * (size_t)S;
    if (!dl__check_shaped(op, "gamma", gamma, 1, &C) || !dl__check_shaped(op, "beta", beta, 1, &C) ||
        !dl__check_shaped(op, "running_mean", running_mean, 1, &C) ||
        !dl__check_shaped(op, "running_var", running_var, 1, &C))
        return NULL;
    if (!(eps >= 0)) return (dl_tensor *)dl__fail("%s: eps must be >= 0, got %g", op, (double)eps);
    if (training && m <= 1) {
        char s[64];
        return (dl_tensor *)dl__fail("%s: expected more than 1 value per channel when training, got input %s", op, dl_shape_str(x, s, sizeof s));
    }
    if (!training && (!running_mean || !running_var))
        return (dl_tensor *)dl__fail("%s: running_mean and running_var are required when not training", op);
    xs = dl_contig_f32(x);
    if (!xs || !dl__norm_init(&c, xs, N, C, S, eps)) return NULL;
    if (!training) {
        for (g = 0; g < C; g++) {
            c.mean[g] = ((const float *)running_mean->data)[g * running_mean->strides[0]];
            c.var[g] = ((const float *)running_var->data)[g * running_var->strides[0]];
            c.invstd[g] = (float)(1.0 / sqrt((double)c.var[g] + (double)eps));
        }
    }
    y = dl__norm_forward(op, &c, x, gamma, beta, training);
    if (y && training) {
        float unbias = (float)((double)m / (double)(m - 1));
        for (g = 0; g < C; g++) {
            if (running_mean) {
                float *r = (float *)running_mean->data + g * running_mean->strides[0];
                *r = (1.0f - momentum) * *r + momentum * c.mean[g];
            }
            if (running_var) {
                float *r = (float *)running_var->data + g * running_var->strides[0];
                *r = (1.0f - momentum) * *r + momentum * c.var[g] * unbias;
            }
        }
    }
    return y;
}

/* y = (x - mean) / sqrt(var + eps) * gamma + beta over each row of the last normalized_ndim axes;
   dx = invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * gamma,
   dgamma = sum over rows of dy * xhat, dbeta = sum over rows of dy. */
DLDEF dl_tensor *dl_layer_norm(dl_tensor *x, int normalized_ndim, dl_tensor *gamma,
                               dl_tensor *beta, float eps) {
    const char *op = "dl_layer_norm";
    const float *xs;
    dl__norm c;
    int lead, B, k;
    if (!x) return NULL;
    if (!dl__check_input(op, x, 1)) return NULL;
    if (normalized_ndim < 1 || normalized_ndim > x->ndim)
        return (dl_tensor *)dl__fail("%s: normalized_ndim %d out of range 1..%d", op, normalized_ndim, x->ndim);
    if (!(eps >= 0)) return (dl_tensor *)dl__fail("%s: eps must be >= 0, got %g", op, (double)eps);
    k = x->ndim - normalized_ndim;
    if (!dl__check_shaped(op, "gamma", gamma, normalized_ndim, x->shape + k) ||
        !dl__check_shaped(op, "beta", beta, normalized_ndim, x->shape + k))
        return NULL;
    lead = dl__dims_prod(x, 0, k);
    B = dl__dims_prod(x, k, x->ndim);
    xs = dl_contig_f32(x);
    if (!xs || !dl__norm_init(&c, xs, 1, lead, B, eps)) return NULL;
    c.per_position = 1;
    return dl__norm_forward(op, &c, x, gamma, beta, 1);
}

/* Batch norm's training formulas with statistics per (n, c) instead of per c. */
DLDEF dl_tensor *dl_instance_norm(dl_tensor *x, dl_tensor *gamma, dl_tensor *beta, float eps) {
    const char *op = "dl_instance_norm";
    const float *xs;
    dl__norm c;
    int C, S;
    if (!x) return NULL;
    if (!dl__check_input(op, x, 3)) return NULL;
    C = x->shape[1];
    S = dl__dims_prod(x, 2, x->ndim);
    if (!dl__check_shaped(op, "gamma", gamma, 1, &C) || !dl__check_shaped(op, "beta", beta, 1, &C)) return NULL;
    if (!(eps >= 0)) return (dl_tensor *)dl__fail("%s: eps must be >= 0, got %g", op, (double)eps);
    if (S <= 1) {
        char s[64];
        return (dl_tensor *)dl__fail("%s: expected more than 1 spatial element, got input %s", op, dl_shape_str(x, s, sizeof s));
    }
    xs = dl_contig_f32(x);
    if (!xs || !dl__norm_init(&c, xs, 1, x->shape[0] * C, S, eps)) return NULL;
    c.period = C;
    return dl__norm_forward(op, &c, x, gamma, beta, 1);
}

/* ---- Dropout ---- */

typedef struct dl__dropout_ctx {
    const uint8_t *keep;
    float scale;
} dl__dropout_ctx;

static void dl__dropout_backward(dl_node *n) {
    const dl__dropout_ctx *c = (const dl__dropout_ctx *)n->ctx;
    float *gx = dl_grad_buf(n->in[0]);
    const float *gy = n->out->grad;
    size_t i;
    if (!gx) return;
    for (i = 0; i < n->out->numel; i++) gx[i] += c->keep[i] ? gy[i] * c->scale : 0.0f;
}

/* y = x * keep / (1 - p), keep ~ Bernoulli(1 - p); dx = dy * keep / (1 - p). Keras: the same. */
DLDEF dl_tensor *dl_dropout(dl_tensor *x, float p, int training, dl_rng *rng) {
    const char *op = "dl_dropout";
    const float *xs;
    uint8_t *keep;
    float scale, *ys;
    dl_tensor *y;
    dl_node *n;
    size_t i;
    if (!x) return NULL;
    if (!dl__check_input(op, x, 0)) return NULL;
    if (!(p >= 0.0f && p <= 1.0f)) return (dl_tensor *)dl__fail("%s: p must be in [0, 1], got %g", op, (double)p);
    if (!training || p == 0.0f) return x;
    if (!rng) return (dl_tensor *)dl__fail("%s: rng is NULL while training", op);
    xs = dl_contig_f32(x);
    y = dl_tmp_uninit(DL_F32, x->ndim, x->shape);
    keep = (uint8_t *)dl__tmp_alloc(x->numel);
    if (!xs || !y || !keep) return NULL;
    scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    ys = (float *)y->data;
    for (i = 0; i < x->numel; i++) {
        keep[i] = dl_rng_uniform(rng) >= p; /* P(u >= p) = 1 - p for u uniform in [0, 1) */
        ys[i] = keep[i] ? xs[i] * scale : 0.0f;
    }
    n = dl_record("dropout", y, 1, &x, dl__dropout_backward, sizeof(dl__dropout_ctx));
    if (n) {
        dl__dropout_ctx *c = (dl__dropout_ctx *)n->ctx;
        c->keep = keep;
        c->scale = scale;
    }
    return y;
}

/* ---- Embedding ---- */

static void dl__embedding_backward(dl_node *n) {
    const int32_t *idx = (const int32_t *)n->ctx;
    float *gw = dl_grad_buf(n->in[0]);
    const float *gy = n->out->grad;
    int D = n->in[0]->shape[1], d;
    size_t i, rows = n->out->numel / (D ? (size_t)D : 1);
    if (!gw || D == 0) return;
    for (i = 0; i < rows; i++)
        for (d = 0; d < D; d++) gw[(size_t)idx[i] * (size_t)D + (size_t)d] += gy[i * (size_t)D + (size_t)d];
}

/* y[..., :] = weight[indices[...], :];  dweight[v, :] += sum of dy rows whose index is v. */
DLDEF dl_tensor *dl_embedding(dl_tensor *weight, dl_tensor *indices) {
    const char *op = "dl_embedding";
    const float *w;
    int32_t *idx;
    int shape[DL_MAX_DIMS], V, D, i;
    dl_tensor *y;
    dl_node *n;
    size_t r;
    char s[64];
    if (!weight || !indices) return NULL;
    if (weight->device != DL_CPU || indices->device != DL_CPU) return (dl_tensor *)dl__fail("%s: tensors are not on the CPU", op);
    if (weight->dtype != DL_F32 || weight->ndim != 2)
        return (dl_tensor *)dl__fail("%s: weight must be a 2-d f32 tensor [V, D], got %s %s", op, dl_dtype_name(weight->dtype), dl_shape_str(weight, s, sizeof s));
    if (indices->dtype != DL_I32) return (dl_tensor *)dl__fail("%s: indices must be i32, got %s", op, dl_dtype_name(indices->dtype));
    if (indices->ndim >= DL_MAX_DIMS) return (dl_tensor *)dl__fail("%s: indices have too many dimensions (%d)", op, indices->ndim);
    V = weight->shape[0];
    D = weight->shape[1];
    idx = (int32_t *)dl__tmp_alloc(indices->numel * sizeof(int32_t)); /* contiguous copy, kept for backward */
    if (!idx) return NULL;
    for (r = 0; r < indices->numel; r++) {
        idx[r] = ((const int32_t *)indices->data)[dl__offset_of(indices, r)];
        if (idx[r] < 0 || idx[r] >= V) return (dl_tensor *)dl__fail("%s: index %d out of range for %d rows", op, (int)idx[r], V);
    }
    for (i = 0; i < indices->ndim; i++) shape[i] = indices->shape[i];
    shape[indices->ndim] = D;
    w = dl_contig_f32(weight);
    y = dl_tmp_uninit(DL_F32, indices->ndim + 1, shape);
    if (!w || !y) return NULL;
    for (r = 0; r < indices->numel; r++)
        memcpy((float *)y->data + r * (size_t)D, w + (size_t)idx[r] * (size_t)D, (size_t)D * sizeof(float));
    n = dl_record("embedding", y, 1, &weight, dl__embedding_backward, 0);
    if (n) n->ctx = idx;
    return y;
}

/* ---- Gram matrix ---- */

typedef struct dl__gram_ctx {
    const float *f;   /* x as contiguous [N, C, L] */
    int N, C, L;
} dl__gram_ctx;

static void dl__gram_backward(dl_node *n) {
    const dl__gram_ctx *c = (const dl__gram_ctx *)n->ctx;
    float *gx = dl_grad_buf(n->in[0]), *sym;
    const float *gy = n->out->grad;
    size_t cc = (size_t)c->C * (size_t)c->C, cl = (size_t)c->C * (size_t)c->L;
    int b, i, j;
    if (!gx || c->L == 0) return;
    sym = (float *)dl__tmp_alloc(cc * sizeof(float));
    if (!sym) return;
    for (b = 0; b < c->N; b++) {
        const float *g = gy + (size_t)b * cc;
        for (i = 0; i < c->C; i++)
            for (j = 0; j < c->C; j++) sym[i * c->C + j] = g[i * c->C + j] + g[j * c->C + i];
        dl_sgemm(0, 0, c->C, c->L, c->C, 1.0f / (float)c->L, sym, c->C, c->f + (size_t)b * cl, c->L,
                 1.0f, gx + (size_t)b * cl, c->L);
    }
}

/* G[n] = F F^T / L with F = x[n] as [C, L], L = H*W;  dF = (dG + dG^T) F / L. */
DLDEF dl_tensor *dl_gram(dl_tensor *x) {
    const char *op = "dl_gram";
    const float *f;
    dl_tensor *y;
    dl_node *n;
    int N, C, L, b, shape[3];
    if (!x) return NULL;
    if (!dl__check_input(op, x, 3)) return NULL;
    N = x->shape[0];
    C = x->shape[1];
    L = dl__dims_prod(x, 2, x->ndim);
    f = dl_contig_f32(x);
    shape[0] = N; shape[1] = C; shape[2] = C;
    y = dl_tmp(DL_F32, 3, shape);
    if (!f || !y) return NULL;
    for (b = 0; b < N && L > 0; b++)
        dl_sgemm(0, 1, C, C, L, 1.0f / (float)L, f + (size_t)b * C * L, L, f + (size_t)b * C * L, L,
                 0.0f, (float *)y->data + (size_t)b * C * C, C);
    n = dl_record("gram", y, 1, &x, dl__gram_backward, sizeof(dl__gram_ctx));
    if (n) {
        dl__gram_ctx *c = (dl__gram_ctx *)n->ctx;
        c->f = f; c->N = N; c->C = C; c->L = L;
    }
    return y;
}
