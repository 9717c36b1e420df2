/* ==== TRAINING: implementation ============================================================== */

static const char *const dl__metric_names[DL_MAX_METRICS] = {"accuracy", "top_k_accuracy", "precision", "recall",
                                                             "mse", "mae"};

DLDEF int dl_compile(dl_model *m, dl_optim *opt, dl_loss loss, unsigned metrics) {
    if (!m) { dl_optim_free(opt); dl_set_error("dl_compile: NULL model"); return -1; }
    if (!opt) { dl_set_error("dl_compile: NULL optimizer (did its constructor fail? %s)", dl_error()); return -1; }
    if (loss < DL_LOSS_SPARSE_CATEGORICAL_CE || loss > DL_LOSS_HUBER) {
        dl_optim_free(opt);
        dl_set_error("dl_compile: unknown loss %d", (int)loss);
        return -1;
    }
    if (metrics >> DL_MAX_METRICS) { dl_optim_free(opt); dl_set_error("dl_compile: unknown metric bits 0x%x", metrics); return -1; }
    if (dl_optim_param_count(opt) != 0) {
        dl_optim_free(opt);
        dl_set_error("dl_compile: give a fresh optimizer (the model adds its own weights to it)");
        return -1;
    }
    if (m->opt != opt) dl_optim_free(m->opt);
    m->opt = opt;
    m->opt_bound = 0;
    m->loss = loss;
    m->metrics = metrics;
    m->compiled = 1;
    return 0;
}

DLDEF void dl_model_set_top_k(dl_model *m, int k) { if (m && k > 0) m->top_k = k; }
DLDEF dl_optim *dl_model_optimizer(const dl_model *m) { return m ? m->opt : NULL; }
DLDEF void dl_model_stop_training(dl_model *m) { if (m) m->stop = 1; }

/* The layer whose output is the model's (single) output, to know whether it is a probability. */
static const dl_layer *dl__output_layer(const dl_model *m) {
    if (m->kind == DL__SEQUENTIAL && m->n_layers) return m->layers[m->n_layers - 1];
    if (m->kind == DL__FUNCTIONAL && m->n_outputs == 1) return m->nodes[m->outputs[0]].layer;
    return NULL;
}
static int dl__outputs_probs(const dl_model *m) {
    int act = dl__layer_act(dl__output_layer(m));
    return m->loss == DL_LOSS_BINARY_CE ? act == DL_SIGMOID : act == DL_SOFTMAX;
}

/* targets in the shape of pred when they hold as many values ([N] for [N, 1]) */
static dl_tensor *dl__match(dl_tensor *target, dl_tensor *pred) {
    if (target->ndim != pred->ndim && target->numel == pred->numel) return dl_reshape(target, pred->ndim, pred->shape);
    return target;
}

DLDEF dl_tensor *dl_model_loss(dl_model *m, dl_tensor *out, dl_tensor *y) {
    const float eps = 1e-7f;
    int probs;
    if (!m || !m->compiled) { dl_set_error("dl_model_loss: the model is not compiled"); return NULL; }
    if (!out || !y) { if (!y && out) dl_set_error("dl_model_loss: no targets (the data set has no labels)"); return NULL; }
    probs = dl__outputs_probs(m);
    switch (m->loss) {
    case DL_LOSS_SPARSE_CATEGORICAL_CE:
        if (y->dtype != DL_I32) y = dl_cast(y, DL_I32);
        if (!probs) return dl_cross_entropy(out, y);
        if (!y || out->ndim != 2 || y->ndim != 1 || y->shape[0] != out->shape[0]) {
            dl_set_error("dl_model_loss: probabilities [N, C] and labels [N] needed");
            return NULL;
        }   /* -mean(log p[label]) with p clipped as Keras does */
        return dl_neg(dl_mean_all(dl_gather(dl_log(dl_clamp(out, eps, 1.0f - eps)), 1, dl_unsqueeze(y, 1))));
    case DL_LOSS_CATEGORICAL_CE: {
        dl_tensor *logp;
        int axis = out->ndim - 1;
        if (y->dtype != DL_F32) y = dl_cast(y, DL_F32);
        logp = probs ? dl_log(dl_clamp(out, eps, 1.0f - eps)) : dl_log_softmax(out, axis);
        return dl_neg(dl_mean_all(dl_sum(dl_mul(y, logp), 1, &axis, 0)));
    }
    case DL_LOSS_BINARY_CE:
        if (y->dtype != DL_F32) y = dl_cast(y, DL_F32);
        y = dl__match(y, out);
        if (!probs) return dl_bce_with_logits(out, y);
        {   /* -mean(y log p + (1 - y) log(1 - p)) */
            dl_tensor *p = dl_clamp(out, eps, 1.0f - eps);
            return dl_neg(dl_mean_all(dl_add(dl_mul(y, dl_log(p)), dl_mul(dl_rsub_scalar(1.0f, y), dl_log(dl_rsub_scalar(1.0f, p))))));
        }
    case DL_LOSS_MSE: case DL_LOSS_MAE: case DL_LOSS_HUBER:
        if (y->dtype != DL_F32) y = dl_cast(y, DL_F32);
        y = dl__match(y, out);
        return m->loss == DL_LOSS_MSE ? dl_mse(out, y) : m->loss == DL_LOSS_MAE ? dl_l1(out, y) : dl_huber(out, y, 1.0f);
    }
    dl_set_error("dl_model_loss: unknown loss");
    return NULL;
}

