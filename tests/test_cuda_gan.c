/* tests/test_cuda_gan.c - dl_gan.h with its models on the GPU (dl_cuda.cu), against the same gan
   on the CPU.

   Built like tests/test_cuda.c: by tests/run.sh with dl_cuda.cu's CPU emulation compiled in
   (DL_CUDA_EMULATE), and with DL_TEST_CUDA_LINKED against dl_cuda.cu built by nvcc on a machine
   with a GPU (without one, every test is skipped with the reason). Each test trains a CPU gan and
   a GPU copy (same weights, same seed, so the same noise) step by step:
     - a dense GAN with each loss (BCE with label smoothing and instance noise, LSGAN, WGAN-GP
       with its penalty), G's average on: the same losses, weights and averages (1e-4 relative);
     - a small DCGAN (Conv2DTranspose, BatchNormalization, LeakyReLU, Dropout 0): the same;
     - the losses, the penalty, the image pool, dl_image_grid and the quality numbers given GPU
       tensors give the CPU's numbers;
     - checkpoints: a GPU gan saves the CPU gan's bytes at the same state; loading into a GPU
       gan, then training on, matches the CPU; dl_gan_move back and forth keeps the weights
       exactly (and the tensors' addresses); training goes on after moving back;
     - a small CycleGAN on the GPU against the CPU (losses, weights, pools, checkpoint bytes);
     - errors: NULL, an unbuilt model (nothing moves: all or nothing), an unknown device. */
#define DL_CUDA
#define DL_IMPLEMENTATION
#include "dl_gan.h"
#include "cuda_test.h"   /* dl_cuda.cu (emulated unless DL_TEST_CUDA_LINKED), REQUIRE_GPU, rand_t, parity */

#include <stdio.h>

#define LATENT 3
#define TOL 1e-4

static void check_num(const char *what, double got, double want) {
    if (isnan(want)) {
        CHECK(isnan(got), "%s: GPU %g, CPU NaN", what, got);
        return;
    }
    CHECK(fabs(got - want) <= TOL * (1.0 + fabs(want)), "%s: GPU %.9g, CPU %.9g", what, got, want);
}

/* dst's weights = src's (any devices). */
static void copy_weights(dl_model *dst, dl_model *src) {
    dl_tensor *a[64], *b[64];
    int n = dl_model_weights(src, 0, a, 64), i;
    CHECK(dl_model_weights(dst, 0, b, 64) == n, "same number of weights");
    for (i = 0; i < n; i++) CHECK(dl_copy(b[i], a[i]) == 0, "copy weight %d: %s", i, dl_error());
}

static void check_stats(const char *what, const dl_gan_stats *g, const dl_gan_stats *c) {
    char w[128];
    CHECK(g->step == c->step, "%s: step %ld, CPU %ld", what, g->step, c->step);
    snprintf(w, sizeof w, "%s: d_loss", what); check_num(w, g->d_loss, c->d_loss);
    snprintf(w, sizeof w, "%s: g_loss", what); check_num(w, g->g_loss, c->g_loss);
    snprintf(w, sizeof w, "%s: d_real", what); check_num(w, g->d_real, c->d_real);
    snprintf(w, sizeof w, "%s: d_fake", what); check_num(w, g->d_fake, c->d_fake);
    snprintf(w, sizeof w, "%s: gp", what); check_num(w, g->gp, c->gp);
}

/* A real batch [b, 2] on the host (arena): points near a circle. */
static dl_tensor *dense_batch(int b) {
    dl_tensor *t = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(b, 2));
    int i;
    for (i = 0; i < b; i++) {
        float a = 6.2831853f * dl_rng_uniform(&rng);
        dl_f32(t)[2 * i] = cosf(a) + 0.05f * dl_rng_normal(&rng);
        dl_f32(t)[2 * i + 1] = sinf(a) + 0.05f * dl_rng_normal(&rng);
    }
    return t;
}

/* A real batch [b, 1, s, s] in [-1, 1] on the host (arena). */
static dl_tensor *image_batch_n(int b, int s) {
    dl_tensor *t = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(b, 1, s, s));
    dl_fill_uniform(t, -1.0f, 1.0f, &rng);
    return t;
}
static dl_tensor *image_batch(int b) { return image_batch_n(b, 8); }

