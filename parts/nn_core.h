/* ==== LAYERS: implementation ================================================================ */

#if !defined(_WIN32)
#include <sys/time.h>
#include <unistd.h>
#endif
#include <stdarg.h>

#define DL__LAYER_HAS_ACT 1u   /* iconf[DL__ACT_SLOT] holds the layer's dl_act */
#define DL__LAYER_NAMED   2u   /* a model gave the layer its final name */
#define DL__ACT_SLOT (DL_LAYER_MAX_CONF - 1)

static dl_rng dl__nn_rng = {{0x9E3779B97F4A7C15ull, 0xBF58476D1CE4E5B9ull, 0x94D049BB133111EBull, 1}};
static int dl__nn_rng_seeded = 0;

DLDEF void dl_nn_seed(uint64_t seed) { dl_rng_seed(&dl__nn_rng, seed); dl__nn_rng_seeded = 1; }

static dl_rng *dl__nn_gen(void) {
    if (!dl__nn_rng_seeded) dl_nn_seed(0);
    return &dl__nn_rng;
}

static double dl__now(void) {   /* seconds, for progress and timing only */
#if !defined(_WIN32)
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
#else
    return (double)clock() / CLOCKS_PER_SEC;
#endif
}

DLDEF const char *dl_act_name(dl_act act) {
    static const char *const names[] = {"linear", "relu", "sigmoid", "tanh", "softmax", "gelu", "elu",
                                        "leaky_relu", "softplus"};
    return (unsigned)act < sizeof names / sizeof names[0] ? names[act] : "?";
}

DLDEF dl_tensor *dl_activate(dl_tensor *x, dl_act act) {
    if (!x) return NULL;
    switch (act) {
    case DL_LINEAR: return x;
    case DL_RELU: return dl_relu(x);
    case DL_SIGMOID: return dl_sigmoid(x);
    case DL_TANH: return dl_tanh(x);
    case DL_SOFTMAX: return dl_softmax(x, x->ndim - 1);
    case DL_GELU: return dl_gelu(x);
    case DL_ELU: return dl_elu(x, 1.0f);
    case DL_LEAKY_RELU: return dl_leaky_relu(x, 0.2f);
    case DL_SOFTPLUS: return dl_softplus(x);
    }
    dl_set_error("dl_activate: unknown activation %d", (int)act);
    return NULL;
}

/* Keras' fans: [in, out] matrices; 4-d kernels [a, b, kh, kw] in torch layout. */
static void dl__fans(const dl_tensor *t, double *fan_in, double *fan_out) {
    double rf = 1;
    int i;
    if (t->ndim == 2) { *fan_in = t->shape[0]; *fan_out = t->shape[1]; return; }
    if (t->ndim >= 3) {
        for (i = 2; i < t->ndim; i++) rf *= t->shape[i];
        *fan_in = t->shape[1] * rf;
        *fan_out = t->shape[0] * rf;
        return;
    }
    *fan_in = *fan_out = t->ndim == 1 ? t->shape[0] : 1;
}

static int dl__init_orthogonal(dl_tensor *t, dl_rng *r);   /* parts/nn_rnn.h */

DLDEF int dl_init_tensor(dl_tensor *t, dl_init init, dl_rng *rng) {
    double fi, fo;
    if (!t || t->dtype != DL_F32 || !dl_is_contiguous(t)) {
        dl_set_error("dl_init_tensor: needs a contiguous f32 tensor");
        return -1;
    }
    if (!rng) rng = dl__nn_gen();
    dl__fans(t, &fi, &fo);
    switch (init) {
    case DL_INIT_ZEROS: dl_fill(t, 0.0f); return 0;
    case DL_INIT_ONES: dl_fill(t, 1.0f); return 0;
    case DL_INIT_GLOROT_UNIFORM: dl_init_glorot_uniform(t, rng, (int)fi, (int)fo); return 0;
    case DL_INIT_GLOROT_NORMAL: dl_init_glorot_normal(t, rng, (int)fi, (int)fo); return 0;
    case DL_INIT_HE_UNIFORM: dl_init_he_uniform(t, rng, (int)fi); return 0;
    case DL_INIT_HE_NORMAL: dl_init_he_normal(t, rng, (int)fi); return 0;
    case DL_INIT_UNIFORM_005: dl_fill_uniform(t, rng, -0.05f, 0.05f); return 0;
    case DL_INIT_ORTHOGONAL: return dl__init_orthogonal(t, rng);
    }
    dl_set_error("dl_init_tensor: unknown initializer %d", (int)init);
    return -1;
}