/* ---- Metrics: accumulated over batches, read as Keras reports them ---- */

typedef struct dl__meter {
    unsigned metrics;
    int top_k, probs;
    dl_loss loss;
    double loss_sum, sq_sum, abs_sum, n_values;
    long n, correct, topk;
    int classes;               /* for macro precision/recall (0 until the first batch) */
    double *tp, *fp, *fn;      /* [classes] each, one allocation */
} dl__meter;

static void dl__meter_init(dl__meter *mt, const dl_model *m) {
    memset(mt, 0, sizeof *mt);
    mt->metrics = m->metrics;
    mt->top_k = m->top_k;
    mt->loss = m->loss;
    mt->probs = dl__outputs_probs(m);
}
static void dl__meter_reset(dl__meter *mt) {
    int c;
    mt->loss_sum = mt->sq_sum = mt->abs_sum = mt->n_values = 0;
    mt->n = mt->correct = mt->topk = 0;
    for (c = 0; c < mt->classes * 3; c++) mt->tp[c] = 0;
}
static void dl__meter_free(dl__meter *mt) { DL_FREE(mt->tp); mt->tp = NULL; }

/* The label of sample i: a class index, or a value for binary/regression targets. */
static int dl__meter_add(dl__meter *mt, dl_tensor *out, dl_tensor *y, double loss) {
    const float *o;
    int b, c, C, i, k, binary;
    if (!out || out->dtype != DL_F32) return -1;
    b = out->shape[0];
    mt->loss_sum += loss * b;
    mt->n += b;
    if (!mt->metrics || !y) return 0;
    if (!(o = dl_contig_f32(out))) return -1;
    C = (int)(out->numel / (size_t)b);
    binary = C == 1 || mt->loss == DL_LOSS_BINARY_CE;
    if ((mt->metrics & (DL_METRIC_PRECISION | DL_METRIC_RECALL)) && !mt->tp) {
        mt->classes = binary ? 1 : C;
        mt->tp = (double *)DL_MALLOC(sizeof(double) * 3 * (size_t)mt->classes);
        if (!mt->tp) { dl_set_error("dl_fit: out of memory"); return -1; }
        mt->fp = mt->tp + mt->classes;
        mt->fn = mt->fp + mt->classes;
        for (c = 0; c < 3 * mt->classes; c++) mt->tp[c] = 0;
    }
    for (i = 0; i < b; i++) {
        const float *row = o + (size_t)i * (size_t)C;
        double target;
        int label, pred;
        size_t yi = (size_t)i * (y->numel / (size_t)b);
        if (y->dtype == DL_I32) target = ((const int32_t *)y->data)[yi];
        else if (mt->loss == DL_LOSS_CATEGORICAL_CE) {   /* one-hot targets: the argmax */
            const float *t = (const float *)y->data + yi;
            for (k = 1, target = 0; k < C; k++) if (t[k] > t[(int)target]) target = k;
        } else target = ((const float *)y->data)[yi];
        if (binary) {
            double p = mt->probs || (mt->loss != DL_LOSS_BINARY_CE) ? row[0] : 1.0 / (1.0 + exp(-row[0]));
            pred = p > 0.5;
            label = target > 0.5;
        } else {
            for (k = 1, pred = 0; k < C; k++) if (row[k] > row[pred]) pred = k;
            label = (int)target;
        }
        if (mt->metrics & DL_METRIC_ACCURACY) mt->correct += pred == label;
        if ((mt->metrics & DL_METRIC_TOP_K) && !binary && label >= 0 && label < C) {
            int above = 0;   /* ties count as in the top k, as tf.math.in_top_k */
            for (k = 0; k < C; k++) above += row[k] > row[label];
            mt->topk += above < mt->top_k;
        }
        if (mt->tp) {
            if (binary) { mt->tp[0] += pred && label; mt->fp[0] += pred && !label; mt->fn[0] += !pred && label; }
            else if (label >= 0 && label < C) {
                if (pred == label) mt->tp[pred] += 1;
                else { mt->fp[pred] += 1; mt->fn[label] += 1; }
            }
        }
        if (mt->metrics & (DL_METRIC_MSE | DL_METRIC_MAE)) {
            if (C == 1 || (y->dtype == DL_F32 && y->numel == out->numel)) {
                const float *t = y->dtype == DL_F32 ? (const float *)y->data + yi : NULL;
                for (k = 0; k < C; k++) {
                    double d = row[k] - (t ? t[k] : target);
                    mt->sq_sum += d * d;
                    mt->abs_sum += fabs(d);
                }
                mt->n_values += C;
            }
        }
    }
    return 0;
}

