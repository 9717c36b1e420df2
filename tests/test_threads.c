/* Several user threads using dl at the same time (issue 9: no unguarded global state).
   - two threads seed, build and train two different models at once (a sequential MLP with
     dropout and batch normalization; a functional convnet with a skip connection) and get the
     bits they get one after the other: the layer generator of dl_nn_seed is per thread, and
     so are the symbols of a functional graph being written. Both threads seed first and wait
     for each other before building, so a process-wide generator would fail this every time;
   - with dl_set_num_threads(2) the two threads' GEMMs and convolutions meet in the thread pool
     (one job at a time: the other thread runs its tasks serially), with the same bits;
   - the log function, set while both threads log epoch lines, gets every line once.
   tests/test_tsan.sh builds this program with ThreadSanitizer, which reports any data race. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define DL_IMPLEMENTATION
#include "../dl_nn.h"
#include "test.h"

#define MAX_W 40000
#define EPOCHS 2

/* A barrier for n threads (pthread_barrier_t is optional in POSIX). */
typedef struct barrier { pthread_mutex_t mu; pthread_cond_t cv; int n, waiting, round; } barrier;
static void barrier_wait(barrier *b) {
    int round;
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    round = b->round;
    if (++b->waiting == b->n) {
        b->waiting = 0;
        b->round++;
        pthread_cond_broadcast(&b->cv);
    } else {
        while (round == b->round) pthread_cond_wait(&b->cv, &b->mu);
    }
    pthread_mutex_unlock(&b->mu);
}

/* One job: which model, its seeds; what it produced. */
typedef struct job {
    int kind;             /* 0: sequential MLP, 1: functional convnet */
    uint64_t seed;
    int verbose;
    barrier *start;       /* NULL when run alone */
    int ok;
    char error[512];
    int n_w;
    float w[MAX_W];       /* every weight, in dl_model_weights order */
    double hist[EPOCHS * 4];
} job;

static dl_model *build_mlp(void) {
    return dl_sequential(dl_Dense(128, DL_ACT_RELU), dl_BatchNormalization(0, 0), dl_Dropout(0.25f), dl_Dense(128, DL_ACT_TANH),
                         dl_Dense(4, DL_ACT_LINEAR));
}

static dl_model *build_convnet(void) {
    dl_sym *x = dl_Input(3, DL_SHAPE(2, 12, 12));
    dl_sym *h = dl_apply(dl_Conv2D(8, 3, 1, DL_PADDING_SAME, DL_ACT_RELU), x);
    dl_sym *k = dl_apply(dl_Conv2D(8, 3, 1, DL_PADDING_SAME, DL_ACT_LINEAR), h);
    dl_sym *s = dl_apply(dl_Add(), h);   /* a wrong use first: Add needs 2 inputs (an error, symbols left over) */
    dl_sym *pair[2];
    (void)s;
    dl_clear_error();
    pair[0] = h; pair[1] = k;
    s = dl_apply_n(dl_Add(), 2, pair);
    s = dl_apply(dl_MaxPool2D(2, 0), s);
    s = dl_apply(dl_Flatten(), s);
    s = dl_apply(dl_Dense(4, DL_ACT_LINEAR), s);
    return s ? dl_model_new(1, &x, 1, &s) : NULL;
}

static void *run_job(void *arg) {
    job *j = (job *)arg;
    dl_dataset ds;
    dl_rng r;
    dl_model *m = NULL;
    dl_fit_opts o;
    const dl_history *h;
    dl_tensor *ws[64];
    int i, n, e, c;
    j->ok = 0;
    j->n_w = 0;
    memset(&ds, 0, sizeof ds);
    ds.n = 128;
    ds.x = j->kind == 0 ? dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(128, 64)) : dl_tensor_new(DL_DTYPE_F32, 4, DL_SHAPE(128, 2, 12, 12));
    ds.y = dl_tensor_new(DL_DTYPE_I32, 1, DL_SHAPE(128));
    ds.num_classes = 4;
    dl_rng_seed(&r, j->seed + 100);
    dl_fill_normal(ds.x, 0.0f, 1.0f, &r);
    for (i = 0; i < 128; i++) dl_i32(ds.y)[i] = (int)(dl_rng_u64(&r) % 4);
    dl_nn_seed(j->seed);
    barrier_wait(j->start);   /* both have seeded: a shared generator would now hold the last seed */
    m = j->kind == 0 ? build_mlp() : build_convnet();
    dl_sym_free_unused();     /* the symbols of the failed dl_apply above */
    if (!m || dl_compile(m, dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = 1e-3, .eps = 1e-7}), DL_LOSS_SPARSE_CATEGORICAL_CE, DL_METRIC_ACCURACY) != 0) goto out;
    memset(&o, 0, sizeof o);
    o.epochs = EPOCHS; o.batch_size = 32; o.seed = j->seed; o.verbose = j->verbose; o.validation_split = 0.25f;
    if (!(h = dl_fit(m, &ds, &o)) || h->epochs != EPOCHS || h->n != 4) goto out;
    for (e = 0; e < EPOCHS; e++)
        for (c = 0; c < 4; c++) j->hist[e * 4 + c] = h->values[e * 4 + c];
    n = dl_model_weights(m, 0, ws, 64);
    for (i = 0; i < n && j->n_w + (int)ws[i]->numel <= MAX_W; i++) {
        memcpy(j->w + j->n_w, dl_f32(ws[i]), ws[i]->numel * sizeof(float));
        j->n_w += (int)ws[i]->numel;
    }
    j->ok = i == n;
