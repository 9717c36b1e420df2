/* ==== ESTIMATORS: implementation ==============================================================
   An estimator is a compiled Sequential model that outputs logits (or values), a serving model
   holding the same layers plus the probabilities, and the settings train/evaluate need. Every
   number it reports is computed here from dl_predict's outputs, in double precision. */

enum { DL__EST_DNN_CLASSIFIER = 1, DL__EST_LINEAR_CLASSIFIER, DL__EST_LINEAR_REGRESSOR };

struct dl_estimator {
    int kind;
    int n_features;       /* F */
    int n_classes;        /* classifiers: >= 2; regressors: 0 */
    int batch_size, shuffle, log_every;
    uint64_t seed;
    dl_model *model;      /* Flatten, ..., Dense "logits": owned, compiled */
    dl_model *serving;    /* the same layers (shared) + probabilities: owned, not compiled */
    char *checkpoint;     /* owned copy, or NULL */
};

/* evaluate fills at most 7 names (binary: loss, average_loss, accuracy, precision, recall, auc,
   global_step): dl_logs must have room for them. */
typedef char dl__est_logs_room[(1 + DL_MAX_METRICS >= 7) ? 1 : -1];

static const char *dl__est_fn(int kind) {
    return kind == DL__EST_DNN_CLASSIFIER ? "dl_dnn_classifier" : kind == DL__EST_LINEAR_CLASSIFIER ? "dl_linear_classifier"
                                                                                                  : "dl_linear_regressor";
}

/* Appends a new layer to m, naming it `name` when not NULL. On failure frees the layer. */
static int dl__est_add(dl_model *m, dl_layer *l, const char *name) {
    if (!l) return -1;
    if (name) snprintf(l->name, sizeof l->name, "%s", name);
    if (dl_sequential_add(m, l) != 0) { dl_layer_free(l); return -1; }
    return 0;
}

/* The training model, built for input [F] (weights made; zeros for linear models). */
static dl_model *dl__est_model(int kind, int F, int K, const dl_estimator_opts *o, dl_act act) {
    dl_model *m = dl_sequential_n(0, NULL);
    int i;
    if (!m) return NULL;
    if (dl__est_add(m, dl_Flatten(), NULL) != 0) goto fail;
    if (kind == DL__EST_DNN_CLASSIFIER)
        for (i = 0; i < o->n_hidden; i++) {
            char name[32];
            snprintf(name, sizeof name, "hiddenlayer_%d", i);
            if (dl__est_add(m, dl_Dense(o->hidden_units[i], act), name) != 0) goto fail;
            if (o->dropout > 0.0f && dl__est_add(m, dl_Dropout(o->dropout), NULL) != 0) goto fail;
        }
    if (dl__est_add(m, dl_Dense(K, DL_LINEAR), "logits") != 0) goto fail;
    if (dl_model_build(m, 1, &F) != 0) goto fail;
    if (kind != DL__EST_DNN_CLASSIFIER) {   /* TF's linear model starts at zero */
        dl_tensor *w[8];
        int n = dl_model_weights(m, 0, w, 8);
        for (i = 0; i < n && i < 8; i++) dl_fill(w[i], 0.0f);
    }
    return m;
fail:
    dl_model_free(m);
    return NULL;
}

/* The serving model: e->model's layers and, for classifiers, the probabilities. */
static dl_model *dl__est_serving(const dl_estimator *e) {
    dl_model *s = dl_sequential_n(0, NULL);
    int i, n = dl_model_num_layers(e->model);
    if (!s) return NULL;
    for (i = 0; i < n; i++)
        if (dl_sequential_add(s, dl_model_layer(e->model, i)) != 0) goto fail;
    if (e->n_classes == 2) {   /* z -> [0, z] -> softmax = [1 - sigmoid(z), sigmoid(z)] */
        dl_layer *p = dl_Dense(2, DL_SOFTMAX);
        if (dl__est_add(s, p, "probabilities") != 0) goto fail;
        if (dl_model_build(s, 1, &e->n_features) != 0) goto fail;
        dl_f32(dl_layer_weight(p, "kernel"))[0] = 0.0f;
        dl_f32(dl_layer_weight(p, "kernel"))[1] = 1.0f;
        dl_fill(dl_layer_weight(p, "bias"), 0.0f);
        p->trainable = 0;
    } else {
        if (e->n_classes > 2 && dl__est_add(s, dl_Activation(DL_SOFTMAX), "probabilities") != 0) goto fail;
        if (dl_model_build(s, 1, &e->n_features) != 0) goto fail;
    }
    return s;
fail:
    dl_model_free(s);
    return NULL;
}

