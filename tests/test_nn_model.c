/* Models of dl_nn.h: Sequential, Functional and custom models computing the same bits from the
   same weights; functional graphs (two inputs, two outputs, a shared layer, a skip connection)
   against a hand computation; graph-building errors; Keras' summary text; layer naming;
   parameter counts; save/load (files and memory) predicting bit-identically, training resumed
   bit-identically from a file with its optimizer; corrupted and hostile files (errors, never a
   crash: the sanitizer pass checks that); dl_model_load_weights onto a custom model.

   Allocations are counted (live blocks), so a leak on an error path shows in the plain build too. */
#include <stdlib.h>

#include "count_alloc.h"
#define DL_IMPLEMENTATION
#include "../dl_nn.h"
#include "test.h"

static char tmp_path[512] = "test_nn_model.tmp.safetensors"; /* main() puts it next to the program */
static dl_rng g_rng;

static dl_tensor *randn_tmp(int ndim, const int *shape, float std) {
    dl_tensor *t = dl_tmp(DL_DTYPE_F32, ndim, shape);
    dl_fill_normal(t, 0.0f, std, &g_rng);
    return t;
}

/* Every weight of m set to random values (moving variances positive), so that nothing is a
   default that would hide a weight that was not copied or not loaded. */
static void randomize_weights(dl_model *m) {
    int i, j;
    for (i = 0; i < dl_model_num_layers(m); i++) {
        dl_layer *l = dl_model_layer(m, i);
        for (j = 0; j < l->n_params; j++) {
            dl_tensor *w = l->params[j];
            size_t k;
            dl_fill_normal(w, 0.0f, 0.5f, &g_rng);
            if (strcmp(l->param_names[j], "moving_variance") == 0)
                for (k = 0; k < w->numel; k++) dl_f32(w)[k] = 0.5f + fabsf(dl_f32(w)[k]);
        }
    }
}

/* dst's weights (all, in order) = src's; 0 when the lists match in count and shapes. */
static int copy_weights(dl_model *dst, const dl_model *src) {
    dl_tensor *a[64], *b[64];
    int na = dl_model_weights(dst, 0, a, 64), nb = dl_model_weights(src, 0, b, 64), i;
    if (na != nb) return -1;
    for (i = 0; i < na; i++) if (dl_copy(a[i], b[i]) != 0) return -1;
    return 0;
}

static int same_weights(const dl_model *a, const dl_model *b) {
    dl_tensor *wa[64], *wb[64];
    int na = dl_model_weights(a, 0, wa, 64), nb = dl_model_weights(b, 0, wb, 64), i;
    if (na != nb) return 0;
    for (i = 0; i < na; i++)
        if (!dl_same_shape(wa[i], wb[i]) || memcmp(dl_f32(wa[i]), dl_f32(wb[i]), wa[i]->numel * sizeof(float)) != 0) return 0;
    return 1;
}

/* the name of layer i, "" when there is none */
static const char *lname(const dl_model *m, int i) {
    const dl_layer *l = dl_model_layer(m, i);
    return l ? l->name : "";
}

static int same_bits(const dl_tensor *a, const dl_tensor *b) {
    return a && b && dl_same_shape(a, b) && a->dtype == b->dtype &&
           memcmp(dl_contig_f32(a), dl_contig_f32(b), a->numel * sizeof(float)) == 0;
}

/* ---- One architecture, three ways ---- */

enum { N_ARCH = 7 };
static void arch_layers(dl_layer **l) {
    l[0] = dl_Conv2D(4, 3, 1, DL_PADDING_SAME, DL_ACT_RELU);
    l[1] = dl_BatchNormalization(0.9f, 0.0f);
    l[2] = dl_MaxPool2D(2, 0);
    l[3] = dl_Flatten();
    l[4] = dl_Dense(8, DL_ACT_TANH);
    l[5] = dl_Dropout(0.3f);
    l[6] = dl_Dense(3, DL_ACT_LINEAR);
}

static dl_tensor *custom_forward(dl_model *m, dl_tensor *x, int training) {
    int i;
    for (i = 0; i < dl_model_num_layers(m); i++) x = dl_layer_call(dl_model_layer(m, i), x, training);
    return x;
}

static dl_model *make_functional(dl_layer **l) {
    dl_sym *in = dl_Input(3, DL_SHAPE(2, 6, 6)), *h = in;
    int i;
    for (i = 0; i < N_ARCH; i++) h = dl_apply(l[i], h);
    return dl_model_new(1, &in, 1, &h);
}

static void test_three_ways(void) {
    dl_layer *ls[N_ARCH], *lf[N_ARCH], *lc[N_ARCH];
    dl_model *seq, *fun, *cus;
    dl_tensor *x, *ys, *yf, *yc, *pred_s, *pred_f;
    int training;
    arch_layers(ls); arch_layers(lf); arch_layers(lc);
    seq = dl_sequential_n(N_ARCH, ls);
    fun = make_functional(lf);
    cus = dl_custom_model(custom_forward, NULL, N_ARCH, lc);
    CHECK(seq && fun && cus, "%s", dl_error());
    if (!seq || !fun || !cus) { dl_model_free(seq); dl_model_free(fun); dl_model_free(cus); return; }
    CHECK(dl_model_build(seq, 3, DL_SHAPE(2, 6, 6)) == 0 && dl_model_build(cus, 3, DL_SHAPE(2, 6, 6)) == 0, "%s", dl_error());
    randomize_weights(seq);
    CHECK(copy_weights(fun, seq) == 0 && copy_weights(cus, seq) == 0, "same weight lists");
    CHECK(dl_model_num_params(seq, 0) == dl_model_num_params(fun, 0) && dl_model_num_params(seq, 0) == dl_model_num_params(cus, 0),
          "same counts");
    CHECK(dl_model_num_params(seq, 0) == (4 * 2 * 9 + 4) + 4 * 4 + (36 * 8 + 8) + (8 * 3 + 3), "param count %ld",
          dl_model_num_params(seq, 0));
    for (training = 0; training < 2; training++) {
        x = randn_tmp(4, DL_SHAPE(5, 2, 6, 6), 1.0f);
        /* dropout draws from each layer's own generator: give all three the same state */
        lf[5]->rng = ls[5]->rng;
        lc[5]->rng = ls[5]->rng;
        ys = dl_model_call(seq, x, training);
        yf = dl_model_call(fun, x, training);
        yc = dl_model_call(cus, x, training);
        CHECK(ys && ys->ndim == 2 && ys->shape[0] == 5 && ys->shape[1] == 3, "output [5, 3]: %s", dl_error());
        CHECK(same_bits(ys, yf), "sequential == functional (training %d)", training);
        CHECK(same_bits(ys, yc), "sequential == custom (training %d)", training);
        CHECK(same_weights(seq, fun) && same_weights(seq, cus), "moving statistics updated alike (training %d)", training);
        dl_arena_reset(dl_arena_current());
    }
    x = dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(37, 2, 6, 6));
    dl_fill_normal(x, 0.0f, 1.0f, &g_rng);
    pred_s = dl_predict(seq, x, 8);
    pred_f = dl_predict(fun, x, 32);
    CHECK(pred_s && pred_s->shape[0] == 37 && same_bits(pred_s, pred_f), "dl_predict in batches of 8 and 32: %s", dl_error());
    { /* dl_predict's rows are the model's outputs on the same rows */
        dl_tensor *row = dl_slice(x, 0, 36, 37, 1), *y = dl_model_call(seq, row, 0);
        int k;
        CHECK(y != NULL && pred_s != NULL, "%s", dl_error());
        /* (a batch of 1 may take another GEMM path: equal to rounding, not necessarily in bits) */
        for (k = 0; y && pred_s && k < 3; k++) CHECK_NEAR(dl_f32(pred_s)[36 * 3 + k], dl_contig_f32(y)[k], 1e-5);
    }
    dl_tensor_free(pred_s); dl_tensor_free(pred_f); dl_tensor_free(x);
    dl_model_free(seq); dl_model_free(fun); dl_model_free(cus);
    dl_arena_reset(dl_arena_current());
}

