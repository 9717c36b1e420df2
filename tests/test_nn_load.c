/* Loading model files (dl_model_load / dl_model_parse) that are hostile or merely large: a
   failed load leaves nothing registered for dl_sym_free_unused; sizes a file declares are
   checked before anything is allocated for them; a 100,000-layer chain loads (and a duplicate
   name in it is found); numbers out of range are errors; messages name the public function;
   custom layers registered with dl_layer_register are saved and loaded whole.

   Allocations go through a counting allocator that also refuses (returns NULL for) any single
   request over alloc_cap and remembers the largest request, so a loader that asks for
   gigabytes is seen in every build, without the machine having to give them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static long test_live;      /* blocks allocated and not yet freed */
static size_t alloc_cap = (size_t)1 << 30, alloc_peak;   /* refuse requests over cap; largest seen */
static void *cap_malloc(size_t n) {
    void *p;
    if (n > alloc_peak) alloc_peak = n;
    if (n > alloc_cap) return NULL;
    p = malloc(n);
    if (p) __atomic_fetch_add(&test_live, 1, __ATOMIC_RELAXED);
    return p;
}
static void *cap_realloc(void *p, size_t n) {
    void *q;
    if (n > alloc_peak) alloc_peak = n;
    if (n > alloc_cap) return NULL;
    q = realloc(p, n);
    if (q && !p) __atomic_fetch_add(&test_live, 1, __ATOMIC_RELAXED);
    return q;
}
static void cap_free(void *p) {
    if (p) __atomic_fetch_add(&test_live, -1, __ATOMIC_RELAXED);
    free(p);
}
#define DL_MALLOC(n) cap_malloc(n)
#define DL_REALLOC(p, n) cap_realloc(p, n)
#define DL_FREE(p) cap_free(p)
#define DL_IMPLEMENTATION
#include "../dl_nn.h"
#include "test.h"

static char tmp_path[512] = "test_nn_load.tmp"; /* main() puts it next to the program */

/* A model file in memory: the architecture text, optional dl.compile and optimizer metadata,
   and n tensors. Owned (free). */
static unsigned char *model_file(const char *arch, const char *compile, int n_meta_extra, const char *const *extra_kv,
                                 int n, const char *const *names, dl_tensor *const *ts, size_t *size) {
    const char *keys[16], *values[16];
    int nm = 0, i;
    unsigned char *buf;
    keys[nm] = "dl.format"; values[nm++] = "dl.model.v1";
    keys[nm] = "dl.architecture"; values[nm++] = arch;
    if (compile) { keys[nm] = "dl.compile"; values[nm++] = compile; }
    for (i = 0; i < n_meta_extra && nm < 16; i++) { keys[nm] = extra_kv[2 * i]; values[nm++] = extra_kv[2 * i + 1]; }
    *size = dl_safetensors_serialize(n, names, ts, nm, keys, values, NULL, 0);
    buf = (unsigned char *)malloc(*size ? *size : 1);
    if (*size) dl_safetensors_serialize(n, names, ts, nm, keys, values, buf, *size);
    return buf;
}

static dl_model *parse_text(const char *arch, int n, const char *const *names, dl_tensor *const *ts) {
    size_t size;
    unsigned char *b = model_file(arch, NULL, 0, NULL, n, names, ts, &size);
    dl_model *m;
    dl_clear_error();
    m = dl_model_parse(b, size);
    free(b);
    return m;
}

/* ---- 1: a failed load leaves no symbol registered (nothing for dl_sym_free_unused to touch) ---- */

