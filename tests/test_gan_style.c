/* Neural style transfer (dl_gan.h's STYLE TRANSFER section) and L-BFGS (dl_optim.h).
   The references come from PyTorch 1.13: tools/make_vgg_fixture.py writes
   tests/data/vgg_parity.safetensors (a reduced-width VGG19 with seeded random weights, three
   images, the features relu1_1..relu5_1 and relu5_2, the style, content and TV losses and the
   gradient of their sum) and tests/data/vgg_lbfgs.safetensors (torch.optim.LBFGS's iterates). */
#include <stdlib.h>

#define DL_IMPLEMENTATION
#include "../dl_gan.h"
#include "test.h"

#define PARITY "tests/data/vgg_parity.safetensors"
#define LBFGS "tests/data/vgg_lbfgs.safetensors"

static dl_rng rng;

/* max |a - b| / max |b|: the relative error of a whole tensor. */
static double rel_err(const dl_tensor *a, const dl_tensor *b) {
    const float *x = dl_contig_f32(a), *y = dl_contig_f32(b);
    double num = 0, den = 0;
    size_t i;
    if (!x || !y || a->numel != b->numel) return 1e30;
    for (i = 0; i < a->numel; i++) {
        double d = fabs((double)x[i] - y[i]);
        if (d > num || d != d) num = d;
        if (fabs((double)y[i]) > den) den = fabs((double)y[i]);
    }
    return den > 0 ? num / den : num;
}

static dl_tensor *get(dl_safetensors *st, const char *name) {
    dl_tensor *t = dl_safetensors_get(st, name);
    CHECK(t != NULL, "fixture tensor %s missing", name);
    return t;
}

/* ---- VGG19 against PyTorch ---- */

static void test_vgg_parity(void) {
    static const char *names[6] = {"relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1", "relu5_2"};
    dl_safetensors *st = dl_safetensors_load(PARITY);
    dl_vgg19 *net = dl_vgg19_load(PARITY);
    dl_tensor *image, *f[6], *sf[5], *grams[5], *cf[1], *loss, *ls, *lc, *tv;
    int layers[6], i;
    char key[32];
    CHECK(st && net, "load: %s", dl_error());
    if (!st || !net) { dl_safetensors_free(st); dl_vgg19_free(net); return; }
    CHECK(net->width_div == 32 && net->preprocess == DL_VGG_PREPROCESS_TORCH && !net->random, "width %d", net->width_div);
    for (i = 0; i < 6; i++) layers[i] = dl_vgg19_find_layer(names[i]);
    CHECK(layers[5] == dl_vgg19_find_layer("block5_conv2") && layers[5] == 13, "relu5_2 is block5_conv2");

    image = dl_tensor_clone(get(st, "image"));
    dl_set_requires_grad(image, 1);
    CHECK(dl_vgg19_features(net, image, 6, layers, f) == 0, "features: %s", dl_error());
    for (i = 0; i < 6 && f[i]; i++) {
        double e;
        snprintf(key, sizeof key, "feat.%s", names[i]);
        CHECK(dl_same_shape(f[i], get(st, key)), "%s shape", key);
        e = rel_err(f[i], get(st, key));
        CHECK(e <= 1e-4, "%s: relative error %g", key, e);
    }
    /* the losses and the gradient of their sum, as the fixture's docstring says */
    {
        dl_tensor *style = get(st, "style"), *content = get(st, "content");
        int old = dl_no_grad(1);
        CHECK(dl_vgg19_features(net, style, 5, layers, sf) == 0, "style features: %s", dl_error());
        for (i = 0; i < 5; i++) grams[i] = dl_gram(sf[i]);
        CHECK(dl_vgg19_features(net, content, 1, layers + 5, cf) == 0, "content features: %s", dl_error());
        dl_no_grad(old);
    }
    ls = dl_style_loss(5, f, grams);
    lc = dl_content_loss(1, f + 5, cf);
    tv = dl_total_variation(image);
    loss = dl_add(dl_add(ls, lc), dl_mul_scalar(tv, 1e-3f));
    CHECK(loss != NULL, "loss: %s", dl_error());
    if (loss) {
        CHECK(fabs(dl_item(ls) - dl_item(get(st, "style_loss"))) <= 1e-4 * fabs(dl_item(get(st, "style_loss"))),
              "style loss %.9g vs torch %.9g", dl_item(ls), dl_item(get(st, "style_loss")));
        CHECK(fabs(dl_item(lc) - dl_item(get(st, "content_loss"))) <= 1e-4 * fabs(dl_item(get(st, "content_loss"))),
              "content loss %.9g vs torch %.9g", dl_item(lc), dl_item(get(st, "content_loss")));
        CHECK(fabs(dl_item(tv) - dl_item(get(st, "tv"))) <= 1e-5 * fabs(dl_item(get(st, "tv"))),
              "tv %.9g vs torch %.9g", dl_item(tv), dl_item(get(st, "tv")));
        CHECK(dl_backward(loss) == 0, "backward: %s", dl_error());
        if (image->grad) {
            dl_tensor *g = dl_tmp_from(DL_DTYPE_F32, 4, image->shape, image->grad);
            double e = rel_err(g, get(st, "grad"));
            CHECK(e <= 1e-4, "d loss / d image: relative error %g", e);
        }
    }
    dl_arena_reset(dl_arena_current());
    dl_tensor_free(image);
    dl_vgg19_free(net);
    dl_safetensors_free(st);
}