typedef struct pair {
    dl_model *g[2], *d[2];   /* [0] CPU, [1] the GPU copy */
    dl_gan *gan[2];
} pair;

static void pair_free(pair *p) {
    int k;
    for (k = 0; k < 2; k++) {
        dl_gan_free(p->gan[k]);
        dl_model_free(p->g[k]);
        dl_model_free(p->d[k]);
    }
}

static dl_model *dense_g(void) { return dl_sequential(dl_Dense(8, DL_ACT_RELU), dl_Dense(2, DL_ACT_LINEAR)); }
static dl_model *dense_d(void) { return dl_sequential(dl_Dense(8, DL_ACT_LEAKY_RELU), dl_Dense(1, DL_ACT_LINEAR)); }
static dl_model *conv_g(void) {   /* z -> [1, 8, 8] */
    return dl_sequential(dl_Dense(2 * 2 * 6, DL_ACT_LINEAR), dl_BatchNormalization(0, 0), dl_LeakyReLU(0),
                         dl_Reshape(3, DL_SHAPE(6, 2, 2)), dl_Conv2DTranspose(4, 3, 2, DL_PADDING_SAME, DL_ACT_LINEAR),
                         dl_BatchNormalization(0, 0), dl_LeakyReLU(0), dl_Conv2DTranspose(1, 3, 2, DL_PADDING_SAME, DL_ACT_TANH));
}
static dl_model *conv_d(void) {
    return dl_sequential(dl_Conv2D(4, 3, 2, DL_PADDING_SAME, DL_ACT_LINEAR), dl_LeakyReLU(0), dl_Dropout(0.0f),
                         dl_Conv2D(6, 3, 2, DL_PADDING_SAME, DL_ACT_LINEAR), dl_LeakyReLU(0.2f), dl_Flatten(), dl_Dense(1, DL_ACT_LINEAR));
}

/* The optimizers of the tests: 0 Adam; 1 SGD with momentum; 2 plain SGD with a smaller rate.
   Adam only where no weight's true gradient is 0: Adam turns a gradient of rounding noise into
   a step of lr in a random direction, so the GPU and the CPU would part. Such weights: the
   biases before a batch or instance norm (the norm cancels them) and WGAN-GP critic's last
   bias (mean(fake) - mean(real) does not depend on it, nor does the penalty). */
static dl_optim *test_optim(int kind) {
    dl_optim_opts ao;
    memset(&ao, 0, sizeof ao);
    ao.lr = kind == 0 ? 2e-3 : kind == 1 ? 0.05 : 0.01;
    if (kind == 1) ao.momentum = 0.9;
    if (kind == 0) ao.beta1 = 0.5;
    return dl_optim_new(kind ? DL_OPTIM_SGD : DL_OPTIM_ADAM, &ao);
}

/* The CPU gan and its GPU copy (same weights, options, seeds). move 0: the GPU one stays on the
   CPU (the caller moves it). */
static int make_pair(pair *p, int conv, const dl_gan_opts *o, int move) {
    int k, kind = conv ? 1 : o->loss == DL_GAN_LOSS_WGAN_GP ? 2 : 0;
    memset(p, 0, sizeof *p);
    for (k = 0; k < 2; k++) {
        dl_nn_seed(21);
        p->g[k] = conv ? conv_g() : dense_g();
        p->d[k] = conv ? conv_d() : dense_d();
        if (!p->g[k] || !p->d[k] || dl_model_build(p->g[k], 1, DL_SHAPE(LATENT)) != 0 ||
            (conv ? dl_model_build(p->d[k], 3, DL_SHAPE(1, 8, 8)) : dl_model_build(p->d[k], 1, DL_SHAPE(2))) != 0)
            return -1;
        if (!(p->gan[k] = dl_gan_new(p->g[k], p->d[k], test_optim(kind), test_optim(kind), o)))
            return -1;
    }
    copy_weights(p->g[1], p->g[0]);
    copy_weights(p->d[1], p->d[0]);
    return move ? dl_gan_move(p->gan[1], GPU) : 0;
}