static double dl__ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

/* Fills names/values (loss first) in logs order; returns how many. */
static int dl__meter_read(const dl__meter *mt, const char **names, double *values) {
    int n = 0, j, c;
    names[n] = "loss";
    values[n++] = dl__ratio(mt->loss_sum, (double)mt->n);
    for (j = 0; j < DL_MAX_METRICS; j++) {
        double v = 0;
        if (!(mt->metrics & (1u << j))) continue;
        switch (1u << j) {
        case DL_METRIC_ACCURACY: v = dl__ratio((double)mt->correct, (double)mt->n); break;
        case DL_METRIC_TOP_K: v = dl__ratio((double)mt->topk, (double)mt->n); break;
        case DL_METRIC_PRECISION: case DL_METRIC_RECALL:
            for (c = 0; c < mt->classes; c++)
                v += dl__ratio(mt->tp[c], mt->tp[c] + ((1u << j) == DL_METRIC_PRECISION ? mt->fp[c] : mt->fn[c]));
            v = dl__ratio(v, mt->classes);
            break;
        case DL_METRIC_MSE: v = dl__ratio(mt->sq_sum, mt->n_values); break;
        case DL_METRIC_MAE: v = dl__ratio(mt->abs_sum, mt->n_values); break;
        }
        names[n] = dl__metric_names[j];
        values[n++] = v;
    }
    return n;
}

DLDEF double dl_logs_get(const dl_logs *logs, const char *name) {
    int i, val;
    if (!logs || !name) return NAN;
    val = strncmp(name, "val_", 4) == 0;
    if (val && !logs->has_val) return NAN;
    for (i = 0; i < logs->n; i++)
        if (strcmp(logs->names[i], name + (val ? 4 : 0)) == 0) return val ? logs->val_values[i] : logs->values[i];
    if (strcmp(name, "lr") == 0) return logs->lr;
    return NAN;
}

DLDEF double dl_history_get(const dl_history *h, const char *name, int epoch) {
    int i;
    if (!h || !name || epoch < 0 || epoch >= h->epochs) return NAN;
    for (i = 0; i < h->n; i++)
        if (strcmp(h->names[i], name) == 0) return h->values[(size_t)epoch * (size_t)h->n + (size_t)i];
    return NAN;
}

/* ---- One training step ---- */

static int dl__bind_optimizer(dl_model *m) {
    dl_tensor *w[256] = {NULL}, **ws = w;
    int n, r;
    if (m->opt_bound) return 0;
    n = dl_model_weights(m, 1, NULL, 0);
    if (n > 256 && !(ws = (dl_tensor **)DL_MALLOC((size_t)n * sizeof *ws))) { dl_set_error("dl_fit: out of memory"); return -1; }
    dl_model_weights(m, 1, ws, n);
    r = dl_optim_add_params(m->opt, n, ws);
    if (ws != w) DL_FREE(ws);
    if (r != 0) return -1;
    m->opt_bound = 1;
    return 0;
}

/* forward, loss, backward, update; the output goes to *out for the metrics */
static double dl__train_step(dl_model *m, dl_tensor *x, dl_tensor *y, dl_tensor **out) {
    dl_tensor *o, *loss;
    double v;
    if (!m->compiled) { dl_set_error("dl_fit: compile the model first (dl_compile)"); return NAN; }
    if (!m->built || !m->opt_bound) {   /* the first batch builds the weights, then the optimizer gets them */
        int grad = dl_no_grad(1);
        o = dl_model_call(m, x, 0);
        dl_no_grad(grad);
        if (!o || dl__bind_optimizer(m) != 0) return NAN;
    }
    dl_optim_zero_grad(m->opt);
    o = dl_model_call(m, x, 1);
    loss = dl_model_loss(m, o, y);
    if (!loss) return NAN;
    v = dl_item(loss);
    if (dl_backward(loss) != 0 || dl_optim_step(m->opt) != 0) return NAN;
    if (out) *out = o;
    return v;
}