/* ---- losses: gradients by finite differences, values by hand ---- */

static dl_tensor *f_style(dl_tensor **in, void *u) {
    dl_tensor *t[2];
    (void)u;
    t[0] = in[2];
    t[1] = in[3];
    return dl_style_loss(2, in, t);
}
static dl_tensor *f_content(dl_tensor **in, void *u) { (void)u; return dl_content_loss(1, in, in + 1); }
static dl_tensor *f_tv(dl_tensor **in, void *u) { (void)u; return dl_total_variation(in[0]); }

static dl_tensor *param4(int n, int c, int h, int w, int grad) {
    int s[4];
    dl_tensor *t;
    s[0] = n; s[1] = c; s[2] = h; s[3] = w;
    t = dl_tensor_new(DL_DTYPE_F32, 4, s);
    dl_fill_uniform(t, -1, 1, &rng);
    if (grad) dl_set_requires_grad(t, 1);
    return t;
}

static void test_loss_gradients(void) {
    dl_tensor *in[4];
    int i, perm[60], s3[3];
    /* style: two layers of features, their target Grams (fixed) */
    in[0] = param4(2, 3, 4, 5, 1);
    in[1] = param4(2, 4, 3, 3, 1);
    s3[0] = 2; s3[1] = 3; s3[2] = 3;
    in[2] = dl_tensor_new(DL_DTYPE_F32, 3, s3);
    dl_fill_uniform(in[2], -0.5f, 0.5f, &rng);
    s3[1] = s3[2] = 4;
    in[3] = dl_tensor_new(DL_DTYPE_F32, 3, s3);
    dl_fill_uniform(in[3], -0.5f, 0.5f, &rng);
    CHECK(dl_gradcheck(f_style, NULL, 4, in, 0, 0) == 0, "style loss: %s", dl_error());
    for (i = 0; i < 4; i++) dl_tensor_free(in[i]);
    in[0] = param4(1, 3, 4, 4, 1);
    in[1] = param4(1, 3, 4, 4, 1);
    CHECK(dl_gradcheck(f_content, NULL, 2, in, 0, 0) == 0, "content loss: %s", dl_error());
    dl_tensor_free(in[0]);
    dl_tensor_free(in[1]);
    /* TV: distinct values at least 0.04 apart, so that no difference is near |.|'s kink */
    in[0] = param4(2, 2, 3, 5, 1);
    dl_rng_permutation(&rng, 60, perm);
    for (i = 0; i < 60; i++) dl_f32(in[0])[i] = 0.05f * (float)perm[i] + 0.005f * dl_rng_uniform(&rng);
    CHECK(dl_gradcheck(f_tv, NULL, 1, in, 1e-3f, 0) == 0, "total variation: %s", dl_error());
    dl_tensor_free(in[0]);
    dl_arena_reset(dl_arena_current());
}

static void test_loss_values(void) {
    /* TV of a 1x1x2x3 image by hand: |4-1| + |5-2| + |6-3| + |2-1| + |3-2| + |5-4| + |6-5| = 13 */
    const float v[6] = {1, 2, 3, 4, 5, 6};
    const int s[4] = {1, 1, 2, 3}, s1[4] = {1, 1, 1, 1}, bad[2] = {2, 3};
    const float one = 7.0f;
    dl_tensor *x = dl_tmp_from(DL_DTYPE_F32, 4, s, v), *f[1], *g[1], *l;
    CHECK_NEAR(dl_item(dl_total_variation(x)), 13.0, 1e-6);
    CHECK_NEAR(dl_item(dl_total_variation(dl_tmp_from(DL_DTYPE_F32, 4, s1, &one))), 0.0, 0);
    CHECK(dl_total_variation(dl_tmp(DL_DTYPE_F32, 2, bad)) == NULL && strstr(dl_error(), "dl_total_variation"), "2-D rejected");
    CHECK(dl_total_variation(NULL) == NULL, "NULL in, NULL out");
    /* style loss of one layer: mean((gram - target)^2) with gram = F F^T / (H W) = 91/6 here */
    f[0] = x;
    g[0] = dl_tmp(DL_DTYPE_F32, 3, s1);   /* [1, 1, 1] zeros */
    l = dl_style_loss(1, f, g);
    CHECK(l != NULL, "%s", dl_error());
    if (l) CHECK_NEAR(dl_item(l), (91.0 / 6) * (91.0 / 6), 1e-6);
    CHECK(dl_style_loss(0, f, g) == NULL, "n = 0 rejected");
    dl_arena_reset(dl_arena_current());
}

