/* dl_gan.h's CYCLEGAN part: the image pool (fills, then swaps with probability 1/2, seeded);
   CycleGAN's linear learning-rate decay at its boundaries; the generator's and PatchGAN's output
   shapes (28x28, 64x64, 256x256) and parameter counts (their code's 11,378,179 and 2,764,737);
   one whole training step against PyTorch (tests/data/cyclegan_step.safetensors, written by
   tools/make_cyclegan_fixture.py: every loss term, every gradient and weight after the step);
   checkpoints (a resumed run ends with the same bits as one that never stopped, pools
   included; bad files change nothing). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DL_IMPLEMENTATION
#include "../dl_gan.h"
#include "test.h"

/* images [n, 1, 2, 2], image i filled with the value base + i. */
static dl_tensor *numbered(int n, float base) {
    dl_tensor *t = dl_tmp(DL_DTYPE_F32, 4, (const int[]){n, 1, 2, 2});
    int i, j;
    for (i = 0; i < n; i++)
        for (j = 0; j < 4; j++) dl_f32(t)[i * 4 + j] = base + (float)i;
    return t;
}

static void test_pool(void) {
    dl_image_pool_opts o;
    dl_image_pool *p, *q, *none;
    dl_tensor *y;
    int i, old = 0, same = 1, draws = 20000;
    memset(&o, 0, sizeof o);
    o.size = 4;
    o.seed = 3;
    p = dl_image_pool_new(&o);
    q = dl_image_pool_new(&o);
    CHECK(p && q && dl_image_pool_size(p) == 4, "%s", dl_error());
    y = dl_image_pool_query(p, numbered(3, 0.0f));   /* not full: stored and returned */
    CHECK(y && dl_image_pool_num_images(p) == 3, "%d stored", dl_image_pool_num_images(p));
    for (i = 0; y && i < 12; i++) CHECK(dl_f32(y)[i] == (float)(i / 4), "filling returns the input");
    dl_image_pool_query(q, numbered(3, 0.0f));
    y = dl_image_pool_query(p, numbered(1, 3.0f));   /* the 4th fills it */
    CHECK(y && dl_f32(y)[0] == 3.0f && dl_image_pool_num_images(p) == 4, "the 4th image");
    dl_image_pool_query(q, numbered(1, 3.0f));
    /* full: each query returns either the new image or a stored one, which is then replaced by
       the new image; the stored values are always distinct (one per image ever seen) */
    for (i = 0; i < draws; i++) {
        float v = 100.0f + (float)i;
        dl_tensor *x = numbered(1, v), *a = dl_image_pool_query(p, x), *b = dl_image_pool_query(q, x);
        if (!a || !b) { CHECK(0, "%s", dl_error()); break; }
        same &= dl_f32(a)[0] == dl_f32(b)[0];   /* same seed, same choices */
        if (dl_f32(a)[0] != v) {
            old++;
            CHECK(dl_f32(a)[0] < v && dl_f32(a)[1] == dl_f32(a)[0], "an old image, whole");
        }
        if (i % 1000 == 999) dl_arena_reset(dl_arena_current());
    }
    CHECK(same, "two pools with the same seed chose differently");
    CHECK(fabs((double)old / draws - 0.5) < 0.015, "returned a stored image %d times of %d (expected 1/2)", old, draws);
    CHECK(dl_image_pool_num_images(p) == 4, "stays full");
    /* another seed chooses otherwise; DL_ZERO passes through; bad shapes and sizes fail */
    o.seed = 4;
    none = dl_image_pool_new(&o);
    dl_image_pool_query(none, numbered(4, 0.0f));
    same = 1;
    for (i = 0; i < 64; i++) {
        dl_tensor *x = numbered(1, 1000.0f + (float)i), *a = dl_image_pool_query(none, x), *b = dl_image_pool_query(q, x);
        same &= a && b && dl_f32(a)[0] == dl_f32(b)[0];
    }
    CHECK(!same, "seed 4 chose as seed 3");
    dl_image_pool_free(none);
    o.size = DL_ZERO;
    none = dl_image_pool_new(&o);
    y = dl_image_pool_query(none, numbered(2, 7.0f));
    CHECK(y && dl_f32(y)[4] == 8.0f && dl_image_pool_num_images(none) == 0 && dl_image_pool_size(none) == 0, "DL_ZERO: no pool");
    dl_image_pool_free(none);
    CHECK(dl_image_pool_query(p, dl_tmp(DL_DTYPE_F32, 4, (const int[]){1, 1, 2, 3})) == NULL && strstr(dl_error(), "shape"), "%s",
          dl_error());
    o.size = -5;
    CHECK(dl_image_pool_new(&o) == NULL && strstr(dl_error(), "size"), "%s", dl_error());
    memset(&o, 0, sizeof o);
    none = dl_image_pool_new(&o);
    CHECK(none && dl_image_pool_size(none) == 50, "default size 50");
    dl_image_pool_free(none);
    dl_image_pool_free(p);
    dl_image_pool_free(q);
    dl_image_pool_free(NULL);
    dl_arena_reset(dl_arena_current());
}

