/* examples/graph_session.c - TensorFlow 1's placeholders and sessions, the dl way.

   TF1 programs first build a graph of symbolic tensors, then run parts of it in a session,
   feeding real data into placeholders. dl has no separate graph: ops compute at once (eagerly)
   and record what backward needs on a tape. The TF1 shape of a program still maps onto it
   directly: the graph is a C function of its inputs, and "running the graph with feeds" is
   calling that function on fresh input tensors, with the step's temporaries in an arena.

       TF1                                            dl, in this file
       ---------------------------------------------  ---------------------------------------------
       x = tf.placeholder(tf.float32, [None, 784])    struct placeholders { x, y }: tensors that
       y = tf.placeholder(tf.int32, [None])           session_run makes from the feed each run
       W1 = tf.Variable(...), b1 = ...                struct variables: persistent tensors with
                                                      requires_grad (they outlive every run)
       logits = tf.matmul(tf.nn.relu(...)) ...        graph(): a plain C function from placeholders
       loss = tf.losses.sparse_softmax_...(y, logits) and variables to the fetches. Calling it runs
                                                      it; there is nothing to build first.
       train_op = tf.train.AdamOptimizer(1e-3)        dl_adam(...) + dl_optim_add_params; "running
                      .minimize(loss)                 train_op" is dl_backward(loss) (TF's
                                                      tf.gradients) then dl_optim_step
       sess = tf.Session()                            struct session: the arena that holds one
                                                      run's tensors, the variables, the optimizer
       sess.run(tf.global_variables_initializer())    session_init(): allocate the variables and
                                                      draw their initial values, once
       sess.run([train_op, loss],                     session_run(&sess, &feed, 1, &out): reset the
                feed_dict={x: xs, y: ys})             arena (the last run's tensors are gone), copy
                                                      the feed into placeholders, call graph(), step
                                                      when train_op is asked for, and return the
                                                      fetched values (as numbers: the tensors die
                                                      at the next run, as TF's do after sess.run)
       sess.close()                                   session_close(): free everything

   What is learned: a two-layer network (784 -> 128 ReLU -> 10) classifying Fashion-MNIST,
   built from dl_tensor.h's ops (dl_linear, dl_relu, dl_cross_entropy, dl_argmax) with autograd
   (dl_backward) and dl_optim.h's Adam: no layers or models from dl_nn.h, which only loads the
   data here.

   Build and run (from the repository root):
       make build/graph_session && ./build/graph_session
   or  cc -std=c99 -O2 -I. examples/graph_session.c -o build/graph_session -lm -lpthread

   Flags:
       --data DIR    Fashion-MNIST's four IDX files. Default: /usr/share/datasets/fashion-mnist
                     (Debian's dataset-fashion-mnist) when it exists, else data/fashion-mnist (the
                     3000/1000-image subset shipped in this repository)
       --epochs N    passes over the training images (default 5)
       --seed S      initial weights and the shuffle order (default 1)
       --threads T   threads for the matrix products (default: DL_NUM_THREADS or all CPUs)

   Expected result: test accuracy about 0.87 after 5 epochs on the full data (a few seconds),
   about 0.79 on the subset. The last line is "test_accuracy=0.XXXX". */
#define DL_IMPLEMENTATION
#include "dl_nn.h"   /* for dl_fashion_mnist_load; the model itself needs only dl_tensor.h and dl_optim.h */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FULL_DIR "/usr/share/datasets/fashion-mnist"
#define SUBSET_DIR "data/fashion-mnist"
#define IN 784       /* 28 x 28 pixels */
#define HIDDEN 128
#define CLASSES 10
#define BATCH 100

/* ---- The graph ------------------------------------------------------------------------------ */

/* What the caller feeds: plain host arrays, like the numpy arrays of a feed_dict. */
typedef struct feed_dict {
    const float *x;     /* n x 784 pixels in [0, 1] */
    const int32_t *y;   /* n labels */
    int n;
} feed_dict;

typedef struct placeholders { dl_tensor *x, *y; } placeholders;   /* [n, 784] f32, [n] i32; arena */
typedef struct variables { dl_tensor *w1, *b1, *w2, *b2; } variables;   /* persistent, trained */
typedef struct fetches { dl_tensor *loss, *predictions; } fetches;      /* arena tensors of a run */

/* The computation, from placeholders and variables to the tensors one may fetch. Any failure
   (a bad shape, say) gives NULL fetches and dl_error() names the op: one check at the end. */
