/* dl_gan.h: the GAN losses against hand-computed values; dl_model_as_layer (the Keras recipe's
   combined model: a G step leaves the frozen D bit-identical, D's own compiled training still
   updates it, any free order is fine, saving refuses); dl_gan steps (D untouched by G's step,
   G untouched by D's, a toy GAN learns a 1-D Gaussian); the WGAN-GP penalty and its gradient
   against PyTorch's double backward (tests/data/gan_gp.safetensors, written by
   tools/make_gan_fixtures.py); the Inception score and Frechet distance against torch; checkpoints (a resumed run ends with the same bits as one that
   never stopped; bad files change nothing); pictures (the grid's pixels, a chart's curve, a PNG
   read back with stb_image, which needs Debian's libstb-dev: skipped without it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_include)
#if __has_include(<stb/stb_image_write.h>) && __has_include(<stb/stb_image.h>)
#define TEST_HAVE_STB 1
#endif
#endif
#ifdef TEST_HAVE_STB   /* before the dl headers, so that they define the PNG functions */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#endif
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#endif

#define DL_IMPLEMENTATION
#include "../dl_gan.h"
#include "test.h"

static dl_tensor *tensor_of(int ndim, const int *shape, const float *v) { return dl_tmp_from(DL_DTYPE_F32, ndim, shape, v); }

static double bce_logit(double s, double t) { return fmax(s, 0) - s * t + log1p(exp(-fabs(s))); }

/* Each loss by its formula, in double precision, on three scores. */
static void test_losses_by_hand(void) {
    const float r[3] = {0.5f, -1.25f, 2.0f}, f[3] = {-0.75f, 0.25f, 1.5f};
    const int n3[1] = {3};
    dl_tensor *tr = tensor_of(1, n3, r), *tf = tensor_of(1, n3, f);
    double want_d = 0, want_g = 0, a = 0, b = 0, mr = 0, mf = 0;
    int i;
    for (i = 0; i < 3; i++) {
        want_d += (bce_logit(r[i], 0.9) + bce_logit(f[i], 0)) / 3;
        want_g += bce_logit(f[i], 1) / 3;
        a += (r[i] - 0.9) * (r[i] - 0.9) / 3;
        b += (double)f[i] * f[i] / 3;
        mr += r[i] / 3.0;
        mf += f[i] / 3.0;
    }
    CHECK_NEAR(dl_item(dl_gan_d_loss(DL_GAN_LOSS_BCE, tr, tf, 0.9f)), want_d, 1e-6);
    CHECK_NEAR(dl_item(dl_gan_g_loss(DL_GAN_LOSS_BCE, tf)), want_g, 1e-6);
    CHECK_NEAR(dl_item(dl_gan_d_loss(DL_GAN_LOSS_LSGAN, tr, tf, 0.9f)), 0.5 * (a + b), 1e-6);
    want_g = 0;
    for (i = 0; i < 3; i++) want_g += (f[i] - 1.0) * (f[i] - 1.0) / 3;
    CHECK_NEAR(dl_item(dl_gan_g_loss(DL_GAN_LOSS_LSGAN, tf)), want_g, 1e-6);
    CHECK_NEAR(dl_item(dl_gan_d_loss(DL_GAN_LOSS_WGAN_GP, tr, tf, 1.0f)), mf - mr, 1e-6);
    CHECK_NEAR(dl_item(dl_gan_g_loss(DL_GAN_LOSS_WGAN_GP, tf)), -mf, 1e-6);
    CHECK(dl_gan_d_loss((dl_gan_loss)7, tr, tf, 1.0f) == NULL && strstr(dl_error(), "unknown loss"), "%s", dl_error());
    dl_arena_reset(dl_arena_current());
}

/* A copy of every weight of m (owned), to compare bits later. */
static int snapshot(const dl_model *m, dl_tensor **out, int cap) {
    dl_tensor *w[64];
    int n = dl_model_weights(m, 0, w, 64), i;
    for (i = 0; i < n && i < cap; i++) out[i] = dl_tensor_clone(w[i]);
    return n;
}
static int same_bits(const dl_model *m, dl_tensor *const *snap, int n) {
    dl_tensor *w[64];
    int i, same = dl_model_weights(m, 0, w, 64) == n;
    for (i = 0; same && i < n; i++) same = memcmp(w[i]->data, snap[i]->data, w[i]->numel * sizeof(float)) == 0;
    return same;
}
static void free_snapshot(dl_tensor **snap, int n) {
    int i;
    for (i = 0; i < n; i++) dl_tensor_free(snap[i]);
}

static dl_tensor *normal_batch(dl_rng *r, int b, int f, float mean, float std) {
    dl_tensor *t = dl_tmp(DL_DTYPE_F32, 2, (const int[]){b, f});
    size_t i;
    for (i = 0; i < t->numel; i++) dl_f32(t)[i] = mean + std * dl_rng_normal(r);
    return t;
}