/* Their rule 1 - max(0, t + 1 - n_epochs) / (n_epochs_decay + 1) at its boundaries. */
static void test_lr_decay(void) {
    const double base = 2e-4;
    CHECK(dl_lr_cyclegan(base, 100, 100, 0) == base, "epoch 0");
    CHECK(dl_lr_cyclegan(base, 100, 100, 98) == base, "epoch 98");
    CHECK(dl_lr_cyclegan(base, 100, 100, 99) == base, "epoch 99: the last constant one");
    CHECK_NEAR(dl_lr_cyclegan(base, 100, 100, 100), base * (1.0 - 1.0 / 101.0), 1e-15);
    CHECK_NEAR(dl_lr_cyclegan(base, 100, 100, 150), base * (1.0 - 51.0 / 101.0), 1e-15);
    CHECK_NEAR(dl_lr_cyclegan(base, 100, 100, 199), base / 101.0, 1e-15);   /* the last epoch */
    CHECK(dl_lr_cyclegan(base, 100, 100, 200) == 0.0 && dl_lr_cyclegan(base, 100, 100, 5000) == 0.0, "0 after the end");
    CHECK(dl_lr_cyclegan(base, 100, 100, -3) == base, "negative t counts as 0");
    CHECK_NEAR(dl_lr_cyclegan(1.0, 0, 4, 0), 0.8, 1e-15);   /* no constant part: decays from the first epoch */
    CHECK(dl_lr_cyclegan(1.0, 3, 0, 2) == 1.0 && dl_lr_cyclegan(1.0, 3, 0, 3) == 0.0, "no decay part: a step to 0");
    CHECK(isnan(dl_lr_cyclegan(base, -1, 100, 0)) && strstr(dl_error(), "n_epochs"), "%s", dl_error());
    {   /* with an optimizer */
        dl_optim *opt = dl_adam(base);
        CHECK(dl_optim_set_lr(opt, dl_lr_cyclegan(base, 10, 10, 14)) == 0, "%s", dl_error());
        CHECK_NEAR(dl_optim_lr(opt), base * (1.0 - 5.0 / 11.0), 1e-15);
        dl_optim_free(opt);
    }
}

static int out_shape(dl_model *m, int c, int h, int w, int *shape) {
    dl_tensor *y = dl_model_call(m, dl_full(4, (const int[]){2, c, h, w}, 0.25f), 0);
    int i;
    if (!y) return -1;
    for (i = 0; i < 4; i++) shape[i] = y->shape[i];
    return 0;
}

