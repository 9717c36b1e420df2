/* bench/gan.c - speed and peak memory of one DCGAN training step in dl (the TensorFlow DCGAN
   tutorial's train_step on Fashion-MNIST, batch 256), for 1 and 2 threads; bench/gan_torch.py
   runs the same step in PyTorch, bench/gan.sh runs both and prints the ratio.

       cc -O2 -I. bench/gan.c -o build/bench_gan -lm -lpthread
       ./build/bench_gan [--threads 1,2] [--steps S] [--warmup W] [--batch B] [--profile]

   The networks (NCHW; the tutorial's, with two differences said below):
     G  Dense(7*7*256) -> BatchNorm -> LeakyReLU -> Reshape(256, 7, 7)
        -> Conv2DTranspose(128, 5, stride 1, same) -> BatchNorm -> LeakyReLU
        -> Conv2DTranspose(64, 5, stride 2, same) -> BatchNorm -> LeakyReLU
        -> Conv2DTranspose(1, 5, stride 2, same, tanh)              noise [B, 100] -> [B, 1, 28, 28]
     D  Conv2D(64, 5, stride 2, same) LeakyReLU -> Dropout 0.3 -> Conv2D(128, 5, 2, same) LeakyReLU
        -> Dropout 0.3 -> Flatten -> Dense(1)                         (logits)
   Differences from the tutorial, the same on the PyTorch side: every layer has a bias (dl's
   layers always have one; the tutorial's G layers have none), and LeakyReLU has slope 0.2
   (dl's DL_ACT_LEAKY_RELU; the tutorial uses Keras' default 0.3). BatchNormalization is Keras'
   (momentum 0.99, epsilon 1e-3).

   One step (the tutorial's train_step): G on noise z [B, 100] (normal), D on a batch of real
   images (x in [-1, 1]) and on G's output, gen_loss = BCE(D(G(z)), 1), disc_loss = BCE(D(x), 1)
   + BCE(D(G(z)), 0) (both from logits), the gradients of gen_loss w.r.t. G's weights and of
   disc_loss w.r.t. D's weights (as the tutorial's two GradientTapes: neither pass computes the
   other network's weight gradients), then Adam (lr 1e-4, Keras' betas and eps 1e-7) on each.
   In dl: one tape, two dl_backward passes: gen_loss with D's weights not requiring gradients,
   then disc_loss with G's output cut off (its requires_grad cleared), so the second pass
   stops at D's input.

   Timing: W warm-up steps (default 2), then S timed steps (default 5), each timed alone
   (wall clock, zero_grad .. both optimizer steps, batch from a fixed pool of real images);
   step_ms is the median. Every thread count runs in a child process (fork), so peak_mib
   (getrusage ru_maxrss, MiB, read after the timed steps) is per configuration; it includes
   the Fashion-MNIST training set (60000 images as floats, 188 MB), which PyTorch holds too.
   --profile times each layer's forward ("fwd G 4 Conv2DTranspose": network, layer index, kind)
   and each tape node's backward ("bwd gen_loss conv2d": the pass, then the op; the gen_loss
   pass runs through D's ops too) over the timed steps, and prints their time per step and
   share, largest first, and the arena bytes of one step.

   Output, one line per thread count, then the best:
       dl gan threads=1 step_ms=... peak_mib=... batch=256 steps=5
       dl best threads=... step_ms=... peak_mib=... */
#define _XOPEN_SOURCE 700
#define DL_IMPLEMENTATION
#include "dl_nn.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_STEPS 1000
#define MAX_THREADS 16
#define NOISE 100
#define MAX_PROF 64

typedef struct config {
    int threads, steps, warmup, batch, profile;
} config;

/* -DGAN_CPU_CLOCK times with the process' CPU time instead of the wall clock: steadier on a
   busy machine for comparing two builds at 1 thread (at 2 threads it adds both threads). */