/* The lesson's recipe: d compiled; combined = g then frozen d, compiled. */
static void test_frozen_d_recipe(void) {
    dl_model *g, *d, *combined;
    dl_layer *frozen;
    dl_tensor *snap_d[16], *snap_g[16], *z, *ones, *real, *zeros;
    int nd, ng, i;
    dl_rng r;
    char buf[2048], name[64];
    dl_nn_seed(3);
    dl_rng_seed(&r, 5);
    g = dl_sequential(dl_Dense(8, DL_ACT_RELU), dl_Dense(2, DL_ACT_LINEAR));
    d = dl_sequential(dl_Dense(8, DL_ACT_LEAKY_RELU), dl_Dropout(0.25f), dl_Dense(1, DL_ACT_SIGMOID));
    CHECK(dl_compile(d, dl_adam(1e-2), DL_LOSS_BINARY_CE, DL_METRIC_ACCURACY) == 0, "%s", dl_error());
    frozen = dl_model_as_layer(d);
    frozen->trainable = 0;   /* Keras: d.trainable = False, then compile the combined model */
    combined = dl_sequential(dl_model_as_layer(g), frozen);
    CHECK(combined && dl_compile(combined, dl_adam(1e-2), DL_LOSS_BINARY_CE, 0) == 0, "%s", dl_error());
    z = normal_batch(&r, 16, 3, 0, 1);
    ones = dl_full(1, (const int[]){16}, 1.0f);
    CHECK(dl_model_build(combined, 1, (const int[]){3}) == 0, "%s", dl_error());
    CHECK(dl_model_num_params(combined, 1) == dl_model_num_params(g, 1), "only G trains in combined: %ld vs %ld",
          dl_model_num_params(combined, 1), dl_model_num_params(g, 1));
    CHECK(dl_model_num_params(combined, 0) == dl_model_num_params(g, 0) + dl_model_num_params(d, 0), "all counted");
    nd = snapshot(d, snap_d, 16);
    ng = snapshot(g, snap_g, 16);
    for (i = 0; i < 3; i++) CHECK(isfinite(dl_train_on_batch(combined, z, ones)), "%s", dl_error());
    CHECK(same_bits(d, snap_d, nd), "a G step changed the frozen D");
    CHECK(!same_bits(g, snap_g, ng), "a G step left G as it was");
    /* D's own training still updates D (it was compiled while trainable) */
    real = normal_batch(&r, 16, 2, 2, 1);
    zeros = dl_full(1, (const int[]){16}, 0.0f);
    CHECK(isfinite(dl_train_on_batch(d, real, ones)) && isfinite(dl_train_on_batch(d, dl_model_call(g, z, 0), zeros)), "%s",
          dl_error());
    CHECK(!same_bits(d, snap_d, nd), "D's own step did not change D");
    snprintf(name, sizeof name, "Non-trainable params: %ld", dl_model_num_params(d, 0));
    CHECK(dl_model_summary(combined, buf, sizeof buf) > 0 && strstr(buf, "(Model)") && strstr(buf, name), "summary:\n%s", buf);
    CHECK(dl_model_save(combined, "build/tests/gan_combined.safetensors", 0) != 0 && strstr(dl_error(), "is a model"), "%s",
          dl_error());
    free_snapshot(snap_d, nd);
    free_snapshot(snap_g, ng);
    dl_model_free(d);   /* any order: the combined model keeps g and d alive */
    dl_model_free(combined);
    dl_model_free(g);
    dl_arena_reset(dl_arena_current());
}

/* Inside a frozen wrapper, batch normalization runs on its moving statistics (Keras' rule for
   trainable = False): training the combined model leaves them alone; D's own training moves them. */
static void test_frozen_batch_norm(void) {
    dl_model *g, *d, *combined;
    dl_layer *frozen;
    dl_tensor *snap[16], *z, *ones;
    int n;
    dl_rng r;
    dl_nn_seed(4);
    dl_rng_seed(&r, 6);
    g = dl_sequential(dl_Dense(4, DL_ACT_LINEAR));
    d = dl_sequential(dl_Dense(6, DL_ACT_LINEAR), dl_BatchNormalization(0.5f, 0), dl_Dense(1, DL_ACT_LINEAR));
    CHECK(dl_compile(d, dl_sgd(0.1), DL_LOSS_BINARY_CE, 0) == 0, "%s", dl_error());
    frozen = dl_model_as_layer(d);
    frozen->trainable = 0;
    combined = dl_sequential(dl_model_as_layer(g), frozen);
    CHECK(dl_compile(combined, dl_sgd(0.1), DL_LOSS_BINARY_CE, 0) == 0, "%s", dl_error());
    z = normal_batch(&r, 8, 3, 1, 2);
    ones = dl_full(1, (const int[]){8}, 1.0f);
    CHECK(dl_model_build(combined, 1, (const int[]){3}) == 0, "%s", dl_error());
    n = snapshot(d, snap, 16);
    CHECK(isfinite(dl_train_on_batch(combined, z, ones)), "%s", dl_error());
    CHECK(same_bits(d, snap, n), "the frozen D's batch statistics moved");
    CHECK(isfinite(dl_train_on_batch(d, dl_model_call(g, z, 0), ones)), "%s", dl_error());
    CHECK(!same_bits(d, snap, n), "D's own step left D as it was");
    free_snapshot(snap, n);
    dl_model_free(combined);
    dl_model_free(g);
    dl_model_free(d);
    dl_arena_reset(dl_arena_current());
}