/* ---- A graph with two inputs, two outputs, a shared layer and a skip connection ---- */

typedef struct graph {
    dl_model *m;
    dl_layer *shared, *head1, *head2;
} graph;

/* out1 = head1(shared(a) + shared(b) + a);  out2 = head2(concat(shared(a), shared(b))) */
static graph make_graph(void) {
    graph g;
    dl_sym *a = dl_Input(1, DL_SHAPE(4)), *b = dl_Input(1, DL_SHAPE(4)), *ha, *hb, *s, *skip, *o[2], *in[2], *pair[3];
    g.shared = dl_Dense(4, DL_ACT_TANH);
    g.head1 = dl_Dense(2, DL_ACT_LINEAR);
    g.head2 = dl_Dense(1, DL_ACT_SIGMOID);
    ha = dl_apply(g.shared, a);
    hb = dl_apply(g.shared, b);
    pair[0] = ha; pair[1] = hb; pair[2] = a;
    s = dl_apply_n(dl_Add(), 2, pair);
    pair[0] = s; pair[1] = a;
    skip = dl_apply_n(dl_Add(), 2, pair);
    o[0] = dl_apply(g.head1, skip);
    pair[0] = ha; pair[1] = hb;
    o[1] = dl_apply(g.head2, dl_apply_n(dl_Concatenate(-1), 2, pair));
    in[0] = a; in[1] = b;
    g.m = dl_model_new(2, in, 2, o);
    return g;
}

static void dense_ref(const dl_layer *l, const double *x, int in, double *y, dl_act act) {
    int o, k, units = l->params[0]->shape[1];
    for (o = 0; o < units; o++) {
        double acc = dl_f32(l->params[1])[o];
        for (k = 0; k < in; k++) acc += x[k] * dl_f32(l->params[0])[k * units + o];
        y[o] = act == DL_ACT_TANH ? tanh(acc) : act == DL_ACT_SIGMOID ? 1.0 / (1.0 + exp(-acc)) : acc;
    }
}

typedef struct gcall { dl_model *m; } gcall;
static dl_tensor *f_graph(dl_tensor **in, void *user) {
    dl_tensor *out[2];
    if (dl_model_call_n(((gcall *)user)->m, 2, in, 2, out, 1) != 0) return NULL;
    return dl_concat(2, out, 1);
}

static void test_functional_graph(void) {
    graph g = make_graph();
    dl_tensor *a, *b, *in[2], *out[2], *check[16];
    int i, j, n, ok1 = 1, ok2 = 1;
    CHECK(g.m != NULL, "%s", dl_error());
    if (!g.m) { dl_sym_free_unused(); return; }
    CHECK(dl_model_num_layers(g.m) == 6, "distinct layers: shared, add, add_1, dense_1, concatenate, dense_2 (got %d)",
          dl_model_num_layers(g.m));
    CHECK(dl_model_num_params(g.m, 0) == (16 + 4) + (8 + 2) + (8 + 1), "shared weights counted once: %ld", dl_model_num_params(g.m, 0));
    CHECK(dl_model_weights(g.m, 1, NULL, 0) == 6, "6 weight tensors");
    randomize_weights(g.m);
    a = randn_tmp(2, DL_SHAPE(3, 4), 1.0f);
    b = randn_tmp(2, DL_SHAPE(3, 4), 1.0f);
    in[0] = a; in[1] = b;
    CHECK(dl_model_call_n(g.m, 2, in, 2, out, 0) == 0, "%s", dl_error());
    CHECK(out[0] && out[0]->ndim == 2 && out[0]->shape[1] == 2 && out[1] && out[1]->shape[1] == 1, "output shapes [3,2], [3,1]");
    for (i = 0; out[0] && out[1] && i < 3; i++) {
        double xa[4], xb[4], ha[4], hb[4], s[4], cat[8], o1[2], o2[1];
        for (j = 0; j < 4; j++) { xa[j] = dl_f32(a)[i * 4 + j]; xb[j] = dl_f32(b)[i * 4 + j]; }
        dense_ref(g.shared, xa, 4, ha, DL_ACT_TANH);
        dense_ref(g.shared, xb, 4, hb, DL_ACT_TANH);
        for (j = 0; j < 4; j++) { s[j] = ha[j] + hb[j] + xa[j]; cat[j] = ha[j]; cat[4 + j] = hb[j]; }
        dense_ref(g.head1, s, 4, o1, DL_ACT_LINEAR);
        dense_ref(g.head2, cat, 8, o2, DL_ACT_SIGMOID);
        for (j = 0; j < 2; j++) ok1 &= fabs(dl_contig_f32(out[0])[i * 2 + j] - o1[j]) < 1e-5;
        ok2 &= fabs(dl_contig_f32(out[1])[i] - o2[0]) < 1e-5;
    }
    CHECK(ok1 && ok2, "outputs equal the hand computation (%d %d)", ok1, ok2);
    /* gradients through both uses of the shared layer and the skip connection */
    {
        gcall c;
        dl_tensor *pa = dl_tensor_clone(a), *pb = dl_tensor_clone(b);
        c.m = g.m;
        dl_set_requires_grad(pa, 1);
        dl_set_requires_grad(pb, 1);
        check[0] = pa; check[1] = pb;
        n = 2 + dl_model_weights(g.m, 1, check + 2, 14);
        CHECK(dl_gradcheck(f_graph, &c, n, check, 1e-3f, 1e-2f) == 0, "%s", dl_error());
        dl_tensor_free(pa); dl_tensor_free(pb);
    }
    /* wrong calls */
    dl_clear_error();
    CHECK(dl_model_call(g.m, a, 0) == NULL && dl_error()[0], "one input to a two-input model");
    in[1] = randn_tmp(2, DL_SHAPE(3, 5), 1.0f);
    dl_clear_error();
    CHECK(dl_model_call_n(g.m, 2, in, 2, out, 0) != 0 && strstr(dl_error(), "input 1"), "input 1 of the wrong shape: '%s'", dl_error());
    dl_model_free(g.m);
    dl_arena_reset(dl_arena_current());
}