#ifndef DL_NO_STDIO
/* Whether a loaded checkpoint has exactly the layers (kinds, names, settings, weight shapes) of
   the freshly built model, and the same loss. */
static int dl__est_same_model(const dl_model *a, const dl_model *b) {
    int i, j, k, n = dl_model_num_layers(a);
    if (n != dl_model_num_layers(b) || !dl_model_optimizer(b) || a->loss != b->loss) return 0;
    for (i = 0; i < n; i++) {
        const dl_layer *x = dl_model_layer(a, i), *y = dl_model_layer(b, i);
        if (strcmp(x->ops->kind, y->ops->kind) != 0 || strcmp(x->name, y->name) != 0 || x->n_params != y->n_params ||
            memcmp(x->iconf, y->iconf, sizeof x->iconf) != 0 || memcmp(x->fconf, y->fconf, sizeof x->fconf) != 0)
            return 0;
        for (j = 0; j < x->n_params; j++) {
            if (x->params[j]->ndim != y->params[j]->ndim || strcmp(x->param_names[j], y->param_names[j]) != 0) return 0;
            for (k = 0; k < x->params[j]->ndim; k++)
                if (x->params[j]->shape[k] != y->params[j]->shape[k]) return 0;
        }
    }
    return 1;
}
#endif

/* Re-sets dl_error() as "fn: <message>" unless it already starts with fn. */
static void dl__est_wrap(const char *fn) {
    char msg[512];
    size_t k = strlen(fn);
    if (strncmp(dl_error(), fn, k) == 0) return;
    snprintf(msg, sizeof msg, "%s", dl_error());
    dl_set_error("%s: %s", fn, msg[0] ? msg : "failed");
}