static void test_failed_load_leaves_nothing(void) {
    static const char *const dense2 =
        "model functional\ninput f32 1 4\n"
        "layer Dense d0 1 i 3 0 0 0 0 0 0 0 f 0 0 0 0 0 0 0 0\n"
        "layer Dense d1 1 i 3 0 0 0 0 0 0 0 f 0 0 0 0 0 0 0 0\n";
    static const char *const tails[] = {
        "node 0 1 0\nnode 1 1 0\noutput 1\n",            /* d1 applied, its result reaches no output */
        "node 0 1 0\nnode 1 1 0\nnode 0 1 0\noutput 1\n", /* d0 applied twice, once in vain */
        "node 0 1 0\nnode 1 1 1\noutput 2\n",            /* d1 on d0's [3]: its kernel is [4, 3] */
        "node 0 1 0\nnode 1 1 0\noutput 1 2\nbanana\n",  /* an unknown line after a complete graph */
        "node 0 1 0\nnode 1 1 0\noutput 1 2\n",          /* fine, but dl.compile below is bad */
    };
    const char *names[4] = {"d0/kernel", "d0/bias", "d1/kernel", "d1/bias"};
    dl_tensor *ts[4];
    dl_sym *mine;
    size_t i;
    long live0;
    ts[0] = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(4, 3)); ts[1] = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(3));
    ts[2] = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(4, 3)); ts[3] = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(3));
    dl_sym_free_unused();
    dl_threads_shutdown();
    mine = dl_Input(1, DL_SHAPE(4));   /* the caller's graph under construction must survive */
    live0 = test_live;
    for (i = 0; i < sizeof tails / sizeof tails[0]; i++) {
        char arch[1024];
        size_t size;
        unsigned char *b;
        dl_model *m;
        snprintf(arch, sizeof arch, "%s%s", dense2, tails[i]);
        b = model_file(arch, i == 4 ? "loss 1 metrics 0 top_k 5 compiled 1 state 0" : NULL, 0, NULL, 4, names, ts, &size);
        dl_clear_error();
        m = dl_model_parse(b, size);
        free(b);
        CHECK(m == NULL && dl_error()[0], "case %zu: an error (got %s)", i, m ? "a model" : dl_error());
        dl_model_free(m);
        dl_threads_shutdown();
        CHECK(test_live == live0, "case %zu: the failed load left %ld blocks (symbols or layers) behind", i, test_live - live0);
    }
    /* the caller's own symbol is still there and usable */
    {
        dl_sym *y = dl_apply(dl_Dense(2, DL_ACT_LINEAR), mine);
        dl_model *m = y ? dl_model_new(1, &mine, 1, &y) : NULL;
        CHECK(m != NULL, "the caller's dl_Input survives failed loads: %s", dl_error());
        dl_model_free(m);
    }
    dl_sym_free_unused();
    for (i = 0; i < 4; i++) dl_tensor_free(ts[i]);
}

/* ---- 2: sizes a file declares are checked before allocation ---- */

static void expect_small_failure(const char *what, const char *arch, int n, const char *const *names, dl_tensor *const *ts,
                                 const char *want) {
    dl_model *m;
    long live0;
    dl_threads_shutdown();
    live0 = test_live;
    alloc_peak = 0;
    alloc_cap = (size_t)64 << 20;
    m = parse_text(arch, n, names, ts);
    alloc_cap = (size_t)1 << 30;
    CHECK(m == NULL && dl_error()[0], "%s: an error", what);
    CHECK(!want || strstr(dl_error(), want), "%s: message '%s' names '%s'", what, dl_error(), want);
    CHECK(alloc_peak <= ((size_t)1 << 20), "%s: the largest allocation was %zu bytes", what, alloc_peak);
    dl_model_free(m);
    dl_sym_free_unused();
    dl_threads_shutdown();
    CHECK(test_live == live0, "%s: nothing leaks (%ld)", what, test_live - live0);
}

