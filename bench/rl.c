/* bench/rl.c - speed of dl_rl.h's environments and of a DQN agent's act() at batch 1;
   bench/rl_ref.py measures the same with Gymnasium, MinAtar and PyTorch, and bench/rl.sh runs
   both and prints the ratios.

       cc -O2 -I. bench/rl.c -o build/bench_rl -lm -lpthread
       ./build/bench_rl [--seconds S] [--reps R] [--calls N] [--vec N]

   Environments: random actions (a fixed table of 4096 uniform actions, cycled, so the cost of
   drawing them is not timed), resets included (an episode's end resets in the timed loop).
   CartPole-v1 (500-step limit) and MinAtar Breakout (sticky actions 0.1, MinAtar's default; no
   time limit), each alone and as a dl_vec_env of --vec envs (default 8; autoreset, and
   steps_per_s counts the steps of every env). Each is run R times (default 5) for about S
   seconds (default 0.3); steps_per_s is the median of the R rates.

   act: dl_dqn_act on one observation (batch 1), greedy, for two untrained networks of the
   sizes used by examples/cartpole_dqn.c and examples/breakout_dqn.c:
     cartpole  MLP 4-120-84-2 (Dense 120 ReLU, Dense 84 ReLU, Dense 2)
     breakout  [4,10,10] -> Conv2D 16 3x3 stride 1 valid ReLU -> Flatten -> Dense 128 ReLU ->
               Dense 3
   on 256 observations recorded from random play (cycled); each call timed alone with
   clock_gettime(CLOCK_MONOTONIC) after 200 untimed calls; median and p99 (nearest rank) over
   N calls (default 20000), at threads=1 and at dl's default thread count.

   update: one DQN gradient step (dl_dqn_update: sample a batch from the replay buffer, target
   network forward, online forward and backward, optimizer step) as the examples train them:
     cartpole  batch 128, MSE, Adam(2.5e-4)
     breakout  batch 32, Huber, centered RMSprop(2.5e-4, alpha 0.95, eps 0.01)
   on a buffer of 2000 transitions made from the recorded observations; the median over U
   updates (default 300) after 20 untimed ones, at threads=1 and at dl's default.

   Output, one line each:
       dl env=CartPole-v1 envs=1 steps_per_s=... reps=5
       dl net=cartpole threads=1 batch=1 act_us_median=... act_us_p99=... calls=20000
       dl net=cartpole threads=1 batch=128 update_ms_median=... updates=300 */
#define _POSIX_C_SOURCE 199309L
#define DL_IMPLEMENTATION
#include "dl_rl.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_ACTIONS_TABLE 4096
#define N_OBS 256
#define MAX_REPS 64
#define MAX_VEC 256

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void die(const char *what) {
    fprintf(stderr, "bench_rl: %s: %s\n", what, dl_error());
    exit(1);
}

static int actions[N_ACTIONS_TABLE];

static void fill_actions(int n_actions, uint64_t seed) {
    dl_rng rng;
    int i;
    dl_rng_seed(&rng, seed);
    for (i = 0; i < N_ACTIONS_TABLE; i++) actions[i] = (int)((dl_rng_u64(&rng) >> 33) % (uint64_t)n_actions);
}

/* Steps per second of one env under random actions, resets included: median of reps runs. */
static double bench_env(dl_env *env, double seconds, int reps) {
    float obs[400];
    double rate[MAX_REPS], r, t0, t;
    long steps;
    unsigned k = 0;
    int rep, j, term, trunc;
    if (dl_env_obs_size(env) > 400) { fprintf(stderr, "bench_rl: observation too large\n"); exit(1); }
    fill_actions(env->action_space.n, 7);
    if (dl_env_reset(env, 1, obs) != 0) die("reset");
    for (rep = 0; rep < reps; rep++) {
        steps = 0;
        t0 = now_s();
        do {
            for (j = 0; j < 1000; j++) {   /* check the clock every 1000 steps */
                if (dl_env_step(env, actions[k++ % N_ACTIONS_TABLE], obs, &r, &term, &trunc) != 0) die("step");
                if ((term || trunc) && dl_env_reset(env, -1, obs) != 0) die("reset");
            }
            steps += 1000;
            t = now_s() - t0;
        } while (t < seconds);
        rate[rep] = steps / t;
    }
    return median(rate, reps);
}