static void test_graph_errors(void) {
    long live0;
    dl_sym *x, *y, *z, *pair[2], *other;
    dl_model *m;
    dl_sym_free_unused();
    dl_threads_shutdown();
    live0 = test_live;
    x = dl_Input(1, DL_SHAPE(5));
    y = dl_apply(dl_Dense(3, DL_ACT_RELU), x);
    CHECK(y != NULL, "%s", dl_error());
    dl_clear_error();
    z = dl_apply(dl_Conv2D(2, 3, 1, DL_PADDING_SAME, DL_ACT_LINEAR), y);
    CHECK(z == NULL && strstr(dl_error(), "conv2d"), "Conv2D on [None, 3] fails at dl_apply: '%s'", dl_error());
    pair[0] = x; pair[1] = y;
    dl_clear_error();
    CHECK(dl_apply_n(dl_Add(), 2, pair) == NULL && dl_error()[0], "Add of (None, 5) and (None, 3) fails at dl_apply");
    dl_clear_error();
    CHECK(dl_apply(dl_Dense(2, DL_ACT_LINEAR), NULL) == NULL, "dl_apply on NULL (an earlier failure) is NULL");
    dl_clear_error();
    CHECK(dl_Input(2, DL_SHAPE(3, 0)) == NULL && dl_error()[0], "dl_Input with a zero axis");
    other = dl_Input(1, DL_SHAPE(5));
    pair[0] = y; pair[1] = dl_apply(dl_Dense(3, DL_ACT_RELU), other);
    z = dl_apply_n(dl_Add(), 2, pair);
    CHECK(z != NULL, "%s", dl_error());
    dl_clear_error();
    m = dl_model_new(1, &x, 1, &z);
    CHECK(m == NULL && strstr(dl_error(), "input"), "an output that needs an unlisted input: '%s'", dl_error());
    dl_clear_error();
    CHECK(dl_model_new(1, &y, 1, &z) == NULL && dl_error()[0], "inputs that are not dl_Input");
    dl_sym_free_unused();
    dl_threads_shutdown();
    CHECK(test_live == live0, "dl_sym_free_unused frees abandoned graphs and their layers, also those whose dl_apply failed (%ld blocks left)", test_live - live0);
    {   /* an abandoned graph's layer that a model holds stays alive */
        dl_layer *shared = dl_Dense(2, DL_ACT_LINEAR);
        dl_sym *i1 = dl_Input(1, DL_SHAPE(3)), *o1 = dl_apply(shared, i1), *i2 = dl_Input(1, DL_SHAPE(3));
        dl_sym *o2 = dl_apply(shared, i2);
        dl_model *m1 = dl_model_new(1, &i1, 1, &o1);
        (void)o2;
        dl_sym_free_unused();
        CHECK(m1 && dl_model_find_layer(m1, "dense") == shared && dl_model_build(m1, 1, DL_SHAPE(3)) == 0, "the model keeps it");
        CHECK(m1 && dl_model_num_params(m1, 0) == 8, "and its weights");
        dl_model_free(m1);
    }
    dl_arena_reset(dl_arena_current());
}

/* ---- summary, naming, counts ---- */

static dl_model *mnist_mlp(void) {
    return dl_sequential(dl_Flatten(), dl_Dense(128, DL_ACT_RELU), dl_Dropout(0.2f), dl_Dense(10, DL_ACT_LINEAR));
}

static void test_summary_and_names(void) {
    dl_model *m = mnist_mlp();
    char buf[4096], small[40];
    size_t n;
    CHECK(m != NULL, "%s", dl_error());
    if (!m) return;
    dl_clear_error();
    CHECK(dl_model_summary(m, buf, sizeof buf) == 0 && strstr(dl_error(), "build"), "not built yet: '%s'", dl_error());
    CHECK(dl_model_build(m, 2, DL_SHAPE(28, 28)) == 0, "%s", dl_error());
    n = dl_model_summary(m, buf, sizeof buf);
    CHECK(n > 0 && n == strlen(buf), "returns the length %zu (strlen %zu)", n, strlen(buf));
    CHECK(strncmp(buf, "Model: \"sequential\"\n", 20) == 0, "first line: %.30s", buf);
    CHECK(strstr(buf, "\n Layer (type)                Output Shape              Param #") != NULL, "Keras' header line:\n%s", buf);
    CHECK(strstr(buf, "\n flatten (Flatten)           (None, 784)               0") != NULL, "the flatten row");
    CHECK(strstr(buf, "\n dense (Dense)               (None, 128)               100480") != NULL, "the dense row");
    CHECK(strstr(buf, "\n dropout (Dropout)           (None, 128)               0") != NULL, "the dropout row");
    CHECK(strstr(buf, "\n dense_1 (Dense)             (None, 10)                1290") != NULL, "the dense_1 row");
    CHECK(strstr(buf, "\nTotal params: 101,770\n") != NULL, "Total params: 101,770");
    CHECK(strstr(buf, "\nTrainable params: 101,770\n") != NULL && strstr(buf, "\nNon-trainable params: 0\n") != NULL, "trainable split");
    CHECK(strstr(buf, "=================================================================\n") != NULL, "65-wide rules");
    CHECK(dl_model_summary(m, small, sizeof small) == n && strlen(small) == sizeof small - 1 && strncmp(small, buf, sizeof small - 1) == 0,
          "snprintf semantics when truncated");
    CHECK(dl_model_summary(m, NULL, 0) == n, "size query");
    CHECK(dl_model_num_params(m, 0) == 101770 && dl_model_num_params(m, 1) == 101770, "count");
    CHECK(strcmp(lname(m, 1), "dense") == 0 && strcmp(lname(m, 3), "dense_1") == 0, "names dense, dense_1");
    CHECK(dl_model_find_layer(m, "dense_1") == dl_model_layer(m, 3) && dl_model_find_layer(m, "dense_2") == NULL, "get_layer");
    CHECK(dl_sequential_add(m, dl_Dense(5, DL_ACT_SOFTMAX)) == 0 && strcmp(lname(m, 4), "dense_2") == 0, "model.add: dense_2");
    CHECK(dl_model_num_params(m, 0) == 101770 + 55, "the added layer is built at once: %ld", dl_model_num_params(m, 0));
    CHECK(dl_sequential_add(m, dl_model_layer(m, 4)) != 0, "a layer twice is an error");
    dl_model_free(m);

    { /* non-trainable: BatchNormalization statistics and a frozen layer */
        dl_model *b = dl_sequential(dl_Dense(4, DL_ACT_RELU), dl_BatchNormalization(0, 0), dl_Dense(2, DL_ACT_LINEAR));
        CHECK(b && dl_model_build(b, 1, DL_SHAPE(3)) == 0, "%s", dl_error());
        if (b) {
            CHECK(dl_model_num_params(b, 0) == 16 + 16 + 10 && dl_model_num_params(b, 1) == 16 + 8 + 10, "BN: %ld / %ld",
                  dl_model_num_params(b, 0), dl_model_num_params(b, 1));
            dl_model_summary(b, buf, sizeof buf);
            CHECK(strstr(buf, "Total params: 42\nTrainable params: 34\nNon-trainable params: 8\n") != NULL, "summary counts:\n%s", buf);
            CHECK(strstr(buf, " batch_normalization (BatchNormalization) (None, 4)") || strstr(buf, " batch_normalization (BatchN"),
                  "a long layer name is shown");
            dl_model_layer(b, 0)->trainable = 0;
            CHECK(dl_model_num_params(b, 1) == 8 + 10, "frozen dense: %ld", dl_model_num_params(b, 1));
            CHECK(dl_model_weights(b, 1, NULL, 0) == 4, "trainable weight tensors: gamma, beta, kernel, bias");
        }
        dl_model_free(b);
    }
    { /* functional summary: Connected to */
        graph g = make_graph();
        CHECK(g.m != NULL, "%s", dl_error());
        if (g.m) {
            n = dl_model_summary(g.m, buf, sizeof buf);
            CHECK(n > 0 && strstr(buf, "Connected to") && strstr(buf, "Total params: 39\n"), "functional summary:\n%s", buf);
            CHECK(strstr(buf, "'input_1[0][0]', 'input_2[0][0]'") != NULL, "the shared dense lists both inputs:\n%s", buf);
        }
        dl_model_free(g.m);
    }
}