static dl_gan *toy_gan_ema(uint64_t seed, dl_gan_loss loss, float ema_decay, dl_model **g, dl_model **d) {
    dl_gan_opts o;
    memset(&o, 0, sizeof o);
    o.loss = loss;
    o.latent_dim = 4;
    o.seed = seed;
    o.ema_decay = ema_decay;
    dl_nn_seed(seed);
    *g = dl_sequential(dl_Dense(16, DL_ACT_RELU), dl_Dense(1, DL_ACT_LINEAR));
    *d = dl_sequential(dl_Dense(16, DL_ACT_LEAKY_RELU), dl_Dropout(0.1f), dl_Dense(1, DL_ACT_LINEAR));
    return dl_gan_new(*g, *d, dl_adam(2e-3), dl_adam(2e-3), &o);
}
static dl_gan *toy_gan(uint64_t seed, dl_gan_loss loss, dl_model **g, dl_model **d) {
    return toy_gan_ema(seed, loss, 0.0f, g, d);
}

/* The two halves of a step each train one model only; the step counter and the history. */
static void test_steps_touch_one_model(void) {
    dl_model *g, *d;
    dl_gan *gan = toy_gan(11, DL_GAN_LOSS_BCE, &g, &d);
    dl_tensor *snap[16];
    dl_gan_stats st;
    dl_rng r;
    int n;
    dl_rng_seed(&r, 1);
    CHECK(gan != NULL, "%s", dl_error());
    CHECK(dl_gan_train_step(gan, normal_batch(&r, 8, 1, 3, 0.5f), &st) == 0, "%s", dl_error());
    CHECK(st.step == 1 && isfinite(st.d_loss) && isfinite(st.g_loss) && st.d_real > 0 && st.d_real < 1, "stats");
    n = snapshot(d, snap, 16);
    CHECK(dl_gan_g_step(gan, 8, &st) == 0 && isfinite(st.g_loss), "%s", dl_error());
    CHECK(same_bits(d, snap, n), "G's step changed D");
    free_snapshot(snap, n);
    n = snapshot(g, snap, 16);
    CHECK(dl_gan_d_step(gan, normal_batch(&r, 8, 1, 3, 0.5f), &st) == 0 && isnan(st.g_loss), "%s", dl_error());
    CHECK(same_bits(g, snap, n), "D's step changed G");
    free_snapshot(snap, n);
    CHECK(dl_gan_steps(gan) == 2 && dl_gan_history_len(gan) == 3, "steps %ld rows %d", dl_gan_steps(gan), dl_gan_history_len(gan));
    CHECK(dl_gan_train_step(gan, normal_batch(&r, 8, 2, 3, 0.5f), NULL) != 0 && strstr(dl_error(), "G makes"), "%s", dl_error());
    CHECK(dl_gan_train_step(gan, NULL, NULL) != 0, "NULL batch");
    dl_gan_free(gan);
    dl_model_free(g);
    dl_model_free(d);
    dl_arena_reset(dl_arena_current());
    {   /* bad options: NULL + a message, and the optimizers are freed (ASan: no leak) */
        dl_gan_opts o;
        memset(&o, 0, sizeof o);
        CHECK(dl_gan_new(g, d, dl_adam(1e-3), dl_adam(1e-3), &o) == NULL && strstr(dl_error(), "latent_dim"), "%s", dl_error());
        o.latent_dim = 2; o.label_smoothing = 1.0f;
        CHECK(dl_gan_new(g, d, dl_adam(1e-3), dl_adam(1e-3), &o) == NULL && strstr(dl_error(), "label_smoothing"), "%s", dl_error());
    }
}

/* A GAN learns N((3, -3), 0.5^2 I) from noise: the samples' mean, for each loss (two
   dimensions: in one, WGAN-GP's two-sided penalty has a spurious minimum at slope -0.85 for a
   linear critic, which gradient descent finds). Adam as the papers use it: DCGAN's beta1 0.5;
   WGAN-GP's (0, 0.9). Checks the mean's distance after a fixed number of seeded steps. */
