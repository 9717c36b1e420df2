/* dl_rl.h - v0.2.0 - reinforcement learning for dl, in C99: a Gymnasium-like environment
   interface, CartPole-v1 and MountainCar-v0 (Gymnasium's dynamics to the last bit),
   FrozenLake-v1, MinAtar's Breakout, the gridworld of Sutton & Barto's Example 4.1, rendering
   to RGB pictures, vectorized environments with autoreset, tabular MDPs, dynamic programming
   (policy evaluation, policy iteration, value iteration), tabular TD control (Q-learning,
   SARSA, expected SARSA), first-visit Monte Carlo control, and DQN agents (replay buffer,
   target network, Double DQN) whose trained policy a game loop can call every frame.
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
       dl_td_opts o = {0};                                     // 0s: Q-learning, default alpha, gamma, ...
       o.steps = 300000; o.seed = 1;
       if (dl_td_control(env, Q, &o) < 0) { puts(dl_error()); return 1; }
       dl_greedy_policy(Q, S, A, policy);
       printf("success_rate=%.4f\n", dl_run_policy(env, policy, 10000, 2));   // ~0.73

   DQN on CartPole-v1 (examples/cartpole_dqn.c; CleanRL's settings, ~5 s on 2 cores):

       dl_env *env = dl_env_cartpole();
       dl_dqn_opts o = {0};                                    // 0s: 500k steps, buffer 10k, ...
       o.max_grad_norm = 10;
       dl_model *q = dl_sequential(dl_Dense(120, DL_ACT_RELU), dl_Dense(84, DL_ACT_RELU), dl_Dense(2, DL_ACT_LINEAR));
       dl_dqn *agent = dl_dqn_new(q, NULL, dl_adam(2.5e-4),
                                  &env->observation_space, 2, &o);   // takes over q and the optimizer
       dl_dqn_learn(agent, env, 0, NULL, NULL);                // 0: the whole run (total_steps)
       printf("%.1f\n", dl_dqn_mean_return(agent, 100));       // ~490
       dl_dqn_save_policy(agent, "cartpole.safetensors");      // a game: dl_dqn_load_policy +
       int action = dl_dqn_act(agent, obs, NULL);              // dl_dqn_act every frame, no malloc

   and the environment loop, as in Gymnasium:

       float obs[4]; double r; int term = 0, trunc = 0;
       dl_env *cp = dl_env_cartpole();
       dl_env_reset(cp, 42, obs);                              // seed < 0: keep the env's RNG
       while (!term && !trunc) dl_env_step(cp, obs[2] + obs[3] > 0, obs, &r, &term, &trunc);  // 500 steps

   CONTENTS
       SPACES        dl_space: discrete (n values) or box (n floats of a shape, low/high bounds)
       ENVIRONMENTS  dl_env + dl_env_ops (write your own: dl_env_new), dl_env_reset,
                     dl_env_step, dl_env_state / dl_env_set_state; built-ins:
                     dl_env_cartpole, dl_env_mountaincar, dl_env_frozenlake (4x4, 8x8 or your
                     map), dl_env_breakout (MinAtar), dl_env_gridworld (Example 4.1),
                     dl_env_from_mdp (any tabular MDP as an environment);
                     dl_env_render_size / dl_env_render (RGB picture of the state; every
                     built-in but dl_env_from_mdp's), dl_ppm_save, dl_env_save_png (with
                     stb_image_write.h); dl_vec_env (n envs stepped together, autoreset)
       MDPS          dl_mdp: P[s][a] as a list of (prob, next, reward, terminal), as Gymnasium's
                     env.P; dl_mdp_new / dl_mdp_add to build one; dl_mdp_frozenlake,
                     dl_mdp_gridworld
       PLANNING      dl_policy_evaluation, dl_policy_iteration, dl_value_iteration, dl_q_from_v
       LEARNING      dl_td_control (Q-learning, SARSA, expected SARSA, epsilon-greedy with a
                     linear schedule), dl_mc_control (first-visit Monte Carlo control),
                     dl_greedy_policy, dl_run_policy
       REPLAY BUFFER dl_replay: a ring of transitions, float or byte observations, sampling
       DQN           dl_dqn: dl_dqn_new, dl_dqn_learn (the whole loop) or dl_dqn_explore +
                     dl_dqn_observe (your own loop), dl_dqn_act / _act_batch / _q_values
                     (greedy, optional action mask), dl_dqn_move (to the GPU, with
                     dl_cuda.cu), dl_dqn_options, dl_dqn_save_policy /
                     dl_dqn_load_policy, dl_dqn_save / dl_dqn_load (the whole training state:
                     resumes exactly)

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
       Breakout: MinAtar's (Young & Tian 2019, "MinAtar: An Atari-inspired testbed for thorough
       and reproducible reinforcement learning experiments", arXiv:1903.03176; its
       breakout.py). A 10x10 grid (x column, y row from the top): paddle on row 9 at x (starts
       at 4), bricks filling rows 1..3, a ball moving diagonally (direction 0 up-left, 1
       up-right, 2 down-right, 3 down-left) that starts at row 3 either at x 0 going down-right
       or at x 9 going down-left (1/2 each). Actions (MinAtar's minimal set): 0 no-op, 1 left,
       2 right (the paddle stops at the edges). A step moves the paddle, then the ball by its
       direction: past a side wall it is held at the edge and its x-direction turns; above the
       top it is held at row 0 and its y-direction turns; else on a brick it takes the brick
       (reward 1), stays on its old row and its y-direction turns, unless the step before
       also landed on a brick (the strike flag: then it moves onto this one, no reward); else on row 9 it
       refills the wall when no brick is left and bounces (stays on its old row) when the
       paddle is under the ball's old column (y-direction turns) or under its new one (both
       turn); otherwise the episode terminates. Sticky actions (MinAtar's default p = 0.1): with
       probability p the previous action (0 after reset; MinAtar keeps it across resets) is
       taken instead. The observation is MinAtar's state as 0/1 floats, channel-first [4, 10,
       10] (channels paddle, ball, trail = the ball's previous cell, brick; index c * 100 + y
       * 10 + x), ready for an NCHW conv. No time limit (set max_episode_steps). The state
       (get_state/set_state) is 9 doubles: ball x, y, direction, trail x, y, paddle x, strike
       flag, bricks (bit (y - 1) * 10 + x), previous action. Given a state and an action the
       next state equals MinAtar's (tests/test_rl.c checks 5520 recorded steps with refills);
       random play returns about 0.38 a game, as MinAtar's random agent.
       Rendering: CartPole and MountainCar draw Gymnasium's rgb_array pictures (600x400: cart,
       pole, axle, track; hill, car, flag), Breakout 16x16-pixel cells in MinAtar's colors on
       black, FrozenLake and the gridworld 64-pixel tiles with the agent as a red disc. Your own
       env renders when its ops set render_width, render_height and render.
       Vectorized (dl_vec_env): Gymnasium's SyncVectorEnv in its default autoreset mode
       (NEXT_STEP): env i ends on a step, the next step resets it (its action ignored) and
       reports the first observation with reward 0, not terminated, not truncated. Reset with
       seed >= 0 seeds env i with seed + i.

   CONFIGURATION
       dl_tensor.h's DL_MALLOC/DL_FREE, DL_STATIC and DL_NO_STDIO apply (DL_NO_STDIO leaves out
       dl_ppm_save; the only file I/O here). dl_env_save_png exists when <stb_image_write.h>
       (Debian: <stb/stb_image_write.h>, libstb-dev) was included before this file.

   OWNERSHIP
       dl_env_* constructors return environments you own (dl_env_free); dl_env_from_mdp borrows
       its MDP (it must outlive the env), dl_env_frozenlake and dl_env_gridworld own theirs
       (dl_env_mdp borrows it back). dl_vec_env_new takes over the envs it is given
       (dl_vec_env_free frees them) unless it fails. dl_mdp_* return MDPs you own
       (dl_mdp_free). dl_dqn_new takes over the networks and the optimizer (also when it
       fails); dl_dqn_free frees them, its replay buffer and its arena. Every array argument (V, Q, policies, observations, pictures) is the
       caller's; nothing is kept.

   OPTIONS
       dl_td_opts and dl_dqn_opts: a zero-initialised struct (or a NULL pointer) gives the
       documented defaults, and so does 0 in any field; where 0 is a meaningful value other
       than the default (gamma, epsilons, learning_starts, ...), DL_ZERO (-1) asks for a
       real 0. Each field's comment gives its default and whether DL_ZERO applies; any other
       negative value is an error.

   COUNTERS
       An env's step count (elapsed) saturates at INT_MAX and a DQN agent's step, update and
       episode counts at LONG_MAX: they never overflow, however long a run.

   ERRORS
       Calls that do something return 0 on success; calls that compute a count or an action
       (the planning sweeps and rounds, dl_td_control's episodes, dl_dqn_act) return it (>= 0);
       every one gives -1 + dl_error() on bad arguments (NULL, an action out of range, stepping
       an episode that is over, a policy evaluation that does not converge in max_sweeps);
       constructors return NULL + dl_error(). dl_run_policy returns NaN on error.
       dl_dqn_load reads and checks the whole file before it makes or writes anything (every
       number whole, in range and finite, every size against the file's own tensors), so a
       truncated, corrupt or hostile file gives an error and leaves the env as it was;
       dl_dqn_load_policy checks the model file the same way (dl_model_load). Nothing here
       calls exit or abort.

   NOT HERE (yet)
       MountainCarContinuous, Acrobot, Pendulum, the other MinAtar games; policy-gradient and
       actor-critic agents (REINFORCE, A2C, PPO); prioritized replay, n-step returns, dueling
       networks; dl_dqn_learn on a dl_vec_env (one env per agent; dl_dqn_observe serves your
       own vectorized loop).

   REVISION HISTORY (CHANGELOG.md has the details)
       0.2.0  names follow the family's rule (see CHANGELOG.md)
       0.1.0  environments (CartPole, MountainCar, Breakout, FrozenLake, gridworld), tabular RL,
              DQN agents

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

#define DL_ENV_MAX_STATE 16     /* doubles of internal state an environment keeps inline */
typedef struct dl_env dl_env;
/* An environment's behaviour. Write your own and make it with dl_env_new; the functions get
   the env (your data in env->user) and never need to allocate. */
typedef struct dl_env_ops {
    const char *name;                                     /* "CartPole-v1", ... */
    int state_dim;                                        /* doubles of env->state in use */
    void (*reset)(dl_env *env);                           /* draw env->state from env->rng */
    void (*step)(dl_env *env, int action, double *reward, int *terminated); /* advance env->state */
    void (*observe)(const dl_env *env, float *obs);       /* the observation of env->state */
    /* optional (0, 0, NULL: no renderer): an RGB picture of env->state, render_width x
       render_height pixels, 3 bytes each, row by row from the top left */
    int render_width, render_height;
    void (*render)(const dl_env *env, unsigned char *rgb);
} dl_env_ops;