/* ---- the loader: every error is an error, never a crash ---- */

static size_t file_bytes(const char *path, unsigned char **out) {
    FILE *fp = fopen(path, "rb");
    long n;
    *out = NULL;
    if (!fp) return 0;
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    *out = (unsigned char *)malloc((size_t)n);
    if (!*out || fread(*out, 1, (size_t)n, fp) != (size_t)n) { fclose(fp); free(*out); *out = NULL; return 0; }
    fclose(fp);
    return (size_t)n;
}

/* The fixture's 32 weight tensors, re-serialized with tensor `drop` left out and tensor
   `reshape` replaced by a tensor of the wrong shape (names as in the file; NULL for none). */
static size_t rewrite(dl_safetensors *st, const char *drop, const char *replace, dl_tensor *with,
                      const char *meta_value, unsigned char **out) {
    const char *names[64];
    dl_tensor *ts[64];
    const char *mk[1] = {"preprocess"}, *mv[1];
    int i, n = 0;
    size_t size;
    for (i = 0; i < dl_safetensors_num_tensors(st); i++) {
        const char *name = dl_safetensors_name(st, i);
        if (strncmp(name, "features.", 9) != 0 || (drop && strcmp(name, drop) == 0)) continue;
        names[n] = name;
        ts[n++] = replace && strcmp(name, replace) == 0 ? with : dl_safetensors_get(st, name);
    }
    mv[0] = meta_value;
    size = dl_safetensors_serialize(n, names, ts, meta_value ? 1 : 0, mk, mv, NULL, 0);
    *out = (unsigned char *)malloc(size);
    if (*out) dl_safetensors_serialize(n, names, ts, meta_value ? 1 : 0, mk, mv, *out, size);
    return size;
}

static void test_vgg_loader_errors(void) {
    dl_safetensors *st = dl_safetensors_load(PARITY);
    unsigned char *bytes = NULL, *b2 = NULL;
    size_t size, cut;
    dl_vgg19 *net;
    dl_tensor *wrong;
    int s4[4] = {4, 2, 3, 3}, bad_first[4] = {5, 3, 3, 3};
    CHECK(st != NULL, "%s", dl_error());
    if (!st) return;

    CHECK(dl_vgg19_load("tests/data/no_such_vgg.safetensors") == NULL && strstr(dl_error(), "dl_vgg19_load"),
          "missing file: %s", dl_error());
    CHECK(dl_vgg19_load(NULL) == NULL, "NULL path");
    CHECK(dl_vgg19_parse(NULL, 0) == NULL, "NULL bytes");

    /* the fixture's weights alone load and give the same network */
    size = rewrite(st, NULL, NULL, NULL, NULL, &bytes);
    net = dl_vgg19_parse(bytes, size);
    CHECK(net && net->width_div == 32, "weights alone: %s", dl_error());
    dl_vgg19_free(net);
    free(bytes);

    size = rewrite(st, "features.21.bias", NULL, NULL, NULL, &bytes);
    CHECK(dl_vgg19_parse(bytes, size) == NULL && strstr(dl_error(), "features.21.bias"), "missing tensor: %s", dl_error());
    free(bytes);
    size = rewrite(st, "features.0.weight", NULL, NULL, NULL, &bytes);
    CHECK(dl_vgg19_parse(bytes, size) == NULL && strstr(dl_error(), "features.0.weight"), "missing first: %s", dl_error());
    free(bytes);

    wrong = dl_tensor_new(DL_DTYPE_F32, 4, s4);   /* features.5 is [4, 2, 3, 3]: give 16.weight that */
    size = rewrite(st, NULL, "features.16.weight", wrong, NULL, &bytes);
    CHECK(dl_vgg19_parse(bytes, size) == NULL && strstr(dl_error(), "features.16.weight") && strstr(dl_error(), "shape"),
          "wrong shape: %s", dl_error());
    free(bytes);
    dl_tensor_free(wrong);
    wrong = dl_tensor_new(DL_DTYPE_F32, 4, bad_first);   /* 5 channels: 64 / 5 is no width */
    size = rewrite(st, NULL, "features.0.weight", wrong, NULL, &bytes);
    CHECK(dl_vgg19_parse(bytes, size) == NULL && strstr(dl_error(), "features.0.weight"), "bad width: %s", dl_error());
    free(bytes);
    dl_tensor_free(wrong);
    wrong = dl_tensor_new(DL_DTYPE_I32, 1, s4);   /* [4] i32 for a [4] f32 bias */
    size = rewrite(st, NULL, "features.7.bias", wrong, NULL, &bytes);
    CHECK(dl_vgg19_parse(bytes, size) == NULL && strstr(dl_error(), "f32"), "wrong dtype: %s", dl_error());
    free(bytes);
    dl_tensor_free(wrong);

    size = rewrite(st, NULL, NULL, NULL, "caffe", &bytes);
    net = dl_vgg19_parse(bytes, size);
    CHECK(net && net->preprocess == DL_VGG_PREPROCESS_CAFFE, "caffe: %s", dl_error());
    dl_vgg19_free(net);
    free(bytes);
    size = rewrite(st, NULL, NULL, NULL, "bgr?", &bytes);
    CHECK(dl_vgg19_parse(bytes, size) == NULL && strstr(dl_error(), "preprocess"), "bad preprocess: %s", dl_error());
    free(bytes);

    /* truncated files: every length short of the whole, in steps, and a few bytes flipped */
    size = file_bytes(PARITY, &bytes);
    CHECK(size > 0, "read %s", PARITY);
    for (cut = 0; cut < size; cut += cut < 256 ? 1 : 997) {
        net = dl_vgg19_parse(bytes, cut);
        CHECK(net == NULL, "truncated to %zu bytes loads", cut);
        dl_vgg19_free(net);
    }
    b2 = (unsigned char *)malloc(size);
    for (cut = 8; b2 && cut < 300; cut += 7) {
        memcpy(b2, bytes, size);
        b2[cut] ^= 0x5a;
        dl_vgg19_free(dl_vgg19_parse(b2, size));   /* an error or a network; never a crash */
    }
    free(b2);
    free(bytes);
    dl_safetensors_free(st);
}