static void test_toy_gan_learns(void) {
    static const dl_gan_loss losses[3] = {DL_GAN_LOSS_BCE, DL_GAN_LOSS_LSGAN, DL_GAN_LOSS_WGAN_GP};
    int k;
    for (k = 0; k < 3; k++) {
        const int wgan = losses[k] == DL_GAN_LOSS_WGAN_GP, steps = wgan ? 3000 : 1500;
        dl_optim_opts oo;
        dl_gan_opts o;
        dl_model *g, *d;
        dl_gan *gan;
        dl_rng r;
        dl_tensor *x;
        double m[2] = {0, 0}, dist;
        int i;
        size_t j;
        memset(&oo, 0, sizeof oo);
        oo.lr = wgan ? 5e-4 : 1e-3;
        oo.beta1 = wgan ? DL_ZERO : 0.5;
        oo.beta2 = wgan ? 0.9 : 0.999;
        memset(&o, 0, sizeof o);
        o.loss = losses[k];
        o.latent_dim = 4;
        o.seed = 21;
        dl_nn_seed(21);
        g = dl_sequential(dl_Dense(16, DL_ACT_RELU), dl_Dense(2, DL_ACT_LINEAR));
        d = dl_sequential(dl_Dense(16, DL_ACT_LEAKY_RELU), dl_Dense(1, DL_ACT_LINEAR));
        gan = dl_gan_new(g, d, dl_optim_new(DL_OPTIM_ADAM, &oo), dl_optim_new(DL_OPTIM_ADAM, &oo), &o);
        CHECK(gan != NULL, "%s", dl_error());
        dl_rng_seed(&r, 2);
        for (i = 0; gan && i < steps; i++) {
            dl_tensor *t;
            dl_arena_reset(dl_arena_current());
            t = dl_tmp(DL_DTYPE_F32, 2, (const int[]){64, 2});
            for (j = 0; j < t->numel; j++) dl_f32(t)[j] = (j % 2 ? -3.0f : 3.0f) + 0.5f * dl_rng_normal(&r);
            if (dl_gan_train_step(gan, t, NULL) != 0) break;
        }
        CHECK(i == steps, "loss %d: step %d: %s", k, i, dl_error());
        dl_arena_reset(dl_arena_current());
        x = dl_model_call(g, dl_gan_noise(gan, 2000), 0);
        for (j = 0; j < x->numel; j++) m[j % 2] += dl_f32(x)[j] / 2000.0;
        dist = sqrt((m[0] - 3) * (m[0] - 3) + (m[1] + 3) * (m[1] + 3));
        CHECK(dist < 0.5, "loss %d: the samples' mean (%.3f, %.3f) is %.3f from (3, -3)", k, m[0], m[1], dist);
        dl_gan_free(gan);
        dl_model_free(g);
        dl_model_free(d);
    }
    dl_arena_reset(dl_arena_current());
}

/* The penalty and its weight gradient against PyTorch's autograd.grad(create_graph=True). */
static void test_gradient_penalty_vs_torch(void) {
    static const char *cases[2] = {"leaky", "tanh"};
    static const char *wn[4] = {"kernel1", "bias1", "kernel2", "bias2"};
    dl_safetensors *st = dl_safetensors_load("tests/data/gan_gp.safetensors");
    int c, i;
    CHECK(st != NULL, "%s", dl_error());
    if (!st) return;
    for (c = 0; c < 2; c++) {
        char name[64];
        dl_model *d;
        dl_tensor *w[4], *x;
        double p, scale;
        const double tol = c == 0 ? 1e-4 : 1e-3;   /* exact up to rounding / O(h^2) */
        snprintf(name, sizeof name, "%s.x_hat", cases[c]);
        x = dl_safetensors_get(st, name);
        d = dl_sequential(dl_Dense(7, c == 0 ? DL_ACT_LEAKY_RELU : DL_ACT_TANH), dl_Dense(1, DL_ACT_LINEAR));
        CHECK(x && dl_model_build(d, 1, &x->shape[1]) == 0, "%s", dl_error());
        CHECK(dl_model_weights(d, 1, w, 4) == 4, "four weights");
        for (i = 0; i < 4; i++) {
            snprintf(name, sizeof name, "%s.%s", cases[c], wn[i]);
            CHECK(dl_copy(w[i], dl_safetensors_get(st, name)) == 0, "%s: %s", name, dl_error());
            dl_zero_grad(w[i]);
        }
        p = dl_gan_gradient_penalty(d, x, 10.0f);
        scale = 0;   /* errors are measured against the largest gradient of all weights */
        for (i = 0; i < 4; i++) {
            const dl_tensor *want;
            size_t j;
            snprintf(name, sizeof name, "%s.d%s", cases[c], wn[i]);
            want = dl_safetensors_get(st, name);
            for (j = 0; want && j < want->numel; j++) scale = fmax(scale, fabs(dl_f32(want)[j]));
        }
        snprintf(name, sizeof name, "%s.penalty", cases[c]);
        CHECK_NEAR(p, dl_f32(dl_safetensors_get(st, name))[0], 1e-5);
        for (i = 0; i < 4; i++) {
            const dl_tensor *want;
            snprintf(name, sizeof name, "%s.d%s", cases[c], wn[i]);
            want = dl_safetensors_get(st, name);
            CHECK(w[i]->grad != NULL, "%s: no gradient", name);
            if (w[i]->grad) {
                double err = 0;
                size_t j;
                for (j = 0; j < want->numel; j++) err = fmax(err, fabs(w[i]->grad[j] - dl_f32(want)[j]));
                CHECK(err <= tol * scale, "%s: max error %.3g against the largest gradient %.3g", name, err, scale);
            }
        }
        dl_model_free(d);
        dl_arena_reset(dl_arena_current());
    }
    dl_safetensors_free(st);
}

