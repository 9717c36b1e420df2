/* dl_rl.h - v0.1 - reinforcement learning for dl, in C99: a Gymnasium-like environment
   interface, CartPole-v1 and MountainCar-v0 (Gymnasium's dynamics to the last bit),
   FrozenLake-v1, the gridworld
   of Sutton & Barto's Example 4.1, tabular MDPs, dynamic programming (policy evaluation,
   policy iteration, value iteration), tabular TD control (Q-learning, SARSA, expected SARSA)
   and first-visit Monte Carlo control.
   Part of dl, a family of single-file deep-learning libraries; needs dl_nn.h.

   Do this:
       #define DL_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the implementation. Every
   other file includes it plainly. It includes dl_nn.h (and so dl_tensor.h and dl_optim.h) from
   its own folder itself when that was not included before. Link with -lm -lpthread.

   EXAMPLE: Q-learning on slippery FrozenLake 4x4 (examples/frozenlake_q.c)

       dl_env *env = dl_env_frozenlake(4, 1);                  // yours: dl_env_free
       int S = env->observation_space.n, A = env->action_space.n, policy[16];
       double Q[16 * 4] = {0};
       dl_td_opts o = dl_td_defaults(DL_Q_LEARNING);            // alpha, gamma, epsilon schedule
       o.steps = 300000; o.seed = 1;
       if (dl_td_control(env, Q, &o) < 0) { puts(dl_error()); return 1; }
       dl_greedy_policy(Q, S, A, policy);
       printf("success_rate=%.4f\n", dl_run_policy(env, policy, 10000, 2));   // ~0.73

   and the environment loop, as in Gymnasium:

       float obs[4]; double r; int term = 0, trunc = 0;
       dl_env *cp = dl_env_cartpole();
       dl_env_reset(cp, 42, obs);                              // seed < 0: keep the env's RNG
       while (!term && !trunc) dl_env_step(cp, obs[2] + obs[3] > 0, obs, &r, &term, &trunc);  // 500 steps

   CONTENTS
       SPACES        dl_space: discrete (n values) or box (n floats of a shape, low/high bounds)
       ENVIRONMENTS  dl_env + dl_env_ops (write your own: dl_env_new), dl_env_reset,
                     dl_env_step, dl_env_get_state / dl_env_set_state; built-ins:
                     dl_env_cartpole, dl_env_mountaincar, dl_env_frozenlake (4x4, 8x8 or your
                     map), dl_env_gridworld
                     (Example 4.1), dl_env_from_mdp (any tabular MDP as an environment)
       MDPS          dl_mdp: P[s][a] as a list of (prob, next, reward, terminal), as Gymnasium's
                     env.P; dl_mdp_new / dl_mdp_add to build one; dl_mdp_frozenlake,
                     dl_mdp_gridworld
       PLANNING      dl_policy_evaluation, dl_policy_iteration, dl_value_iteration, dl_q_from_v
       LEARNING      dl_td_control (Q-learning, SARSA, expected SARSA, epsilon-greedy with a
                     linear schedule), dl_mc_control (first-visit Monte Carlo control),
                     dl_greedy_policy, dl_run_policy

   ENVIRONMENT SEMANTICS (those of Gymnasium 1.x with its TimeLimit wrapper)
       dl_env_reset(env, seed, obs): seed >= 0 reseeds the env's own dl_rng first; seed < 0
       (Gymnasium's seed=None) keeps drawing from it. dl_env_step(env, action, obs, &reward,
       &terminated, &truncated): truncated is 1 when the step count since reset reaches
       max_episode_steps (both may be 1 at once). After either, step fails until the next
       reset (or dl_env_set_state). Observations are written into the caller's buffer of
       dl_env_obs_size(env) floats; a discrete observation is its index as a float. Nothing
       here allocates after the environment is made.
       CartPole-v1: Gymnasium's CartPoleEnv (Euler, tau 0.02, force 10, double-precision state,
       float32 observation, reward 1 on every step including the last, terminated when
       |x| > 2.4 or |theta| > 12 degrees, truncated at 500 steps). Given a state and an action,
       the next state has Gymnasium's bits (tests/test_rl.c checks 968 steps recorded from
       Gymnasium; the arithmetic is written one operation per statement, in Gymnasium's order,
       with contraction into FMAs turned off (gcc: at any -std and -march, GNU modes
       included; clang: at its default -ffp-contract=on; clang's explicit -ffp-contract=fast
       and -ffast-math break it). reset draws each state variable uniformly from
       [-0.05, 0.05) like Gymnasium, but from dl_rng (xoshiro256**), not NumPy's PCG64: the
       same seed gives other initial states than Gymnasium's.
       MountainCar-v0: Gymnasium's MountainCarEnv (goal_velocity 0): float64 state (position,
       velocity), float32 observation with bounds [-1.2, -0.07] .. [0.6, 0.07], actions 0 push
       left, 1 none, 2 push right; velocity += (action - 1) * 0.001 + cos(3 * position) *
       (-0.0025) (libm cos, as Python's math.cos), clipped to [-0.07, 0.07]; position +=
       velocity, clipped to [-1.2, 0.6]; at position -1.2 a negative velocity becomes 0;
       terminated when position >= 0.5 and velocity >= 0; reward -1 on every step; truncated at
       200 steps. Next states have Gymnasium's bits (tests/test_rl.c checks 2372 recorded steps,
       walls and goal included; same arithmetic rules as CartPole). reset: position uniform in
       [-0.6, -0.4) from dl_rng (not NumPy's generator), velocity 0.
       FrozenLake-v1: Gymnasium's maps and rules; actions 0 left, 1 down, 2 right, 3 up;
       slippery: the intended direction or either perpendicular one, 1/3 each; reward 1 on
       reaching G; terminated in a hole or at the goal; truncated after 100 steps (4x4) or 200
       (8x8). The next state is drawn like Gymnasium's categorical_sample (first cumulative
       probability above a uniform draw), again from dl_rng.
       Gridworld (Sutton & Barto, Example 4.1): 4x4, states 0..15 row by row, corners 0 and 15
       terminal, actions 0 left, 1 down, 2 right, 3 up (moves off the grid leave the state
       unchanged), reward -1 on every step; episodes start in a uniformly drawn non-terminal
       state; no time limit.

   CONFIGURATION
       dl_tensor.h's DL_MALLOC/DL_FREE, DL_STATIC and DL_NO_STDIO apply (nothing here does I/O).

   OWNERSHIP
       dl_env_* constructors return environments you own (dl_env_free); dl_env_from_mdp borrows
       its MDP (it must outlive the env), dl_env_frozenlake and dl_env_gridworld own theirs
       (dl_env_mdp borrows it back). dl_mdp_* return MDPs you own (dl_mdp_free). Every array
       argument (V, Q, policies, observations) is the caller's; nothing is kept.

   ERRORS
       Functions returning int give >= 0 on success and -1 + dl_error() on bad arguments (NULL,
       an action out of range, stepping an episode that is over, a policy evaluation that does
       not converge in max_sweeps); constructors return NULL + dl_error(). dl_run_policy returns
       NaN on error. Nothing here calls exit or abort.

   NOT HERE (yet)
       Breakout (MinAtar), MountainCarContinuous, Acrobot, Pendulum, rendering, vectorized
       environments, DQN and agents (act/save/load), benchmarks: see issue 4.

   LICENSE: MIT, see the end of the file.
*/
#ifndef DL_RL_H
#define DL_RL_H