/* ---- random networks, layer names, preprocessing ---- */

static void test_vgg_random(void) {
    dl_vgg_opts o;
    dl_vgg19 *a, *b;
    dl_rng r1, r2;
    dl_tensor *img, *f[5];
    int layers[5] = {0, 2, 4, 8, 12}, i, j, s[4] = {1, 3, 32, 32};
    memset(&o, 0, sizeof o);
    o.width_div = 16;
    dl_rng_seed(&r1, 5);
    dl_rng_seed(&r2, 5);
    a = dl_vgg19_new(&o, &r1);
    b = dl_vgg19_new(&o, &r2);
    CHECK(a && b && a->random && a->width_div == 16, "%s", dl_error());
    if (!a || !b) { dl_vgg19_free(a); dl_vgg19_free(b); return; }
    CHECK(a->w[15]->shape[0] == 32 && a->w[15]->shape[1] == 32 && a->w[0]->shape[1] == 3, "shapes");
    CHECK(memcmp(a->w[9]->data, b->w[9]->data, a->w[9]->numel * 4) == 0, "same seed, same weights");
    /* He-normal keeps the scale: every requested layer's mean square stays within 10x of the
       input's */
    img = dl_tmp(DL_DTYPE_F32, 4, s);
    dl_fill_uniform(img, 0, 1, &r1);
    CHECK(dl_vgg19_features(a, img, 5, layers, f) == 0, "%s", dl_error());
    for (i = 0; i < 5 && f[4]; i++) {
        double ms = 0;
        for (j = 0; j < (int)f[i]->numel; j++) ms += (double)dl_f32(f[i])[j] * dl_f32(f[i])[j];
        ms /= (double)f[i]->numel;
        CHECK(ms > 0.01 && ms < 100, "layer %d mean square %g", layers[i], ms);
    }
    CHECK(f[4] && f[4]->shape[1] == 32 && f[4]->shape[2] == 2, "relu5_1 is [1, 32, 2, 2]");
    /* errors */
    o.width_div = 3;
    CHECK(dl_vgg19_new(&o, &r1) == NULL && strstr(dl_error(), "width_div"), "width 3: %s", dl_error());
    CHECK(dl_vgg19_new(NULL, NULL) == NULL, "NULL rng");
    {   /* 8x8 has no room for four pools: an error, not a crash */
        int s8[4] = {1, 3, 8, 8}, deep = 12;
        CHECK(dl_vgg19_features(a, dl_tmp(DL_DTYPE_F32, 4, s8), 1, &deep, f) == -1 && f[0] == NULL,
              "8x8 image to relu5_1 rejected");
    }
    layers[0] = 16;
    CHECK(dl_vgg19_features(a, img, 1, layers, f) == -1 && f[0] == NULL, "layer 16 rejected");
    CHECK(dl_vgg19_features(a, NULL, 4, layers + 1, f) == -1 && strstr(dl_error(), "image is NULL"), "NULL image");
    CHECK(dl_vgg19_find_layer("block6_conv1") == -1 && strstr(dl_error(), "block6_conv1"), "unknown name");
    CHECK(dl_vgg19_find_layer("relu4_1") == 8 && dl_vgg19_find_layer("block4_conv1") == 8, "names");
    CHECK(strcmp(dl_vgg19_layer_name(15), "block5_conv4") == 0 && dl_vgg19_layer_name(16) == NULL, "layer_name");
    /* preprocessing: torch (x - mean) / std; caffe 255 x - mean (RGB) */
    {
        const float px[3] = {0.5f, 0.25f, 1.0f};
        const int s1[4] = {1, 3, 1, 1};
        dl_tensor *x = dl_tmp_from(DL_DTYPE_F32, 4, s1, px), *y;
        y = dl_vgg19_preprocess(a, x);
        CHECK(y && fabs(dl_f32(y)[1] - (0.25 - 0.456) / 0.224) < 1e-6, "torch preprocessing");
        a->preprocess = DL_VGG_PREPROCESS_CAFFE;
        y = dl_vgg19_preprocess(a, x);
        CHECK(y && fabs(dl_f32(y)[2] - (255.0 - 103.939)) < 1e-4 && fabs(dl_f32(y)[0] - (127.5 - 123.68)) < 1e-4,
              "caffe preprocessing");
    }
    dl_vgg19_free(a);
    dl_vgg19_free(b);
    dl_arena_reset(dl_arena_current());
}