static dl_estimator *dl__est_new(int kind, int F, const dl_estimator_opts *opts) {
    const char *fn = dl__est_fn(kind);
    dl_estimator_opts o;
    dl_optim *opt;
    dl_estimator *e = NULL;
    dl_act act;
    int K, i, classifier = kind != DL__EST_LINEAR_REGRESSOR;
    if (opts) o = *opts; else memset(&o, 0, sizeof o);
    opt = o.optimizer;   /* ours from here on: freed on every failure */
    act = o.activation == DL_LINEAR ? DL_RELU : o.activation;
    if (F <= 0) { dl_set_error("%s: n_features %d must be > 0", fn, F); goto fail; }
    if (classifier && o.n_classes == 0) o.n_classes = 2;
    if (classifier && o.n_classes < 2) { dl_set_error("%s: n_classes %d must be >= 2", fn, o.n_classes); goto fail; }
    if (o.batch_size < 0 || o.log_every < 0) { dl_set_error("%s: batch_size and log_every must be >= 0", fn); goto fail; }
    if (!(o.learning_rate >= 0.0f) || isinf(o.learning_rate)) { dl_set_error("%s: learning_rate %g must be >= 0", fn, (double)o.learning_rate); goto fail; }
    if (kind == DL__EST_DNN_CLASSIFIER) {
        if (o.n_hidden < 1 || !o.hidden_units) { dl_set_error("%s: hidden_units and n_hidden >= 1 needed", fn); goto fail; }
        for (i = 0; i < o.n_hidden; i++)
            if (o.hidden_units[i] <= 0) { dl_set_error("%s: hidden_units[%d] = %d must be > 0", fn, i, o.hidden_units[i]); goto fail; }
        if (!(o.dropout >= 0.0f && o.dropout < 1.0f)) { dl_set_error("%s: dropout %g must be in [0, 1)", fn, (double)o.dropout); goto fail; }
        if ((unsigned)act > (unsigned)DL_SOFTPLUS) { dl_set_error("%s: unknown activation %d", fn, (int)act); goto fail; }
    }
#ifdef DL_NO_STDIO
    if (o.checkpoint) { dl_set_error("%s: checkpoints need stdio (built with DL_NO_STDIO)", fn); goto fail; }
#endif
    if (!opt) {
        double lr = o.learning_rate > 0.0f ? (double)o.learning_rate : 0.05;
        if (kind == DL__EST_DNN_CLASSIFIER) opt = dl_adagrad(lr, 0.1, 1e-7);
        else {   /* Ftrl(min(0.2, 1/sqrt(F))) without l1/l2 = Adagrad from zero weights */
            if (!(o.learning_rate > 0.0f)) lr = 1.0 / sqrt((double)F) < 0.2 ? 1.0 / sqrt((double)F) : 0.2;
            opt = dl_adagrad(lr, 0.1, 0.0);
        }
        if (!opt) goto fail;
    }
    if (!(e = (dl_estimator *)DL_MALLOC(sizeof *e))) { dl_set_error("%s: out of memory", fn); goto fail; }
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->n_features = F;
    e->n_classes = classifier ? o.n_classes : 0;
    e->batch_size = o.batch_size > 0 ? o.batch_size : 32;
    e->shuffle = !o.no_shuffle;
    e->log_every = o.log_every;
    e->seed = o.seed;
    if (o.checkpoint) {
        size_t n = strlen(o.checkpoint) + 1;
        if (!(e->checkpoint = (char *)DL_MALLOC(n))) { dl_set_error("%s: out of memory", fn); goto fail; }
        memcpy(e->checkpoint, o.checkpoint, n);
    }
    K = e->n_classes > 2 ? e->n_classes : 1;
    dl_nn_seed(o.seed);
    if (!(e->model = dl__est_model(kind, F, K, &o, act))) goto fail;
    i = dl_compile(e->model, opt, classifier ? (K == 1 ? DL_LOSS_BINARY_CE : DL_LOSS_SPARSE_CATEGORICAL_CE) : DL_LOSS_MSE,
                   classifier ? DL_METRIC_ACCURACY : 0);
    opt = NULL;   /* the model has it (or dl_compile freed it) */
    if (i != 0) goto fail;
#ifndef DL_NO_STDIO
    if (e->checkpoint) {
        FILE *f = fopen(e->checkpoint, "rb");
        if (f) {   /* resume: the file's model replaces the fresh one, which must look the same */
            dl_model *m;
            fclose(f);
            if (!(m = dl_model_load(e->checkpoint))) { dl__est_wrap(fn); goto fail; }
            if (!dl__est_same_model(e->model, m)) {
                dl_model_free(m);
                dl_set_error("%s: checkpoint %s holds a different model than this estimator builds", fn, e->checkpoint);
                goto fail;
            }
            dl_model_free(e->model);
            e->model = m;
        }
    }
#endif
    if (!(e->serving = dl__est_serving(e))) goto fail;
    return e;
fail:
    dl__est_wrap(fn);
    dl_optim_free(opt);
    dl_estimator_free(e);
    return NULL;
}

DLDEF dl_estimator *dl_dnn_classifier(int n_features, const dl_estimator_opts *opts) {
    if (!opts) { dl_set_error("dl_dnn_classifier: opts with hidden_units needed"); return NULL; }
    return dl__est_new(DL__EST_DNN_CLASSIFIER, n_features, opts);
}
DLDEF dl_estimator *dl_linear_classifier(int n_features, const dl_estimator_opts *opts) {
    return dl__est_new(DL__EST_LINEAR_CLASSIFIER, n_features, opts);
}
DLDEF dl_estimator *dl_linear_regressor(int n_features, const dl_estimator_opts *opts) {
    return dl__est_new(DL__EST_LINEAR_REGRESSOR, n_features, opts);
}

DLDEF void dl_estimator_free(dl_estimator *e) {
    if (!e) return;
    dl_model_free(e->serving);   /* drops its references to the shared layers first */
    dl_model_free(e->model);
    DL_FREE(e->checkpoint);
    DL_FREE(e);
}

