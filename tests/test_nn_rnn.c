/* Recurrent layers of dl_nn.h (SimpleRNN, LSTM, GRU) and the Orthogonal initializer.
   Reference numbers: tests/data/rnn_parity.safetensors, written by tools/make_rnn_fixtures.py
   from torch.nn.RNN / LSTM / GRU 1.13 with Keras-layout weights mapped to torch's. */
#include <limits.h>
#define DL_IMPLEMENTATION
#include "../dl_nn.h"
#include "test.h"

static dl_layer *make_layer(int kind, int units, int return_sequences) {
    return kind == 0 ? dl_SimpleRNN(units, return_sequences) : kind == 1 ? dl_LSTM(units, return_sequences)
                                                             : dl_GRU(units, return_sequences);
}
static const char *const kind_name[3] = {"SimpleRNN", "LSTM", "GRU"};
static const char *const fixture_prefix[3] = {"simple_rnn", "lstm", "gru"};

static dl_tensor *randn(int ndim, const int *shape, dl_rng *r, float std) {
    dl_tensor *t = dl_tmp(DL_DTYPE_F32, ndim, shape);
    dl_fill_normal(t, 0, std, r);
    return t;
}

/* ---- Orthogonal initializer ---- */

/* For [rows, cols]: Q^T Q = I (rows >= cols) or Q Q^T = I (rows < cols); and Q matches the QR
   of the normal matrix A the generator gives: R = Q^T A (A as [max, min]) is upper triangular
   with a positive diagonal, which is the sign correction Keras applies. */
static void check_orthogonal(int rows, int cols, uint64_t seed) {
    dl_tensor *t = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(rows, cols));
    int m = rows > cols ? rows : cols, n = rows > cols ? cols : rows, i, j, k;
    double worst_id = 0, worst_low = 0, min_diag = 1e30;
    float *q = dl_f32(t), *a;
    dl_rng r;
    dl_rng_seed(&r, seed);
    CHECK(dl_init_tensor(t, DL_INIT_ORTHOGONAL, &r) == 0, "%s", dl_error());
    a = (float *)malloc(sizeof(float) * (size_t)m * (size_t)n);
    dl_rng_seed(&r, seed);
    for (i = 0; i < m * n; i++) a[i] = dl_rng_normal(&r);
    /* Qm[i][j]: element (i, j) of Q as the m x n matrix with orthonormal columns. */
#define QM(i, j) (rows >= cols ? q[(size_t)(i) * (size_t)cols + (size_t)(j)] \
                                : q[(size_t)(j) * (size_t)cols + (size_t)(i)])
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            double s = 0, rij = 0;
            for (k = 0; k < m; k++) {
                s += (double)QM(k, i) * QM(k, j);
                rij += (double)QM(k, i) * a[(size_t)k * (size_t)n + (size_t)j];
            }
            if (fabs(s - (i == j)) > worst_id) worst_id = fabs(s - (i == j));
            if (i > j && fabs(rij) > worst_low) worst_low = fabs(rij);
            if (i == j && rij < min_diag) min_diag = rij;
        }
#undef QM
    CHECK(worst_id < 1e-5, "[%d, %d]: |Q^T Q - I| up to %g", rows, cols, worst_id);
    CHECK(worst_low < 1e-4, "[%d, %d]: Q^T A has %g below its diagonal", rows, cols, worst_low);
    CHECK(min_diag > 0, "[%d, %d]: diag(Q^T A) has %g (sign correction)", rows, cols, min_diag);
    free(a);
    dl_tensor_free(t);
}

static void test_orthogonal(void) {
    check_orthogonal(1, 1, 1);
    check_orthogonal(5, 5, 2);
    check_orthogonal(9, 4, 3);
    check_orthogonal(4, 9, 4);
    check_orthogonal(64, 256, 5);   /* an LSTM's recurrent kernel for 64 units */
    {   /* a 3-d tensor is refused */
        dl_tensor *t = dl_tensor_new(DL_DTYPE_F32, 3, DL_SHAPE(2, 2, 2));
        dl_rng r;
        dl_rng_seed(&r, 0);
        CHECK(dl__init_orthogonal(t, &r) != 0, "3-d accepted");
        dl_tensor_free(t);
    }
}

/* ---- Construction, weights, shapes ---- */