struct dl_env {
    const dl_env_ops *ops;
    dl_space observation_space, action_space;
    int max_episode_steps;      /* truncation after this many steps; 0: never */
    int elapsed;                /* steps since the last reset (saturates at INT_MAX) */
    int running;                /* 1 between reset (or set_state) and the end of the episode */
    dl_rng rng;                 /* the environment's own generator (reset, slippery moves) */
    double state[DL_ENV_MAX_STATE]; /* CartPole: x, x_dot, theta, theta_dot; tabular: the index;
                                       Breakout: see the top of the file */
    const dl_mdp *mdp;          /* tabular environments: their model (else NULL) */
    dl_mdp *owned_mdp;          /* freed by dl_env_free */
    void *user;                 /* yours (dl_env_new) */
    double setting;             /* a built-in env's parameter (Breakout: sticky-action probability) */
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
/* MinAtar's Breakout (see the top of the file); sticky_action_prob < 0: MinAtar's 0.1. No time
   limit (set env->max_episode_steps for one). */
DLDEF dl_env *dl_env_breakout(double sticky_action_prob);
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
DLDEF int dl_env_state(const dl_env *env, double *state);
DLDEF int dl_env_set_state(dl_env *env, const double *state, float *obs);

/* Rendering: the picture's size, and the picture of the current state into rgb (width * height
   * 3 bytes, RGB, row-major from the top left; nothing is allocated). -1 + dl_error() when the
   env has no renderer. */
DLDEF int dl_env_render_size(const dl_env *env, int *width, int *height);
DLDEF int dl_env_render(const dl_env *env, unsigned char *rgb);
#ifndef DL_NO_STDIO
/* rgb (w x h, as dl_env_render writes it) as a binary PPM (P6) file. 0 or -1 + dl_error(). */
DLDEF int dl_ppm_save(const char *path, const unsigned char *rgb, int w, int h);
#endif
#ifdef DL_HAVE_PNG   /* stb_image_write.h was included before the dl headers */
/* Only when stb_image_write.h was included before the dl headers: the env's picture as a PNG
   (dl_png_save; allocates the picture's buffer for the call). 0 or -1 + dl_error(). */
DLDEF int dl_env_save_png(const dl_env *env, const char *path);
#endif

/* Vectorized environments: n environments of the same spaces stepped together, as Gymnasium's
   SyncVectorEnv with its default autoreset mode (NEXT_STEP): when env i ended (terminated or
   truncated) on a step, the next dl_vec_env_step resets it instead of stepping it (its action is
   ignored) and returns the reset observation with reward 0, terminated 0, truncated 0.
   Observations are n * obs_size floats, env i's at obs + i * obs_size. */
typedef struct dl_vec_env {
    int n, obs_size;
    dl_env **envs;              /* [n], owned */
    int *ended;                 /* [n]: 1 when env i ended on the last step (reset on the next) */
} dl_vec_env;
/* Takes over envs[0..n-1] (freed by dl_vec_env_free), which must have equal observation and
   action spaces. On failure: NULL + dl_error(), and the envs stay the caller's. */
DLDEF dl_vec_env *dl_vec_env_new(int n, dl_env *const *envs);
DLDEF void dl_vec_env_free(dl_vec_env *v);   /* frees the envs too; NULL is fine */
/* Resets every env, env i with seed + i when seed >= 0 (else each continues its generator).
   obs may be NULL. 0 or -1 + dl_error(). */
DLDEF int dl_vec_env_reset(dl_vec_env *v, int64_t seed, float *obs);
/* One step of every env with actions[i] (autoreset as above). Output arrays (n each; obs n *
   obs_size) may be NULL. Nothing allocates. 0 or -1 + dl_error() (bad action: then no env
   moved; not reset yet). */
DLDEF int dl_vec_env_step(dl_vec_env *v, const int *actions, float *obs, double *rewards, int *terminated, int *truncated);

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
DLDEF int dl_policy_iteration(const dl_mdp *m, double gamma, double theta, double *V, int *policy);
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
typedef enum dl_td_method { DL_TD_Q_LEARNING = 0, DL_TD_SARSA = 1, DL_TD_EXPECTED_SARSA = 2 } dl_td_method;
/* Options: a zero-initialised struct (or a NULL pointer) gives the defaults, and so does 0 in
   any field. Where 0 is a meaningful value other than the default, write DL_ZERO (-1) for
   a real 0 (e.g. o.eps_end = DL_ZERO: fully greedy at the end). The defaults (Q-learning with
   these: greedy success ~0.73 on slippery FrozenLake 4x4; a constant alpha 0.1 leaves Q too
   noisy for a good greedy policy there) are given with each field. */
typedef struct dl_td_opts {
    dl_td_method method;          /* DL_TD_Q_LEARNING (0, the default), _SARSA, _EXPECTED_SARSA */
    long steps;                   /* environment steps in all: 200000 */
    double alpha, alpha_end;      /* step size, linearly from alpha to alpha_end: 0.1 -> 0.01 (DL_ZERO: 0) */
    double gamma;                 /* discount: 0.99 (DL_ZERO: 0) */
    double eps_start, eps_end;    /* exploration schedule: 1 -> 0.05 (DL_ZERO: 0) ... */
    double eps_fraction;          /* ... reaching eps_end after this fraction of the steps: 0.5 (DL_ZERO: 0) */
    uint64_t seed;                /* 0 (a seed like any other) */
} dl_td_opts;
/* opts NULL: the defaults. Returns the number of episodes finished, or -1 + dl_error(). */
DLDEF long dl_td_control(dl_env *env, double *Q, const dl_td_opts *opts);
/* First-visit Monte Carlo control with an epsilon-soft policy (Sutton & Barto 5.4): whole
   episodes are generated with the epsilon-greedy policy (same schedule, seeds and step budget
   as dl_td_control; the last episode is cut at the budget), then for the first visit of each
   (s, a): Q(s,a) += (G - Q(s,a)) / N(s,a), N the number of first visits so far (the average of
   the book's Returns list). opts->method, alpha and alpha_end are ignored. Allocates its episode buffer and counts once per call (DL_MALLOC; nothing per
   step). Returns the episodes, or -1 + dl_error(). */
DLDEF long dl_mc_control(dl_env *env, double *Q, const dl_td_opts *opts);   /* opts NULL: defaults */
/* policy[s] = argmax_a Q[s * A + a] (ties toward the lowest action). */
DLDEF void dl_greedy_policy(const double *Q, int n_states, int n_actions, int *policy);
/* Runs the deterministic policy[state] for `episodes` episodes (the first reset with seed,
   then the env's generator) and returns the mean undiscounted return (for FrozenLake: the
   success rate), or NaN + dl_error(). */
DLDEF double dl_run_policy(dl_env *env, const int *policy, int episodes, uint64_t seed);

/* ==== REPLAY BUFFER ========================================================================
   A ring of transitions (obs, action, reward, next_obs, terminated): slot `pos` is written
   next; once `capacity` are stored, each new one replaces the oldest. Observations are kept
   as floats, or as bytes when obs_u8 (observations whose values are integers in 0..255, like
   MinAtar's 0/1 planes: a quarter of the memory). Sampling draws indices uniformly, with
   replacement, from the transitions stored (Stable-Baselines3's ReplayBuffer.sample, which
   CleanRL's DQN uses). */
typedef struct dl_replay {
    int capacity, size, pos;   /* slots, transitions stored, next slot written */
    int obs_size, obs_u8;
    void *obs, *next_obs;      /* capacity * obs_size floats (or bytes when obs_u8) */
    int32_t *action;
    float *reward;
    unsigned char *terminated;
    int alloc_;                /* private: slots allocated (capacity, except for a loaded training
                                  state's buffer, which grows to it as it fills) */
} dl_replay;
DLDEF dl_replay *dl_replay_new(int capacity, int obs_size, int obs_u8);   /* owned: dl_replay_free */
DLDEF void dl_replay_free(dl_replay *r);                                   /* NULL is fine */
/* Stores one transition (copied). With obs_u8, every value must be an integer in 0..255.
   0 on success, -1 + dl_error(). */
DLDEF int dl_replay_add(dl_replay *r, const float *obs, int action, double reward, const float *next_obs, int terminated);
/* n indices drawn uniformly from [0, size) with rng. 0, or -1 + dl_error() when empty. */
DLDEF int dl_replay_sample(const dl_replay *r, dl_rng *rng, int n, int *idx);
/* Transition i (0 <= i < size) copied out; any output may be NULL. 0 or -1. */
DLDEF int dl_replay_get(const dl_replay *r, int i, float *obs, int *action, float *reward, float *next_obs, int *terminated);

/* ==== DQN ==================================================================================
   Deep Q-learning (Mnih et al. 2015) as CleanRL's dqn.py runs it: epsilon-greedy steps with a
   linear schedule, a replay buffer, one gradient step every train_freq environment steps once
   learning_starts steps are done, and a target network updated every target_update_freq steps
   (target = tau * online + (1 - tau) * target; tau 1 copies). The TD target of a transition is
       y = r + gamma * (1 - terminated) * Q_target(s', a*),
   a* = argmax Q_target(s', .) (DQN) or argmax Q_online(s', .) (Double DQN, van Hasselt et al.
   2016); the loss is the mean over the batch of (Q_online(s, a) - y)^2 or its Huber form.
   Truncated episodes keep their bootstrap (only `terminated` stops it).

   An agent owns: the online Q network (any dl_nn.h model mapping a batch of observations to
   [batch, n_actions]), the target network, the optimizer, the replay buffer and one arena;
   steps after the first allocate nothing (but for a loaded training state, whose replay buffer
   holds only the transitions of the file and doubles as training fills it, up to buffer_size).
   Its counters saturate at LONG_MAX. Acting is greedy and deterministic (ties go to the
   lowest action), one observation or a batch, with an optional mask of allowed actions. */
typedef enum dl_dqn_loss { DL_DQN_LOSS_MSE = 0, DL_DQN_LOSS_HUBER = 1 } dl_dqn_loss;
/* Options: a zero-initialised struct (or a NULL pointer) gives CleanRL's CartPole-v1 settings
   (its dqn.py defaults; pair them with dl_adam(2.5e-4)), and so does 0 in
   any field. Where 0 is a meaningful value other than the default, write DL_ZERO (-1) for a
   real 0 (e.g. o.learning_starts = DL_ZERO: updates from the first steps). Each field
   gives its default. */
typedef struct dl_dqn_opts {
    long total_steps;         /* the run's length in env steps, which dl_dqn_learn calls may not
                                 pass (the epsilon schedule spans it): 500000 */
    int buffer_size;          /* replay capacity: 10000 */
    int obs_u8;               /* 1: replay stores observations as bytes (see dl_replay): 0 */
    int batch_size;           /* 128 */
    long learning_starts;     /* steps before the first update (the buffer fills meanwhile): 10000 (DL_ZERO: 0) */
    int train_freq;           /* an update every train_freq steps after learning_starts: 10 ... */
    int gradient_steps;       /* ... of this many gradient steps: 1 (DL_ZERO: 0, none) */
    int target_update_freq;   /* steps between target updates (after learning_starts): 500 */
    double tau;               /* 1 (the default): hard copy; < 1: Polyak averaging */
    double gamma;             /* 0.99 (DL_ZERO: 0) */
    double eps_start, eps_end, eps_fraction;  /* eps_start -> eps_end over eps_fraction * total_steps:
                                 1 -> 0.05 over 0.5 (each: DL_ZERO for 0) */
    int double_dqn;           /* 1: Double DQN targets; 0 (the default): DQN's */
    dl_dqn_loss loss;         /* DL_DQN_LOSS_MSE (0, the default) or DL_DQN_LOSS_HUBER */
    double huber_delta;       /* DL_DQN_LOSS_HUBER's delta: 1, as torch's default */
    double max_grad_norm;     /* > 0: gradients clipped to this global L2 norm; 0 (the default): none */
    uint64_t seed;            /* exploration and replay sampling; the first env reset: 1 (DL_ZERO: 0) */
} dl_dqn_opts;

typedef struct dl_dqn dl_dqn;
/* An agent for observations of obs_space's shape and n_actions actions. Takes over q,
   target (NULL: made from q by dl_model_serialize + dl_model_parse; custom models need one made
   in code) and opt (q is compiled with it, so q owns it; NULL makes an agent that can only act).
   q is built for the observation shape if it is not. opts NULL: the defaults. Everything
   given is freed on failure too. Owned: dl_dqn_free. */
DLDEF dl_dqn *dl_dqn_new(dl_model *q, dl_model *target, dl_optim *opt, const dl_space *obs_space,
                         int n_actions, const dl_dqn_opts *opts);
DLDEF void dl_dqn_free(dl_dqn *a);   /* NULL is fine */
/* Moves the agent's networks to device (DL_DEVICE_CUDA in a DL_CUDA build with dl_cuda.cu,
   README "GPU"; DL_DEVICE_CPU back) in one call: the online network with its optimizer's
   state and the target network (dl_model_move on each); the replay buffer stays on the host.
   Then every agent function works as on the CPU, with the same results to float rounding:
   act, act_batch and q_values copy the observations to the GPU and the Q values back (one
   copy each way per call), an update copies its sampled batch there once and computes the TD
   targets, the loss and the optimizer step there, update_target blends there, and the save
   functions write the CPU agent's bytes (the loaders give CPU agents: move them). Device
   memory comes from the agent's arena, kept across calls (no device allocation per call once
   the sizes have been seen). 0, or -1 + dl_error() with nothing moved: NULL agent, unknown
   device, no GPU, a build without DL_CUDA (where only DL_DEVICE_CPU works). */
DLDEF int dl_dqn_move(dl_dqn *a, dl_device device);

/* Greedy action for one observation (obs_size floats); mask (may be NULL) has n_actions bytes,
   nonzero for allowed actions. Returns the action, or -1 + dl_error() (every action masked).
   No allocation after the first call. */
DLDEF int dl_dqn_act(dl_dqn *a, const float *obs, const unsigned char *mask);
/* The same for n observations at once (mask: n * n_actions bytes or NULL). 0 or -1. */
DLDEF int dl_dqn_act_batch(dl_dqn *a, int n, const float *obs, const unsigned char *mask, int *actions);
/* Q values of n observations into q[n * n_actions]. 0 or -1. */
DLDEF int dl_dqn_q_values(dl_dqn *a, int n, const float *obs, float *q);

/* The pieces of the training loop, for loops you write yourself (a game's frame loop):
   dl_dqn_epsilon: epsilon at the current step; dl_dqn_explore: epsilon-greedy action (uses and
   advances the agent's generator); dl_dqn_observe: stores a transition, counts a step, and runs
   the updates and target updates that fall due on it (CleanRL's order). */
DLDEF double dl_dqn_epsilon(const dl_dqn *a);
DLDEF int dl_dqn_explore(dl_dqn *a, const float *obs, const unsigned char *mask);
DLDEF int dl_dqn_observe(dl_dqn *a, const float *obs, int action, double reward, const float *next_obs, int terminated);
/* One gradient step on a sampled batch; *loss (may be NULL) gets its loss. 0 or -1. */
DLDEF int dl_dqn_update(dl_dqn *a, double *loss);
DLDEF void dl_dqn_update_target(dl_dqn *a);   /* target = tau * online + (1 - tau) * target */

/* Runs `steps` environment steps of training on env, continuing where the last call (or a
   loaded training state) stopped: the first call resets env with opts.seed, later episodes
   with the env's own generator. The run is opts.total_steps long (the epsilon schedule spans
   it): steps 0 runs the rest of it, and steps beyond it (dl_dqn_steps + steps > total_steps)
   are an error before anything runs; split a run over several calls freely. on_episode (may
   be NULL) is called after each episode with its return; returning nonzero stops early.
   Returns the episodes finished in this call, or -1 + dl_error(). */
typedef int (*dl_dqn_episode_fn)(dl_dqn *a, double episode_return, void *user);
DLDEF long dl_dqn_learn(dl_dqn *a, dl_env *env, long steps, dl_dqn_episode_fn on_episode, void *user);
/* Mean return of the last n (<= 100) finished episodes (fewer when fewer ended; NaN if none). */
DLDEF double dl_dqn_mean_return(const dl_dqn *a, int n);
DLDEF long dl_dqn_steps(const dl_dqn *a);      /* environment steps observed (saturating) */
DLDEF long dl_dqn_episodes(const dl_dqn *a);   /* episodes finished in dl_dqn_learn (saturating) */
DLDEF long dl_dqn_updates(const dl_dqn *a);    /* gradient steps (saturating) */
DLDEF dl_model *dl_dqn_model(const dl_dqn *a);         /* the online network (borrowed) */
DLDEF dl_model *dl_dqn_target_model(const dl_dqn *a);  /* the target network (borrowed) */
DLDEF const dl_replay *dl_dqn_replay(const dl_dqn *a); /* NULL for an act-only agent */
DLDEF dl_dqn_opts dl_dqn_options(const dl_dqn *a);     /* the options in use, defaults filled in */

/* Saving. The policy alone is the online network as a dl_nn.h model file (dl_model_save, no
   optimizer): dl_dqn_load_policy gives an act-only agent, and dl_model_load reads it too. The
   training state is one safetensors file ("dl.format" = "dl.dqn.v1") holding both networks
   (each a whole dl_nn.h model file stored as a U8 tensor, the online one with the optimizer's
   state), the replay buffer, the counters, the last 100 returns, the agent's generator, the
   options, the current observation and episode progress, and, when env is given, the
   environment's state and generator: loading it and calling dl_dqn_learn continues exactly as
   the saved run would have (same bits). */
#ifndef DL_NO_STDIO
DLDEF int dl_dqn_save_policy(dl_dqn *a, const char *path);
DLDEF dl_dqn *dl_dqn_load_policy(const char *path);
DLDEF int dl_dqn_save(dl_dqn *a, const char *path, const dl_env *env);
/* A new agent from a training state (owned: dl_dqn_free). env (may be NULL) must be the same
   kind as the saved one; its state is restored. Everything is checked before anything is
   made or written: on failure (NULL + dl_error()) env is untouched. The replay buffer gets the
   slots the file fills and grows as training goes on; the batch indices come with the first
   update. */
DLDEF dl_dqn *dl_dqn_load(const char *path, dl_env *env);
#endif

#ifdef __cplusplus
}
#endif
#endif /* DL_RL_H */

#if defined(DL_IMPLEMENTATION) && !defined(DL_IMPLEMENTATION_ELSEWHERE) && !defined(DL__NN_IMPLEMENTED)
#include "dl_nn.h"   /* its implementation too, also when it was first included plainly */
#endif

#if defined(DL_IMPLEMENTATION) && !defined(DL__RL_IMPLEMENTED) && !defined(DL_IMPLEMENTATION_ELSEWHERE)
#define DL__RL_IMPLEMENTED

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifndef DL_NO_STDIO
#include <stdio.h>
#endif

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
    if (env->elapsed < INT_MAX) env->elapsed++;   /* saturates: no time limit is that long */
    trunc = env->max_episode_steps > 0 && env->elapsed >= env->max_episode_steps;
    if (term || trunc) env->running = 0;
    if (obs) env->ops->observe(env, obs);
    if (reward) *reward = r;
    if (terminated) *terminated = term != 0;
    if (truncated) *truncated = trunc;
    return 0;
}

