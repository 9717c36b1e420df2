/* Premade estimators (dl_dnn_classifier, dl_linear_classifier, dl_linear_regressor):
   - a linear regressor recovers the coefficients of a synthetic linear data set;
   - linear classifiers separate separable sets (binary and 3 classes), a DNN classifier learns
     XOR and rings that a linear one cannot;
   - evaluate agrees with dl_evaluate on the underlying model; predict's probabilities and
     classes agree with evaluate's accuracy;
   - global_step persists: train(a) + train(b) == train(a + b), bit for bit;
   - export + dl_model_load predicts the same bits; a checkpoint resumes training exactly;
   - bad arguments give errors (and an optimizer handed to a failing constructor is freed). */
#include <stdlib.h>

#define DL_IMPLEMENTATION
#include "../dl_nn.h"
#include "test.h"

static const char *tmp_prefix = "build/tests/test_nn_estimator";   /* argv[0]: unique per build mode */

/* A data set of n samples with f features, x uniform in [-1, 1]; labels filled by the caller. */
static dl_dataset *make_ds(int n, int f, int regression, dl_rng *r) {
    dl_dataset *ds = (dl_dataset *)calloc(1, sizeof *ds);
    int i;
    ds->n = n;
    ds->x = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(n, f));
    ds->y = dl_tensor_new(regression ? DL_DTYPE_F32 : DL_DTYPE_I32, 1, DL_SHAPE(n));
    for (i = 0; i < n * f; i++) dl_f32(ds->x)[i] = 2.0f * dl_rng_uniform(r) - 1.0f;
    return ds;
}

/* y = 2 x0 - 3 x1 + 0.5 x2 + 1 + N(0, 0.01^2) */
static dl_dataset *linear_set(int n, uint64_t seed) {
    dl_rng r;
    dl_dataset *ds;
    int i;
    dl_rng_seed(&r, seed);
    ds = make_ds(n, 3, 1, &r);
    for (i = 0; i < n; i++) {
        const float *x = dl_f32(ds->x) + 3 * i;
        dl_f32(ds->y)[i] = 2.0f * x[0] - 3.0f * x[1] + 0.5f * x[2] + 1.0f + 0.01f * dl_rng_normal(&r);
    }
    return ds;
}

/* kind 0: two blobs (label = x0 + x1 > 0, with a margin); 1: three classes by angle sector;
   2: XOR (label = x0 * x1 > 0); 3: rings (radius < 0.45, < 0.8, else). */
static dl_dataset *class_set(int kind, int n, uint64_t seed) {
    dl_rng r;
    dl_dataset *ds;
    int i;
    dl_rng_seed(&r, seed);
    ds = make_ds(n, 2, 0, &r);
    ds->num_classes = kind == 1 || kind == 3 ? 3 : 2;
    for (i = 0; i < n; i++) {
        float *x = dl_f32(ds->x) + 2 * i;
        int32_t *y = dl_i32(ds->y) + i;
        if (kind == 0) {
            *y = x[0] + x[1] > 0;
            x[0] += *y ? 0.3f : -0.3f;   /* a margin */
        } else if (kind == 1) {
            double a = atan2(x[1], x[0]) + 3.14159265358979;   /* [0, 2 pi] */
            *y = (int32_t)(a / (2 * 3.14159265358979 / 3));
            if (*y > 2) *y = 2;
        } else if (kind == 2) {
            *y = x[0] * x[1] > 0;
        } else {
            double rad = sqrt(x[0] * x[0] + x[1] * x[1]);
            *y = rad < 0.45 ? 0 : rad < 0.8 ? 1 : 2;
        }
    }
    return ds;
}

static double eval_get(dl_estimator *e, const dl_dataset *ds, const char *name) {
    dl_logs lg;
    if (dl_estimator_evaluate(e, ds, &lg) != 0) { printf("    evaluate: %s\n", dl_error()); return NAN; }
    return dl_logs_get(&lg, name);
}

