/* ==== SAVING: implementation ================================================================
   "dl.architecture" is text, one item per line, numbers in decimal ("%.9g" for floats, which
   round-trips every float):
       model sequential | model functional
       input f32|i32 NDIM D1 .. DNDIM          per-sample shape (one line per model input)
       layer KIND NAME TRAINABLE i I0 .. I7 f F0 .. F7     iconf and fconf, as the constructors set them
       node LAYER N IN1 .. INN                  functional: layer index applied to earlier nodes
                                                (nodes 0.. are the inputs, then one per node line)
       output NODE ..                           functional: the output nodes
   "dl.compile" = "loss L metrics M top_k K"; the optimizer's own file (dl_optim_serialize) is
   embedded with every key and tensor name prefixed by "optimizer/" (its hyperparameters always,
   its state tensors only with include_optimizer). */

#define DL__MODEL_FORMAT "dl.model.v1"
#define DL__MAX_LOAD_LAYERS 100000

static dl_layer *dl__rnn_from_conf(const char *kind, const int *iconf, const float *fconf);   /* nn_rnn.h */

/* A new built-in layer of this kind with these settings; NULL + dl_error() if unknown. */
static dl_layer *dl__layer_from_conf(const char *kind, const int *ic, const float *fc) {
    dl_act act = (dl_act)ic[DL__ACT_SLOT];
    dl_layer *l = NULL;
    if (strcmp(kind, "Dense") == 0) l = dl_Dense(ic[0], act);
    else if (strcmp(kind, "Conv2D") == 0) l = dl_Conv2D(ic[0], ic[1], ic[2], (dl_padding)ic[3], act);
    else if (strcmp(kind, "Conv2DTranspose") == 0) l = dl_Conv2DTranspose(ic[0], ic[1], ic[2], (dl_padding)ic[3], act);
    else if (strcmp(kind, "MaxPool2D") == 0) l = dl_MaxPool2D(ic[0], ic[1]);
    else if (strcmp(kind, "AvgPool2D") == 0) l = dl_AvgPool2D(ic[0], ic[1]);
    else if (strcmp(kind, "GlobalAvgPool2D") == 0) l = dl_GlobalAvgPool2D();
    else if (strcmp(kind, "Flatten") == 0) l = dl_Flatten();
    else if (strcmp(kind, "Reshape") == 0) l = dl_Reshape(ic[0], ic + 1);
    else if (strcmp(kind, "Dropout") == 0) l = dl_Dropout(fc[0]);
    else if (strcmp(kind, "BatchNormalization") == 0) l = dl_BatchNormalization(fc[0], fc[1]);
    else if (strcmp(kind, "LayerNormalization") == 0) l = dl_LayerNormalization(fc[0]);
    else if (strcmp(kind, "Embedding") == 0) l = dl_Embedding(ic[0], ic[1]);
    else if (strcmp(kind, "Activation") == 0) l = dl_Activation(act);
    else if (strcmp(kind, "Add") == 0) l = dl_Add();
    else if (strcmp(kind, "Multiply") == 0) l = dl_Multiply();
    else if (strcmp(kind, "Concatenate") == 0) l = dl_Concatenate(ic[0]);
    else if (strcmp(kind, "RandomFlip") == 0) l = dl_RandomFlip();
    else if (!(l = dl__rnn_from_conf(kind, ic, fc))) {
        if (!dl_error()[0]) dl_set_error("unknown layer kind '%s' (custom layers: build the model in code and use dl_model_load_weights)", kind);
        return NULL;
    }
    return l;
}

static int dl__is_builtin(const dl_layer *l) {
    static const dl_layer_ops *const ops[] = {&dl__dense_ops, &dl__conv_ops, &dl__convt_ops, &dl__maxpool_ops,
        &dl__avgpool_ops, &dl__gap_ops, &dl__flatten_ops, &dl__reshape_ops, &dl__dropout_ops, &dl__bn_ops,
        &dl__ln_ops, &dl__emb_ops, &dl__activation_ops, &dl__add_ops, &dl__mul_ops, &dl__concat_ops, &dl__flip_ops};
    size_t i;
    for (i = 0; i < sizeof ops / sizeof ops[0]; i++) if (l->ops == ops[i]) return 1;
    return strcmp(l->ops->kind, "SimpleRNN") == 0 || strcmp(l->ops->kind, "LSTM") == 0 || strcmp(l->ops->kind, "GRU") == 0;
}