static void test_shapes_and_counts(void) {
    dl_cyclegan_net_opts o;
    dl_model *m;
    int s[4];
    memset(&o, 0, sizeof o);
    o.width = 4;
    o.n_blocks = 2;
    /* 28x28 (Fashion-MNIST): 28 -> 14 -> 7 and back */
    m = dl_cyclegan_generator(1, 28, 28, &o);
    CHECK(m && out_shape(m, 1, 28, 28, s) == 0 && s[0] == 2 && s[1] == 1 && s[2] == 28 && s[3] == 28, "G 28: %s", dl_error());
    dl_model_free(m);
    o.n_layers = 2;
    m = dl_cyclegan_discriminator(1, 28, 28, &o);   /* 28 -> 14 -> 7 -> 6 -> 5 */
    CHECK(m && out_shape(m, 1, 28, 28, s) == 0 && s[1] == 1 && s[2] == 5 && s[3] == 5, "D 28, 2 layers: %d x %d", s[2], s[3]);
    dl_model_free(m);
    o.n_layers = 0;
    m = dl_cyclegan_discriminator(1, 28, 28, &o);   /* -> 3 -> 2 -> 1 */
    CHECK(m && out_shape(m, 1, 28, 28, s) == 0 && s[2] == 1 && s[3] == 1, "D 28, 3 layers: %d x %d", s[2], s[3]);
    dl_model_free(m);
    o.n_layers = 4;
    CHECK(dl_cyclegan_discriminator(1, 28, 28, &o) == NULL && strstr(dl_error(), "too small"), "%s", dl_error());
    o.n_layers = 0;
    /* 64x64 and 256x256 (narrow: the sizes are the point) */
    m = dl_cyclegan_generator(3, 64, 64, &o);
    CHECK(m && out_shape(m, 3, 64, 64, s) == 0 && s[1] == 3 && s[2] == 64 && s[3] == 64, "G 64: %s", dl_error());
    dl_model_free(m);
    m = dl_cyclegan_discriminator(3, 64, 64, &o);   /* 64 -> 32 -> 16 -> 8 -> 7 -> 6 */
    CHECK(m && out_shape(m, 3, 64, 64, s) == 0 && s[2] == 6 && s[3] == 6, "D 64: %d x %d", s[2], s[3]);
    dl_model_free(m);
    o.width = 2;
    o.n_blocks = 1;
    m = dl_cyclegan_discriminator(3, 256, 256, &o);   /* the 70x70 PatchGAN's 30x30 map */
    CHECK(m && out_shape(m, 3, 256, 256, s) == 0 && s[2] == 30 && s[3] == 30, "D 256: %d x %d", s[2], s[3]);
    dl_model_free(m);
    m = dl_cyclegan_generator(3, 256, 256, &o);
    CHECK(m && out_shape(m, 3, 256, 256, s) == 0 && s[1] == 3 && s[2] == 256 && s[3] == 256, "G 256: %s", dl_error());
    dl_model_free(m);
    CHECK(dl_cyclegan_generator(1, 30, 28, NULL) == NULL && strstr(dl_error(), "divisible by 4"), "%s", dl_error());
    dl_arena_reset(dl_arena_current());
    /* Parameter counts at their defaults (they do not depend on the image size, so small images
       keep this fast). Compared: the trainable parameters, which are their parameters
       (InstanceNorm2d(affine=False) has none); our frozen gamma and beta come on top:
       2 x (64 + 128 + 256 + 9 x 2 x 256 + 128 + 64) = 10,496 for G and 2 x (128 + 256 + 512) =
       1,792 for D. With affine_norm they train, as torch's affine=True. */
    m = dl_cyclegan_generator(3, 32, 32, NULL);
    CHECK(m && dl_model_num_params(m, 1) == 11378179L, "G: %ld trainable parameters", dl_model_num_params(m, 1));
    CHECK(m && dl_model_num_params(m, 0) == 11378179L + 10496L, "G: %ld parameters", dl_model_num_params(m, 0));
    dl_model_free(m);
    m = dl_cyclegan_discriminator(3, 32, 32, NULL);
    CHECK(m && dl_model_num_params(m, 1) == 2764737L, "D: %ld trainable parameters", dl_model_num_params(m, 1));
    CHECK(m && dl_model_num_params(m, 0) == 2764737L + 1792L, "D: %ld parameters", dl_model_num_params(m, 0));
    dl_model_free(m);
    memset(&o, 0, sizeof o);
    o.affine_norm = 1;
    m = dl_cyclegan_discriminator(3, 32, 32, &o);
    CHECK(m && dl_model_num_params(m, 1) == 2764737L + 1792L, "D affine: %ld trainable", dl_model_num_params(m, 1));
    dl_model_free(m);
    dl_arena_reset(dl_arena_current());
}