static void test_declared_sizes_checked(void) {
    const char *ct_names[2] = {"ct/kernel", "ct/bias"}, *d_names[2] = {"d/kernel", "d/bias"};
    dl_tensor *ct[2], *d[2];
    ct[0] = dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(1, 1, 1, 1));
    ct[1] = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(1));
    d[0] = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(2, 2));
    d[1] = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(2));
    expect_small_failure("a huge sequential input",
                         "model sequential\ninput f32 3 65536 65536 2\nlayer Flatten flatten 1 i 0 0 0 0 0 0 0 0 f 0 0 0 0 0 0 0 0\n",
                         0, NULL, NULL, "input");
    expect_small_failure("a huge functional input",
                         "model functional\ninput f32 2 2000000000 2\nlayer Dense d 1 i 2 0 0 0 0 0 0 0 f 0 0 0 0 0 0 0 0\n"
                         "node 0 1 0\noutput 1\n", 2, d_names, d, "input");
    expect_small_failure("Conv2DTranspose of stride 50000 (sequential)",
                         "model sequential\ninput f32 3 1 8 8\n"
                         "layer Conv2DTranspose ct 1 i 1 1 50000 0 0 0 0 0 f 0 0 0 0 0 0 0 0\n", 2, ct_names, ct, "ct");
    expect_small_failure("Conv2DTranspose of stride 50000 (functional)",
                         "model functional\ninput f32 3 1 8 8\n"
                         "layer Conv2DTranspose ct 1 i 1 1 50000 1 0 0 0 0 f 0 0 0 0 0 0 0 0\nnode 0 1 0\noutput 1\n",
                         2, ct_names, ct, "ct");
    expect_small_failure("Dense of 2^30 units",
                         "model sequential\ninput f32 1 2\nlayer Dense d 1 i 1073741824 0 0 0 0 0 0 0 f 0 0 0 0 0 0 0 0\n",
                         2, d_names, d, NULL);
    expect_small_failure("Reshape to 2^31 values",
                         "model sequential\ninput f32 1 2\nlayer Reshape r 1 i 3 65536 32768 1 0 0 0 0 f 0 0 0 0 0 0 0 0\n",
                         0, NULL, NULL, NULL);
    dl_tensor_free(ct[0]); dl_tensor_free(ct[1]); dl_tensor_free(d[0]); dl_tensor_free(d[1]);
    /* the same kinds at sane sizes still load */
    {
        dl_model *m;
        ct[0] = dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(1, 2, 3, 3));
        ct[1] = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(2));
        m = parse_text("model sequential\ninput f32 3 1 8 8\nlayer Conv2DTranspose ct 1 i 2 3 2 1 0 0 0 0 f 0 0 0 0 0 0 0 0\n",
                       2, ct_names, ct);
        CHECK(m != NULL, "a stride-2 Conv2DTranspose loads: %s", dl_error());
        dl_model_free(m);
        dl_tensor_free(ct[0]); dl_tensor_free(ct[1]);
    }
}

/* ---- 3: a 100,000-layer chain loads; a duplicate name in it is found ---- */

static char *chain_arch(int n, int dup_at) {
    size_t cap = (size_t)n * 120 + 256, off = 0;
    char *a = (char *)malloc(cap);
    int i;
    off += (size_t)snprintf(a + off, cap - off, "model functional\ninput f32 1 3\n");
    for (i = 0; i < n; i++)
        off += (size_t)snprintf(a + off, cap - off, "layer Activation act_%d 1 i 0 0 0 0 0 0 0 %d f 0 0 0 0 0 0 0 0\n",
                                i == dup_at ? 7 : i, i % 3 == 0 ? 1 : 3);   /* relu, tanh */
    for (i = 0; i < n; i++) off += (size_t)snprintf(a + off, cap - off, "node %d 1 %d\n", i, i);
    snprintf(a + off, cap - off, "output %d\n", n);
    return a;
}

static void test_long_chain(void) {
    const int n = 100000;
    char *arch = chain_arch(n, -1);
    dl_model *m = parse_text(arch, 0, NULL, NULL);
    CHECK(m && dl_model_num_layers(m) == n, "a %d-layer chain loads: %s", n, m ? "" : dl_error());
    if (m) {
        dl_tensor *x = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(2, 3)), *y;
        dl_f32(x)[0] = 0.5f; dl_f32(x)[4] = -0.25f;
        y = dl_model_call(m, x, 0);
        CHECK(y && y->shape[1] == 3 && dl_f32(y)[0] > 0.0f && dl_f32(y)[0] < 0.5f, "and runs");
        CHECK(strcmp(dl_model_layer(m, n - 1)->name, "act_99999") == 0, "names kept");
    }
    dl_model_free(m);
    free(arch);
    arch = chain_arch(n, n - 1);   /* the last layer named act_7 too */
    m = parse_text(arch, 0, NULL, NULL);
    CHECK(m == NULL && strstr(dl_error(), "act_7"), "a duplicate name among %d layers: '%s'", n, dl_error());
    dl_model_free(m);
    free(arch);
    dl_arena_reset(dl_arena_current());
}

/* ---- 4: numbers out of range ---- */