#ifndef DL_NN_H   /* the prerequisites, from this file's folder, unless already included */
#include "dl_nn.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ==== SPACES ================================================================================ */

typedef enum dl_space_kind { DL_SPACE_DISCRETE = 0, DL_SPACE_BOX = 1 } dl_space_kind;
#define DL_SPACE_MAX_DIMS 4
typedef struct dl_space {
    dl_space_kind kind;
    int n;                       /* discrete: the values 0..n-1; box: floats (product of shape) */
    int ndim;                    /* box: dimensions of shape (discrete: 0) */
    int shape[DL_SPACE_MAX_DIMS];
    const float *low, *high;     /* box: n bounds each (may be +-INFINITY), borrowed from the
                                    environment; NULL for discrete */
} dl_space;

/* ==== MDPS ==================================================================================
   A finite MDP as Gymnasium's env.P: for each state s and action a, a list of transitions
   (prob, next, reward, terminal); terminal = 1 when `next` ends the episode (its value counts
   as 0). Terminal states themselves carry a self-loop (1, s, 0, 1), as in FrozenLake. */
typedef struct dl_transition {
    double prob;
    int next;
    double reward;
    int terminal;
} dl_transition;
typedef struct dl_mdp {
    int n_states, n_actions;
    int n_tr, cap_tr;      /* transitions stored, room for */
    int *first;            /* [S*A + 1]: P[s][a] = tr[first[s*A + a] .. first[s*A + a + 1]) */
    dl_transition *tr;
    double *isd;           /* [S] initial-state distribution, summing to 1 (zeros from dl_mdp_new) */
    int last_;             /* private: the last list (s * A + a) added to */
} dl_mdp;
/* An empty MDP with room for max_transitions; fill it with dl_mdp_add in order of (s, a), then
   set isd. Owned: dl_mdp_free. NULL + dl_error() on bad sizes. */
DLDEF dl_mdp *dl_mdp_new(int n_states, int n_actions, int max_transitions);
/* Appends a transition to P[s][a]; calls must come in nondecreasing order of s * n_actions + a.
   0 on success, -1 + dl_error(). */
DLDEF int dl_mdp_add(dl_mdp *m, int s, int a, double prob, int next, double reward, int terminal);
/* P[s][a]: *count transitions (borrowed), or NULL with *count = 0 for bad arguments. */
DLDEF const dl_transition *dl_mdp_transitions(const dl_mdp *m, int s, int a, int *count);
DLDEF void dl_mdp_free(dl_mdp *m);   /* NULL is fine */
/* FrozenLake-v1's map as Gymnasium builds it: rows of 'S' (start), 'F' (frozen), 'H' (hole),
   'G' (goal); map_name 4 or 8 for Gymnasium's "4x4" and "8x8". Owned. */
DLDEF dl_mdp *dl_mdp_frozenlake(int map_name, int slippery);
DLDEF dl_mdp *dl_mdp_frozenlake_map(const char *const *rows, int n_rows, int slippery);
DLDEF dl_mdp *dl_mdp_gridworld(void);  /* Example 4.1 (see the top of the file); owned */

/* ==== ENVIRONMENTS ========================================================================== */

#define DL_ENV_MAX_STATE 8      /* doubles of internal state an environment keeps inline */
typedef struct dl_env dl_env;
/* An environment's behaviour. Write your own and make it with dl_env_new; the functions get
   the env (your data in env->user) and never need to allocate. */
typedef struct dl_env_ops {
    const char *name;                                     /* "CartPole-v1", ... */
    int state_dim;                                        /* doubles of env->state in use */
    void (*reset)(dl_env *env);                           /* draw env->state from env->rng */
    void (*step)(dl_env *env, int action, double *reward, int *terminated); /* advance env->state */
    void (*observe)(const dl_env *env, float *obs);       /* the observation of env->state */
} dl_env_ops;

struct dl_env {
    const dl_env_ops *ops;
    dl_space observation_space, action_space;
    int max_episode_steps;      /* truncation after this many steps; 0: never */
    int elapsed;                /* steps since the last reset */
    int running;                /* 1 between reset (or set_state) and the end of the episode */
    dl_rng rng;                 /* the environment's own generator (reset, slippery moves) */
    double state[DL_ENV_MAX_STATE]; /* CartPole: x, x_dot, theta, theta_dot; tabular: the index */
    const dl_mdp *mdp;          /* tabular environments: their model (else NULL) */
    dl_mdp *owned_mdp;          /* freed by dl_env_free */
    void *user;                 /* yours (dl_env_new) */
};

/* An environment with your ops; observation and action spaces are copied (their low/high
   pointers are borrowed). Owned: dl_env_free. */
DLDEF dl_env *dl_env_new(const dl_env_ops *ops, const dl_space *observation_space,
                         const dl_space *action_space, int max_episode_steps, void *user);
DLDEF void dl_env_free(dl_env *env);   /* NULL is fine */
DLDEF dl_env *dl_env_cartpole(void);                        /* CartPole-v1, 500 steps */
DLDEF dl_env *dl_env_mountaincar(void);                     /* MountainCar-v0, 200 steps */
DLDEF dl_env *dl_env_frozenlake(int map_name, int slippery); /* 4 or 8; 100 or 200 steps */
DLDEF dl_env *dl_env_gridworld(void);                       /* Example 4.1, no time limit */
/* Any MDP as an environment (borrowed): reset draws from m->isd, step from P[s][a]; the
   observation is the state index. */
DLDEF dl_env *dl_env_from_mdp(const dl_mdp *m, int max_episode_steps, const char *name);
DLDEF const dl_mdp *dl_env_mdp(const dl_env *env);          /* borrowed; NULL if not tabular */

DLDEF int dl_env_obs_size(const dl_env *env);               /* floats in an observation */
/* Starts an episode; seed >= 0 reseeds env->rng first. obs (may be NULL) gets the first
   observation. 0 on success, -1 + dl_error(). */
DLDEF int dl_env_reset(dl_env *env, int64_t seed, float *obs);
/* One step. Any output pointer may be NULL. 0 on success, -1 + dl_error() (bad action, or the
   episode is over: reset first). */
DLDEF int dl_env_step(dl_env *env, int action, float *obs, double *reward, int *terminated, int *truncated);
/* The internal state (ops->state_dim doubles) read, or set directly (parity tests, exploring
   starts). Setting starts an episode if none runs, keeps the step count, and writes the
   observation of the new state to obs (may be NULL). 0 on success, -1 + dl_error(). */
DLDEF int dl_env_get_state(const dl_env *env, double *state);
DLDEF int dl_env_set_state(dl_env *env, const double *state, float *obs);

/* ==== PLANNING (dynamic programming, Sutton & Barto ch. 4) ==================================
   q(s, a) = sum over P[s][a] of prob * (reward + gamma * (terminal ? 0 : V[next])).
   Sweeps update V in place (Gauss-Seidel, as the book's pseudocode) until the largest change
   in a sweep is below theta. Greedy choices break ties toward the lowest action. */

/* Evaluates the stochastic policy pi[s * A + a] (probabilities): V holds the initial estimate
   on entry (zeros are fine) and v_pi on return. Returns the sweeps done, or -1 + dl_error()
   when it has not converged after max_sweeps (<= 0: 100000), e.g. an improper policy with
   gamma = 1. */
