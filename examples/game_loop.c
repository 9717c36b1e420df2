/* examples/game_loop.c - a trained DQN agent driven from a game's fixed-timestep loop.

   How a game engine would embed an agent: the simulation advances at a fixed 50 Hz (CartPole's
   tau is 0.02 s, so one env step is one frame), and every frame the agent picks the action for
   the current observation with dl_dqn_act; when an episode ends the env is reset, as a game
   restarts a round. The agent is loaded once, before the loop, from a policy file written by
   examples/cartpole_dqn.c (dl_dqn_save_policy; read with dl_dqn_load_policy), or with
   --untrained 1 built in code (CartPole's MLP 4-120-84-2 with fresh weights), so the loop runs
   without a file (tests).

   What it measures: the cost of a frame's act and env step (clock_gettime(CLOCK_MONOTONIC)
   around each call; median, 99th percentile and maximum in microseconds, against the frame's
   budget of 20000 us), and every allocation dl makes during the loop (DL_MALLOC, DL_REALLOC and
   DL_FREE are routed through counters before dl_rl.h is included): the first frame may set up
   the agent's buffers, the frames after it must allocate nothing. Without --realtime the loop
   runs as fast as it can (a replay or a server would); --realtime 1 sleeps until each frame's
   slot (clock_nanosleep to an absolute time, so errors do not accumulate) to hold 50 frames
   per second, and counts the frames that started late.

   Build and run (train the agent first, or pass --untrained 1):
       make build/cartpole_dqn && ./build/cartpole_dqn      # writes cartpole_dqn.safetensors
       cc -O2 -I. examples/game_loop.c -o game_loop -lm -lpthread && ./game_loop
   Flags: --agent PATH (policy file, default cartpole_dqn.safetensors), --untrained 0|1
          (default 0), --frames N (default 3000; --steps N is the same), --realtime 0|1
          (default 0), --seed S (first env reset and the untrained weights, default 1),
          --threads T (default: dl's choice).
   Prints the episodes' returns, the timings, "allocations_after_first_frame=N" and, last,
   "act_us_median=NN.NN"; exits with status 3 when a frame after the first allocated. */
#define _POSIX_C_SOURCE 200112L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Every allocation of dl goes through these (all three or none, see dl_tensor.h). The counter
   is atomic: dl's worker threads may allocate too. */
static long dl_allocations;
static void *counting_malloc(size_t n) {
    __atomic_fetch_add(&dl_allocations, 1, __ATOMIC_RELAXED);
    return malloc(n);
}
static void *counting_realloc(void *p, size_t n) {
    __atomic_fetch_add(&dl_allocations, 1, __ATOMIC_RELAXED);
    return realloc(p, n);
}
static long allocations(void) { return __atomic_load_n(&dl_allocations, __ATOMIC_RELAXED); }
#define DL_MALLOC(n) counting_malloc(n)
#define DL_REALLOC(p, n) counting_realloc(p, n)
#define DL_FREE(p) free(p)
#define DL_IMPLEMENTATION
#include "dl_rl.h"

#define FRAME_HZ 50
#define FRAME_NS (1000000000L / FRAME_HZ)

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return 1e6 * (double)t.tv_sec + 1e-3 * (double)t.tv_nsec;
}