static void test_linear_regressor_recovers_coefficients(void) {
    dl_dataset *train = linear_set(512, 1), *test = linear_set(256, 2);
    dl_estimator *e = dl_linear_regressor(3, &(dl_estimator_opts){.seed = 3});
    dl_model *m;
    dl_layer *logits;
    const float *w, *b;
    dl_logs lg;
    CHECK(e != NULL, "%s", dl_error());
    if (!e) goto done;
    CHECK(dl_estimator_global_step(e) == 0, "fresh");
    CHECK(dl_estimator_train(e, train, 3000) == 0, "%s", dl_error());
    CHECK(dl_estimator_global_step(e) == 3000, "global_step %ld", dl_estimator_global_step(e));
    m = dl_estimator_model(e);
    logits = dl_model_find_layer(m, "logits");
    CHECK(logits != NULL, "a layer named logits");
    if (!logits) goto done;
    w = dl_f32(dl_layer_weight(logits, "kernel"));
    b = dl_f32(dl_layer_weight(logits, "bias"));
    CHECK(fabs(w[0] - 2.0) < 0.02 && fabs(w[1] + 3.0) < 0.02 && fabs(w[2] - 0.5) < 0.02 && fabs(b[0] - 1.0) < 0.02,
          "coefficients %g %g %g, bias %g (want 2 -3 0.5, 1)", w[0], w[1], w[2], b[0]);
    CHECK(dl_estimator_evaluate(e, test, &lg) == 0, "%s", dl_error());
    CHECK(dl_logs_get(&lg, "average_loss") < 1e-3, "test mse %g", dl_logs_get(&lg, "average_loss"));
    CHECK(dl_logs_get(&lg, "loss") == dl_logs_get(&lg, "average_loss"), "loss = average_loss");
    CHECK_NEAR(dl_logs_get(&lg, "prediction/mean"), dl_logs_get(&lg, "label/mean"), 0.01);
    CHECK(dl_logs_get(&lg, "global_step") == 3000, "global_step in the logs");
    CHECK(dl_logs_get(&lg, "accuracy") != dl_logs_get(&lg, "accuracy"), "no accuracy for a regressor");
    CHECK(lg.n == 5, "5 values, got %d", lg.n);
    CHECK(dl_estimator_predict_classes(e, test->x) == NULL, "no classes for a regressor");
done:
    dl_estimator_free(e);
    dl_dataset_free(train);
    dl_dataset_free(test);
}

static void test_linear_classifiers(void) {
    dl_dataset *tr2 = class_set(0, 600, 10), *te2 = class_set(0, 300, 11);
    dl_dataset *tr3 = class_set(1, 600, 12), *te3 = class_set(1, 300, 13);
    dl_estimator *bin = dl_linear_classifier(2, NULL), *multi = dl_linear_classifier(2, &(dl_estimator_opts){.n_classes = 3});
    dl_logs lg;
    CHECK(bin && multi, "%s", dl_error());
    if (!bin || !multi) goto done;
    CHECK(dl_estimator_train(bin, tr2, 400) == 0, "%s", dl_error());
    CHECK(dl_estimator_evaluate(bin, te2, &lg) == 0, "%s", dl_error());
    CHECK(lg.n == 7, "binary: 7 values, got %d", lg.n);
    CHECK(dl_logs_get(&lg, "accuracy") >= 0.98, "binary accuracy %g", dl_logs_get(&lg, "accuracy"));
    CHECK(dl_logs_get(&lg, "auc") >= 0.995, "auc %g", dl_logs_get(&lg, "auc"));
    CHECK(dl_logs_get(&lg, "precision") >= 0.95 && dl_logs_get(&lg, "recall") >= 0.95, "precision %g recall %g",
          dl_logs_get(&lg, "precision"), dl_logs_get(&lg, "recall"));
    CHECK(dl_model_find_layer(dl_estimator_model(bin), "logits") &&
          dl_layer_weight(dl_model_find_layer(dl_estimator_model(bin), "logits"), "kernel")->shape[1] == 1,
          "binary head: one logit");
    CHECK(dl_estimator_train(multi, tr3, 800) == 0, "%s", dl_error());
    CHECK(dl_estimator_evaluate(multi, te3, &lg) == 0, "%s", dl_error());
    CHECK(lg.n == 4, "multi-class: 4 values, got %d", lg.n);
    CHECK(dl_logs_get(&lg, "accuracy") >= 0.95, "3-class accuracy %g", dl_logs_get(&lg, "accuracy"));
    CHECK(dl_logs_get(&lg, "auc") != dl_logs_get(&lg, "auc"), "no auc for 3 classes");
done:
    dl_estimator_free(bin);
    dl_estimator_free(multi);
    dl_dataset_free(tr2); dl_dataset_free(te2);
    dl_dataset_free(tr3); dl_dataset_free(te3);
}