DLDEF double dl_train_on_batch(dl_model *m, dl_tensor *x, dl_tensor *y) {
    if (!m) { dl_set_error("dl_train_on_batch: NULL model"); return NAN; }
    return dl__train_step(m, x, y, NULL);
}

/* ---- Progress output, Keras style ---- */

static void dl__fmt_time(char *s, size_t size, double sec) {
    if (sec >= 3600) snprintf(s, size, "%d:%02d:%02d", (int)(sec / 3600), (int)(sec / 60) % 60, (int)sec % 60);
    else if (sec >= 60) snprintf(s, size, "%d:%02d", (int)(sec / 60), (int)sec % 60);
    else snprintf(s, size, "%ds", (int)sec);
}

static void dl__print_per_step(double sec) {   /* Keras: "2s/step", "35ms/step" or "512us/step" */
    if (sec >= 1) printf("%.0fs/step", sec);
    else if (sec >= 1e-3) printf("%.0fms/step", sec * 1e3);
    else printf("%.0fus/step", sec * 1e6);
}

static void dl__print_values(const dl_logs *lg) {
    int i;
    for (i = 0; i < lg->n; i++) printf(" - %s: %.4f", lg->names[i], lg->values[i]);
    if (lg->has_val)
        for (i = 0; i < lg->n; i++) printf(" - val_%s: %.4f", lg->names[i], lg->val_values[i]);
}

/* The bar: "  32/1875 [>.....] - ETA: 30s - loss: 0.61 - accuracy: 0.78" (carriage return) */
static void dl__print_bar(const dl_logs *lg, int done) {
    char t[32];
    int i, width = 30, filled = lg->batches ? (int)((double)width * (lg->batch + 1) / lg->batches) : width;
    int digits = snprintf(t, sizeof t, "%d", lg->batches);
    printf("\r%*d/%d [", digits, lg->batch + 1, lg->batches);
    for (i = 0; i < width; i++) putchar(i < filled - 1 || (done && i < filled) ? '=' : i == filled - 1 ? '>' : '.');
    printf("]");
    if (done) {
        dl__fmt_time(t, sizeof t, lg->seconds);
        printf(" - %s ", t);
        dl__print_per_step(lg->seconds / (lg->batches ? lg->batches : 1));
    } else {
        dl__fmt_time(t, sizeof t, lg->seconds / (lg->batch + 1) * (lg->batches - lg->batch - 1));
        printf(" - ETA: %s", t);
    }
    dl__print_values(lg);
    printf("\033[K%s", done ? "\n" : "");   /* clear what a longer earlier line left */
    fflush(stdout);
}

static int dl__stdout_is_terminal(void) {
#if !defined(_WIN32)
    return isatty(1);
#else
    return 0;
#endif
}

/* ---- evaluate / predict ---- */

static int dl__evaluate(dl_model *m, const dl_dataset *ds, int batch_size, dl__meter *mt) {
    dl_batcher *b;
    dl_tensor *x, *y, *out, *loss;
    dl_arena *arena = dl_arena_current();
    int r, grad = dl_no_grad(1), ok = 0;
    dl__meter_reset(mt);
    if (!(b = dl_batcher_new(ds, batch_size, NULL))) { dl_no_grad(grad); return -1; }
    for (;;) {
        dl_arena_reset(arena);
        r = dl_batcher_next(b, &x, &y);
        if (r <= 0) { ok = r == 0; break; }
        out = dl_model_call(m, x, 0);
        loss = dl_model_loss(m, out, y);
        if (!loss || dl__meter_add(mt, out, y, dl_item(loss)) != 0) break;
    }
    dl_batcher_free(b);
    dl_no_grad(grad);
    return ok ? 0 : -1;
}