static void test_weights_and_shapes(void) {
    static const int gates[3] = {1, 4, 3};
    int kind, rs, i;
    dl_rng r;
    dl_rng_seed(&r, 7);
    dl_nn_seed(3);
    for (kind = 0; kind < 3; kind++)
        for (rs = 0; rs < 2; rs++) {
            dl_layer *l = make_layer(kind, 5, rs);
            dl_tensor *x = randn(3, DL_SHAPE(2, 4, 3), &r, 1), *y, *k, *rk, *b;
            CHECK(l != NULL, "%s", dl_error());
            if (!l) continue;
            CHECK(strcmp(l->ops->kind, kind_name[kind]) == 0, "kind %s", l->ops->kind);
            CHECK(l->iconf[0] == 5 && l->iconf[1] == rs, "iconf %d %d", l->iconf[0], l->iconf[1]);
            y = dl_layer_call(l, x, 0);
            CHECK(y != NULL, "%s: %s", kind_name[kind], dl_error());
            if (!y) { dl_layer_free(l); continue; }
            if (rs) CHECK(y->ndim == 3 && y->shape[0] == 2 && y->shape[1] == 4 && y->shape[2] == 5, "seq");
            else CHECK(y->ndim == 2 && y->shape[0] == 2 && y->shape[1] == 5, "last shape");
            k = dl_layer_weight(l, "kernel");
            rk = dl_layer_weight(l, "recurrent_kernel");
            b = dl_layer_weight(l, "bias");
            CHECK(l->n_params == 3 && k && rk && b, "three weights");
            if (!k || !rk || !b) { dl_layer_free(l); continue; }
            CHECK(k->ndim == 2 && k->shape[0] == 3 && k->shape[1] == gates[kind] * 5, "kernel shape");
            CHECK(rk->ndim == 2 && rk->shape[0] == 5 && rk->shape[1] == gates[kind] * 5, "recurrent shape");
            if (kind == 2) CHECK(b->ndim == 2 && b->shape[0] == 2 && b->shape[1] == 15, "GRU bias [2, 3U]");
            else CHECK(b->ndim == 1 && b->shape[0] == gates[kind] * 5, "bias shape");
            for (i = 0; i < (int)b->numel; i++)
                CHECK(dl_f32(b)[i] == ((kind == 1 && i >= 5 && i < 10) ? 1.0f : 0.0f), "bias[%d] = %g", i,
                      dl_f32(b)[i]);
            {   /* glorot_uniform kernel within +-sqrt(6 / (fan_in + fan_out)), not all zero */
                float lim = sqrtf(6.0f / (float)(3 + gates[kind] * 5)), mx = 0;
                for (i = 0; i < (int)k->numel; i++) mx = fabsf(dl_f32(k)[i]) > mx ? fabsf(dl_f32(k)[i]) : mx;
                CHECK(mx > 0 && mx <= lim, "kernel max %g, limit %g", mx, lim);
            }
            {   /* the recurrent kernel's rows are orthonormal (U <= G*U) */
                int a2, b2, j, n = rk->shape[1];
                const float *p = dl_f32(rk);
                double worst = 0;
                for (a2 = 0; a2 < 5; a2++)
                    for (b2 = 0; b2 < 5; b2++) {
                        double s = 0;
                        for (j = 0; j < n; j++) s += (double)p[a2 * n + j] * p[b2 * n + j];
                        if (fabs(s - (a2 == b2)) > worst) worst = fabs(s - (a2 == b2));
                    }
                CHECK(worst < 1e-5, "recurrent rows not orthonormal: %g", worst);
            }
            /* A second call with another batch and length reuses the weights. */
            y = dl_layer_call(l, randn(3, DL_SHAPE(3, 2, 3), &r, 1), 1);
            CHECK(y != NULL && y->shape[0] == 3 && y->shape[rs ? 2 : 1] == 5, "%s", dl_error());
            CHECK(l->n_params == 3, "rebuilt");
            dl_layer_free(l);
        }
    dl_arena_reset(dl_arena_current());
}

/* ---- PyTorch parity ---- */

/* The fixture tensor "prefix.what" (borrowed from st), or NULL. */
static dl_tensor *fixture(const dl_safetensors *st, const char *prefix, const char *what) {
    char name[64];
    dl_tensor *t;
    snprintf(name, sizeof name, "%s.%s", prefix, what);
    t = dl_safetensors_get(st, name);
    CHECK(t != NULL, "fixture %s missing", name);
    return t;
}