DLDEF int dl_policy_evaluation(const dl_mdp *m, const double *pi, double gamma, double theta, int max_sweeps, double *V);
/* Policy iteration from the deterministic policy[S] given (it must be proper when gamma = 1);
   on return policy is optimal and V its value. Returns the improvement rounds, or -1. */
DLDEF int dl_policy_iteration(const dl_mdp *m, double gamma, double theta, int *policy, double *V);
/* Value iteration from V (zeros are fine) until a sweep changes it by less than theta, then
   policy (may be NULL) gets the greedy policy. Returns the sweeps, or -1. */
DLDEF int dl_value_iteration(const dl_mdp *m, double gamma, double theta, int max_sweeps, double *V, int *policy);
/* Q[s * A + a] = q(s, a) under V. 0 or -1. */
DLDEF int dl_q_from_v(const dl_mdp *m, const double *V, double gamma, double *Q);

/* ==== LEARNING (tabular TD control, Sutton & Barto ch. 6) ===================================
   On an environment with discrete observations and actions, Q[s * A + a] (initial values in,
   learned values out) is trained for `steps` environment steps with an epsilon-greedy behaviour
   policy (ties broken at random), epsilon going linearly from eps_start to eps_end over the
   first eps_fraction of the steps, alpha likewise from alpha to alpha_end over all steps:
       Q-learning       Q(s,a) += alpha (r + gamma max_a' Q(s',a') - Q(s,a))
       SARSA            Q(s,a) += alpha (r + gamma Q(s',a') - Q(s,a)), a' the next action taken
       expected SARSA   Q(s,a) += alpha (r + gamma sum_a' pi(a'|s') Q(s',a') - Q(s,a))
   with the bootstrap term 0 when the step terminated (kept on truncation). Episodes are reset
   with seed `seed` first and then continue the env's generator; exploration uses its own
   generator seeded from seed as well. */
typedef enum dl_td_method { DL_Q_LEARNING = 0, DL_SARSA = 1, DL_EXPECTED_SARSA = 2 } dl_td_method;
typedef struct dl_td_opts {
    dl_td_method method;
    long steps;                   /* environment steps in all */
    double alpha, alpha_end;      /* step size, linearly from alpha to alpha_end */
    double gamma;                 /* discount */
    double eps_start, eps_end;    /* exploration schedule ... */
    double eps_fraction;          /* ... reaching eps_end after this fraction of the steps */
    uint64_t seed;
} dl_td_opts;
/* Defaults: 200000 steps, alpha 0.1 -> 0.01, gamma 0.99, epsilon 1 -> 0.05 over half the run,
   seed 0 (Q-learning with these: greedy success ~0.73 on slippery FrozenLake 4x4; a constant
   alpha 0.1 leaves Q too noisy for a good greedy policy there). */
DLDEF dl_td_opts dl_td_defaults(dl_td_method method);
/* Returns the number of episodes finished, or -1 + dl_error(). */
DLDEF long dl_td_control(dl_env *env, double *Q, const dl_td_opts *opts);
/* First-visit Monte Carlo control with an epsilon-soft policy (Sutton & Barto 5.4): whole
   episodes are generated with the epsilon-greedy policy (same schedule, seeds and step budget
   as dl_td_control; the last episode is cut at the budget), then for the first visit of each
   (s, a): Q(s,a) += (G - Q(s,a)) / N(s,a), N the number of first visits so far (the average of
   the book's Returns list). opts->method, alpha and alpha_end are ignored. Allocates its episode buffer and counts once per call (DL_MALLOC; nothing per
   step). Returns the episodes, or -1 + dl_error(). */
DLDEF long dl_mc_control(dl_env *env, double *Q, const dl_td_opts *opts);
/* policy[s] = argmax_a Q[s * A + a] (ties toward the lowest action). */
DLDEF void dl_greedy_policy(const double *Q, int n_states, int n_actions, int *policy);
/* Runs the deterministic policy[state] for `episodes` episodes (the first reset with seed,
   then the env's generator) and returns the mean undiscounted return (for FrozenLake: the
   success rate), or NaN + dl_error(). */
DLDEF double dl_run_policy(dl_env *env, const int *policy, int episodes, uint64_t seed);

#ifdef __cplusplus
}
#endif
#endif /* DL_RL_H */

#if defined(DL_IMPLEMENTATION) && !defined(DL__RL_IMPLEMENTED)
#define DL__RL_IMPLEMENTED

#include <math.h>
#include <string.h>

/* ==== MDPS: implementation ================================================================== */

DLDEF dl_mdp *dl_mdp_new(int n_states, int n_actions, int max_transitions) {
    dl_mdp *m;
    int i;
    if (n_states <= 0 || n_actions <= 0 || max_transitions <= 0 || n_states > (1 << 24) / n_actions) {
        dl_set_error("dl_mdp_new: bad sizes (%d states, %d actions, %d transitions)", n_states, n_actions, max_transitions);
        return NULL;
    }
    m = (dl_mdp *)DL_MALLOC(sizeof(dl_mdp));
    if (!m) { dl_set_error("dl_mdp_new: out of memory"); return NULL; }
    memset(m, 0, sizeof(*m));
    m->n_states = n_states, m->n_actions = n_actions, m->cap_tr = max_transitions, m->last_ = 0;
    m->first = (int *)DL_MALLOC(sizeof(int) * ((size_t)n_states * n_actions + 1));
    m->tr = (dl_transition *)DL_MALLOC(sizeof(dl_transition) * (size_t)max_transitions);
    m->isd = (double *)DL_MALLOC(sizeof(double) * (size_t)n_states);
    if (!m->first || !m->tr || !m->isd) { dl_mdp_free(m); dl_set_error("dl_mdp_new: out of memory"); return NULL; }
    for (i = 0; i <= n_states * n_actions; i++) m->first[i] = 0;
    for (i = 0; i < n_states; i++) m->isd[i] = 0.0;
    return m;
}

DLDEF void dl_mdp_free(dl_mdp *m) {
    if (!m) return;
    DL_FREE(m->first);
    DL_FREE(m->tr);
    DL_FREE(m->isd);
    DL_FREE(m);
}

/* first[k + 1] is the end of list k; the lists after the last one added are empty (first[j] =
   n_tr for every j past it), so the arrays are consistent after every call. */
DLDEF int dl_mdp_add(dl_mdp *m, int s, int a, double prob, int next, double reward, int terminal) {
    int k, j, SA;
    if (!m) { dl_set_error("dl_mdp_add: NULL mdp"); return -1; }
    SA = m->n_states * m->n_actions;
    if (s < 0 || s >= m->n_states || a < 0 || a >= m->n_actions || next < 0 || next >= m->n_states) {
        dl_set_error("dl_mdp_add: state or action out of range (s %d, a %d, next %d)", s, a, next);
        return -1;
    }
    if (!(prob >= 0.0 && prob <= 1.0)) { dl_set_error("dl_mdp_add: probability %g outside [0, 1]", prob); return -1; }
    if (m->n_tr >= m->cap_tr) { dl_set_error("dl_mdp_add: more than the %d transitions reserved", m->cap_tr); return -1; }
    k = s * m->n_actions + a;
    if (k < m->last_) { dl_set_error("dl_mdp_add: transitions must be added in order of (state, action)"); return -1; }
    m->last_ = k;
    m->tr[m->n_tr].prob = prob, m->tr[m->n_tr].next = next;
    m->tr[m->n_tr].reward = reward, m->tr[m->n_tr].terminal = terminal != 0;
    m->n_tr++;
    for (j = k + 1; j <= SA; j++) m->first[j] = m->n_tr;
    return 0;
}