/* ---- The layer object ---- */

DLDEF dl_layer *dl_layer_new(const dl_layer_ops *ops, const char *name, void *user) {
    dl_layer *l;
    if (!ops || !ops->forward) { dl_set_error("dl_layer_new: ops with a forward function needed"); return NULL; }
    l = (dl_layer *)DL_MALLOC(sizeof *l);
    if (!l) { dl_set_error("dl_layer_new: out of memory"); return NULL; }
    memset(l, 0, sizeof *l);
    l->ops = ops;
    snprintf(l->name, sizeof l->name, "%s", name && name[0] ? name : (ops->kind ? ops->kind : "layer"));
    l->trainable = 1;
    l->user = user;
    dl_rng_seed(&l->rng, dl_rng_u64(dl__nn_gen()));
    return l;
}

static void dl__layer_destroy(dl_layer *l) {
    int i;
    if (l->ops->destroy) l->ops->destroy(l);
    for (i = 0; i < l->n_params; i++) dl_tensor_free(l->params[i]);
    DL_FREE(l);
}

DLDEF void dl_layer_free(dl_layer *l) {
    if (l && l->refs <= 0) dl__layer_destroy(l);
}

/* While dl_model_load builds a model, the file it reads: every weight is checked against the
   file before it is allocated, so a hostile architecture cannot ask for more memory than the
   file holds. */
static DL__TLS const dl_safetensors *dl__loading;

static int dl__check_file_weight(const dl_layer *l, const char *name, int ndim, const int *shape) {
    char full[128];
    const dl_tensor *src;
    int i, ok;
    snprintf(full, sizeof full, "%s/%s", l->name, name);
    src = dl_safetensors_get(dl__loading, full);
    ok = src && src->ndim == ndim;
    for (i = 0; ok && i < ndim; i++) ok = src->shape[i] == shape[i];
    if (!ok) {
        char a[64];
        dl_set_error("the file has %s '%s' %s, but the layer makes it with %d axes", src ? "a weight" : "no weight", full,
                     src ? dl_shape_str(src, a, sizeof a) : "", ndim);
    }
    return ok ? 0 : -1;
}

DLDEF dl_tensor *dl_layer_add_weight(dl_layer *l, const char *name, int ndim, const int *shape,
                                     dl_init init, int trainable) {
    dl_tensor *t;
    if (!l || !name) { dl_set_error("dl_layer_add_weight: NULL layer or name"); return NULL; }
    if (l->n_params >= DL_LAYER_MAX_PARAMS || strlen(name) >= sizeof l->param_names[0]) {
        dl_set_error("dl_layer_add_weight: %s: too many weights or name '%s' too long", l->name, name);
        return NULL;
    }
    if (dl_layer_weight(l, name)) { dl_set_error("dl_layer_add_weight: %s already has '%s'", l->name, name); return NULL; }
    if (dl__loading && dl__check_file_weight(l, name, ndim, shape) != 0) return NULL;
    t = dl_tensor_new(DL_F32, ndim, shape);
    if (!t) return NULL;
    if (dl_init_tensor(t, init, NULL) != 0) { dl_tensor_free(t); return NULL; }
    if (trainable) dl_set_requires_grad(t, 1);
    l->params[l->n_params] = t;
    snprintf(l->param_names[l->n_params], sizeof l->param_names[0], "%s", name);
    l->param_trainable[l->n_params] = (unsigned char)(trainable != 0);
    l->n_params++;
    return t;
}

DLDEF dl_tensor *dl_layer_weight(const dl_layer *l, const char *name) {
    int i;
    if (!l || !name) return NULL;
    for (i = 0; i < l->n_params; i++)
        if (strcmp(l->param_names[i], name) == 0) return l->params[i];
    return NULL;
}