static void test_torch_parity(void) {
    static const char *const wnames[3] = {"kernel", "recurrent_kernel", "bias"};
    static const char *const gnames[3] = {"dkernel", "drecurrent_kernel", "dbias"};
    dl_safetensors *st = dl_safetensors_load("tests/data/rnn_parity.safetensors");
    int kind, rs, i;
    CHECK(st != NULL, "%s", dl_error());
    if (!st) return;
    for (kind = 0; kind < 3; kind++)
        for (rs = 0; rs < 2; rs++) {
            const char *p = fixture_prefix[kind];
            dl_tensor *x = fixture(st, p, "x"), *want = fixture(st, p, "y"), *w = fixture(st, p, "w");
            dl_tensor *dx = fixture(st, p, "dx"), *y, *xin, *wts[3];
            dl_layer *l = make_layer(kind, 4, rs);
            int B, T, U = 4, ok = 1;
            CHECK(l != NULL, "%s", dl_error());
            if (!l || !x || !want || !w || !dx) { dl_layer_free(l); continue; }
            B = x->shape[0];
            T = x->shape[1];
            xin = dl_tmp(DL_DTYPE_F32, 3, x->shape);
            dl_copy(xin, x);
            dl_set_requires_grad(xin, 1);
            /* Build with the right shapes, then put the reference weights in. */
            dl_no_grad(1);
            CHECK(dl_layer_call(l, xin, 0) != NULL, "%s", dl_error());
            dl_no_grad(0);
            for (i = 0; i < 3; i++) {
                dl_tensor *src = fixture(st, p, wnames[i]);
                wts[i] = dl_layer_weight(l, wnames[i]);
                CHECK(wts[i] && src && dl_same_shape(wts[i], src), "%s.%s: shape", p, wnames[i]);
                if (wts[i] && src && dl_same_shape(wts[i], src)) dl_copy(wts[i], src);
                else ok = 0;
                if (wts[i]) dl_zero_grad(wts[i]);
            }
            y = ok ? dl_layer_call(l, xin, 1) : NULL;
            CHECK(y != NULL, "%s: %s", p, dl_error());
            if (!y) { dl_layer_free(l); continue; }
            if (rs) {
                CHECK_ALL_NEAR(dl_f32(y), dl_f32(want), (size_t)B * T * U, 1e-5);
                /* L = sum(y * w): the gradients torch computed */
                CHECK(dl_backward_grad(y, dl_f32(w)) == 0, "%s", dl_error());
                CHECK_ALL_NEAR(xin->grad, dl_f32(dx), xin->numel, 1e-5);
                for (i = 0; i < 3; i++) {
                    dl_tensor *g = fixture(st, p, gnames[i]);
                    CHECK(g && g->numel == wts[i]->numel, "%s.%s: size", p, gnames[i]);
                    if (g && g->numel == wts[i]->numel)
                        CHECK_ALL_NEAR(wts[i]->grad, dl_f32(g), g->numel, 1e-5);
                }
            } else {   /* the last step of every sequence */
                int b, u;
                for (b = 0; b < B; b++)
                    for (u = 0; u < U; u++)
                        CHECK_NEAR(dl_f32(y)[b * U + u], dl_f32(want)[(b * T + T - 1) * U + u], 1e-5);
            }
            dl_layer_free(l);
            dl_arena_reset(dl_arena_current());
        }
    dl_safetensors_free(st);
}

/* ---- Gradient checks ---- */

typedef struct gc_args { dl_layer *l; } gc_args;

static dl_tensor *gc_fn(dl_tensor **in, void *user) {
    gc_args *a = (gc_args *)user;
    return dl_layer_call(a->l, in[0], 1);
}

static void test_gradcheck(void) {
    int kind, rs;
    dl_rng r;
    dl_rng_seed(&r, 11);
    for (kind = 0; kind < 3; kind++)
        for (rs = 0; rs < 2; rs++) {
            gc_args a;
            dl_tensor *in[4], *x;
            int i, ok;
            a.l = make_layer(kind, 3, rs);
            x = dl_tensor_new(DL_DTYPE_F32, 3, DL_SHAPE(2, 4, 3));
            dl_fill_normal(x, 0, 1, &r);
            dl_set_requires_grad(x, 1);
            CHECK(a.l && dl_layer_call(a.l, x, 1), "%s", dl_error());
            if (!a.l || a.l->n_params != 3) { dl_layer_free(a.l); dl_tensor_free(x); continue; }
            in[0] = x;
            in[1] = dl_layer_weight(a.l, "kernel");
            in[2] = dl_layer_weight(a.l, "recurrent_kernel");
            in[3] = dl_layer_weight(a.l, "bias");
            for (i = 1; i < 4; i++) dl_fill_uniform(in[i], -0.8f, 0.8f, &r);   /* nonzero biases too */
            ok = dl_gradcheck(gc_fn, &a, 4, in, 1e-2f, 2e-3f) == 0;
            CHECK(ok, "%s return_sequences=%d: %s", kind_name[kind], rs, dl_error());
            dl_layer_free(a.l);
            dl_tensor_free(x);
            dl_arena_reset(dl_arena_current());
        }
}