/* ---- save / load ---- */

static dl_model *bn_model(void) {
    return dl_sequential(dl_Conv2D(3, 3, 2, DL_PADDING_SAME, DL_ACT_RELU), dl_BatchNormalization(0.8f, 1e-3f), dl_Flatten(),
                         dl_Dense(5, DL_ACT_TANH), dl_Dense(2, DL_ACT_LINEAR));
}

static void train_steps(dl_model *m, int steps, uint64_t seed) {
    dl_rng r;
    int s, i;
    dl_rng_seed(&r, seed);
    for (s = 0; s < steps; s++) {
        dl_tensor *x = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(6, 1, 5, 5)), *y = dl_tmp(DL_DTYPE_I32, 1, DL_SHAPE(6));
        double loss;
        dl_fill_normal(x, 0.5f, 1.0f, &r);
        for (i = 0; i < 6; i++) dl_i32(y)[i] = dl_rng_int(&r, 2);
        loss = dl_train_on_batch(m, x, y);
        CHECK(loss == loss, "train_on_batch: %s", dl_error());
        dl_arena_reset(dl_arena_current());
    }
}

static int predicts_same(dl_model *a, dl_model *b, int ndim, const int *shape) {
    dl_tensor *x = dl_tensor_new(DL_DTYPE_F32, ndim, shape), *pa, *pb;
    int ok;
    dl_fill_normal(x, 0.3f, 1.0f, &g_rng);
    pa = dl_predict(a, x, 4);
    pb = dl_predict(b, x, 4);
    ok = pa && pb && same_bits(pa, pb);
    dl_tensor_free(pa); dl_tensor_free(pb); dl_tensor_free(x);
    return ok;
}

static void test_save_load_sequential(void) {
    dl_model *m = bn_model(), *l;
    dl_tensor *mm;
    CHECK(m && dl_compile(m, dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = 1e-2, .eps = 1e-7}), DL_LOSS_SPARSE_CATEGORICAL_CE, DL_METRIC_ACCURACY) == 0, "%s", dl_error());
    if (!m) return;
    train_steps(m, 3, 1);
    mm = dl_layer_weight(dl_model_layer(m, 1), "moving_mean");
    CHECK(mm && dl_f32(mm)[0] != 0.0f, "moving statistics moved");
    CHECK(dl_model_save(m, tmp_path, 0) == 0, "%s", dl_error());
    l = dl_model_load(tmp_path);
    CHECK(l != NULL, "%s", dl_error());
    if (l) {
        CHECK(same_weights(m, l), "all weights (moving statistics too) restored");
        CHECK(predicts_same(m, l, 4, DL_SHAPE(9, 1, 5, 5)), "bit-identical predictions");
        CHECK(dl_model_num_layers(l) == 5 && strcmp(lname(l, 4), "dense_1") == 0, "names kept");
        CHECK(dl_model_optimizer(l) && strcmp(dl_optim_kind_name(dl_optim_type(dl_model_optimizer(l))), "adam") == 0,
              "compiled again with the optimizer kind");
        CHECK(dl_model_layer(l, 1)->trainable == 1, "trainable flag");
    }
    dl_model_free(l);
    /* a frozen layer stays frozen */
    dl_model_layer(m, 3)->trainable = 0;
    CHECK(dl_model_save(m, tmp_path, 0) == 0, "%s", dl_error());
    l = dl_model_load(tmp_path);
    CHECK(l && dl_model_layer(l, 3)->trainable == 0 && dl_model_num_params(l, 1) == dl_model_num_params(m, 1), "frozen kept");
    dl_model_free(l);
    dl_model_free(m);
    remove(tmp_path);
}