DLDEF int dl_evaluate(dl_model *m, const dl_dataset *ds, int batch_size, dl_logs *logs) {
    dl__meter mt;
    int r;
    if (!m || !ds || !logs) { dl_set_error("dl_evaluate: NULL argument"); return -1; }
    if (!m->compiled) { dl_set_error("dl_evaluate: compile the model first (dl_compile)"); return -1; }
    memset(logs, 0, sizeof *logs);
    dl__meter_init(&mt, m);
    r = dl__evaluate(m, ds, batch_size > 0 ? batch_size : 32, &mt);
    if (r == 0) logs->n = dl__meter_read(&mt, logs->names, logs->values);
    dl__meter_free(&mt);
    return r;
}

DLDEF dl_tensor *dl_predict(dl_model *m, const dl_tensor *x, int batch_size) {
    dl_tensor *res = NULL;
    dl_arena *arena = dl_arena_current();
    int n, start, grad, shape[DL_MAX_DIMS], i;
    if (!m || !x) { dl_set_error("dl_predict: NULL argument"); return NULL; }
    if (x->ndim < 1 || x->device != DL_CPU) { dl_set_error("dl_predict: x needs a batch axis"); return NULL; }
    if (batch_size <= 0) batch_size = 32;
    n = x->shape[0];
    grad = dl_no_grad(1);
    for (start = 0; start < n; start += batch_size) {
        int stop = start + batch_size < n ? start + batch_size : n;
        dl_tensor *xb, *out;
        dl_arena_reset(arena);
        xb = dl_slice((dl_tensor *)x, 0, start, stop, 1);   /* a view: read only */
        if (!(out = dl_contiguous(dl_model_call(m, xb, 0)))) break;
        if (!res) {
            shape[0] = n;
            for (i = 1; i < out->ndim; i++) shape[i] = out->shape[i];
            if (!(res = dl_tensor_new(out->dtype, out->ndim, shape))) break;
        }
        memcpy((char *)res->data + (size_t)start * (res->numel / (size_t)n) * dl_dtype_size(res->dtype), out->data,
               out->numel * dl_dtype_size(out->dtype));
    }
    dl_no_grad(grad);
    if (start < n) { dl_tensor_free(res); return NULL; }
    if (!res) dl_set_error("dl_predict: no samples");
    return res;
}

/* ---- fit ---- */

static int dl__history_add(dl_history *h, const dl_logs *lg) {
    int i, n = lg->n * (lg->has_val ? 2 : 1);
    double *v;
    if (h->epochs == 0) {
        h->n = n;
        for (i = 0; i < lg->n; i++) h->names[i] = lg->names[i];
        for (i = 0; lg->has_val && i < lg->n; i++) {
            static const char *const val_names[1 + DL_MAX_METRICS] = {"val_loss", "val_accuracy", "val_top_k_accuracy",
                "val_precision", "val_recall", "val_mse", "val_mae"};
            int j;
            h->names[lg->n + i] = "val_?";
            if (strcmp(lg->names[i], "loss") == 0) h->names[lg->n + i] = val_names[0];
            for (j = 0; j < DL_MAX_METRICS; j++)
                if (strcmp(lg->names[i], dl__metric_names[j]) == 0) h->names[lg->n + i] = val_names[1 + j];
        }
    }
    v = (double *)DL_REALLOC(h->values, (size_t)(h->epochs + 1) * (size_t)h->n * sizeof *v);
    if (!v) { dl_set_error("dl_fit: out of memory"); return -1; }
    h->values = v;
    v += (size_t)h->epochs * (size_t)h->n;
    for (i = 0; i < lg->n; i++) v[i] = lg->values[i];
    for (i = 0; lg->has_val && i < lg->n && lg->n + i < h->n; i++) v[lg->n + i] = lg->val_values[i];
    h->epochs++;
    return 0;
}