/* ---- Errors and the factory ---- */

static void test_errors(void) {
    dl_layer *l;
    dl_tensor *y;
    int ic[DL_LAYER_MAX_CONF] = {0};
    float fc[DL_LAYER_MAX_CONF] = {0};
    dl_clear_error();
    CHECK(dl_LSTM(0, 0) == NULL && strstr(dl_error(), "units"), "units 0: %s", dl_error());
    CHECK(dl_GRU(-3, 1) == NULL, "negative units");
    CHECK(dl_SimpleRNN(0, 1) == NULL, "units 0");
    l = dl_LSTM(INT_MAX / 4 + 1, 0); /* 4 * units (5 * units in the cell) would overflow an int */
    CHECK(l == NULL && strstr(dl_error(), "units"), "huge units: %s", dl_error());
    dl_layer_free(l);
    l = dl_GRU(INT_MAX / 5 + 1, 0);
    CHECK(l == NULL, "huge GRU units");
    dl_layer_free(l);
    l = dl_SimpleRNN(2, 0); /* steps x batch over INT_MAX (no features: nothing allocated) */
    dl_clear_error();
    y = dl_layer_call(l, dl_tmp(DL_DTYPE_F32, 3, DL_SHAPE(65536, 65536, 0)), 0);
    CHECK(y == NULL && strstr(dl_error(), "INT_MAX"), "T x B: %s", dl_error());
    dl_layer_free(l);

    l = dl_LSTM(4, 0);
    y = dl_layer_call(l, dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(2, 3)), 0); /* no time axis */
    CHECK(y == NULL && strstr(dl_error(), "LSTM") && strstr(dl_error(), "[2, 3]"), "rank: %s", dl_error());
    CHECK(dl_layer_call(l, dl_tmp(DL_DTYPE_F32, 3, DL_SHAPE(2, 5, 3)), 0) != NULL, "%s", dl_error());
    y = dl_layer_call(l, dl_tmp(DL_DTYPE_F32, 3, DL_SHAPE(2, 5, 7)), 0); /* built for 3 features */
    CHECK(y == NULL && strstr(dl_error(), "LSTM"), "features: %s", dl_error());
    y = dl_layer_call(l, dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(2, 5, 3, 1)), 0);
    CHECK(y == NULL && strstr(dl_error(), "lstm"), "rank 4: %s", dl_error());
    y = dl_layer_call(l, dl_tmp(DL_DTYPE_F32, 3, DL_SHAPE(2, 0, 3)), 0);
    CHECK(y == NULL, "no time steps");
    CHECK(dl_layer_call(l, NULL, 0) == NULL, "NULL input");
    dl_layer_free(l);

    ic[0] = 6; ic[1] = 1;
    l = dl__rnn_from_conf("GRU", ic, fc);
    CHECK(l && strcmp(l->ops->kind, "GRU") == 0 && l->iconf[0] == 6 && l->iconf[1] == 1, "GRU from conf");
    dl_layer_free(l);
    l = dl__rnn_from_conf("LSTM", ic, fc);
    CHECK(l && strcmp(l->ops->kind, "LSTM") == 0, "LSTM from conf");
    dl_layer_free(l);
    l = dl__rnn_from_conf("SimpleRNN", ic, fc);
    CHECK(l && strcmp(l->ops->kind, "SimpleRNN") == 0, "SimpleRNN from conf");
    dl_layer_free(l);
    CHECK(dl__rnn_from_conf("Dense", ic, fc) == NULL, "not recurrent");
    ic[0] = 0;
    CHECK(dl__rnn_from_conf("LSTM", ic, fc) == NULL && strstr(dl_error(), "units"), "bad conf");
    /* A failed constructor inside dl_sequential fails the model with its message. */
    CHECK(dl_sequential(dl_GRU(0, 1)) == NULL && strstr(dl_error(), "dl_GRU"), "in a model: %s",
          dl_error());
    dl_arena_reset(dl_arena_current());
}