static void test_numbers_in_range(void) {
    static const char *const archs[] = {
        "model sequential\ninput f32 1 4294967300\nlayer Flatten f 1 i 0 0 0 0 0 0 0 0 f 0 0 0 0 0 0 0 0\n",
        "model sequential\ninput f32 1 3\nlayer Dense d 1 i 4294967298 0 0 0 0 0 0 0 f 0 0 0 0 0 0 0 0\n",
        "model sequential\ninput f32 1 3\nlayer Dropout r 1 i 0 0 0 0 0 0 0 0 f 1e300 0 0 0 0 0 0 0\n",
        "model sequential\ninput f32 1 3\nlayer Dropout r 1 i 0 0 0 0 0 0 0 0 f inf 0 0 0 0 0 0 0\n",
        "model sequential\ninput f32 99999999999999999999 3\nlayer Flatten f 1 i 0 0 0 0 0 0 0 0 f 0 0 0 0 0 0 0 0\n",
        "model sequential\ninput f32 1 3\nlayer Dropout n 1 i 0 0 0 0 0 0 0 0 f 0x1p-3 0 0 0 0 0 0 0\n",   /* hex */
        "model sequential\ninput f32 1 3\nlayer Dropout n 1 i 0 0 0 0 0 0 0 0 f 0.125 0 0 0 0 0 0 0 5\n",  /* a 9th */
    };
    static const char *const compiles[] = {
        "loss 4294967297 metrics 0 top_k 5 compiled 0 state 0",   /* loss 1 after wrapping */
        "loss 1 metrics 4294967297 top_k 5 compiled 0 state 0",
        "loss 1 metrics 0 top_k 4294967301 compiled 0 state 0",
        "loss 1 metrics 0 top_k 5 compiled 4294967297 state 0",
    };
    static const char *const optim[][2] = {{"optimizer/lr", "inf"}, {"optimizer/lr", "-0.5"}, {"optimizer/lr", "nan"},
        {"optimizer/nesterov", "1e300"}, {"optimizer/momentum", "1e400"}, {"optimizer/eps", "-inf"}, {"optimizer/lr", "0.1x"}};
    const char *names[2] = {"d/kernel", "d/bias"};
    dl_tensor *ts[2];
    size_t i, size;
    ts[0] = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(3, 2));
    ts[1] = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(2));
    for (i = 0; i < sizeof archs / sizeof archs[0]; i++) {
        dl_model *m = parse_text(archs[i], 0, NULL, NULL);
        CHECK(m == NULL && dl_error()[0], "architecture %zu: an error", i);
        dl_model_free(m);
    }
    for (i = 0; i < sizeof compiles / sizeof compiles[0] + sizeof optim / sizeof optim[0]; i++) {
        const char *kv[4] = {"optimizer/kind", "sgd", NULL, NULL};
        int nc = (int)(sizeof compiles / sizeof compiles[0]);
        unsigned char *b;
        dl_model *m;
        if (i >= (size_t)nc) { kv[2] = optim[i - nc][0]; kv[3] = optim[i - nc][1]; }
        b = model_file("model sequential\ninput f32 1 3\nlayer Dense d 1 i 2 0 0 0 0 0 0 0 f 0 0 0 0 0 0 0 0\n",
                       i < (size_t)nc ? compiles[i] : "loss 1 metrics 0 top_k 5 compiled 1 state 0", 2, kv, 2, names, ts, &size);
        dl_clear_error();
        m = dl_model_parse(b, size);
        CHECK(m == NULL && dl_error()[0], "compile/optimizer case %zu (%s): an error", i, i < (size_t)nc ? compiles[i] : optim[i - nc][1]);
        dl_model_free(m);
        free(b);
    }
    { /* the good one loads */
        const char *kv[2] = {"optimizer/kind", "sgd"};
        unsigned char *b = model_file("model sequential\ninput f32 1 3\nlayer Dense d 1 i 2 0 0 0 0 0 0 0 f 0 0 0 0 0 0 0 0\n",
                                      "loss 1 metrics 0 top_k 5 compiled 1 state 0", 1, kv, 2, names, ts, &size);
        dl_model *m = dl_model_parse(b, size);
        CHECK(m != NULL, "the file with sane numbers loads: %s", dl_error());
        dl_model_free(m);
        free(b);
    }
    /* dl_optim_parse: lr inf is not a learning rate */
    {
        dl_optim *o = dl_sgd(0.1);
        size_t n = dl_optim_serialize(o, NULL, 0);
        unsigned char *b = (unsigned char *)malloc(n), *p;
        dl_optim_serialize(o, b, n);
        p = (unsigned char *)memchr(b, 0, n);
        for (p = b + 8; p + 10 < b + n; p++)
            if (memcmp(p, "\"lr\":\"0.1", 9) == 0) break;   /* "lr":"0.10000000000000001" -> "lr":"inf" + spaces */
        CHECK(p + 10 < b + n, "found lr in the optimizer file");
        if (p + 10 < b + n) {
            unsigned char *q = p + 6, *e = (unsigned char *)memchr(q, '"', (size_t)(b + n - q));
            memcpy(q, "inf\"", 4);
            memset(q + 4, ' ', (size_t)(e - q - 3));
            dl_clear_error();
            CHECK(dl_optim_parse(o, b, n) != 0 && strstr(dl_error(), "lr"), "dl_optim_parse of lr inf: '%s'", dl_error());
            CHECK(dl_optim_lr(o) == 0.1, "the optimizer is unchanged");
        }
        free(b);
        dl_optim_free(o);
    }
    dl_tensor_free(ts[0]); dl_tensor_free(ts[1]);
}