static int dl__layer_index(const dl_model *m, const dl_layer *l) {
    int i;
    for (i = 0; i < m->n_layers; i++) if (m->layers[i] == l) return i;
    return -1;
}

static void dl__put_shape_line(dl__text *t, dl_dtype dtype, int ndim, const int *shape) {
    int i;
    dl__put(t, "input %s %d", dtype == DL_I32 ? "i32" : "f32", ndim);
    for (i = 0; i < ndim; i++) dl__put(t, " %d", shape[i]);
    dl__put(t, "\n");
}

/* The architecture text into t; -1 + dl_error() when the model cannot be described. */
static int dl__arch_text(const dl_model *m, dl__text *t) {
    int i, j;
    if (m->kind == DL__CUSTOM) {
        dl_set_error("dl_model_save: a custom model's forward function cannot be saved: use dl_model_save_weights");
        return -1;
    }
    dl__put(t, "model %s\n", m->kind == DL__SEQUENTIAL ? "sequential" : "functional");
    if (m->kind == DL__SEQUENTIAL && m->built) dl__put_shape_line(t, m->in_dtype, m->in_ndim, m->in_shape);
    if (m->kind == DL__FUNCTIONAL)
        for (i = 0; i < m->n_inputs; i++) {
            const dl__gnode *g = &m->nodes[m->inputs[i]];
            dl__put_shape_line(t, g->dtype, g->ndim, g->shape);
        }
    for (i = 0; i < m->n_layers; i++) {
        const dl_layer *l = m->layers[i];
        const char *c;
        if (!dl__is_builtin(l)) {
            dl_set_error("dl_model_save: layer %s is a custom %s: use dl_model_save_weights", l->name, l->ops->kind);
            return -1;
        }
        for (c = l->name; *c; c++)
            if (*c <= ' ' || *c == '/') { dl_set_error("dl_model_save: layer name '%s' has a space or '/'", l->name); return -1; }
        dl__put(t, "layer %s %s %d i", l->ops->kind, l->name, l->trainable);
        for (j = 0; j < DL_LAYER_MAX_CONF; j++) dl__put(t, " %d", l->iconf[j]);
        dl__put(t, " f");
        for (j = 0; j < DL_LAYER_MAX_CONF; j++) dl__put(t, " %.9g", (double)l->fconf[j]);
        dl__put(t, "\n");
    }
    if (m->kind == DL__FUNCTIONAL) {
        for (i = 0; i < m->n_nodes; i++) {
            const dl__gnode *g = &m->nodes[i];
            if (!g->layer) continue;
            dl__put(t, "node %d %d", dl__layer_index(m, g->layer), g->n_in);
            for (j = 0; j < g->n_in; j++) dl__put(t, " %d", g->in[j]);
            dl__put(t, "\n");
        }
        dl__put(t, "output");
        for (i = 0; i < m->n_outputs; i++) dl__put(t, " %d", m->outputs[i]);
        dl__put(t, "\n");
    }
    return 0;
}

/* Everything a model file holds, gathered for dl_safetensors_save / _serialize. */
typedef struct dl__model_file {
    int n, n_meta;
    const char **names, **keys, **values;
    dl_tensor **ts;
    char *text;              /* names, the architecture, the compile line */
    dl_safetensors *opt;     /* the optimizer's own file, parsed (its tensors are borrowed) */
} dl__model_file;

static void dl__model_file_free(dl__model_file *f) {
    DL_FREE(f->names);
    DL_FREE(f->text);
    dl_safetensors_free(f->opt);
    memset(f, 0, sizeof *f);
}