/* n training steps of both on the same host batches: the same numbers each step. */
static void train_both(const char *what, pair *p, int conv, int n, int batch) {
    int s;
    for (s = 0; s < n; s++) {
        dl_gan_stats st[2];
        dl_tensor *real;
        char w[96];
        int k;
        dl_arena_reset(dl_arena_current());
        real = conv ? image_batch(batch) : dense_batch(batch);
        for (k = 0; k < 2; k++) CHECK(dl_gan_train_step(p->gan[k], real, &st[k]) == 0, "%s: step %d (%s): %s", what, s, k ? "GPU" : "CPU", dl_error());
        snprintf(w, sizeof w, "%s: step %d", what, s);
        check_stats(w, &st[1], &st[0]);
    }
    dl_arena_reset(dl_arena_current());
}

/* G's averages on the GPU and equal to the CPU's: swapped in, compared, swapped back. */
static void check_ema(const char *what, pair *p) {
    char w[96];
    int k, i;
    for (i = 0; i < p->gan[1]->n_ema; i++) CHECK(p->gan[1]->ema[i]->device == GPU, "%s: average %d on the GPU", what, i);
    for (k = 0; k < 2; k++) CHECK(dl_gan_ema_swap(p->gan[k]) == 0 && dl_gan_ema_swapped(p->gan[k]), "%s: swap: %s", what, dl_error());
    snprintf(w, sizeof w, "%s: averages", what);
    check_same_weights(w, p->g[1], p->g[0], TOL);
    CHECK(dl_gan_train_step(p->gan[1], dense_batch(2), NULL) != 0 && strstr(dl_error(), "averaged"), "%s: no step while swapped", what);
    for (k = 0; k < 2; k++) CHECK(dl_gan_ema_swap(p->gan[k]) == 0 && !dl_gan_ema_swapped(p->gan[k]), "%s: swap back: %s", what, dl_error());
    snprintf(w, sizeof w, "%s: after the swaps", what);
    check_same_weights(w, p->g[1], p->g[0], TOL);
    dl_arena_reset(dl_arena_current());
}

static void test_dense(void) {
    static const char *const names[3] = {"bce", "lsgan", "wgan-gp"};
    int loss;
    REQUIRE_GPU();
    for (loss = 0; loss < 3; loss++) {
        dl_gan_opts o;
        pair p;
        char w[64];
        memset(&o, 0, sizeof o);
        o.loss = (dl_gan_loss)loss;
        o.latent_dim = LATENT;
        o.seed = 5 + (uint64_t)loss;
        o.ema_decay = 0.9f;
        if (loss == DL_GAN_LOSS_BCE) { o.label_smoothing = 0.1f; o.instance_noise = 0.05f; }
        if (loss == DL_GAN_LOSS_WGAN_GP) o.n_critic = 2;
        CHECK(make_pair(&p, 0, &o, 1) == 0, "%s: make: %s", names[loss], dl_error());
        if (test__checks_failed) { pair_free(&p); return; }
        {   /* the same noise, on G's device */
            dl_tensor *z0 = dl_gan_noise(p.gan[0], 5), *z1 = dl_gan_noise(p.gan[1], 5);
            CHECK(z1 && z1->device == GPU && z0->device == DL_DEVICE_CPU, "%s: noise devices", names[loss]);
            check_same("noise", z1, z0, 0);
        }
        train_both(names[loss], &p, 0, 5, 6);
        snprintf(w, sizeof w, "%s: G", names[loss]);
        check_same_weights(w, p.g[1], p.g[0], TOL);
        snprintf(w, sizeof w, "%s: D", names[loss]);
        check_same_weights(w, p.d[1], p.d[0], TOL);
        CHECK(dl_gan_history_len(p.gan[1]) == 5 && dl_gan_steps(p.gan[1]) == 5, "%s: history", names[loss]);
        if (loss != DL_GAN_LOSS_WGAN_GP)   /* (plain SGD has no state) */
            CHECK(dl_optim_state_tensor(p.gan[1]->g_opt, 0, (char[64]){0}, 64)->device == GPU, "%s: G's Adam state on the GPU", names[loss]);
        check_ema(names[loss], &p);
        {   /* one G step alone, and one D step alone */
            dl_gan_stats st[2];
            int k;
            dl_tensor *real;
            for (k = 0; k < 2; k++) CHECK(dl_gan_g_step(p.gan[k], 4, &st[k]) == 0, "g_step: %s", dl_error());
            check_num("g_step", st[1].g_loss, st[0].g_loss);
            real = dense_batch(4);
            for (k = 0; k < 2; k++) CHECK(dl_gan_d_step(p.gan[k], real, &st[k]) == 0, "d_step: %s", dl_error());
            check_stats("d_step", &st[1], &st[0]);
            snprintf(w, sizeof w, "%s: G after g_step", names[loss]);
            check_same_weights(w, p.g[1], p.g[0], TOL);
        }
        {   /* the pictures of the history read the host rows */
            unsigned char *a = dl_gan_plot(p.gan[1], 200, 150), *b = dl_gan_plot(p.gan[0], 200, 150);
            CHECK(a && b, "plot: %s", dl_error());
            free(a);
            free(b);
        }
        pair_free(&p);
        dl_arena_reset(dl_arena_current());
    }
}