/* ---- 5: messages name the public function and the reason ---- */

static void test_load_messages(void) {
    FILE *f;
    dl_clear_error();
    CHECK(dl_model_load("/nonexistent/dir/model.safetensors") == NULL && strstr(dl_error(), "dl_model_load") &&
              strstr(dl_error(), strerror(ENOENT)),
          "a missing file: '%s'", dl_error());
    f = fopen(tmp_path, "wb");
    CHECK(f != NULL, "cannot write %s", tmp_path);
    if (f) {
        int i;
        fputs("sepal_length,sepal_width,petal_length,petal_width,species\n", f);
        for (i = 0; i < 20; i++) fputs("5.1,3.5,1.4,0.2,0\n", f);
        fclose(f);
        dl_clear_error();
        CHECK(dl_model_load(tmp_path) == NULL && strstr(dl_error(), "not a safetensors file") && strstr(dl_error(), "dl_model_load"),
              "a CSV as a model: '%s'", dl_error());
        remove(tmp_path);
    }
    {
        unsigned char b[64];
        memset(b, 0, sizeof b);
        b[0] = 10;   /* a plausible length, but no JSON */
        memcpy(b + 8, "[1,2,3]   ", 10);
        dl_clear_error();
        CHECK(dl_safetensors_parse(b, 18) == NULL && strstr(dl_error(), "not a safetensors file"), "'%s'", dl_error());
        memcpy(b, "a,b,c\n1,2,3\n4,5,6\n", 18);
        dl_clear_error();
        CHECK(dl_safetensors_parse(b, 18) == NULL && strstr(dl_error(), "not a safetensors file"), "'%s'", dl_error());
    }
}

/* ---- 7: a registered custom layer is saved and loaded whole ---- */

/* y = x * scale + iconf[0] (an integer setting saved with the layer), scale [features] */
static int scale_build(dl_layer *l, int n, dl_tensor *const *in) {
    (void)n;
    return dl_layer_add_weight(l, "scale", 1, &in[0]->shape[in[0]->ndim - 1], DL_INIT_ONES, 1) ? 0 : -1;
}
static dl_tensor *scale_forward(dl_layer *l, int n, dl_tensor *const *in, int training) {
    (void)n; (void)training;
    return dl_add(dl_mul(in[0], l->params[0]), dl_scalar((float)l->iconf[0]));
}
static const dl_layer_ops scale_ops = {"MyScale", scale_build, scale_forward, NULL, 1, 1};
static const dl_layer_ops other_ops = {"MyScale", scale_build, scale_forward, NULL, 1, 1};
static const dl_layer_ops bad_ops = {"My Scale", scale_build, scale_forward, NULL, 1, 1};
static const dl_layer_ops dense_ops = {"Dense", scale_build, scale_forward, NULL, 1, 1};

static dl_layer *my_scale(int offset) {
    dl_layer *l = dl_layer_new(&scale_ops, "my_scale", NULL);
    if (l) l->iconf[0] = offset;
    return l;
}