static void test_dnn_classifier_nonlinear(void) {
    static const int hidden[] = {16, 16};
    dl_dataset *trx = class_set(2, 800, 20), *tex = class_set(2, 400, 21);
    dl_dataset *trr = class_set(3, 800, 22), *ter = class_set(3, 400, 23);
    dl_estimator *dnn = dl_dnn_classifier(2, &(dl_estimator_opts){.hidden_units = hidden, .n_hidden = 2, .seed = 1});
    dl_estimator *rings = dl_dnn_classifier(2, &(dl_estimator_opts){.hidden_units = hidden, .n_hidden = 2, .n_classes = 3,
                                                                    .dropout = 0.1f, .seed = 2});
    dl_estimator *lin = dl_linear_classifier(2, NULL);
    double acc;
    CHECK(dnn && rings && lin, "%s", dl_error());
    if (!dnn || !rings || !lin) goto done;
    CHECK(dl_model_num_layers(dl_estimator_model(dnn)) == 4, "flatten, 2 hidden, logits");
    CHECK(dl_model_num_layers(dl_estimator_model(rings)) == 6, "flatten, 2 x (hidden, dropout), logits");
    CHECK(dl_model_find_layer(dl_estimator_model(dnn), "hiddenlayer_1") != NULL, "TF's layer names");
    CHECK(dl_estimator_train(dnn, trx, 1500) == 0, "%s", dl_error());
    CHECK(dl_estimator_train(lin, trx, 300) == 0, "%s", dl_error());
    acc = eval_get(dnn, tex, "accuracy");
    CHECK(acc >= 0.93, "DNN on XOR: accuracy %g", acc);
    acc = eval_get(lin, tex, "accuracy");
    CHECK(acc <= 0.75, "linear on XOR should fail, accuracy %g", acc);
    CHECK(dl_estimator_train(rings, trr, 1500) == 0, "%s", dl_error());
    acc = eval_get(rings, ter, "accuracy");
    CHECK(acc >= 0.85, "DNN on 3 rings: accuracy %g", acc);
done:
    dl_estimator_free(dnn);
    dl_estimator_free(rings);
    dl_estimator_free(lin);
    dl_dataset_free(trx); dl_dataset_free(tex);
    dl_dataset_free(trr); dl_dataset_free(ter);
}