/* The fixture's tiny networks (tools/make_cyclegan_fixture.py). */
static dl_model *tiny(int gen) {
    dl_cyclegan_net_opts o;
    memset(&o, 0, sizeof o);
    o.width = 2;
    o.n_blocks = 2;
    o.n_layers = 1;
    return gen ? dl_cyclegan_generator(3, 8, 8, &o) : dl_cyclegan_discriminator(3, 8, 8, &o);
}

/* The convolutions of m in forward order (the model's layer order), and whether each one's
   bias feeds an instance norm. */
static int convs(dl_model *m, dl_layer **out, int *before_norm) {
    int i, n = 0;
    for (i = 0; i < dl_model_num_layers(m); i++) {
        dl_layer *l = dl_model_layer(m, i);
        if (strncmp(l->ops->kind, "Conv2D", 6) == 0) {
            dl_layer *next = i + 1 < dl_model_num_layers(m) ? dl_model_layer(m, i + 1) : NULL;
            before_norm[n] = next && strcmp(next->ops->kind, "InstanceNormalization") == 0;
            out[n++] = l;
        }
    }
    return n;
}

static const char *const net_names[4] = {"g_ab", "g_ba", "d_a", "d_b"};

static dl_cyclegan *fixture_cyclegan(dl_model **m, const dl_safetensors *st, const dl_cyclegan_opts *co) {
    dl_optim_opts ao;
    int k, i, n, nb[16];
    dl_layer *l[16];
    memset(&ao, 0, sizeof ao);
    ao.lr = 2e-4;
    ao.beta1 = 0.5;
    for (k = 0; k < 4; k++) {
        m[k] = tiny(k < 2);
        n = m[k] ? convs(m[k], l, nb) : 0;
        CHECK(n == (k < 2 ? 10 : 3), "%s: %d convolutions", net_names[k], n);
        for (i = 0; st && i < n; i++) {
            char name[64];
            snprintf(name, sizeof name, "init.%s.%d.kernel", net_names[k], i);
            CHECK(dl_copy(dl_layer_weight(l[i], "kernel"), dl_safetensors_get(st, name)) == 0, "%s: %s", name, dl_error());
            snprintf(name, sizeof name, "init.%s.%d.bias", net_names[k], i);
            CHECK(dl_copy(dl_layer_weight(l[i], "bias"), dl_safetensors_get(st, name)) == 0, "%s: %s", name, dl_error());
        }
    }
    return dl_cyclegan_new(m[0], m[1], m[2], m[3], dl_optim_new(DL_OPTIM_ADAM, &ao), dl_optim_new(DL_OPTIM_ADAM, &ao), co);
}

static void free_four(dl_model **m) {
    int k;
    for (k = 0; k < 4; k++) dl_model_free(m[k]);
}

/* One step against PyTorch: the losses, every gradient, every weight after Adam's update.
   Gradients are compared against the network's largest one: instance norms over 2x2 pixels are
   ill-conditioned, and torch's own float32 gradients differ from its float64 ones (same
   weights) by up to 3.7e-4 of the largest here (ours from torch's float32: 3.6e-4). A
   conv bias that feeds an instance norm has a zero gradient (the norm removes it) up to
   rounding, and Adam's first step moves it by lr g / (|g| + eps): noise, up to lr either way;
   for those only |change| <= lr is checked. */