/* The same for a dl_vec_env (autoreset); counts the steps of every env. */
static double bench_vec(dl_vec_env *v, double seconds, int reps) {
    float *obs = (float *)malloc(sizeof(float) * (size_t)v->n * (size_t)v->obs_size);
    double rate[MAX_REPS], rew[MAX_VEC], t0, t;
    int act[MAX_VEC], term[MAX_VEC], trunc[MAX_VEC], rep, i, j;
    long steps;
    unsigned k = 0;
    if (!obs) { fprintf(stderr, "bench_rl: out of memory\n"); exit(1); }
    fill_actions(v->envs[0]->action_space.n, 7);
    if (dl_vec_env_reset(v, 1, obs) != 0) die("vec reset");
    for (rep = 0; rep < reps; rep++) {
        steps = 0;
        t0 = now_s();
        do {
            for (j = 0; j < 100; j++) {
                for (i = 0; i < v->n; i++) act[i] = actions[k++ % N_ACTIONS_TABLE];
                if (dl_vec_env_step(v, act, obs, rew, term, trunc) != 0) die("vec step");
            }
            steps += 100L * v->n;
            t = now_s() - t0;
        } while (t < seconds);
        rate[rep] = steps / t;
    }
    free(obs);
    return median(rate, reps);
}

/* N_OBS observations from random play of env. */
static float *record_obs(dl_env *env) {
    int n = dl_env_obs_size(env), i, term = 0, trunc = 0;
    float *obs = (float *)malloc(sizeof(float) * (size_t)n * N_OBS);
    double r;
    if (!obs) { fprintf(stderr, "bench_rl: out of memory\n"); exit(1); }
    fill_actions(env->action_space.n, 11);
    if (dl_env_reset(env, 3, obs) != 0) die("reset");
    for (i = 1; i < N_OBS; i++) {
        if (term || trunc) {
            if (dl_env_reset(env, -1, obs + (size_t)i * n) != 0) die("reset");
            term = trunc = 0;
            continue;
        }
        memcpy(obs + (size_t)i * n, obs + (size_t)(i - 1) * n, sizeof(float) * (size_t)n);
        if (dl_env_step(env, actions[i], obs + (size_t)i * n, &r, &term, &trunc) != 0) die("step");
    }
    return obs;
}

/* act() latency at batch 1 over `calls` timed calls; prints the line. */
static void bench_act(const char *name, dl_dqn *a, const float *obs, int obs_size, int calls, int threads) {
    double *us = (double *)malloc(sizeof(double) * (size_t)calls), t;
    long k;
    int i, sink = 0;
    if (!us) { fprintf(stderr, "bench_rl: out of memory\n"); exit(1); }
    dl_set_num_threads(threads);
    for (i = 0; i < 200; i++) sink += dl_dqn_act(a, obs + (size_t)(i % N_OBS) * obs_size, NULL);
    for (i = 0; i < calls; i++) {
        const float *o = obs + (size_t)(i % N_OBS) * obs_size;
        int act;
        t = now_s();
        act = dl_dqn_act(a, o, NULL);
        us[i] = 1e6 * (now_s() - t);
        if (act < 0) die("act");
        sink += act;
    }
    qsort(us, (size_t)calls, sizeof *us, cmp_double);
    k = (99L * calls + 99) / 100 - 1;
    printf("dl net=%s threads=%d batch=1 act_us_median=%.2f act_us_p99=%.2f calls=%d\n", name,
           dl_num_threads(), median(us, calls), us[k], calls);
    if (sink == -1) printf("#\n");   /* keeps the calls */
    free(us);
    dl_set_num_threads(0);
}

/* The examples' networks, seeded: 0 CartPole's MLP, 1 MinAtar's Breakout network. */
static dl_model *make_net(int which) {
    dl_nn_seed(1);
    if (which == 0) return dl_sequential(dl_Dense(120, DL_ACT_RELU), dl_Dense(84, DL_ACT_RELU), dl_Dense(2, DL_ACT_LINEAR));
    return dl_sequential(dl_Conv2D(16, 3, 1, DL_PADDING_VALID, DL_ACT_RELU), dl_Flatten(), dl_Dense(128, DL_ACT_RELU), dl_Dense(3, DL_ACT_LINEAR));
}

/* A DQN agent's gradient step: median milliseconds over `updates` timed calls; prints the line. */
static void bench_update(const char *name, dl_dqn *a, const float *obs, int obs_size, int n_actions, int updates, int threads) {
    double *ms = (double *)malloc(sizeof(double) * (size_t)updates), t;
    dl_rng rng;
    int i;
    if (!ms) { fprintf(stderr, "bench_rl: out of memory\n"); exit(1); }
    dl_rng_seed(&rng, 5);
    while (dl_dqn_replay(a)->size < 2000) {
        i = dl_dqn_replay(a)->size;
        if (dl_replay_add((dl_replay *)dl_dqn_replay(a), obs + (size_t)(i % N_OBS) * obs_size, dl_rng_int(&rng, n_actions),
                          dl_rng_uniform(&rng), obs + (size_t)((i + 1) % N_OBS) * obs_size, i % 50 == 49) != 0) die("replay");
    }
    dl_set_num_threads(threads);
    for (i = 0; i < 20; i++) if (dl_dqn_update(a, NULL) != 0) die("update");
    for (i = 0; i < updates; i++) {
        t = now_s();
        if (dl_dqn_update(a, NULL) != 0) die("update");
        ms[i] = 1e3 * (now_s() - t);
    }
    printf("dl net=%s threads=%d batch=%d update_ms_median=%.3f updates=%d\n", name, dl_num_threads(),
           strcmp(name, "cartpole") == 0 ? 128 : 32, median(ms, updates), updates);
    free(ms);
    dl_set_num_threads(0);
}