static void test_conv(void) {
    dl_gan_opts o;
    pair p;
    REQUIRE_GPU();
    memset(&o, 0, sizeof o);
    o.latent_dim = LATENT;
    o.seed = 9;
    o.ema_decay = 0.99f;
    CHECK(make_pair(&p, 1, &o, 1) == 0, "make: %s", dl_error());
    if (!test__checks_failed) {
        train_both("dcgan", &p, 1, 3, 4);
        check_same_weights("dcgan: G", p.g[1], p.g[0], TOL);
        check_same_weights("dcgan: D", p.d[1], p.d[0], TOL);
        check_ema("dcgan", &p);
        {   /* samples as a picture: the GPU's read back */
            int w0, h0, w1, h1, grad = dl_no_grad(1);
            dl_tensor *x0 = dl_model_call(p.g[0], dl_gan_noise(p.gan[0], 5), 0), *x1 = dl_model_call(p.g[1], dl_gan_noise(p.gan[1], 5), 0);
            unsigned char *a, *b;
            dl_no_grad(grad);
            CHECK(x1 && x1->device == GPU, "samples on the GPU: %s", dl_error());
            a = dl_image_grid(x1, 3, 1, -1.0f, 1.0f, &w1, &h1);
            b = dl_image_grid(x0, 3, 1, -1.0f, 1.0f, &w0, &h0);
            CHECK(a && b && w0 == w1 && h0 == h1, "grids: %s", dl_error());
            if (a && b) {
                int i, diff = 0;
                for (i = 0; i < w0 * h0; i++) diff += abs((int)a[i] - (int)b[i]) > 1;
                CHECK(diff == 0, "%d pixels differ", diff);
            }
            free(a);
            free(b);
        }
    }
    pair_free(&p);
    dl_arena_reset(dl_arena_current());
}