static void test_step_vs_torch(void) {
    static const char *const losses[9] = {"gan_ab", "gan_ba", "cycle_a", "cycle_b", "idt_ab", "idt_ba", "g_loss", "d_a", "d_b"};
    dl_safetensors *st = dl_safetensors_load("tests/data/cyclegan_step.safetensors");
    dl_model *m[4];
    dl_cyclegan *cg;
    dl_cyclegan_stats s;
    double got[9];
    int k, i, j, n, nb[16];
    dl_layer *l[16];
    CHECK(st != NULL, "%s", dl_error());
    if (!st) return;
    cg = fixture_cyclegan(m, st, NULL);
    CHECK(cg && dl_cyclegan_train_step(cg, dl_safetensors_get(st, "a"), dl_safetensors_get(st, "b"), &s) == 0, "%s", dl_error());
    got[0] = s.gan_ab; got[1] = s.gan_ba; got[2] = s.cycle_a; got[3] = s.cycle_b; got[4] = s.idt_ab; got[5] = s.idt_ba;
    got[6] = s.g_loss; got[7] = s.d_a; got[8] = s.d_b;
    for (i = 0; i < 9; i++) {
        char name[32];
        snprintf(name, sizeof name, "loss.%s", losses[i]);
        CHECK(fabs(got[i] - dl_f32(dl_safetensors_get(st, name))[0]) <= 1e-5 * (1 + fabs(dl_f32(dl_safetensors_get(st, name))[0])),
              "%s: %.9g, torch %.9g", losses[i], got[i], dl_f32(dl_safetensors_get(st, name))[0]);
    }
    CHECK(s.step == 1 && dl_cyclegan_history_len(cg) == 1 && dl_cyclegan_history(cg)[0].d_b == s.d_b, "history");
    CHECK(dl_image_pool_num_images(dl_cyclegan_pool(cg, 0)) == 2 && dl_image_pool_num_images(dl_cyclegan_pool(cg, 1)) == 2,
          "the pools hold the first fakes");
    for (k = 0; k < 4; k++) {
        double gscale = 0, gerr = 0, werr = 0, noise = 0;
        n = convs(m[k], l, nb);
        for (i = 0; i < n; i++)   /* the largest gradient of the network, for the gradient tolerance */
            for (j = 0; j < 2; j++) {
                char name[64];
                const dl_tensor *want;
                size_t e;
                snprintf(name, sizeof name, "grad.%s.%d.%s", net_names[k], i, j ? "bias" : "kernel");
                want = dl_safetensors_get(st, name);
                for (e = 0; want && e < want->numel; e++) gscale = fmax(gscale, fabs(dl_f32(want)[e]));
            }
        for (i = 0; i < n; i++)
            for (j = 0; j < 2; j++) {
                char name[64];
                const dl_tensor *gw, *ww, *w0;
                dl_tensor *w = dl_layer_weight(l[i], j ? "bias" : "kernel");
                size_t e;
                snprintf(name, sizeof name, "grad.%s.%d.%s", net_names[k], i, j ? "bias" : "kernel");
                gw = dl_safetensors_get(st, name);
                snprintf(name, sizeof name, "after.%s.%d.%s", net_names[k], i, j ? "bias" : "kernel");
                ww = dl_safetensors_get(st, name);
                snprintf(name, sizeof name, "init.%s.%d.%s", net_names[k], i, j ? "bias" : "kernel");
                w0 = dl_safetensors_get(st, name);
                CHECK(gw && ww && w0 && w->grad && gw->numel == w->numel, "%s", name);
                if (!gw || !ww || !w0 || !w->grad || gw->numel != w->numel) continue;
                for (e = 0; e < w->numel; e++) {
                    if (j == 1 && nb[i]) {   /* the bias before a norm: only the size of its change */
                        noise = fmax(noise, fabs(dl_f32(w)[e] - dl_f32(w0)[e]));
                        continue;
                    }
                    gerr = fmax(gerr, fabs(w->grad[e] - dl_f32(gw)[e]));
                    werr = fmax(werr, fabs(dl_f32(w)[e] - dl_f32(ww)[e]));
                }
            }
        CHECK(gerr <= 1e-3 * gscale, "%s: gradients differ by %.3g (largest %.3g)", net_names[k], gerr, gscale);
        CHECK(werr <= 2e-6, "%s: weights after the step differ by %.3g (lr 2e-4)", net_names[k], werr);
        CHECK(noise <= 2e-4 * (1 + 1e-3), "%s: a bias before a norm moved by %.3g", net_names[k], noise);
    }
    dl_cyclegan_free(cg);
    free_four(m);
    dl_safetensors_free(st);
    dl_arena_reset(dl_arena_current());
}