/* The Inception score and the Frechet distance against torch (float64, LAPACK's eigh), and
   their known values: IS 1 for identical rows, C for one-hot rows of every class; FID 0 for a
   set against itself. */
static void test_quality_numbers(void) {
    dl_safetensors *st = dl_safetensors_load("tests/data/gan_gp.safetensors");
    float onehot[4 * 4] = {0}, same[3 * 2] = {0.25f, 0.75f, 0.25f, 0.75f, 0.25f, 0.75f};
    int i;
    CHECK(st != NULL, "%s", dl_error());
    if (!st) return;
    CHECK_NEAR(dl_frechet_distance(dl_safetensors_get(st, "fid.a"), dl_safetensors_get(st, "fid.b")),
               dl_f32(dl_safetensors_get(st, "fid.value"))[0], 1e-5);
    CHECK_NEAR(dl_frechet_distance(dl_safetensors_get(st, "fid.a"), dl_safetensors_get(st, "fid.a")), 0.0, 1e-6);
    CHECK_NEAR(dl_inception_score(dl_safetensors_get(st, "is.probs")), dl_f32(dl_safetensors_get(st, "is.value"))[0], 1e-5);
    for (i = 0; i < 4; i++) onehot[i * 4 + i] = 1.0f;
    CHECK_NEAR(dl_inception_score(tensor_of(2, (const int[]){4, 4}, onehot)), 4.0, 1e-9);
    CHECK_NEAR(dl_inception_score(tensor_of(2, (const int[]){3, 2}, same)), 1.0, 1e-7);
    onehot[0] = -0.5f;
    CHECK(isnan(dl_inception_score(tensor_of(2, (const int[]){4, 4}, onehot))) && strstr(dl_error(), "not a probability"), "%s",
          dl_error());
    CHECK(isnan(dl_frechet_distance(dl_safetensors_get(st, "fid.a"), dl_safetensors_get(st, "is.probs"))), "D mismatch");
    dl_safetensors_free(st);
    dl_arena_reset(dl_arena_current());
}

/* Train 2n steps straight, or n, save, rebuild from scratch, load, n more: the same bits. */
static void run_steps(dl_gan *gan, uint64_t data_seed, int from, int to) {
    dl_rng r;
    int i;
    dl_rng_seed(&r, data_seed);
    for (i = 0; i < to; i++) {
        dl_tensor *x;
        dl_arena_reset(dl_arena_current());
        x = normal_batch(&r, 16, 1, 3, 0.5f);   /* the data stream is replayed from its seed */
        if (i >= from) CHECK(dl_gan_train_step(gan, x, NULL) == 0, "%s", dl_error());
    }
}

static void test_resume_same_bits(void) {
    static const dl_gan_loss losses[2] = {DL_GAN_LOSS_BCE, DL_GAN_LOSS_WGAN_GP};
    const char *path = "build/tests/gan_ckpt.safetensors";
    int k;
    for (k = 0; k < 2; k++) {
        dl_model *g1, *d1, *g2, *d2;
        dl_gan *a = toy_gan(5, losses[k], &g1, &d1), *b;
        dl_tensor *snap_g[16], *snap_d[16];
        int ng, nd, same_hist;
        run_steps(a, 9, 0, 40);
        ng = snapshot(g1, snap_g, 16);
        nd = snapshot(d1, snap_d, 16);
        dl_gan_free(a);
        dl_model_free(g1);
        dl_model_free(d1);
        a = toy_gan(5, losses[k], &g1, &d1);
        run_steps(a, 9, 0, 20);
        CHECK(dl_gan_save(a, path) == 0, "%s", dl_error());
        b = toy_gan(77, losses[k], &g2, &d2);   /* other initial weights: all must come from the file */
        CHECK(dl_model_build(g2, 1, (const int[]){4}) == 0 && dl_model_build(d2, 1, (const int[]){1}) == 0, "%s", dl_error());
        CHECK(dl_gan_load(b, path) == 0, "%s", dl_error());
        run_steps(b, 9, 20, 40);
        CHECK(dl_gan_steps(b) == 40, "steps %ld", dl_gan_steps(b));
        CHECK(same_bits(g2, snap_g, ng) && same_bits(d2, snap_d, nd), "loss %d: the resumed run differs", k);
        same_hist = dl_gan_history_len(b) == 40 && dl_gan_history(b)[5].d_loss == dl_gan_history(a)[5].d_loss;
        CHECK(same_hist, "history %d rows", dl_gan_history_len(b));
        free_snapshot(snap_g, ng);
        free_snapshot(snap_d, nd);
        dl_gan_free(a);
        dl_gan_free(b);
        dl_model_free(g1); dl_model_free(d1); dl_model_free(g2); dl_model_free(d2);
    }
    dl_arena_reset(dl_arena_current());
}