/* The losses, the penalty, the pool and the quality numbers given GPU tensors. */
static void test_parts(void) {
    dl_tensor *s0, *s1, *f0, *f1, *probs, *feat;
    int loss;
    REQUIRE_GPU();
    s0 = dl_tmp(DL_DTYPE_F32, 1, DL_SHAPE(7));
    f0 = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(7, 1));
    dl_fill_uniform(s0, -2.0f, 2.0f, &rng);
    dl_fill_uniform(f0, -2.0f, 2.0f, &rng);
    s1 = dl_to_device(s0, GPU);
    f1 = dl_to_device(f0, GPU);
    for (loss = 0; loss < 3; loss++) {
        dl_tensor *a = dl_gan_d_loss((dl_gan_loss)loss, s1, f1, 0.9f), *b = dl_gan_d_loss((dl_gan_loss)loss, s0, f0, 0.9f);
        CHECK(a && a->device == GPU, "d_loss %d on the GPU: %s", loss, dl_error());
        check_num("d_loss", dl_item(a), dl_item(b));
        a = dl_gan_g_loss((dl_gan_loss)loss, f1);
        b = dl_gan_g_loss((dl_gan_loss)loss, f0);
        CHECK(a && a->device == GPU, "g_loss %d on the GPU: %s", loss, dl_error());
        check_num("g_loss", dl_item(a), dl_item(b));
    }
    {   /* the penalty: the value and the gradients it leaves in D's weights (x_hat on either device) */
        dl_model *d[2];
        dl_tensor *x = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(5, 2)), *w0[8], *w1[8];
        double gp[2];
        int k, n, i;
        dl_fill_uniform(x, -1.0f, 1.0f, &rng);
        for (k = 0; k < 2; k++) {
            dl_nn_seed(3);
            d[k] = dense_d();
            CHECK(d[k] && dl_model_build(d[k], 1, DL_SHAPE(2)) == 0, "build: %s", dl_error());
        }
        copy_weights(d[1], d[0]);
        CHECK(dl_model_move(d[1], GPU) == 0, "move: %s", dl_error());
        n = dl_model_weights(d[0], 1, w0, 8);
        dl_model_weights(d[1], 1, w1, 8);
        for (i = 0; i < n; i++) { dl_zero_grad(w0[i]); dl_zero_grad(w1[i]); }
        gp[0] = dl_gan_gradient_penalty(d[0], x, 10.0f);
        gp[1] = dl_gan_gradient_penalty(d[1], dl_to_device(x, GPU), 10.0f);
        check_num("penalty", gp[1], gp[0]);
        for (i = 0; i < n; i++) {
            dl_tensor g0 = *w0[i], g1 = *w1[i];
            g0.data = w0[i]->grad; g1.data = w1[i]->grad;
            CHECK(w0[i]->grad && w1[i]->grad, "gradient %d", i);
            if (w0[i]->grad && w1[i]->grad) check_same("penalty gradient", &g1, &g0, 1e-3);
        }
        check_num("penalty, host x_hat", dl_gan_gradient_penalty(d[1], x, 10.0f), gp[0]);
        dl_model_free(d[0]);
        dl_model_free(d[1]);
    }
    {   /* the image pool: GPU images give the CPU pool's answers, on the GPU */
        dl_image_pool_opts po;
        dl_image_pool *p[2];
        int step, k;
        memset(&po, 0, sizeof po);
        po.size = 3;
        po.seed = 4;
        p[0] = dl_image_pool_new(&po);
        p[1] = dl_image_pool_new(&po);
        for (step = 0; step < 4; step++) {
            dl_tensor *im = dl_tmp(DL_DTYPE_F32, 4, DL_SHAPE(2, 1, 2, 3)), *y[2];
            dl_fill_uniform(im, 0.0f, 1.0f, &rng);
            y[0] = dl_image_pool_query(p[0], im);
            y[1] = dl_image_pool_query(p[1], dl_to_device(im, GPU));
            CHECK(y[1] && y[1]->device == GPU, "pool answer on the GPU: %s", dl_error());
            check_same("pool", y[1], y[0], 0);
        }
        for (k = 0; k < 2; k++) CHECK(dl_image_pool_num_images(p[k]) == 3, "pool full");
        CHECK(memcmp(p[0]->images, p[1]->images, 3 * 6 * sizeof(float)) == 0, "the same stored images");
        dl_image_pool_free(p[0]);
        dl_image_pool_free(p[1]);
    }
    /* the quality numbers copy GPU tensors to the host */
    probs = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(6, 4));
    dl_fill_uniform(probs, 0.0f, 1.0f, &rng);
    {
        float *p = dl_f32(probs);
        int i, j;
        for (i = 0; i < 6; i++) {
            float sum = 0;
            for (j = 0; j < 4; j++) sum += p[i * 4 + j];
            for (j = 0; j < 4; j++) p[i * 4 + j] /= sum;
        }
    }
    CHECK(dl_inception_score(dl_to_device(probs, GPU)) == dl_inception_score(probs), "inception score");
    feat = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(9, 3));
    dl_fill_uniform(feat, -1.0f, 1.0f, &rng);
    {
        dl_tensor *other = dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(8, 3));
        double want;
        dl_fill_uniform(other, -1.0f, 2.0f, &rng);
        want = dl_frechet_distance(feat, other);
        CHECK(dl_frechet_distance(dl_to_device(feat, GPU), dl_to_device(other, GPU)) == want, "frechet (both on the GPU)");
        CHECK(dl_frechet_distance(feat, dl_to_device(other, GPU)) == want, "frechet (one on the GPU)");
    }
    dl_arena_reset(dl_arena_current());
}