/* ---- L-BFGS against torch.optim.LBFGS ---- */

typedef struct { dl_tensor *x, *a, *b; int evals; } problem;

static float rosen_closure(void *u) {
    problem *p = (problem *)u;
    dl_tensor *x0 = dl_slice(p->x, 0, 0, 1, 1), *x1 = dl_slice(p->x, 0, 1, 2, 1), *loss;
    /* (1 - x0)^2 + 100 (x1 - x0^2)^2, as the fixture writes it */
    loss = dl_add(dl_pow(dl_rsub_scalar(1.0f, x0), 2), dl_mul_scalar(dl_pow(dl_sub(x1, dl_pow(x0, 2)), 2), 100.0f));
    p->evals++;
    if (!loss || dl_backward(dl_sum_all(loss)) != 0) return NAN;
    return dl_item(dl_sum_all(loss));
}

static float quad_closure(void *u) {
    problem *p = (problem *)u;
    int s2[2] = {6, 1};
    dl_tensor *xc = dl_reshape(p->x, 2, s2), *loss;
    /* 0.5 x^T A x - b^T x */
    loss = dl_sub(dl_mul_scalar(dl_sum_all(dl_mul(xc, dl_matmul(p->a, xc))), 0.5f), dl_sum_all(dl_mul(p->b, p->x)));
    p->evals++;
    if (!loss || dl_backward(loss) != 0) return NAN;
    return dl_item(loss);
}

static float exp_closure(void *u) {
    problem *p = (problem *)u;
    const float c[4] = {2, 3, 4, 5};
    int four = 4;
    /* sum(exp(x)) - [2 3 4 5] . x, as the fixture writes it */
    dl_tensor *loss = dl_sub(dl_sum_all(dl_exp(p->x)), dl_sum_all(dl_mul(dl_tmp_from(DL_DTYPE_F32, 1, &four, c), p->x)));
    p->evals++;
    if (!loss || dl_backward(loss) != 0) return NAN;
    return dl_item(loss);
}