/* Without identity terms (DL_ZERO), and the errors of a step. */
static void test_options_and_errors(void) {
    dl_model *m[4];
    dl_cyclegan_opts co;
    dl_cyclegan *cg;
    dl_cyclegan_stats s;
    dl_tensor *a, *b;
    memset(&co, 0, sizeof co);
    co.lambda_identity = DL_ZERO;
    dl_nn_seed(2);
    cg = fixture_cyclegan(m, NULL, &co);
    a = dl_full(4, (const int[]){2, 3, 8, 8}, 0.5f);
    b = dl_full(4, (const int[]){3, 3, 8, 8}, -0.5f);   /* batch sizes may differ */
    CHECK(cg && dl_cyclegan_train_step(cg, a, b, &s) == 0, "%s", dl_error());
    CHECK(s.idt_ab == 0 && s.idt_ba == 0 && s.g_loss > 0, "no identity terms: %g %g", s.idt_ab, s.idt_ba);
    CHECK(fabs(s.g_loss - (s.gan_ab + s.gan_ba + s.cycle_a + s.cycle_b)) < 1e-5 * s.g_loss, "the sum");
    CHECK(dl_cyclegan_set_lr(cg, 1e-3) == 0 && dl_cyclegan_set_lr(cg, -1) != 0, "set_lr");
    CHECK(dl_cyclegan_train_step(cg, dl_full(4, (const int[]){2, 3, 12, 12}, 0.0f), b, NULL) != 0, "a 12x12 batch ran");
    CHECK(dl_cyclegan_train_step(cg, a, NULL, NULL) != 0 && strstr(dl_error(), "NULL batch"), "%s", dl_error());
    CHECK(dl_cyclegan_steps(cg) == 1, "failed steps counted");
    CHECK(dl_cyclegan_new(m[0], m[0], m[2], m[3], dl_adam(1e-3), dl_adam(1e-3), NULL) == NULL && strstr(dl_error(), "four different"),
          "%s", dl_error());
    dl_cyclegan_free(cg);
    free_four(m);
    dl_arena_reset(dl_arena_current());
}

/* Steps [from, to) of a replayed data stream (batches of 2, from data_seed). */
static void run_steps(dl_cyclegan *cg, int from, int to) {
    dl_rng r;
    int i;
    size_t j;
    dl_rng_seed(&r, 99);
    for (i = 0; i < to; i++) {
        dl_tensor *a, *b;
        dl_arena_reset(dl_arena_current());
        a = dl_tmp(DL_DTYPE_F32, 4, (const int[]){2, 3, 8, 8});
        b = dl_tmp(DL_DTYPE_F32, 4, (const int[]){2, 3, 8, 8});
        for (j = 0; j < a->numel; j++) {
            dl_f32(a)[j] = tanhf(dl_rng_normal(&r));
            dl_f32(b)[j] = tanhf(0.5f + dl_rng_normal(&r));
        }
        if (i >= from) CHECK(dl_cyclegan_train_step(cg, a, b, NULL) == 0, "%s", dl_error());
    }
    dl_arena_reset(dl_arena_current());
}