static int dl__model_file_make(dl_model *m, int weights_only, int include_optimizer, dl__model_file *f) {
    dl__text arch;
    size_t text_size, off = 0, opt_size;
    int n_w, n_opt_t = 0, n_opt_m = 0, i, j, k;
    void *blob = NULL;
    memset(f, 0, sizeof *f);
    if (!m) { dl_set_error("dl_model_save: NULL model"); return -1; }
    if (!m->built) { dl_set_error("dl_model_save: %s has no weights yet: build or fit it first", m->name); return -1; }
    arch.buf = NULL; arch.size = 0; arch.len = 0;
    if (!weights_only && dl__arch_text(m, &arch) != 0) return -1;
    if (!weights_only && m->compiled) {   /* the optimizer's own file, parsed back to borrow its parts */
        if (!m->opt_bound && dl__bind_optimizer(m) != 0) return -1;
        opt_size = dl_optim_serialize(m->opt, NULL, 0);
        if (!opt_size || !(blob = DL_MALLOC(opt_size))) { if (opt_size) dl_set_error("dl_model_save: out of memory"); return -1; }
        dl_optim_serialize(m->opt, blob, opt_size);
        f->opt = dl_safetensors_parse(blob, opt_size);
        DL_FREE(blob);
        if (!f->opt) return -1;
        n_opt_t = include_optimizer ? dl_safetensors_count(f->opt) : 0;
        n_opt_m = dl_safetensors_meta_count(f->opt);
    }
    n_w = dl_model_weights(m, 0, NULL, 0);
    f->n = n_w + n_opt_t;
    f->n_meta = weights_only ? 1 : 4 + n_opt_m;
    text_size = arch.len + 1 + 128 + (size_t)f->n * 128 + (size_t)n_opt_m * 80 + (size_t)m->n_layers * 128 + 1;
    f->names = (const char **)DL_MALLOC((size_t)(2 * f->n + 2 * f->n_meta + 1) * sizeof(char *) + (size_t)f->n * sizeof(dl_tensor *));
    f->text = (char *)DL_MALLOC(text_size);
    if (!f->names || !f->text) { dl_set_error("dl_model_save: out of memory"); dl__model_file_free(f); return -1; }
    f->keys = f->names + f->n;
    f->values = f->keys + f->n_meta;
    f->ts = (dl_tensor **)(f->values + f->n_meta + 1);
    /* weights: "layer/weight" */
    for (i = 0, k = 0; i < m->n_layers; i++)
        for (j = 0; j < m->layers[i]->n_params; j++, k++) {
            f->names[k] = f->text + off;
            off += (size_t)snprintf(f->text + off, 128, "%s/%s", m->layers[i]->name, m->layers[i]->param_names[j]) + 1;
            f->ts[k] = m->layers[i]->params[j];
        }
    f->keys[0] = "dl.format";
    f->values[0] = DL__MODEL_FORMAT;
    if (!weights_only) {
        arch.buf = f->text + off;   /* write the architecture for real this time */
        arch.size = arch.len + 1;
        arch.len = 0;
        dl__arch_text(m, &arch);
        f->keys[1] = "dl.architecture";
        f->values[1] = arch.buf;
        off += arch.len + 1;
        f->keys[2] = "dl.compile";
        f->values[2] = f->text + off;
        off += (size_t)snprintf(f->text + off, 128, "loss %d metrics %u top_k %d compiled %d state %d", (int)m->loss,
                                m->metrics, m->top_k, m->compiled, m->compiled && include_optimizer) + 1;
        /* each layer's generator (dropout masks), so that training resumes exactly */
        f->keys[3] = "dl.rng";
        f->values[3] = f->text + off;
        for (i = 0; i < m->n_layers; i++) {
            const uint64_t *r = m->layers[i]->rng.s;
            off += (size_t)snprintf(f->text + off, 128, "%s %016llx %016llx %016llx %016llx\n", m->layers[i]->name,
                                    (unsigned long long)r[0], (unsigned long long)r[1], (unsigned long long)r[2],
                                    (unsigned long long)r[3]);
        }
        f->text[off++] = 0;
        for (i = 0; i < n_opt_m; i++) {
            f->keys[4 + i] = f->text + off;
            off += (size_t)snprintf(f->text + off, 80, "optimizer/%s", dl_safetensors_meta_key(f->opt, i)) + 1;
            f->values[4 + i] = dl_safetensors_meta(f->opt, dl_safetensors_meta_key(f->opt, i));
        }
        for (i = 0; i < n_opt_t; i++, k++) {
            const char *nm = dl_safetensors_name(f->opt, i);
            f->names[k] = f->text + off;
            off += (size_t)snprintf(f->text + off, 128, "optimizer/%s", nm) + 1;
            f->ts[k] = dl_safetensors_get(f->opt, nm);
        }
    }
    return 0;
}