static void lbfgs_case(dl_safetensors *st, const char *prefix, dl_lbfgs_closure f, problem *p, const dl_lbfgs_opts *o) {
    char key[32];
    dl_tensor *xs, *ls;
    dl_lbfgs *opt = dl_lbfgs_new(o);
    int steps, i, d = (int)p->x->numel;
    snprintf(key, sizeof key, "%s.x", prefix);
    xs = get(st, key);
    snprintf(key, sizeof key, "%s.loss", prefix);
    ls = get(st, key);
    if (!xs || !ls || !opt) { dl_lbfgs_free(opt); return; }
    steps = ls->shape[0];
    memcpy(p->x->data, xs->data, (size_t)d * sizeof(float));
    CHECK(dl_lbfgs_add_params(opt, 1, &p->x) == 0, "%s", dl_error());
    for (i = 0; i < steps; i++) {
        float l = dl_lbfgs_step(opt, f, p);
        int j;
        dl_arena_reset(dl_arena_current());
        CHECK(fabs(l - dl_f32(ls)[i]) <= 1e-4 * (fabs(dl_f32(ls)[i]) + 1e-3), "%s step %d: loss %.9g vs torch %.9g",
              prefix, i, l, dl_f32(ls)[i]);
        for (j = 0; j < d; j++) {
            float want = dl_f32(xs)[(i + 1) * d + j];
            CHECK(fabs(dl_f32(p->x)[j] - want) <= 1e-4 * (1 + fabs(want)), "%s step %d: x[%d] %.9g vs torch %.9g",
                  prefix, i, j, dl_f32(p->x)[j], want);
        }
    }
    CHECK(dl_lbfgs_evals(opt) == p->evals, "evals counted %ld vs %d", dl_lbfgs_evals(opt), p->evals);
    snprintf(key, sizeof key, "%s.evals", prefix);
    if (get(st, key))
        CHECK(dl_lbfgs_evals(opt) == (long)dl_f32(get(st, key))[0], "%s: %ld closure calls, torch %g", prefix,
              dl_lbfgs_evals(opt), dl_f32(get(st, key))[0]);
    dl_lbfgs_free(opt);
}

static void test_lbfgs_torch(void) {
    dl_safetensors *st = dl_safetensors_load(LBFGS);
    problem p;
    dl_lbfgs_opts o;
    int two = 2, six = 6;
    CHECK(st != NULL, "%s", dl_error());
    if (!st) return;
    memset(&p, 0, sizeof p);
    p.x = dl_tensor_new(DL_DTYPE_F32, 1, &two);
    dl_set_requires_grad(p.x, 1);
    memset(&o, 0, sizeof o);
    o.max_iter = 4;                                     /* lr 1, history 100 */
    lbfgs_case(st, "rosen", rosen_closure, &p, &o);
    dl_tensor_free(p.x);
    memset(&p, 0, sizeof p);
    p.x = dl_tensor_new(DL_DTYPE_F32, 1, &six);
    dl_set_requires_grad(p.x, 1);
    p.a = get(st, "quad.A");
    p.b = get(st, "quad.b");
    o.history_size = 3;
    if (p.a && p.b) lbfgs_case(st, "quad", quad_closure, &p, &o);
    dl_tensor_free(p.x);
    /* with the strong-Wolfe line search: the zoom phase (Rosenbrock from 0) and the bracketing
       phase's extrapolation (sum(exp(x)) - c . x with lr 0.3) */
    memset(&p, 0, sizeof p);
    p.x = dl_tensor_new(DL_DTYPE_F32, 1, &two);
    dl_set_requires_grad(p.x, 1);
    memset(&o, 0, sizeof o);
    o.line_search = DL_LINE_SEARCH_STRONG_WOLFE;
    lbfgs_case(st, "wolfe_rosen", rosen_closure, &p, &o);
    dl_tensor_free(p.x);
    memset(&p, 0, sizeof p);
    six = 4;
    p.x = dl_tensor_new(DL_DTYPE_F32, 1, &six);
    dl_set_requires_grad(p.x, 1);
    o.lr = 0.3;
    o.max_iter = 2;
    o.max_eval = 20;
    lbfgs_case(st, "wolfe_exp", exp_closure, &p, &o);
    dl_tensor_free(p.x);
    dl_safetensors_free(st);
}

/* The same Rosenbrock run with x0 and x1 as two parameters: the same iterates as one. */
typedef struct { dl_tensor *x0, *x1; } two_params;
static float rosen2_closure(void *u) {
    two_params *p = (two_params *)u;
    dl_tensor *loss = dl_add(dl_pow(dl_rsub_scalar(1.0f, p->x0), 2),
                             dl_mul_scalar(dl_pow(dl_sub(p->x1, dl_pow(p->x0, 2)), 2), 100.0f));
    if (!loss || dl_backward(dl_sum_all(loss)) != 0) return NAN;
    return dl_item(dl_sum_all(loss));
}