static dl_cyclegan *small_run(uint64_t seed, dl_model **m) {
    dl_cyclegan_opts co;
    memset(&co, 0, sizeof co);
    co.pool_size = 3;   /* full after two steps: later steps swap */
    co.seed = 11;
    dl_nn_seed(seed);
    return fixture_cyclegan(m, NULL, &co);
}

static int same_weights(dl_model **x, dl_model **y) {
    int k, i, n, same = 1;
    dl_tensor *wx[128], *wy[128];
    for (k = 0; k < 4; k++) {
        n = dl_model_weights(x[k], 0, wx, 128);
        same &= n == dl_model_weights(y[k], 0, wy, 128);
        for (i = 0; same && i < n; i++) same = memcmp(wx[i]->data, wy[i]->data, wx[i]->numel * sizeof(float)) == 0;
    }
    return same;
}

static int same_pool(const dl_image_pool *p, const dl_image_pool *q) {
    dl_tensor *x;
    dl_image_pool *pp = (dl_image_pool *)p, *qq = (dl_image_pool *)q;
    int i, same = dl_image_pool_num_images(p) == dl_image_pool_num_images(q);
    for (i = 0; same && i < 8; i++) {   /* the same answers to the same queries: contents and generator */
        dl_tensor *a, *b;
        x = dl_full(4, (const int[]){1, 3, 8, 8}, (float)i);
        a = dl_image_pool_query(pp, x);
        b = dl_image_pool_query(qq, x);
        same = a && b && memcmp(a->data, b->data, a->numel * sizeof(float)) == 0;
    }
    return same;
}

static void test_resume_same_bits(void) {
    const char *path = "build/tests/cyclegan_ckpt.safetensors";
    dl_model *m1[4], *m2[4], *m3[4];
    dl_cyclegan *straight = small_run(1, m1), *first = small_run(1, m2), *resumed;
    run_steps(straight, 0, 6);
    run_steps(first, 0, 3);
    CHECK(dl_cyclegan_save(first, path) == 0, "%s", dl_error());
    dl_cyclegan_free(first);
    free_four(m2);
    resumed = small_run(42, m3);   /* other initial weights: everything must come from the file */
    CHECK(dl_cyclegan_load(resumed, path) == 0, "%s", dl_error());
    CHECK(dl_cyclegan_steps(resumed) == 3 && dl_cyclegan_history_len(resumed) == 3, "step %ld", dl_cyclegan_steps(resumed));
    CHECK(dl_image_pool_num_images(dl_cyclegan_pool(resumed, 0)) == 3, "pool_a restored");
    run_steps(resumed, 3, 6);
    CHECK(same_weights(m1, m3), "the resumed run differs from the straight one");
    CHECK(dl_cyclegan_history_len(resumed) == 6 &&
          memcmp(&dl_cyclegan_history(resumed)[5], &dl_cyclegan_history(straight)[5], sizeof(dl_cyclegan_stats)) == 0 &&
          dl_cyclegan_history(resumed)[1].cycle_a == dl_cyclegan_history(straight)[1].cycle_a, "history");
    CHECK(same_pool(dl_cyclegan_pool(resumed, 0), dl_cyclegan_pool(straight, 0)) &&
          same_pool(dl_cyclegan_pool(resumed, 1), dl_cyclegan_pool(straight, 1)), "pools");
    dl_cyclegan_free(straight);
    free_four(m1);
    dl_cyclegan_free(resumed);
    free_four(m3);
    dl_arena_reset(dl_arena_current());
}

/* A truncated file, a dl_gan checkpoint, another architecture, other lambdas: each fails with a
   message and leaves the cyclegan as it was (weights, step, pools). */