static void test_save_load_functional(void) {
    graph g = make_graph();
    dl_model *l;
    size_t size;
    unsigned char *buf;
    CHECK(g.m != NULL, "%s", dl_error());
    if (!g.m) return;
    randomize_weights(g.m);
    size = dl_model_serialize(g.m, 1, NULL, 0);
    CHECK(size > 0, "%s", dl_error());
    buf = (unsigned char *)malloc(size);
    CHECK(dl_model_serialize(g.m, 1, buf, size) == size, "serialize writes its size");
    l = dl_model_parse(buf, size);
    CHECK(l != NULL, "%s", dl_error());
    if (l) {
        dl_tensor *a = randn_tmp(2, DL_SHAPE(3, 4), 1.0f), *b = randn_tmp(2, DL_SHAPE(3, 4), 1.0f), *in[2], *o1[2], *o2[2];
        in[0] = a; in[1] = b;
        CHECK(same_weights(g.m, l), "weights");
        CHECK(dl_model_call_n(g.m, 2, in, 2, o1, 0) == 0 && dl_model_call_n(l, 2, in, 2, o2, 0) == 0, "%s", dl_error());
        CHECK(same_bits(o1[0], o2[0]) && same_bits(o1[1], o2[1]), "two outputs bit-identical");
        CHECK(dl_model_num_layers(l) == 6 && dl_model_num_params(l, 0) == 39, "shared layer still shared (%d layers, %ld params)",
              dl_model_num_layers(l), dl_model_num_params(l, 0));
    }
    { /* the file on disk holds the same bytes */
        FILE *f;
        long len = -1;
        unsigned char *disk = NULL;
        CHECK(dl_model_save(g.m, tmp_path, 1) == 0, "%s", dl_error());
        f = fopen(tmp_path, "rb");
        if (f) {
            fseek(f, 0, SEEK_END);
            len = ftell(f);
            fseek(f, 0, SEEK_SET);
            disk = (unsigned char *)malloc((size_t)(len > 0 ? len : 1));
            if (fread(disk, 1, (size_t)len, f) != (size_t)len) len = -1;
            fclose(f);
        }
        CHECK(len == (long)size && memcmp(disk, buf, size) == 0, "dl_model_save == dl_model_serialize");
        free(disk);
        remove(tmp_path);
    }
    CHECK(dl_model_serialize(g.m, 1, buf, size - 1) == size, "too small a buffer: the size, nothing written");
    dl_model_free(l);
    dl_model_free(g.m);
    free(buf);
    dl_arena_reset(dl_arena_current());
}

/* Every built-in layer kind in one functional graph (ids -> Embedding -> ... -> softmax): trained
   two steps, saved, loaded: same settings per layer, same weights, same predictions. */
static void test_save_load_every_layer_kind(void) {
    dl_sym *ids = dl_Input_ids(1, DL_SHAPE(5)), *e, *ln, *r, *c, *g, *d, *act, *cat, *dr, *out, *pair[2];
    dl_model *m, *l;
    dl_tensor *x, *y;
    int i, j, step;
    dl_nn_seed(21);
    e = dl_apply(dl_Embedding(10, 4), ids);                                   /* [5, 4] */
    ln = dl_apply(dl_LayerNormalization(0), e);
    r = dl_apply(dl_Reshape(3, DL_SHAPE(1, 5, -1)), ln);                        /* [1, 5, 4] */
    c = dl_apply(dl_Conv2DTranspose(2, 3, 1, DL_PADDING_SAME, DL_ACT_RELU), r); /* [2, 5, 4] */
    c = dl_apply(dl_Conv2D(3, 2, 1, DL_PADDING_VALID, DL_ACT_TANH), c);         /* [3, 4, 3] */
    c = dl_apply(dl_BatchNormalization(0.9f, 0), c);
    c = dl_apply(dl_AvgPool2D(2, 1), c);                                      /* [3, 3, 2] */
    c = dl_apply(dl_MaxPool2D(2, 1), c);                                      /* [3, 2, 1] */
    g = dl_apply(dl_GlobalAvgPool2D(), c);                                    /* [3] */
    d = dl_apply(dl_Dense(3, DL_ACT_ELU), dl_apply(dl_Flatten(), ln));        /* [3] */
    pair[0] = g; pair[1] = d;
    act = dl_apply(dl_Activation(DL_ACT_SOFTPLUS), dl_apply_n(dl_Multiply(), 2, pair));
    pair[0] = act; pair[1] = g;
    cat = dl_apply_n(dl_Concatenate(-1), 2, pair);                            /* [6] */
    dr = dl_apply(dl_Dropout(0.3f), cat);
    pair[0] = dr; pair[1] = cat;
    out = dl_apply(dl_Dense(2, DL_ACT_SOFTMAX), dl_apply_n(dl_Add(), 2, pair));
    m = dl_model_new(1, &ids, 1, &out);
    CHECK(m != NULL, "%s", dl_error());
    if (!m) { dl_sym_free_unused(); return; }
    CHECK(dl_model_num_layers(m) == 17, "17 layers (%d)", dl_model_num_layers(m));
    CHECK(dl_compile(m, dl_optim_new(DL_OPTIM_RMSPROP, &(dl_optim_opts){.lr = 1e-2, .alpha = 0.9, .eps = 1e-7}), DL_LOSS_SPARSE_CATEGORICAL_CE, DL_METRIC_ACCURACY) == 0, "%s", dl_error());
    for (step = 0; step < 2; step++) {
        x = dl_tmp(DL_DTYPE_I32, 2, DL_SHAPE(6, 5));
        y = dl_tmp(DL_DTYPE_I32, 1, DL_SHAPE(6));
        for (i = 0; i < 30; i++) dl_i32(x)[i] = dl_rng_int(&g_rng, 10);
        for (i = 0; i < 6; i++) dl_i32(y)[i] = dl_rng_int(&g_rng, 2);
        {
            double loss = dl_train_on_batch(m, x, y);
            CHECK(loss == loss, "step %d: %s", step, dl_error());
        }
        dl_arena_reset(dl_arena_current());
    }
    CHECK(dl_model_save(m, tmp_path, 1) == 0, "%s", dl_error());
    l = dl_model_load(tmp_path);
    CHECK(l != NULL, "%s", dl_error());
    if (l) {
        CHECK(dl_model_num_layers(l) == dl_model_num_layers(m), "layer count");
        for (i = 0; i < dl_model_num_layers(m) && i < dl_model_num_layers(l); i++) {
            dl_layer *a = dl_model_layer(m, i), *b = dl_model_layer(l, i);
            int same = strcmp(a->name, b->name) == 0 && strcmp(a->ops->kind, b->ops->kind) == 0 && a->n_params == b->n_params;
            for (j = 0; j < DL_LAYER_MAX_CONF; j++) same &= a->iconf[j] == b->iconf[j] && a->fconf[j] == b->fconf[j];
            CHECK(same, "layer %d (%s %s) has the same kind, name and settings after loading", i, a->ops->kind, a->name);
        }
        CHECK(same_weights(m, l), "same weights (moving statistics too)");
        x = dl_tensor_new(DL_DTYPE_I32, 2, DL_SHAPE(9, 5));
        for (i = 0; i < 45; i++) dl_i32(x)[i] = dl_rng_int(&g_rng, 10);
        {
            dl_tensor *pa = dl_predict(m, x, 4), *pb = dl_predict(l, x, 4);
            CHECK(pa && pb && same_bits(pa, pb), "same predictions: %s", dl_error());
            dl_tensor_free(pa); dl_tensor_free(pb);
        }
        dl_tensor_free(x);
    }
    remove(tmp_path);
    dl_model_free(l);
    dl_model_free(m);
    dl_arena_reset(dl_arena_current());
}