DLDEF dl_tensor *dl_layer_call_n(dl_layer *l, int n_in, dl_tensor *const *in, int training) {
    int i, lo, hi;
    dl_tensor *y;
    if (!l) { dl_set_error("dl_layer_call: NULL layer"); return NULL; }
    lo = l->ops->min_inputs ? l->ops->min_inputs : 1;
    hi = l->ops->max_inputs ? l->ops->max_inputs : 1;
    if (n_in < lo || n_in > hi || !in) {
        dl_set_error("%s (%s): takes %d to %d inputs, got %d", l->name, l->ops->kind, lo, hi, n_in);
        return NULL;
    }
    for (i = 0; i < n_in; i++) if (!in[i]) return NULL;   /* an earlier failure: keep its message */
    if (!l->built) {
        if (l->ops->build && l->ops->build(l, n_in, in) != 0) return NULL;
        l->built = 1;
    }
    y = l->ops->forward(l, n_in, in, training);
    if (y) {
        l->out_ndim = y->ndim - 1;
        for (i = 1; i < y->ndim; i++) l->out_shape[i - 1] = y->shape[i];
    }
    return y;
}

DLDEF dl_tensor *dl_layer_call(dl_layer *l, dl_tensor *x, int training) {
    return dl_layer_call_n(l, 1, &x, training);
}

/* ---- Built-in layers ----
   Settings live in iconf/fconf so that model files can store any layer the same way; each
   constructor below documents its slots. */

static dl_layer *dl__builtin(const dl_layer_ops *ops, const char *base) {
    return dl_layer_new(ops, base, NULL);
}

/* Copies the current error message (to build a new one around it). */
static void dl__error_copy(char *msg, size_t size) {
    size_t n = strlen(dl_error());
    if (n >= size) n = size - 1;
    memcpy(msg, dl_error(), n);
    msg[n] = 0;
}

static dl_layer *dl__ctor_fail(const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    dl_set_error("%s", msg);
    return NULL;
}

static dl_tensor *dl__need_rank(const dl_layer *l, dl_tensor *x, int lo, int hi) {
    char s[64];
    if (x->ndim < lo || x->ndim > hi) {
        dl_set_error("%s (%s): input %s has %d axes, expected %d..%d (batch axis included)", l->name,
                     l->ops->kind, dl_shape_str(x, s, sizeof s), x->ndim, lo, hi);
        return NULL;
    }
    return x;
}

/* dl_layer_add_weight with the shape written out (C++ has no compound literals). */
static dl_tensor *dl__weight(dl_layer *l, const char *name, int ndim, int d0, int d1, int d2, int d3,
                             dl_init init, int trainable) {
    int shape[4];
    shape[0] = d0; shape[1] = d1; shape[2] = d2; shape[3] = d3;
    return dl_layer_add_weight(l, name, ndim, shape, init, trainable);
}

/* Dense: iconf[0] units, act slot. kernel [in, units] glorot_uniform, bias [units] zeros. */
static int dl__dense_build(dl_layer *l, int n, dl_tensor *const *in) {
    int in_dim = in[0]->shape[in[0]->ndim - 1];
    (void)n;
    if (in[0]->ndim < 2) { dl_set_error("%s (Dense): input needs a batch axis and a feature axis", l->name); return -1; }
    if (!dl__weight(l, "kernel", 2, in_dim, l->iconf[0], 0, 0, DL_INIT_GLOROT_UNIFORM, 1)) return -1;
    if (!dl__weight(l, "bias", 1, l->iconf[0], 0, 0, 0, DL_INIT_ZEROS, 1)) return -1;
    return 0;
}
static dl_tensor *dl__dense_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    dl_tensor *x = in[0];
    (void)n; (void)training;
    if (x->ndim < 2 || x->shape[x->ndim - 1] != l->params[0]->shape[0]) {
        char s[64];
        dl_set_error("%s (Dense): input %s, but the kernel expects %d features", l->name,
                     dl_shape_str(x, s, sizeof s), l->params[0]->shape[0]);
        return NULL;
    }
    return dl_activate(dl_linear(x, l->params[0], l->params[1]), (dl_act)l->iconf[DL__ACT_SLOT]);
}
static const dl_layer_ops dl__dense_ops = {"Dense", dl__dense_build, dl__dense_forward, NULL, 1, 1};