out:
    snprintf(j->error, sizeof j->error, "%s", dl_error());
    dl_model_free(m);
    dl_tensor_free(ds.x);
    dl_tensor_free(ds.y);
    dl_arena_free_default();   /* this thread's arena */
    return NULL;
}

static int same_bits(const job *a, const job *b) {
    return a->ok && b->ok && a->n_w == b->n_w && memcmp(a->w, b->w, (size_t)a->n_w * sizeof(float)) == 0 &&
           memcmp(a->hist, b->hist, sizeof a->hist) == 0;
}

/* Runs the two jobs on two threads at once; 0 when both threads ran. */
static int run_pair(job *a, job *b) {
    pthread_t ta, tb;
    barrier bar;
    int ok;
    pthread_mutex_init(&bar.mu, NULL);
    pthread_cond_init(&bar.cv, NULL);
    bar.n = 2; bar.waiting = 0; bar.round = 0;
    a->start = b->start = &bar;
    ok = pthread_create(&ta, NULL, run_job, a) == 0;
    if (ok && pthread_create(&tb, NULL, run_job, b) != 0) { bar.n = 1; ok = 0; }   /* a alone passes the barrier */
    if (ok) pthread_join(tb, NULL);
    pthread_join(ta, NULL);
    pthread_mutex_destroy(&bar.mu);
    pthread_cond_destroy(&bar.cv);
    a->start = b->start = NULL;
    return ok ? 0 : -1;
}

static job ref_a, ref_b, par_a, par_b;

static void test_two_models_at_once(void) {
    static job first_a, first_b;
    int threads, round;
    ref_a.kind = 0; ref_a.seed = 1;
    ref_b.kind = 1; ref_b.seed = 2;
    ref_a.verbose = ref_b.verbose = -1;
    first_a = ref_a; first_b = ref_b;
    dl_set_num_threads(2);
    CHECK(run_pair(&first_a, &first_b) == 0, "two threads started");   /* first: dl's first calls of all happen at once */
    dl_set_num_threads(0);
    run_job(&ref_a);   /* one after the other, on this thread */
    run_job(&ref_b);
    CHECK(same_bits(&first_a, &ref_a) && same_bits(&first_b, &ref_b), "the very first run, on two threads: the same bits");
    CHECK(ref_a.ok && ref_b.ok, "alone: '%s' '%s'", ref_a.error, ref_b.error);
    CHECK(ref_a.n_w > 1000 && ref_b.n_w > 500, "weights copied: %d, %d", ref_a.n_w, ref_b.n_w);
    for (threads = 1; threads <= 2; threads++) {
        dl_set_num_threads(threads);
        for (round = 0; round < 2; round++) {
            par_a = ref_a; par_b = ref_b;
            memset(par_a.w, 0, sizeof par_a.w); memset(par_b.w, 0, sizeof par_b.w);
            CHECK(run_pair(&par_a, &par_b) == 0, "two threads started");
            CHECK(same_bits(&par_a, &ref_a), "pool of %d, round %d: the MLP built and trained beside the convnet has the bits "
                  "it has alone (loss %.9g vs %.9g; %s)", threads, round, par_a.hist[0], ref_a.hist[0], par_a.error);
            CHECK(same_bits(&par_b, &ref_b), "pool of %d, round %d: the convnet beside the MLP has its bits (loss %.9g vs %.9g; %s)",
                  threads, round, par_b.hist[0], ref_b.hist[0], par_b.error);
        }
    }
    dl_set_num_threads(0);
}

/* The log function while two threads fit with epoch lines: every line arrives once, whole. */
typedef struct line_count { pthread_mutex_t mu; int epochs, lines, other; } line_count;
static void count_lines(void *user, int level, const char *text) {
    line_count *c = (line_count *)user;
    pthread_mutex_lock(&c->mu);
    if (level == DL_LOG_INFO && strncmp(text, "Epoch ", 6) == 0) c->epochs++;
    else if (level == DL_LOG_INFO && strstr(text, " - loss: ") && text[strlen(text) - 1] == '\n') c->lines++;
    else c->other++;
    pthread_mutex_unlock(&c->mu);
}

static void test_log_from_two_threads(void) {
    line_count c;
    pthread_mutex_init(&c.mu, NULL);
    c.epochs = c.lines = c.other = 0;
    dl_set_log(count_lines, &c);
    par_a = ref_a; par_b = ref_b;
    par_a.verbose = par_b.verbose = 2;
    CHECK(run_pair(&par_a, &par_b) == 0, "two threads started");
    dl_set_log(NULL, NULL);
    CHECK(c.epochs == 2 * EPOCHS && c.lines == 2 * EPOCHS && c.other == 0, "%d epoch headers, %d epoch lines, %d others",
          c.epochs, c.lines, c.other);
    CHECK(same_bits(&par_a, &ref_a) && same_bits(&par_b, &ref_b), "logging changes no bits");
    pthread_mutex_destroy(&c.mu);
}

int main(void) {
    RUN(test_two_models_at_once);
    RUN(test_log_from_two_threads);
    dl_threads_shutdown();
    dl_arena_free_default();
    return test_summary();
}