/* Saved with its optimizer after 3 steps, loaded, 3 more steps == the original's 3 more steps. */
static void resume_check(int with_dropout, int plain_sgd) {
    dl_model *m, *l;
    dl_nn_seed(11);
    m = with_dropout ? dl_sequential(dl_Flatten(), dl_Dense(6, DL_ACT_RELU), dl_Dropout(0.5f), dl_Dense(2, DL_ACT_LINEAR)) : bn_model();
    CHECK(m && dl_compile(m, plain_sgd ? dl_sgd(0.05) : dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = 1e-2, .eps = 1e-7}), DL_LOSS_SPARSE_CATEGORICAL_CE, 0) == 0,
          "%s", dl_error());
    if (!m) return;
    train_steps(m, 3, 5);
    CHECK(dl_model_save(m, tmp_path, 1) == 0, "%s", dl_error());
    l = dl_model_load(tmp_path);
    CHECK(l != NULL, "%s", dl_error());
    if (l) {
        CHECK(dl_optim_steps(dl_model_optimizer(l)) == 3, "the step count is restored (%ld)", dl_optim_steps(dl_model_optimizer(l)));
        CHECK(dl_optim_lr(dl_model_optimizer(l)) == dl_optim_lr(dl_model_optimizer(m)), "lr");
        train_steps(m, 3, 6);
        train_steps(l, 3, 6);
        CHECK(same_weights(m, l), "3 more steps: bit-identical weights%s", with_dropout ? " (with Dropout)" : "");
    }
    dl_model_free(l);
    dl_model_free(m);
    remove(tmp_path);
}
static void test_resume_training(void) { resume_check(0, 0); }
static void test_resume_training_with_dropout(void) { resume_check(1, 0); }
/* plain SGD has no state tensors, but its step count (which per-batch lr schedules read) is state */
static void test_resume_training_plain_sgd(void) { resume_check(0, 1); }

/* ---- corrupted and hostile files ---- */

/* The file `good` re-serialized with changes: tensor drop_name left out, tensor swap_name
   replaced by swap, metadata key meta_key set to meta_value (or added). Caller frees. */
static unsigned char *edited(const unsigned char *good, size_t good_size, const char *drop_name, const char *swap_name,
                             dl_tensor *swap, const char *meta_key, const char *meta_value, size_t *size) {
    dl_safetensors *st = dl_safetensors_parse(good, good_size);
    const char *names[64], *keys[32], *values[32];
    dl_tensor *ts[64];
    int n = 0, nm = 0, i, have_key = 0;
    unsigned char *out = NULL;
    *size = 0;
    if (!st) return NULL;
    for (i = 0; i < dl_safetensors_num_tensors(st) && n < 64; i++) {
        const char *nm_i = dl_safetensors_name(st, i);
        if (drop_name && strcmp(nm_i, drop_name) == 0) continue;
        names[n] = nm_i;
        ts[n++] = swap_name && strcmp(nm_i, swap_name) == 0 ? swap : dl_safetensors_get(st, nm_i);
    }
    for (i = 0; i < dl_safetensors_num_meta(st) && nm < 31; i++) {
        keys[nm] = dl_safetensors_meta_key(st, i);
        values[nm] = dl_safetensors_meta(st, keys[nm]);
        if (meta_key && strcmp(keys[nm], meta_key) == 0) { values[nm] = meta_value; have_key = 1; }
        if (values[nm]) nm++;
    }
    if (meta_key && !have_key && meta_value) { keys[nm] = meta_key; values[nm++] = meta_value; }
    *size = dl_safetensors_serialize(n, names, ts, nm, keys, values, NULL, 0);
    if (*size && (out = (unsigned char *)malloc(*size)) != NULL) dl_safetensors_serialize(n, names, ts, nm, keys, values, out, *size);
    dl_safetensors_free(st);
    return out;
}

/* dl_model_parse must fail with a message containing `want` (NULL: any message). */
static void expect_parse_error(const unsigned char *bytes, size_t size, const char *want, const char *what) {
    dl_model *m;
    dl_clear_error();
    m = dl_model_parse(bytes, size);
    CHECK(m == NULL && dl_error()[0] && (!want || strstr(dl_error(), want)), "%s: '%s'", what, dl_error());
    dl_model_free(m);
}

static char *replace_once(const char *s, const char *from, const char *to) {
    const char *p = strstr(s, from);
    char *r;
    if (!p) return NULL;
    r = (char *)malloc(strlen(s) + strlen(to) + 1);
    memcpy(r, s, (size_t)(p - s));
    strcpy(r + (p - s), to);
    strcat(r, p + strlen(from));
    return r;
}