static void test_lbfgs_two_params(void) {
    dl_safetensors *st = dl_safetensors_load(LBFGS);
    dl_tensor *xs = st ? dl_safetensors_get(st, "rosen.x") : NULL, *ps[2];
    dl_lbfgs_opts o;
    dl_lbfgs *opt;
    two_params p;
    int one = 1, i;
    CHECK(xs != NULL, "%s", dl_error());
    if (!xs) { dl_safetensors_free(st); return; }
    p.x0 = dl_tensor_new(DL_DTYPE_F32, 1, &one);
    p.x1 = dl_tensor_new(DL_DTYPE_F32, 1, &one);
    dl_f32(p.x0)[0] = dl_f32(xs)[0];
    dl_f32(p.x1)[0] = dl_f32(xs)[1];
    dl_set_requires_grad(p.x0, 1);
    dl_set_requires_grad(p.x1, 1);
    ps[0] = p.x0;
    ps[1] = p.x1;
    memset(&o, 0, sizeof o);
    o.max_iter = 4;
    opt = dl_lbfgs_new(&o);
    CHECK(opt && dl_lbfgs_add_params(opt, 2, ps) == 0, "%s", dl_error());
    for (i = 0; opt && i < xs->shape[0] - 1; i++) {
        dl_lbfgs_step(opt, rosen2_closure, &p);
        dl_arena_reset(dl_arena_current());
        CHECK(fabs(dl_f32(p.x0)[0] - dl_f32(xs)[2 * i + 2]) <= 1e-4 * (1 + fabs(dl_f32(xs)[2 * i + 2])) &&
              fabs(dl_f32(p.x1)[0] - dl_f32(xs)[2 * i + 3]) <= 1e-4 * (1 + fabs(dl_f32(xs)[2 * i + 3])),
              "step %d: (%g, %g) vs torch (%g, %g)", i, dl_f32(p.x0)[0], dl_f32(p.x1)[0], dl_f32(xs)[2 * i + 2], dl_f32(xs)[2 * i + 3]);
    }
    CHECK(opt && dl_lbfgs_iters(opt) == 4L * (xs->shape[0] - 1), "iters %ld", dl_lbfgs_iters(opt));
    dl_lbfgs_free(opt);
    dl_tensor_free(p.x0);
    dl_tensor_free(p.x1);
    dl_safetensors_free(st);
}

static float nan_closure(void *u) { (void)u; dl_set_error("closure failed on purpose"); return NAN; }

static void test_lbfgs_errors(void) {
    dl_lbfgs_opts o;
    dl_lbfgs *opt;
    dl_tensor *x, *y;
    int two = 2;
    memset(&o, 0, sizeof o);
    o.lr = -2;   /* -1 is DL_ZERO */
    CHECK(dl_lbfgs_new(&o) == NULL && strstr(dl_error(), "dl_lbfgs_new"), "negative lr");
    o.lr = 0;
    o.max_iter = -3;
    CHECK(dl_lbfgs_new(&o) == NULL, "negative max_iter");
    opt = dl_lbfgs_new(NULL);
    x = dl_tensor_new(DL_DTYPE_F32, 1, &two);
    y = dl_tensor_new(DL_DTYPE_F32, 1, &two);
    CHECK(opt != NULL, "%s", dl_error());
    CHECK(isnan(dl_lbfgs_step(opt, nan_closure, NULL)), "step without parameters");
    CHECK(dl_lbfgs_add_params(opt, 1, &y) == -1, "no requires_grad");
    dl_set_requires_grad(x, 1);
    {
        dl_tensor *twice[2];
        twice[0] = twice[1] = x;
        CHECK(dl_lbfgs_add_params(opt, 2, twice) == -1 && strstr(dl_error(), "twice"), "duplicate");
    }
    CHECK(dl_lbfgs_add_params(opt, 1, &x) == 0, "%s", dl_error());
    CHECK(dl_lbfgs_add_params(opt, 1, &x) == -1, "added twice");
    CHECK(isnan(dl_lbfgs_step(opt, nan_closure, NULL)) && strstr(dl_error(), "on purpose"), "closure error kept: %s", dl_error());
    CHECK(isnan(dl_lbfgs_step(opt, NULL, NULL)), "NULL closure");
    dl_lbfgs_free(opt);
    dl_lbfgs_free(NULL);
    dl_tensor_free(x);
    dl_tensor_free(y);
}

/* ---- the whole loop on a small random network ---- */