DLDEF const dl_transition *dl_mdp_transitions(const dl_mdp *m, int s, int a, int *count) {
    int k;
    if (count) *count = 0;
    if (!m || s < 0 || s >= m->n_states || a < 0 || a >= m->n_actions) return NULL;
    k = s * m->n_actions + a;
    if (count) *count = m->first[k + 1] - m->first[k];
    return m->tr + m->first[k];
}

static const char *const dl__lake4[4] = {"SFFF", "FHFH", "FFFH", "HFFG"};
static const char *const dl__lake8[8] = {"SFFFFFFF", "FFFFFFFF", "FFFHFFFF", "FFFFFHFF",
                                         "FFFHFFFF", "FHHFFFHF", "FHFFHFHF", "FFFHFFFG"};

/* Gymnasium's inc(): 0 left, 1 down, 2 right, 3 up, clamped at the edges. */
static int dl__grid_move(int s, int a, int n_rows, int n_cols) {
    int r = s / n_cols, c = s % n_cols;
    if (a == 0) c = c > 0 ? c - 1 : 0;
    else if (a == 1) r = r < n_rows - 1 ? r + 1 : n_rows - 1;
    else if (a == 2) c = c < n_cols - 1 ? c + 1 : n_cols - 1;
    else r = r > 0 ? r - 1 : 0;
    return r * n_cols + c;
}

DLDEF dl_mdp *dl_mdp_frozenlake_map(const char *const *rows, int n_rows, int slippery) {
    int n_cols, r, c, s, a, k, S, n_start = 0;
    dl_mdp *m;
    const double success = 1.0 / 3.0, fail = (1.0 - success) / 2.0;  /* Gymnasium's arithmetic */
    if (!rows || n_rows <= 0 || n_rows > 1024 || !rows[0]) { dl_set_error("dl_mdp_frozenlake_map: bad map"); return NULL; }
    n_cols = (int)strlen(rows[0]);
    if (n_cols <= 0 || n_cols > 1024) { dl_set_error("dl_mdp_frozenlake_map: bad map width"); return NULL; }
    for (r = 0; r < n_rows; r++) {
        if (!rows[r] || (int)strlen(rows[r]) != n_cols) { dl_set_error("dl_mdp_frozenlake_map: row %d is not %d long", r, n_cols); return NULL; }
        for (c = 0; c < n_cols; c++) {
            char ch = rows[r][c];
            if (ch != 'S' && ch != 'F' && ch != 'H' && ch != 'G') {
                dl_set_error("dl_mdp_frozenlake_map: '%c' at row %d, column %d (S, F, H or G)", ch, r, c);
                return NULL;
            }
            n_start += ch == 'S';
        }
    }
    if (n_start == 0) { dl_set_error("dl_mdp_frozenlake_map: no start 'S'"); return NULL; }
    S = n_rows * n_cols;
    m = dl_mdp_new(S, 4, S * 4 * 3);
    if (!m) return NULL;
    for (s = 0; s < S; s++) {
        char ch = rows[s / n_cols][s % n_cols];
        m->isd[s] = ch == 'S' ? 1.0 / n_start : 0.0;
        for (a = 0; a < 4; a++) {
            if (ch == 'G' || ch == 'H') { dl_mdp_add(m, s, a, 1.0, s, 0.0, 1); continue; }
            for (k = 0; k < (slippery ? 3 : 1); k++) {
                int b = slippery ? (a + 3 + k) % 4 : a;            /* a-1, a, a+1 as Gymnasium */
                int next = dl__grid_move(s, b, n_rows, n_cols);
                char nc = rows[next / n_cols][next % n_cols];
                dl_mdp_add(m, s, a, slippery ? (b == a ? success : fail) : 1.0, next, nc == 'G' ? 1.0 : 0.0,
                           nc == 'G' || nc == 'H');
            }
        }
    }
    return m;
}

DLDEF dl_mdp *dl_mdp_frozenlake(int map_name, int slippery) {
    if (map_name == 4) return dl_mdp_frozenlake_map(dl__lake4, 4, slippery);
    if (map_name == 8) return dl_mdp_frozenlake_map(dl__lake8, 8, slippery);
    dl_set_error("dl_mdp_frozenlake: map_name %d (4 or 8)", map_name);
    return NULL;
}

DLDEF dl_mdp *dl_mdp_gridworld(void) {
    int s, a;
    dl_mdp *m = dl_mdp_new(16, 4, 64);
    if (!m) return NULL;
    for (s = 0; s < 16; s++) {
        int terminal_here = s == 0 || s == 15;
        m->isd[s] = terminal_here ? 0.0 : 1.0 / 14.0;
        for (a = 0; a < 4; a++) {
            int next = dl__grid_move(s, a, 4, 4);
            if (terminal_here) dl_mdp_add(m, s, a, 1.0, s, 0.0, 1);
            else dl_mdp_add(m, s, a, 1.0, next, -1.0, next == 0 || next == 15);
        }
    }
    return m;
}

/* ==== ENVIRONMENTS: implementation ========================================================== */

DLDEF dl_env *dl_env_new(const dl_env_ops *ops, const dl_space *observation_space,
                         const dl_space *action_space, int max_episode_steps, void *user) {
    dl_env *env;
    if (!ops || !ops->reset || !ops->step || !ops->observe || !observation_space || !action_space) {
        dl_set_error("dl_env_new: NULL ops, function or space");
        return NULL;
    }
    if (ops->state_dim < 0 || ops->state_dim > DL_ENV_MAX_STATE || max_episode_steps < 0 ||
        observation_space->n <= 0 || action_space->n <= 0 || action_space->kind != DL_SPACE_DISCRETE) {
        dl_set_error("dl_env_new: bad state size, time limit or spaces (actions must be discrete)");
        return NULL;
    }
    env = (dl_env *)DL_MALLOC(sizeof(dl_env));
    if (!env) { dl_set_error("dl_env_new: out of memory"); return NULL; }
    memset(env, 0, sizeof(*env));
    env->ops = ops;
    env->observation_space = *observation_space;
    env->action_space = *action_space;
    env->max_episode_steps = max_episode_steps;
    env->user = user;
    dl_rng_seed(&env->rng, 0);
    return env;
}

DLDEF void dl_env_free(dl_env *env) {
    if (!env) return;
    dl_mdp_free(env->owned_mdp);
    DL_FREE(env);
}

DLDEF const dl_mdp *dl_env_mdp(const dl_env *env) { return env ? env->mdp : NULL; }

DLDEF int dl_env_obs_size(const dl_env *env) {
    if (!env) return 0;
    return env->observation_space.kind == DL_SPACE_DISCRETE ? 1 : env->observation_space.n;
}

DLDEF int dl_env_reset(dl_env *env, int64_t seed, float *obs) {
    if (!env) { dl_set_error("dl_env_reset: NULL env"); return -1; }
    if (seed >= 0) dl_rng_seed(&env->rng, (uint64_t)seed);
    env->ops->reset(env);
    env->elapsed = 0;
    env->running = 1;
    if (obs) env->ops->observe(env, obs);
    return 0;
}

