/* examples/frozenlake_q.c - tabular Q-learning on FrozenLake-v1 (slippery, 4x4 by default).

   The agent walks a frozen lake from S to the goal G without falling into a hole H; the ice is
   slippery, so it moves in the intended direction or either perpendicular one with probability
   1/3 each, and episodes end after 100 steps (200 on the 8x8 map). The reward is 1 at the goal,
   so the mean return of a policy is its success rate. The best possible is about 0.74 on the
   4x4 map (value iteration's policy, printed for comparison).

   Training: dl_td_control, epsilon-greedy with epsilon 1 -> 0.05 over the first half of the
   steps, alpha 0.1 -> 0.01, gamma 0.99. Evaluation: the greedy policy of Q over 10000 episodes.

   Build and run:
       cc -O2 -I. examples/frozenlake_q.c -o frozenlake_q -lm -lpthread && ./frozenlake_q
   Flags: --seed S (default 1), --steps N (environment steps of training, default 300000),
          --map 4|8 (default 4), --slippery 0|1 (default 1), --method q|sarsa|expected|mc
          (Q-learning, SARSA, expected SARSA, first-visit Monte Carlo control, which averages
          returns and is much less reliable here; default q), --eval E (evaluation episodes,
          default 10000), --threads T (accepted; nothing here uses threads).
   Prints, last, "success_rate=0.XXXX" of the learned greedy policy. */
#define DL_IMPLEMENTATION
#include "dl_rl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_int(int argc, char **argv, int *i, const char *flag, int *value) {
    if (strcmp(argv[*i], flag) != 0) return 0;
    if (*i + 1 >= argc) { fprintf(stderr, "%s needs a number\n", flag); exit(2); }
    *value = atoi(argv[++*i]);
    return 1;
}

/* The map with the policy's arrows on the frozen cells. */
static void print_policy(const dl_mdp *m, int size, const int *policy, const char *title) {
    static const char arrows[4] = {'<', 'v', '>', '^'};
    int s;
    printf("%s\n", title);
    for (s = 0; s < m->n_states; s++) {
        int n;
        const dl_transition *t = dl_mdp_transitions(m, s, 0, &n);
        int is_end = n == 1 && t[0].next == s && t[0].terminal;   /* holes and the goal loop */
        if (s % size == 0) printf(" ");
        printf(" %c", is_end ? (s == m->n_states - 1 ? 'G' : 'H') : arrows[policy[s]]);
        if (s % size == size - 1) printf("\n");
    }
}

int main(int argc, char **argv) {
    int seed = 1, steps = 300000, threads = 0, size = 4, slippery = 1, eval = 10000, i, S, A, mc = 0;
    const char *method_name = "q";
    dl_td_method method = DL_TD_Q_LEARNING;
    double *Q, *V, rate, best;
    int *policy, *opt;
    long episodes;
    dl_env *env;
    const dl_mdp *m;
    dl_td_opts o;

    for (i = 1; i < argc; i++) {
        if (parse_int(argc, argv, &i, "--seed", &seed) || parse_int(argc, argv, &i, "--steps", &steps) ||
            parse_int(argc, argv, &i, "--threads", &threads) || parse_int(argc, argv, &i, "--map", &size) ||
            parse_int(argc, argv, &i, "--slippery", &slippery) || parse_int(argc, argv, &i, "--eval", &eval)) continue;
        if (strcmp(argv[i], "--method") == 0 && i + 1 < argc) {
            method_name = argv[++i];
            if (strcmp(method_name, "q") == 0) method = DL_TD_Q_LEARNING;
            else if (strcmp(method_name, "sarsa") == 0) method = DL_TD_SARSA;
            else if (strcmp(method_name, "expected") == 0) method = DL_TD_EXPECTED_SARSA;
            else if (strcmp(method_name, "mc") == 0) method = DL_TD_Q_LEARNING, mc = 1;
            else { fprintf(stderr, "--method: q, sarsa, expected or mc\n"); return 2; }
            continue;
        }
        fprintf(stderr, "usage: %s [--seed S] [--steps N] [--map 4|8] [--slippery 0|1] "
                        "[--method q|sarsa|expected|mc] [--eval E] [--threads T]\n", argv[0]);
        return 2;
    }
    env = dl_env_frozenlake(size, slippery);
    if (!env) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
    m = dl_env_mdp(env);
    S = env->observation_space.n, A = env->action_space.n;
    Q = (double *)calloc((size_t)S * A, sizeof(double));
    V = (double *)calloc((size_t)S, sizeof(double));
    policy = (int *)calloc((size_t)S, sizeof(int));
    opt = (int *)calloc((size_t)S, sizeof(int));
    if (!Q || !V || !policy || !opt) { fprintf(stderr, "out of memory\n"); return 1; }

    /* The optimum, by value iteration on the model (the learner never sees the model). */
    if (dl_value_iteration(m, 0.99, 1e-10, 0, V, opt) < 0) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
    best = dl_run_policy(env, opt, eval, (uint64_t)seed + 1);
    printf("FrozenLake-v1 %dx%d, %s; value iteration's policy: success rate %.4f\n", size, size,
           slippery ? "slippery" : "not slippery", best);

    memset(&o, 0, sizeof o);
    o.method = method;
    o.steps = steps, o.seed = (uint64_t)seed, o.alpha = 0.1, o.alpha_end = 0.01;
    episodes = mc ? dl_mc_control(env, Q, &o) : dl_td_control(env, Q, &o);
    if (episodes < 0) { fprintf(stderr, "error: %s\n", dl_error()); return 1; }
    dl_greedy_policy(Q, S, A, policy);
    rate = dl_run_policy(env, policy, eval, (uint64_t)seed + 1);
    printf("%s: %d steps, %ld episodes; greedy policy over %d episodes: success rate %.4f\n",
           mc ? "first-visit MC control" : method == DL_TD_Q_LEARNING ? "Q-learning" : method == DL_TD_SARSA ? "SARSA" : "expected SARSA",
           steps, episodes, eval, rate);
    print_policy(m, size, policy, "learned greedy policy:");
    print_policy(m, size, opt, "value iteration's policy:");

    free(Q), free(V), free(policy), free(opt);
    dl_env_free(env);
    dl_arena_free_default();
    printf("success_rate=%.4f\n", rate);
    return 0;
}