/* G's weight average (ema_decay): the formula step by step (with its ramp), the swap there and
   back, the refusals while swapped; a resumed run ends with the same averages; files and gans
   that disagree on ema_decay refuse each other. */
static void test_ema(void) {
    const char *path = "build/tests/gan_ema.safetensors";
    dl_model *g, *d, *g2, *d2;
    dl_gan *a = toy_gan_ema(5, DL_GAN_LOSS_BCE, 0.9f, &g, &d), *b;
    dl_tensor *w[16], *want[16], *last[16];
    dl_rng r;
    int n = 0, i, t;
    size_t j;
    CHECK(dl_gan_ema_swap(a) != 0 && strstr(dl_error(), "no G step"), "%s", dl_error());
    dl_rng_seed(&r, 9);
    for (t = 1; t <= 12; t++) {   /* (1 + t) / (10 + t) < 0.9 until t = 80: the ramp decides */
        float dd = (1.0f + (float)t) / (10.0f + (float)t);
        dl_arena_reset(dl_arena_current());
        CHECK(dl_gan_train_step(a, normal_batch(&r, 16, 1, 3, 0.5f), NULL) == 0, "%s", dl_error());
        n = dl_model_weights(g, 0, w, 16);
        for (i = 0; i < n; i++) {
            if (t == 1) want[i] = dl_tensor_clone(w[i]);
            for (j = 0; j < w[i]->numel; j++) dl_f32(want[i])[j] = dd * dl_f32(want[i])[j] + (1.0f - dd) * dl_f32(w[i])[j];
        }
    }
    snapshot(g, last, 16);
    CHECK(dl_gan_ema_swap(a) == 0 && dl_gan_ema_swapped(a) == 1, "%s", dl_error());
    CHECK(same_bits(g, want, n), "G does not hold the averages after the swap");
    CHECK(!same_bits(g, last, n), "the averages equal the last weights");
    dl_arena_reset(dl_arena_current());
    CHECK(dl_gan_train_step(a, normal_batch(&r, 16, 1, 3, 0.5f), NULL) != 0 && strstr(dl_error(), "averaged"), "%s", dl_error());
    CHECK(dl_gan_g_step(a, 4, NULL) != 0 && dl_gan_save(a, path) != 0 && dl_gan_load(a, path) != 0, "swapped: a step or file call ran");
    CHECK(dl_gan_ema_swap(a) == 0 && dl_gan_ema_swapped(a) == 0 && same_bits(g, last, n), "the swap back did not restore G");
    CHECK(dl_gan_steps(a) == 12, "a refused step counted");
    free_snapshot(want, n);
    free_snapshot(last, n);
    dl_gan_free(a);
    dl_model_free(g);
    dl_model_free(d);
    /* 30 steps straight against 15, save, load into other weights, 15 more */
    a = toy_gan_ema(5, DL_GAN_LOSS_BCE, 0.9f, &g, &d);
    run_steps(a, 9, 0, 30);
    CHECK(dl_gan_ema_swap(a) == 0, "%s", dl_error());
    n = snapshot(g, want, 16);
    dl_gan_free(a);
    dl_model_free(g);
    dl_model_free(d);
    a = toy_gan_ema(5, DL_GAN_LOSS_BCE, 0.9f, &g, &d);
    run_steps(a, 9, 0, 15);
    CHECK(dl_gan_save(a, path) == 0, "%s", dl_error());
    b = toy_gan_ema(77, DL_GAN_LOSS_BCE, 0.9f, &g2, &d2);
    CHECK(dl_model_build(g2, 1, (const int[]){4}) == 0 && dl_model_build(d2, 1, (const int[]){1}) == 0, "%s", dl_error());
    CHECK(dl_gan_load(b, path) == 0, "%s", dl_error());
    run_steps(b, 9, 15, 30);
    CHECK(dl_gan_ema_swap(b) == 0 && same_bits(g2, want, n), "the resumed run's averages differ");
    free_snapshot(want, n);
    dl_gan_free(b);
    dl_model_free(g2);
    dl_model_free(d2);
    {   /* ema_decay must agree: another decay, none, or a file without averages */
        dl_gan *c = toy_gan_ema(5, DL_GAN_LOSS_BCE, 0.5f, &g2, &d2);
        dl_model_build(g2, 1, (const int[]){4});
        dl_model_build(d2, 1, (const int[]){1});
        CHECK(dl_gan_load(c, path) != 0 && strstr(dl_error(), "ema_decay 0.9"), "%s", dl_error());
        CHECK(dl_gan_steps(c) == 0, "a refused load changed the gan");
        dl_gan_free(c);
        dl_model_free(g2);
        dl_model_free(d2);
        c = toy_gan(5, DL_GAN_LOSS_BCE, &g2, &d2);
        dl_model_build(g2, 1, (const int[]){4});
        dl_model_build(d2, 1, (const int[]){1});
        CHECK(dl_gan_load(c, path) != 0 && strstr(dl_error(), "with an average"), "%s", dl_error());
        CHECK(dl_gan_save(c, path) == 0, "%s", dl_error());
        CHECK(dl_gan_load(a, path) != 0 && strstr(dl_error(), "without an average") && dl_gan_steps(a) == 15, "%s", dl_error());
        CHECK(dl_gan_ema_swap(c) != 0 && strstr(dl_error(), "keeps no average"), "%s", dl_error());
        dl_gan_free(c);
        dl_model_free(g2);
        dl_model_free(d2);
    }
    {
        dl_gan_opts o;
        memset(&o, 0, sizeof o);
        o.latent_dim = 4;
        o.ema_decay = 1.0f;
        CHECK(dl_gan_new(g, d, dl_adam(1e-3), dl_adam(1e-3), &o) == NULL && strstr(dl_error(), "ema_decay"), "%s", dl_error());
    }
    dl_gan_free(a);
    dl_model_free(g);
    dl_model_free(d);
    dl_arena_reset(dl_arena_current());
}