/* evaluate's loss and accuracy equal dl_evaluate's on the model; predict agrees with them. */
static void test_evaluate_and_predict_agree(void) {
    static const int hidden[] = {8};
    dl_dataset *ds[3];
    dl_estimator *e[3];
    int k, i, c;
    ds[0] = class_set(2, 203, 30);   /* 203: a partial last batch */
    ds[1] = class_set(3, 203, 31);
    ds[2] = linear_set(203, 32);
    e[0] = dl_dnn_classifier(2, &(dl_estimator_opts){.hidden_units = hidden, .n_hidden = 1});
    e[1] = dl_dnn_classifier(2, &(dl_estimator_opts){.hidden_units = hidden, .n_hidden = 1, .n_classes = 3});
    e[2] = dl_linear_regressor(3, NULL);
    for (k = 0; k < 3; k++) {
        dl_logs mine, keras;
        dl_tensor *p, *cls;
        int n = ds[k]->n;
        CHECK(e[k] != NULL, "%s", dl_error());
        if (!e[k]) continue;
        CHECK(dl_estimator_train(e[k], ds[k], 50) == 0, "%s", dl_error());
        CHECK(dl_estimator_evaluate(e[k], ds[k], &mine) == 0, "%s", dl_error());
        CHECK(dl_evaluate(dl_estimator_model(e[k]), ds[k], 32, &keras) == 0, "%s", dl_error());
        CHECK_NEAR(dl_logs_get(&mine, "loss"), dl_logs_get(&keras, "loss"), 1e-5);
        if (k < 2) CHECK_NEAR(dl_logs_get(&mine, "accuracy"), dl_logs_get(&keras, "accuracy"), 1e-12);
        p = dl_estimator_predict(e[k], ds[k]->x);
        CHECK(p != NULL, "%s", dl_error());
        if (!p) continue;
        CHECK(p->ndim == 2 && p->shape[0] == n && p->shape[1] == (k == 0 ? 2 : k == 1 ? 3 : 1), "predict shape");
        if (k < 2) {
            int correct = 0, agree = 0, C = p->shape[1];
            double worst = 0;
            cls = dl_estimator_predict_classes(e[k], ds[k]->x);
            CHECK(cls && cls->dtype == DL_DTYPE_I32 && cls->shape[0] == n, "%s", dl_error());
            for (i = 0; cls && i < n; i++) {
                const float *row = dl_f32(p) + (size_t)i * C;
                double s = 0;
                int am = 0;
                for (c = 0; c < C; c++) { s += row[c]; if (row[c] > row[am]) am = c; }
                if (fabs(s - 1) > worst) worst = fabs(s - 1);
                agree += am == dl_i32(cls)[i];
                correct += dl_i32(cls)[i] == dl_i32(ds[k]->y)[i];
            }
            CHECK(worst < 1e-5, "probabilities sum to 1 (off by %g)", worst);
            CHECK(agree == n, "argmax of probabilities = predicted classes (%d of %d)", agree, n);
            CHECK_NEAR((double)correct / n, dl_logs_get(&mine, "accuracy"), 1e-12);
            dl_tensor_free(cls);
        } else {
            double mean = 0;
            for (i = 0; i < n; i++) mean += dl_f32(p)[i];
            CHECK_NEAR(mean / n, dl_logs_get(&mine, "prediction/mean"), 1e-6);
        }
        dl_tensor_free(p);
    }
    for (k = 0; k < 3; k++) { dl_estimator_free(e[k]); dl_dataset_free(ds[k]); }
}

/* train(37) + train(63) = train(100) bit for bit (the data position follows global_step), with
   dropout too; steps = 0 is one epoch. */
