/* examples/cartpole_dqn.c - a DQN agent learns CartPole-v1.

   A pole is hinged on a cart; pushing the cart left or right (2 actions) must keep the pole up
   and the cart on the track. The reward is 1 per step and episodes are cut at 500 steps, so
   500 is a perfect episode; random play averages about 22.

   The agent is CleanRL's dqn.py configuration for CartPole (Huang et al. 2022, "CleanRL",
   JMLR 23(274); its reported result: 488.7 +- 16.1 over 3 seeds): an MLP 4-120-84-2,
   Adam(2.5e-4), replay buffer of 10000, batch 128, 10000 steps of random play first, one
   update every 10 steps, target network copied every 500 steps, gamma 0.99, epsilon 1 -> 0.05
   over the first half of 500000 steps, MSE loss. One change: gradients are clipped to a
   global norm of 10 (Stable-Baselines3's DQN default), which kept 18 of seeds 1-20 at or above
   475 here (without it, 8 of seeds 1-10; seed 2 ended at 349).

   The score is CleanRL's: the mean return of the last 100 training episodes (epsilon-greedy
   with epsilon 0.05). After training, the greedy policy plays --eval episodes, the policy is
   saved (--save, for examples/game_loop.c), and, with --resume-check, the whole training
   state is saved halfway, reloaded, and the second half run again to show that the resumed
   run ends with the same bits.

   Build and run:
       cc -O2 -I. examples/cartpole_dqn.c -o cartpole_dqn -lm -lpthread && ./cartpole_dqn
   On an NVIDIA GPU (README, "GPU"): dl_cuda.cu built by nvcc, this file with DL_CUDA, then --device cuda:
       nvcc -O2 -I. -c dl_cuda.cu -o build/dl_cuda.o
       cc -std=c99 -O2 -DDL_CUDA -I. examples/cartpole_dqn.c build/dl_cuda.o -o build/cartpole_dqn_cuda \
          -L/usr/local/cuda/lib64 -lcudart -lcublas -lm -lpthread -lstdc++
       ./build/cartpole_dqn_cuda --device cuda
   Flags: --seed S (default 1), --steps N (default 500000), --eval E (greedy episodes after
          training, default 10), --save PATH (policy file, default cartpole_dqn.safetensors;
          "" to skip), --resume-check 0|1 (default 0), --threads T (default: dl's choice),
          --device cpu|cuda (default cpu; cuda: the networks and the optimizer state on the GPU,
          dl_dqn_move, the replay buffer and the environment on the host; needs the CUDA build
          above, else the program says why and exits with status 1. A network this small gains
          nothing from a GPU: each step is a few tiny kernels and two copies; it shows the API).
   Prints, last, "mean_return_last100=NNN.N". */
#define _POSIX_C_SOURCE 199309L
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

/* Progress: one line every 50 episodes. */
static int on_episode(dl_dqn *a, double episode_return, void *user) {
    double t0 = *(const double *)user;
    (void)episode_return;
    if (dl_dqn_episodes(a) % 50 == 0)
        printf("step %7ld  episodes %5ld  epsilon %.3f  mean return (last 100) %6.1f  %5.1fs\n", dl_dqn_steps(a),
               dl_dqn_episodes(a), dl_dqn_epsilon(a), dl_dqn_mean_return(a, 100), now() - t0);
    return 0;
}

/* The agent of the docs above, for `steps` steps. */
static dl_dqn *make_agent(const dl_env *env, long steps, long seed) {
    dl_dqn_opts o = {0};   /* 0s: the defaults */
    dl_model *q;
    o.total_steps = steps;
    o.seed = (uint64_t)seed;
    o.max_grad_norm = 10;
    dl_nn_seed((uint64_t)seed);
    q = dl_sequential(dl_Dense(120, DL_ACT_RELU), dl_Dense(84, DL_ACT_RELU), dl_Dense(env->action_space.n, DL_ACT_LINEAR));
    return dl_dqn_new(q, NULL, dl_adam(2.5e-4), &env->observation_space, env->action_space.n, &o);
}

/* Mean return of the greedy policy over `episodes` episodes. */
static double evaluate(dl_dqn *a, dl_env *env, int episodes, long seed) {
    float obs[4];
    double total = 0, r;
    int e, term, trunc;
    for (e = 0; e < episodes; e++) {
        if (dl_env_reset(env, e == 0 ? seed : -1, obs) != 0) return -1;
        term = trunc = 0;
        while (!term && !trunc) {
            if (dl_env_step(env, dl_dqn_act(a, obs, NULL), obs, &r, &term, &trunc) != 0) return -1;
            total += r;
        }
    }
    return total / episodes;
}