DLDEF int dl_env_step(dl_env *env, int action, float *obs, double *reward, int *terminated, int *truncated) {
    double r = 0.0;
    int term = 0, trunc;
    if (!env) { dl_set_error("dl_env_step: NULL env"); return -1; }
    if (!env->running) { dl_set_error("dl_env_step: %s: the episode is over (or never began): call dl_env_reset", env->ops->name ? env->ops->name : "env"); return -1; }
    if (action < 0 || action >= env->action_space.n) {
        dl_set_error("dl_env_step: action %d outside [0, %d)", action, env->action_space.n);
        return -1;
    }
    env->ops->step(env, action, &r, &term);
    env->elapsed++;
    trunc = env->max_episode_steps > 0 && env->elapsed >= env->max_episode_steps;
    if (term || trunc) env->running = 0;
    if (obs) env->ops->observe(env, obs);
    if (reward) *reward = r;
    if (terminated) *terminated = term != 0;
    if (truncated) *truncated = trunc;
    return 0;
}

DLDEF int dl_env_get_state(const dl_env *env, double *state) {
    int i;
    if (!env || !state) { dl_set_error("dl_env_get_state: NULL argument"); return -1; }
    for (i = 0; i < env->ops->state_dim; i++) state[i] = env->state[i];
    return 0;
}

DLDEF int dl_env_set_state(dl_env *env, const double *state, float *obs) {
    int i;
    if (!env || !state) { dl_set_error("dl_env_set_state: NULL argument"); return -1; }
    if (env->mdp && !(state[0] >= 0 && state[0] < env->mdp->n_states && state[0] == floor(state[0]))) {
        dl_set_error("dl_env_set_state: state %g is not one of the %d states", state[0], env->mdp->n_states);
        return -1;
    }
    for (i = 0; i < env->ops->state_dim; i++) env->state[i] = state[i];
    env->running = 1;
    if (obs) env->ops->observe(env, obs);
    return 0;
}

/* uniform in [0, 1) from the top 53 bits */
static double dl__uniform01(dl_rng *r) { return (double)(dl_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0); }

/* ---- CartPole-v1 ----------------------------------------------------------------------------
   Gymnasium's CartPoleEnv.step, one rounding per statement in the same order as its Python
   expressions (left to right), so the result has its bits. */
static void dl__cartpole_reset(dl_env *env) {
    int i;
    for (i = 0; i < 4; i++) {   /* uniform in [-0.05, 0.05): low + (high - low) * u, as NumPy */
        double u = (double)(dl_rng_u64(&env->rng) >> 11) * (1.0 / 9007199254740992.0);
        double span = 0.05 - (-0.05);
        double t = span * u;
        env->state[i] = -0.05 + t;
    }
}

/* No fused multiply-adds here, whatever the flags: gcc in GNU mode (-std=gnu99, the default)
   contracts across statements (-ffp-contract=fast) when the target has FMA. */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__INTEL_COMPILER)
#define DL__NO_FP_CONTRACT __attribute__((optimize("fp-contract=off")))
#else
#define DL__NO_FP_CONTRACT
#endif
DL__NO_FP_CONTRACT static void dl__cartpole_step(dl_env *env, int action, double *reward, int *terminated) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    const double gravity = 9.8, masscart = 1.0, masspole = 0.1, length = 0.5, force_mag = 10.0, tau = 0.02;
    const double total_mass = masspole + masscart, polemass_length = masspole * length;
    const double theta_threshold = 12 * 2 * 3.141592653589793 / 360, x_threshold = 2.4;
    double x = env->state[0], x_dot = env->state[1], theta = env->state[2], theta_dot = env->state[3];
    double force = action == 1 ? force_mag : -force_mag;
    double costheta = cos(theta), sintheta = sin(theta);
    double td2, a, temp, num, c2, b, den_in, den, thetaacc, c, d, xacc, dx, dxd, dth, dthd;
    /* temp = (force + polemass_length * theta_dot^2 * sintheta) / total_mass */
    td2 = theta_dot * theta_dot;
    a = polemass_length * td2;
    a = a * sintheta;
    a = force + a;
    temp = a / total_mass;
    /* thetaacc = (gravity * sintheta - costheta * temp)
                  / (length * (4/3 - masspole * costheta^2 / total_mass)) */
    num = gravity * sintheta;
    b = costheta * temp;
    num = num - b;
    c2 = costheta * costheta;
    den_in = masspole * c2;
    den_in = den_in / total_mass;
    den_in = 4.0 / 3.0 - den_in;
    den = length * den_in;
    thetaacc = num / den;
    /* xacc = temp - polemass_length * thetaacc * costheta / total_mass */
    c = polemass_length * thetaacc;
    c = c * costheta;
    c = c / total_mass;
    xacc = temp - c;
    /* Euler */
    dx = tau * x_dot;
    dxd = tau * xacc;
    dth = tau * theta_dot;
    dthd = tau * thetaacc;
    d = x + dx;
    env->state[0] = d;
    d = x_dot + dxd;
    env->state[1] = d;
    d = theta + dth;
    env->state[2] = d;
    d = theta_dot + dthd;
    env->state[3] = d;
    x = env->state[0], theta = env->state[2];
    *terminated = x < -x_threshold || x > x_threshold || theta < -theta_threshold || theta > theta_threshold;
    *reward = 1.0;
}

static void dl__cartpole_observe(const dl_env *env, float *obs) {
    int i;
    for (i = 0; i < 4; i++) obs[i] = (float)env->state[i];
}

static const dl_env_ops dl__cartpole_ops = {"CartPole-v1", 4, dl__cartpole_reset, dl__cartpole_step, dl__cartpole_observe};
/* Gymnasium's bounds: x_threshold * 2, inf, theta_threshold * 2, inf (as float32) */
#define DL__CP_THETA2 ((float)(12 * 2 * 3.141592653589793 / 360 * 2))
static const float dl__cartpole_high[4] = {(float)(2.4 * 2), INFINITY, DL__CP_THETA2, INFINITY};
static const float dl__cartpole_low[4] = {-(float)(2.4 * 2), -INFINITY, -DL__CP_THETA2, -INFINITY};

DLDEF dl_env *dl_env_cartpole(void) {
    dl_space obs, act;
    memset(&obs, 0, sizeof(obs));
    memset(&act, 0, sizeof(act));
    obs.kind = DL_SPACE_BOX, obs.n = 4, obs.ndim = 1, obs.shape[0] = 4;
    obs.low = dl__cartpole_low, obs.high = dl__cartpole_high;
    act.kind = DL_SPACE_DISCRETE, act.n = 2;
    return dl_env_new(&dl__cartpole_ops, &obs, &act, 500, NULL);
}

/* ---- MountainCar-v0 --------------------------------------------------------------------------
   Gymnasium's MountainCarEnv.step in float64, one rounding per statement in its order:
       velocity += (action - 1) * force + math.cos(3 * position) * (-gravity)
   i.e. velocity + ((action - 1) * force + cos(3 * position) * -gravity), then np.clip (max
   with the low bound, then min with the high one), position += velocity, clip, and velocity 0
   at the left wall when it is negative. */
static void dl__mountaincar_reset(dl_env *env) {
    double u = dl__uniform01(&env->rng);   /* uniform in [-0.6, -0.4): low + (high - low) * u */
    double span = -0.4 - (-0.6);
    double t = span * u;
    env->state[0] = -0.6 + t;
    env->state[1] = 0.0;
}