int main(int argc, char **argv) {
    double seconds = 0.3;
    int reps = 5, calls = 20000, vec = 8, updates = 300, i, t, thread_counts[2];
    dl_env *env, *envs[MAX_VEC];
    dl_vec_env *v;
    dl_dqn *a;
    float *obs;
    const char *names[2] = {"CartPole-v1", "Breakout"};

    for (i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--seconds") == 0) seconds = atof(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--reps") == 0) reps = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--calls") == 0) calls = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--vec") == 0) vec = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "--updates") == 0) updates = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_rl [--seconds S] [--reps R] [--calls N] [--vec N] [--updates U]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > MAX_REPS || calls < 1 || updates < 1 || vec < 0 || vec > MAX_VEC || !(seconds > 0)) {
        fprintf(stderr, "bench_rl: --reps 1..%d, --calls and --updates >= 1, --vec 0..%d, --seconds > 0\n", MAX_REPS, MAX_VEC);
        return 2;
    }
    printf("# dl, random actions with resets: steps_per_s = median of %d runs of %.2fs; act: batch 1, "
           "median and p99 of %d calls; default threads %d\n", reps, seconds, calls, dl_num_threads());

    for (i = 0; i < 2; i++) {
        env = i == 0 ? dl_env_cartpole() : dl_env_breakout(-1);
        if (!env) die("env");
        printf("dl env=%s envs=1 steps_per_s=%.0f reps=%d\n", names[i], bench_env(env, seconds, reps), reps);
        dl_env_free(env);
        if (vec > 0) {
            int j;
            for (j = 0; j < vec; j++)
                if (!(envs[j] = i == 0 ? dl_env_cartpole() : dl_env_breakout(-1))) die("env");
            if (!(v = dl_vec_env_new(vec, envs))) die("dl_vec_env_new");
            printf("dl env=%s envs=%d steps_per_s=%.0f reps=%d\n", names[i], vec, bench_vec(v, seconds, reps), reps);
            dl_vec_env_free(v);
        }
    }

    thread_counts[0] = 1;
    thread_counts[1] = dl_num_threads();
    for (i = 0; i < 2; i++) {
        dl_model *q;
        env = i == 0 ? dl_env_cartpole() : dl_env_breakout(-1);
        if (!env) die("env");
        q = make_net(i);
        if (!(a = dl_dqn_new(q, NULL, NULL, &env->observation_space, env->action_space.n, NULL))) die("dl_dqn_new");
        obs = record_obs(env);
        for (t = 0; t < 2; t++) {
            if (t == 1 && thread_counts[1] == 1) break;
            bench_act(i == 0 ? "cartpole" : "breakout", a, obs, dl_env_obs_size(env), calls, thread_counts[t]);
        }
        dl_dqn_free(a);
        {   /* the same network, trained as the example trains it */
            dl_dqn_opts o = {0};   /* 0s: the defaults */
            dl_optim *opt;
            o.buffer_size = 10000;
            o.batch_size = i == 0 ? 128 : 32;
            o.loss = i == 0 ? DL_DQN_LOSS_MSE : DL_DQN_LOSS_HUBER;
            o.obs_u8 = i == 1;
            opt = i == 0 ? dl_adam(2.5e-4) : dl_optim_new(DL_OPTIM_RMSPROP, &(dl_optim_opts){.lr = 2.5e-4, .alpha = 0.95, .eps = 0.01, .centered = 1});
            q = make_net(i);
            if (!(a = dl_dqn_new(q, NULL, opt, &env->observation_space, env->action_space.n, &o))) die("dl_dqn_new");
            for (t = 0; t < 2; t++) {
                if (t == 1 && thread_counts[1] == 1) break;
                bench_update(i == 0 ? "cartpole" : "breakout", a, obs, dl_env_obs_size(env), env->action_space.n, updates, thread_counts[t]);
            }
            dl_dqn_free(a);
        }
        free(obs);
        dl_env_free(env);
    }
    dl_arena_free_default();
    return 0;
}