DLDEF const dl_history *dl_fit(dl_model *m, const dl_dataset *ds, const dl_fit_opts *opts) {
    dl_fit_opts o;
    dl_dataset *train_part = NULL, *val_part = NULL;
    const dl_dataset *train, *val;
    dl_batcher *b = NULL;
    dl_batch_opts bo;
    dl__meter mt, vmt;
    dl_logs lg;
    dl_arena *arena = dl_arena_current();
    int epoch, i, style, ok = 0, r;
    double t0;
    if (!m || !ds) { dl_set_error("dl_fit: NULL model or data set"); return NULL; }
    if (!m->compiled) { dl_set_error("dl_fit: compile the model first (dl_compile)"); return NULL; }
    if (opts) o = *opts; else memset(&o, 0, sizeof o);
    if (o.epochs <= 0) o.epochs = 1;
    if (o.batch_size <= 0) o.batch_size = 32;
    if (o.n_callbacks < 0 || (o.n_callbacks > 0 && !o.callbacks)) { dl_set_error("dl_fit: bad callback list"); return NULL; }
    if (!(o.validation_split >= 0.0f && o.validation_split < 1.0f)) {
        dl_set_error("dl_fit: validation_split %g must be in [0, 1)", (double)o.validation_split);
        return NULL;
    }
    if (!ds->x || ds->n <= 0) { dl_set_error("dl_fit: empty data set"); return NULL; }
    train = ds;
    val = o.validation_data;
    if (!val && o.validation_split > 0.0f) {   /* Keras: the last samples, before any shuffling */
        int nv = (int)((double)o.validation_split * ds->n), nt = ds->n - nv, *idx;
        if (nv < 1 || nt < 1) { dl_set_error("dl_fit: validation_split leaves an empty part"); return NULL; }
        if (!(idx = (int *)DL_MALLOC((size_t)ds->n * sizeof *idx))) { dl_set_error("dl_fit: out of memory"); return NULL; }
        for (i = 0; i < ds->n; i++) idx[i] = i;
        train_part = dl_dataset_subset(ds, idx, nt);
        val_part = dl_dataset_subset(ds, idx + nt, nv);
        DL_FREE(idx);
        if (!train_part || !val_part) { dl_dataset_free(train_part); dl_dataset_free(val_part); return NULL; }
        train = train_part;
        val = val_part;
    }
    memset(&bo, 0, sizeof bo);
    bo.shuffle = !o.no_shuffle;
    bo.seed = o.seed;
    style = o.verbose == 0 ? (dl__stdout_is_terminal() ? 1 : 2) : o.verbose;
    dl__meter_init(&mt, m);
    dl__meter_init(&vmt, m);
    DL_FREE(m->history.values);
    memset(&m->history, 0, sizeof m->history);
    m->stop = 0;
    if (!(b = dl_batcher_new(train, o.batch_size, &bo))) goto done;
    for (i = 0; i < o.n_callbacks; i++)
        if (o.callbacks[i] && o.callbacks[i]->on_train_begin) o.callbacks[i]->on_train_begin(o.callbacks[i], m);
    for (epoch = o.initial_epoch; epoch < o.epochs && !m->stop; epoch++) {
        dl_tensor *x, *y, *out = NULL;
        memset(&lg, 0, sizeof lg);
        lg.epoch = epoch;
        lg.epochs = o.epochs;
        lg.batches = dl_batcher_len(b);
        dl_batcher_set_epoch(b, epoch);
        for (i = 0; i < o.n_callbacks; i++)
            if (o.callbacks[i] && o.callbacks[i]->on_epoch_begin) o.callbacks[i]->on_epoch_begin(o.callbacks[i], m, epoch);
        if (style == 1 || style == 2) printf("Epoch %d/%d\n", epoch + 1, o.epochs);
        dl__meter_reset(&mt);
        t0 = dl__now();
        for (lg.batch = 0;; lg.batch++) {
            double loss;
            dl_arena_reset(arena);
            r = dl_batcher_next(b, &x, &y);
            if (r < 0) goto done;
            if (r == 0) break;
            out = NULL;
            loss = dl__train_step(m, x, y, &out);
            if (loss != loss && !out) goto done;   /* NaN from a failure (a NaN loss itself keeps going) */
            if (dl__meter_add(&mt, out, y, loss) != 0) goto done;
            lg.n = dl__meter_read(&mt, lg.names, lg.values);
            lg.lr = dl_optim_lr(m->opt);
            lg.seconds = dl__now() - t0;
            for (i = 0; i < o.n_callbacks; i++)
                if (o.callbacks[i] && o.callbacks[i]->on_batch_end) o.callbacks[i]->on_batch_end(o.callbacks[i], m, &lg);
            if (style == 1) {
                static double last;
                double now = dl__now();
                if (now - last > 0.1 || lg.batch == 0) { dl__print_bar(&lg, 0); last = now; }
            }
        }
        lg.batch = lg.batches - 1;
        lg.n = dl__meter_read(&mt, lg.names, lg.values);
        if (val) {
            if (dl__evaluate(m, val, o.batch_size, &vmt) != 0) goto done;
            dl__meter_read(&vmt, lg.names, lg.val_values);
            lg.has_val = 1;
        }
        lg.lr = dl_optim_lr(m->opt);
        lg.seconds = dl__now() - t0;
        if (dl__history_add(&m->history, &lg) != 0) goto done;
        for (i = 0; i < o.n_callbacks; i++)
            if (o.callbacks[i] && o.callbacks[i]->on_epoch_end) o.callbacks[i]->on_epoch_end(o.callbacks[i], m, &lg);
        if (style == 1) dl__print_bar(&lg, 1);
        else if (style == 2) {
            char t[32];
            dl__fmt_time(t, sizeof t, lg.seconds);
            printf("%d/%d - %s - ", lg.batches, lg.batches, t);
            dl__print_per_step(lg.seconds / (lg.batches ? lg.batches : 1));
            dl__print_values(&lg);
            printf("\n");
            fflush(stdout);
        }
    }
    for (i = 0; i < o.n_callbacks; i++)
        if (o.callbacks[i] && o.callbacks[i]->on_train_end) o.callbacks[i]->on_train_end(o.callbacks[i], m);
    ok = 1;
done:
    dl_batcher_free(b);
    dl__meter_free(&mt);
    dl__meter_free(&vmt);
    dl_dataset_free(train_part);
    dl_dataset_free(val_part);
    dl_arena_reset(arena);
    return ok ? &m->history : NULL;
}