DLDEF size_t dl_model_serialize(dl_model *m, int include_optimizer, void *out, size_t cap) {
    dl__model_file f;
    size_t r;
    if (dl__model_file_make(m, 0, include_optimizer, &f) != 0) return 0;
    r = dl_safetensors_serialize(f.n, f.names, f.ts, f.n_meta, f.keys, f.values, out, cap);
    dl__model_file_free(&f);
    return r;
}

#ifndef DL_NO_STDIO
static int dl__model_save(dl_model *m, const char *path, int weights_only, int include_optimizer) {
    dl__model_file f;
    int r;
    if (!path) { dl_set_error("dl_model_save: NULL path"); return -1; }
    if (dl__model_file_make(m, weights_only, include_optimizer, &f) != 0) return -1;
    r = dl_safetensors_save(path, f.n, f.names, f.ts, f.n_meta, f.keys, f.values);
    dl__model_file_free(&f);
    return r;
}
DLDEF int dl_model_save(dl_model *m, const char *path, int include_optimizer) { return dl__model_save(m, path, 0, include_optimizer); }
DLDEF int dl_model_save_weights(dl_model *m, const char *path) { return dl__model_save(m, path, 1, 0); }
#endif

/* ---- Loading ---- */

/* Copies every weight of m from st (names "layer/weight"), after checking them all. */
static int dl__load_weights_from(dl_model *m, const dl_safetensors *st, const char *fn) {
    char name[128];
    int pass, i, j;
    if (!m->built) { dl_set_error("%s: build the model first (dl_model_build)", fn); return -1; }
    for (pass = 0; pass < 2; pass++)   /* check everything, then copy: a failure changes nothing */
        for (i = 0; i < m->n_layers; i++)
            for (j = 0; j < m->layers[i]->n_params; j++) {
                dl_tensor *w = m->layers[i]->params[j], *src;
                char a[64], b[64];
                snprintf(name, sizeof name, "%s/%s", m->layers[i]->name, m->layers[i]->param_names[j]);
                src = dl_safetensors_get(st, name);
                if (pass == 1) { dl_copy(w, src); continue; }
                if (!src) { dl_set_error("%s: the file has no weight '%s'", fn, name); return -1; }
                if (src->dtype != DL_F32 || !dl_same_shape(src, w)) {
                    dl_set_error("%s: '%s' is %s %s in the file, the model needs f32 %s", fn, name, dl_dtype_name(src->dtype),
                                 dl_shape_str(src, a, sizeof a), dl_shape_str(w, b, sizeof b));
                    return -1;
                }
            }
    return 0;
}

static const char *dl__skip_word(const char *p) {
    while (*p == ' ') p++;
    while (*p && *p != ' ' && *p != '\n') p++;
    return p;
}

/* Reads "N" integers from p (after a keyword); returns the end or NULL. */
static const char *dl__read_ints(const char *p, int n, int *out, long lo, long hi) {
    int i;
    for (i = 0; i < n; i++) {
        char *end;
        long v;
        while (*p == ' ') p++;
        v = strtol(p, &end, 10);
        if (end == p || v < lo || v > hi) return NULL;
        out[i] = (int)v;
        p = end;
    }
    return p;
}