/* The bytes of a file (owned), *n its size. */
static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    unsigned char *b;
    long len;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    b = (unsigned char *)malloc((size_t)len + 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static int same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

static void test_checkpoint(void) {
    const char *pc = "build/tests/cuda_gan_cpu.safetensors", *pg = "build/tests/cuda_gan_gpu.safetensors";
    dl_gan_opts o;
    pair p;
    REQUIRE_GPU();
    memset(&o, 0, sizeof o);
    o.latent_dim = LATENT;
    o.seed = 12;
    o.ema_decay = 0.95f;
    CHECK(make_pair(&p, 1, &o, 1) == 0, "make: %s", dl_error());
    if (!test__checks_failed) {
        /* a fresh pair: the same state, the same bytes */
        CHECK(dl_gan_save(p.gan[0], pc) == 0 && dl_gan_save(p.gan[1], pg) == 0, "save: %s", dl_error());
        CHECK(same_file(pc, pg), "fresh: the GPU gan's checkpoint has the CPU's bytes");
        train_both("checkpoint", &p, 1, 3, 4);
        /* the CPU's state into the GPU gan, then saved from the GPU: the CPU's bytes */
        CHECK(dl_gan_save(p.gan[0], pc) == 0, "save: %s", dl_error());
        CHECK(dl_gan_load(p.gan[1], pc) == 0, "load into the GPU gan: %s", dl_error());
        check_same_weights("loaded G", p.g[1], p.g[0], 0);
        check_same_weights("loaded D", p.d[1], p.d[0], 0);
        CHECK(dl_gan_save(p.gan[1], pg) == 0, "save from the GPU: %s", dl_error());
        CHECK(same_file(pc, pg), "trained: the GPU gan's checkpoint has the CPU's bytes");
        /* and both go on alike */
        train_both("after the load", &p, 1, 2, 4);
        check_same_weights("after the load: G", p.g[1], p.g[0], TOL);
        check_ema("after the load", &p);
        /* a GPU checkpoint loads into a CPU gan */
        CHECK(dl_gan_save(p.gan[1], pg) == 0 && dl_gan_load(p.gan[0], pg) == 0, "GPU file into the CPU gan: %s", dl_error());
        check_same_weights("GPU file, CPU gan", p.g[1], p.g[0], 0);
    }
    pair_free(&p);
    remove(pc);
    remove(pg);
    dl_arena_reset(dl_arena_current());
}

static void test_move_round_trip(void) {
    dl_gan_opts o;
    pair p;
    dl_tensor *w[64];
    float *before[64];
    dl_tensor *ema0;
    int n, i;
    REQUIRE_GPU();
    memset(&o, 0, sizeof o);
    o.latent_dim = LATENT;
    o.seed = 2;
    o.ema_decay = 0.9f;
    CHECK(make_pair(&p, 1, &o, 1) == 0, "make: %s", dl_error());
    if (test__checks_failed) { pair_free(&p); return; }
    train_both("round trip", &p, 1, 2, 4);
    n = dl_model_weights(p.g[1], 0, w, 64);
    for (i = 0; i < n; i++) {
        before[i] = (float *)malloc(w[i]->numel * 4);
        dl_tensor_read(w[i], before[i]);
    }
    ema0 = p.gan[1]->ema[0];
    CHECK(dl_gan_move(p.gan[1], DL_DEVICE_CPU) == 0, "to the CPU: %s", dl_error());
    CHECK(w[0]->device == DL_DEVICE_CPU && ema0->device == DL_DEVICE_CPU && p.d[1]->device == DL_DEVICE_CPU, "all on the CPU");
    CHECK(dl_gan_move(p.gan[1], DL_DEVICE_CPU) == 0, "again: nothing to do: %s", dl_error());
    CHECK(dl_gan_move(p.gan[1], GPU) == 0, "back: %s", dl_error());
    CHECK(p.gan[1]->ema[0] == ema0 && ema0->device == GPU, "the averages moved in place");
    for (i = 0; i < n; i++) {
        float *now = (float *)malloc(w[i]->numel * 4);
        CHECK(w[i]->device == GPU && dl_tensor_read(w[i], now) == 0 && memcmp(now, before[i], w[i]->numel * 4) == 0,
              "weight %d kept exactly, in place", i);
        free(now);
        free(before[i]);
    }
    train_both("after the round trip", &p, 1, 1, 4);
    check_same_weights("after the round trip: G", p.g[1], p.g[0], TOL);
    /* training on the CPU after moving back */
    CHECK(dl_gan_move(p.gan[1], DL_DEVICE_CPU) == 0, "to the CPU: %s", dl_error());
    {
        dl_gan_stats st[2];
        dl_tensor *real = image_batch(4);
        int k;
        for (k = 0; k < 2; k++) CHECK(dl_gan_train_step(p.gan[k], real, &st[k]) == 0, "CPU step: %s", dl_error());
        check_stats("back on the CPU", &st[1], &st[0]);
    }
    pair_free(&p);
    dl_arena_reset(dl_arena_current());
}

/* A small CycleGAN on the CPU and on the GPU: 16x16 images (at 8x8 the residual blocks
   normalize 2x2 maps, which magnify rounding differences past 1e-4 within two steps). */
static void test_cyclegan(void) {
    const char *pc = "build/tests/cuda_cg_cpu.safetensors", *pg = "build/tests/cuda_cg_gpu.safetensors";
    dl_model *m[2][4];
    dl_cyclegan *cg[2];
    dl_cyclegan_net_opts no;
    dl_cyclegan_opts co;
    int k, i, s;
    REQUIRE_GPU();
    memset(&no, 0, sizeof no);
    no.width = 2;
    no.n_blocks = 1;
    no.n_layers = 1;
    memset(&co, 0, sizeof co);
    co.pool_size = 3;
    co.seed = 8;
    for (k = 0; k < 2; k++) {
        dl_nn_seed(31);
        m[k][0] = dl_cyclegan_generator(1, 16, 16, &no);
        m[k][1] = dl_cyclegan_generator(1, 16, 16, &no);
        m[k][2] = dl_cyclegan_discriminator(1, 16, 16, &no);
        m[k][3] = dl_cyclegan_discriminator(1, 16, 16, &no);
        CHECK(m[k][0] && m[k][1] && m[k][2] && m[k][3], "nets: %s", dl_error());
        cg[k] = dl_cyclegan_new(m[k][0], m[k][1], m[k][2], m[k][3], test_optim(2), test_optim(2), &co);
        CHECK(cg[k] != NULL, "new: %s", dl_error());
    }
    if (test__checks_failed) return;
    for (i = 0; i < 4; i++) copy_weights(m[1][i], m[0][i]);
    CHECK(dl_cyclegan_move(cg[1], GPU) == 0, "move: %s", dl_error());
    for (s = 0; s < 3; s++) {
        dl_cyclegan_stats st[2];
        dl_tensor *a = image_batch_n(2, 16), *b = image_batch_n(2, 16);
        for (k = 0; k < 2; k++) CHECK(dl_cyclegan_train_step(cg[k], a, b, &st[k]) == 0, "step %d (%s): %s", s, k ? "GPU" : "CPU", dl_error());
        check_num("g_loss", st[1].g_loss, st[0].g_loss);
        check_num("gan_ab", st[1].gan_ab, st[0].gan_ab);
        check_num("cycle_a", st[1].cycle_a, st[0].cycle_a);
        check_num("idt_ba", st[1].idt_ba, st[0].idt_ba);
        check_num("d_a", st[1].d_a, st[0].d_a);
        check_num("d_b", st[1].d_b, st[0].d_b);
        dl_arena_reset(dl_arena_current());
    }
    for (i = 0; i < 4; i++) check_same_weights("cyclegan", m[1][i], m[0][i], TOL);
    for (k = 0; k < 2; k++) {
        dl_image_pool *p0 = dl_cyclegan_pool(cg[0], k), *p1 = dl_cyclegan_pool(cg[1], k);
        size_t j;
        int bad = 0;
        CHECK(dl_image_pool_num_images(p0) == 3 && dl_image_pool_num_images(p1) == 3, "pools full");
        for (j = 0; j < 3 * p0->per; j++) bad += !(fabs((double)p0->images[j] - p1->images[j]) <= TOL * (1 + fabs((double)p0->images[j])));
        CHECK(bad == 0, "pool %d: %d values differ", k, bad);
    }
    CHECK(dl_cyclegan_save(cg[0], pc) == 0 && dl_cyclegan_load(cg[1], pc) == 0 && dl_cyclegan_save(cg[1], pg) == 0,
          "checkpoints: %s", dl_error());
    CHECK(same_file(pc, pg), "the GPU cyclegan's checkpoint has the CPU's bytes");
    CHECK(dl_cyclegan_move(cg[1], DL_DEVICE_CPU) == 0 && m[1][3]->device == DL_DEVICE_CPU, "back to the CPU: %s", dl_error());
    CHECK(dl_cyclegan_move(NULL, GPU) != 0 && strstr(dl_error(), "dl_cyclegan_move: NULL"), "NULL: %s", dl_error());
    for (k = 0; k < 2; k++) {
        dl_cyclegan_free(cg[k]);
        for (i = 0; i < 4; i++) dl_model_free(m[k][i]);
    }
    remove(pc);
    remove(pg);
    dl_arena_reset(dl_arena_current());
}

static void test_errors(void) {
    dl_gan_opts o;
    dl_model *g, *d;
    dl_gan *gan;
    dl_tensor *w[8];
    int n, i;
    REQUIRE_GPU();
    dl_clear_error();
    CHECK(dl_gan_move(NULL, GPU) != 0 && strstr(dl_error(), "dl_gan_move: NULL gan"), "NULL: %s", dl_error());
    memset(&o, 0, sizeof o);
    o.latent_dim = LATENT;
    o.ema_decay = 0.5f;
    g = dense_g();
    d = dense_d();
    CHECK(dl_model_build(g, 1, DL_SHAPE(LATENT)) == 0, "build G: %s", dl_error());
    gan = dl_gan_new(g, d, dl_adam(1e-3), dl_adam(1e-3), &o);
    /* D unbuilt: G moves first, then D fails, so G goes back (all or nothing) */
    CHECK(dl_gan_move(gan, GPU) != 0 && strstr(dl_error(), "dl_gan_move: ") && strstr(dl_error(), "not built"), "unbuilt D: %s", dl_error());
    n = dl_model_weights(g, 0, w, 8);
    for (i = 0; i < n; i++) CHECK(w[i]->device == DL_DEVICE_CPU, "G's weight %d went back", i);
    CHECK(dl_model_build(d, 1, DL_SHAPE(2)) == 0, "build D: %s", dl_error());
    dl_clear_error();
    CHECK(dl_gan_move(gan, (dl_device)7) != 0 && strstr(dl_error(), "dl_gan_move: ") && strstr(dl_error(), "unknown device"),
          "unknown device: %s", dl_error());
    for (i = 0; i < n; i++) CHECK(w[i]->device == DL_DEVICE_CPU, "weight %d stayed", i);
    CHECK(gan->g_opt->device == DL_DEVICE_CPU && gan->d_opt->device == DL_DEVICE_CPU, "optimizers stayed");
    /* moved before the first step: the optimizers' state is made on the GPU */
    CHECK(dl_gan_move(gan, GPU) == 0, "move: %s", dl_error());
    CHECK(dl_gan_train_step(gan, dense_batch(4), NULL) == 0, "a step: %s", dl_error());
    CHECK(dl_optim_state_tensor(gan->d_opt, 0, (char[64]){0}, 64)->device == GPU, "D's state on the GPU");
    CHECK(gan->n_ema > 0 && gan->ema[0]->device == GPU, "the averages made on the GPU");
    /* a wrong real batch, on the GPU too */
    CHECK(dl_gan_train_step(gan, dl_to_device(dl_tmp(DL_DTYPE_F32, 2, DL_SHAPE(4, 3)), GPU), NULL) != 0 && strstr(dl_error(), "dl_gan"),
          "wrong shape: %s", dl_error());
    dl_gan_free(gan);
    dl_model_free(g);
    dl_model_free(d);
    dl_arena_reset(dl_arena_current());
}

int main(void) {
    dl_rng_seed(&rng, 17);
    RUN(test_dense);
    RUN(test_conv);
    RUN(test_parts);
    RUN(test_checkpoint);
    RUN(test_move_round_trip);
    RUN(test_cyclegan);
    RUN(test_errors);
    dl_arena_free_default();
    return test_summary();
}