static int dl__check_act(dl_act act) { return (unsigned)act <= (unsigned)DL_SOFTPLUS; }

DLDEF dl_layer *dl_Dense(int units, dl_act act) {
    dl_layer *l;
    if (units <= 0 || !dl__check_act(act)) return dl__ctor_fail("dl_Dense: units %d must be > 0, activation %d known", units, (int)act);
    if (!(l = dl__builtin(&dl__dense_ops, "dense"))) return NULL;
    l->iconf[0] = units;
    l->iconf[DL__ACT_SLOT] = act;
    l->flags |= DL__LAYER_HAS_ACT;
    return l;
}

/* Conv2D / Conv2DTranspose: iconf[0] filters, [1] kernel, [2] stride, [3] padding, act slot. */
static int dl__conv_build(dl_layer *l, int n, dl_tensor *const *in) {
    int cin, k = l->iconf[1], transpose = l->ops->kind[6] == 'T';
    (void)n;
    if (in[0]->ndim != 4) { dl_set_error("%s (%s): input must be [N, C, H, W]", l->name, l->ops->kind); return -1; }
    cin = in[0]->shape[1];
    if (!dl__weight(l, "kernel", 4, transpose ? cin : l->iconf[0], transpose ? l->iconf[0] : cin, k, k,
                    DL_INIT_GLOROT_UNIFORM, 1))
        return -1;
    if (!dl__weight(l, "bias", 1, l->iconf[0], 0, 0, 0, DL_INIT_ZEROS, 1)) return -1;
    return 0;
}
static dl_tensor *dl__conv_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    dl_tensor *x = in[0], *w = l->params[0];
    int k = l->iconf[1], s = l->iconf[2], same = l->iconf[3] == DL_SAME;
    dl_conv_opts o;
    (void)n; (void)training;
    if (!dl__need_rank(l, x, 4, 4)) return NULL;
    if (x->shape[1] != w->shape[1]) {
        dl_set_error("%s (Conv2D): input has %d channels, the kernel expects %d", l->name, x->shape[1], w->shape[1]);
        return NULL;
    }
    memset(&o, 0, sizeof o);
    o.stride[0] = o.stride[1] = s;
    if (same) {   /* Keras: out = ceil(in / s); the odd extra padding row/column goes last */
        int ph = 0, pw = 0, d;
        for (d = 0; d < 2; d++) {
            int len = x->shape[2 + d], out = (len + s - 1) / s, total = (out - 1) * s + k - len;
            if (total < 0) total = 0;
            if (d == 0) ph = total; else pw = total;
        }
        if (ph % 2 == 0 && pw % 2 == 0) { o.padding[0] = ph / 2; o.padding[1] = pw / 2; }
        else x = dl_pad2d(x, pw / 2, pw - pw / 2, ph / 2, ph - ph / 2, DL_PAD_ZERO);
    }
    return dl_activate(dl_conv2d(x, w, l->params[1], &o), (dl_act)l->iconf[DL__ACT_SLOT]);
}
static dl_tensor *dl__convt_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    dl_tensor *x = in[0], *w = l->params[0], *y;
    int k = l->iconf[1], s = l->iconf[2];
    dl_conv_opts o;
    (void)n; (void)training;
    if (!dl__need_rank(l, x, 4, 4)) return NULL;
    if (x->shape[1] != w->shape[0]) {
        dl_set_error("%s (Conv2DTranspose): input has %d channels, the kernel expects %d", l->name, x->shape[1], w->shape[0]);
        return NULL;
    }
    memset(&o, 0, sizeof o);
    o.stride[0] = o.stride[1] = s;
    y = dl_conv_transpose2d(x, w, l->params[1], &o);   /* full size (in - 1) * s + k */
    if (y && l->iconf[3] == DL_SAME) {
        /* Keras "same": in * s, the transpose of a "same" convolution, which pads
           floor((k - s) / 2) first: crop that many at the start and the rest at the end. */
        int total = k - s, first = total / 2;
        y = dl_slice(dl_slice(y, 2, first, first + x->shape[2] * s, 1), 3, first, first + x->shape[3] * s, 1);
    }
    return dl_activate(y, (dl_act)l->iconf[DL__ACT_SLOT]);
}
static const dl_layer_ops dl__conv_ops = {"Conv2D", dl__conv_build, dl__conv_forward, NULL, 1, 1};
static const dl_layer_ops dl__convt_ops = {"Conv2DTranspose", dl__conv_build, dl__convt_forward, NULL, 1, 1};