static void test_load_errors_change_nothing(void) {
    const char *path = "build/tests/cyclegan_ckpt2.safetensors", *cut = "build/tests/cyclegan_ckpt_cut.safetensors";
    dl_model *m[4], *w[4], *ref[4];
    dl_cyclegan *cg = small_run(1, m), *other, *twin = small_run(1, ref);
    dl_cyclegan_opts co;
    FILE *f;
    long size;
    char *bytes;
    int k;
    run_steps(cg, 0, 2);
    CHECK(dl_cyclegan_save(cg, path) == 0, "%s", dl_error());
    run_steps(cg, 2, 4);
    run_steps(twin, 0, 4);   /* the state cg must keep */
    f = fopen(path, "rb");
    CHECK(f != NULL, "no checkpoint");
    if (!f) return;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    bytes = (char *)malloc((size_t)size);
    CHECK(fread(bytes, 1, (size_t)size, f) == (size_t)size, "read");
    fclose(f);
    for (k = 0; k < 2; k++) {   /* cut in the middle, and just before the end */
        f = fopen(cut, "wb");
        fwrite(bytes, 1, k ? (size_t)size - 9 : (size_t)size / 2, f);
        fclose(f);
        CHECK(dl_cyclegan_load(cg, cut) != 0 && strstr(dl_error(), "dl_cyclegan_load"), "a truncated file loaded: %s", dl_error());
    }
    free(bytes);
    CHECK(dl_cyclegan_load(cg, "tests/data/gan_gp.safetensors") != 0 && strstr(dl_error(), "not a CycleGAN checkpoint"), "%s",
          dl_error());
    CHECK(dl_cyclegan_load(cg, "build/tests/no_such_file") != 0, "a missing file loaded");
    CHECK(same_weights(m, ref) && dl_cyclegan_steps(cg) == 4 && same_pool(dl_cyclegan_pool(cg, 0), dl_cyclegan_pool(twin, 0)) &&
          same_pool(dl_cyclegan_pool(cg, 1), dl_cyclegan_pool(twin, 1)), "a failed load changed the cyclegan");
    {   /* another architecture: a wider D_B */
        dl_cyclegan_net_opts o;
        dl_optim *g_opt = dl_adam(1e-3), *d_opt = dl_adam(1e-3);
        memset(&o, 0, sizeof o);
        o.width = 3;
        o.n_layers = 1;
        for (k = 0; k < 3; k++) w[k] = tiny(k < 2);
        w[3] = dl_cyclegan_discriminator(3, 8, 8, &o);
        memset(&co, 0, sizeof co);
        co.pool_size = 3;
        other = dl_cyclegan_new(w[0], w[1], w[2], w[3], g_opt, d_opt, &co);
        CHECK(dl_cyclegan_load(other, path) != 0 && strstr(dl_error(), "d_b/"), "%s", dl_error());
        CHECK(dl_cyclegan_steps(other) == 0, "steps changed");
        dl_cyclegan_free(other);
        dl_model_free(w[3]);
        w[3] = tiny(0);
        co.lambda_a = 5;   /* other settings */
        other = dl_cyclegan_new(w[0], w[1], w[2], w[3], dl_adam(1e-3), dl_adam(1e-3), &co);
        CHECK(dl_cyclegan_load(other, path) != 0 && strstr(dl_error(), "lambdas"), "%s", dl_error());
        dl_cyclegan_free(other);
        free_four(w);
    }
    dl_cyclegan_free(cg);
    dl_cyclegan_free(twin);
    free_four(m);
    free_four(ref);
    dl_arena_reset(dl_arena_current());
}

int main(void) {
    RUN(test_pool);
    RUN(test_lr_decay);
    RUN(test_shapes_and_counts);
    RUN(test_step_vs_torch);
    RUN(test_options_and_errors);
    RUN(test_resume_same_bits);
    RUN(test_load_errors_change_nothing);
    return test_summary();
}