static void test_global_step_persists(void) {
    static const int hidden[] = {8, 8};
    dl_estimator_opts o = {0};
    dl_dataset *ds = class_set(3, 150, 40);
    dl_estimator *a, *b;
    dl_tensor *wa[16], *wb[16];
    int na, nb, i, same = 1;
    o.hidden_units = hidden;
    o.n_hidden = 2;
    o.n_classes = 3;
    o.dropout = 0.2f;
    o.batch_size = 16;
    o.seed = 7;
    a = dl_dnn_classifier(2, &o);
    b = dl_dnn_classifier(2, &o);
    CHECK(a && b, "%s", dl_error());
    if (!a || !b) goto done;
    CHECK(dl_estimator_train(a, ds, 37) == 0 && dl_estimator_train(a, ds, 63) == 0, "%s", dl_error());
    CHECK(dl_estimator_train(b, ds, 100) == 0, "%s", dl_error());
    CHECK(dl_estimator_global_step(a) == 100 && dl_estimator_global_step(b) == 100, "global steps %ld %ld",
          dl_estimator_global_step(a), dl_estimator_global_step(b));
    na = dl_model_weights(dl_estimator_model(a), 0, wa, 16);
    nb = dl_model_weights(dl_estimator_model(b), 0, wb, 16);
    CHECK(na == nb && na == 6, "weights %d %d", na, nb);
    for (i = 0; i < na && i < nb; i++) same &= memcmp(wa[i]->data, wb[i]->data, wa[i]->numel * sizeof(float)) == 0;
    CHECK(same, "train(37) + train(63) == train(100)");
    CHECK(dl_estimator_train(a, ds, 0) == 0, "%s", dl_error());
    CHECK(dl_estimator_global_step(a) == 100 + 10, "one epoch = ceil(150 / 16) = 10 steps, at %ld", dl_estimator_global_step(a));
done:
    dl_estimator_free(a);
    dl_estimator_free(b);
    dl_dataset_free(ds);
}

static int same_bits(const dl_tensor *a, const dl_tensor *b) {
    int i;
    if (!a || !b || a->ndim != b->ndim || a->numel != b->numel || a->dtype != b->dtype) return 0;
    for (i = 0; i < a->ndim; i++) if (a->shape[i] != b->shape[i]) return 0;
    return memcmp(a->data, b->data, a->numel * dl_dtype_size(a->dtype)) == 0;
}

/* export, dl_model_load, dl_predict: the same bits as dl_estimator_predict. */
static void test_export_serves(void) {
    static const int hidden[] = {8};
    char path[600];
    dl_dataset *ds[3];
    dl_estimator *e[3];
    int k;
    ds[0] = class_set(2, 100, 50);
    ds[1] = class_set(1, 100, 51);
    ds[2] = linear_set(100, 52);
    e[0] = dl_dnn_classifier(2, &(dl_estimator_opts){.hidden_units = hidden, .n_hidden = 1, .dropout = 0.5f});
    e[1] = dl_linear_classifier(2, &(dl_estimator_opts){.n_classes = 3});
    e[2] = dl_linear_regressor(3, NULL);
    snprintf(path, sizeof path, "%s.export.safetensors", tmp_prefix);
    for (k = 0; k < 3; k++) {
        dl_model *m;
        dl_tensor *want, *got;
        CHECK(e[k] != NULL, "%s", dl_error());
        if (!e[k]) continue;
        CHECK(dl_estimator_train(e[k], ds[k], 40) == 0, "%s", dl_error());
        CHECK(dl_estimator_export(e[k], path) == 0, "%s", dl_error());
        m = dl_model_load(path);
        CHECK(m != NULL, "%s", dl_error());
        if (!m) continue;
        CHECK(dl_model_optimizer(m) == NULL, "exported without optimizer, not compiled");
        want = dl_estimator_predict(e[k], ds[k]->x);
        got = dl_predict(m, ds[k]->x, 32);
        CHECK(same_bits(want, got), "estimator %d: the reloaded export predicts the same bits", k);
        dl_tensor_free(want);
        dl_tensor_free(got);
        dl_model_free(m);
    }
    remove(path);
    for (k = 0; k < 3; k++) { dl_estimator_free(e[k]); dl_dataset_free(ds[k]); }
}