/* Bad checkpoints: a truncated file, another model's file, another architecture. Each fails
   with a message and leaves the gan as it was. */
static void test_load_errors_change_nothing(void) {
    const char *path = "build/tests/gan_ckpt2.safetensors", *cut = "build/tests/gan_ckpt_cut.safetensors";
    dl_model *g, *d, *g3, *d3;
    dl_gan *a = toy_gan(5, DL_GAN_LOSS_BCE, &g, &d), *c;
    dl_tensor *snap[16];
    FILE *f;
    long size;
    char *bytes;
    int n;
    run_steps(a, 9, 0, 3);
    CHECK(dl_gan_save(a, path) == 0, "%s", dl_error());
    run_steps(a, 10, 0, 2);
    n = snapshot(g, snap, 16);
    f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    bytes = (char *)malloc((size_t)size);
    CHECK(fread(bytes, 1, (size_t)size, f) == (size_t)size, "read");
    fclose(f);
    f = fopen(cut, "wb");
    fwrite(bytes, 1, (size_t)size / 2, f);
    fclose(f);
    free(bytes);
    CHECK(dl_gan_load(a, cut) != 0, "a truncated file loaded");
    CHECK(dl_gan_load(a, "tests/data/gan_gp.safetensors") != 0 && strstr(dl_error(), "not a GAN checkpoint"), "%s", dl_error());
    CHECK(dl_gan_load(a, "build/tests/no_such_file") != 0 && strstr(dl_error(), "dl_gan_load"), "%s", dl_error());
    CHECK(same_bits(g, snap, n) && dl_gan_steps(a) == 5, "a failed load changed the gan");
    {   /* another architecture: a wider G */
        dl_gan_opts o;
        memset(&o, 0, sizeof o);
        o.latent_dim = 4;
        dl_nn_seed(1);
        g3 = dl_sequential(dl_Dense(17, DL_ACT_RELU), dl_Dense(1, DL_ACT_LINEAR));
        d3 = dl_sequential(dl_Dense(16, DL_ACT_LEAKY_RELU), dl_Dropout(0.1f), dl_Dense(1, DL_ACT_LINEAR));
        c = dl_gan_new(g3, d3, dl_adam(1e-3), dl_adam(1e-3), &o);
        CHECK(dl_gan_load(c, path) != 0 && strstr(dl_error(), "build both models"), "unbuilt: %s", dl_error());
        dl_model_build(g3, 1, (const int[]){4});
        dl_model_build(d3, 1, (const int[]){1});
        CHECK(dl_gan_load(c, path) != 0 && strstr(dl_error(), "dense/kernel"), "%s", dl_error());
        CHECK(dl_gan_steps(c) == 0, "steps changed");
        dl_gan_free(c);
        dl_model_free(g3);
        dl_model_free(d3);
    }
    free_snapshot(snap, n);
    dl_gan_free(a);
    dl_model_free(g);
    dl_model_free(d);
    dl_arena_reset(dl_arena_current());
}