static dl_layer *dl__conv_new(const dl_layer_ops *ops, const char *base, int filters, int kernel, int stride,
                              dl_padding padding, dl_act act) {
    dl_layer *l;
    if (filters <= 0 || kernel <= 0 || stride <= 0 || (padding != DL_VALID && padding != DL_SAME) || !dl__check_act(act))
        return dl__ctor_fail("dl_%s: filters %d, kernel %d and stride %d must be > 0, padding DL_VALID or DL_SAME",
                             ops->kind, filters, kernel, stride);
    if (ops == &dl__convt_ops && padding == DL_SAME && kernel < stride)
        return dl__ctor_fail("dl_Conv2DTranspose: DL_SAME needs kernel >= stride (got %d < %d)", kernel, stride);
    if (!(l = dl__builtin(ops, base))) return NULL;
    l->iconf[0] = filters; l->iconf[1] = kernel; l->iconf[2] = stride; l->iconf[3] = padding;
    l->iconf[DL__ACT_SLOT] = act;
    l->flags |= DL__LAYER_HAS_ACT;
    return l;
}
DLDEF dl_layer *dl_Conv2D(int filters, int kernel, int stride, dl_padding padding, dl_act act) {
    return dl__conv_new(&dl__conv_ops, "conv2d", filters, kernel, stride, padding, act);
}
DLDEF dl_layer *dl_Conv2DTranspose(int filters, int kernel, int stride, dl_padding padding, dl_act act) {
    return dl__conv_new(&dl__convt_ops, "conv2d_transpose", filters, kernel, stride, padding, act);
}

/* Pooling: iconf[0] pool, [1] stride. */
static dl_tensor *dl__pool_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    dl_conv_opts o;
    (void)n; (void)training;
    if (!dl__need_rank(l, in[0], 4, 4)) return NULL;
    memset(&o, 0, sizeof o);
    o.stride[0] = o.stride[1] = l->iconf[1];
    return l->ops->kind[0] == 'M' ? dl_max_pool2d(in[0], l->iconf[0], l->iconf[0], &o)
                                  : dl_avg_pool2d(in[0], l->iconf[0], l->iconf[0], &o);
}
static const dl_layer_ops dl__maxpool_ops = {"MaxPool2D", NULL, dl__pool_forward, NULL, 1, 1};
static const dl_layer_ops dl__avgpool_ops = {"AvgPool2D", NULL, dl__pool_forward, NULL, 1, 1};
static dl_layer *dl__pool_new(const dl_layer_ops *ops, const char *base, int pool, int stride) {
    dl_layer *l;
    if (pool <= 0 || stride < 0) return dl__ctor_fail("dl_%s: pool %d must be > 0, stride %d >= 0", ops->kind, pool, stride);
    if (!(l = dl__builtin(ops, base))) return NULL;
    l->iconf[0] = pool;
    l->iconf[1] = stride ? stride : pool;
    return l;
}
DLDEF dl_layer *dl_MaxPool2D(int pool, int stride) { return dl__pool_new(&dl__maxpool_ops, "max_pooling2d", pool, stride); }
DLDEF dl_layer *dl_AvgPool2D(int pool, int stride) { return dl__pool_new(&dl__avgpool_ops, "average_pooling2d", pool, stride); }

static dl_tensor *dl__gap_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    (void)n; (void)training;
    return dl__need_rank(l, in[0], 4, 4) ? dl_global_avg_pool2d(in[0]) : NULL;
}
static const dl_layer_ops dl__gap_ops = {"GlobalAvgPool2D", NULL, dl__gap_forward, NULL, 1, 1};
DLDEF dl_layer *dl_GlobalAvgPool2D(void) { return dl__builtin(&dl__gap_ops, "global_average_pooling2d"); }

