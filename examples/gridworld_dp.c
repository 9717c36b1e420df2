/* examples/gridworld_dp.c - dynamic programming on the gridworld of Sutton & Barto, Example 4.1.

   A 4x4 grid whose two opposite corners are terminal; every move costs -1 and moves off the
   grid leave the agent where it is. The program
     1. evaluates the equiprobable random policy (iterative policy evaluation, gamma 1) and prints
        v_random, the book's Figure 4.1: 0 -14 -20 -22 / -14 -18 -20 -20 / -20 -20 -18 -14 /
        -22 -20 -14 0;
     2. checks it by Monte Carlo: the mean return of random-policy episodes in the environment
        (dl_env_gridworld) should be the mean of v_random over the 14 start states, -256/14;
     3. finds v* and an optimal policy by value iteration and by policy iteration (started from
        the greedy policy of v_random) and prints them.

   Build and run:
       cc -O2 -I. examples/gridworld_dp.c -o gridworld_dp -lm -lpthread && ./gridworld_dp
   Flags: --seed S (seed of the Monte Carlo episodes, default 1), --steps N (at most N sweeps
          of policy evaluation, default 1000; it converges in 272 at theta 1e-10),
          --threads T (accepted; nothing here uses threads).
   Prints, last, "max_err=..." : the largest |v_random(s) - Figure 4.1's value| (rounded values
   of the figure; ~1e-9 after convergence). */
#define DL_IMPLEMENTATION
#include "dl_rl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_int(int argc, char **argv, int *i, const char *flag, int *value) {
    if (strcmp(argv[*i], flag) != 0) return 0;
    if (*i + 1 >= argc) { fprintf(stderr, "%s needs a number\n", flag); exit(2); }
    *value = atoi(argv[++*i]);
    return 1;
}

static void print_values(const char *title, const double *V) {
    int r;
    printf("%s\n", title);
    for (r = 0; r < 4; r++) printf("  %7.2f %7.2f %7.2f %7.2f\n", V[4 * r], V[4 * r + 1], V[4 * r + 2], V[4 * r + 3]);
}

static void print_policy(const char *title, const int *policy) {
    static const char arrows[4] = {'<', 'v', '>', '^'};
    int r, c;
    printf("%s\n", title);
    for (r = 0; r < 4; r++) {
        printf(" ");
        for (c = 0; c < 4; c++) {
            int s = 4 * r + c;
            printf(" %c", s == 0 || s == 15 ? '*' : arrows[policy[s]]);
        }
        printf("\n");
    }
}

int main(int argc, char **argv) {
    static const double fig41[16] = {0, -14, -20, -22, -14, -18, -20, -20, -20, -20, -18, -14, -22, -20, -14, 0};
    int seed = 1, steps = 1000, threads = 0, i, sweeps, episodes = 20000, e, term, trunc;
    double pi[64], V[16] = {0}, Vstar[16] = {0}, Vpi[16] = {0}, Q[64], total = 0.0, r, max_err = 0.0;
    int policy_vi[16], policy_pi[16];
    float obs;
    dl_mdp *m;
    dl_env *env;
    dl_rng rng;

    for (i = 1; i < argc; i++) {
        if (parse_int(argc, argv, &i, "--seed", &seed) || parse_int(argc, argv, &i, "--steps", &steps) ||
            parse_int(argc, argv, &i, "--threads", &threads)) continue;
        fprintf(stderr, "usage: %s [--seed S] [--steps N] [--threads T]\n", argv[0]);
        return 2;
    }
    m = dl_mdp_gridworld();
    env = dl_env_gridworld();
    if (!m || !env) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }

    /* 1. v_random: every action with probability 1/4 */
    for (i = 0; i < 64; i++) pi[i] = 0.25;
    sweeps = dl_policy_evaluation(m, pi, 1.0, 1e-10, steps, V);
    if (sweeps < 0) printf("policy evaluation stopped after %d sweeps: %s\n", steps, dl_error());
    else printf("policy evaluation converged in %d sweeps\n", sweeps);
    print_values("v_random (Figure 4.1):", V);
    for (i = 0; i < 16; i++) if (fabs(V[i] - fig41[i]) > max_err) max_err = fabs(V[i] - fig41[i]);

    /* 2. Monte Carlo: random actions in the environment */
    dl_rng_seed(&rng, (uint64_t)seed);
    for (e = 0; e < episodes; e++) {
        dl_env_reset(env, e == 0 ? seed : -1, &obs);
        term = trunc = 0;
        while (!term && !trunc) {
            dl_env_step(env, dl_rng_int(&rng, 4), &obs, &r, &term, &trunc);
            total += r;
        }
    }
    printf("random policy, %d episodes: mean return %.3f (v_random says %.3f)\n", episodes, total / episodes, -256.0 / 14);

    /* 3. optimal values and policies */
    sweeps = dl_value_iteration(m, 1.0, 1e-12, 0, Vstar, policy_vi);
    if (sweeps < 0) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
    printf("value iteration: %d sweeps\n", sweeps);
    print_values("v*:", Vstar);
    print_policy("greedy policy of v* (ties to the first of < v > ^):", policy_vi);
    dl_q_from_v(m, V, 1.0, Q);
    dl_greedy_policy(Q, 16, 4, policy_pi);
    i = dl_policy_iteration(m, 1.0, 1e-12, Vpi, policy_pi);
    if (i < 0) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
    printf("policy iteration from greedy(v_random): %d rounds, v equal to v*: %s\n", i,
           memcmp(Vpi, Vstar, sizeof Vpi) == 0 ? "yes" : "no");

    dl_env_free(env);
    dl_mdp_free(m);
    dl_arena_free_default();
    printf("max_err=%.9f\n", max_err);
    return 0;
}