static void test_custom_layer_saved(void) {
    dl_model *m, *l;
    dl_tensor *x, *a, *b;
    size_t size;
    unsigned char *bytes;
    dl_sym *in, *h, *out;
    m = dl_sequential(dl_Dense(4, DL_ACT_TANH), my_scale(3), dl_Dense(2, DL_ACT_LINEAR));
    CHECK(m && dl_model_build(m, 1, DL_SHAPE(5)) == 0, "%s", dl_error());
    if (!m) return;
    {
        dl_tensor *w = dl_model_layer(m, 1)->params[0];
        size_t i;
        for (i = 0; i < w->numel; i++) dl_f32(w)[i] = 0.5f + 0.25f * (float)i;
    }
    /* not registered yet: saving says what to do */
    dl_clear_error();
    CHECK(dl_model_serialize(m, 0, NULL, 0) == 0 && strstr(dl_error(), "MyScale") && strstr(dl_error(), "dl_layer_register"),
          "saving an unregistered custom layer: '%s'", dl_error());
    CHECK(dl_layer_register(&scale_ops) == 0, "%s", dl_error());
    CHECK(dl_layer_register(&scale_ops) == 0, "registering the same ops again is fine");
    dl_clear_error();
    CHECK(dl_layer_register(&other_ops) != 0 && strstr(dl_error(), "MyScale"), "another ops under the same kind: '%s'", dl_error());
    CHECK(dl_layer_register(&bad_ops) != 0, "a kind with a space");
    CHECK(dl_layer_register(&dense_ops) != 0, "a built-in kind");
    CHECK(dl_layer_register(NULL) != 0, "NULL");
    size = dl_model_serialize(m, 0, NULL, 0);
    CHECK(size > 0, "%s", dl_error());
    bytes = (unsigned char *)malloc(size ? size : 1);
    dl_model_serialize(m, 0, bytes, size);
    l = dl_model_parse(bytes, size);
    CHECK(l != NULL && dl_model_layer(l, 1)->ops == &scale_ops && dl_model_layer(l, 1)->iconf[0] == 3,
          "loaded with the registered layer: %s", l ? "" : dl_error());
    x = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(6, 5));
    {
        size_t i;
        for (i = 0; i < x->numel; i++) dl_f32(x)[i] = (float)((int)(i * 7 % 11) - 5) * 0.3f;
    }
    a = dl_predict(m, x, 4);
    b = l ? dl_predict(l, x, 4) : NULL;
    CHECK(a && b && memcmp(dl_f32(a), dl_f32(b), a->numel * sizeof(float)) == 0, "bit-identical predictions");
    dl_tensor_free(a); dl_tensor_free(b);
    dl_model_free(l);
    /* a functional graph with it */
    in = dl_Input(1, DL_SHAPE(5));
    h = dl_apply(my_scale(-1), in);
    out = dl_apply(dl_Dense(3, DL_ACT_LINEAR), h);
    {
        dl_model *g = dl_model_new(1, &in, 1, &out), *g2;
        size_t gs;
        unsigned char *gb;
        CHECK(g != NULL, "%s", dl_error());
        gs = g ? dl_model_serialize(g, 0, NULL, 0) : 0;
        gb = (unsigned char *)malloc(gs ? gs : 1);
        if (g) dl_model_serialize(g, 0, gb, gs);
        g2 = dl_model_parse(gb, gs);
        a = g ? dl_predict(g, x, 4) : NULL;
        b = g2 ? dl_predict(g2, x, 4) : NULL;
        CHECK(a && b && memcmp(dl_f32(a), dl_f32(b), a->numel * sizeof(float)) == 0, "functional: bit-identical: %s", dl_error());
        dl_tensor_free(a); dl_tensor_free(b);
        dl_model_free(g); dl_model_free(g2);
        free(gb);
    }
    /* unregistered: a clear error naming the kind and the layer */
    CHECK(dl_layer_unregister("MyScale") == 0, "unregister");
    dl_clear_error();
    l = dl_model_parse(bytes, size);
    CHECK(l == NULL && strstr(dl_error(), "MyScale") && strstr(dl_error(), "my_scale") && strstr(dl_error(), "dl_layer_register"),
          "loading without registration: '%s'", dl_error());
    dl_model_free(l);
    free(bytes);
    dl_tensor_free(x);
    dl_model_free(m);
    dl_sym_free_unused();
    dl_arena_reset(dl_arena_current());
}

int main(int argc, char **argv) {
    (void)argc;
    if (argv[0] && strlen(argv[0]) < sizeof tmp_path - 20) snprintf(tmp_path, sizeof tmp_path, "%s.tmp.csv", argv[0]);
    RUN(test_failed_load_leaves_nothing);
    RUN(test_declared_sizes_checked);
    RUN(test_long_chain);
    RUN(test_numbers_in_range);
    RUN(test_load_messages);
    RUN(test_custom_layer_saved);
    dl_sym_free_unused();
    dl_arena_free_default();
    dl_threads_shutdown();
    {
        int r = test_summary();
        fflush(stdout);
        return r;
    }
}