static fetches graph(const placeholders *ph, const variables *v) {
    fetches f;
    dl_tensor *hidden = dl_relu(dl_linear(ph->x, v->w1, v->b1));   /* [n, 128] = relu(x w1 + b1) */
    dl_tensor *logits = dl_linear(hidden, v->w2, v->b2);           /* [n, 10] */
    f.loss = dl_cross_entropy(logits, ph->y);                      /* mean over the batch */
    f.predictions = dl_argmax(logits, 1, 0);                       /* [n] i32 classes */
    return f;
}

/* ---- The session ---------------------------------------------------------------------------- */

typedef struct session {
    dl_arena *arena;   /* one run's tensors (placeholders, activations, the tape); reset per run */
    variables vars;
    dl_optim *train_op;
} session;

/* What a run hands back: values, not tensors. */
typedef struct fetched { double loss; int correct; } fetched;

/* tf.global_variables_initializer() and the optimizer: Glorot-uniform kernels, zero biases
   (Keras' and tf.layers' defaults), Adam with TF1's defaults. 0 on success. */
static int session_init(session *s, uint64_t seed) {
    dl_tensor *all[4];
    dl_rng rng;
    int i;
    memset(s, 0, sizeof *s);
    s->vars.w1 = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(IN, HIDDEN)); /* zeroed, owned */
    s->vars.b1 = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(HIDDEN));
    s->vars.w2 = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(HIDDEN, CLASSES));
    s->vars.b2 = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(CLASSES));
    s->arena = dl_arena_new((size_t)4 << 20);   /* grows if a run needs more */
    s->train_op = dl_adam(1e-3);
    all[0] = s->vars.w1, all[1] = s->vars.b1, all[2] = s->vars.w2, all[3] = s->vars.b2;
    for (i = 0; i < 4; i++)
        if (!all[i]) return -1;
    if (!s->arena || !s->train_op) return -1;
    dl_rng_seed(&rng, seed);
    dl_init_glorot_uniform(s->vars.w1, IN, HIDDEN, &rng);
    dl_init_glorot_uniform(s->vars.w2, HIDDEN, CLASSES, &rng);
    for (i = 0; i < 4; i++) dl_set_requires_grad(all[i], 1);
    return dl_optim_add_params(s->train_op, 4, all);
}

/* sess.run([train_op, loss, predictions], feed_dict=feed) when train is 1; without train_op
   when 0 (evaluation: no tape is recorded). 0 on success, -1 + dl_error(). */
static int session_run(session *s, const feed_dict *feed, int train, fetched *out) {
    placeholders ph;
    fetches f;
    int i, grad_was, failed;
    dl_arena *prev = dl_arena_use(s->arena);   /* this run's tensors come from the session's arena */
    dl_arena_reset(s->arena);                   /* and the last run's are gone */
    grad_was = dl_no_grad(!train);
    ph.x = dl_tmp_from(DL_DTYPE_F32, 2, DL_SHAPE(feed->n, IN), feed->x); /* feed_dict -> placeholders */
    ph.y = dl_tmp_from(DL_DTYPE_I32, 1, DL_SHAPE(feed->n), feed->y);
    f = graph(&ph, &s->vars);
    failed = !f.loss || !f.predictions;
    if (!failed && train) {   /* the train_op: gradients of the loss, then one Adam step */
        dl_optim_zero_grad(s->train_op);
        failed = dl_backward(f.loss) != 0 || dl_optim_step(s->train_op) != 0;
    }
    if (!failed) {
        out->loss = dl_item(f.loss);
        out->correct = 0;
        for (i = 0; i < feed->n; i++) out->correct += dl_i32(f.predictions)[i] == feed->y[i];
    }
    dl_no_grad(grad_was);
    dl_arena_use(prev);
    return failed ? -1 : 0;
}

static void session_close(session *s) {
    dl_arena_free(s->arena);
    dl_optim_free(s->train_op);
    dl_tensor_free(s->vars.w1);
    dl_tensor_free(s->vars.b1);
    dl_tensor_free(s->vars.w2);
    dl_tensor_free(s->vars.b2);
}

/* ---- The program ---------------------------------------------------------------------------- */

static int has_fashion_mnist(const char *dir) {   /* does dir hold Fashion-MNIST's test labels? */
    static const char *const names[2] = {"t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz"};
    char path[1024];
    int i;
    for (i = 0; i < 2; i++) {
        FILE *f;
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if ((f = fopen(path, "rb")) != NULL) { fclose(f); return 1; }
    }
    return 0;
}

