/* ==== MODELS: implementation ================================================================
   Every model keeps its distinct layers in `layers` (the order Keras lists them). A Sequential
   model runs them in that order; a functional one runs its graph `nodes` (inputs first, then
   every layer application after the nodes it reads); a custom one calls the user's function. */

enum { DL__SEQUENTIAL = 0, DL__FUNCTIONAL = 1, DL__CUSTOM = 2 };
#define DL__MAX_IO 8   /* inputs and outputs of a functional model */

struct dl_sym {
    dl_sym *prev, *next;          /* the list of symbols no model has taken yet */
    dl_layer *layer;              /* NULL for an input */
    int n_in;
    dl_sym *in[DL_LAYER_MAX_INPUTS];
    dl_dtype dtype;
    int ndim, shape[DL_MAX_DIMS]; /* per sample */
    int mark;                     /* dl_model_new: 1 + the node index once placed */
};
static dl_sym *dl__free_syms;

typedef struct dl__gnode {
    dl_layer *layer;              /* NULL for an input */
    int n_in, in[DL_LAYER_MAX_INPUTS];   /* indices of earlier nodes */
    dl_dtype dtype;
    int ndim, shape[DL_MAX_DIMS]; /* per-sample output shape */
} dl__gnode;

struct dl_model {
    int kind;
    char name[32];
    int n_layers, cap_layers;
    dl_layer **layers;            /* distinct layers, each holding one reference */
    int n_nodes, n_inputs, n_outputs;
    dl__gnode *nodes;             /* functional */
    int inputs[DL__MAX_IO], outputs[DL__MAX_IO];
    dl_model_fn fn;               /* custom */
    void *user;
    int built;                    /* the input shape is known and every layer built */
    dl_dtype in_dtype;
    int in_ndim, in_shape[DL_MAX_DIMS];
    /* compile / fit state (nn_train.h) */
    int compiled, opt_bound, top_k, stop;
    dl_optim *opt;
    dl_loss loss;
    unsigned metrics;
    dl_history history;
};

static dl_model *dl__model_alloc(int kind, const char *name) {
    dl_model *m = (dl_model *)DL_MALLOC(sizeof *m);
    if (!m) { dl_set_error("dl_model: out of memory"); return NULL; }
    memset(m, 0, sizeof *m);
    m->kind = kind;
    snprintf(m->name, sizeof m->name, "%s", name);
    m->top_k = 5;
    return m;
}

static int dl__model_has_layer(const dl_model *m, const dl_layer *l) {
    int i;
    for (i = 0; i < m->n_layers; i++) if (m->layers[i] == l) return 1;
    return 0;
}

/* Adds a reference to l (once) and, for a layer no model named yet, makes its name unique in
   the model the way Keras does: "dense", "dense_1", "dense_2", ... */
static int dl__model_take(dl_model *m, dl_layer *l) {
    if (dl__model_has_layer(m, l)) return 0;
    if (m->n_layers == m->cap_layers) {
        int cap = m->cap_layers ? 2 * m->cap_layers : 8;
        dl_layer **p = (dl_layer **)DL_REALLOC(m->layers, (size_t)cap * sizeof *p);
        if (!p) { dl_set_error("dl_model: out of memory"); return -1; }
        m->layers = p;
        m->cap_layers = cap;
    }
    if (!(l->flags & DL__LAYER_NAMED)) {
        char base[sizeof l->name];
        int k = 0;
        memcpy(base, l->name, sizeof base);
        while (dl_model_get_layer(m, l->name)) {
            char suffix[16];
            snprintf(suffix, sizeof suffix, "_%d", ++k);
            snprintf(l->name, sizeof l->name, "%.*s%s", (int)(sizeof l->name - 1 - strlen(suffix)), base, suffix);
        }
        l->flags |= DL__LAYER_NAMED;
    }
    m->layers[m->n_layers++] = l;
    l->refs++;
    return 0;
}