/* ---- Built-in callbacks ---- */

DLDEF void dl_callback_free(dl_callback *cb) {
    if (!cb) return;
    if (cb->destroy) cb->destroy(cb);
    DL_FREE(cb);
}

static dl_callback *dl__callback_new(size_t state) {
    dl_callback *cb = (dl_callback *)DL_MALLOC(sizeof *cb + state);
    if (!cb) { dl_set_error("dl_callback: out of memory"); return NULL; }
    memset(cb, 0, sizeof *cb + state);
    cb->user = cb + 1;
    return cb;
}

/* lower is better for losses and errors */
static int dl__lower_is_better(const char *monitor) {
    size_t n = strlen(monitor);
    return (n >= 4 && strcmp(monitor + n - 4, "loss") == 0) || (n >= 3 && (strcmp(monitor + n - 3, "mse") == 0 ||
                                                                          strcmp(monitor + n - 3, "mae") == 0));
}

typedef struct dl__early {
    char monitor[48];
    double min_delta, best;
    int patience, restore, wait, lower, stopped;
    int n_saved;
    dl_tensor **live, **saved;   /* the model's weights and copies from the best epoch */
} dl__early;

static void dl__early_free_saved(dl__early *e) {
    int i;
    for (i = 0; i < e->n_saved; i++) dl_tensor_free(e->saved[i]);
    DL_FREE(e->live);
    e->live = e->saved = NULL;
    e->n_saved = 0;
}
static void dl__early_begin(dl_callback *cb, dl_model *m) {
    dl__early *e = (dl__early *)cb->user;
    (void)m;
    e->wait = 0;
    e->stopped = 0;
    e->best = e->lower ? INFINITY : -INFINITY;
    dl__early_free_saved(e);
}
static void dl__early_epoch(dl_callback *cb, dl_model *m, const dl_logs *lg) {
    dl__early *e = (dl__early *)cb->user;
    double v = dl_logs_get(lg, e->monitor);
    int i, n;
    if (v != v) return;   /* not logged (yet): Keras warns and goes on */
    if (e->lower ? v < e->best - e->min_delta : v > e->best + e->min_delta) {
        e->best = v;
        e->wait = 0;
        if (!e->restore) return;
        if (!e->live) {   /* first improvement: remember which tensors, and copy them */
            n = dl_model_weights(m, 0, NULL, 0);
            if (!(e->live = (dl_tensor **)DL_MALLOC(2 * (size_t)(n ? n : 1) * sizeof *e->live))) return;
            e->saved = e->live + n;
            dl_model_weights(m, 0, e->live, n);
            for (i = 0; i < n; i++) e->saved[i] = dl_tensor_clone(e->live[i]);
            e->n_saved = n;
        } else {
            for (i = 0; i < e->n_saved; i++) dl_copy(e->saved[i], e->live[i]);
        }
        return;
    }
    if (++e->wait >= e->patience) {
        e->stopped = 1;
        dl_model_stop_training(m);
    }
}
/* Keras puts the best weights back when it stopped the training early. */
static void dl__early_end(dl_callback *cb, dl_model *m) {
    dl__early *e = (dl__early *)cb->user;
    int i;
    (void)m;
    if (!e->restore || !e->stopped) return;
    for (i = 0; i < e->n_saved; i++) if (e->saved[i]) dl_copy(e->live[i], e->saved[i]);
}
static void dl__early_destroy(dl_callback *cb) { dl__early_free_saved((dl__early *)cb->user); }