DLDEF int dl_env_state(const dl_env *env, double *state) {
    int i;
    if (!env || !state) { dl_set_error("dl_env_state: NULL argument"); return -1; }
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

static void dl__cartpole_render(const dl_env *env, unsigned char *rgb);
static const dl_env_ops dl__cartpole_ops = {"CartPole-v1", 4, dl__cartpole_reset, dl__cartpole_step, dl__cartpole_observe,
                                            600, 400, dl__cartpole_render};
/* Gymnasium's bounds: x_threshold * 2, inf, theta_threshold * 2, inf (as float32) */
#define DL__CP_THETA2 ((float)(12 * 2 * 3.141592653589793 / 360 * 2))
static const float dl__cartpole_high[4] = {(float)(2.4 * 2), INFINITY, DL__CP_THETA2, INFINITY};
static const float dl__cartpole_low[4] = {-(float)(2.4 * 2), -INFINITY, -DL__CP_THETA2, -INFINITY};

/* A built-in env with a box observation of `shape` (bounds borrowed) and n_actions actions. */
static dl_env *dl__box_env(const dl_env_ops *ops, int ndim, const int *shape, const float *low, const float *high,
                           int n_actions, int max_episode_steps) {
    dl_space obs, act;
    int i;
    memset(&obs, 0, sizeof(obs));
    memset(&act, 0, sizeof(act));
    obs.kind = DL_SPACE_BOX, obs.ndim = ndim, obs.n = 1;
    for (i = 0; i < ndim; i++) obs.shape[i] = shape[i], obs.n *= shape[i];
    obs.low = low, obs.high = high;
    act.kind = DL_SPACE_DISCRETE, act.n = n_actions;
    return dl_env_new(ops, &obs, &act, max_episode_steps, NULL);
}

DLDEF dl_env *dl_env_cartpole(void) {
    static const int shape[1] = {4};
    return dl__box_env(&dl__cartpole_ops, 1, shape, dl__cartpole_low, dl__cartpole_high, 2, 500);
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

static void dl__mountaincar_render(const dl_env *env, unsigned char *rgb);
static const dl_env_ops dl__mountaincar_ops = {"MountainCar-v0", 2, dl__mountaincar_reset, dl__mountaincar_step,
                                               dl__mountaincar_observe, 600, 400, dl__mountaincar_render};
/* Gymnasium's bounds: [min_position, -max_speed] and [max_position, max_speed] as float32 */
static const float dl__mountaincar_low[2] = {(float)-1.2, (float)-0.07};
static const float dl__mountaincar_high[2] = {(float)0.6, (float)0.07};

DLDEF dl_env *dl_env_mountaincar(void) {
    static const int shape[1] = {2};
    return dl__box_env(&dl__mountaincar_ops, 1, shape, dl__mountaincar_low, dl__mountaincar_high, 3, 200);
}

/* ---- Breakout (MinAtar) ----------------------------------------------------------------------
   MinAtar's breakout.py rules (summarized at the top of the file). env->state holds
       0 ball x, 1 ball y, 2 ball direction (0 up-left, 1 up-right, 2 down-right, 3 down-left),
       3 trail x, 4 trail y (the ball's previous cell), 5 paddle x, 6 strike flag (0/1),
       7 bricks: bit (y - 1) * 10 + x set for a brick at row y (1..3), column x,
       8 the previous action (sticky actions repeat it)
   and the sticky-action probability in env->setting. */
#define DL__BRICKS_ALL 0x3FFFFFFFu
static int dl__grid_index(double v, int hi) { return v >= 0 && v <= hi ? (int)v : (v > hi ? hi : 0); }  /* NaN: 0 */

static void dl__breakout_reset(dl_env *env) {
    double *s = env->state;
    int right = dl_rng_int(&env->rng, 2);   /* MinAtar: (x 0, down-right) or (x 9, down-left) */
    s[0] = right ? 9 : 0, s[1] = 3, s[2] = right ? 3 : 2;
    s[3] = s[0], s[4] = s[1];
    s[5] = 4, s[6] = 0, s[7] = (double)DL__BRICKS_ALL, s[8] = 0;
}

static void dl__breakout_step(dl_env *env, int action, double *reward, int *terminated) {
    static const int dx[4] = {-1, 1, 1, -1}, dy[4] = {-1, -1, 1, 1};
    static const int mirror_x[4] = {1, 0, 3, 2}, mirror_y[4] = {3, 2, 1, 0}, corner[4] = {2, 3, 0, 1};
    double *s = env->state, sticky = env->setting;
    int bx = dl__grid_index(s[0], 9), by = dl__grid_index(s[1], 9), dir = dl__grid_index(s[2], 3), pos = dl__grid_index(s[5], 9);
    int strike = s[6] != 0, hit = 0, nx, ny;
    uint32_t bricks = (uint32_t)(s[7] >= 0 && s[7] <= DL__BRICKS_ALL ? s[7] : 0) & DL__BRICKS_ALL;
    *reward = 0.0, *terminated = 0;
    if (sticky > 0 && dl__uniform01(&env->rng) < sticky) action = dl__grid_index(s[8], 2);
    s[8] = action;
    if (action == 1) pos = pos > 0 ? pos - 1 : 0;
    else if (action == 2) pos = pos < 9 ? pos + 1 : 9;
    nx = bx + dx[dir], ny = by + dy[dir];
    if (ny > 9) ny = 9;   /* only from a state set by hand with the ball on the paddle row */
    if (nx < 0 || nx > 9) nx = nx < 0 ? 0 : 9, dir = mirror_x[dir];   /* side walls */
    if (ny < 0) {                                                     /* top wall */
        ny = 0, dir = mirror_y[dir];
    } else if (ny >= 1 && ny <= 3 && ((bricks >> ((ny - 1) * 10 + nx)) & 1u)) {
        hit = 1;              /* a brick: only the first of consecutive brick steps counts */
        if (!strike) {
            *reward = 1.0, strike = 1;
            bricks &= ~(1u << ((ny - 1) * 10 + nx));
            ny = by, dir = mirror_y[dir];
        }
    } else if (ny == 9) {     /* the paddle row */
        if (bricks == 0) bricks = DL__BRICKS_ALL;
        if (bx == pos) dir = mirror_y[dir], ny = by;       /* paddle under the ball: straight back */
        else if (nx == pos) dir = corner[dir], ny = by;    /* ball lands on its edge: reversed */
        else *terminated = 1;
    }
    if (!hit) strike = 0;
    s[0] = nx, s[1] = ny, s[2] = dir, s[3] = bx, s[4] = by, s[5] = pos, s[6] = strike, s[7] = (double)bricks;
}

/* MinAtar's state as [channel][y][x]: 0 paddle, 1 ball, 2 trail, 3 brick. */
static void dl__breakout_observe(const dl_env *env, float *obs) {
    const double *s = env->state;
    uint32_t bricks = (uint32_t)(s[7] >= 0 && s[7] <= DL__BRICKS_ALL ? s[7] : 0);
    int i;
    for (i = 0; i < 400; i++) obs[i] = 0.0f;
    obs[90 + dl__grid_index(s[5], 9)] = 1.0f;
    obs[100 + dl__grid_index(s[1], 9) * 10 + dl__grid_index(s[0], 9)] = 1.0f;
    obs[200 + dl__grid_index(s[4], 9) * 10 + dl__grid_index(s[3], 9)] = 1.0f;
    for (i = 0; i < 30; i++)
        if ((bricks >> i) & 1u) obs[310 + i] = 1.0f;
}

static void dl__breakout_render(const dl_env *env, unsigned char *rgb);
static const dl_env_ops dl__breakout_ops = {"MinAtar/Breakout", 9, dl__breakout_reset, dl__breakout_step,
                                            dl__breakout_observe, 160, 160, dl__breakout_render};
#define DL__ONES10 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
#define DL__ONES100 DL__ONES10, DL__ONES10, DL__ONES10, DL__ONES10, DL__ONES10, DL__ONES10, DL__ONES10, DL__ONES10, DL__ONES10, DL__ONES10
static const float dl__breakout_low[400] = {0};
static const float dl__breakout_high[400] = {DL__ONES100, DL__ONES100, DL__ONES100, DL__ONES100};

DLDEF dl_env *dl_env_breakout(double sticky_action_prob) {
    static const int shape[3] = {4, 10, 10};
    dl_env *env;
    if (sticky_action_prob < 0) sticky_action_prob = 0.1;
    if (!(sticky_action_prob <= 1.0)) { dl_set_error("dl_env_breakout: sticky_action_prob %g above 1", sticky_action_prob); return NULL; }
    if (!(env = dl__box_env(&dl__breakout_ops, 3, shape, dl__breakout_low, dl__breakout_high, 3, 0))) return NULL;
    env->setting = sticky_action_prob;
    return env;
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

static void dl__lake_render(const dl_env *env, unsigned char *rgb);
static void dl__gridworld_render(const dl_env *env, unsigned char *rgb);
/* The ops of dl_env_from_mdp live in the env's block: a grid gets a renderer of 64-pixel tiles. */
static void dl__set_tile_renderer(dl_env *env, int side, void (*render)(const dl_env *, unsigned char *)) {
    dl_env_ops *ops = (dl_env_ops *)(void *)(env + 1);
    ops->render_width = ops->render_height = side * 64;
    ops->render = render;
}

DLDEF dl_env *dl_env_frozenlake(int map_name, int slippery) {
    dl_mdp *m = dl_mdp_frozenlake(map_name, slippery);
    dl_env *env = dl_env_from_mdp(m, map_name == 4 ? 100 : 200, "FrozenLake-v1");
    if (!env) { dl_mdp_free(m); return NULL; }
    env->owned_mdp = m;
    dl__set_tile_renderer(env, map_name, dl__lake_render);
    return env;
}

DLDEF dl_env *dl_env_gridworld(void) {
    dl_mdp *m = dl_mdp_gridworld();
    dl_env *env = dl_env_from_mdp(m, 0, "Gridworld-4x4");
    if (!env) { dl_mdp_free(m); return NULL; }
    env->owned_mdp = m;
    dl__set_tile_renderer(env, 4, dl__gridworld_render);
    return env;
}

/* ---- Rendering -------------------------------------------------------------------------------
   A few filled shapes. CartPole and MountainCar draw in Gymnasium's coordinates (y up, origin at
   the bottom left) and flip, as its pygame renderer does: pixel (c, r) of the picture is the
   point (c + 0.5, H - r - 0.5). A pixel is painted when its center is inside the shape. */
static void dl__fill_rect(unsigned char *rgb, int W, int x0, int y0, int x1, int y1, const unsigned char *c) {
    int x, y;   /* picture coordinates, [x0, x1) x [y0, y1), inside the picture */
    for (y = y0; y < y1; y++)
        for (x = x0; x < x1; x++) memcpy(rgb + ((size_t)y * W + x) * 3, c, 3);
}

/* The convex polygon p[0..n-1] (x, y pairs in Gymnasium's coordinates, either orientation). */
static void dl__fill_poly(unsigned char *rgb, int W, int H, const double *p, int n, const unsigned char *c) {
    double lo_x = p[0], hi_x = p[0], lo_y = p[1], hi_y = p[1];
    int i, col, row, r0, r1, c0, c1;
    for (i = 1; i < n; i++) {
        lo_x = p[2 * i] < lo_x ? p[2 * i] : lo_x, hi_x = p[2 * i] > hi_x ? p[2 * i] : hi_x;
        lo_y = p[2 * i + 1] < lo_y ? p[2 * i + 1] : lo_y, hi_y = p[2 * i + 1] > hi_y ? p[2 * i + 1] : hi_y;
    }
    if (!(hi_x >= 0 && lo_x <= W && hi_y >= 0 && lo_y <= H)) return;   /* off the picture, or NaN */
    c0 = lo_x > 0 ? (int)lo_x : 0, c1 = hi_x < W - 1 ? (int)hi_x : W - 1;
    r0 = H - 1 - (hi_y < H - 1 ? (int)hi_y : H - 1), r1 = H - 1 - (lo_y > 0 ? (int)lo_y : 0);
    for (row = r0; row <= r1; row++)
        for (col = c0; col <= c1; col++) {
            double x = col + 0.5, y = H - row - 0.5;
            int pos = 0, neg = 0;
            for (i = 0; i < n; i++) {
                const double *a = p + 2 * i, *b = p + 2 * ((i + 1) % n);
                double cross = (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0]);
                pos += cross > 0, neg += cross < 0;
            }
            if (!pos || !neg) memcpy(rgb + ((size_t)row * W + col) * 3, c, 3);
        }
}

/* A segment of the given width, as a rectangle around it. */
static void dl__fill_segment(unsigned char *rgb, int W, int H, double x0, double y0, double x1, double y1, double width,
                             const unsigned char *c) {
    double dx = x1 - x0, dy = y1 - y0, len = sqrt(dx * dx + dy * dy), nx, ny, q[8];
    if (!(len > 0)) return;
    nx = -dy / len * width / 2, ny = dx / len * width / 2;
    q[0] = x0 + nx, q[1] = y0 + ny, q[2] = x1 + nx, q[3] = y1 + ny;
    q[4] = x1 - nx, q[5] = y1 - ny, q[6] = x0 - nx, q[7] = y0 - ny;
    dl__fill_poly(rgb, W, H, q, 4, c);
}

static void dl__fill_disc(unsigned char *rgb, int W, int H, double cx, double cy, double radius, const unsigned char *c) {
    double q[32];   /* a 16-gon is round enough at these sizes */
    int i;
    for (i = 0; i < 16; i++) {
        q[2 * i] = cx + radius * cos(i * (3.141592653589793 / 8));
        q[2 * i + 1] = cy + radius * sin(i * (3.141592653589793 / 8));
    }
    dl__fill_poly(rgb, W, H, q, 16, c);
}

/* The rectangle [l, r] x [b, t] turned by angle (radians, counterclockwise) about the origin,
   then moved to (ox, oy): Gymnasium's rotate-and-translate of a polygon's corners. */
static void dl__fill_turned_rect(unsigned char *rgb, int W, int H, double l, double r, double b, double t, double angle,
                                 double ox, double oy, const unsigned char *c) {
    double corner[8], q[8], cs = cos(angle), sn = sin(angle);
    int i;
    corner[0] = l, corner[1] = b, corner[2] = l, corner[3] = t, corner[4] = r, corner[5] = t, corner[6] = r, corner[7] = b;
    for (i = 0; i < 4; i++) {
        q[2 * i] = corner[2 * i] * cs - corner[2 * i + 1] * sn + ox;
        q[2 * i + 1] = corner[2 * i] * sn + corner[2 * i + 1] * cs + oy;
    }
    dl__fill_poly(rgb, W, H, q, 4, c);
}

static const unsigned char dl__white[3] = {255, 255, 255}, dl__black[3] = {0, 0, 0};

/* Gymnasium's CartPole picture: 600 x 400, 125 pixels per unit, cart 50 x 30 with its top edge
   at y 115, pole 10 x 125 about the axle 7.5 above the cart's center, track at y 100. */
static void dl__cartpole_render(const dl_env *env, unsigned char *rgb) {
    static const unsigned char pole[3] = {202, 152, 101}, axle[3] = {129, 132, 203};
    const double scale = 600 / 4.8, cart_y = 100, axle_y = cart_y + 7.5;
    double cart_x = env->state[0] * scale + 300;
    dl__fill_rect(rgb, 600, 0, 0, 600, 400, dl__white);
    dl__fill_turned_rect(rgb, 600, 400, -25, 25, -15, 15, 0, cart_x, cart_y, dl__black);
    dl__fill_turned_rect(rgb, 600, 400, -5, 5, -5, 120, -env->state[2], cart_x, axle_y, pole);
    dl__fill_disc(rgb, 600, 400, cart_x, axle_y, 5, axle);
    dl__fill_rect(rgb, 600, 0, 400 - 1 - (int)cart_y, 600, 400 - (int)cart_y, dl__black);   /* the track */
}

/* Gymnasium's MountainCar picture: 600 x 400, the hill y = sin(3 x) * 0.45 + 0.55 scaled by
   600 / 1.8, the car (40 x 20, tilted by cos(3 x) radians as Gymnasium does) with two wheels
   10 pixels above the hill, and the flag at x = 0.5. */
static double dl__hill(double x) { return sin(3 * x) * 0.45 + 0.55; }
static void dl__mountaincar_render(const dl_env *env, unsigned char *rgb) {
    static const unsigned char wheel[3] = {128, 128, 128}, flag[3] = {204, 204, 0};
    const double scale = 600 / 1.8, x = env->state[0], angle = cos(3 * x);
    const double car_x = (x + 1.2) * scale, car_y = 10 + dl__hill(x) * scale;
    const double flag_x = (0.5 + 1.2) * scale, flag_y = dl__hill(0.5) * scale + 50;
    double tri[6];
    int i;
    dl__fill_rect(rgb, 600, 0, 0, 600, 400, dl__white);
    for (i = 0; i < 99; i++) {   /* the hill through 100 points, as Gymnasium */
        double a = -1.2 + 1.8 * i / 99, b = -1.2 + 1.8 * (i + 1) / 99;
        dl__fill_segment(rgb, 600, 400, (a + 1.2) * scale, dl__hill(a) * scale, (b + 1.2) * scale, dl__hill(b) * scale, 2, dl__black);
    }
    dl__fill_turned_rect(rgb, 600, 400, -20, 20, 0, 20, angle, car_x, car_y, dl__black);
    for (i = -1; i <= 1; i += 2)
        dl__fill_disc(rgb, 600, 400, car_x + 10 * i * cos(angle), car_y + 10 * i * sin(angle), 8, wheel);
    dl__fill_segment(rgb, 600, 400, flag_x, flag_y - 50, flag_x, flag_y, 1, dl__black);
    tri[0] = flag_x, tri[1] = flag_y, tri[2] = flag_x, tri[3] = flag_y - 10, tri[4] = flag_x + 25, tri[5] = flag_y - 5;
    dl__fill_poly(rgb, 600, 400, tri, 3, flag);
}

/* MinAtar's picture: 16 x 16 pixels a cell, black background, the highest channel present in a
   cell gives its color (brick over trail over ball over paddle), with MinAtar's palette
   (seaborn's 4-color cubehelix). */
static void dl__breakout_render(const dl_env *env, unsigned char *rgb) {
    static const unsigned char color[4][3] = {{22, 61, 78}, {84, 121, 47}, {208, 126, 147}, {193, 202, 243}};
    float obs[400];
    int y, x, ch;
    dl__breakout_observe(env, obs);
    for (y = 0; y < 10; y++)
        for (x = 0; x < 10; x++) {
            const unsigned char *c = dl__black;
            for (ch = 0; ch < 4; ch++)
                if (obs[ch * 100 + y * 10 + x] != 0) c = color[ch];
            dl__fill_rect(rgb, 160, x * 16, y * 16, x * 16 + 16, y * 16 + 16, c);
        }
}

/* Tiles of 64 pixels with a 1-pixel dark border, the agent as a red disc. A terminal state
   (a self-loop that ends the episode) is a hole, or the goal when some transition into it
   pays a positive reward; a start state is one with isd > 0. */
static void dl__tiles(const dl_env *env, unsigned char *rgb, const unsigned char (*palette)[3]) {
    static const unsigned char border[3] = {70, 70, 70}, agent[3] = {220, 40, 40};
    const dl_mdp *m = env->mdp;
    int side = env->ops->render_width / 64, W = side * 64, s, i, n;
    dl__fill_rect(rgb, W, 0, 0, W, W, border);
    for (s = 0; s < side * side && s < m->n_states; s++) {
        const dl_transition *t = dl_mdp_transitions(m, s, 0, &n);
        int kind = m->isd[s] > 0 ? 1 : 0;   /* 0 plain, 1 start, 2 terminal, 3 goal */
        if (n == 1 && t[0].next == s && t[0].terminal) {
            kind = 2;
            for (i = 0; i < m->n_tr; i++)
                if (m->tr[i].next == s && m->tr[i].reward > 0) kind = 3;
        }
        dl__fill_rect(rgb, W, (s % side) * 64 + 1, (s / side) * 64 + 1, (s % side) * 64 + 63, (s / side) * 64 + 63, palette[kind]);
    }
    s = dl__grid_index(env->state[0], side * side - 1);
    dl__fill_disc(rgb, W, W, (s % side) * 64 + 32, W - (s / side) * 64 - 32, 18, agent);
}
static void dl__lake_render(const dl_env *env, unsigned char *rgb) {
    static const unsigned char palette[4][3] = {{204, 230, 247}, {150, 200, 120}, {25, 45, 100}, {245, 200, 40}};
    dl__tiles(env, rgb, palette);   /* frozen, start, hole, goal */
}
static void dl__gridworld_render(const dl_env *env, unsigned char *rgb) {
    static const unsigned char palette[4][3] = {{245, 245, 245}, {245, 245, 245}, {150, 150, 150}, {150, 150, 150}};
    dl__tiles(env, rgb, palette);   /* cells; terminal corners grey */
}

DLDEF int dl_env_render_size(const dl_env *env, int *width, int *height) {
    if (width) *width = 0;
    if (height) *height = 0;
    if (!env) { dl_set_error("dl_env_render_size: NULL env"); return -1; }
    if (!env->ops->render || env->ops->render_width <= 0 || env->ops->render_height <= 0) {
        dl_set_error("dl_env_render: %s has no renderer", env->ops->name ? env->ops->name : "env");
        return -1;
    }
    if (width) *width = env->ops->render_width;
    if (height) *height = env->ops->render_height;
    return 0;
}

DLDEF int dl_env_render(const dl_env *env, unsigned char *rgb) {
    if (dl_env_render_size(env, NULL, NULL) != 0) return -1;
    if (!rgb) { dl_set_error("dl_env_render: NULL buffer"); return -1; }
    env->ops->render(env, rgb);
    return 0;
}

#ifndef DL_NO_STDIO
DLDEF int dl_ppm_save(const char *path, const unsigned char *rgb, int w, int h) {
    dl_file_writer *f; /* atomic: a failed write leaves an older picture at path whole */
    char head[64];
    int n;
    if (!path || !rgb || w <= 0 || h <= 0) { dl_set_error("dl_ppm_save: NULL argument or empty picture"); return -1; }
    n = snprintf(head, sizeof head, "P6\n%d %d\n255\n", w, h);
    if ((f = dl_file_writer_open(path)) != NULL) {
        int ok = dl_file_writer_write(f, head, (size_t)n) == 0 && dl_file_writer_write(f, rgb, (size_t)w * (size_t)h * 3) == 0;
        if (ok && dl_file_writer_commit(f) == 0) return 0;
        if (!ok) dl_file_writer_abort(f); /* the write's message stays */
    }
    {
        char why[512];
        snprintf(why, sizeof why, "%s", dl_error());
        dl_set_error("dl_ppm_save: %s", why);
        return -1;
    }
}
#endif

#ifdef DL_HAVE_PNG   /* stb_image_write.h was included before the dl headers */
DLDEF int dl_env_save_png(const dl_env *env, const char *path) {
    int w, h, r;
    unsigned char *rgb;
    if (!path) { dl_set_error("dl_env_save_png: NULL path"); return -1; }
    if (dl_env_render_size(env, &w, &h) != 0) return -1;
    rgb = (unsigned char *)DL_MALLOC((size_t)w * h * 3);
    if (!rgb) { dl_set_error("dl_env_save_png: out of memory"); return -1; }
    env->ops->render(env, rgb);
    r = dl_png_save(path, rgb, w, h, 3);   /* atomic, like every saver */
    DL_FREE(rgb);
    if (r != 0) {
        char why[512];
        snprintf(why, sizeof why, "%s", dl_error());
        dl_set_error("dl_env_save_png: %s", why);
    }
    return r;
}
#endif

/* ---- Vectorized environments ------------------------------------------------------------- */

static int dl__same_space(const dl_space *a, const dl_space *b) {
    int i;
    if (a->kind != b->kind || a->n != b->n || a->ndim != b->ndim) return 0;
    for (i = 0; i < a->ndim && i < DL_SPACE_MAX_DIMS; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    if ((!a->low) != (!b->low) || (!a->high) != (!b->high)) return 0;
    for (i = 0; i < a->n && a->low && a->low != b->low; i++)
        if (a->low[i] != b->low[i]) return 0;
    for (i = 0; i < a->n && a->high && a->high != b->high; i++)
        if (a->high[i] != b->high[i]) return 0;
    return 1;
}

DLDEF dl_vec_env *dl_vec_env_new(int n, dl_env *const *envs) {
    dl_vec_env *v;
    int i;
    if (n <= 0 || n > (1 << 20) || !envs) { dl_set_error("dl_vec_env_new: bad count %d or NULL envs", n); return NULL; }
    for (i = 0; i < n; i++) {
        if (!envs[i]) { dl_set_error("dl_vec_env_new: env %d is NULL", i); return NULL; }
        if (!dl__same_space(&envs[i]->observation_space, &envs[0]->observation_space) ||
            !dl__same_space(&envs[i]->action_space, &envs[0]->action_space)) {
            dl_set_error("dl_vec_env_new: env %d's spaces differ from env 0's", i);
            return NULL;
        }
    }
    /* one block: the struct, the env pointers, the flags */
    v = (dl_vec_env *)DL_MALLOC(sizeof(dl_vec_env) + sizeof(dl_env *) * (size_t)n + sizeof(int) * (size_t)n);
    if (!v) { dl_set_error("dl_vec_env_new: out of memory"); return NULL; }
    v->n = n, v->obs_size = dl_env_obs_size(envs[0]);
    v->envs = (dl_env **)(void *)(v + 1);
    v->ended = (int *)(void *)(v->envs + n);
    for (i = 0; i < n; i++) v->envs[i] = envs[i], v->ended[i] = 0;
    return v;
}

DLDEF void dl_vec_env_free(dl_vec_env *v) {
    int i;
    if (!v) return;
    for (i = 0; i < v->n; i++) dl_env_free(v->envs[i]);
    DL_FREE(v);
}

DLDEF int dl_vec_env_reset(dl_vec_env *v, int64_t seed, float *obs) {
    int i;
    if (!v) { dl_set_error("dl_vec_env_reset: NULL vec env"); return -1; }
    for (i = 0; i < v->n; i++) {
        if (dl_env_reset(v->envs[i], seed >= 0 ? seed + i : -1, obs ? obs + (size_t)i * v->obs_size : NULL) != 0) return -1;
        v->ended[i] = 0;
    }
    return 0;
}

DLDEF int dl_vec_env_step(dl_vec_env *v, const int *actions, float *obs, double *rewards, int *terminated, int *truncated) {
    int i;
    if (!v || !actions) { dl_set_error("dl_vec_env_step: NULL argument"); return -1; }
    for (i = 0; i < v->n; i++) {   /* check everything first, so that an error moves nothing */
        if (v->ended[i]) continue;
        if (!v->envs[i]->running) { dl_set_error("dl_vec_env_step: env %d has no episode running: call dl_vec_env_reset", i); return -1; }
        if (actions[i] < 0 || actions[i] >= v->envs[i]->action_space.n) {
            dl_set_error("dl_vec_env_step: action %d of env %d outside [0, %d)", actions[i], i, v->envs[i]->action_space.n);
            return -1;
        }
    }
    for (i = 0; i < v->n; i++) {
        float *o = obs ? obs + (size_t)i * v->obs_size : NULL;
        double r = 0.0;
        int term = 0, trunc = 0;
        if (v->ended[i]) {
            dl_env_reset(v->envs[i], -1, o);
            v->ended[i] = 0;
        } else {
            dl_env_step(v->envs[i], actions[i], o, &r, &term, &trunc);
            v->ended[i] = term || trunc;
        }
        if (rewards) rewards[i] = r;
        if (terminated) terminated[i] = term;
        if (truncated) truncated[i] = trunc;
    }
    return 0;
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

DLDEF int dl_policy_iteration(const dl_mdp *m, double gamma, double theta, double *V, int *policy) {
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

/* An options field: 0 gives the default d, DL_ZERO a real 0, anything else stays. */
static double dl__opt(double v, double d) { return v == 0 ? d : v == DL_ZERO ? 0.0 : v; }

/* The options with their defaults filled in (the docs of dl_td_opts). */
static dl_td_opts dl__td_resolve(const dl_td_opts *in) {
    dl_td_opts o;
    memset(&o, 0, sizeof o);
    if (in) o = *in;
    if (o.steps == 0) o.steps = 200000;
    o.alpha = dl__opt(o.alpha, 0.1), o.alpha_end = dl__opt(o.alpha_end, 0.01);
    o.gamma = dl__opt(o.gamma, 0.99);
    o.eps_start = dl__opt(o.eps_start, 1.0), o.eps_end = dl__opt(o.eps_end, 0.05);
    o.eps_fraction = dl__opt(o.eps_fraction, 0.5);
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

DLDEF long dl_td_control(dl_env *env, double *Q, const dl_td_opts *opts) {
    int S, A, s, a, a2 = 0, term, trunc, i;
    long t, episodes = 0;
    float obs;
    double r;
    dl_rng rng;
    dl_td_opts oo = dl__td_resolve(opts);
    const dl_td_opts *o = &oo;
    if (!env || !Q) { dl_set_error("dl_td_control: NULL argument"); return -1; }
    if (dl__tabular_check("dl_td_control", env) != 0) return -1;
    if (o->steps < 0 || !(o->alpha >= 0 && o->alpha <= 1) || !(o->alpha_end >= 0 && o->alpha_end <= 1) ||
        !(o->gamma >= 0 && o->gamma <= 1) || !(o->eps_start >= 0 && o->eps_start <= 1) ||
        !(o->eps_end >= 0 && o->eps_end <= 1) || !(o->eps_fraction >= 0) ||
        (o->method != DL_TD_Q_LEARNING && o->method != DL_TD_SARSA && o->method != DL_TD_EXPECTED_SARSA)) {
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
        if (o->method != DL_TD_SARSA || t == 0 || a2 < 0) a = dl__eps_greedy(Q + (size_t)s * A, A, eps, &rng);
        else a = a2;
        if (dl_env_step(env, a, &obs, &r, &term, &trunc) != 0) return -1;
        i = (int)obs;
        if (i < 0 || i >= S) { dl_set_error("dl_td_control: observation %d outside [0, %d)", i, S); return -1; }
        q = Q + (size_t)i * A;
        a2 = -1;
        target = r;
        if (!term) {
            if (o->method == DL_TD_Q_LEARNING) {
                double mx = q[0];
                int b;
                for (b = 1; b < A; b++) if (q[b] > mx) mx = q[b];
                target += o->gamma * mx;
            } else if (o->method == DL_TD_SARSA) {
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

DLDEF long dl_mc_control(dl_env *env, double *Q, const dl_td_opts *opts) {
    int S, A, term = 0, trunc = 0, cap = 256, len, i;
    long t = 0, episodes = 0, *count;
    int *ep_s, *ep_a, *first;
    double *ep_r, r;
    float obs;
    dl_rng rng;
    dl_td_opts oo = dl__td_resolve(opts);
    const dl_td_opts *o = &oo;
    if (!env || !Q) { dl_set_error("dl_mc_control: NULL argument"); return -1; }
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

/* ==== REPLAY BUFFER: implementation ========================================================= */

/* A ring of `capacity` slots with `reserve` (1 .. capacity) of them allocated now. */
static dl_replay *dl__replay_new(int capacity, int obs_size, int obs_u8, int reserve) {
    dl_replay *r;
    size_t osz;
    if (capacity <= 0 || obs_size <= 0 || (size_t)capacity > ((size_t)1 << 40) / (size_t)obs_size) {
        dl_set_error("dl_replay_new: bad capacity %d or observation size %d", capacity, obs_size);
        return NULL;
    }
    if (reserve < 1 || reserve > capacity) reserve = capacity;
    osz = (size_t)reserve * (size_t)obs_size * (obs_u8 ? 1 : sizeof(float));
    r = (dl_replay *)DL_MALLOC(sizeof *r);
    if (!r) { dl_set_error("dl_replay_new: out of memory"); return NULL; }
    memset(r, 0, sizeof *r);
    r->capacity = capacity;
    r->obs_size = obs_size;
    r->obs_u8 = obs_u8 != 0;
    r->alloc_ = reserve;
    r->obs = DL_MALLOC(osz);
    r->next_obs = DL_MALLOC(osz);
    r->action = (int32_t *)DL_MALLOC((size_t)reserve * sizeof(int32_t));
    r->reward = (float *)DL_MALLOC((size_t)reserve * sizeof(float));
    r->terminated = (unsigned char *)DL_MALLOC((size_t)reserve);
    if (!r->obs || !r->next_obs || !r->action || !r->reward || !r->terminated) {
        dl_replay_free(r);
        dl_set_error("dl_replay_new: out of memory for %d transitions", reserve);
        return NULL;
    }
    return r;
}

DLDEF dl_replay *dl_replay_new(int capacity, int obs_size, int obs_u8) {
    return dl__replay_new(capacity, obs_size, obs_u8, capacity);
}

/* Room for slot r->pos: a partly allocated ring doubles its slots (up to capacity). Each array
   that grew is kept, so a failure leaves the ring usable. 0 or -1 + dl_error(). */
static int dl__replay_reserve(dl_replay *r) {
    size_t n, ob;
    void *p;
    if (r->pos < r->alloc_) return 0;
    n = (size_t)r->alloc_ * 2 < (size_t)r->capacity ? (size_t)r->alloc_ * 2 : (size_t)r->capacity;
    ob = (size_t)r->obs_size * (r->obs_u8 ? 1 : sizeof(float));
    if ((p = DL_REALLOC(r->obs, n * ob))) r->obs = p;
    if (p && (p = DL_REALLOC(r->next_obs, n * ob))) r->next_obs = p;
    if (p && (p = DL_REALLOC(r->action, n * sizeof(int32_t)))) r->action = (int32_t *)p;
    if (p && (p = DL_REALLOC(r->reward, n * sizeof(float)))) r->reward = (float *)p;
    if (p && (p = DL_REALLOC(r->terminated, n))) r->terminated = (unsigned char *)p;
    if (!p) { dl_set_error("dl_replay_add: out of memory growing the buffer to %d transitions", (int)n); return -1; }
    r->alloc_ = (int)n;
    return 0;
}

DLDEF void dl_replay_free(dl_replay *r) {
    if (!r) return;
    DL_FREE(r->obs); DL_FREE(r->next_obs); DL_FREE(r->action); DL_FREE(r->reward); DL_FREE(r->terminated);
    DL_FREE(r);
}

static int dl__replay_put_obs(const dl_replay *r, void *base, int slot, const float *src) {
    size_t off = (size_t)slot * (size_t)r->obs_size;
    int i;
    if (!r->obs_u8) { memcpy((float *)base + off, src, (size_t)r->obs_size * sizeof(float)); return 0; }
    for (i = 0; i < r->obs_size; i++) {
        float v = src[i];
        if (!(v >= 0 && v <= 255 && v == (float)(int)v)) {
            dl_set_error("dl_replay_add: observation value %g at %d is not an integer in 0..255 (obs_u8)", (double)v, i);
            return -1;
        }
        ((unsigned char *)base)[off + (size_t)i] = (unsigned char)v;
    }
    return 0;
}

static void dl__replay_get_obs(const dl_replay *r, const void *base, int slot, float *dst) {
    size_t off = (size_t)slot * (size_t)r->obs_size;
    int i;
    if (!r->obs_u8) { memcpy(dst, (const float *)base + off, (size_t)r->obs_size * sizeof(float)); return; }
    for (i = 0; i < r->obs_size; i++) dst[i] = (float)((const unsigned char *)base)[off + (size_t)i];
}

DLDEF int dl_replay_add(dl_replay *r, const float *obs, int action, double reward, const float *next_obs, int terminated) {
    if (!r || !obs || !next_obs) { dl_set_error("dl_replay_add: NULL argument"); return -1; }
    if (dl__replay_reserve(r) != 0) return -1;
    if (dl__replay_put_obs(r, r->obs, r->pos, obs) != 0 || dl__replay_put_obs(r, r->next_obs, r->pos, next_obs) != 0)
        return -1;
    r->action[r->pos] = action;
    r->reward[r->pos] = (float)reward;
    r->terminated[r->pos] = terminated != 0;
    r->pos = r->pos + 1 == r->capacity ? 0 : r->pos + 1;
    if (r->size < r->capacity) r->size++;
    return 0;
}

DLDEF int dl_replay_sample(const dl_replay *r, dl_rng *rng, int n, int *idx) {
    int i;
    if (!r || !rng || !idx || n < 0) { dl_set_error("dl_replay_sample: bad argument"); return -1; }
    if (r->size == 0) { dl_set_error("dl_replay_sample: the buffer is empty"); return -1; }
    for (i = 0; i < n; i++) idx[i] = dl_rng_int(rng, r->size);
    return 0;
}

DLDEF int dl_replay_get(const dl_replay *r, int i, float *obs, int *action, float *reward, float *next_obs, int *terminated) {
    if (!r || i < 0 || i >= r->size) { dl_set_error("dl_replay_get: no transition %d", i); return -1; }
    if (obs) dl__replay_get_obs(r, r->obs, i, obs);
    if (next_obs) dl__replay_get_obs(r, r->next_obs, i, next_obs);
    if (action) *action = r->action[i];
    if (reward) *reward = r->reward[i];
    if (terminated) *terminated = r->terminated[i];
    return 0;
}

/* ==== DQN: implementation =================================================================== */

#define DL__DQN_RETURNS 100
struct dl_dqn {
    dl_dqn_opts o;
    dl_model *online, *target;
    dl_optim *opt;                 /* the online model's (it owns it: dl_compile); NULL: act only */
    dl_replay *replay;             /* NULL: act only */
    int obs_ndim, obs_shape[DL_MAX_DIMS], obs_size, n_actions;
    int n_weights, n_trainable;
    dl_tensor **w_online, **w_target, **w_train;   /* all weights (same order in both), trainable ones */
    dl_arena *arena;
    dl_rng rng;                    /* exploration and sampling */
    long step, updates, episodes;
    int *batch_idx;                /* [batch_size]; a loaded state's: made by the first update */
    float *obs, *next_obs;         /* dl_dqn_learn's current observation, and a scratch one */
    int obs_valid;                 /* obs holds an observation of a running episode */
    double ep_return;
    double returns[DL__DQN_RETURNS];   /* ring of the last finished episodes' returns */
};

/* The options with their defaults filled in (the docs of dl_dqn_opts). */
static dl_dqn_opts dl__dqn_resolve(const dl_dqn_opts *in) {
    dl_dqn_opts o;
    memset(&o, 0, sizeof o);
    if (in) o = *in;
    if (o.total_steps == 0) o.total_steps = 500000;
    if (o.buffer_size == 0) o.buffer_size = 10000;
    if (o.batch_size == 0) o.batch_size = 128;
    o.learning_starts = o.learning_starts == 0 ? 10000 : o.learning_starts == DL_ZERO ? 0 : o.learning_starts;
    if (o.train_freq == 0) o.train_freq = 10;
    o.gradient_steps = o.gradient_steps == 0 ? 1 : o.gradient_steps == DL_ZERO ? 0 : o.gradient_steps;
    if (o.target_update_freq == 0) o.target_update_freq = 500;
    if (o.tau == 0) o.tau = 1.0;
    o.gamma = dl__opt(o.gamma, 0.99);
    o.eps_start = dl__opt(o.eps_start, 1.0), o.eps_end = dl__opt(o.eps_end, 0.05);
    o.eps_fraction = dl__opt(o.eps_fraction, 0.5);
    if (o.huber_delta == 0) o.huber_delta = 1.0;
    o.seed = o.seed == 0 ? 1 : o.seed == (uint64_t)DL_ZERO ? 0 : o.seed;
    return o;
}

static int dl__dqn_check_opts(const dl_dqn_opts *o) {
    if (o->total_steps < 0 || o->buffer_size <= 0 || o->batch_size <= 0 || o->learning_starts < 0 ||
        o->train_freq <= 0 || o->gradient_steps < 0 || o->target_update_freq <= 0 ||
        !(o->tau > 0 && o->tau <= 1) || !(o->gamma >= 0 && o->gamma <= 1) ||
        !(o->eps_start >= 0 && o->eps_start <= 1) || !(o->eps_end >= 0 && o->eps_end <= 1) ||
        !(o->eps_fraction >= 0 && o->eps_fraction <= 1) || (o->loss != DL_DQN_LOSS_MSE && o->loss != DL_DQN_LOSS_HUBER) ||
        (o->loss == DL_DQN_LOSS_HUBER && !(o->huber_delta > 0)) || !(o->max_grad_norm >= 0)) {
        dl_set_error("dl_dqn: bad options (sizes and frequencies must be > 0, tau in (0, 1], gamma and "
                     "epsilons in [0, 1], huber_delta > 0, max_grad_norm >= 0)");
        return -1;
    }
    return 0;
}

DLDEF void dl_dqn_free(dl_dqn *a) {
    if (!a) return;
    dl_model_free(a->online);
    dl_model_free(a->target);
    dl_replay_free(a->replay);
    dl_arena_free(a->arena);
    DL_FREE(a->w_online); DL_FREE(a->w_target); DL_FREE(a->w_train);
    DL_FREE(a->batch_idx); DL_FREE(a->obs); DL_FREE(a->next_obs);
    DL_FREE(a);
}

DLDEF int dl_dqn_move(dl_dqn *a, dl_device device) {
    char msg[400];
#ifdef DL_CUDA
    dl_device from = a ? a->online->device : DL_DEVICE_CPU;
#else
    dl_device from = DL_DEVICE_CPU;
#endif
    if (!a) { dl_set_error("dl_dqn_move: NULL agent"); return -1; }
    if (dl_model_move(a->online, device) == 0) {   /* with its optimizer's state */
        if (dl_model_move(a->target, device) == 0) return 0;
        snprintf(msg, sizeof msg, "%.380s", dl_error());
        dl_model_move(a->online, from);   /* all or nothing */
        dl_set_error("%s", msg);
    }
    snprintf(msg, sizeof msg, "%.380s", dl_error());
    dl_set_error("dl_dqn_move: %s", strncmp(msg, "dl_model_move: ", 15) == 0 ? msg + 15 : msg);
    return -1;
}

/* The target network as a copy of the online one: its file, parsed. */
static dl_model *dl__dqn_clone(dl_model *q) {
    size_t n = dl_model_serialize(q, 0, NULL, 0);
    void *buf;
    dl_model *c;
    if (!n) return NULL;
    if (!(buf = DL_MALLOC(n))) { dl_set_error("dl_dqn: out of memory"); return NULL; }
    c = dl_model_serialize(q, 0, buf, n) == n ? dl_model_parse(buf, n) : NULL;
    DL_FREE(buf);
    if (!c) dl_set_error("dl_dqn: cannot copy the Q network for the target (%s); give a target network", dl_error());
    return c;
}

/* Runs net on n observations in the agent's arena (reset first), without a tape: [n, A]. */
static dl_tensor *dl__dqn_forward(dl_dqn *a, dl_model *net, int n, const float *obs) {
    int shape[DL_MAX_DIMS], i, grad;
    dl_tensor *x, *q;
    dl_arena *prev = dl_arena_use(a->arena);
    dl_arena_reset(a->arena);
    shape[0] = n;
    for (i = 0; i < a->obs_ndim; i++) shape[1 + i] = a->obs_shape[i];
    x = dl_tmp(DL_DTYPE_F32, 1 + a->obs_ndim, shape);
    if (x) memcpy(dl_f32(x), obs, (size_t)n * (size_t)a->obs_size * sizeof(float));
    grad = dl_no_grad(1);
#ifdef DL_CUDA
    if (x && net->device) x = dl_to_device(x, net->device);   /* the one copy there */
#endif
    q = x ? dl_model_call(net, x, 0) : NULL;
    dl_no_grad(grad);
#ifdef DL_CUDA
    if (q && q->device) {   /* and the one copy back: the Q values, into a host arena tensor */
        dl_tensor *h = dl_tmp_uninit(q->dtype, q->ndim, q->shape);
        q = h && dl_tensor_read(q, h->data) == 0 ? h : NULL;
    }
#endif
    dl_arena_use(prev);
    if (q && (q->ndim != 2 || q->shape[0] != n || q->shape[1] != a->n_actions || q->dtype != DL_DTYPE_F32)) {
        dl_set_error("dl_dqn: the Q network gives shape [%d, %d], not [%d, %d]", q->shape[0],
                     q->ndim > 1 ? q->shape[1] : 0, n, a->n_actions);
        return NULL;
    }
    return q ? dl_contiguous(q) : NULL;   /* a contiguous view is returned as is */
}

/* argmax over the allowed actions, ties to the lowest; -1 when none is allowed */
static int dl__dqn_argmax(const float *q, int n, const unsigned char *mask) {
    int i, best = -1;
    for (i = 0; i < n; i++)
        if ((!mask || mask[i]) && (best < 0 || q[i] > q[best])) best = i;
    return best;
}

#ifdef DL_CUDA
/* dl__dqn_blend on the device: the same float formula by ops (tau * online and (1 - tau) *
   target rounded, then added), in the agent's arena, written into the target's weights. */
static int dl__dqn_blend_device(dl_dqn *a, double tau) {
    const float wo = (float)tau, wt = (float)(1.0 - tau);
    dl_arena *prev = dl_arena_use(a->arena);
    int i, grad = dl_no_grad(1), rc = 0;
    dl_arena_reset(a->arena);
    for (i = 0; i < a->n_weights && rc == 0; i++) {
        dl_tensor *t = a->w_target[i], *s = a->w_online[i];
        if (tau < 1) s = dl_add(dl_mul_scalar(s, wo), dl_mul_scalar(t, wt));
        if (s && !dl_same_shape(s, t)) s = dl_reshape(s, t->ndim, t->shape);   /* same numel (dl_dqn_new checks) */
        rc = s ? dl_copy(t, s) : -1;
    }
    dl_no_grad(grad);
    dl_arena_use(prev);
    return rc;
}
#endif

/* target = tau * online + (1 - tau) * target, weight by weight (running statistics too) */
static int dl__dqn_blend(dl_dqn *a, double tau) {
    int i;
    size_t j;
#ifdef DL_CUDA
    if (a->online->device || a->target->device) return dl__dqn_blend_device(a, tau);
#endif
    for (i = 0; i < a->n_weights; i++) {
        float *t = dl_f32(a->w_target[i]);
        const float *o = dl_f32(a->w_online[i]);
        size_t n = (size_t)a->w_online[i]->numel;
        if (tau >= 1) { memcpy(t, o, n * sizeof(float)); continue; }
        {
            const float wo = (float)tau, wt = (float)(1.0 - tau);
            for (j = 0; j < n; j++) t[j] = wo * o[j] + wt * t[j];
        }
    }
    return 0;
}

/* trainable: use opt, or when opt is NULL the optimizer q was compiled with (a loaded state).
   loaded < 0: a new agent; >= 0: a loaded training state holding that many transitions: opts
   has its defaults filled in (a 0 there is a real 0), the replay buffer gets the slots the file
   fills (it grows as training fills it), the batch indices wait for the first update. */
static dl_dqn *dl__dqn_make(dl_model *q, dl_model *target, dl_optim *opt, const dl_space *obs_space,
                            int n_actions, const dl_dqn_opts *opts, int trainable, int loaded) {
    dl_dqn *a = NULL;
    int i, nw;
    if (!q || !obs_space || n_actions <= 0) { dl_set_error("dl_dqn_new: NULL model or space, or no actions"); goto fail; }
    if (obs_space->kind == DL_SPACE_BOX && (obs_space->ndim < 1 || obs_space->ndim >= DL_MAX_DIMS)) {
        dl_set_error("dl_dqn_new: observation shape of %d dimensions", obs_space->ndim);
        goto fail;
    }
    if (!(a = (dl_dqn *)DL_MALLOC(sizeof *a))) { dl_set_error("dl_dqn_new: out of memory"); goto fail; }
    memset(a, 0, sizeof *a);
    a->o = loaded >= 0 ? *opts : dl__dqn_resolve(opts);
    a->online = q; q = NULL;
    a->target = target; target = NULL;
    if (dl__dqn_check_opts(&a->o) != 0) goto fail;
    if (opt) {   /* the online model owns the optimizer, so its file carries the optimizer state */
        int r = dl_compile(a->online, opt, a->o.loss == DL_DQN_LOSS_HUBER ? DL_LOSS_HUBER : DL_LOSS_MSE, 0);
        opt = NULL;   /* taken over (freed on failure) */
        if (r != 0) goto fail;
    }
    if (obs_space->kind == DL_SPACE_DISCRETE) { a->obs_ndim = 1; a->obs_shape[0] = 1; }
    else { a->obs_ndim = obs_space->ndim; memcpy(a->obs_shape, obs_space->shape, sizeof(int) * (size_t)obs_space->ndim); }
    a->obs_size = 1;
    for (i = 0; i < a->obs_ndim; i++) a->obs_size *= a->obs_shape[i];
    a->n_actions = n_actions;
    if (dl_model_build(a->online, a->obs_ndim, a->obs_shape) != 0) goto fail;
    if (!a->target && !(a->target = dl__dqn_clone(a->online))) goto fail;
    if (dl_model_build(a->target, a->obs_ndim, a->obs_shape) != 0) goto fail;
#ifdef DL_CUDA
    if (a->target->device != a->online->device && dl_model_move(a->target, a->online->device) != 0) goto fail;   /* q given on the GPU */
#endif
    nw = dl_model_weights(a->online, 0, NULL, 0);
    if (nw != dl_model_weights(a->target, 0, NULL, 0)) { dl_set_error("dl_dqn_new: the target network's weights differ from the Q network's"); goto fail; }
    a->n_weights = nw;
    a->w_online = (dl_tensor **)DL_MALLOC(sizeof(dl_tensor *) * (size_t)(nw + 1));
    a->w_target = (dl_tensor **)DL_MALLOC(sizeof(dl_tensor *) * (size_t)(nw + 1));
    a->w_train = (dl_tensor **)DL_MALLOC(sizeof(dl_tensor *) * (size_t)(nw + 1));
    a->obs = (float *)DL_MALLOC(sizeof(float) * (size_t)a->obs_size);
    a->next_obs = (float *)DL_MALLOC(sizeof(float) * (size_t)a->obs_size);
    a->arena = dl_arena_new((size_t)1 << 20);
    if (!a->w_online || !a->w_target || !a->w_train || !a->obs || !a->next_obs || !a->arena) { dl_set_error("dl_dqn_new: out of memory"); goto fail; }
    dl_model_weights(a->online, 0, a->w_online, nw);
    dl_model_weights(a->target, 0, a->w_target, nw);
    for (i = 0; i < nw; i++)
        if (a->w_online[i]->numel != a->w_target[i]->numel) { dl_set_error("dl_dqn_new: the target network's weights differ from the Q network's"); goto fail; }
    a->n_trainable = dl_model_weights(a->online, 1, a->w_train, nw);
    dl_rng_seed(&a->rng, a->o.seed);
    /* the Q network must give [n, n_actions] */
    memset(a->obs, 0, sizeof(float) * (size_t)a->obs_size);
    if (!dl__dqn_forward(a, a->online, 1, a->obs)) goto fail;
    if (trainable) {
        if (!a->online->compiled) { dl_set_error("dl_dqn_new: no optimizer"); goto fail; }
        if (dl__bind_optimizer(a->online) != 0) goto fail;
        a->opt = a->online->opt;
        if (!(a->replay = dl__replay_new(a->o.buffer_size, a->obs_size, a->o.obs_u8, loaded < 0 ? a->o.buffer_size : loaded > 0 ? loaded : 1))) goto fail;
        if (loaded < 0 && !(a->batch_idx = (int *)DL_MALLOC(sizeof(int) * (size_t)a->o.batch_size))) { dl_set_error("dl_dqn_new: out of memory"); goto fail; }
    }
    return a;
fail:
    dl_model_free(q); dl_model_free(target); dl_optim_free(opt);
    dl_dqn_free(a);
    return NULL;
}

DLDEF dl_dqn *dl_dqn_new(dl_model *q, dl_model *target, dl_optim *opt, const dl_space *obs_space,
                         int n_actions, const dl_dqn_opts *opts) {
    int fresh_target = target == NULL;
    dl_dqn *a = dl__dqn_make(q, target, opt, obs_space, n_actions, opts, opt != NULL, -1);
    if (a && !fresh_target) dl__dqn_blend(a, 1.0);   /* a given target starts equal too */
    return a;
}

DLDEF int dl_dqn_q_values(dl_dqn *a, int n, const float *obs, float *q) {
    dl_tensor *t;
    if (!a || !obs || !q || n <= 0) { dl_set_error("dl_dqn_q_values: bad argument"); return -1; }
    if (!(t = dl__dqn_forward(a, a->online, n, obs))) return -1;
    memcpy(q, dl_f32(t), sizeof(float) * (size_t)n * (size_t)a->n_actions);
    return 0;
}

DLDEF int dl_dqn_act_batch(dl_dqn *a, int n, const float *obs, const unsigned char *mask, int *actions) {
    dl_tensor *t;
    const float *q;
    int i;
    if (!a || !obs || !actions || n <= 0) { dl_set_error("dl_dqn_act: bad argument"); return -1; }
    if (!(t = dl__dqn_forward(a, a->online, n, obs))) return -1;
    q = dl_f32(t);
    for (i = 0; i < n; i++) {
        const unsigned char *m = mask ? mask + (size_t)i * (size_t)a->n_actions : NULL;
        if ((actions[i] = dl__dqn_argmax(q + (size_t)i * (size_t)a->n_actions, a->n_actions, m)) < 0) {
            dl_set_error("dl_dqn_act: observation %d has every action masked", i);
            return -1;
        }
    }
    return 0;
}

DLDEF int dl_dqn_act(dl_dqn *a, const float *obs, const unsigned char *mask) {
    int action;
    return dl_dqn_act_batch(a, 1, obs, mask, &action) == 0 ? action : -1;
}

/* CleanRL's linear_schedule: max(start + (end - start) * t / duration, end) */
DLDEF double dl_dqn_epsilon(const dl_dqn *a) {
    double duration, e;
    if (!a) return 0;
    duration = a->o.eps_fraction * (double)a->o.total_steps;
    if (duration <= 0) return a->o.eps_end;
    e = (a->o.eps_end - a->o.eps_start) / duration * (double)a->step + a->o.eps_start;
    return a->o.eps_end > a->o.eps_start ? (e < a->o.eps_end ? e : a->o.eps_end) : (e > a->o.eps_end ? e : a->o.eps_end);
}

DLDEF int dl_dqn_explore(dl_dqn *a, const float *obs, const unsigned char *mask) {
    if (!a || !obs) { dl_set_error("dl_dqn_explore: NULL argument"); return -1; }
    if ((double)dl_rng_uniform(&a->rng) < dl_dqn_epsilon(a)) {
        int allowed = a->n_actions, k, i;
        if (mask) for (allowed = 0, i = 0; i < a->n_actions; i++) allowed += mask[i] != 0;
        if (allowed == 0) { dl_set_error("dl_dqn_explore: every action is masked"); return -1; }
        k = dl_rng_int(&a->rng, allowed);
        if (!mask) return k;
        for (i = 0; i < a->n_actions; i++) if (mask[i] && k-- == 0) return i;
    }
    return dl_dqn_act(a, obs, mask);
}

DLDEF void dl_dqn_update_target(dl_dqn *a) { if (a) dl__dqn_blend(a, a->o.tau); }

/* Sampled observations (both ends) into arena tensors of [B, obs shape]. */
static dl_tensor *dl__dqn_batch_obs(dl_dqn *a, const void *base) {
    int shape[DL_MAX_DIMS], i, B = a->o.batch_size;
    dl_tensor *x;
    shape[0] = B;
    for (i = 0; i < a->obs_ndim; i++) shape[1 + i] = a->obs_shape[i];
    if (!(x = dl_tmp(DL_DTYPE_F32, 1 + a->obs_ndim, shape))) return NULL;
    for (i = 0; i < B; i++) dl__replay_get_obs(a->replay, base, a->batch_idx[i], dl_f32(x) + (size_t)i * (size_t)a->obs_size);
    return x;
}

/* The batch a->batch_idx[0 .. batch_size) of the replay buffer in the current arena: the
   observations x, the actions [B, 1] and the TD targets y [B, 1]. 0, or -1 + dl_error(). */
static int dl__dqn_targets(dl_dqn *a, dl_tensor **x_out, dl_tensor **act_out, dl_tensor **y_out) {
    const dl_replay *rb = a->replay;
    dl_tensor *x, *nx, *act, *y, *qn, *qn_online = NULL;
    int B = a->o.batch_size, A = a->n_actions, i, grad;
    {
        int ashape[2];
        ashape[0] = B; ashape[1] = 1;
        x = dl__dqn_batch_obs(a, rb->obs);
        nx = dl__dqn_batch_obs(a, rb->next_obs);
        act = dl_tmp(DL_DTYPE_I32, 2, ashape);
        y = dl_tmp(DL_DTYPE_F32, 2, ashape);
    }
    if (!x || !nx || !act || !y) return -1;
    /* TD targets, without a tape */
    grad = dl_no_grad(1);
    qn = dl_contiguous(dl_model_call(a->target, nx, 0));
    if (qn && a->o.double_dqn) qn_online = dl_contiguous(dl_model_call(a->online, nx, 0));
    dl_no_grad(grad);
    if (!qn || (a->o.double_dqn && !qn_online)) return -1;
    {
        const float gamma = (float)a->o.gamma;
        const float *qt = dl_f32(qn);
        float *yv = dl_f32(y);
        int32_t *av = (int32_t *)act->data;
        for (i = 0; i < B; i++) {
            int k = a->batch_idx[i];
            const float *row = qt + (size_t)i * (size_t)A;
            int best = dl__dqn_argmax(a->o.double_dqn ? dl_f32(qn_online) + (size_t)i * (size_t)A : row, A, NULL);
            float done = rb->terminated[k] ? 1.0f : 0.0f;
            yv[i] = rb->reward[k] + gamma * row[best] * (1.0f - done);
            av[i] = rb->action[k];
        }
    }
    *x_out = x, *act_out = act, *y_out = y;
    return 0;
}

#ifdef DL_CUDA
/* dl__dqn_targets for an agent on the GPU: the batch goes there in one copy (observations, next
   observations, rewards, 1 - terminated and the actions, as floats: exact below 2^24), and
   the TD targets are computed there by ops, with the CPU loop's float formula and argmax rule
   (the lowest of equal maxima). */
static int dl__dqn_targets_device(dl_dqn *a, dl_tensor **x_out, dl_tensor **act_out, dl_tensor **y_out) {
    const dl_replay *rb = a->replay;
    int B = a->o.batch_size, os = a->obs_size, i, grad, n, no, shape[DL_MAX_DIMS], col[2], axis = 1;
    dl_tensor *h, *d, *nx, *r, *live, *qn, *qmax;
    float *p;
    if ((double)B * (2.0 * (double)os + 3.0) > (double)INT_MAX) {
        dl_set_error("dl_dqn_update: a batch of %d observations of %d values is too big for the GPU path", B, os);
        return -1;
    }
    no = B * os;
    n = 2 * no + 3 * B;
    if (!(h = dl_tmp_uninit(DL_DTYPE_F32, 1, &n))) return -1;
    p = dl_f32(h);
    for (i = 0; i < B; i++) {
        int k = a->batch_idx[i];
        dl__replay_get_obs(rb, rb->obs, k, p + (size_t)i * (size_t)os);
        dl__replay_get_obs(rb, rb->next_obs, k, p + (size_t)no + (size_t)i * (size_t)os);
        p[2 * no + i] = rb->reward[k];
        p[2 * no + B + i] = rb->terminated[k] ? 0.0f : 1.0f;
        p[2 * no + 2 * B + i] = (float)rb->action[k];
    }
    if (!(d = dl_to_device(h, a->online->device))) return -1;
    shape[0] = col[0] = B;
    col[1] = 1;
    for (i = 0; i < a->obs_ndim; i++) shape[1 + i] = a->obs_shape[i];
    grad = dl_no_grad(1);
    *x_out = dl_reshape(dl_slice(d, 0, 0, no, 1), 1 + a->obs_ndim, shape);   /* views */
    nx = dl_reshape(dl_slice(d, 0, no, 2 * no, 1), 1 + a->obs_ndim, shape);
    r = dl_reshape(dl_slice(d, 0, 2 * no, 2 * no + B, 1), 2, col);
    live = dl_reshape(dl_slice(d, 0, 2 * no + B, 2 * no + 2 * B, 1), 2, col);
    *act_out = dl_cast(dl_reshape(dl_slice(d, 0, 2 * no + 2 * B, n, 1), 2, col), DL_DTYPE_I32);
    qn = nx ? dl_model_call(a->target, nx, 0) : NULL;
    if (a->o.double_dqn) qmax = qn ? dl_gather(qn, 1, dl_argmax(dl_model_call(a->online, nx, 0), 1, 1)) : NULL;
    else qmax = qn ? dl_max(qn, 1, &axis, 1) : NULL;
    /* y = r + gamma * max * (1 - terminated), in this order, as the CPU loop */
    *y_out = qmax && r && live ? dl_add(r, dl_mul(dl_mul_scalar(qmax, (float)a->o.gamma), live)) : NULL;
    dl_no_grad(grad);
    return *x_out && *act_out && *y_out ? 0 : -1;
}
#endif

/* One gradient step on the transitions a->batch_idx[0 .. batch_size) of the replay buffer. */
static int dl__dqn_learn_batch(dl_dqn *a, double *loss_out) {
    dl_arena *prev;
    dl_tensor *x = NULL, *act = NULL, *y = NULL, *q, *qa, *loss = NULL;
    int rc = -1, r;
    prev = dl_arena_use(a->arena);
    dl_arena_reset(a->arena);
#ifdef DL_CUDA
    if (a->online->device) r = dl__dqn_targets_device(a, &x, &act, &y);
    else
#endif
    r = dl__dqn_targets(a, &x, &act, &y);
    if (r != 0) goto done;
    /* the loss on Q(s, a), with a tape */
    q = dl_model_call(a->online, x, 1);
    qa = q ? dl_gather(q, 1, act) : NULL;
    if (qa) loss = a->o.loss == DL_DQN_LOSS_HUBER ? dl_huber(qa, y, (float)a->o.huber_delta) : dl_mse(qa, y);
    if (!loss) goto done;
    dl_optim_zero_grad(a->opt);
    if (dl_backward(loss) != 0) goto done;
#ifdef DL_CUDA
    if (a->online->device) {   /* on the device, without reading the norm back */
        if (a->o.max_grad_norm > 0 && dl__cuda_clip_grad_norm(a->n_trainable, a->w_train, sizeof(dl_tensor *), a->o.max_grad_norm, NULL) != 0)
            goto done;
    } else
#endif
    if (a->o.max_grad_norm > 0 && dl_clip_grad_norm(a->n_trainable, a->w_train, a->o.max_grad_norm) < 0) goto done;
    if (dl_optim_step(a->opt) != 0) goto done;
    if (loss_out) *loss_out = dl_item(loss);
    if (a->updates < LONG_MAX) a->updates++;   /* counters saturate (no overflow) */
    rc = 0;
done:
    dl_arena_use(prev);
    return rc;
}

DLDEF int dl_dqn_update(dl_dqn *a, double *loss) {
    if (!a) { dl_set_error("dl_dqn_update: NULL agent"); return -1; }
    if (!a->opt) { dl_set_error("dl_dqn_update: this agent can only act (no optimizer)"); return -1; }
    if (!a->batch_idx && !(a->batch_idx = (int *)DL_MALLOC(sizeof(int) * (size_t)a->o.batch_size))) {
        dl_set_error("dl_dqn_update: out of memory for a batch of %d", a->o.batch_size);
        return -1;
    }
    if (dl_replay_sample(a->replay, &a->rng, a->o.batch_size, a->batch_idx) != 0) return -1;
    return dl__dqn_learn_batch(a, loss);
}

DLDEF int dl_dqn_observe(dl_dqn *a, const float *obs, int action, double reward, const float *next_obs, int terminated) {
    long t;
    int g;
    if (!a) { dl_set_error("dl_dqn_observe: NULL agent"); return -1; }
    if (!a->replay) { dl_set_error("dl_dqn_observe: this agent can only act (no optimizer)"); return -1; }
    if (action < 0 || action >= a->n_actions) { dl_set_error("dl_dqn_observe: action %d outside [0, %d)", action, a->n_actions); return -1; }
    if (dl_replay_add(a->replay, obs, action, reward, next_obs, terminated) != 0) return -1;
    t = a->step;     /* CleanRL's global_step of this transition */
    if (a->step < LONG_MAX) a->step++;   /* saturates (no overflow) */
    if (t > a->o.learning_starts) {
        if (t % a->o.train_freq == 0)
            for (g = 0; g < a->o.gradient_steps; g++)
                if (dl_dqn_update(a, NULL) != 0) return -1;
        if (t % a->o.target_update_freq == 0 && dl__dqn_blend(a, a->o.tau) != 0) return -1;   /* dl_dqn_update_target */
    }
    return 0;
}

DLDEF long dl_dqn_learn(dl_dqn *a, dl_env *env, long steps, dl_dqn_episode_fn on_episode, void *user) {
    long i, done_episodes = 0;
    if (!a || !env || steps < 0) { dl_set_error("dl_dqn_learn: bad argument"); return -1; }
    if (!a->replay) { dl_set_error("dl_dqn_learn: this agent can only act (no optimizer)"); return -1; }
    if (steps == 0) steps = a->o.total_steps > a->step ? a->o.total_steps - a->step : 0;   /* the rest of the run */
    else if (steps > a->o.total_steps - a->step) {   /* both are in [0, LONG_MAX]: no overflow */
        dl_set_error("dl_dqn_learn: %ld more steps would pass the run's %ld (opts.total_steps; %ld done): "
                     "the epsilon schedule spans total_steps, so set it to the whole run", steps, a->o.total_steps, a->step);
        return -1;
    }
    if (dl_env_obs_size(env) != a->obs_size || env->action_space.n != a->n_actions) {
        dl_set_error("dl_dqn_learn: %s has %d observation values and %d actions, the agent %d and %d",
                     env->ops->name ? env->ops->name : "env", dl_env_obs_size(env), env->action_space.n, a->obs_size, a->n_actions);
        return -1;
    }
    for (i = 0; i < steps; i++) {
        double r;
        int action, term, trunc;
        if (!a->obs_valid) {
            if (dl_env_reset(env, a->step == 0 && a->episodes == 0 ? (int64_t)(a->o.seed & 0x7fffffffffffffffULL) : -1, a->obs) != 0) return -1;
            a->obs_valid = 1;
            a->ep_return = 0;
        }
        if ((action = dl_dqn_explore(a, a->obs, NULL)) < 0) return -1;
        if (dl_env_step(env, action, a->next_obs, &r, &term, &trunc) != 0) return -1;
        a->ep_return += r;
        if (dl_dqn_observe(a, a->obs, action, r, a->next_obs, term) != 0) return -1;
        memcpy(a->obs, a->next_obs, sizeof(float) * (size_t)a->obs_size);
        if (term || trunc) {
            a->returns[a->episodes % DL__DQN_RETURNS] = a->ep_return;
            if (a->episodes < LONG_MAX) a->episodes++;
            done_episodes++;
            a->obs_valid = 0;
            if (on_episode && on_episode(a, a->ep_return, user)) break;
        }
    }
    return done_episodes;
}

DLDEF double dl_dqn_mean_return(const dl_dqn *a, int n) {
    double s = 0;
    int i;
    if (!a || a->episodes == 0 || n <= 0) return NAN;
    if (n > DL__DQN_RETURNS) n = DL__DQN_RETURNS;
    if ((long)n > a->episodes) n = (int)a->episodes;
    for (i = 1; i <= n; i++) s += a->returns[(a->episodes - i) % DL__DQN_RETURNS];
    return s / n;
}

DLDEF long dl_dqn_steps(const dl_dqn *a) { return a ? a->step : 0; }
DLDEF long dl_dqn_episodes(const dl_dqn *a) { return a ? a->episodes : 0; }
DLDEF long dl_dqn_updates(const dl_dqn *a) { return a ? a->updates : 0; }
DLDEF dl_model *dl_dqn_model(const dl_dqn *a) { return a ? a->online : NULL; }
DLDEF dl_model *dl_dqn_target_model(const dl_dqn *a) { return a ? a->target : NULL; }
DLDEF const dl_replay *dl_dqn_replay(const dl_dqn *a) { return a ? a->replay : NULL; }
DLDEF dl_dqn_opts dl_dqn_options(const dl_dqn *a) { return a ? a->o : dl__dqn_resolve(NULL); }

/* ---- Saving ---- */
#ifndef DL_NO_STDIO

DLDEF int dl_dqn_save_policy(dl_dqn *a, const char *path) {
    if (!a || !path) { dl_set_error("dl_dqn_save_policy: NULL argument"); return -1; }
    return dl_model_save(a->online, path, 0);
}

/* The observation shape and action count of a loaded Q network: its input shape, and the
   width of its output for one zero observation. */
DLDEF dl_dqn *dl_dqn_load_policy(const char *path) {
    dl_model *m = dl_model_load(path);
    dl_space sp;
    dl_tensor *y;
    dl_arena *ar, *prev;
    int i, grad, full[DL_MAX_DIMS], n_actions = 0;
    if (!m) return NULL;
    if (!m->built || m->in_dtype != DL_DTYPE_F32 || m->in_ndim < 1) {
        dl_set_error("dl_dqn_load_policy: %s: not a Q network on float observations", path);
        dl_model_free(m);
        return NULL;
    }
    memset(&sp, 0, sizeof sp);
    sp.kind = DL_SPACE_BOX;
    sp.ndim = m->in_ndim;
    sp.n = 1;
    full[0] = 1;
    for (i = 0; i < m->in_ndim; i++) { sp.shape[i] = full[1 + i] = m->in_shape[i]; sp.n *= m->in_shape[i]; }
    if (!(ar = dl_arena_new((size_t)1 << 16))) { dl_model_free(m); return NULL; }
    prev = dl_arena_use(ar);
    grad = dl_no_grad(1);
    y = dl_model_call(m, dl_tmp(DL_DTYPE_F32, 1 + m->in_ndim, full), 0);
    if (y && y->ndim == 2) n_actions = y->shape[1];
    dl_no_grad(grad);
    dl_arena_use(prev);
    dl_arena_free(ar);
    if (n_actions <= 0) {
        dl_set_error("dl_dqn_load_policy: %s: the network's output is not [batch, actions]", path);
        dl_model_free(m);
        return NULL;
    }
    return dl_dqn_new(m, NULL, NULL, &sp, n_actions, NULL);
}

/* Training-state file. Tensors: "online" (with its optimizer), "target" (U8: whole model files), "replay/obs",
   "replay/next_obs" (F32, or U8 with obs_u8), "replay/action" (I32), "replay/reward" (F32),
   "replay/terminated" (U8), each over the `size` stored slots, "agent/obs" (F32). Metadata:
   dl.format, dl.dqn.opts, dl.dqn.counters, dl.dqn.rng, dl.dqn.returns, dl.dqn.env. */
#define DL__DQN_SAVE_MAX 11

static void dl__dqn_put_opts(char *s, size_t n, const dl_dqn_opts *o) {
    snprintf(s, n, "total_steps %ld buffer_size %d obs_u8 %d batch_size %d learning_starts %ld "
             "train_freq %d gradient_steps %d target_update_freq %d tau %a gamma %a eps_start %a eps_end %a "
             "eps_fraction %a double_dqn %d loss %d huber_delta %a max_grad_norm %a seed %llu",
             o->total_steps, o->buffer_size, o->obs_u8, o->batch_size, o->learning_starts, o->train_freq,
             o->gradient_steps, o->target_update_freq, o->tau, o->gamma, o->eps_start, o->eps_end,
             o->eps_fraction, o->double_dqn, (int)o->loss, o->huber_delta, o->max_grad_norm, (unsigned long long)o->seed);
}

/* Strict reading of the metadata (sscanf's %d reads 4294967356 as 60, %ld overflows, %la takes
   inf and nan): each reader skips spaces, takes one token ended by a space or the string's end,
   advances *s past it, and returns 0, or -1 when the token is malformed or out of range. */
static int dl__scan_end(const char *p) { return *p == ' ' || *p == 0; }
static int dl__scan_word(const char **s, const char *w) {   /* the word w */
    const char *p = *s;
    size_t n = strlen(w);
    while (*p == ' ') p++;
    if (strncmp(p, w, n) != 0 || !dl__scan_end(p + n)) return -1;
    *s = p + n;
    return 0;
}
/* a decimal integer in [lo, hi]; each digit is checked before it is added: nothing overflows */
static int dl__scan_int(const char **s, long long lo, long long hi, long long *out) {
    const char *p = *s;
    unsigned long long v = 0, lim;
    int neg = 0, digits = 0;
    while (*p == ' ') p++;
    if (*p == '-') neg = 1, p++;
    lim = neg ? (lo < 0 ? (unsigned long long)(-(lo + 1)) + 1 : 0) : (hi > 0 ? (unsigned long long)hi : 0);
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        unsigned d = (unsigned)(*p - '0');
        if (d > lim || v > (lim - d) / 10) return -1;
        v = v * 10 + d;
    }
    if (!digits || !dl__scan_end(p)) return -1;
    *out = neg ? (v == 0 ? 0 : -(long long)(v - 1) - 1) : (long long)v;
    if (*out < lo || *out > hi) return -1;
    *s = p;
    return 0;
}
static int dl__scan_u64(const char **s, uint64_t *out) {   /* any 64-bit unsigned integer */
    const char *p = *s;
    uint64_t v = 0;
    int digits = 0;
    while (*p == ' ') p++;
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    if (!digits || !dl__scan_end(p)) return -1;
    *out = v, *s = p;
    return 0;
}
static int dl__scan_f64(const char **s, double *out) {   /* a finite double (%a's hex floats too) */
    const char *p = *s;
    char *end;
    while (*p == ' ') p++;
    if (!*p) return -1;
    *out = strtod(p, &end);
    if (end == p || !dl__scan_end(end) || !isfinite(*out)) return -1;
    *s = end;
    return 0;
}
static int dl__scan_done(const char *s) {   /* nothing but spaces left */
    while (*s == ' ') s++;
    return *s == 0 ? 0 : -1;
}

/* dl.dqn.opts: every field in range, then the options' own checks. */
static int dl__dqn_get_opts(const char *s, dl_dqn_opts *o) {
    long long v[10];
    uint64_t seed;
    memset(o, 0, sizeof *o);
    if (!s || dl__scan_word(&s, "total_steps") || dl__scan_int(&s, 1, LONG_MAX, &v[0]) ||
        dl__scan_word(&s, "buffer_size") || dl__scan_int(&s, 1, INT_MAX, &v[1]) ||
        dl__scan_word(&s, "obs_u8") || dl__scan_int(&s, 0, 1, &v[2]) ||
        dl__scan_word(&s, "batch_size") || dl__scan_int(&s, 1, INT_MAX, &v[3]) ||
        dl__scan_word(&s, "learning_starts") || dl__scan_int(&s, 0, LONG_MAX, &v[4]) ||
        dl__scan_word(&s, "train_freq") || dl__scan_int(&s, 1, INT_MAX, &v[5]) ||
        dl__scan_word(&s, "gradient_steps") || dl__scan_int(&s, 0, INT_MAX, &v[6]) ||
        dl__scan_word(&s, "target_update_freq") || dl__scan_int(&s, 1, INT_MAX, &v[7]) ||
        dl__scan_word(&s, "tau") || dl__scan_f64(&s, &o->tau) ||
        dl__scan_word(&s, "gamma") || dl__scan_f64(&s, &o->gamma) ||
        dl__scan_word(&s, "eps_start") || dl__scan_f64(&s, &o->eps_start) ||
        dl__scan_word(&s, "eps_end") || dl__scan_f64(&s, &o->eps_end) ||
        dl__scan_word(&s, "eps_fraction") || dl__scan_f64(&s, &o->eps_fraction) ||
        dl__scan_word(&s, "double_dqn") || dl__scan_int(&s, 0, 1, &v[8]) ||
        dl__scan_word(&s, "loss") || dl__scan_int(&s, 0, 1, &v[9]) ||
        dl__scan_word(&s, "huber_delta") || dl__scan_f64(&s, &o->huber_delta) ||
        dl__scan_word(&s, "max_grad_norm") || dl__scan_f64(&s, &o->max_grad_norm) ||
        dl__scan_word(&s, "seed") || dl__scan_u64(&s, &seed) || dl__scan_done(s)) return -1;
    o->total_steps = (long)v[0], o->buffer_size = (int)v[1], o->obs_u8 = (int)v[2], o->batch_size = (int)v[3];
    o->learning_starts = (long)v[4], o->train_freq = (int)v[5], o->gradient_steps = (int)v[6];
    o->target_update_freq = (int)v[7], o->double_dqn = (int)v[8], o->loss = (dl_dqn_loss)v[9], o->seed = seed;
    return dl__dqn_check_opts(o);
}

/* A whole serialized file (model or optimizer) as an owned U8 tensor. */
static dl_tensor *dl__dqn_blob_model(dl_model *m, int with_opt) {
    size_t n = dl_model_serialize(m, with_opt, NULL, 0);
    int shape[1];
    dl_tensor *t;
    if (!n || n > (size_t)INT32_MAX) return NULL;
    shape[0] = (int)n;
    if (!(t = dl_tensor_new(DL_DTYPE_U8, 1, shape))) return NULL;
    if (dl_model_serialize(m, with_opt, t->data, n) != n) { dl_tensor_free(t); return NULL; }
    return t;
}

DLDEF int dl_dqn_save(dl_dqn *a, const char *path, const dl_env *env) {
    dl_tensor *t[DL__DQN_SAVE_MAX] = {0};
    const char *names[DL__DQN_SAVE_MAX];
    const char *keys[6], *vals[6];
    char opts_s[768], counters[256], rng_s[128], env_s[1024], *returns_s = NULL;
    int n = 0, nm = 0, i, rc = -1, size;
    size_t used;
    if (!a || !path) { dl_set_error("dl_dqn_save: NULL argument"); return -1; }
    if (!a->opt) { dl_set_error("dl_dqn_save: an act-only agent has no training state (dl_dqn_save_policy)"); return -1; }
    size = a->replay->size;
    names[n] = "online"; if (!(t[n++] = dl__dqn_blob_model(a->online, 1))) goto done;
    names[n] = "target"; if (!(t[n++] = dl__dqn_blob_model(a->target, 0))) goto done;
    names[n] = "agent/obs";
    if (!(t[n++] = dl_tensor_from(DL_DTYPE_F32, 1, &a->obs_size, a->obs))) goto done;
    if (size > 0) {
        int os[2];
        dl_dtype od = a->replay->obs_u8 ? DL_DTYPE_U8 : DL_DTYPE_F32;
        os[0] = size; os[1] = a->obs_size;
        names[n] = "replay/obs"; if (!(t[n++] = dl_tensor_from(od, 2, os, a->replay->obs))) goto done;
        names[n] = "replay/next_obs"; if (!(t[n++] = dl_tensor_from(od, 2, os, a->replay->next_obs))) goto done;
        names[n] = "replay/action"; if (!(t[n++] = dl_tensor_from(DL_DTYPE_I32, 1, &size, a->replay->action))) goto done;
        names[n] = "replay/reward"; if (!(t[n++] = dl_tensor_from(DL_DTYPE_F32, 1, &size, a->replay->reward))) goto done;
        names[n] = "replay/terminated"; if (!(t[n++] = dl_tensor_from(DL_DTYPE_U8, 1, &size, a->replay->terminated))) goto done;
    }
    dl__dqn_put_opts(opts_s, sizeof opts_s, &a->o);
    snprintf(counters, sizeof counters, "obs_shape %d %d %d %d %d actions %d step %ld updates %ld episodes %ld obs_valid %d ep_return %a replay_pos %d replay_size %d",
             a->obs_ndim, a->obs_ndim > 0 ? a->obs_shape[0] : 0, a->obs_ndim > 1 ? a->obs_shape[1] : 0,
             a->obs_ndim > 2 ? a->obs_shape[2] : 0, a->obs_ndim > 3 ? a->obs_shape[3] : 0, a->n_actions,
             a->step, a->updates, a->episodes, a->obs_valid, a->ep_return, a->replay->pos, size);
    snprintf(rng_s, sizeof rng_s, "%llu %llu %llu %llu", (unsigned long long)a->rng.s[0], (unsigned long long)a->rng.s[1],
             (unsigned long long)a->rng.s[2], (unsigned long long)a->rng.s[3]);
    if (!(returns_s = (char *)DL_MALLOC(DL__DQN_RETURNS * 32 + 1))) { dl_set_error("dl_dqn_save: out of memory"); goto done; }
    for (used = 0, returns_s[0] = 0, i = 0; i < DL__DQN_RETURNS; i++)
        used += (size_t)snprintf(returns_s + used, DL__DQN_RETURNS * 32 + 1 - used, i ? " %a" : "%a", a->returns[i]);
    keys[nm] = "dl.format"; vals[nm++] = "dl.dqn.v1";
    keys[nm] = "dl.dqn.opts"; vals[nm++] = opts_s;
    keys[nm] = "dl.dqn.counters"; vals[nm++] = counters;
    keys[nm] = "dl.dqn.rng"; vals[nm++] = rng_s;
    keys[nm] = "dl.dqn.returns"; vals[nm++] = returns_s;
    if (env) {
        int k = env->ops->state_dim;
        used = (size_t)snprintf(env_s, sizeof env_s, "%s|%d %d %llu %llu %llu %llu %d", env->ops->name ? env->ops->name : "",
                                env->elapsed, env->running, (unsigned long long)env->rng.s[0], (unsigned long long)env->rng.s[1],
                                (unsigned long long)env->rng.s[2], (unsigned long long)env->rng.s[3], k);
        for (i = 0; i < k && used < sizeof env_s; i++) used += (size_t)snprintf(env_s + used, sizeof env_s - used, " %a", env->state[i]);
        keys[nm] = "dl.dqn.env"; vals[nm++] = env_s;
    }
    rc = dl_safetensors_save(path, n, names, t, nm, keys, vals);
done:
    if (rc != 0 && !dl_error()[0]) dl_set_error("dl_dqn_save: out of memory");
    for (i = 0; i < n; i++) dl_tensor_free(t[i]);
    DL_FREE(returns_s);
    return rc;
}

/* A tensor of the file checked for dtype and element count; NULL + error otherwise. */
static const dl_tensor *dl__dqn_want(const dl_safetensors *st, const char *name, dl_dtype dt, long long numel, const char *path) {
    const dl_tensor *t = dl_safetensors_get(st, name);
    if (!t || t->dtype != dt || (numel >= 0 && (unsigned long long)t->numel != (unsigned long long)numel)) {
        dl_set_error("dl_dqn_load: %s: tensor \"%s\" is missing or has the wrong type or size", path, name);
        return NULL;
    }
    return t;
}

/* Everything of a training state but the networks, read and checked before anything is made
   (the tensors stay in the file). */
typedef struct dl__dqn_file {
    dl_dqn_opts o;
    int nd, sh[4], os, actions, obs_valid, pos, size;
    long step, updates, episodes;
    double ep_return, returns[DL__DQN_RETURNS];
    uint64_t rng[4];
    const dl_tensor *online, *target, *obs, *r_obs, *r_next, *r_action, *r_reward, *r_term;
    int elapsed, running;                 /* the environment's part, when an env is given */
    uint64_t env_rng[4];
    double env_state[DL_ENV_MAX_STATE];
} dl__dqn_file;

/* Four generator words; xoshiro's all-zero state (stuck at 0) is refused. */
static int dl__scan_rng(const char **s, uint64_t *r) {
    int i;
    for (i = 0; i < 4; i++) if (dl__scan_u64(s, &r[i]) != 0) return -1;
    return (r[0] | r[1] | r[2] | r[3]) != 0 ? 0 : -1;
}

/* Reads and checks the training state st into f: every number whole and in range (counters
   in [0, LONG_MAX], ints in int's range, doubles finite), every size against the file's own
   tensors. Allocates nothing. 0, or -1 + dl_error(). */
static int dl__dqn_read(const dl_safetensors *st, const dl_env *env, const char *path, dl__dqn_file *f) {
    const char *s, *bar;
    long long nd, sh[4], actions, step, updates, episodes, obs_valid, pos, size, elapsed, running, k;
    long long os = 1;
    int i;
    dl_dtype od;
    memset(f, 0, sizeof *f);
    if (!(s = dl_safetensors_meta(st, "dl.format")) || strcmp(s, "dl.dqn.v1") != 0) { dl_set_error("dl_dqn_load: %s: not a DQN training state (dl.format)", path); return -1; }
    if (dl__dqn_get_opts(dl_safetensors_meta(st, "dl.dqn.opts"), &f->o) != 0) { dl_set_error("dl_dqn_load: %s: bad dl.dqn.opts", path); return -1; }
    s = dl_safetensors_meta(st, "dl.dqn.counters");
    if (!s || dl__scan_word(&s, "obs_shape") || dl__scan_int(&s, 1, 4, &nd) ||
        dl__scan_int(&s, 0, 1 << 24, &sh[0]) || dl__scan_int(&s, 0, 1 << 24, &sh[1]) ||
        dl__scan_int(&s, 0, 1 << 24, &sh[2]) || dl__scan_int(&s, 0, 1 << 24, &sh[3]) ||
        dl__scan_word(&s, "actions") || dl__scan_int(&s, 1, 1 << 24, &actions) ||
        dl__scan_word(&s, "step") || dl__scan_int(&s, 0, LONG_MAX, &step) ||
        dl__scan_word(&s, "updates") || dl__scan_int(&s, 0, LONG_MAX, &updates) ||
        dl__scan_word(&s, "episodes") || dl__scan_int(&s, 0, step, &episodes) ||          /* an episode takes a step */
        dl__scan_word(&s, "obs_valid") || dl__scan_int(&s, 0, 1, &obs_valid) ||
        dl__scan_word(&s, "ep_return") || dl__scan_f64(&s, &f->ep_return) ||
        dl__scan_word(&s, "replay_pos") || dl__scan_int(&s, 0, f->o.buffer_size - 1, &pos) ||
        dl__scan_word(&s, "replay_size") || dl__scan_int(&s, 0, f->o.buffer_size < step ? f->o.buffer_size : step, &size) ||
        dl__scan_done(s) || (size < f->o.buffer_size && pos != size)) {
        dl_set_error("dl_dqn_load: %s: bad dl.dqn.counters", path);
        return -1;
    }
    for (i = 0; i < 4; i++) {   /* nd dimensions, the rest written as 0; at most 2^24 values */
        if (i < nd ? sh[i] < 1 || os * sh[i] > (1 << 24) : sh[i] != 0) { dl_set_error("dl_dqn_load: %s: bad observation shape", path); return -1; }
        if (i < nd) os *= sh[i], f->sh[i] = (int)sh[i];
    }
    f->nd = (int)nd, f->os = (int)os, f->actions = (int)actions, f->step = (long)step, f->updates = (long)updates;
    f->episodes = (long)episodes, f->obs_valid = (int)obs_valid, f->pos = (int)pos, f->size = (int)size;
    s = dl_safetensors_meta(st, "dl.dqn.rng");
    if (!s || dl__scan_rng(&s, f->rng) || dl__scan_done(s)) { dl_set_error("dl_dqn_load: %s: bad dl.dqn.rng", path); return -1; }
    s = dl_safetensors_meta(st, "dl.dqn.returns");
    for (i = 0; i < DL__DQN_RETURNS; i++)
        if (!s || dl__scan_f64(&s, &f->returns[i]) != 0) { dl_set_error("dl_dqn_load: %s: bad dl.dqn.returns", path); return -1; }
    if (dl__scan_done(s)) { dl_set_error("dl_dqn_load: %s: bad dl.dqn.returns", path); return -1; }
    /* the tensors, each of the size the counters give */
    if (!(f->online = dl__dqn_want(st, "online", DL_DTYPE_U8, -1, path)) || !(f->target = dl__dqn_want(st, "target", DL_DTYPE_U8, -1, path)) ||
        !(f->obs = dl__dqn_want(st, "agent/obs", DL_DTYPE_F32, os, path))) return -1;
    od = f->o.obs_u8 ? DL_DTYPE_U8 : DL_DTYPE_F32;
    if (size > 0) {
        if (!(f->r_obs = dl__dqn_want(st, "replay/obs", od, size * os, path)) ||
            !(f->r_next = dl__dqn_want(st, "replay/next_obs", od, size * os, path)) ||
            !(f->r_action = dl__dqn_want(st, "replay/action", DL_DTYPE_I32, size, path)) ||
            !(f->r_reward = dl__dqn_want(st, "replay/reward", DL_DTYPE_F32, size, path)) ||
            !(f->r_term = dl__dqn_want(st, "replay/terminated", DL_DTYPE_U8, size, path))) return -1;
        for (i = 0; i < size; i++) {
            int32_t act;
            memcpy(&act, (const char *)f->r_action->data + (size_t)i * sizeof act, sizeof act);
            if (act < 0 || act >= actions) { dl_set_error("dl_dqn_load: %s: bad action in the replay buffer", path); return -1; }
        }
    }
    if (!env) return 0;
    s = dl_safetensors_meta(st, "dl.dqn.env");
    if (!s || !(bar = strchr(s, '|'))) { dl_set_error("dl_dqn_load: %s: no environment state saved", path); return -1; }
    if (!env->ops->name || strlen(env->ops->name) != (size_t)(bar - s) || strncmp(env->ops->name, s, (size_t)(bar - s)) != 0) {
        dl_set_error("dl_dqn_load: %s: saved with another environment than %s", path, env->ops->name ? env->ops->name : "this one");
        return -1;
    }
    s = bar + 1;
    if (dl__scan_int(&s, 0, INT_MAX, &elapsed) || dl__scan_int(&s, 0, 1, &running) || dl__scan_rng(&s, f->env_rng) ||
        dl__scan_int(&s, env->ops->state_dim, env->ops->state_dim, &k)) { dl_set_error("dl_dqn_load: %s: bad dl.dqn.env", path); return -1; }
    for (i = 0; i < k; i++)
        if (dl__scan_f64(&s, &f->env_state[i]) != 0) { dl_set_error("dl_dqn_load: %s: bad dl.dqn.env", path); return -1; }
    if (dl__scan_done(s) || (env->mdp && (k < 1 || !(f->env_state[0] >= 0 && f->env_state[0] < env->mdp->n_states &&
                                                   f->env_state[0] == floor(f->env_state[0]))))) {
        dl_set_error("dl_dqn_load: %s: bad dl.dqn.env", path);   /* a tabular state is one of the states */
        return -1;
    }
    f->elapsed = (int)elapsed, f->running = (int)running;
    return 0;
}

/* The loader on a file already in memory (tests/fuzz_dqn.c calls it): everything is read and
   checked first, then the agent is made, then copied into; env is written last, only on
   success, so a failing load changes nothing. */
static dl_dqn *dl__dqn_load_st(const dl_safetensors *st, dl_env *env, const char *path) {
    dl__dqn_file f;
    dl_model *on = NULL, *tg = NULL;
    dl_dqn *a;
    dl_space sp;
    int i;
    if (dl__dqn_read(st, env, path, &f) != 0) return NULL;
    if (!(on = dl_model_parse(f.online->data, f.online->numel)) || !(tg = dl_model_parse(f.target->data, f.target->numel))) {
        dl_model_free(on);
        return NULL;
    }
    if (!on->compiled) {
        dl_model_free(on); dl_model_free(tg);
        dl_set_error("dl_dqn_load: %s: the online network has no optimizer", path);
        return NULL;
    }
    memset(&sp, 0, sizeof sp);
    sp.kind = DL_SPACE_BOX; sp.ndim = f.nd; sp.n = f.os;
    for (i = 0; i < f.nd; i++) sp.shape[i] = f.sh[i];
    if (!(a = dl__dqn_make(on, tg, NULL, &sp, f.actions, &f.o, 1, f.size))) return NULL;   /* takes over on, tg (their optimizer too) */
    /* nothing fails from here on */
    memcpy(a->obs, f.obs->data, sizeof(float) * (size_t)f.os);
    if (f.size > 0) {
        size_t ob = (size_t)f.size * (size_t)f.os * (f.o.obs_u8 ? 1 : sizeof(float));
        memcpy(a->replay->obs, f.r_obs->data, ob);
        memcpy(a->replay->next_obs, f.r_next->data, ob);
        memcpy(a->replay->action, f.r_action->data, sizeof(int32_t) * (size_t)f.size);
        memcpy(a->replay->reward, f.r_reward->data, sizeof(float) * (size_t)f.size);
        memcpy(a->replay->terminated, f.r_term->data, (size_t)f.size);
    }
    a->replay->size = f.size, a->replay->pos = f.pos;
    a->step = f.step, a->updates = f.updates, a->episodes = f.episodes;
    a->obs_valid = f.obs_valid, a->ep_return = f.ep_return;
    for (i = 0; i < 4; i++) a->rng.s[i] = f.rng[i];
    memcpy(a->returns, f.returns, sizeof a->returns);
    if (env) {
        for (i = 0; i < env->ops->state_dim; i++) env->state[i] = f.env_state[i];
        for (i = 0; i < 4; i++) env->rng.s[i] = f.env_rng[i];
        env->elapsed = f.elapsed;
        env->running = f.running;
    }
    return a;
}

DLDEF dl_dqn *dl_dqn_load(const char *path, dl_env *env) {
    dl_safetensors *st;
    dl_dqn *a;
    if (!path) { dl_set_error("dl_dqn_load: NULL path"); return NULL; }
    if (!(st = dl_safetensors_load(path))) return NULL;
    a = dl__dqn_load_st(st, env, path);
    dl_safetensors_free(st);
    return a;
}
#endif /* DL_NO_STDIO */

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