static void run_transfer(dl_style_optimizer which, dl_line_search search, int steps) {
    dl_vgg_opts vo;
    dl_style_transfer_opts so;
    dl_vgg19 *net;
    dl_style_transfer *st;
    dl_style_losses first, l, now;
    dl_tensor *content, *style, *img;
    dl_arena *mine = dl_arena_current();
    int s1[4] = {1, 3, 32, 32}, s2[4] = {1, 3, 24, 40}, i;
    size_t k;
    memset(&vo, 0, sizeof vo);
    vo.width_div = 16;
    net = dl_vgg19_new(&vo, &rng);
    content = dl_tensor_new(DL_DTYPE_F32, 4, s1);
    style = dl_tensor_new(DL_DTYPE_F32, 4, s2);
    dl_fill_uniform(content, 0, 1, &rng);
    dl_fill_uniform(style, 0, 1, &rng);
    memset(&so, 0, sizeof so);
    so.optimizer = which;
    so.line_search = search;
    so.style_weight = 1.0;
    so.content_weight = 1.0;
    so.tv_weight = 1e-3;
    so.lbfgs_iters = 5;
    st = dl_style_transfer_new(net, content, style, &so);
    CHECK(st != NULL, "%s", dl_error());
    if (!st) { dl_vgg19_free(net); dl_tensor_free(content); dl_tensor_free(style); return; }
    memset(&first, 0, sizeof first);
    for (i = 0; i < steps; i++) {
        CHECK(dl_style_transfer_step(st, &l) == 0, "step %d: %s", i, dl_error());
        if (i == 0) first = l;
    }
    CHECK(dl_style_transfer_losses(st, &now) == 0, "%s", dl_error());
    CHECK(first.content == 0.0f && first.style > 0, "starts at the content image: content %g style %g", first.content, first.style);
    CHECK(now.total < 0.85f * first.total, "optimizer %d, line search %d: total loss %g -> %g", (int)which, (int)search,
          first.total, now.total);
    CHECK(fabs(now.total - (now.style + now.content + now.tv)) <= 1e-5 * now.total, "total is the sum");
    img = dl_style_transfer_image(st);
    for (k = 0; k < img->numel; k++)
        if (dl_f32(img)[k] < 0 || dl_f32(img)[k] > 1) break;
    CHECK(k == img->numel, "image stays in [0, 1]");
    CHECK(dl_arena_current() == mine, "the caller's arena is left current");
    dl_style_transfer_free(st);
    dl_vgg19_free(net);
    dl_tensor_free(content);
    dl_tensor_free(style);
}

static void test_style_transfer_adam(void) { run_transfer(DL_STYLE_OPTIMIZER_ADAM, DL_LINE_SEARCH_NONE, 30); }
static void test_style_transfer_lbfgs(void) { run_transfer(DL_STYLE_OPTIMIZER_LBFGS, DL_LINE_SEARCH_NONE, 3); }
static void test_style_transfer_wolfe(void) { run_transfer(DL_STYLE_OPTIMIZER_LBFGS, DL_LINE_SEARCH_STRONG_WOLFE, 2); }

static void test_style_transfer_errors(void) {
    dl_vgg_opts vo;
    dl_style_transfer_opts so;
    dl_vgg19 *net;
    dl_tensor *c, *bad;
    int s[4] = {1, 3, 16, 16}, s1[4] = {1, 1, 16, 16};
    memset(&vo, 0, sizeof vo);
    vo.width_div = 32;
    net = dl_vgg19_new(&vo, &rng);
    c = dl_tensor_new(DL_DTYPE_F32, 4, s);
    bad = dl_tensor_new(DL_DTYPE_F32, 4, s1);
    memset(&so, 0, sizeof so);
    CHECK(dl_style_transfer_new(NULL, c, c, NULL) == NULL, "NULL net");
    CHECK(dl_style_transfer_new(net, c, bad, NULL) == NULL && strstr(dl_error(), "[1, 3, H, W]"), "gray style: %s", dl_error());
    so.style_layers = "block1_conv1,block9_conv9";
    CHECK(dl_style_transfer_new(net, c, c, &so) == NULL && strstr(dl_error(), "block9_conv9"), "bad layer: %s", dl_error());
    so.style_layers = "block1_conv1,,block2_conv1";
    CHECK(dl_style_transfer_new(net, c, c, &so) == NULL, "empty name");
    so.style_layers = NULL;
    so.style_weight = -3;
    CHECK(dl_style_transfer_new(net, c, c, &so) == NULL && strstr(dl_error(), ">= 0"), "negative weight: %s", dl_error());
    so.style_weight = 0;
    so.optimizer = (dl_style_optimizer)7;
    CHECK(dl_style_transfer_new(net, c, c, &so) == NULL, "unknown optimizer");
    CHECK(dl_style_transfer_step(NULL, NULL) == -1, "NULL step");
    dl_style_transfer_free(NULL);
    dl_vgg19_free(net);
    dl_tensor_free(c);
    dl_tensor_free(bad);
}

int main(void) {
    dl_rng_seed(&rng, 2016);
    RUN(test_vgg_parity);
    RUN(test_loss_gradients);
    RUN(test_loss_values);
    RUN(test_vgg_loader_errors);
    RUN(test_vgg_random);
    RUN(test_lbfgs_torch);
    RUN(test_lbfgs_two_params);
    RUN(test_lbfgs_errors);
    RUN(test_style_transfer_adam);
    RUN(test_style_transfer_lbfgs);
    RUN(test_style_transfer_wolfe);
    RUN(test_style_transfer_errors);
    dl_arena_free_default();
    return test_summary();
}