/* Reads the dl.optim hyperparameters from "optimizer/..." metadata and makes that optimizer. */
static double dl__meta_num(const dl_safetensors *st, const char *key, double dflt) {
    char k[64];
    const char *s;
    char *end;
    double v;
    snprintf(k, sizeof k, "optimizer/%s", key);
    s = dl_safetensors_meta(st, k);
    if (!s) return dflt;
    v = strtod(s, &end);
    return end != s ? v : dflt;
}

static dl_optim *dl__optim_from_meta(const dl_safetensors *st) {
    const char *kind = dl_safetensors_meta(st, "optimizer/kind");
    double lr = dl__meta_num(st, "lr", 1e-3), eps = dl__meta_num(st, "eps", 1e-8), mom = dl__meta_num(st, "momentum", 0);
    double b1 = dl__meta_num(st, "beta1", 0.9), b2 = dl__meta_num(st, "beta2", 0.999), wd = dl__meta_num(st, "weight_decay", 0);
    dl_optim *o = NULL;
    if (!kind) { dl_set_error("dl_model_load: the file's optimizer has no kind"); return NULL; }
    if (strcmp(kind, "sgd") == 0) o = dl_sgd(lr, mom, wd, (int)dl__meta_num(st, "nesterov", 0));
    else if (strcmp(kind, "rmsprop") == 0)
        o = dl_rmsprop(lr, dl__meta_num(st, "alpha", 0.99), eps, mom, (int)dl__meta_num(st, "centered", 0));
    else if (strcmp(kind, "adagrad") == 0) o = dl_adagrad(lr, dl__meta_num(st, "initial_accumulator", 0), eps);
    else if (strcmp(kind, "adam") == 0) o = dl_adam(lr, b1, b2, eps);
    else if (strcmp(kind, "adamw") == 0) o = dl_adamw(lr, b1, b2, eps, wd);
    else { dl_set_error("dl_model_load: unknown optimizer kind '%s'", kind); return NULL; }
    if (o && dl_optim_set_clip(o, dl__meta_num(st, "max_norm", 0), dl__meta_num(st, "clip_value", 0)) != 0) {
        dl_optim_free(o);
        return NULL;
    }
    return o;
}

/* Puts the optimizer state embedded in st back into m's (bound) optimizer. */
static int dl__load_optim_state(dl_model *m, const dl_safetensors *st) {
    int n = dl_safetensors_count(st), nm = dl_safetensors_meta_count(st), nt = 0, nk = 0, i, r = -1;
    const char **names, **keys, **values;
    dl_tensor **ts;
    size_t size;
    void *blob;
    names = (const char **)DL_MALLOC((size_t)(n + 2 * nm + 1) * sizeof(char *) + (size_t)(n + 1) * sizeof(dl_tensor *));
    if (!names) { dl_set_error("dl_model_load: out of memory"); return -1; }
    keys = names + n;
    values = keys + nm;
    ts = (dl_tensor **)(values + nm + 1);
    for (i = 0; i < n; i++) {
        const char *s = dl_safetensors_name(st, i);
        if (strncmp(s, "optimizer/", 10) == 0) { names[nt] = s + 10; ts[nt++] = dl_safetensors_get(st, s); }
    }
    for (i = 0; i < nm; i++) {
        const char *s = dl_safetensors_meta_key(st, i);
        if (strncmp(s, "optimizer/", 10) == 0) { keys[nk] = s + 10; values[nk++] = dl_safetensors_meta(st, s); }
    }
    size = dl_safetensors_serialize(nt, names, ts, nk, keys, values, NULL, 0);
    if (size && (blob = DL_MALLOC(size)) != NULL) {
        dl_safetensors_serialize(nt, names, ts, nk, keys, values, blob, size);
        r = dl_optim_parse(m->opt, blob, size);
        DL_FREE(blob);
    } else if (size) dl_set_error("dl_model_load: out of memory");
    DL_FREE(names);
    return r;
}