static dl_tensor *dl__flatten_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    (void)n; (void)training;
    if (in[0]->ndim == 1) return dl_unsqueeze(in[0], 1);
    return dl__need_rank(l, in[0], 1, DL_MAX_DIMS) ? dl_flatten(in[0], 1, in[0]->ndim - 1) : NULL;
}
static const dl_layer_ops dl__flatten_ops = {"Flatten", NULL, dl__flatten_forward, NULL, 1, 1};
DLDEF dl_layer *dl_Flatten(void) { return dl__builtin(&dl__flatten_ops, "flatten"); }

/* Reshape: iconf[0] ndim, iconf[1..] the per-sample shape. */
static dl_tensor *dl__reshape_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    int shape[DL_MAX_DIMS], i;
    (void)n; (void)training;
    shape[0] = in[0]->shape[0];
    for (i = 0; i < l->iconf[0]; i++) shape[1 + i] = l->iconf[1 + i];
    return dl_reshape(in[0], 1 + l->iconf[0], shape);
}
static const dl_layer_ops dl__reshape_ops = {"Reshape", NULL, dl__reshape_forward, NULL, 1, 1};
DLDEF dl_layer *dl_Reshape(int ndim, const int *shape) {
    dl_layer *l;
    int i, neg = 0;
    if (ndim < 1 || ndim > DL_LAYER_MAX_CONF - 2 || !shape) return dl__ctor_fail("dl_Reshape: 1..%d axes needed", DL_LAYER_MAX_CONF - 2);
    for (i = 0; i < ndim; i++) {
        if (shape[i] == -1) neg++;
        else if (shape[i] <= 0) return dl__ctor_fail("dl_Reshape: axis %d has size %d", i, shape[i]);
    }
    if (neg > 1) return dl__ctor_fail("dl_Reshape: at most one -1");
    if (!(l = dl__builtin(&dl__reshape_ops, "reshape"))) return NULL;
    l->iconf[0] = ndim;
    for (i = 0; i < ndim; i++) l->iconf[1 + i] = shape[i];
    return l;
}

/* Dropout: fconf[0] rate. */
static dl_tensor *dl__dropout_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    (void)n;
    return dl_dropout(in[0], l->fconf[0], training, &l->rng);
}
static const dl_layer_ops dl__dropout_ops = {"Dropout", NULL, dl__dropout_forward, NULL, 1, 1};
DLDEF dl_layer *dl_Dropout(float rate) {
    dl_layer *l;
    if (!(rate >= 0.0f && rate < 1.0f)) return dl__ctor_fail("dl_Dropout: rate %g must be in [0, 1)", (double)rate);
    if (!(l = dl__builtin(&dl__dropout_ops, "dropout"))) return NULL;
    l->fconf[0] = rate;
    return l;
}

/* BatchNormalization: fconf[0] momentum (Keras' meaning), [1] epsilon. */
static int dl__bn_build(dl_layer *l, int n, dl_tensor *const *in) {
    int c;
    (void)n;
    if (in[0]->ndim < 2) { dl_set_error("%s (BatchNormalization): input needs a channel axis", l->name); return -1; }
    c = in[0]->shape[1];
    if (!dl__weight(l, "gamma", 1, c, 0, 0, 0, DL_INIT_ONES, 1) ||
        !dl__weight(l, "beta", 1, c, 0, 0, 0, DL_INIT_ZEROS, 1) ||
        !dl__weight(l, "moving_mean", 1, c, 0, 0, 0, DL_INIT_ZEROS, 0) ||
        !dl__weight(l, "moving_variance", 1, c, 0, 0, 0, DL_INIT_ONES, 0))
        return -1;
    return 0;
}
static dl_tensor *dl__bn_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    (void)n;
    /* A frozen BatchNormalization runs in inference mode, as in Keras (fine-tuning). */
    return dl_batch_norm(in[0], l->params[0], l->params[1], l->params[2], l->params[3], training && l->trainable,
                         1.0f - l->fconf[0], l->fconf[1]);
}
static const dl_layer_ops dl__bn_ops = {"BatchNormalization", dl__bn_build, dl__bn_forward, NULL, 1, 1};
DLDEF dl_layer *dl_BatchNormalization(float momentum, float epsilon) {
    dl_layer *l;
    if (momentum <= 0.0f) momentum = 0.99f;
    if (epsilon <= 0.0f) epsilon = 1e-3f;
    if (!(momentum < 1.0f)) return dl__ctor_fail("dl_BatchNormalization: momentum %g must be < 1", (double)momentum);
    if (!(l = dl__builtin(&dl__bn_ops, "batch_normalization"))) return NULL;
    l->fconf[0] = momentum;
    l->fconf[1] = epsilon;
    return l;
}