/* The grid's layout and values; a chart's curve where it should be. */
static void test_pictures(void) {
    float v[2 * 1 * 2 * 3];
    dl_tensor *img;
    unsigned char *pix, *canvas;
    int w, h, i, hits = 0;
    dl_plot_series s;
    const double xs[2] = {0, 10}, ys[2] = {0, 10};
    for (i = 0; i < 12; i++) v[i] = -1.0f + (float)i / 5.5f;
    img = tensor_of(4, (const int[]){2, 1, 2, 3}, v);
    pix = dl_image_grid(img, 0, 1, -1.0f, 1.0f, &w, &h);
    CHECK(pix && w == 2 * (3 + 1) + 1 && h == 1 * (2 + 1) + 1, "grid %d x %d", w, h);   /* 2 columns, 1 row */
    if (pix) {
        CHECK(pix[1 * w + 1] == 0 && pix[1 * w + 0] == 128, "first pixel (-1 -> 0) and the gap (128)");
        CHECK(pix[2 * w + 4 + 1 + 2] == 255, "last pixel (1 -> 255): %d", pix[2 * w + 4 + 1 + 2]);
        CHECK(abs(pix[1 * w + 2] - (int)((v[1] + 1) * 127.5f + 0.5f)) <= 1, "second pixel %d", pix[1 * w + 2]);
        dl_free(pix);
    }
    CHECK(dl_image_grid(img, 0, 1, 1.0f, 1.0f, &w, &h) == NULL && strstr(dl_error(), "lo < hi"), "%s", dl_error());
    canvas = (unsigned char *)calloc(200 * 150 * 3, 1);
    memset(&s, 0, sizeof s);
    s.name = "y=x"; s.x = xs; s.y = ys; s.n = 2;
    s.rgb[0] = 255;
    CHECK(dl_plot_draw(canvas, 200, 150, 0, 0, 200, 150, "T", 1, &s) == 0, "%s", dl_error());
    for (i = 0; i < 200 * 150; i++) hits += canvas[3 * i] == 255 && canvas[3 * i + 1] == 0 && canvas[3 * i + 2] == 0;
    /* the diagonal from (56, 130) to (192, 16) within the axes, plus the legend's mark */
    CHECK(hits > 100 && hits < 400, "%d red pixels", hits);
    CHECK(canvas[3 * (73 * 200 + 124)] == 255 && canvas[3 * (73 * 200 + 124) + 1] == 0, "the curve's middle (124, 73)");
    CHECK(dl_plot_draw(canvas, 200, 150, 150, 0, 100, 100, NULL, 1, &s) != 0, "a chart off the canvas");
    free(canvas);
    dl_arena_reset(dl_arena_current());
}

static void test_png_read_back(void) {
#ifdef TEST_HAVE_STB
    float v[3 * 3 * 4 * 4];
    dl_tensor *img;
    unsigned char *back;
    int w, h, c, i;
    dl_model *g, *d;
    dl_gan *gan;
    dl_rng r;
    for (i = 0; i < 48; i++) v[i] = (float)(i % 16) / 15.0f;
    img = tensor_of(4, (const int[]){1, 3, 4, 4}, v);
    CHECK(dl_image_grid_save(img, "build/tests/gan_grid.png", 1, 0.0f, 1.0f) == 0, "%s", dl_error());
    back = stbi_load("build/tests/gan_grid.png", &w, &h, &c, 0);
    CHECK(back && w == 8 && h == 8 && c == 3, "read back %d x %d x %d", w, h, c);
    if (back) {
        CHECK(back[(2 * 8 + 2) * 3] == 0 && back[(5 * 8 + 5) * 3 + 1] == 255 && back[0] == 128, "pixels %d %d %d",
              back[(2 * 8 + 2) * 3], back[(5 * 8 + 5) * 3 + 1], back[0]);
        stbi_image_free(back);
    }
    gan = toy_gan(3, DL_GAN_LOSS_BCE, &g, &d);
    dl_rng_seed(&r, 1);
    for (i = 0; i < 30; i++) {
        dl_arena_reset(dl_arena_current());
        dl_gan_train_step(gan, normal_batch(&r, 16, 1, 3, 0.5f), NULL);
    }
    CHECK(dl_gan_plot_save(gan, "build/tests/gan_plot.png", 0, 0) == 0, "%s", dl_error());
    back = stbi_load("build/tests/gan_plot.png", &w, &h, &c, 0);
    CHECK(back && w == 640 && h == 480 && c == 3, "plot %d x %d x %d", w, h, c);
    if (back) stbi_image_free(back);
    dl_gan_free(gan);
    dl_model_free(g);
    dl_model_free(d);
    dl_arena_reset(dl_arena_current());
#else
    SKIP("no <stb/stb_image_write.h> and <stb/stb_image.h> (Debian: libstb-dev)");
#endif
}

int main(void) {
    RUN(test_losses_by_hand);
    RUN(test_frozen_d_recipe);
    RUN(test_frozen_batch_norm);
    RUN(test_steps_touch_one_model);
    RUN(test_toy_gan_learns);
    RUN(test_gradient_penalty_vs_torch);
    RUN(test_quality_numbers);
    RUN(test_resume_same_bits);
    RUN(test_load_errors_change_nothing);
    RUN(test_ema);
    RUN(test_pictures);
    RUN(test_png_read_back);
    return test_summary();
}