static dl_model *dl__model_from(const dl_safetensors *st) {
    const char *fmt = dl_safetensors_meta(st, "dl.format"), *arch = dl_safetensors_meta(st, "dl.architecture");
    const char *comp = dl_safetensors_meta(st, "dl.compile"), *p;
    dl_layer **layers = NULL;
    dl_sym **syms = NULL;
    dl_model *m = NULL;
    int n_layers = 0, cap = 0, functional = -1, n_syms = 0, n_in = 0, in_ndim = -1, in_shape[DL_MAX_DIMS], i, ok = 0;
    int outs[DL__MAX_IO], n_out = 0, lines = 0;
    dl_dtype in_dtype = DL_F32;
    if (!fmt || strcmp(fmt, DL__MODEL_FORMAT) != 0) {
        dl_set_error("dl_model_load: not a dl model file (dl.format is %s)", fmt ? fmt : "missing");
        return NULL;
    }
    if (!arch) { dl_set_error("dl_model_load: no dl.architecture (a weights-only file? use dl_model_load_weights)"); return NULL; }
    for (p = arch; *p; p++) lines += *p == '\n';
    if (lines > 3 * DL__MAX_LOAD_LAYERS) { dl_set_error("dl_model_load: architecture too long"); return NULL; }
    syms = (dl_sym **)DL_MALLOC((size_t)(lines + 1) * sizeof *syms);
    if (!syms) { dl_set_error("dl_model_load: out of memory"); return NULL; }
    dl__loading = st;
    for (p = arch; *p;) {
        const char *eol = strchr(p, '\n'), *q;
        char word[16];
        size_t wl;
        if (!eol) eol = p + strlen(p);
        q = dl__skip_word(p);
        wl = (size_t)(q - p);
        if (wl >= sizeof word) wl = sizeof word - 1;
        memcpy(word, p, wl);
        word[wl] = 0;
        if (strcmp(word, "model") == 0) {
            while (*q == ' ') q++;
            functional = strncmp(q, "functional", 10) == 0 ? 1 : strncmp(q, "sequential", 10) == 0 ? 0 : -1;
            if (functional < 0) { dl_set_error("dl_model_load: unknown model type"); goto done; }
        } else if (strcmp(word, "input") == 0) {
            int nd;
            while (*q == ' ') q++;
            in_dtype = strncmp(q, "i32", 3) == 0 ? DL_I32 : DL_F32;
            if (!(q = dl__read_ints(dl__skip_word(q), 1, &nd, 0, DL_MAX_DIMS - 1)) ||
                !(q = dl__read_ints(q, nd, in_shape, 1, INT_MAX))) { dl_set_error("dl_model_load: bad input line"); goto done; }
            in_ndim = nd;
            if (functional == 1) {
                if (n_in >= DL__MAX_IO) { dl_set_error("dl_model_load: too many inputs"); goto done; }
                if (!(syms[n_syms] = dl__input(in_dtype, nd, in_shape))) goto done;
                n_syms++;
                n_in++;
            }
        } else if (strcmp(word, "layer") == 0) {
            char kind[32], name[48];
            int ic[DL_LAYER_MAX_CONF], tr;
            float fc[DL_LAYER_MAX_CONF];
            const char *k0, *k1;
            dl_layer *l;
            k0 = q; while (*k0 == ' ') k0++; k1 = dl__skip_word(k0);
            if (k1 - k0 <= 0 || (size_t)(k1 - k0) >= sizeof kind) { dl_set_error("dl_model_load: bad layer kind"); goto done; }
            memcpy(kind, k0, (size_t)(k1 - k0)); kind[k1 - k0] = 0;
            k0 = k1; while (*k0 == ' ') k0++; k1 = dl__skip_word(k0);
            if (k1 - k0 <= 0 || (size_t)(k1 - k0) >= sizeof name) { dl_set_error("dl_model_load: bad layer name"); goto done; }
            memcpy(name, k0, (size_t)(k1 - k0)); name[k1 - k0] = 0;
            q = dl__read_ints(k1, 1, &tr, 0, 1);
            if (q) { while (*q == ' ') q++; q = *q == 'i' ? dl__read_ints(q + 1, DL_LAYER_MAX_CONF, ic, INT_MIN + 1, INT_MAX) : NULL; }
            if (q) { while (*q == ' ') q++; q = *q == 'f' ? q + 1 : NULL; }
            for (i = 0; q && i < DL_LAYER_MAX_CONF; i++) {
                char *end;
                double v = strtod(q, &end);
                if (end == q || !(v == v) || v > 3.4e38 || v < -3.4e38) q = NULL; else { fc[i] = (float)v; q = end; }
            }
            if (!q) { dl_set_error("dl_model_load: bad settings for layer %s", name); goto done; }
            if (n_layers >= DL__MAX_LOAD_LAYERS) { dl_set_error("dl_model_load: too many layers"); goto done; }
            dl_clear_error();
            if (!(l = dl__layer_from_conf(kind, ic, fc))) {
                char msg[512];
                dl__error_copy(msg, sizeof msg);
                dl_set_error("dl_model_load: layer %s: %s", name, msg);
                goto done;
            }
            for (i = 0; i < n_layers; i++)
                if (strcmp(layers[i]->name, name) == 0) {
                    dl_layer_free(l);
                    dl_set_error("dl_model_load: two layers named %s", name);
                    goto done;
                }
            snprintf(l->name, sizeof l->name, "%s", name);
            l->flags |= DL__LAYER_NAMED;
            l->trainable = tr;
            if (n_layers == cap) {
                dl_layer **nl = (dl_layer **)DL_REALLOC(layers, (size_t)(cap ? 2 * cap : 16) * sizeof *nl);
                if (!nl) { dl_layer_free(l); dl_set_error("dl_model_load: out of memory"); goto done; }
                layers = nl;
                cap = cap ? 2 * cap : 16;
            }
            layers[n_layers++] = l;
        } else if (strcmp(word, "node") == 0) {
            int li, n, idx[DL_LAYER_MAX_INPUTS];
            dl_sym *args[DL_LAYER_MAX_INPUTS];
            if (functional != 1 || !(q = dl__read_ints(q, 1, &li, 0, n_layers - 1)) ||
                !(q = dl__read_ints(q, 1, &n, 1, DL_LAYER_MAX_INPUTS)) || !(q = dl__read_ints(q, n, idx, 0, n_syms - 1))) {
                dl_set_error("dl_model_load: bad node line");
                goto done;
            }
            for (i = 0; i < n; i++) args[i] = syms[idx[i]];
            if (!(syms[n_syms] = dl_apply_n(layers[li], n, args))) goto done;
            n_syms++;
        } else if (strcmp(word, "output") == 0) {
            while (q < eol && n_out < DL__MAX_IO) {
                const char *r = dl__read_ints(q, 1, &outs[n_out], 0, n_syms - 1);
                if (!r) break;
                q = r;
                n_out++;
                while (*q == ' ') q++;
            }
        } else if (wl > 0) {
            dl_set_error("dl_model_load: unknown architecture line '%s'", word);
            goto done;
        }
        p = *eol ? eol + 1 : eol;
    }
    if (functional == 0) {
        if (!(m = dl_sequential_n(n_layers, layers))) goto done;
        n_layers = 0;   /* the model has them */
        if (in_ndim < 0) { dl_set_error("dl_model_load: the sequential model has no input shape"); goto done; }
        if (dl__model_build(m, in_dtype, in_ndim, in_shape) != 0) goto done;
    } else if (functional == 1) {
        dl_sym *outputs[DL__MAX_IO];
        if (n_in < 1 || n_out < 1) { dl_set_error("dl_model_load: a functional model needs inputs and outputs"); goto done; }
        for (i = 0; i < n_out; i++) outputs[i] = syms[outs[i]];
        if (!(m = dl_model_new(n_in, syms, n_out, outputs))) goto done;
        n_syms = 0;
        for (i = 0; i < n_layers; i++)
            if (!dl__model_has_layer(m, layers[i])) { dl_set_error("dl_model_load: layer %s is never applied", layers[i]->name); goto done; }
        n_layers = 0;
    } else {
        dl_set_error("dl_model_load: no model line");
        goto done;
    }
    if (dl__load_weights_from(m, st, "dl_model_load") != 0) goto done;
    if ((p = dl_safetensors_meta(st, "dl.rng")) != NULL) {   /* "name s0 s1 s2 s3" per line */
        while (*p) {
            char name[48];
            unsigned long long r[4];
            dl_layer *l;
            int used = 0;
            if (sscanf(p, "%47s %llx %llx %llx %llx%n", name, &r[0], &r[1], &r[2], &r[3], &used) != 5 || used <= 0) {
                dl_set_error("dl_model_load: bad dl.rng");
                goto done;
            }
            if ((l = dl_model_get_layer(m, name)) != NULL)
                for (i = 0; i < 4; i++) l->rng.s[i] = (uint64_t)r[i];
            p += used;
            while (*p == '\n' || *p == ' ') p++;
        }
    }
    if (comp) {
        int loss = 0, top_k = 5, compiled = 0, state = 0;
        unsigned metrics = 0;
        if (sscanf(comp, "loss %d metrics %u top_k %d compiled %d state %d", &loss, &metrics, &top_k, &compiled, &state) != 5) {
            dl_set_error("dl_model_load: bad dl.compile");
            goto done;
        }
        if (compiled) {
            dl_optim *o = dl__optim_from_meta(st);
            if (!o || dl_compile(m, o, (dl_loss)loss, metrics) != 0) goto done;
            dl_model_set_top_k(m, top_k);
            if (dl__bind_optimizer(m) != 0 || (state && dl__load_optim_state(m, st) != 0)) goto done;
        }
    }
    ok = 1;
done:
    if (!ok) {
        char msg[512];
        dl__error_copy(msg, sizeof msg);
        if (m) {   /* the model frees its layers; free those it never took */
            for (i = 0; i < n_layers; i++) if (!dl__model_has_layer(m, layers[i])) dl_layer_free(layers[i]);
            n_layers = 0;
            dl_model_free(m);
            m = NULL;
        }
        for (i = 0; i < n_layers; i++) {   /* layers not yet in a model, and their symbols */
            dl_sym *s, *nx;
            for (s = dl__free_syms; s; s = nx) { nx = s->next; if (s->layer == layers[i]) { dl__sym_unlink(s); DL_FREE(s); } }
            dl_layer_free(layers[i]);
        }
        for (i = 0; i < n_syms; i++)
            if (syms[i]) {
                dl_sym *s;
                for (s = dl__free_syms; s && s != syms[i]; s = s->next) {}
                if (s) { dl__sym_unlink(s); DL_FREE(s); }
            }
        dl_set_error("%s", msg);
    }
    dl__loading = NULL;
    DL_FREE(layers);
    DL_FREE(syms);
    return m;
}

DLDEF dl_model *dl_model_parse(const void *bytes, size_t size) {
    dl_safetensors *st = dl_safetensors_parse(bytes, size);
    dl_model *m;
    if (!st) return NULL;
    m = dl__model_from(st);
    dl_safetensors_free(st);
    return m;
}

#ifndef DL_NO_STDIO
DLDEF dl_model *dl_model_load(const char *path) {
    dl_safetensors *st = dl_safetensors_load(path);
    dl_model *m;
    if (!st) return NULL;
    m = dl__model_from(st);
    if (!m) {
        char msg[512];
        dl__error_copy(msg, sizeof msg);
        dl_set_error("%s: %s", path, msg);
    }
    dl_safetensors_free(st);
    return m;
}

DLDEF int dl_model_load_weights(dl_model *m, const char *path) {
    dl_safetensors *st;
    int r;
    if (!m || !path) { dl_set_error("dl_model_load_weights: NULL argument"); return -1; }
    if (!(st = dl_safetensors_load(path))) return -1;
    r = dl__load_weights_from(m, st, path);
    dl_safetensors_free(st);
    return r;
}
#endif
