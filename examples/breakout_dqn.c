/* examples/breakout_dqn.c - a DQN agent learns MinAtar's Breakout.

   MinAtar (Young & Tian 2019, arXiv:1903.03176) shrinks Atari games to a 10x10 grid with one
   plane per kind of object; in Breakout a paddle on the bottom row (actions: stay, left,
   right) bounces a ball into three rows of bricks, 1 point per brick, and the game ends when
   the ball gets past the paddle. Actions are sticky: with probability 0.1 the previous one is
   repeated. Random play scores about 0.4 per game.

   The network is MinAtar's DQN network: Conv2D(16, 3x3, stride 1, valid, relu) on the
   [4, 10, 10] observation, Dense(128, relu), Dense(3). Training follows the MinAtar paper's DQN:
   replay buffer 100000, batch 32, 5000 frames of random play first, one update every frame,
   target network copied every 1000 frames, gamma 0.99, epsilon 1 -> 0.1 over the first 100000
   frames, Huber loss, centered RMSProp(lr 2.5e-4, alpha 0.95, eps 0.01). --train-freq 4
   updates every 4th frame instead (Mnih et al. 2015): about 4 times faster per frame.
   Observations are stored in the replay buffer as bytes (MinAtar's planes are 0/1).

   The score is the mean return of the last 100 training episodes (epsilon-greedy, epsilon
   0.1 after the first 100000 frames), printed every --report frames.

   Build and run:
       cc -O2 -I. examples/breakout_dqn.c -o breakout_dqn -lm -lpthread && ./breakout_dqn
   Flags: --seed S (default 1), --steps N (frames trained now, default 1000000; with --resume,
          the rest of the saved run), --total T (the run's length in frames, which the epsilon
          schedule spans, default --steps: give a larger one to stop early and --resume later),
          --train-freq K (default 1), --eval E (greedy episodes played after training, default
          0), --report R (frames between progress lines, default 100000), --save PATH (the
          policy, default breakout_dqn.safetensors; "" to skip), --state PATH (also save the
          whole training state there at the end, to continue with --resume), --resume PATH
          (continue a saved training state), --png PATH (a picture of the last frame, needs
          stb_image_write.h: Debian's libstb-dev), --threads T.
   Prints, last, "mean_return_last100=N.NN". */
#define _POSIX_C_SOURCE 199309L
#if defined(__has_include)
#if __has_include(<stb/stb_image_write.h>)
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#endif
#endif
#define DL_IMPLEMENTATION
#include "dl_rl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int parse_long(int argc, char **argv, int *i, const char *flag, long *value) {
    if (strcmp(argv[*i], flag) != 0) return 0;
    if (*i + 1 >= argc) { fprintf(stderr, "%s needs a number\n", flag); exit(2); }
    *value = atol(argv[++*i]);
    return 1;
}

static dl_dqn *make_agent(const dl_env *env, long steps, long seed, long train_freq) {
    dl_dqn_opts o = {0};   /* 0s: the defaults */
    dl_model *q;
    o.total_steps = steps;
    o.buffer_size = 100000;
    o.obs_u8 = 1;
    o.batch_size = 32;
    o.learning_starts = 5000;
    o.train_freq = (int)train_freq;
    o.target_update_freq = 1000;
    o.gamma = 0.99;
    o.eps_start = 1.0;
    o.eps_end = 0.1;
    o.eps_fraction = steps > 0 && steps >= 100000 ? 100000.0 / (double)steps : 1.0;
    o.loss = DL_DQN_LOSS_HUBER;
    o.seed = (uint64_t)seed;
    dl_nn_seed((uint64_t)seed);
    q = dl_sequential(dl_Conv2D(16, 3, 1, DL_PADDING_VALID, DL_ACT_RELU), dl_Flatten(), dl_Dense(128, DL_ACT_RELU),
                      dl_Dense(env->action_space.n, DL_ACT_LINEAR));
    return dl_dqn_new(q, NULL, dl_optim_new(DL_OPTIM_RMSPROP, &(dl_optim_opts){.lr = 2.5e-4, .alpha = 0.95, .eps = 0.01, .centered = 1}), &env->observation_space, env->action_space.n, &o);
}