DLDEF dl_model *dl_estimator_model(const dl_estimator *e) { return e ? e->model : NULL; }
DLDEF dl_model *dl_estimator_serving_model(const dl_estimator *e) { return e ? e->serving : NULL; }
DLDEF long dl_estimator_global_step(const dl_estimator *e) { return e ? dl_optim_steps(dl_model_optimizer(e->model)) : -1; }

/* ---- Checking inputs ---- */

static int dl__est_check_x(const char *fn, const dl_estimator *e, const dl_tensor *x) {
    char s[64];
    if (!e || !x) { dl_set_error("%s: NULL argument", fn); return -1; }
    if (x->dtype != DL_F32 || x->device != DL_CPU || x->ndim < 2 || x->shape[0] < 1 ||
        x->numel / (size_t)x->shape[0] != (size_t)e->n_features) {
        dl_set_error("%s: x is %s; need f32 [N >= 1, %d] (or [N, ...] of %d values per sample)", fn,
                     dl_shape_str(x, s, sizeof s), e->n_features, e->n_features);
        return -1;
    }
    return 0;
}

/* x as above, and labels: i32 in [0, n_classes) for classifiers, f32 or i32 for regressors. */
static int dl__est_check_data(const char *fn, const dl_estimator *e, const dl_dataset *ds) {
    const dl_tensor *y;
    int i;
    if (!e || !ds) { dl_set_error("%s: NULL argument", fn); return -1; }
    if (dl__est_check_x(fn, e, ds->x) != 0) return -1;
    if (ds->n != ds->x->shape[0]) { dl_set_error("%s: the data set says n = %d, x has %d samples", fn, ds->n, ds->x->shape[0]); return -1; }
    if (!(y = ds->y)) { dl_set_error("%s: the data set has no labels", fn); return -1; }
    if (y->device != DL_CPU || y->numel != (size_t)ds->n || !dl_is_contiguous(y) || (y->dtype != DL_I32 && y->dtype != DL_F32)) {
        dl_set_error("%s: labels must be i32 or f32 [%d]", fn, ds->n);
        return -1;
    }
    if (!e->n_classes) return 0;
    if (y->dtype != DL_I32) { dl_set_error("%s: a classifier needs i32 class labels", fn); return -1; }
    for (i = 0; i < ds->n; i++) {
        int32_t v = ((const int32_t *)y->data)[i];
        if (v < 0 || v >= e->n_classes) {
            dl_set_error("%s: label %d of sample %d is not in [0, %d)", fn, (int)v, i, e->n_classes);
            return -1;
        }
    }
    return 0;
}

/* ---- Training ---- */