static int parse_long(int argc, char **argv, int *i, const char *flag, long *value) {
    if (strcmp(argv[*i], flag) != 0) return 0;
    if (*i + 1 >= argc) { fprintf(stderr, "%s needs a number\n", flag); exit(2); }
    *value = atol(argv[++*i]);
    return 1;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts t[0..n-1] and prints median, p99 and max (nearest-rank p99). Returns the median. */
static double report(const char *what, double *t, long n) {
    double med, p99;
    long k;
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    med = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
    k = (99 * n + 99) / 100 - 1;   /* ceil(0.99 n) - 1 */
    p99 = t[k < 0 ? 0 : k];
    printf("%-4s us per frame: median %7.2f  p99 %7.2f  max %8.2f  (%.3f%% of the %ld us frame budget at the median)\n",
           what, med, p99, t[n - 1], 100.0 * med / (FRAME_NS / 1000), FRAME_NS / 1000);
    return med;
}

/* The agent: the policy file, or CartPole's network with fresh weights. NULL + a message. */
static dl_dqn *make_agent(const dl_env *env, const char *path, int untrained, long seed) {
    dl_dqn *a;
    dl_model *m;
    FILE *f;
    if (untrained) {
        dl_nn_seed((uint64_t)seed);
        m = dl_sequential(dl_Dense(120, DL_ACT_RELU), dl_Dense(84, DL_ACT_RELU), dl_Dense(2, DL_ACT_LINEAR));
        a = dl_dqn_new(m, NULL, NULL, &env->observation_space, 2, NULL);
        if (!a) fprintf(stderr, "error: %s\n", dl_error());
        return a;
    }
    if (!(f = fopen(path, "rb"))) {
        fprintf(stderr, "no agent file %s: train one with\n"
                        "    make build/cartpole_dqn && ./build/cartpole_dqn --save %s\n"
                        "or run the loop with an untrained network: --untrained 1\n", path, path);
        return NULL;
    }
    fclose(f);
    if (!(a = dl_dqn_load_policy(path))) { fprintf(stderr, "error: %s\n", dl_error()); return NULL; }
    m = dl_dqn_model(a);
    if (m->in_ndim != 1 || m->in_shape[0] != dl_env_obs_size(env)) {
        fprintf(stderr, "error: %s is not a CartPole agent (its input is not 4 floats)\n", path);
        dl_dqn_free(a);
        return NULL;
    }
    return a;
}

int main(int argc, char **argv) {
    long seed = 1, frames = 3000, untrained = 0, realtime = 0, threads = 0, late = 0;
    long frame, episodes = 0, alloc_before, alloc_first = 0, steady_allocs;
    const char *path = "cartpole_dqn.safetensors";
    double *act_us, *step_us, t, ret = 0, ret_sum = 0, ret_min = 0, ret_max = 0, r, wall, act_med;
    float obs[4];
    int i, action, term, trunc;
    struct timespec next;
    dl_env *env;
    dl_dqn *a;

    for (i = 1; i < argc; i++) {
        if (parse_long(argc, argv, &i, "--seed", &seed) || parse_long(argc, argv, &i, "--frames", &frames) ||
            parse_long(argc, argv, &i, "--steps", &frames) || parse_long(argc, argv, &i, "--untrained", &untrained) ||
            parse_long(argc, argv, &i, "--realtime", &realtime) || parse_long(argc, argv, &i, "--threads", &threads)) continue;
        if (strcmp(argv[i], "--agent") == 0 && i + 1 < argc) { path = argv[++i]; continue; }
        fprintf(stderr, "usage: %s [--agent PATH] [--untrained 0|1] [--frames N | --steps N] [--realtime 0|1] "
                        "[--seed S] [--threads T]\n", argv[0]);
        return 2;
    }
    if (frames < 1) { fprintf(stderr, "--frames must be at least 1\n"); return 2; }
    if (threads > 0) dl_set_num_threads((int)threads);
    if (!(env = dl_env_cartpole())) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
    if (!(a = make_agent(env, path, (int)untrained, seed))) { dl_env_free(env); return 1; }
    act_us = (double *)malloc(sizeof(double) * (size_t)frames);
    step_us = (double *)malloc(sizeof(double) * (size_t)frames);
    if (!act_us || !step_us) { fprintf(stderr, "out of memory\n"); return 1; }
    printf("agent: %s; CartPole-v1 at %d Hz, %ld frames%s, %d thread(s)\n",
           untrained ? "untrained MLP 4-120-84-2 (--untrained 1)" : path, FRAME_HZ, frames,
           realtime ? " in real time" : " as fast as possible", dl_num_threads());

    if (dl_env_reset(env, seed, obs) != 0) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
    alloc_before = allocations();
    wall = now_us();
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (frame = 0; frame < frames; frame++) {
        if (realtime) {   /* wait for this frame's slot; a frame that starts after it is late */
            struct timespec cur;
            clock_gettime(CLOCK_MONOTONIC, &cur);
            if (cur.tv_sec > next.tv_sec || (cur.tv_sec == next.tv_sec && cur.tv_nsec > next.tv_nsec + 1000000L)) late++;
            while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) != 0) {}
            next.tv_nsec += FRAME_NS;
            if (next.tv_nsec >= 1000000000L) { next.tv_nsec -= 1000000000L; next.tv_sec++; }
        }
        t = now_us();
        action = dl_dqn_act(a, obs, NULL);
        act_us[frame] = now_us() - t;
        if (action < 0) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
        t = now_us();
        if (dl_env_step(env, action, obs, &r, &term, &trunc) != 0) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
        ret += r;
        if (term || trunc) {   /* the round is over: record it and start the next */
            if (episodes == 0 || ret < ret_min) ret_min = ret;
            if (episodes == 0 || ret > ret_max) ret_max = ret;
            ret_sum += ret;
            episodes++;
            ret = 0;
            if (dl_env_reset(env, -1, obs) != 0) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
        }
        step_us[frame] = now_us() - t;
        if (frame == 0) alloc_first = allocations();
    }
    wall = now_us() - wall;

    if (episodes > 0)
        printf("episodes finished: %ld  return mean %.1f  min %.0f  max %.0f  (500 is perfect)\n", episodes,
               ret_sum / (double)episodes, ret_min, ret_max);
    else
        printf("episodes finished: 0 (the one running has %.0f so far)\n", ret);
    printf("frames: %ld in %.3f s (%.0f frames/s)", frames, 1e-6 * wall, frames / (1e-6 * wall));
    if (realtime) printf(", %ld started more than 1 ms late", late);
    printf("\n");
    report("step", step_us, frames);
    act_med = report("act", act_us, frames);
    printf("allocations_first_frame=%ld\n", alloc_first - alloc_before);
    steady_allocs = allocations() - alloc_first;
    printf("allocations_after_first_frame=%ld\n", steady_allocs);

    free(act_us);
    free(step_us);
    dl_dqn_free(a);
    dl_env_free(env);
    dl_arena_free_default();
    printf("act_us_median=%.2f\n", act_med);
    return steady_allocs == 0 ? 0 : 3;   /* a frame that allocates is a bug */
}
