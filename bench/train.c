/* bench/train.c - training speed and peak memory of dl_fit on two Fashion-MNIST workloads, for
   1 and 2 threads; bench/train_torch.py runs the same in PyTorch, bench/train.sh runs both and
   prints the ratio.

       cc -O2 -I. bench/train.c -o build/bench_train -lm -lpthread
       ./build/bench_train [--workload mlp|cnn|all] [--threads 1,2] [--epochs E] [--batches N]
                           [--warmup W]

     mlp  Flatten, Dense 128 ReLU, Dropout 0.2, Dense 10 (logits); batch 32
     cnn  Conv2D 32 3x3 ReLU (valid), MaxPool 2, Conv2D 64 3x3 ReLU, MaxPool 2, Flatten,
          Dropout 0.5, Dense 10; batch 128
   Both: Adam lr 1e-3, betas 0.9/0.999, eps 1e-7 (Keras), sparse categorical cross-entropy on
   logits, accuracy metric, the 60000 training images (x in [0, 1], NCHW) shuffled every epoch
   by dl_fit.

   Timing: one warm-up dl_fit of W batches (default 200), then one dl_fit of E epochs (default
   2) timed per epoch by a callback (on_epoch_begin .. on_epoch_end, wall clock); epoch_s is the
   median. With --batches N, fit runs on the first N * batch samples (a view of the data set, no
   copy), and epoch_s = seconds / N * (batches in a full epoch): a per-full-epoch estimate,
   marked scaled=1. test_acc: accuracy on the 10000 test images after training (untimed).

   Every (workload, threads) configuration runs in a child process (fork), so peak_mib
   (getrusage ru_maxrss of the child, MiB, read when training ends, before the test set is
   evaluated) is per configuration. It includes the data sets (60000 x 784 floats = 188 MB, plus
   the test set), which PyTorch holds too.

   Output, one line per configuration, then the best thread count per workload:
       dl workload=mlp threads=1 epoch_s=... peak_mib=... test_acc=... batches=1875 scaled=0
       dl best workload=mlp threads=... epoch_s=... peak_mib=... */
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

#define MAX_EPOCHS 64
#define MAX_THREADS 16

typedef struct config {
    const char *workload;
    int threads, epochs, batches, warmup;
} config;

typedef struct timer {
    double t0;
    int n;
    double sec[MAX_EPOCHS];
} timer;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void on_epoch_begin(dl_callback *cb, dl_model *m, int epoch) {
    (void)m, (void)epoch;
    ((timer *)cb->user)->t0 = now_s();
}

static void on_epoch_end(dl_callback *cb, dl_model *m, const dl_logs *logs) {
    timer *t = (timer *)cb->user;
    (void)m, (void)logs;
    if (t->n < MAX_EPOCHS) t->sec[t->n++] = now_s() - t->t0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The first n samples of ds, sharing its memory (no copy, so peak memory is unchanged). The
   view tensors are plain struct copies with a shorter batch axis; never free them. */
static dl_dataset head_view(const dl_dataset *ds, int n, dl_tensor *xv, dl_tensor *yv) {
    dl_dataset v = *ds;
    *xv = *ds->x;
    xv->numel = ds->x->numel / (size_t)ds->n * (size_t)n;
    xv->shape[0] = n;
    xv->grad = NULL;
    xv->node = NULL;
    v.x = xv;
    if (ds->y) {
        *yv = *ds->y;
        yv->numel = (size_t)n;
        yv->shape[0] = n;
        yv->grad = NULL;
        yv->node = NULL;
        v.y = yv;
    }
    v.n = n;
    v.class_names = NULL;
    return v;
}

static void fail(const char *what) {
    fprintf(stderr, "bench_train: %s: %s\n", what, dl_error());
    exit(1);
}

/* One configuration, in the child process: prints its line, returns the exit status. */
static int run_config(const config *c) {
    int cnn = strcmp(c->workload, "cnn") == 0;
    int bs = cnn ? 128 : 32, full, per_epoch, i;
    dl_dataset *train, *test, warm, timed;
    dl_tensor xw, yw, xt, yt;
    dl_model *m;
    dl_logs logs;
    timer tm;
    dl_callback cb;
    dl_callback *cbs[1];
    struct rusage ru;
    double acc;

    dl_set_num_threads(c->threads);
    train = dl_fashion_mnist_load(NULL, 1);
    test = dl_fashion_mnist_load(NULL, 0);
    if (!train || !test) fail("dl_fashion_mnist_load");
    dl_nn_seed(0);
    if (cnn) {
        dl_layer *layers[7];
        layers[0] = dl_Conv2D(32, 3, 1, DL_PADDING_VALID, DL_ACT_RELU);
        layers[1] = dl_MaxPool2D(2, 0);
        layers[2] = dl_Conv2D(64, 3, 1, DL_PADDING_VALID, DL_ACT_RELU);
        layers[3] = dl_MaxPool2D(2, 0);
        layers[4] = dl_Flatten();
        layers[5] = dl_Dropout(0.5f);
        layers[6] = dl_Dense(10, DL_ACT_LINEAR);
        m = dl_sequential_n(7, layers);
    } else {
        dl_layer *layers[4];
        layers[0] = dl_Flatten();
        layers[1] = dl_Dense(128, DL_ACT_RELU);
        layers[2] = dl_Dropout(0.2f);
        layers[3] = dl_Dense(10, DL_ACT_LINEAR);
        m = dl_sequential_n(4, layers);
    }
    if (!m) fail("dl_sequential");
    if (dl_compile(m, dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = 1e-3, .eps = 1e-7}), DL_LOSS_SPARSE_CATEGORICAL_CE,
                   DL_METRIC_ACCURACY) != 0)
        fail("dl_compile");

    full = (train->n + bs - 1) / bs;   /* batches per full epoch, the last one partial */
    per_epoch = c->batches > 0 && c->batches < full ? c->batches : full;

    if (c->warmup > 0) {               /* warm-up: caches, thread pool, arena, page faults */
        int nw = c->warmup < full ? c->warmup : full;
        warm = head_view(train, nw * bs < train->n ? nw * bs : train->n, &xw, &yw);
        if (!dl_fit(m, &warm, &(dl_fit_opts){.epochs = 1, .batch_size = bs, .seed = 1, .verbose = -1}))
            fail("dl_fit (warm-up)");
    }

    timed = head_view(train, per_epoch * bs < train->n ? per_epoch * bs : train->n, &xt, &yt);
    memset(&tm, 0, sizeof tm);
    memset(&cb, 0, sizeof cb);
    cb.on_epoch_begin = on_epoch_begin;
    cb.on_epoch_end = on_epoch_end;
    cb.user = &tm;
    cbs[0] = &cb;
    if (!dl_fit(m, &timed, &(dl_fit_opts){.epochs = c->epochs, .batch_size = bs, .seed = 2,
                                         .verbose = -1, .n_callbacks = 1, .callbacks = cbs}))
        fail("dl_fit");
    if (tm.n < 1) {
        fprintf(stderr, "bench_train: no epoch was timed\n");
        return 1;
    }
    for (i = 0; i < tm.n; i++) tm.sec[i] = tm.sec[i] / per_epoch * full;
    qsort(tm.sec, (size_t)tm.n, sizeof tm.sec[0], cmp_double);

    getrusage(RUSAGE_SELF, &ru);       /* peak of loading + training; ru_maxrss: KiB on Linux */
    memset(&logs, 0, sizeof logs);
    if (dl_evaluate(m, test, bs, &logs) != 0) fail("dl_evaluate");
    acc = dl_logs_get(&logs, "accuracy");
    printf("dl workload=%s threads=%d epoch_s=%.3f peak_mib=%.1f test_acc=%.4f batches=%d scaled=%d\n",
           c->workload, c->threads,
           tm.n % 2 ? tm.sec[tm.n / 2] : 0.5 * (tm.sec[tm.n / 2 - 1] + tm.sec[tm.n / 2]),
           ru.ru_maxrss / 1024.0, acc, per_epoch, per_epoch != full);
    fflush(stdout);
    dl_model_free(m);
    dl_dataset_free(train);
    dl_dataset_free(test);
    dl_threads_shutdown();
    return 0;
}