/* LayerNormalization: fconf[0] epsilon; gamma, beta over the last axis. */
static int dl__ln_build(dl_layer *l, int n, dl_tensor *const *in) {
    int f = in[0]->shape[in[0]->ndim - 1];
    (void)n;
    if (in[0]->ndim < 1) { dl_set_error("%s (LayerNormalization): input needs an axis", l->name); return -1; }
    if (!dl__weight(l, "gamma", 1, f, 0, 0, 0, DL_INIT_ONES, 1) ||
        !dl__weight(l, "beta", 1, f, 0, 0, 0, DL_INIT_ZEROS, 1))
        return -1;
    return 0;
}
static dl_tensor *dl__ln_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    (void)n; (void)training;
    return dl_layer_norm(in[0], 1, l->params[0], l->params[1], l->fconf[0]);
}
static const dl_layer_ops dl__ln_ops = {"LayerNormalization", dl__ln_build, dl__ln_forward, NULL, 1, 1};
DLDEF dl_layer *dl_LayerNormalization(float epsilon) {
    dl_layer *l;
    if (!(l = dl__builtin(&dl__ln_ops, "layer_normalization"))) return NULL;
    l->fconf[0] = epsilon > 0.0f ? epsilon : 1e-3f;
    return l;
}

/* Embedding: iconf[0] input_dim, [1] output_dim; "embeddings" [input_dim, output_dim]. */
static int dl__emb_build(dl_layer *l, int n, dl_tensor *const *in) {
    (void)n; (void)in;
    return dl__weight(l, "embeddings", 2, l->iconf[0], l->iconf[1], 0, 0, DL_INIT_UNIFORM_005, 1) ? 0 : -1;
}
static dl_tensor *dl__emb_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    dl_tensor *ids = in[0];
    (void)n; (void)training;
    if (ids->dtype == DL_F32) ids = dl_cast(ids, DL_I32);   /* data sets hold f32: whole numbers */
    return dl_embedding(l->params[0], ids);
}
static const dl_layer_ops dl__emb_ops = {"Embedding", dl__emb_build, dl__emb_forward, NULL, 1, 1};
DLDEF dl_layer *dl_Embedding(int input_dim, int output_dim) {
    dl_layer *l;
    if (input_dim <= 0 || output_dim <= 0) return dl__ctor_fail("dl_Embedding: input_dim %d, output_dim %d must be > 0", input_dim, output_dim);
    if (!(l = dl__builtin(&dl__emb_ops, "embedding"))) return NULL;
    l->iconf[0] = input_dim;
    l->iconf[1] = output_dim;
    return l;
}

static dl_tensor *dl__activation_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    (void)n; (void)training;
    return dl_activate(in[0], (dl_act)l->iconf[DL__ACT_SLOT]);
}
static const dl_layer_ops dl__activation_ops = {"Activation", NULL, dl__activation_forward, NULL, 1, 1};
DLDEF dl_layer *dl_Activation(dl_act act) {
    dl_layer *l;
    if (!dl__check_act(act)) return dl__ctor_fail("dl_Activation: unknown activation %d", (int)act);
    if (!(l = dl__builtin(&dl__activation_ops, "activation"))) return NULL;
    l->iconf[DL__ACT_SLOT] = act;
    l->flags |= DL__LAYER_HAS_ACT;
    return l;
}