DLDEF void dl_model_free(dl_model *m) {
    int i;
    if (!m) return;
    for (i = 0; i < m->n_layers; i++)
        if (--m->layers[i]->refs <= 0) dl__layer_destroy(m->layers[i]);
    DL_FREE(m->layers);
    DL_FREE(m->nodes);
    dl_optim_free(m->opt);
    DL_FREE(m->history.values);
    DL_FREE(m);
}

DLDEF dl_model *dl_sequential_n(int n, dl_layer *const *layers) {
    dl_model *m = NULL;
    int i, j, bad = -1;
    if (n < 0 || (n > 0 && !layers)) { dl_set_error("dl_sequential: bad layer list"); return NULL; }
    for (i = 0; i < n && bad < 0; i++) {
        if (!layers[i]) {   /* a failed constructor (its message is kept) or a stray terminator */
            char msg[512];
            dl__error_copy(msg, sizeof msg);
            if (i == n - 1 && n > 1)   /* most likely a terminator out of habit */
                dl_set_error("dl_sequential: the last layer is NULL (no NULL terminator is needed; last error: %s)",
                             msg[0] ? msg : "none");
            else dl_set_error("dl_sequential: layer %d of %d is NULL (a failed constructor: %s)", i, n, msg[0] ? msg : "?");
            bad = i;
        }
        for (j = 0; j < i && bad < 0; j++)
            if (layers[j] == layers[i]) { dl_set_error("dl_sequential: layer %d appears twice", i); bad = i; }
    }
    if (bad < 0 && (m = dl__model_alloc(DL__SEQUENTIAL, "sequential")) != NULL)
        for (i = 0; i < n; i++)
            if (dl__model_take(m, layers[i]) != 0) {   /* out of memory: give every layer back */
                for (j = 0; j < m->n_layers; j++) m->layers[j]->refs--;
                m->n_layers = 0;
                dl_model_free(m);
                m = NULL;
                break;
            }
    if (!m)   /* free what no model holds (each layer once) */
        for (i = 0; i < n; i++) {
            int dup = 0;
            for (j = 0; j < i; j++) dup |= layers[j] == layers[i];
            if (layers[i] && !dup) dl_layer_free(layers[i]);
        }
    return m;
}

/* ---- Symbolic graphs (functional models) ---- */

static dl_sym *dl__sym_new(void) {
    dl_sym *s = (dl_sym *)DL_MALLOC(sizeof *s);
    if (!s) { dl_set_error("dl_Input: out of memory"); return NULL; }
    memset(s, 0, sizeof *s);
    s->next = dl__free_syms;
    if (dl__free_syms) dl__free_syms->prev = s;
    dl__free_syms = s;
    return s;
}