/* A checkpoint resumes: (30 steps, save, new estimator from the file, 30 steps) == 60 steps. */
static void test_checkpoint_resumes(void) {
    char path[600];
    dl_dataset *ds = class_set(1, 120, 60);
    dl_estimator_opts o = {0};
    dl_estimator *a = NULL, *b = NULL, *c = NULL, *bad = NULL;
    dl_tensor *wb[4], *wc[4];
    int i, same = 1;
    snprintf(path, sizeof path, "%s.ckpt.safetensors", tmp_prefix);
    remove(path);
    o.n_classes = 3;
    o.seed = 5;
    o.checkpoint = path;
    a = dl_linear_classifier(2, &o);
    CHECK(a != NULL, "%s", dl_error());
    if (!a) goto done;
    CHECK(dl_estimator_train(a, ds, 30) == 0, "%s", dl_error());
    b = dl_linear_classifier(2, &o);   /* picks the file up */
    CHECK(b != NULL, "%s", dl_error());
    if (!b) goto done;
    CHECK(dl_estimator_global_step(b) == 30, "resumed at global_step %ld", dl_estimator_global_step(b));
    CHECK_NEAR(eval_get(b, ds, "loss"), eval_get(a, ds, "loss"), 0);
    CHECK(dl_estimator_train(b, ds, 30) == 0, "%s", dl_error());
    o.checkpoint = NULL;
    c = dl_linear_classifier(2, &o);
    CHECK(c && dl_estimator_train(c, ds, 60) == 0, "%s", dl_error());
    if (!c) goto done;
    CHECK(dl_model_weights(dl_estimator_model(b), 0, wb, 4) == 2 && dl_model_weights(dl_estimator_model(c), 0, wc, 4) == 2,
          "two weights");
    for (i = 0; i < 2; i++) same &= memcmp(wb[i]->data, wc[i]->data, wb[i]->numel * sizeof(float)) == 0;
    CHECK(same, "30 + checkpoint + 30 == 60 steps");
    /* the same file for an estimator of another shape, or another kind */
    o.checkpoint = path;
    bad = dl_linear_classifier(3, &o);
    CHECK(bad == NULL && strstr(dl_error(), "different model"), "3 features: %s", dl_error());
    dl_estimator_free(bad);
    bad = dl_linear_regressor(2, &o);
    CHECK(bad == NULL && strstr(dl_error(), "different model"), "a regressor: %s", dl_error());
    dl_estimator_free(bad);
    bad = NULL;
done:
    remove(path);
    dl_estimator_free(a);
    dl_estimator_free(b);
    dl_estimator_free(c);
    dl_dataset_free(ds);
}