static double dl__clip(double v, double lo, double hi) {   /* np.clip: min(max(v, lo), hi) */
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

DL__NO_FP_CONTRACT static void dl__mountaincar_step(dl_env *env, int action, double *reward, int *terminated) {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
    const double min_position = -1.2, max_position = 0.6, max_speed = 0.07, goal_position = 0.5;
    const double goal_velocity = 0.0, force = 0.001, gravity = 0.0025;
    double position = env->state[0], velocity = env->state[1];
    double push = (double)(action - 1) * force, p3 = 3.0 * position, c, g, dv;
    c = cos(p3);
    g = c * -gravity;
    dv = push + g;
    velocity = velocity + dv;
    velocity = dl__clip(velocity, -max_speed, max_speed);
    position = position + velocity;
    position = dl__clip(position, min_position, max_position);
    if (position == min_position && velocity < 0) velocity = 0.0;
    env->state[0] = position;
    env->state[1] = velocity;
    *terminated = position >= goal_position && velocity >= goal_velocity;
    *reward = -1.0;
}

static void dl__mountaincar_observe(const dl_env *env, float *obs) {
    obs[0] = (float)env->state[0];
    obs[1] = (float)env->state[1];
}

static const dl_env_ops dl__mountaincar_ops = {"MountainCar-v0", 2, dl__mountaincar_reset, dl__mountaincar_step, dl__mountaincar_observe};
/* Gymnasium's bounds: [min_position, -max_speed] and [max_position, max_speed] as float32 */
static const float dl__mountaincar_low[2] = {(float)-1.2, (float)-0.07};
static const float dl__mountaincar_high[2] = {(float)0.6, (float)0.07};

DLDEF dl_env *dl_env_mountaincar(void) {
    dl_space obs, act;
    memset(&obs, 0, sizeof(obs));
    memset(&act, 0, sizeof(act));
    obs.kind = DL_SPACE_BOX, obs.n = 2, obs.ndim = 1, obs.shape[0] = 2;
    obs.low = dl__mountaincar_low, obs.high = dl__mountaincar_high;
    act.kind = DL_SPACE_DISCRETE, act.n = 3;
    return dl_env_new(&dl__mountaincar_ops, &obs, &act, 200, NULL);
}

/* ---- Tabular environments (any dl_mdp) -------------------------------------------------------
   Gymnasium's categorical_sample: the first index whose cumulative probability exceeds u. */
static int dl__sample(const double *p, int stride, int n, double u) {
    double cum = 0.0;
    int i;
    for (i = 0; i < n; i++) {
        cum += p[(size_t)i * stride];
        if (cum > u) return i;
    }
    return n - 1;
}

static void dl__mdp_env_reset(dl_env *env) {
    env->state[0] = (double)dl__sample(env->mdp->isd, 1, env->mdp->n_states, dl__uniform01(&env->rng));
}

static void dl__mdp_env_step(dl_env *env, int action, double *reward, int *terminated) {
    int n, i;
    const dl_transition *t = dl_mdp_transitions(env->mdp, (int)env->state[0], action, &n);
    double u, cum = 0.0;
    if (n == 0) { *reward = 0.0; *terminated = 1; return; }   /* an MDP with no transitions here */
    u = dl__uniform01(&env->rng);
    for (i = 0; i < n - 1; i++) {
        cum += t[i].prob;
        if (cum > u) break;
    }
    env->state[0] = (double)t[i].next;
    *reward = t[i].reward;
    *terminated = t[i].terminal;
}

static void dl__mdp_env_observe(const dl_env *env, float *obs) { obs[0] = (float)env->state[0]; }

DLDEF dl_env *dl_env_from_mdp(const dl_mdp *m, int max_episode_steps, const char *name) {
    dl_env_ops *ops;
    dl_space obs, act;
    dl_env *env;
    if (!m) { dl_set_error("dl_env_from_mdp: NULL mdp"); return NULL; }
    memset(&obs, 0, sizeof(obs));
    memset(&act, 0, sizeof(act));
    obs.kind = DL_SPACE_DISCRETE, obs.n = m->n_states;
    act.kind = DL_SPACE_DISCRETE, act.n = m->n_actions;
    /* The ops live in the same block as the env, so that each can carry its own name. */
    env = (dl_env *)DL_MALLOC(sizeof(dl_env) + sizeof(dl_env_ops));
    if (!env) { dl_set_error("dl_env_from_mdp: out of memory"); return NULL; }
    memset(env, 0, sizeof(dl_env) + sizeof(dl_env_ops));
    ops = (dl_env_ops *)(void *)(env + 1);
    ops->name = name ? name : "mdp";
    ops->state_dim = 1;
    ops->reset = dl__mdp_env_reset, ops->step = dl__mdp_env_step, ops->observe = dl__mdp_env_observe;
    env->ops = ops;
    env->observation_space = obs, env->action_space = act;
    env->max_episode_steps = max_episode_steps > 0 ? max_episode_steps : 0;
    env->mdp = m;
    dl_rng_seed(&env->rng, 0);
    return env;
}

DLDEF dl_env *dl_env_frozenlake(int map_name, int slippery) {
    dl_mdp *m = dl_mdp_frozenlake(map_name, slippery);
    dl_env *env = dl_env_from_mdp(m, map_name == 4 ? 100 : 200, "FrozenLake-v1");
    if (!env) { dl_mdp_free(m); return NULL; }
    env->owned_mdp = m;
    return env;
}

DLDEF dl_env *dl_env_gridworld(void) {
    dl_mdp *m = dl_mdp_gridworld();
    dl_env *env = dl_env_from_mdp(m, 0, "Gridworld-4x4");
    if (!env) { dl_mdp_free(m); return NULL; }
    env->owned_mdp = m;
    return env;
}

/* ==== PLANNING: implementation ============================================================== */

static double dl__q(const dl_mdp *m, const double *V, double gamma, int s, int a) {
    int k = s * m->n_actions + a, i;
    double q = 0.0;
    for (i = m->first[k]; i < m->first[k + 1]; i++) {
        const dl_transition *t = &m->tr[i];
        q += t->prob * (t->reward + (t->terminal ? 0.0 : gamma * V[t->next]));
    }
    return q;
}

static int dl__argmax_q(const dl_mdp *m, const double *V, double gamma, int s, double *best_q) {
    int a, best = 0;
    double best_v = dl__q(m, V, gamma, s, 0);
    for (a = 1; a < m->n_actions; a++) {
        double q = dl__q(m, V, gamma, s, a);
        if (q > best_v + 1e-12 * (1.0 + fabs(best_v))) best_v = q, best = a;
    }
    if (best_q) *best_q = best_v;
    return best;
}

static int dl__dp_check(const char *fn, const dl_mdp *m, const void *a, const void *b, double gamma, double theta) {
    if (!m || !a || !b) { dl_set_error("%s: NULL argument", fn); return -1; }
    if (!(gamma >= 0.0 && gamma <= 1.0) || !(theta > 0.0)) {
        dl_set_error("%s: gamma %g must be in [0, 1] and theta %g > 0", fn, gamma, theta);
        return -1;
    }
    return 0;
}

DLDEF int dl_policy_evaluation(const dl_mdp *m, const double *pi, double gamma, double theta, int max_sweeps, double *V) {
    int sweep, s, a, A;
    if (dl__dp_check("dl_policy_evaluation", m, pi, V, gamma, theta) != 0) return -1;
    A = m->n_actions;
    if (max_sweeps <= 0) max_sweeps = 100000;
    for (sweep = 1; sweep <= max_sweeps; sweep++) {
        double delta = 0.0;
        for (s = 0; s < m->n_states; s++) {
            double v = 0.0, d;
            for (a = 0; a < A; a++)
                if (pi[s * A + a] != 0.0) v += pi[s * A + a] * dl__q(m, V, gamma, s, a);
            d = fabs(v - V[s]);
            if (!(d <= delta)) delta = d;   /* NaN too */
            V[s] = v;
        }
        if (delta < theta) return sweep;
        if (!(delta < 1e300)) break;
    }
    dl_set_error("dl_policy_evaluation: no convergence after %d sweeps (an improper policy with gamma = 1?)", sweep - 1);
    return -1;
}

DLDEF int dl_policy_iteration(const dl_mdp *m, double gamma, double theta, int *policy, double *V) {
    int S, A, s, round;
    double *pi;
    if (dl__dp_check("dl_policy_iteration", m, policy, V, gamma, theta) != 0) return -1;
    S = m->n_states, A = m->n_actions;
    for (s = 0; s < S; s++)
        if (policy[s] < 0 || policy[s] >= A) { dl_set_error("dl_policy_iteration: policy[%d] = %d is not an action", s, policy[s]); return -1; }
    pi = (double *)DL_MALLOC(sizeof(double) * (size_t)S * A);
    if (!pi) { dl_set_error("dl_policy_iteration: out of memory"); return -1; }
    for (round = 1; round <= 10000; round++) {
        int stable = 1;
        for (s = 0; s < S * A; s++) pi[s] = 0.0;
        for (s = 0; s < S; s++) pi[s * A + policy[s]] = 1.0;
        if (dl_policy_evaluation(m, pi, gamma, theta, 0, V) < 0) { DL_FREE(pi); return -1; }
        for (s = 0; s < S; s++) {   /* improve; keep the old action unless another is better */
            double best_q, old_q = dl__q(m, V, gamma, s, policy[s]);
            int best = dl__argmax_q(m, V, gamma, s, &best_q);
            if (best_q > old_q + 1e-12 * (1.0 + fabs(old_q))) policy[s] = best, stable = 0;
        }
        if (stable) { DL_FREE(pi); return round; }
    }
    DL_FREE(pi);
    dl_set_error("dl_policy_iteration: no stable policy after 10000 rounds");
    return -1;
}

DLDEF int dl_value_iteration(const dl_mdp *m, double gamma, double theta, int max_sweeps, double *V, int *policy) {
    int sweep, s;
    if (dl__dp_check("dl_value_iteration", m, V, V, gamma, theta) != 0) return -1;
    if (max_sweeps <= 0) max_sweeps = 100000;
    for (sweep = 1; sweep <= max_sweeps; sweep++) {
        double delta = 0.0;
        for (s = 0; s < m->n_states; s++) {
            double v, d;
            dl__argmax_q(m, V, gamma, s, &v);
            d = fabs(v - V[s]);
            if (d > delta) delta = d;
            V[s] = v;
        }
        if (delta < theta) break;
        if (!(delta < 1e300)) sweep = max_sweeps;
    }
    if (sweep > max_sweeps) { dl_set_error("dl_value_iteration: no convergence after %d sweeps", max_sweeps); return -1; }
    if (policy)
        for (s = 0; s < m->n_states; s++) policy[s] = dl__argmax_q(m, V, gamma, s, NULL);
    return sweep;
}

DLDEF int dl_q_from_v(const dl_mdp *m, const double *V, double gamma, double *Q) {
    int s, a;
    if (!m || !V || !Q) { dl_set_error("dl_q_from_v: NULL argument"); return -1; }
    for (s = 0; s < m->n_states; s++)
        for (a = 0; a < m->n_actions; a++) Q[s * m->n_actions + a] = dl__q(m, V, gamma, s, a);
    return 0;
}

/* ==== LEARNING: implementation ============================================================== */

DLDEF dl_td_opts dl_td_defaults(dl_td_method method) {
    dl_td_opts o;
    memset(&o, 0, sizeof(o));
    o.method = method;
    o.steps = 200000;
    o.alpha = 0.1, o.alpha_end = 0.01;
    o.gamma = 0.99;
    o.eps_start = 1.0, o.eps_end = 0.05, o.eps_fraction = 0.5;
    return o;
}

DLDEF void dl_greedy_policy(const double *Q, int n_states, int n_actions, int *policy) {
    int s, a;
    if (!Q || !policy) return;
    for (s = 0; s < n_states; s++) {
        int best = 0;
        for (a = 1; a < n_actions; a++)
            if (Q[s * n_actions + a] > Q[s * n_actions + best]) best = a;
        policy[s] = best;
    }
}

/* argmax with ties broken uniformly at random (reservoir over the maxima) */
static int dl__argmax_random(const double *q, int n, dl_rng *r) {
    int a, best = 0, ties = 1;
    for (a = 1; a < n; a++) {
        if (q[a] > q[best]) best = a, ties = 1;
        else if (q[a] == q[best] && dl_rng_int(r, ++ties) == 0) best = a;
    }
    return best;
}

static int dl__eps_greedy(const double *q, int n, double eps, dl_rng *r) {
    if (dl__uniform01(r) < eps) return dl_rng_int(r, n);
    return dl__argmax_random(q, n, r);
}

static int dl__tabular_check(const char *fn, const dl_env *env) {
    if (env->observation_space.kind != DL_SPACE_DISCRETE || env->action_space.kind != DL_SPACE_DISCRETE ||
        dl_env_obs_size(env) != 1) {
        dl_set_error("%s: %s: needs discrete observations and actions", fn, env->ops->name ? env->ops->name : "env");
        return -1;
    }
    return 0;
}

DLDEF long dl_td_control(dl_env *env, double *Q, const dl_td_opts *o) {
    int S, A, s, a, a2 = 0, term, trunc, i;
    long t, episodes = 0;
    float obs;
    double r;
    dl_rng rng;
    if (!env || !Q || !o) { dl_set_error("dl_td_control: NULL argument"); return -1; }
    if (dl__tabular_check("dl_td_control", env) != 0) return -1;
    if (o->steps < 0 || !(o->alpha >= 0 && o->alpha <= 1) || !(o->alpha_end >= 0 && o->alpha_end <= 1) ||
        !(o->gamma >= 0 && o->gamma <= 1) || !(o->eps_start >= 0 && o->eps_start <= 1) ||
        !(o->eps_end >= 0 && o->eps_end <= 1) || !(o->eps_fraction >= 0) ||
        (o->method != DL_Q_LEARNING && o->method != DL_SARSA && o->method != DL_EXPECTED_SARSA)) {
        dl_set_error("dl_td_control: bad options (alpha, gamma, epsilons in [0, 1], steps >= 0, a known method)");
        return -1;
    }
    S = env->observation_space.n, A = env->action_space.n;
    dl_rng_seed(&rng, o->seed ^ 0x5DEECE66Dull);
    if (dl_env_reset(env, (int64_t)(o->seed & 0x7fffffffffffffffull), &obs) != 0) return -1;
    s = (int)obs;
    for (t = 0; t < o->steps; t++) {
        double frac = o->steps > 1 ? (double)t / (double)(o->steps - 1) : 0.0;
        double ef = o->eps_fraction > 0 ? frac / o->eps_fraction : 1.0;
        double eps = ef >= 1.0 ? o->eps_end : o->eps_start + (o->eps_end - o->eps_start) * ef;
        double alpha = o->alpha + (o->alpha_end - o->alpha) * frac, target, *q;
        if (s < 0 || s >= S) { dl_set_error("dl_td_control: observation %d outside [0, %d)", s, S); return -1; }
        if (o->method != DL_SARSA || t == 0 || a2 < 0) a = dl__eps_greedy(Q + (size_t)s * A, A, eps, &rng);
        else a = a2;
        if (dl_env_step(env, a, &obs, &r, &term, &trunc) != 0) return -1;
        i = (int)obs;
        if (i < 0 || i >= S) { dl_set_error("dl_td_control: observation %d outside [0, %d)", i, S); return -1; }
        q = Q + (size_t)i * A;
        a2 = -1;
        target = r;
        if (!term) {
            if (o->method == DL_Q_LEARNING) {
                double mx = q[0];
                int b;
                for (b = 1; b < A; b++) if (q[b] > mx) mx = q[b];
                target += o->gamma * mx;
            } else if (o->method == DL_SARSA) {
                a2 = dl__eps_greedy(q, A, eps, &rng);
                target += o->gamma * q[a2];
            } else {   /* expected SARSA: eps/A on every action, 1 - eps more on the greedy ones */
                double mx = q[0], e = 0.0;
                int b;
                for (b = 1; b < A; b++) if (q[b] > mx) mx = q[b];
                for (b = 0; b < A; b++) e += q[b] * (eps / A);
                e += (1.0 - eps) * mx;
                target += o->gamma * e;
            }
        }
        Q[(size_t)s * A + a] += alpha * (target - Q[(size_t)s * A + a]);
        s = i;
        if (term || trunc) {
            episodes++;
            a2 = -1;
            if (dl_env_reset(env, -1, &obs) != 0) return -1;
            s = (int)obs;
        }
    }
    return episodes;
}

DLDEF long dl_mc_control(dl_env *env, double *Q, const dl_td_opts *o) {
    int S, A, term = 0, trunc = 0, cap = 256, len, i;
    long t = 0, episodes = 0, *count;
    int *ep_s, *ep_a, *first;
    double *ep_r, r;
    float obs;
    dl_rng rng;
    if (!env || !Q || !o) { dl_set_error("dl_mc_control: NULL argument"); return -1; }
    if (dl__tabular_check("dl_mc_control", env) != 0) return -1;
    if (o->steps < 0 || !(o->gamma >= 0 && o->gamma <= 1) || !(o->eps_start >= 0 && o->eps_start <= 1) ||
        !(o->eps_end >= 0 && o->eps_end <= 1) || !(o->eps_fraction >= 0)) {
        dl_set_error("dl_mc_control: bad options (gamma, epsilons in [0, 1], steps >= 0)");
        return -1;
    }
    S = env->observation_space.n, A = env->action_space.n;
    count = (long *)DL_MALLOC(sizeof(long) * (size_t)S * A);
    first = (int *)DL_MALLOC(sizeof(int) * (size_t)S * A);
    ep_s = (int *)DL_MALLOC(sizeof(int) * (size_t)cap);
    ep_a = (int *)DL_MALLOC(sizeof(int) * (size_t)cap);
    ep_r = (double *)DL_MALLOC(sizeof(double) * (size_t)cap);
    if (!count || !first || !ep_s || !ep_a || !ep_r) { dl_set_error("dl_mc_control: out of memory"); episodes = -1; goto done; }
    for (i = 0; i < S * A; i++) count[i] = 0, first[i] = -1;
    dl_rng_seed(&rng, o->seed ^ 0x5DEECE66Dull);
    while (t < o->steps) {
        double G = 0.0;
        if (dl_env_reset(env, episodes == 0 ? (int64_t)(o->seed & 0x7fffffffffffffffull) : -1, &obs) != 0) { episodes = -1; goto done; }
        term = trunc = 0;
        for (len = 0; !term && !trunc && t < o->steps; len++, t++) {
            double frac = o->steps > 1 ? (double)t / (double)(o->steps - 1) : 0.0;
            double ef = o->eps_fraction > 0 ? frac / o->eps_fraction : 1.0;
            double eps = ef >= 1.0 ? o->eps_end : o->eps_start + (o->eps_end - o->eps_start) * ef;
            int s = (int)obs, a;
            if (s < 0 || s >= S) { dl_set_error("dl_mc_control: observation %d outside [0, %d)", s, S); episodes = -1; goto done; }
            if (len == cap) {   /* grow the episode buffer (only for long episodes) */
                int *ns = (int *)DL_REALLOC(ep_s, sizeof(int) * (size_t)cap * 2), *na;
                double *nr;
                if (ns) ep_s = ns;
                na = ns ? (int *)DL_REALLOC(ep_a, sizeof(int) * (size_t)cap * 2) : NULL;
                if (na) ep_a = na;
                nr = na ? (double *)DL_REALLOC(ep_r, sizeof(double) * (size_t)cap * 2) : NULL;
                if (!nr) { dl_set_error("dl_mc_control: out of memory"); episodes = -1; goto done; }
                ep_r = nr, cap *= 2;
            }
            a = dl__eps_greedy(Q + (size_t)s * A, A, eps, &rng);
            if (dl_env_step(env, a, &obs, &r, &term, &trunc) != 0) { episodes = -1; goto done; }
            ep_s[len] = s, ep_a[len] = a, ep_r[len] = r;
            if (first[s * A + a] < 0) first[s * A + a] = len;
        }
        for (i = len - 1; i >= 0; i--) {
            int k = ep_s[i] * A + ep_a[i];
            G = o->gamma * G + ep_r[i];
            if (first[k] == i) {
                count[k]++;
                Q[k] += (G - Q[k]) / (double)count[k];
            }
        }
        for (i = 0; i < len; i++) first[ep_s[i] * A + ep_a[i]] = -1;
        episodes++;
    }
done:
    DL_FREE(count), DL_FREE(first), DL_FREE(ep_s), DL_FREE(ep_a), DL_FREE(ep_r);
    return episodes;
}

DLDEF double dl_run_policy(dl_env *env, const int *policy, int episodes, uint64_t seed) {
    int e, term, trunc;
    float obs;
    double r, total = 0.0;
    if (!env || !policy || episodes <= 0) { dl_set_error("dl_run_policy: NULL argument or no episodes"); return NAN; }
    if (dl__tabular_check("dl_run_policy", env) != 0) return NAN;
    for (e = 0; e < episodes; e++) {
        if (dl_env_reset(env, e == 0 ? (int64_t)(seed & 0x7fffffffffffffffull) : -1, &obs) != 0) return NAN;
        term = trunc = 0;
        while (!term && !trunc) {
            int s = (int)obs;
            if (s < 0 || s >= env->observation_space.n) { dl_set_error("dl_run_policy: observation %d out of range", s); return NAN; }
            if (dl_env_step(env, policy[s], &obs, &r, &term, &trunc) != 0) return NAN;
            total += r;
        }
    }
    return total / episodes;
}

#endif /* DL_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
MIT License

Copyright (c) 2026 the dl authors

Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
*/