static void dl__sym_unlink(dl_sym *s) {
    if (s->prev) s->prev->next = s->next; else dl__free_syms = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

DLDEF void dl_sym_free_unused(void) {
    while (dl__free_syms) {
        dl_sym *s = dl__free_syms;
        dl__sym_unlink(s);
        if (s->layer && s->layer->refs <= 0) {
            /* a layer only this abandoned graph used: free it once (clear other uses first) */
            dl_layer *l = s->layer;
            dl_sym *t;
            for (t = dl__free_syms; t; t = t->next) if (t->layer == l) t->layer = NULL;
            dl_layer_free(l);
        }
        DL_FREE(s);
    }
}

static dl_sym *dl__input(dl_dtype dtype, int ndim, const int *shape) {
    dl_sym *s;
    int i;
    if (ndim < 0 || ndim >= DL_MAX_DIMS || (ndim > 0 && !shape)) {
        dl_set_error("dl_Input: 0..%d axes per sample", DL_MAX_DIMS - 1);
        return NULL;
    }
    for (i = 0; i < ndim; i++)
        if (shape[i] <= 0) { dl_set_error("dl_Input: axis %d has size %d", i, shape[i]); return NULL; }
    if (!(s = dl__sym_new())) return NULL;
    s->dtype = dtype;
    s->ndim = ndim;
    for (i = 0; i < ndim; i++) s->shape[i] = shape[i];
    return s;
}
DLDEF dl_sym *dl_Input(int ndim, const int *shape) { return dl__input(DL_F32, ndim, shape); }
DLDEF dl_sym *dl_Input_ids(int ndim, const int *shape) { return dl__input(DL_I32, ndim, shape); }

DLDEF int dl_sym_shape(const dl_sym *s, int *shape) {
    int i;
    if (!s) return -1;
    if (shape) for (i = 0; i < s->ndim; i++) shape[i] = s->shape[i];
    return s->ndim;
}

/* Runs a layer once on zero inputs of batch 1, in a scratch arena without gradients: builds it
   and tells the output's shape. Returns 0 and fills *out_sym's shape, or -1. */
static int dl__probe(dl_layer *l, int n, dl_sym *const *xs, dl_sym *out) {
    dl_arena *a = dl_arena_new((size_t)1 << 16), *prev;
    dl_tensor *in[DL_LAYER_MAX_INPUTS], *y = NULL;
    int i, grad, shape[DL_MAX_DIMS];
    if (!a) return -1;
    prev = dl_arena_use(a);
    grad = dl_no_grad(1);
    for (i = 0; i < n; i++) {
        int d;
        shape[0] = 1;
        for (d = 0; d < xs[i]->ndim; d++) shape[1 + d] = xs[i]->shape[d];
        in[i] = dl_tmp(xs[i]->dtype, 1 + xs[i]->ndim, shape);
    }
    y = dl_layer_call_n(l, n, in, 0);
    if (y) {
        out->dtype = y->dtype;
        out->ndim = y->ndim - 1;
        for (i = 1; i < y->ndim; i++) out->shape[i - 1] = y->shape[i];
    }
    dl_no_grad(grad);
    dl_arena_use(prev);
    dl_arena_free(a);
    return y ? 0 : -1;
}

DLDEF dl_sym *dl_apply_n(dl_layer *l, int n, dl_sym *const *xs) {
    dl_sym *s;
    int i;
    int ok;
    if (!l) return NULL;   /* a failed constructor: its message stands */
    ok = n >= 1 && n <= DL_LAYER_MAX_INPUTS && xs;
    if (!ok) dl_set_error("dl_apply: 1..%d inputs", DL_LAYER_MAX_INPUTS);
    for (i = 0; ok && i < n; i++) ok = xs[i] != NULL;   /* an earlier failure: its message stands */
    if (!(s = dl__sym_new())) return NULL;
    s->layer = l;
    if (!ok || dl__probe(l, n, xs, s) != 0) {
        /* Not returned, but kept (without inputs) in the unused list, so that the layer, which
           the caller may still hold, is freed with the abandoned graph by dl_sym_free_unused. */
        return NULL;
    }
    s->n_in = n;
    for (i = 0; i < n; i++) s->in[i] = xs[i];
    return s;
}
DLDEF dl_sym *dl_apply(dl_layer *l, dl_sym *x) { return dl_apply_n(l, 1, &x); }

/* Depth-first, inputs before the node: places s and everything it reads into m->nodes. */
static int dl__place(dl_model *m, dl_sym *s, int depth) {
    int i;
    dl__gnode *g;
    if (s->mark) return 0;
    if (depth > 100000) { dl_set_error("dl_model_new: graph too deep"); return -1; }
    if (!s->layer) {
        dl_set_error("dl_model_new: an output depends on an input not listed in inputs");
        return -1;
    }
    for (i = 0; i < s->n_in; i++)
        if (dl__place(m, s->in[i], depth + 1) != 0) return -1;
    g = &m->nodes[m->n_nodes];
    memset(g, 0, sizeof *g);
    g->layer = s->layer;
    g->n_in = s->n_in;
    for (i = 0; i < s->n_in; i++) g->in[i] = s->in[i]->mark - 1;
    g->dtype = s->dtype;
    g->ndim = s->ndim;
    memcpy(g->shape, s->shape, sizeof g->shape);
    s->mark = ++m->n_nodes;
    return 0;
}

DLDEF dl_model *dl_model_new(int n_in, dl_sym *const *inputs, int n_out, dl_sym *const *outputs) {
    dl_model *m;
    dl_sym *s, *next;
    int i, n_syms = 0, ok = 1;
    if (n_in < 1 || n_in > DL__MAX_IO || n_out < 1 || n_out > DL__MAX_IO || !inputs || !outputs) {
        dl_set_error("dl_model_new: 1..%d inputs and outputs", DL__MAX_IO);
        return NULL;
    }
    for (i = 0; i < n_in; i++) {
        if (!inputs[i]) return NULL;
        if (inputs[i]->layer) { dl_set_error("dl_model_new: inputs[%d] is not a dl_Input", i); return NULL; }
    }
    for (i = 0; i < n_out; i++) if (!outputs[i]) return NULL;
    for (s = dl__free_syms; s; s = s->next) { n_syms++; s->mark = 0; }
    if (!(m = dl__model_alloc(DL__FUNCTIONAL, "model"))) return NULL;
    m->nodes = (dl__gnode *)DL_MALLOC((size_t)(n_syms ? n_syms : 1) * sizeof *m->nodes);
    if (!m->nodes) { dl_set_error("dl_model_new: out of memory"); DL_FREE(m); return NULL; }
    for (i = 0; i < n_in && ok; i++) {
        dl__gnode *g = &m->nodes[m->n_nodes];
        if (inputs[i]->mark) { dl_set_error("dl_model_new: inputs[%d] listed twice", i); ok = 0; break; }
        memset(g, 0, sizeof *g);
        g->dtype = inputs[i]->dtype;
        g->ndim = inputs[i]->ndim;
        memcpy(g->shape, inputs[i]->shape, sizeof g->shape);
        m->inputs[i] = m->n_nodes;
        inputs[i]->mark = ++m->n_nodes;
    }
    m->n_inputs = n_in;
    for (i = 0; i < n_out && ok; i++) {
        if (dl__place(m, outputs[i], 0) != 0) ok = 0;
        else m->outputs[i] = outputs[i]->mark - 1;
    }
    m->n_outputs = n_out;
    for (i = 0; i < m->n_nodes && ok; i++)
        if (m->nodes[i].layer && dl__model_take(m, m->nodes[i].layer) != 0) ok = 0;
    if (!ok) {   /* nothing taken: the symbols stay with the caller */
        for (i = 0; i < m->n_layers; i++) m->layers[i]->refs--;
        m->n_layers = 0;
        dl_model_free(m);
        return NULL;
    }
    for (s = dl__free_syms; s; s = next) {   /* the model now owns what it placed */
        next = s->next;
        if (s->mark) { dl__sym_unlink(s); DL_FREE(s); }
    }
    m->built = 1;
    m->in_dtype = m->nodes[m->inputs[0]].dtype;
    m->in_ndim = m->nodes[m->inputs[0]].ndim;
    memcpy(m->in_shape, m->nodes[m->inputs[0]].shape, sizeof m->in_shape);
    return m;
}

DLDEF dl_model *dl_custom_model(dl_model_fn forward, void *user, int n_layers, dl_layer *const *layers) {
    dl_model *m;
    int i;
    if (!forward || n_layers < 0 || (n_layers > 0 && !layers)) {
        dl_set_error("dl_custom_model: a forward function and a layer list needed");
        return NULL;
    }
    for (i = 0; i < n_layers; i++) if (!layers[i]) { dl_set_error("dl_custom_model: layer %d is NULL", i); return NULL; }
    if (!(m = dl__model_alloc(DL__CUSTOM, "custom_model"))) return NULL;
    m->fn = forward;
    m->user = user;
    for (i = 0; i < n_layers; i++)
        if (dl__model_take(m, layers[i]) != 0) { dl_model_free(m); return NULL; }
    return m;
}

DLDEF void *dl_model_user(const dl_model *m) { return m ? m->user : NULL; }

DLDEF int dl_sequential_add(dl_model *m, dl_layer *l) {
    if (!m || m->kind != DL__SEQUENTIAL) { dl_set_error("dl_sequential_add: not a sequential model"); return -1; }
    if (!l) return -1;
    if (dl__model_has_layer(m, l)) { dl_set_error("dl_sequential_add: %s is already in the model", l->name); return -1; }
    if (dl__model_take(m, l) != 0) return -1;
    if (m->built) {   /* build the new layer now, so shapes and summaries stay valid */
        m->built = 0;
        return m->in_dtype == DL_I32 ? dl_model_build_ids(m, m->in_ndim, m->in_shape)
                                     : dl_model_build(m, m->in_ndim, m->in_shape);
    }
    return 0;
}

/* ---- Running ---- */

static void dl__model_note_input(dl_model *m, const dl_tensor *x) {
    int i;
    m->in_dtype = x->dtype;
    m->in_ndim = x->ndim - 1;
    for (i = 1; i < x->ndim; i++) m->in_shape[i - 1] = x->shape[i];
}

static int dl__graph_run(dl_model *m, int n_in, dl_tensor *const *in, int n_out, dl_tensor **out, int training) {
    dl_tensor **val, *args[DL_LAYER_MAX_INPUTS];
    int i, j;
    if (n_in != m->n_inputs || n_out != m->n_outputs) {
        dl_set_error("dl_model_call: %s takes %d inputs and gives %d outputs (called with %d and %d)", m->name,
                     m->n_inputs, m->n_outputs, n_in, n_out);
        return -1;
    }
    val = (dl_tensor **)dl_arena_alloc(dl_arena_current(), (size_t)m->n_nodes * sizeof *val);
    if (!val) return -1;
    for (i = 0; i < n_in; i++) {
        const dl__gnode *g = &m->nodes[m->inputs[i]];
        int ok = in[i] && in[i]->ndim == g->ndim + 1;
        for (j = 0; ok && j < g->ndim; j++) ok = in[i]->shape[1 + j] == g->shape[j];
        if (!in[i]) return -1;
        if (!ok) {
            char s[64];
            dl_set_error("dl_model_call: input %d is %s, the model expects [batch%s%s", i, dl_shape_str(in[i], s, sizeof s),
                         g->ndim ? ", ..." : "", "] as given to dl_Input");
            return -1;
        }
        val[m->inputs[i]] = in[i];
    }
    for (i = 0; i < m->n_nodes; i++) {
        const dl__gnode *g = &m->nodes[i];
        if (!g->layer) continue;
        for (j = 0; j < g->n_in; j++) args[j] = val[g->in[j]];
        if (!(val[i] = dl_layer_call_n(g->layer, g->n_in, args, training))) return -1;
    }
    for (i = 0; i < n_out; i++) out[i] = val[m->outputs[i]];
    return 0;
}

DLDEF int dl_model_call_n(dl_model *m, int n_in, dl_tensor *const *in, int n_out, dl_tensor **out, int training) {
    int i;
    if (!m || !in || !out) { dl_set_error("dl_model_call: NULL model or arguments"); return -1; }
    if (m->kind == DL__FUNCTIONAL) return dl__graph_run(m, n_in, in, n_out, out, training);
    if (n_in != 1 || n_out != 1) { dl_set_error("dl_model_call_n: %s has one input and one output", m->name); return -1; }
    if (!in[0]) return -1;
    if (m->kind == DL__SEQUENTIAL) {
        dl_tensor *x = in[0];
        for (i = 0; i < m->n_layers && x; i++) x = dl_layer_call(m->layers[i], x, training);
        out[0] = x;
    } else {
        out[0] = m->fn(m, in[0], training);
    }
    if (!out[0]) return -1;
    if (!m->built) { dl__model_note_input(m, in[0]); m->built = 1; }
    return 0;
}

DLDEF dl_tensor *dl_model_call(dl_model *m, dl_tensor *x, int training) {
    dl_tensor *y = NULL;
    return dl_model_call_n(m, 1, &x, 1, &y, training) == 0 ? y : NULL;
}

static int dl__model_build(dl_model *m, dl_dtype dtype, int ndim, const int *shape) {
    dl_arena *a, *prev;
    dl_tensor *x, *y;
    int full[DL_MAX_DIMS], i, grad;
    if (!m) { dl_set_error("dl_model_build: NULL model"); return -1; }
    if (ndim < 0 || ndim >= DL_MAX_DIMS || (ndim > 0 && !shape)) { dl_set_error("dl_model_build: bad shape"); return -1; }
    if (m->kind == DL__FUNCTIONAL) return 0;   /* built by dl_model_new */
    full[0] = 1;
    for (i = 0; i < ndim; i++) {
        if (shape[i] <= 0) { dl_set_error("dl_model_build: axis %d has size %d", i, shape[i]); return -1; }
        full[1 + i] = shape[i];
    }
    if (!(a = dl_arena_new((size_t)1 << 16))) return -1;
    prev = dl_arena_use(a);
    grad = dl_no_grad(1);
    x = dl_tmp(dtype, 1 + ndim, full);
    y = dl_model_call(m, x, 0);
    dl_no_grad(grad);
    dl_arena_use(prev);
    dl_arena_free(a);
    return y ? 0 : -1;
}
DLDEF int dl_model_build(dl_model *m, int ndim, const int *shape) { return dl__model_build(m, DL_F32, ndim, shape); }
DLDEF int dl_model_build_ids(dl_model *m, int ndim, const int *shape) { return dl__model_build(m, DL_I32, ndim, shape); }

/* ---- Inspecting ---- */

DLDEF int dl_model_num_layers(const dl_model *m) { return m ? m->n_layers : 0; }
DLDEF dl_layer *dl_model_layer(const dl_model *m, int i) {
    return m && i >= 0 && i < m->n_layers ? m->layers[i] : NULL;
}
DLDEF dl_layer *dl_model_get_layer(const dl_model *m, const char *name) {
    int i;
    if (!m || !name) return NULL;
    for (i = 0; i < m->n_layers; i++) if (strcmp(m->layers[i]->name, name) == 0) return m->layers[i];
    return NULL;
}

static int dl__weight_trainable(const dl_layer *l, int i) { return l->trainable && l->param_trainable[i]; }

DLDEF int dl_model_weights(const dl_model *m, int trainable_only, dl_tensor **out, int cap) {
    int i, j, n = 0;
    if (!m) return 0;
    for (i = 0; i < m->n_layers; i++)
        for (j = 0; j < m->layers[i]->n_params; j++) {
            if (trainable_only && !dl__weight_trainable(m->layers[i], j)) continue;
            if (out && n < cap) out[n] = m->layers[i]->params[j];
            n++;
        }
    return n;
}

static long dl__layer_count(const dl_layer *l, int trainable_only) {
    long n = 0;
    int j;
    for (j = 0; j < l->n_params; j++)
        if (!trainable_only || dl__weight_trainable(l, j)) n += (long)l->params[j]->numel;
    return n;
}

DLDEF long dl_model_count_params(const dl_model *m, int trainable_only) {
    long n = 0;
    int i;
    if (!m) return 0;
    for (i = 0; i < m->n_layers; i++) n += dl__layer_count(m->layers[i], trainable_only);
    return n;
}

/* A growing text buffer for the summary (snprintf semantics: counts what did not fit). */
typedef struct dl__text { char *buf; size_t size, len; } dl__text;
static void dl__put(dl__text *t, const char *fmt, ...) {
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(t->len < t->size ? t->buf + t->len : NULL, t->len < t->size ? t->size - t->len : 0, fmt, ap);
    va_end(ap);
    if (n > 0) t->len += (size_t)n;
}

static void dl__shape_tuple(char *s, size_t size, int ndim, const int *shape) {   /* "(None, 28, 28)" */
    size_t n = (size_t)snprintf(s, size, "(None");
    int i;
    for (i = 0; i < ndim && n < size; i++) n += (size_t)snprintf(s + n, size - n, ", %d", shape[i]);
    if (n < size) snprintf(s + n, size - n, ")");
}

static void dl__thousands(char *s, size_t size, long v) {   /* 101770 -> "101,770" */
    char d[32];
    int len = snprintf(d, sizeof d, "%ld", v), i, o = 0;
    for (i = 0; i < len && (size_t)o + 2 < size; i++) {
        if (i > 0 && d[i - 1] != '-' && (len - i) % 3 == 0) s[o++] = ',';
        s[o++] = d[i];
    }
    s[o] = 0;
}

static void dl__rule(dl__text *t, char c, int width) {
    int i;
    for (i = 0; i < width; i++) dl__put(t, "%c", c);
    dl__put(t, "\n");
}

DLDEF size_t dl_model_summary(dl_model *m, char *buf, size_t size) {
    dl__text t;
    char a[96], b[64], c[32];
    int i, j, k, graph, width;
    long total, trainable;
    t.buf = buf; t.size = buf ? size : 0; t.len = 0;
    if (buf && size) buf[0] = 0;
    if (!m) { dl_set_error("dl_model_summary: NULL model"); return 0; }
    if (!m->built) {
        dl_set_error("dl_model_summary: %s is not built yet: call dl_model_build (or fit) first", m->name);
        return 0;
    }
    graph = m->kind == DL__FUNCTIONAL;
    width = graph ? 98 : 65;
    dl__put(&t, "Model: \"%s\"\n", m->name);
    dl__rule(&t, '_', width);
    if (graph) dl__put(&t, " %-30s %-20s %-11s %s\n", "Layer (type)", "Output Shape", "Param #", "Connected to");
    else dl__put(&t, " %-27s %-25s %s\n", "Layer (type)", "Output Shape", "Param #");
    dl__rule(&t, '=', width);
    if (graph) {
        for (i = 0; i < m->n_inputs; i++) {
            const dl__gnode *g = &m->nodes[m->inputs[i]];
            snprintf(a, sizeof a, "input_%d (InputLayer)", i + 1);
            dl__shape_tuple(b, sizeof b, g->ndim, g->shape);
            dl__put(&t, " %-30s [%s]%*s %-11d []\n\n", a, b, (int)(19 - strlen(b) > 0 ? 19 - (int)strlen(b) : 0), "", 0);
        }
    }
    for (i = 0; i < m->n_layers; i++) {
        dl_layer *l = m->layers[i];
        snprintf(a, sizeof a, "%s (%s)", l->name, l->ops->kind);
        dl__shape_tuple(b, sizeof b, l->out_ndim, l->out_shape);
        snprintf(c, sizeof c, "%ld", dl__layer_count(l, 0));   /* Keras: no separators in the rows */
        if (!graph) { dl__put(&t, " %-27s %-25s %s\n\n", a, b, c); continue; }
        dl__put(&t, " %-30s %-20s %-11s ", a, b, c);
        dl__put(&t, "[");
        for (j = 0, k = 0; j < m->n_nodes; j++) {   /* every application of the layer */
            const dl__gnode *g = &m->nodes[j];
            int q;
            if (g->layer != l) continue;
            for (q = 0; q < g->n_in; q++, k++) {
                const dl__gnode *src = &m->nodes[g->in[q]];
                int p;
                if (src->layer) dl__put(&t, "%s'%s[0][0]'", k ? ", " : "", src->layer->name);
                else
                    for (p = 0; p < m->n_inputs; p++)
                        if (m->inputs[p] == g->in[q]) dl__put(&t, "%s'input_%d[0][0]'", k ? ", " : "", p + 1);
            }
        }
        dl__put(&t, "]\n\n");
    }
    dl__rule(&t, '=', width);
    total = dl_model_count_params(m, 0);
    trainable = dl_model_count_params(m, 1);
    dl__thousands(c, sizeof c, total);
    dl__put(&t, "Total params: %s\n", c);
    dl__thousands(c, sizeof c, trainable);
    dl__put(&t, "Trainable params: %s\n", c);
    dl__thousands(c, sizeof c, total - trainable);
    dl__put(&t, "Non-trainable params: %s\n", c);
    dl__rule(&t, '_', width);
    return t.len;
}

#ifndef DL_NO_STDIO
DLDEF int dl_model_print_summary(dl_model *m) {
    size_t n = dl_model_summary(m, NULL, 0);
    char *s;
    if (!n) return -1;
    if (!(s = (char *)DL_MALLOC(n + 1))) { dl_set_error("dl_model_print_summary: out of memory"); return -1; }
    dl_model_summary(m, s, n + 1);
    fputs(s, stdout);
    DL_FREE(s);
    return 0;
}
#endif