DLDEF dl_callback *dl_early_stopping(const char *monitor, double min_delta, int patience, int restore_best_weights) {
    dl_callback *cb;
    dl__early *e;
    if (!monitor || strlen(monitor) >= sizeof e->monitor || patience < 0 || !(min_delta >= 0)) {
        dl_set_error("dl_early_stopping: a monitor name, patience >= 0 and min_delta >= 0 needed");
        return NULL;
    }
    if (!(cb = dl__callback_new(sizeof(dl__early)))) return NULL;
    e = (dl__early *)cb->user;
    snprintf(e->monitor, sizeof e->monitor, "%s", monitor);
    e->min_delta = min_delta;
    e->patience = patience > 0 ? patience : 1;
    e->restore = restore_best_weights;
    e->lower = dl__lower_is_better(monitor);
    cb->on_train_begin = dl__early_begin;
    cb->on_epoch_end = dl__early_epoch;
    cb->on_train_end = dl__early_end;
    cb->destroy = dl__early_destroy;
    return cb;
}

typedef struct dl__ckpt {
    char path[512], monitor[48];
    int best_only, lower;
    double best;
} dl__ckpt;

static void dl__ckpt_begin(dl_callback *cb, dl_model *m) {
    dl__ckpt *c = (dl__ckpt *)cb->user;
    (void)m;
    c->best = c->lower ? INFINITY : -INFINITY;
}
static void dl__ckpt_epoch(dl_callback *cb, dl_model *m, const dl_logs *lg) {
    dl__ckpt *c = (dl__ckpt *)cb->user;
    char path[600];
    const char *pct = strstr(c->path, "%d");
    if (c->best_only) {
        double v = dl_logs_get(lg, c->monitor);
        if (v != v || !(c->lower ? v < c->best : v > c->best)) return;
        c->best = v;
    }
    if (pct) snprintf(path, sizeof path, "%.*s%d%s", (int)(pct - c->path), c->path, lg->epoch + 1, pct + 2);
    else snprintf(path, sizeof path, "%s", c->path);
#ifndef DL_NO_STDIO
    if (dl_model_save(m, path, 1) != 0) fprintf(stderr, "dl_model_checkpoint: %s\n", dl_error());
#else
    (void)m;
#endif
}

DLDEF dl_callback *dl_model_checkpoint(const char *path, const char *monitor, int save_best_only) {
    dl_callback *cb;
    dl__ckpt *c;
    if (!path || strlen(path) >= sizeof c->path || (save_best_only && (!monitor || strlen(monitor) >= sizeof c->monitor))) {
        dl_set_error("dl_model_checkpoint: a path (< 512 bytes) and, with save_best_only, a monitor needed");
        return NULL;
    }
    if (!(cb = dl__callback_new(sizeof(dl__ckpt)))) return NULL;
    c = (dl__ckpt *)cb->user;
    snprintf(c->path, sizeof c->path, "%s", path);
    snprintf(c->monitor, sizeof c->monitor, "%s", monitor ? monitor : "val_loss");
    c->best_only = save_best_only;
    c->lower = dl__lower_is_better(c->monitor);
    cb->on_train_begin = dl__ckpt_begin;
    cb->on_epoch_end = dl__ckpt_epoch;
    return cb;
}

typedef struct dl__sched { dl_lr_schedule s; int per_batch; } dl__sched;

static void dl__sched_epoch(dl_callback *cb, dl_model *m, int epoch) {
    dl__sched *s = (dl__sched *)cb->user;
    dl_optim_set_lr(m->opt, dl_lr_at(&s->s, s->per_batch ? dl_optim_steps(m->opt) : epoch));
}
static void dl__sched_batch(dl_callback *cb, dl_model *m, const dl_logs *lg) {
    dl__sched *s = (dl__sched *)cb->user;
    (void)lg;
    if (s->per_batch) dl_optim_set_lr(m->opt, dl_lr_at(&s->s, dl_optim_steps(m->opt)));
}

DLDEF dl_callback *dl_lr_scheduler(const dl_lr_schedule *schedule, int per_batch) {
    dl_callback *cb;
    if (!schedule) { dl_set_error("dl_lr_scheduler: NULL schedule"); return NULL; }
    if (!(cb = dl__callback_new(sizeof(dl__sched)))) return NULL;
    ((dl__sched *)cb->user)->s = *schedule;
    ((dl__sched *)cb->user)->per_batch = per_batch;
    cb->on_epoch_begin = dl__sched_epoch;
    cb->on_batch_end = dl__sched_batch;
    return cb;
}

#include "nn_save.h"
