/* examples/fit_toy.c - fit a small network to y = sin(3x) with plain autograd.

   A 1 -> 32 (tanh) -> 1 multilayer perceptron, trained full-batch on 64 points of [-1, 1] with
   Adam written out by hand (learning rate 0.01, decaying linearly to 0). It is the core loop of dl_tensor.h with nothing hidden: persistent
   parameters that require gradients, an arena reset at the start of every step, eager ops that
   record a tape, dl_backward, and an update that reads .grad.

   Build and run (or just: make demo):
       cc -O2 -I. examples/fit_toy.c -o fit_toy -lm -lpthread && ./fit_toy
   Flags: --seed S (initial weights, default 1), --steps N (default 2000),
          --threads T (threads for matrix products; default: DL_NUM_THREADS or all CPUs).
   Prints the loss as it falls and, last, "final_loss=..." (mean squared error on the 64 points). */
#define DL_IMPLEMENTATION
#include "dl_tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_POINTS 64
#define HIDDEN 32
#define N_PARAMS 4

typedef struct {
    dl_tensor *p[N_PARAMS];   /* w1 [1,32], b1 [32], w2 [32,1], b2 [1]: owned, persistent */
    float *m[N_PARAMS];       /* Adam's moment estimates, one per parameter element */
    float *v[N_PARAMS];
} model;

/* The forward pass: pred = tanh(x w1 + b1) w2 + b2. Returns NULL (see dl_error) on failure. */
static dl_tensor *forward(model *net, dl_tensor *x) {
    dl_tensor *h = dl_tanh(dl_linear(x, net->p[0], net->p[1]));   /* [64, 32] */
    return dl_linear(h, net->p[2], net->p[3]);                     /* [64, 1] */
}

/* Adam (Kingma & Ba, 2015) on one parameter; t counts steps from 1.
   m = b1 m + (1-b1) g,  v = b2 v + (1-b2) g^2,  w -= lr (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps) */
static void adam_update(dl_tensor *p, float *m, float *v, int t, float lr) {
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
    float *w = dl_f32(p);
    size_t i;
    if (!p->grad) return;   /* the loss did not depend on p */
    for (i = 0; i < p->numel; i++) {
        float g = p->grad[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        w[i] -= lr * (m[i] / c1) / (sqrtf(v[i] / c2) + eps);
    }
}

static int parse_int(int argc, char **argv, int *i, const char *flag, int *value) {
    if (strcmp(argv[*i], flag) != 0) return 0;
    if (*i + 1 >= argc) { fprintf(stderr, "%s needs a number\n", flag); exit(2); }
    *value = atoi(argv[++*i]);
    return 1;
}

int main(int argc, char **argv) {
    int seed = 1, steps = 2000, threads = 0, step, i, j;
    float xs[N_POINTS], ys[N_POINTS], lr;
    dl_tensor *x, *y, *loss;
    dl_arena *arena;
    dl_rng rng;
    model net;

    for (i = 1; i < argc; i++) {
        if (parse_int(argc, argv, &i, "--seed", &seed) || parse_int(argc, argv, &i, "--steps", &steps) ||
            parse_int(argc, argv, &i, "--threads", &threads)) continue;
        fprintf(stderr, "usage: %s [--seed S] [--steps N] [--threads T]\n", argv[0]);
        return 2;
    }
    if (threads > 0) dl_set_num_threads(threads);

    /* The data set: 64 evenly spaced points of [-1, 1] and their targets. */
    for (i = 0; i < N_POINTS; i++) {
        xs[i] = -1.0f + 2.0f * (float)i / (N_POINTS - 1);
        ys[i] = sinf(3.0f * xs[i]);
    }
    x = dl_tensor_from(DL_DTYPE_F32, 2, DL_SHAPE(N_POINTS, 1), xs); /* [64, 1], owned */
    y = dl_tensor_from(DL_DTYPE_F32, 2, DL_SHAPE(N_POINTS, 1), ys);

    /* Parameters: Glorot-uniform weights and zero biases (as Keras' Dense); owned by us. */
    dl_rng_seed(&rng, (uint64_t)seed);
    net.p[0] = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(1, HIDDEN)); /* w1 */
    net.p[1] = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(HIDDEN));    /* b1 */
    net.p[2] = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(HIDDEN, 1)); /* w2 */
    net.p[3] = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(1));         /* b2 */
    dl_init_glorot_uniform(net.p[0], 1, HIDDEN, &rng);
    dl_init_glorot_uniform(net.p[2], HIDDEN, 1, &rng);
    for (j = 0; j < N_PARAMS; j++) {
        dl_set_requires_grad(net.p[j], 1);
        net.m[j] = (float *)calloc(net.p[j]->numel, sizeof(float));
        net.v[j] = (float *)calloc(net.p[j]->numel, sizeof(float));
        if (!net.m[j] || !net.v[j]) { fprintf(stderr, "out of memory\n"); return 1; }
    }

    /* Training: everything a step creates lives in the arena until the next step's reset. */
    arena = dl_arena_new((size_t)1 << 20);
    dl_arena_use(arena);
    for (step = 1; step <= steps; step++) {
        dl_arena_reset(arena);
        loss = dl_mse(forward(&net, x), y);
        if (!loss) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
        for (j = 0; j < N_PARAMS; j++) dl_zero_grad(net.p[j]);
        if (dl_backward(loss) != 0) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
        lr = 0.01f * (1.0f - (float)(step - 1) / (float)steps);   /* decays linearly to 0 */
        for (j = 0; j < N_PARAMS; j++) adam_update(net.p[j], net.m[j], net.v[j], step, lr);
        if (step == 1 || step % (steps / 10 > 0 ? steps / 10 : 1) == 0)
            printf("step %5d  loss %.6f\n", step, dl_item(loss));
    }

    /* Evaluation with the trained parameters; no-grad mode records no tape. */
    dl_arena_reset(arena);
    dl_no_grad(1);
    loss = dl_mse(forward(&net, x), y);
    if (!loss) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
    printf("final_loss=%.6f\n", dl_item(loss));

    dl_arena_use(NULL);
    dl_arena_free(arena);
    for (j = 0; j < N_PARAMS; j++) {
        dl_tensor_free(net.p[j]);
        free(net.m[j]);
        free(net.v[j]);
    }
    dl_tensor_free(x);
    dl_tensor_free(y);
    dl_threads_shutdown();
    return 0;
}