#ifdef GAN_CPU_CLOCK
#define GAN_CLOCK CLOCK_PROCESS_CPUTIME_ID
#else
#define GAN_CLOCK CLOCK_MONOTONIC
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(GAN_CLOCK, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fail(const char *what) {
    fprintf(stderr, "bench_gan: %s: %s\n", what, dl_error());
    exit(1);
}

/* ---- profile: seconds per name, summed over the timed steps ---- */
typedef struct prof_entry {
    char name[64];
    double s;
} prof_entry;
static prof_entry prof[MAX_PROF];
static int n_prof, profiling;

static void prof_add(const char *name, double s) {
    int i;
    if (!profiling) return;
    for (i = 0; i < n_prof; i++)
        if (!strcmp(prof[i].name, name)) break;
    if (i == n_prof) {
        if (n_prof == MAX_PROF) return;
        snprintf(prof[n_prof++].name, sizeof prof[0].name, "%s", name);
    }
    prof[i].s += s;
}

static int cmp_prof(const void *a, const void *b) {
    double x = ((const prof_entry *)a)->s, y = ((const prof_entry *)b)->s;
    return (x < y) - (x > y);
}

/* A model's forward, layer by layer (profiled per layer kind + position when profiling). */
static dl_tensor *forward(dl_model *m, const char *tag, dl_tensor *x) {
    int i, n = dl_model_num_layers(m);
    char name[64];
    if (!profiling) return dl_model_call(m, x, 1);
    for (i = 0; i < n && x; i++) {
        dl_layer *l = dl_model_layer(m, i);
        double t0 = now_s();
        x = dl_layer_call(l, x, 1);
        snprintf(name, sizeof name, "fwd %s %d %s", tag, i, l->ops->kind);
        prof_add(name, now_s() - t0);
    }
    return x;
}

/* dl_backward, timing each node's backward by op name when profiling (the same walk as
   dl_backward_grad: intermediate gradients reset, the seed, then the tape backwards). */
static int backward(dl_tensor *loss, const char *tag) {
    dl_node *nd;
    float *g;
    char name[64];
    if (!profiling) return dl_backward(loss);
    for (nd = loss->node; nd; nd = nd->prev) nd->out->grad = NULL;
    if (!(g = dl_grad_buf(loss))) return -1;
    g[0] += 1.0f;
    for (nd = loss->node; nd; nd = nd->prev)
        if (nd->out->grad) {
            double t0 = now_s();
            nd->backward(nd);
            snprintf(name, sizeof name, "bwd %s %s", tag, nd->op);
            prof_add(name, now_s() - t0);
        }
    return 0;
}

static void set_requires_grad(dl_tensor **w, int n, int on) {
    int i;
    for (i = 0; i < n; i++) dl_set_requires_grad(w[i], on);
}

static dl_model *make_generator(void) {
    int shape[3] = {256, 7, 7};
    dl_layer *l[12];
    l[0] = dl_Dense(7 * 7 * 256, DL_ACT_LINEAR);
    l[1] = dl_BatchNormalization(0, 0);
    l[2] = dl_Activation(DL_ACT_LEAKY_RELU);
    l[3] = dl_Reshape(3, shape);
    l[4] = dl_Conv2DTranspose(128, 5, 1, DL_PADDING_SAME, DL_ACT_LINEAR);
    l[5] = dl_BatchNormalization(0, 0);
    l[6] = dl_Activation(DL_ACT_LEAKY_RELU);
    l[7] = dl_Conv2DTranspose(64, 5, 2, DL_PADDING_SAME, DL_ACT_LINEAR);
    l[8] = dl_BatchNormalization(0, 0);
    l[9] = dl_Activation(DL_ACT_LEAKY_RELU);
    l[10] = dl_Conv2DTranspose(1, 5, 2, DL_PADDING_SAME, DL_ACT_TANH);
    return dl_sequential_n(11, l);
}

static dl_model *make_discriminator(void) {
    dl_layer *l[6];
    l[0] = dl_Conv2D(64, 5, 2, DL_PADDING_SAME, DL_ACT_LEAKY_RELU);
    l[1] = dl_Dropout(0.3f);
    l[2] = dl_Conv2D(128, 5, 2, DL_PADDING_SAME, DL_ACT_LEAKY_RELU);
    l[3] = dl_Dropout(0.3f);
    l[4] = dl_Flatten();
    l[5] = dl_Dense(1, DL_ACT_LINEAR);
    return dl_sequential_n(6, l);
}

/* One configuration, in the child process: prints its line, returns the exit status. */
static int run_config(const config *c) {
    int bs = c->batch, img[3] = {1, 28, 28}, zs[2], ys[2], pool, step, i, n_g, n_d;
    dl_dataset *train;
    dl_model *g, *d;
    dl_optim *opt_g, *opt_d;
    dl_tensor *wg[64], *wd[64], *real_pool, *ones, *zeros;
    dl_arena *arena;
    dl_rng rng;
    struct rusage ru;
    double sec[MAX_STEPS];
    int timed = 0;

    dl_set_num_threads(c->threads);
    train = dl_fashion_mnist_load(NULL, 1);
    if (!train) fail("dl_fashion_mnist_load");
    pool = train->n / bs;              /* whole batches of real images, used in turn */
    if (pool < 1) fail("fewer images than one batch");
    real_pool = train->x;
    for (i = 0; i < (int)real_pool->numel; i++) dl_f32(real_pool)[i] = dl_f32(real_pool)[i] * 2.0f - 1.0f;

    dl_nn_seed(0);
    g = make_generator();
    d = make_discriminator();
    if (!g || !d) fail("dl_sequential");
    zs[0] = NOISE;
    if (dl_model_build(g, 1, zs) != 0 || dl_model_build(d, 3, img) != 0) fail("dl_model_build");
    n_g = dl_model_weights(g, 1, wg, 64);
    n_d = dl_model_weights(d, 1, wd, 64);
    opt_g = dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = 1e-4, .eps = 1e-7});
    opt_d = dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = 1e-4, .eps = 1e-7});
    if (!opt_g || !opt_d || dl_optim_add_params(opt_g, n_g, wg) != 0 || dl_optim_add_params(opt_d, n_d, wd) != 0)
        fail("dl_optim");
    arena = dl_arena_current();
    dl_rng_seed(&rng, 1);

    for (step = 0; step < c->warmup + c->steps; step++) {
        dl_tensor *z, *real, *fake, *real_out, *fake_out, *gen_loss, *disc_loss;
        double t0;
        int b = step % pool;
        profiling = c->profile && step >= c->warmup;
        dl_arena_reset(arena);
        t0 = now_s();
        dl_optim_zero_grad(opt_g);
        dl_optim_zero_grad(opt_d);
        zs[0] = bs;
        zs[1] = NOISE;
        z = dl_tmp_uninit(DL_DTYPE_F32, 2, zs);
        if (!z) fail("dl_tmp");
        dl_fill_normal(z, 0.0f, 1.0f, &rng);
        real = dl_slice(real_pool, 0, b * bs, (b + 1) * bs, 1);
        fake = forward(g, "G", z);
        real_out = forward(d, "D", real);
        fake_out = forward(d, "D", fake);
        if (!fake || !real_out || !fake_out) fail("forward");
        ys[0] = bs;
        ys[1] = 1;
        ones = dl_full(2, ys, 1.0f);
        zeros = dl_full(2, ys, 0.0f);
        gen_loss = dl_bce_with_logits(fake_out, ones);
        disc_loss = dl_add(dl_bce_with_logits(real_out, ones), dl_bce_with_logits(fake_out, zeros));
        if (!gen_loss || !disc_loss) fail("loss");
        set_requires_grad(wd, n_d, 0);    /* gen_loss: G's weights only */
        if (backward(gen_loss, "gen_loss") != 0) fail("dl_backward (gen_loss)");
        set_requires_grad(wd, n_d, 1);
        fake->requires_grad = 0;          /* disc_loss: D's weights only; stop at D's input */
        if (backward(disc_loss, "disc_loss") != 0) fail("dl_backward (disc_loss)");
        if (profiling) {
            double t1 = now_s();
            if (dl_optim_step(opt_g) != 0 || dl_optim_step(opt_d) != 0) fail("dl_optim_step");
            prof_add("adam", now_s() - t1);
        } else if (dl_optim_step(opt_g) != 0 || dl_optim_step(opt_d) != 0) fail("dl_optim_step");
        if (step >= c->warmup) sec[timed++] = now_s() - t0;
    }
    qsort(sec, (size_t)timed, sizeof sec[0], cmp_double);
    getrusage(RUSAGE_SELF, &ru);       /* ru_maxrss: KiB on Linux */
    printf("dl gan threads=%d step_ms=%.1f peak_mib=%.1f batch=%d steps=%d\n", c->threads,
           1e3 * (timed % 2 ? sec[timed / 2] : 0.5 * (sec[timed / 2 - 1] + sec[timed / 2])), ru.ru_maxrss / 1024.0, bs,
           timed);
    if (c->profile) {
        double total = 0;
        printf("#   arena: %.1f MiB used by the last step, %.1f MiB held\n", dl_arena_used(arena) / 1048576.0,
               dl_arena_capacity(arena) / 1048576.0);
        for (i = 0; i < timed; i++) total += sec[i];
        qsort(prof, (size_t)n_prof, sizeof prof[0], cmp_prof);
        for (i = 0; i < n_prof; i++)
            printf("#   %-40s %8.1f ms/step %5.1f%%\n", prof[i].name, 1e3 * prof[i].s / timed, 100 * prof[i].s / total);
    }
    fflush(stdout);
    dl_optim_free(opt_g);
    dl_optim_free(opt_d);
    dl_model_free(g);
    dl_model_free(d);
    dl_dataset_free(train);
    dl_threads_shutdown();
    return 0;
}