static void test_corrupt_files(void) {
    dl_model *m = bn_model(), *l;
    size_t size, cut, i, ed_size, arch_at, arch_len, failures = 0, tries = 0;
    unsigned char *good, *bad, *ed;
    const char *arch;
    dl_safetensors *st;
    long live0;
    CHECK(m && dl_compile(m, dl_optim_new(DL_OPTIM_SGD, &(dl_optim_opts){.lr = 0.1, .momentum = 0.9}), DL_LOSS_SPARSE_CATEGORICAL_CE, 0) == 0, "%s", dl_error());
    if (!m) return;
    train_steps(m, 1, 3);
    size = dl_model_serialize(m, 1, NULL, 0);
    good = (unsigned char *)malloc(size);
    bad = (unsigned char *)malloc(size);
    dl_model_serialize(m, 1, good, size);
    l = dl_model_parse(good, size);
    CHECK(l != NULL, "the good file parses: %s", dl_error());
    dl_model_free(l);
    st = dl_safetensors_parse(good, size);
    dl_threads_shutdown(); /* GEMM packing buffers grow with the shapes seen: not leaks */
    live0 = test_live;
    /* truncated anywhere */
    for (cut = 0; cut < size; cut += (cut < 600 ? 1 : 7)) {
        memcpy(bad, good, cut);
        dl_clear_error();
        l = dl_model_parse(bad, cut);
        if (l) { CHECK(0, "truncated at %zu of %zu parses", cut, size); dl_model_free(l); break; }
        if (!dl_error()[0]) { CHECK(0, "truncated at %zu: no message", cut); break; }
    }
    /* single bytes of the architecture text changed: an error or a model, never a crash */
    arch = st ? dl_safetensors_meta(st, "dl.architecture") : NULL;
    CHECK(arch != NULL, "the file has dl.architecture");
    arch_len = arch ? strlen(arch) : 0;
    arch_at = 0;
    for (i = 8; arch && i + arch_len < size; i++)
        if (memcmp(good + i, arch, 12) == 0) { arch_at = i; break; } /* the text is stored as is (no escapes needed) */
    CHECK(arch_at > 0, "found the architecture in the header");
    for (i = 0; arch_at && i < arch_len; i++) {
        static const unsigned char subst[4] = {'9', ' ', '-', 'x'};
        int k;
        for (k = 0; k < 5; k++) {
            unsigned char c = k < 4 ? subst[k] : (unsigned char)(good[arch_at + i] ^ 0x08);
            if (c == good[arch_at + i] || c == '"' || c == '\\' || c < 0x20 || c >= 0x7f) continue; /* keep the JSON a JSON */
            memcpy(bad, good, size);
            bad[arch_at + i] = c;
            dl_clear_error();
            l = dl_model_parse(bad, size);
            tries++;
            if (!l) { failures++; if (!dl_error()[0]) CHECK(0, "changed byte %zu: NULL without a message", i); }
            dl_model_free(l);
        }
    }
    CHECK(tries > 500 && failures > tries / 2, "%zu of %zu single-byte changes were errors", failures, tries);
    /* any header byte changed (JSON structure, names, offsets, metadata): an error or a model */
    for (i = 0; i < size && i < 8 + 4096; i++) {
        memcpy(bad, good, size);
        bad[i] ^= (unsigned char)(i < 8 ? 0x01 : 0x20);
        dl_clear_error();
        l = dl_model_parse(bad, size);
        if (!l && !dl_error()[0]) { CHECK(0, "header byte %zu changed: NULL without a message", i); break; }
        dl_model_free(l);
    }
    dl_sym_free_unused();
    dl_threads_shutdown();
    CHECK(test_live == live0, "failed loads free everything (%ld blocks left)", test_live - live0);
    /* wrong shape, missing weight, unknown kind, bad format, no architecture */
    {
        dl_tensor *wrong = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(13, 5));
        char *arch2;
        ed = edited(good, size, NULL, "dense/kernel", wrong, NULL, NULL, &ed_size);
        expect_parse_error(ed, ed_size, "dense/kernel", "dense/kernel of the wrong shape");
        free(ed);
        dl_tensor_free(wrong);
        wrong = dl_tensor_new(DL_DTYPE_I32, 1, DL_SHAPE(5));
        ed = edited(good, size, NULL, "dense_1/bias", NULL, NULL, NULL, &ed_size);
        free(ed);
        ed = edited(good, size, "dense_1/bias", NULL, NULL, NULL, NULL, &ed_size);
        expect_parse_error(ed, ed_size, "dense_1/bias", "missing dense_1/bias");
        free(ed);
        ed = edited(good, size, NULL, "dense/bias", wrong, NULL, NULL, &ed_size);
        expect_parse_error(ed, ed_size, "dense/bias", "an i32 bias");
        free(ed);
        dl_tensor_free(wrong);
        arch2 = arch ? replace_once(arch, "layer Dense", "layer Dinse") : NULL;
        ed = edited(good, size, NULL, NULL, NULL, "dl.architecture", arch2, &ed_size);
        expect_parse_error(ed, ed_size, "Dinse", "unknown layer kind");
        free(ed); free(arch2);
        ed = edited(good, size, NULL, NULL, NULL, "dl.format", "dl.model.v9", &ed_size);
        expect_parse_error(ed, ed_size, "dl.format", "format v9");
        free(ed);
        ed = edited(good, size, NULL, NULL, NULL, "dl.architecture", "model sequential\nlayer Dense dense 1 i 4 0 0 0 0 0 0 1 f 0 0 0 0 0 0 0 0\n", &ed_size);
        expect_parse_error(ed, ed_size, "input", "a sequential model without an input line");
        free(ed);
        ed = edited(good, size, NULL, NULL, NULL, "dl.compile", "loss banana", &ed_size);
        expect_parse_error(ed, ed_size, "dl.compile", "bad dl.compile");
        free(ed);
        ed = edited(good, size, NULL, NULL, NULL, "optimizer/kind", "lion", &ed_size);
        expect_parse_error(ed, ed_size, "lion", "unknown optimizer");
        free(ed);
        ed = edited(good, size, NULL, NULL, NULL, "dl.architecture", "model sequential\ninput f32 1 3\nlayer Dense dense 1 i 4 0 0 0 0 0 0 99 f 0 0 0 0 0 0 0 0\n", &ed_size);
        expect_parse_error(ed, ed_size, NULL, "activation 99");
        free(ed);
        ed = edited(good, size, NULL, NULL, NULL, "dl.architecture", "model sequential\ninput f32 1 3\nlayer Dense dense 7 i 4 0 0 0 0 0 0 1 f 0 0 0 0 0 0 0 0\n", &ed_size);
        expect_parse_error(ed, ed_size, NULL, "trainable 7");
        free(ed);
        ed = edited(good, size, NULL, NULL, NULL, "dl.architecture", "model functional\ninput f32 1 3\nlayer Dense dense 1 i 4 0 0 0 0 0 0 1 f 0 0 0 0 0 0 0 0\nnode 0 1 5\noutput 1\n", &ed_size);
        expect_parse_error(ed, ed_size, "node", "a node reading a node that does not exist");
        free(ed);
        dl_sym_free_unused();
        dl_threads_shutdown();
        CHECK(test_live == live0, "failed loads free everything (%ld blocks left)", test_live - live0);
    }
    { /* weights-only files have no architecture */
        CHECK(dl_model_save_weights(m, tmp_path) == 0, "%s", dl_error());
        dl_clear_error();
        l = dl_model_load(tmp_path);
        CHECK(l == NULL && strstr(dl_error(), "architecture"), "dl_model_load of a weights file: '%s'", dl_error());
        remove(tmp_path);
        dl_clear_error();
        CHECK(dl_model_load(tmp_path) == NULL && dl_error()[0], "a missing file");
    }
    if (st) dl_safetensors_free(st);
    free(good);
    free(bad);
    dl_model_free(m);
}