DLDEF int dl_estimator_train(dl_estimator *e, const dl_dataset *ds, long steps) {
    const char *fn = "dl_estimator_train";
    dl_arena *arena = dl_arena_current();
    dl_batcher *b;
    dl_batch_opts bo;
    dl_tensor *x, *y;
    long gs, len, skip, s = 0;
    int r = 0, empty = 0, ok = 0;
    if (dl__est_check_data(fn, e, ds) != 0) return -1;
    if (steps < 0) { dl_set_error("%s: steps %ld must be >= 0", fn, steps); return -1; }
    memset(&bo, 0, sizeof bo);
    bo.shuffle = e->shuffle;
    bo.seed = e->seed;
    if (!(b = dl_batcher_new(ds, e->batch_size, &bo))) { dl__est_wrap(fn); return -1; }
    len = dl_batcher_len(b);
    if (len < 1) { dl_batcher_free(b); dl_set_error("%s: no batches", fn); return -1; }
    if (steps == 0) steps = len;
    gs = dl_estimator_global_step(e);
    /* Continue where global_step says the data is: that epoch's order, minus the batches done. */
    dl_batcher_set_epoch(b, gs / len < INT_MAX ? (int)(gs / len) : INT_MAX);
    for (skip = gs % len; skip > 0; skip--) {
        dl_arena_reset(arena);
        if ((r = dl_batcher_next(b, &x, &y)) != 1) break;
    }
    while (r >= 0 && s < steps) {
        double loss;
        dl_arena_reset(arena);
        r = dl_batcher_next(b, &x, &y);
        if (r < 0) break;
        if (r == 0) {   /* the epoch is over; the next call starts the next one */
            if (++empty > 1) { r = -1; dl_set_error("%s: the batcher gives no batches", fn); break; }
            continue;
        }
        empty = 0;
        dl_clear_error();
        loss = dl_train_on_batch(e->model, x, y);
        if (loss != loss) {   /* a failure sets a message; a NaN loss itself does not */
            if (!dl_error()[0]) dl_set_error("%s: NaN loss at global_step %ld", fn, gs + s + 1);
            r = -1;
            break;
        }
        s++;
#ifndef DL_NO_STDIO
        if (e->log_every > 0 && (gs + s) % e->log_every == 0) {
            printf("global_step %ld: loss = %.6f\n", gs + s, loss);
            fflush(stdout);
        }
#endif
    }
    ok = r >= 0 && s == steps;
    dl_batcher_free(b);
    dl_arena_reset(arena);
#ifndef DL_NO_STDIO
    if (ok && e->checkpoint && dl_model_save(e->model, e->checkpoint, 1) != 0) ok = 0;
#endif
    if (!ok) { dl__est_wrap(fn); return -1; }
    return 0;
}

/* ---- Evaluation ---- */

typedef struct dl__est_scored { float s; int y; } dl__est_scored;

static int dl__est_cmp(const void *pa, const void *pb) {   /* ascending; NaN first, so the order is total */
    float a = ((const dl__est_scored *)pa)->s, b = ((const dl__est_scored *)pb)->s;
    if (a != a || b != b) return (b != b) - (a != a);
    return (a > b) - (a < b);
}

/* Area under the ROC curve from scores and 0/1 labels: the Mann-Whitney statistic with tied
   scores given their mean rank. NaN when one class is absent. */
static double dl__est_auc(dl__est_scored *v, int n) {
    double pos = 0, rank_sum = 0;
    int i = 0, j, k;
    qsort(v, (size_t)n, sizeof *v, dl__est_cmp);
    while (i < n) {
        int p = 0;
        for (j = i; j < n && dl__est_cmp(&v[j], &v[i]) == 0; j++) p += v[j].y;
        rank_sum += p * (0.5 * (double)(i + 1 + j));   /* ranks i+1 .. j, averaged */
        pos += p;
        i = j;
    }
    k = n - (int)pos;
    if (pos == 0 || k == 0) return NAN;
    return (rank_sum - pos * (pos + 1) / 2) / (pos * (double)k);
}