/* Runs c in a child; on success *step_ms and *peak_mib get what it printed. 0 on success. */
static int run_child(const config *c, double *step_ms, double *peak_mib) {
    int fd[2], status;
    pid_t pid;
    char buf[8192];
    size_t len = 0;
    ssize_t r;
    const char *p;
    if (pipe(fd) != 0) return -1;
    fflush(stdout);
    pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {                    /* child: its stdout goes to the pipe */
        close(fd[0]);
        if (dup2(fd[1], 1) < 0) _exit(1);
        close(fd[1]);
        _exit(run_config(c));
    }
    close(fd[1]);
    while (len + 1 < sizeof buf && (r = read(fd[0], buf + len, sizeof buf - 1 - len)) > 0) len += (size_t)r;
    buf[len] = 0;
    close(fd[0]);
    fputs(buf, stdout);
    fflush(stdout);
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return -1;
    if (!(p = strstr(buf, "step_ms=")) || sscanf(p, "step_ms=%lf", step_ms) != 1) return -1;
    if (!(p = strstr(buf, "peak_mib=")) || sscanf(p, "peak_mib=%lf", peak_mib) != 1) return -1;
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_gan [--threads 1,2] [--steps S] [--warmup W] [--batch B] [--profile]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *threads_arg = "1,2";
    int steps = 5, warmup = 2, batch = 256, profile = 0, threads[MAX_THREADS], n_threads = 0, i, best = -1;
    double best_ms = 0, best_mib = 0;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--profile")) { profile = 1; continue; }
        if (i + 1 >= argc) usage();
        if (!strcmp(argv[i], "--threads")) threads_arg = argv[++i];
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch")) batch = atoi(argv[++i]);
        else usage();
    }
    if (steps < 1 || steps > MAX_STEPS || warmup < 0 || batch < 1) usage();
    for (const char *p = threads_arg; *p && n_threads < MAX_THREADS;) {
        char *end;
        long t = strtol(p, &end, 10);
        if (end == p || t < 1 || t > 256) usage();
        threads[n_threads++] = (int)t;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') usage();
    }
    if (!n_threads) usage();
    printf("# dl, DCGAN train step, batch %d, gemm kernel %s; step_ms = median of %d timed steps after %d "
           "warm-up steps; peak_mib includes the data set\n", batch, dl_gemm_kernel_name(), steps, warmup);
    for (i = 0; i < n_threads; i++) {
        config c;
        double ms, mib;
        c.threads = threads[i];
        c.steps = steps;
        c.warmup = warmup;
        c.batch = batch;
        c.profile = profile;
        if (run_child(&c, &ms, &mib) != 0) {
            fprintf(stderr, "bench_gan: threads=%d failed\n", c.threads);
            return 1;
        }
        if (best < 0 || ms < best_ms) best = threads[i], best_ms = ms, best_mib = mib;
    }
    printf("dl best threads=%d step_ms=%.1f peak_mib=%.1f\n", best, best_ms, best_mib);
    return 0;
}