int main(int argc, char **argv) {
    long seed = 1, steps = 500000, eval = 10, threads = 0, resume_check = 0;
    const char *save = "cartpole_dqn.safetensors";
    dl_device device = DL_DEVICE_CPU;
    double t0, seconds, score, greedy;
    dl_env *env;
    dl_dqn *a;
    int i;

    for (i = 1; i < argc; i++) {
        if (parse_long(argc, argv, &i, "--seed", &seed) || parse_long(argc, argv, &i, "--steps", &steps) ||
            parse_long(argc, argv, &i, "--eval", &eval) || parse_long(argc, argv, &i, "--threads", &threads) ||
            parse_long(argc, argv, &i, "--resume-check", &resume_check)) continue;
        if (strcmp(argv[i], "--save") == 0 && i + 1 < argc) { save = argv[++i]; continue; }
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc && (strcmp(argv[i + 1], "cpu") == 0 || strcmp(argv[i + 1], "cuda") == 0)) {
            device = strcmp(argv[++i], "cuda") == 0 ? DL_DEVICE_CUDA : DL_DEVICE_CPU;
            continue;
        }
        fprintf(stderr, "usage: %s [--seed S] [--steps N] [--eval E] [--save PATH] [--resume-check 0|1] [--threads T] [--device cpu|cuda]\n", argv[0]);
        return 2;
    }
    if (threads > 0) dl_set_num_threads((int)threads);
    if (device != DL_DEVICE_CPU && dl_cuda_init() != 0) {   /* fails with the reason: no DL_CUDA build, no driver, no GPU */
        fprintf(stderr, "error: --device cuda: %s\n", dl_error());
        return 1;
    }
    env = dl_env_cartpole();
    if (!env || !(a = make_agent(env, steps, seed))) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
    dl_model_print_summary(dl_dqn_model(a));
    if (device != DL_DEVICE_CPU) {   /* the networks and the optimizer state to the GPU */
        if (dl_dqn_move(a, device) != 0) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
        printf("training on the %s\n", dl_device_name(device));
    }

    t0 = now();
    if (resume_check) {   /* half, save everything, the other half; then reload and redo it */
        long half = steps / 2;
        const char *state = "cartpole_dqn_state.safetensors";
        dl_dqn *b;
        float w1[8], w2[8];
        if (dl_dqn_learn(a, env, half, on_episode, &t0) < 0 || dl_dqn_save(a, state, env) != 0 ||
            dl_dqn_learn(a, env, steps - half, on_episode, &t0) < 0) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
        seconds = now() - t0;
        {
            dl_env *env2 = dl_env_cartpole();
            float probe[4] = {0.01f, -0.02f, 0.03f, 0.1f};
            if (!env2 || !(b = dl_dqn_load(state, env2)) || dl_dqn_move(b, device) != 0 ||   /* a loaded agent is on the CPU */
                dl_dqn_learn(b, env2, steps - half, NULL, NULL) < 0) {
                fprintf(stderr, "error: %s\n", dl_error());
                return 1;
            }
            dl_dqn_q_values(a, 1, probe, w1);
            dl_dqn_q_values(b, 1, probe, w2);
            printf("resumed from %s at step %ld: Q values %s, returns %s\n", state, half,
                   memcmp(w1, w2, 2 * sizeof(float)) == 0 ? "bit-identical" : "DIFFERENT",
                   dl_dqn_mean_return(a, 100) == dl_dqn_mean_return(b, 100) ? "identical" : "DIFFERENT");
            dl_dqn_free(b);
            dl_env_free(env2);
            remove(state);
        }
    } else {
        if (dl_dqn_learn(a, env, steps, on_episode, &t0) < 0) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
        seconds = now() - t0;
    }
    score = dl_dqn_mean_return(a, 100);
    printf("trained %ld steps (%ld episodes, %ld updates) in %.1fs\n", dl_dqn_steps(a), dl_dqn_episodes(a), dl_dqn_updates(a), seconds);
    if (eval > 0) {
        greedy = evaluate(a, env, (int)eval, seed + 1000);
        printf("greedy policy: mean return %.1f over %ld episodes\n", greedy, eval);
    }
    if (save[0]) {
        if (dl_dqn_save_policy(a, save) != 0) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
        printf("policy saved to %s (examples/game_loop.c plays it)\n", save);
    }
    dl_dqn_free(a);
    dl_env_free(env);
    dl_arena_free_default();
    printf("mean_return_last100=%.1f\n", score);
    return 0;
}