DLDEF int dl_estimator_evaluate(dl_estimator *e, const dl_dataset *ds, dl_logs *out) {
    const char *fn = "dl_estimator_evaluate";
    dl_tensor *z;
    const float *zs;
    double loss = 0, correct = 0, tp = 0, fp = 0, fn_ = 0, ysum = 0, zsum = 0, auc = 0;
    dl__est_scored *sc = NULL;
    int i, k, n, K;
    if (!out) { dl_set_error("%s: NULL argument", fn); return -1; }
    memset(out, 0, sizeof *out);
    if (dl__est_check_data(fn, e, ds) != 0) return -1;
    n = ds->n;
    if (!(z = dl_predict(e->model, ds->x, e->batch_size))) { dl__est_wrap(fn); return -1; }
    zs = dl_f32(z);
    K = (int)(z->numel / (size_t)n);
    if (e->n_classes == 2 && !(sc = (dl__est_scored *)DL_MALLOC((size_t)n * sizeof *sc))) {
        dl_tensor_free(z);
        dl_set_error("%s: out of memory", fn);
        return -1;
    }
    for (i = 0; i < n; i++) {
        const float *row = zs + (size_t)i * (size_t)K;
        if (e->n_classes == 0) {   /* squared error */
            double t = ds->y->dtype == DL_F32 ? (double)dl_f32(ds->y)[i] : (double)dl_i32(ds->y)[i], d = row[0] - t;
            loss += d * d;
            ysum += t;
            zsum += row[0];
        } else if (e->n_classes == 2) {   /* sigmoid cross-entropy: softplus(z) - y z */
            double v = row[0];
            int label = dl_i32(ds->y)[i], pred = v > 0;
            loss += (v > 0 ? v : 0) - v * label + log1p(exp(-fabs(v)));
            correct += pred == label;
            tp += pred && label;
            fp += pred && !label;
            fn_ += !pred && label;
            sc[i].s = row[0];
            sc[i].y = label;
        } else {   /* softmax cross-entropy: logsumexp(z) - z[label] */
            int label = dl_i32(ds->y)[i], pred = 0;
            double sum = 0;
            for (k = 1; k < K; k++) if (row[k] > row[pred]) pred = k;
            for (k = 0; k < K; k++) sum += exp((double)row[k] - row[pred]);
            loss += row[pred] + log(sum) - row[label];
            correct += pred == label;
        }
    }
    if (sc) auc = dl__est_auc(sc, n);
    DL_FREE(sc);
    dl_tensor_free(z);
    k = 0;
    out->names[k] = "loss"; out->values[k++] = loss / n;
    out->names[k] = "average_loss"; out->values[k++] = loss / n;
    if (e->n_classes) { out->names[k] = "accuracy"; out->values[k++] = correct / n; }
    if (e->n_classes == 2) {
        out->names[k] = "precision"; out->values[k++] = tp + fp > 0 ? tp / (tp + fp) : 0.0;
        out->names[k] = "recall"; out->values[k++] = tp + fn_ > 0 ? tp / (tp + fn_) : 0.0;
        out->names[k] = "auc"; out->values[k++] = auc;
    }
    if (!e->n_classes) {
        out->names[k] = "label/mean"; out->values[k++] = ysum / n;
        out->names[k] = "prediction/mean"; out->values[k++] = zsum / n;
    }
    out->names[k] = "global_step"; out->values[k++] = (double)dl_estimator_global_step(e);
    out->n = k;
    out->batches = (n + e->batch_size - 1) / e->batch_size;
    out->lr = dl_optim_lr(dl_model_optimizer(e->model));
    return 0;
}

/* ---- Prediction and export ---- */

DLDEF dl_tensor *dl_estimator_predict(dl_estimator *e, const dl_tensor *x) {
    dl_tensor *p;
    if (dl__est_check_x("dl_estimator_predict", e, x) != 0) return NULL;
    if (!(p = dl_predict(e->serving, x, e->batch_size))) dl__est_wrap("dl_estimator_predict");
    return p;
}

DLDEF dl_tensor *dl_estimator_predict_classes(dl_estimator *e, const dl_tensor *x) {
    const char *fn = "dl_estimator_predict_classes";
    dl_tensor *z, *c;
    int i, k, n, K;
    if (dl__est_check_x(fn, e, x) != 0) return NULL;
    if (!e->n_classes) { dl_set_error("%s: a regressor has no classes", fn); return NULL; }
    if (!(z = dl_predict(e->model, x, e->batch_size))) { dl__est_wrap(fn); return NULL; }
    n = x->shape[0];
    K = (int)(z->numel / (size_t)n);
    if ((c = dl_tensor_new(DL_I32, 1, &n)) != NULL)
        for (i = 0; i < n; i++) {
            const float *row = dl_f32(z) + (size_t)i * (size_t)K;
            int pred = 0;
            if (K == 1) pred = row[0] > 0;
            else for (k = 1; k < K; k++) if (row[k] > row[pred]) pred = k;
            dl_i32(c)[i] = pred;
        }
    else dl__est_wrap(fn);
    dl_tensor_free(z);
    return c;
}

#ifndef DL_NO_STDIO
DLDEF int dl_estimator_export(dl_estimator *e, const char *path) {
    if (!e || !path) { dl_set_error("dl_estimator_export: NULL argument"); return -1; }
    if (dl_model_save(e->serving, path, 0) != 0) { dl__est_wrap("dl_estimator_export"); return -1; }
    return 0;
}
#endif