static void test_bad_arguments(void) {
    static const int hidden[] = {4, 0};
    dl_dataset *ds = class_set(1, 20, 70), *reg = linear_set(20, 71), *nolabels;
    dl_estimator *e, *r;
    dl_estimator_opts o = {0};
    dl_logs lg;
    dl_tensor *x;
    /* constructors */
    CHECK(dl_linear_classifier(0, NULL) == NULL && strstr(dl_error(), "dl_linear_classifier"), "%s", dl_error());
    CHECK(dl_linear_regressor(-3, NULL) == NULL, "negative features");
    CHECK(dl_dnn_classifier(2, NULL) == NULL, "a DNN needs hidden units");
    CHECK(dl_dnn_classifier(2, &o) == NULL && strstr(dl_error(), "hidden_units"), "%s", dl_error());
    o.hidden_units = hidden; o.n_hidden = 2;
    CHECK(dl_dnn_classifier(2, &o) == NULL && strstr(dl_error(), "hidden_units[1]"), "%s", dl_error());
    o.n_hidden = 1; o.dropout = 1.0f;
    CHECK(dl_dnn_classifier(2, &o) == NULL && strstr(dl_error(), "dropout"), "%s", dl_error());
    o.dropout = 0; o.activation = (dl_act)99;
    CHECK(dl_dnn_classifier(2, &o) == NULL && strstr(dl_error(), "activation"), "%s", dl_error());
    o.activation = DL_ACT_TANH; o.n_classes = 1;
    CHECK(dl_dnn_classifier(2, &o) == NULL && strstr(dl_error(), "n_classes"), "%s", dl_error());
    o.n_classes = 0; o.batch_size = -1;
    CHECK(dl_linear_classifier(2, &o) == NULL && strstr(dl_error(), "batch_size"), "%s", dl_error());
    o.batch_size = 0; o.learning_rate = -1;
    CHECK(dl_linear_classifier(2, &o) == NULL && strstr(dl_error(), "learning_rate"), "%s", dl_error());
    o.learning_rate = 0;
    o.optimizer = dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = 1e-3, .eps = 1e-7}); /* taken over and freed (ASan checks) */
    CHECK(dl_linear_classifier(0, &o) == NULL, "freed with the failure");
    o.optimizer = NULL;
    o.checkpoint = "tests/data/handmade.safetensors";   /* exists, but is no model */
    CHECK(dl_linear_classifier(2, &o) == NULL && strstr(dl_error(), "dl_linear_classifier"), "%s", dl_error());
    o.checkpoint = NULL;
    dl_estimator_free(NULL);
    /* calls */
    e = dl_linear_classifier(2, &(dl_estimator_opts){.n_classes = 3, .optimizer = dl_sgd(0.1)});
    r = dl_linear_regressor(3, NULL);
    CHECK(e && r, "%s", dl_error());
    if (!e || !r) goto done;
    CHECK(dl_estimator_train(NULL, ds, 1) == -1, "NULL estimator");
    CHECK(dl_estimator_train(e, NULL, 1) == -1, "NULL data");
    CHECK(dl_estimator_train(e, ds, -1) == -1 && strstr(dl_error(), "steps"), "%s", dl_error());
    CHECK(dl_estimator_train(e, reg, 1) == -1 && strstr(dl_error(), "x is"), "3 features for 2: %s", dl_error());
    CHECK(dl_estimator_train(r, ds, 1) == -1, "2 features for 3");
    dl_i32(ds->y)[5] = 3;
    CHECK(dl_estimator_train(e, ds, 1) == -1 && strstr(dl_error(), "label 3 of sample 5"), "%s", dl_error());
    CHECK(dl_estimator_evaluate(e, ds, &lg) == -1, "evaluate checks labels too");
    dl_i32(ds->y)[5] = 1;
    {   /* f32 labels for a classifier; no labels */
        dl_dataset *f = linear_set(20, 72);
        f->x->shape[1] = 2;   /* shrink x to [20, 2] in place for the check (no data is read) */
        f->x->numel = 40;
        CHECK(dl_estimator_train(e, f, 1) == -1 && strstr(dl_error(), "i32"), "%s", dl_error());
        dl_dataset_free(f);
    }
    nolabels = class_set(1, 20, 73);
    dl_tensor_free(nolabels->y);
    nolabels->y = NULL;
    CHECK(dl_estimator_train(e, nolabels, 1) == -1 && strstr(dl_error(), "no labels"), "%s", dl_error());
    dl_dataset_free(nolabels);
    CHECK(dl_estimator_evaluate(e, ds, NULL) == -1, "NULL logs");
    CHECK(dl_estimator_evaluate(NULL, ds, &lg) == -1, "NULL estimator");
    CHECK(dl_estimator_predict(e, NULL) == NULL, "NULL x");
    CHECK(dl_estimator_predict(e, reg->x) == NULL && strstr(dl_error(), "dl_estimator_predict"), "%s", dl_error());
    x = dl_tensor_new(DL_DTYPE_I32, 2, DL_SHAPE(4, 2));
    CHECK(dl_estimator_predict(e, x) == NULL, "i32 x");
    dl_tensor_free(x);
    x = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(2));
    CHECK(dl_estimator_predict_classes(e, x) == NULL, "x without a batch axis");
    dl_tensor_free(x);
    x = dl_tensor_new(DL_DTYPE_F32, 3, DL_SHAPE(4, 1, 2)); /* [N, 1, 2]: flattened to 2 features */
    {
        dl_tensor *p = dl_estimator_predict(e, x);
        CHECK(p && p->shape[0] == 4 && p->shape[1] == 3, "[N, 1, 2] is flattened: %s", dl_error());
        dl_tensor_free(p);
    }
    dl_tensor_free(x);
    CHECK(dl_estimator_export(e, NULL) == -1, "NULL path");
    CHECK(dl_estimator_export(e, "/nonexistent-dir/x.safetensors") == -1 && strstr(dl_error(), "dl_estimator_export"),
          "%s", dl_error());
    CHECK(dl_estimator_global_step(NULL) == -1 && dl_estimator_model(NULL) == NULL && dl_estimator_serving_model(NULL) == NULL,
          "NULL accessors");
    /* the given SGD is used, and still trains */
    CHECK(dl_optim_type(dl_model_optimizer(dl_estimator_model(e))) == DL_OPTIM_SGD, "the given optimizer");
    CHECK(dl_estimator_train(e, ds, 3) == 0 && dl_estimator_global_step(e) == 3, "%s", dl_error());