/* Merging layers: Add, Multiply (same shapes, or broadcastable), Concatenate (iconf[0] axis). */
static dl_tensor *dl__merge_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    dl_tensor *y = in[0];
    int i;
    (void)training;
    if (l->ops->kind[0] == 'C') {
        int axis = l->iconf[0] < 0 ? in[0]->ndim + l->iconf[0] : l->iconf[0];
        return dl_concat(n, in, axis);
    }
    for (i = 1; i < n; i++) y = l->ops->kind[0] == 'A' ? dl_add(y, in[i]) : dl_mul(y, in[i]);
    return y;
}
static const dl_layer_ops dl__add_ops = {"Add", NULL, dl__merge_forward, NULL, 2, DL_LAYER_MAX_INPUTS};
static const dl_layer_ops dl__mul_ops = {"Multiply", NULL, dl__merge_forward, NULL, 2, DL_LAYER_MAX_INPUTS};
static const dl_layer_ops dl__concat_ops = {"Concatenate", NULL, dl__merge_forward, NULL, 2, DL_LAYER_MAX_INPUTS};
DLDEF dl_layer *dl_Add(void) { return dl__builtin(&dl__add_ops, "add"); }
DLDEF dl_layer *dl_Multiply(void) { return dl__builtin(&dl__mul_ops, "multiply"); }
DLDEF dl_layer *dl_Concatenate(int axis) {
    dl_layer *l = dl__builtin(&dl__concat_ops, "concatenate");
    if (l) l->iconf[0] = axis;
    return l;
}

/* RandomFlip (Keras' RandomFlip("horizontal")): in training, each sample of [N, ..., W] is
   mirrored left-right with probability 1/2 (the layer's generator); otherwise the identity.
   The gradient goes back through the same mirror. */
static void dl__flip_rows(float *DL__RESTRICT y, const float *DL__RESTRICT x, size_t rows, int w, int flip, int add) {
    size_t r;
    int j;
    for (r = 0; r < rows; r++, x += w, y += w)
        for (j = 0; j < w; j++) {
            float v = x[flip ? w - 1 - j : j];
            y[j] = add ? y[j] + v : v;
        }
}
static void dl__flip_backward(dl_node *nd) {
    const unsigned char *flip = (const unsigned char *)nd->ctx;
    float *gx = dl_grad_buf(nd->in[0]);
    int n = nd->out->shape[0], w = nd->out->shape[nd->out->ndim - 1], b;
    size_t rows = nd->out->numel / (size_t)(n ? n : 1) / (size_t)(w ? w : 1), per = rows * (size_t)w;
    if (!gx) return;
    for (b = 0; b < n; b++) dl__flip_rows(gx + (size_t)b * per, nd->out->grad + (size_t)b * per, rows, w, flip[b], 1);
}
static dl_tensor *dl__flip_forward(dl_layer *l, int n_in, dl_tensor *const *in, int training) {
    dl_tensor *x = in[0], *y;
    const float *xs;
    unsigned char *flip;
    dl_node *nd;
    int n, w, b;
    size_t rows, per;
    (void)n_in;
    if (!training) return x;
    if (!dl__need_rank(l, x, 2, DL_MAX_DIMS)) return NULL;
    if (x->dtype != DL_F32) { dl_set_error("%s (RandomFlip): f32 input needed", l->name); return NULL; }
    n = x->shape[0];
    w = x->shape[x->ndim - 1];
    rows = x->numel / (size_t)(n ? n : 1) / (size_t)(w ? w : 1);
    per = rows * (size_t)w;
    if (!(xs = dl_contig_f32(x)) || !(y = dl_tmp_uninit(DL_F32, x->ndim, x->shape))) return NULL;
    if (!(flip = (unsigned char *)dl_arena_alloc(dl_arena_current(), (size_t)(n ? n : 1)))) return NULL;
    for (b = 0; b < n; b++) {
        flip[b] = dl_rng_uniform(&l->rng) < 0.5f;
        dl__flip_rows(dl_f32(y) + (size_t)b * per, xs + (size_t)b * per, rows, w, flip[b], 0);
    }
    nd = dl_record("random_flip", y, 1, &x, dl__flip_backward, (size_t)(n ? n : 1));
    if (nd) memcpy(nd->ctx, flip, (size_t)n);
    return y;
}
static const dl_layer_ops dl__flip_ops = {"RandomFlip", NULL, dl__flip_forward, NULL, 1, 1};
DLDEF dl_layer *dl_RandomFlip(void) { return dl__builtin(&dl__flip_ops, "random_flip"); }

/* The layer's activation, when it has one (to know whether a model outputs probabilities). */
static int dl__layer_act(const dl_layer *l) {
    return l && (l->flags & DL__LAYER_HAS_ACT) ? l->iconf[DL__ACT_SLOT] : -1;
}

#include "nn_model.h"
#include "nn_train.h"