/* A functional architecture that declares a layer no node applies: an error, and nothing leaks. */
static void test_unapplied_layer_in_file(void) {
    graph g = make_graph();
    size_t size, ed_size;
    unsigned char *good, *ed;
    dl_safetensors *st;
    const char *arch;
    char *arch2 = NULL;
    long live0;
    CHECK(g.m != NULL, "%s", dl_error());
    if (!g.m) return;
    size = dl_model_serialize(g.m, 0, NULL, 0);
    good = (unsigned char *)malloc(size);
    dl_model_serialize(g.m, 0, good, size);
    st = dl_safetensors_parse(good, size);
    arch = st ? dl_safetensors_meta(st, "dl.architecture") : NULL;
    if (arch) arch2 = replace_once(arch, "\nnode", "\nlayer Dense extra 1 i 3 0 0 0 0 0 0 0 f 0 0 0 0 0 0 0 0\nnode");
    CHECK(arch2 != NULL, "architecture edited");
    dl_threads_shutdown();
    live0 = test_live;
    ed = edited(good, size, NULL, NULL, NULL, "dl.architecture", arch2, &ed_size);
    expect_parse_error(ed, ed_size, "extra", "an unapplied layer");
    free(ed);
    dl_sym_free_unused();
    dl_threads_shutdown();
    CHECK(test_live == live0, "nothing leaks (%ld blocks left)", test_live - live0);
    free(arch2);
    dl_safetensors_free(st);
    free(good);
    dl_model_free(g.m);
}

/* A file whose two same-shaped Dense layers are both named "dense": names are unique in a model,
   and loading it would give both layers the weights "dense/..." (those of dense_1 ignored). */
static void test_duplicate_names_in_file(void) {
    dl_model *m = dl_sequential(dl_Dense(4, DL_ACT_RELU), dl_Dense(4, DL_ACT_LINEAR)), *l;
    size_t size, ed_size;
    unsigned char *good, *ed;
    dl_safetensors *st;
    const char *arch;
    char *arch2 = NULL;
    CHECK(m && dl_model_build(m, 1, DL_SHAPE(4)) == 0, "%s", dl_error());
    if (!m) return;
    randomize_weights(m);
    size = dl_model_serialize(m, 0, NULL, 0);
    good = (unsigned char *)malloc(size);
    dl_model_serialize(m, 0, good, size);
    st = dl_safetensors_parse(good, size);
    arch = st ? dl_safetensors_meta(st, "dl.architecture") : NULL;
    if (arch) arch2 = replace_once(arch, "layer Dense dense_1 ", "layer Dense dense ");
    CHECK(arch2 != NULL, "architecture edited");
    ed = edited(good, size, NULL, NULL, NULL, "dl.architecture", arch2, &ed_size);
    dl_clear_error();
    l = dl_model_parse(ed, ed_size);
    CHECK(l == NULL && dl_error()[0], "two layers named 'dense' in one file: an error (got a model with %d layers)",
          l ? dl_model_num_layers(l) : 0);
    dl_model_free(l);
    free(ed); free(arch2); free(good);
    dl_safetensors_free(st);
    dl_model_free(m);
}

/* ---- weights onto a custom model ---- */

static dl_tensor *mlp_forward(dl_model *m, dl_tensor *x, int training) {
    dl_tensor *h = dl_layer_call(dl_model_layer(m, 0), dl_flatten(x, 1, x->ndim - 1), training);
    return dl_layer_call(dl_model_layer(m, 1), h, training);
}

static void test_load_weights_custom(void) {
    dl_model *seq = dl_sequential(dl_Flatten(), dl_Dense(6, DL_ACT_RELU), dl_Dense(3, DL_ACT_LINEAR)), *cus, *cus2;
    dl_layer *ls[2], *ls2[2];
    float before[18];
    CHECK(seq && dl_model_build(seq, 2, DL_SHAPE(2, 4)) == 0, "%s", dl_error());
    if (!seq) return;
    randomize_weights(seq);
    CHECK(dl_model_save_weights(seq, tmp_path) == 0, "%s", dl_error());
    ls[0] = dl_Dense(6, DL_ACT_RELU); ls[1] = dl_Dense(3, DL_ACT_LINEAR);
    cus = dl_custom_model(mlp_forward, NULL, 2, ls);
    CHECK(cus && strcmp(ls[1]->name, "dense_1") == 0, "the custom model names its layers dense, dense_1");
    dl_clear_error();
    CHECK(dl_model_load_weights(cus, tmp_path) != 0 && strstr(dl_error(), "build"), "not built yet: '%s'", dl_error());
    CHECK(dl_model_build(cus, 2, DL_SHAPE(2, 4)) == 0, "%s", dl_error());
    CHECK(dl_model_load_weights(cus, tmp_path) == 0, "%s", dl_error());
    CHECK(predicts_same(seq, cus, 3, DL_SHAPE(7, 2, 4)), "custom model with the loaded weights predicts the same bits");
    dl_clear_error();
    CHECK(dl_model_save(cus, tmp_path, 0) != 0 && strstr(dl_error(), "custom"), "a custom model cannot be saved whole: '%s'", dl_error());
    /* a mismatch changes nothing */
    CHECK(dl_model_save_weights(seq, tmp_path) == 0, "%s", dl_error());
    ls2[0] = dl_Dense(6, DL_ACT_RELU); ls2[1] = dl_Dense(4, DL_ACT_LINEAR);
    cus2 = dl_custom_model(mlp_forward, NULL, 2, ls2);
    CHECK(cus2 && dl_model_build(cus2, 2, DL_SHAPE(2, 4)) == 0, "%s", dl_error());
    if (cus2) {
        memcpy(before, dl_f32(ls2[0]->params[1]), 6 * sizeof(float));
        dl_clear_error();
        CHECK(dl_model_load_weights(cus2, tmp_path) != 0 && strstr(dl_error(), "dense_1/kernel"), "shape mismatch: '%s'", dl_error());
        CHECK(memcmp(before, dl_f32(ls2[0]->params[1]), 6 * sizeof(float)) == 0, "the first layer was not changed either");
    }
    remove(tmp_path);
    dl_model_free(seq); dl_model_free(cus); dl_model_free(cus2);
    dl_arena_reset(dl_arena_current());
}

int main(int argc, char **argv) {
    (void)argc;
    if (argv[0] && strlen(argv[0]) < sizeof tmp_path - 20) snprintf(tmp_path, sizeof tmp_path, "%s.tmp.safetensors", argv[0]);
    dl_rng_seed(&g_rng, 77);
    RUN(test_three_ways);
    RUN(test_functional_graph);
    RUN(test_graph_errors);
    RUN(test_summary_and_names);
    RUN(test_save_load_sequential);
    RUN(test_save_load_functional);
    RUN(test_save_load_every_layer_kind);
    RUN(test_resume_training);
    RUN(test_resume_training_with_dropout);
    RUN(test_resume_training_plain_sgd);
    RUN(test_corrupt_files);
    RUN(test_unapplied_layer_in_file);
    RUN(test_duplicate_names_in_file);
    RUN(test_load_weights_custom);
    dl_sym_free_unused();
    dl_arena_free_default();
    dl_threads_shutdown();
    {
        int r = test_summary();
        fflush(stdout); /* before the leak checker's report at exit */
        return r;
    }
}