done:
    dl_estimator_free(e);
    dl_estimator_free(r);
    dl_dataset_free(ds);
    dl_dataset_free(reg);
}

/* A NaN loss stops training with an error, as TF's NanTensorHook. */
static void test_nan_loss_stops(void) {
    dl_dataset *ds = linear_set(40, 80);
    dl_estimator *e = dl_linear_regressor(3, NULL);
    CHECK(e != NULL, "%s", dl_error());
    if (e) {
        dl_f32(ds->y)[0] = NAN;
        CHECK(dl_estimator_train(e, ds, 5) == -1 && strstr(dl_error(), "NaN loss"), "%s", dl_error());
    }
    dl_estimator_free(e);
    dl_dataset_free(ds);
}

/* The defaults: TF's optimizers and learning rates. */
static void test_defaults(void) {
    static const int hidden[] = {4};
    dl_estimator *d = dl_dnn_classifier(3, &(dl_estimator_opts){.hidden_units = hidden, .n_hidden = 1});
    dl_estimator *l = dl_linear_classifier(100, NULL), *r = dl_linear_regressor(4, &(dl_estimator_opts){.learning_rate = 0.5f});
    dl_tensor *w[4];
    CHECK(d && l && r, "%s", dl_error());
    if (d && l && r) {
        CHECK(dl_optim_type(dl_model_optimizer(dl_estimator_model(d))) == DL_OPTIM_ADAGRAD, "DNN: Adagrad");
        CHECK_NEAR(dl_optim_lr(dl_model_optimizer(dl_estimator_model(d))), 0.05, 1e-12);
        CHECK_NEAR(dl_optim_lr(dl_model_optimizer(dl_estimator_model(l))), 0.1, 1e-12);   /* 1/sqrt(100) */
        CHECK_NEAR(dl_optim_lr(dl_model_optimizer(dl_estimator_model(r))), 0.5, 1e-7);
        CHECK(dl_model_weights(dl_estimator_model(l), 0, w, 4) == 2 && dl_f32(w[0])[17] == 0.0f, "linear starts at zero");
        CHECK(dl_model_find_layer(dl_estimator_serving_model(l), "probabilities") != NULL, "serving adds probabilities");
        CHECK(dl_model_num_layers(dl_estimator_serving_model(r)) == dl_model_num_layers(dl_estimator_model(r)),
              "a regressor serves its values");
    }
    dl_estimator_free(d);
    dl_estimator_free(l);
    dl_estimator_free(r);
}

int main(int argc, char **argv) {
    (void)argc;
    if (argv[0] && strlen(argv[0]) < 500) tmp_prefix = argv[0];
    RUN(test_linear_regressor_recovers_coefficients);
    RUN(test_linear_classifiers);
    RUN(test_dnn_classifier_nonlinear);
    RUN(test_evaluate_and_predict_agree);
    RUN(test_global_step_persists);
    RUN(test_export_serves);
    RUN(test_checkpoint_resumes);
    RUN(test_bad_arguments);
    RUN(test_nan_loss_stops);
    RUN(test_defaults);
    return test_summary();
}