/* Runs c in a child; on success *epoch_s and *peak_mib get what it printed. 0 on success. */
static int run_child(const config *c, double *epoch_s, double *peak_mib) {
    int fd[2], status;
    pid_t pid;
    char buf[512];
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
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fputs(buf, stdout);
        return -1;
    }
    fputs(buf, stdout);
    fflush(stdout);
    if (!(p = strstr(buf, "epoch_s=")) || sscanf(p, "epoch_s=%lf", epoch_s) != 1) return -1;
    if (!(p = strstr(buf, "peak_mib=")) || sscanf(p, "peak_mib=%lf", peak_mib) != 1) return -1;
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: bench_train [--workload mlp|cnn|all] [--threads 1,2] [--epochs E] "
                    "[--batches N] [--warmup W]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *workload = "all";
    const char *threads_arg = "1,2";
    int epochs = 2, batches = 0, warmup = 200, threads[MAX_THREADS], n_threads = 0, i, w;
    const char *workloads[2];
    int n_workloads;
    for (i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        if (!strcmp(argv[i], "--workload")) workload = argv[++i];
        else if (!strcmp(argv[i], "--threads")) threads_arg = argv[++i];
        else if (!strcmp(argv[i], "--epochs")) epochs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batches")) batches = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[++i]);
        else usage();
    }
    if (epochs < 1 || epochs > MAX_EPOCHS || batches < 0 || warmup < 0) usage();
    for (const char *p = threads_arg; *p && n_threads < MAX_THREADS;) {
        char *end;
        long t = strtol(p, &end, 10);
        if (end == p || t < 1 || t > 256) usage();
        threads[n_threads++] = (int)t;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') usage();
    }
    if (!n_threads) usage();
    if (!strcmp(workload, "all")) workloads[0] = "mlp", workloads[1] = "cnn", n_workloads = 2;
    else if (!strcmp(workload, "mlp") || !strcmp(workload, "cnn")) workloads[0] = workload, n_workloads = 1;
    else usage();

    printf("# dl, Fashion-MNIST 60000 training images, gemm kernel %s; epoch_s = median of %d timed "
           "epochs after %d warm-up batches", dl_gemm_kernel_name(), epochs, warmup);
    if (batches > 0) printf(", scaled from %d batches per epoch", batches);
    printf("; peak_mib includes the data set\n");
    for (w = 0; w < n_workloads; w++) {
        int best = -1;
        double best_s = 0, best_mib = 0;
        for (i = 0; i < n_threads; i++) {
            config c;
            double s, mib;
            c.workload = workloads[w];
            c.threads = threads[i];
            c.epochs = epochs;
            c.batches = batches;
            c.warmup = warmup;
            if (run_child(&c, &s, &mib) != 0) {
                fprintf(stderr, "bench_train: workload=%s threads=%d failed\n", c.workload, c.threads);
                return 1;
            }
            if (best < 0 || s < best_s) best = threads[i], best_s = s, best_mib = mib;
        }
        printf("dl best workload=%s threads=%d epoch_s=%.3f peak_mib=%.1f\n", workloads[w], best,
               best_s, best_mib);
        fflush(stdout);
    }
    return 0;
}