/* Accuracy over a whole data set, in runs of up to 1000 images, without the train_op. */
static int accuracy(session *s, const dl_dataset *ds, double *acc) {
    int start, correct = 0;
    for (start = 0; start < ds->n; start += 1000) {
        feed_dict feed;
        fetched out;
        feed.x = dl_f32(ds->x) + (size_t)start * IN;   /* rows of the data set, in place */
        feed.y = dl_i32(ds->y) + start;
        feed.n = ds->n - start < 1000 ? ds->n - start : 1000;
        if (session_run(s, &feed, 0, &out) != 0) return -1;
        correct += out.correct;
    }
    *acc = (double)correct / ds->n;
    return 0;
}

int main(int argc, char **argv) {
    const char *data = NULL;
    int epochs = 5, seed = 1, threads = 0, i, k, epoch, ok = 0, *order = NULL;
    float *xb = NULL;   /* one shuffled batch, gathered as you would with x[idx] in numpy */
    int32_t yb[BATCH];
    dl_dataset *train = NULL, *test = NULL;
    session sess;
    dl_rng rng;
    double test_acc = 0;

    for (i = 1; i < argc; i += 2) {   /* --flag value pairs */
        const char *flag = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) flag = "";   /* a flag without its value: the usage message below */
        if (strcmp(flag, "--data") == 0) data = v;
        else if (strcmp(flag, "--epochs") == 0) epochs = atoi(v);
        else if (strcmp(flag, "--seed") == 0) seed = atoi(v);
        else if (strcmp(flag, "--threads") == 0) threads = atoi(v);
        else {
            fprintf(stderr, "usage: %s [--data DIR] [--epochs N] [--seed S] [--threads T]\n", argv[0]);
            return 2;
        }
    }
    if (threads > 0) dl_set_num_threads(threads);

    if (!data) data = has_fashion_mnist(FULL_DIR) ? FULL_DIR : SUBSET_DIR;
    train = dl_fashion_mnist_load(data, 1);   /* x f32 [N, 1, 28, 28] = N rows of 784 in memory */
    test = dl_fashion_mnist_load(data, 0);
    memset(&sess, 0, sizeof sess);
    if (!train || !test) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
    printf("Fashion-MNIST from %s: %d training and %d test images%s\n", data, train->n, test->n,
           train->n < 60000 ? " (a subset: expect a lower accuracy)" : "");

    if (session_init(&sess, (uint64_t)seed) != 0) {   /* sess.run(tf.global_variables_initializer()) */
        fprintf(stderr, "error: %s\n", dl_error());
        goto done;
    }
    order = (int *)malloc((size_t)train->n * sizeof *order);
    xb = (float *)malloc((size_t)BATCH * IN * sizeof *xb);
    if (!order || !xb) { fprintf(stderr, "error: out of memory\n"); goto done; }
    dl_rng_seed(&rng, (uint64_t)seed + 1);
    if (accuracy(&sess, test, &test_acc) != 0) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
    printf("before training - test accuracy: %.4f (untrained: a guess)\n", test_acc);

    for (epoch = 0; epoch < epochs; epoch++) {
        double loss_sum = 0;
        int seen = 0, correct = 0;
        dl_rng_permutation(&rng, train->n, order);   /* a new order every epoch */
        for (i = 0; i < train->n; i += BATCH) {
            feed_dict feed;
            fetched out;
            feed.n = train->n - i < BATCH ? train->n - i : BATCH;
            for (k = 0; k < feed.n; k++) {
                memcpy(xb + (size_t)k * IN, dl_f32(train->x) + (size_t)order[i + k] * IN, IN * sizeof *xb);
                yb[k] = dl_i32(train->y)[order[i + k]];
            }
            feed.x = xb;
            feed.y = yb;
            if (session_run(&sess, &feed, 1, &out) != 0) {   /* sess.run([train_op, loss], feed_dict) */
                fprintf(stderr, "error: %s\n", dl_error());
                goto done;
            }
            loss_sum += out.loss * feed.n;
            correct += out.correct;
            seen += feed.n;
        }
        if (accuracy(&sess, test, &test_acc) != 0) { fprintf(stderr, "error: %s\n", dl_error()); goto done; }
        printf("epoch %d/%d - loss: %.4f - accuracy: %.4f - test accuracy: %.4f\n", epoch + 1, epochs,
               loss_sum / seen, (double)correct / seen, test_acc);
        fflush(stdout);
    }
    printf("test_accuracy=%.4f\n", test_acc);
    ok = 1;

done:
    session_close(&sess);   /* sess.close() */
    free(order);
    free(xb);
    dl_dataset_free(train);
    dl_dataset_free(test);
    dl_threads_shutdown();
    return ok ? 0 : 1;
}