int main(int argc, char **argv) {
    long seed = 1, steps = -1, total = 0, train_freq = 1, report = 100000, threads = 0, eval = 0, done;
    const char *save = "breakout_dqn.safetensors", *state = "", *resume = "", *png = "";
    double t0;
    dl_env *env;
    dl_dqn *a;
    int i;

    for (i = 1; i < argc; i++) {
        if (parse_long(argc, argv, &i, "--seed", &seed) || parse_long(argc, argv, &i, "--steps", &steps) ||
            parse_long(argc, argv, &i, "--total", &total) ||
            parse_long(argc, argv, &i, "--train-freq", &train_freq) || parse_long(argc, argv, &i, "--report", &report) ||
            parse_long(argc, argv, &i, "--threads", &threads) || parse_long(argc, argv, &i, "--eval", &eval)) continue;
        if (strcmp(argv[i], "--save") == 0 && i + 1 < argc) { save = argv[++i]; continue; }
        if (strcmp(argv[i], "--state") == 0 && i + 1 < argc) { state = argv[++i]; continue; }
        if (strcmp(argv[i], "--resume") == 0 && i + 1 < argc) { resume = argv[++i]; continue; }
        if (strcmp(argv[i], "--png") == 0 && i + 1 < argc) { png = argv[++i]; continue; }
        fprintf(stderr, "usage: %s [--seed S] [--steps N] [--total T] [--train-freq K] [--report R] [--save PATH] [--state PATH] "
                        "[--resume PATH] [--eval E] [--png PATH] [--threads T]\n", argv[0]);
        return 2;
    }
    if (threads > 0) dl_set_num_threads((int)threads);
    env = dl_env_breakout(0.1);
    if (!env) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
    if (!resume[0] && steps < 0) steps = 1000000;
    a = resume[0] ? dl_dqn_load(resume, env) : make_agent(env, total > 0 ? total : steps, seed, train_freq);
    if (!a) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
    if (steps < 0) steps = dl_dqn_options(a).total_steps - dl_dqn_steps(a);   /* resumed: the rest of the run */
    if (report <= 0) report = steps > 0 ? steps : 1;
    if (resume[0]) printf("resumed %s at frame %ld\n", resume, dl_dqn_steps(a));
    else dl_model_print_summary(dl_dqn_model(a));

    t0 = now();
    for (done = 0; done < steps; ) {
        long chunk = steps - done < report ? steps - done : report;
        if (dl_dqn_learn(a, env, chunk, NULL, NULL) < 0) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
        done += chunk;
        printf("frame %8ld  episodes %6ld  epsilon %.3f  mean return (last 100) %6.2f  %7.1fs\n", dl_dqn_steps(a),
               dl_dqn_episodes(a), dl_dqn_epsilon(a), dl_dqn_mean_return(a, 100), now() - t0);
        fflush(stdout);
    }
    printf("%ld frames, %ld updates, %.1f s (%.0f frames/s)\n", steps, dl_dqn_updates(a), now() - t0,
           (double)steps / (now() - t0 + 1e-9));
    if (eval > 0) {   /* greedy play on a fresh env (sticky actions still on), episodes capped at 100000 frames */
        dl_env *ev = dl_env_breakout(0.1);
        float obs[400];
        double total = 0, r;
        long e;
        int term, trunc;
        if (!ev) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
        ev->max_episode_steps = 100000;
        for (e = 0; e < eval; e++) {
            dl_env_reset(ev, e == 0 ? seed + 1000 : -1, obs);
            term = trunc = 0;
            while (!term && !trunc) { dl_env_step(ev, dl_dqn_act(a, obs, NULL), obs, &r, &term, &trunc); total += r; }
        }
        printf("greedy policy: mean return %.2f over %ld episodes\n", total / (double)eval, eval);
        dl_env_free(ev);
    }
    if (save[0] && dl_dqn_save_policy(a, save) != 0) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
    if (save[0]) printf("policy saved to %s\n", save);
    if (state[0] && dl_dqn_save(a, state, env) != 0) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
    if (state[0]) printf("training state saved to %s (continue with --resume %s)\n", state, state);
#if defined(INCLUDE_STB_IMAGE_WRITE_H)
    if (png[0] && dl_env_save_png(env, png) == 0) printf("last frame drawn to %s\n", png);
#else
    if (png[0]) printf("--png needs stb_image_write.h (Debian: libstb-dev)\n");
#endif
    printf("mean_return_last100=%.2f\n", dl_dqn_mean_return(a, 100));
    dl_dqn_free(a);
    dl_env_free(env);
    dl_arena_free_default();
    return 0;
}