/* ---- In a model: saved and loaded (through dl__rnn_from_conf), and thread-count independence ---- */

static void test_model_roundtrip(void) {
    int kind;
    dl_rng r;
    dl_rng_seed(&r, 5);
    for (kind = 0; kind < 3; kind++) {
        dl_model *m = dl_sequential(make_layer(kind, 6, 1), make_layer(kind, 5, 0), dl_Dense(2, DL_ACT_LINEAR));
        dl_model *m2 = NULL;
        dl_tensor *x = randn(3, DL_SHAPE(3, 4, 2), &r, 1), *y, *y2;
        size_t size;
        void *buf;
        CHECK(m != NULL, "%s", dl_error());
        if (!m) continue;
        y = dl_model_call(m, x, 0);
        CHECK(y && y->ndim == 2 && y->shape[0] == 3 && y->shape[1] == 2, "%s: %s", kind_name[kind],
              dl_error());
        size = dl_model_serialize(m, 0, NULL, 0);
        buf = malloc(size);
        CHECK(size > 0 && dl_model_serialize(m, 0, buf, size) == size, "%s", dl_error());
        if (size > 0) m2 = dl_model_parse(buf, size);
        CHECK(m2 != NULL, "%s: %s", kind_name[kind], dl_error());
        if (m2 && y) {
            dl_layer *l = dl_model_layer(m2, 0);
            CHECK(!strcmp(l->ops->kind, kind_name[kind]) && l->iconf[0] == 6 && l->iconf[1] == 1, "layer 0");
            l = dl_model_layer(m2, 1);
            CHECK(!strcmp(l->ops->kind, kind_name[kind]) && l->iconf[0] == 5 && l->iconf[1] == 0, "layer 1");
            y2 = dl_model_call(m2, x, 0);
            CHECK(y2 && dl_same_shape(y, y2) && memcmp(dl_f32(y), dl_f32(y2), y->numel * sizeof(float)) == 0,
                  "%s: loaded model predicts differently", kind_name[kind]);
        }
        free(buf);
        dl_model_free(m2);
        dl_model_free(m);
        dl_arena_reset(dl_arena_current());
    }
}

/* The cells cut rows into tasks by shape only: any thread count gives the same bits. */
static void test_threads_same_bits(void) {
    int kind, rs = 1;
    dl_rng r;
    dl_rng_seed(&r, 9);
    for (kind = 1; kind < 3; kind++) {
        dl_layer *l = make_layer(kind, 64, rs);
        dl_tensor *x = dl_tensor_new(DL_DTYPE_F32, 3, DL_SHAPE(300, 3, 5)), *y;
        float *first = NULL, *gfirst = NULL;
        int threads[2] = {1, 3}, i;
        dl_fill_normal(x, 0, 1, &r);
        dl_set_requires_grad(x, 1);
        for (i = 0; i < 2; i++) {
            dl_set_num_threads(threads[i]);
            dl_zero_grad(x);
            y = dl_layer_call(l, x, 1);
            CHECK(y != NULL && dl_backward(dl_sum_all(dl_mul(y, y))) == 0, "%s", dl_error());
            if (!y) break;
            if (i == 0) {
                first = (float *)malloc(y->numel * sizeof(float));
                gfirst = (float *)malloc(x->numel * sizeof(float));
                memcpy(first, dl_f32(y), y->numel * sizeof(float));
                memcpy(gfirst, x->grad, x->numel * sizeof(float));
            } else {
                CHECK(!memcmp(first, dl_f32(y), y->numel * sizeof(float)), "%s: outputs", kind_name[kind]);
                CHECK(!memcmp(gfirst, x->grad, x->numel * sizeof(float)), "%s: gradients", kind_name[kind]);
            }
            dl_arena_reset(dl_arena_current());
        }
        dl_set_num_threads(0);
        free(first);
        free(gfirst);
        dl_layer_free(l);
        dl_tensor_free(x);
    }
}

int main(void) {
    RUN(test_orthogonal);
    RUN(test_weights_and_shapes);
    RUN(test_torch_parity);
    RUN(test_gradcheck);
    RUN(test_errors);
    RUN(test_model_roundtrip);
    RUN(test_threads_same_bits);
    dl_arena_free_default();
    dl_threads_shutdown();
    return test_summary();
}
