/* dl_rl.h: CartPole-v1 and MountainCar-v0 against Gymnasium to the last bit, FrozenLake-v1's
   tables against Gymnasium's, Example 4.1's values, policy and value iteration, Q-learning /
   SARSA / expected SARSA on slippery FrozenLake, the environment interface's rules and errors,
   and no allocation in reset or step.

   tests/data/rl_cartpole.txt, rl_mountaincar.txt and rl_frozenlake.txt come from Gymnasium
   1.4.0 through tools/make_rl_fixtures.py (their format is described there). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "count_alloc.h"
#define DL_IMPLEMENTATION
#include "../dl_rl.h"
#include "test.h"

static double bits64(const char *hex) {
    uint64_t u = strtoull(hex, NULL, 16);
    double d;
    memcpy(&d, &u, 8);
    return d;
}
static uint64_t dbits(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }
static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* The reference: Gymnasium's reset(seed=42) state, action 1, and pushing right until
   the pole falls at step 10. */
static void test_cartpole_reference(void) {
    const double s0[4] = {0.027395604855596334, -0.006112156024794771, 0.03585979199113824, 0.019736802905936393};
    const float want[4] = {0.02727336f, 0.18847767f, 0.03625453f, -0.26141977f};
    dl_env *env = dl_env_cartpole();
    float obs[4];
    double r;
    int term = 0, trunc = 0, steps = 0, i;
    CHECK(env != NULL, "%s", dl_error());
    if (!env) return;
    CHECK(env->observation_space.kind == DL_SPACE_BOX && env->observation_space.n == 4, "obs space");
    CHECK(env->action_space.kind == DL_SPACE_DISCRETE && env->action_space.n == 2, "action space");
    CHECK(env->observation_space.high[0] == 4.8f && isinf(env->observation_space.high[1]), "bounds");
    CHECK(fabsf(env->observation_space.high[2] - 0.41887903f) < 1e-7f, "theta bound %.9g", env->observation_space.high[2]);
    CHECK(env->max_episode_steps == 500, "time limit");
    CHECK(dl_env_set_state(env, s0, obs) == 0, "%s", dl_error());
    CHECK(dl_env_step(env, 1, obs, &r, &term, &trunc) == 0, "%s", dl_error());
    /* the issue prints 8 significant digits; the bits are checked against Gymnasium below */
    for (i = 0; i < 4; i++) CHECK(fabsf(obs[i] - want[i]) <= 5e-9f + 5e-8f * fabsf(want[i]), "obs[%d] = %.9g, want %.9g", i, obs[i], want[i]);
    CHECK(r == 1.0 && !term && !trunc, "reward %g term %d trunc %d", r, term, trunc);
    steps = 1;
    while (!term && !trunc && steps < 100) {
        dl_env_step(env, 1, obs, &r, &term, &trunc);
        steps++;
    }
    CHECK(term && steps == 10, "terminated %d at step %d, want step 10", term, steps);
    CHECK(r == 1.0, "the last step's reward is 1 (%g)", r);
    CHECK(dl_env_step(env, 1, obs, &r, &term, &trunc) == -1 && strstr(dl_error(), "reset"), "stepping a finished episode: %s", dl_error());
    dl_env_free(env);
}

/* Every step recorded from Gymnasium: the next float64 state and the float32 observation must
   have the same bits. */
static void test_cartpole_gymnasium_parity(void) {
    FILE *f = fopen("tests/data/rl_cartpole.txt", "r");
    char line[512];
    int n = 0, bad_state = 0, bad_obs = 0, bad_term = 0, first_bad = -1;
    dl_env *env = dl_env_cartpole();
    CHECK(f != NULL, "cannot open tests/data/rl_cartpole.txt (run from the repository root)");
    if (!f || !env) { if (f) fclose(f); dl_env_free(env); return; }
    while (fgets(line, sizeof line, f)) {
        char h[13][24];
        double s[4], got[4];
        float obs[4];
        int action, term, got_term, i, fail = 0;
        if (line[0] == '#') continue;
        if (sscanf(line, "%23s %23s %23s %23s %d %23s %23s %23s %23s %23s %23s %23s %23s %d", h[0], h[1], h[2], h[3],
                   &action, h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], &term) != 14) {
            CHECK(0, "bad fixture line %d", n);
            break;
        }
        for (i = 0; i < 4; i++) s[i] = bits64(h[i]);
        dl_env_set_state(env, s, NULL);
        env->elapsed = 0;
        dl_env_step(env, action, obs, NULL, &got_term, NULL);
        dl_env_get_state(env, got);
        for (i = 0; i < 4; i++) {
            if (dbits(got[i]) != strtoull(h[4 + i], NULL, 16)) bad_state++, fail = 1;
            if (fbits(obs[i]) != (uint32_t)strtoul(h[8 + i], NULL, 16)) bad_obs++, fail = 1;
        }
        if (got_term != term) bad_term++, fail = 1;
        if (fail && first_bad < 0) first_bad = n;
        n++;
    }
    fclose(f);
    printf("    cartpole parity: %d steps, %d state values and %d observation values differ, %d terminations\n",
           n, bad_state, bad_obs, bad_term);
    CHECK(n == 968, "%d steps in the fixture", n);
    CHECK(bad_state == 0 && bad_obs == 0 && bad_term == 0, "first mismatch at step %d", first_bad);
    dl_env_free(env);
}

/* MountainCar-v0: every step recorded from Gymnasium (episodes and states set at the walls
   and near the goal): the next float64 state and float32 observation have the same bits, and
   terminated / truncated agree (the step count since reset comes from the fixture). */
static void test_mountaincar_gymnasium_parity(void) {
    FILE *f = fopen("tests/data/rl_mountaincar.txt", "r");
    char line[512];
    int n = 0, bad_state = 0, bad_obs = 0, bad_flags = 0, first_bad = -1, n_term = 0, n_trunc = 0, n_wall = 0;
    dl_env *env = dl_env_mountaincar();
    CHECK(f != NULL, "cannot open tests/data/rl_mountaincar.txt (run from the repository root)");
    if (!f || !env) { if (f) fclose(f); dl_env_free(env); return; }
    while (fgets(line, sizeof line, f)) {
        char h[6][24];
        double s[2], got[2], r = 0;
        float obs[2];
        int t, action, term, trunc, got_term = -1, got_trunc = -1, i, fail = 0;
        if (line[0] == '#') continue;
        if (sscanf(line, "%23s %23s %d %d %23s %23s %23s %23s %d %d", h[0], h[1], &t, &action, h[2], h[3], h[4], h[5],
                   &term, &trunc) != 10) {
            CHECK(0, "bad fixture line %d", n);
            break;
        }
        for (i = 0; i < 2; i++) s[i] = bits64(h[i]);
        dl_env_set_state(env, s, NULL);
        env->elapsed = t;
        if (dl_env_step(env, action, obs, &r, &got_term, &got_trunc) != 0) { CHECK(0, "%s", dl_error()); break; }
        dl_env_get_state(env, got);
        for (i = 0; i < 2; i++) {
            if (dbits(got[i]) != strtoull(h[2 + i], NULL, 16)) bad_state++, fail = 1;
            if (fbits(obs[i]) != (uint32_t)strtoul(h[4 + i], NULL, 16)) bad_obs++, fail = 1;
        }
        if (got_term != term || got_trunc != trunc || r != -1.0) bad_flags++, fail = 1;
        if (fail && first_bad < 0) first_bad = n;
        n_term += term, n_trunc += trunc;
        n_wall += got[0] == -1.2 && s[1] + (action - 1) * 0.001 < 0 && dbits(got[1]) == 0;
        n++;
    }
    fclose(f);
    printf("    mountaincar parity: %d steps (%d terminated, %d truncated, %d stopped at the left wall), "
           "%d state values and %d observation values differ, %d flags\n",
           n, n_term, n_trunc, n_wall, bad_state, bad_obs, bad_flags);
    CHECK(n == 2372 && n_term > 4 && n_trunc > 4 && n_wall > 10, "%d steps, %d terminated, %d truncated, %d at the wall in the fixture",
          n, n_term, n_trunc, n_wall);
    CHECK(bad_state == 0 && bad_obs == 0 && bad_flags == 0, "first mismatch at step %d", first_bad);
    dl_env_free(env);
}

/* MountainCar-v0's spaces, reset range, time limit, and an episode under the energy-pumping
   policy that reaches the goal. */
static void test_mountaincar_env(void) {
    dl_env *env = dl_env_mountaincar();
    float a[2], b[2], obs[2];
    double r, total = 0.0;
    int i, t, term = 0, trunc = 0;
    if (!env) { CHECK(0, "%s", dl_error()); return; }
    CHECK(strcmp(env->ops->name, "MountainCar-v0") == 0 && dl_env_obs_size(env) == 2, "name, obs size");
    CHECK(env->observation_space.kind == DL_SPACE_BOX && env->observation_space.n == 2, "obs space");
    CHECK(env->action_space.kind == DL_SPACE_DISCRETE && env->action_space.n == 3, "action space");
    CHECK(env->observation_space.low[0] == -1.2f && env->observation_space.low[1] == -0.07f &&
          env->observation_space.high[0] == 0.6f && env->observation_space.high[1] == 0.07f, "bounds");
    CHECK(env->max_episode_steps == 200, "time limit");
    dl_env_reset(env, 7, a);
    dl_env_reset(env, 7, b);
    CHECK(a[0] == b[0] && a[0] >= -0.6f && a[0] <= -0.4f && a[1] == 0.0f && b[1] == 0.0f, "reset(7) = %g %g", a[0], a[1]);
    for (i = 0; i < 1000; i++) {
        dl_env_reset(env, -1, b);
        if (!(b[0] >= -0.6f && b[0] <= -0.4f && b[1] == 0.0f)) break;
    }
    CHECK(i == 1000, "reset %d out of range: %g %g", i, b[0], b[1]);
    /* action 1 (no push) never leaves the valley: truncated at 200 */
    dl_env_reset(env, 3, obs);
    for (t = 1; t <= 300; t++) {
        dl_env_step(env, 1, obs, &r, &term, &trunc);
        total += r;
        if (term || trunc) break;
    }
    CHECK(t == 200 && trunc && !term && total == -200.0, "truncated %d terminated %d at step %d, return %g", trunc, term, t, total);
    CHECK(dl_env_step(env, 1, obs, &r, &term, &trunc) == -1, "step after truncation fails");
    dl_env_reset(env, 3, obs);
    for (t = 1; t <= 200; t++) {
        dl_env_step(env, obs[1] >= 0 ? 2 : 0, obs, &r, &term, &trunc);
        if (term || trunc) break;
    }
    CHECK(term && !trunc && t < 200 && obs[0] >= 0.5f, "energy pumping: terminated %d at step %d (x %g)", term, t, obs[0]);
    dl_env_reset(env, 3, obs);
    CHECK(dl_env_step(env, 3, obs, &r, &term, &trunc) == -1 && strstr(dl_error(), "action"), "bad action: %s", dl_error());
    dl_env_free(env);
}

static void test_cartpole_reset_truncation(void) {
    dl_env *env = dl_env_cartpole();
    float a[4], b[4], obs[4];
    double zero[4] = {0, 0, 0, 0}, r;
    int i, t, term = 0, trunc = 0;
    if (!env) { CHECK(0, "%s", dl_error()); return; }
    CHECK(dl_env_obs_size(env) == 4, "obs size");
    dl_env_reset(env, 7, a);
    dl_env_reset(env, 7, b);
    for (i = 0; i < 4; i++) CHECK(a[i] == b[i] && a[i] >= -0.05f && a[i] < 0.05f, "reset(7)[%d] = %g, %g", i, a[i], b[i]);
    dl_env_reset(env, -1, b);
    CHECK(memcmp(a, b, sizeof a) != 0, "reset(-1) continues the generator");
    /* Truncation at 500: hold the pole upright by setting the state before every step. */
    dl_env_reset(env, 1, obs);
    for (t = 1; t <= 500; t++) {
        dl_env_set_state(env, zero, NULL);
        dl_env_step(env, t % 2, obs, &r, &term, &trunc);
        if (term || trunc) break;
    }
    CHECK(t == 500 && trunc && !term, "truncated %d terminated %d at step %d", trunc, term, t);
    CHECK(dl_env_step(env, 0, obs, &r, &term, &trunc) == -1, "step after truncation fails");
    dl_env_reset(env, 1, obs);
    CHECK(dl_env_step(env, 2, obs, &r, &term, &trunc) == -1 && strstr(dl_error(), "action"), "bad action: %s", dl_error());
    CHECK(dl_env_step(NULL, 0, obs, &r, &term, &trunc) == -1, "NULL env");
    CHECK(dl_env_reset(NULL, 0, obs) == -1, "NULL env");
    dl_env_free(env);
}

/* No allocation in reset or step, for CartPole, FrozenLake and MountainCar. */
static void test_env_no_alloc(void) {
    dl_env *envs[3];
    int k, t;
    envs[0] = dl_env_cartpole();
    envs[1] = dl_env_frozenlake(8, 1);
    envs[2] = dl_env_mountaincar();
    for (k = 0; k < 3; k++) {
        float obs[4];
        double r;
        int term, trunc;
        long before = test_mallocs;
        if (!envs[k]) { CHECK(0, "%s", dl_error()); continue; }
        dl_env_reset(envs[k], 3, obs);
        for (t = 0; t < 2000; t++) {
            dl_env_step(envs[k], (t % 2 + k) % envs[k]->action_space.n, obs, &r, &term, &trunc);
            if (term || trunc) dl_env_reset(envs[k], -1, obs);
        }
        CHECK(test_mallocs == before, "env %d: %ld allocations", k, test_mallocs - before);
        dl_env_free(envs[k]);
    }
    CHECK(test_live == 0, "%ld blocks leaked", test_live);
}

/* FrozenLake's P, transition by transition, equal to Gymnasium's (probabilities to the bit). */
static void test_frozenlake_tables(void) {
    FILE *f = fopen("tests/data/rl_frozenlake.txt", "r");
    char line[256];
    dl_mdp *m = NULL;
    int maps = 0, pos = 0, bad = 0, total = 0, expect_total = 0;
    CHECK(f != NULL, "cannot open tests/data/rl_frozenlake.txt");
    if (!f) return;
    while (1) {
        int more = fgets(line, sizeof line, f) != NULL, size, slippery, s, a, next, reward, term;
        char hp[24];
        if (!more || strncmp(line, "map", 3) == 0) {
            if (m) CHECK(pos == m->n_tr, "map %d: %d transitions here, %d in Gymnasium", maps, m->n_tr, pos);
            dl_mdp_free(m);
            m = NULL;
            if (!more) break;
            if (sscanf(line, "map %d slippery %d", &size, &slippery) != 2) { CHECK(0, "bad line"); break; }
            m = dl_mdp_frozenlake(size, slippery);
            CHECK(m != NULL, "%s", dl_error());
            if (!m) break;
            CHECK(m->isd[0] == 1.0, "starts in state 0");
            maps++, pos = 0;
            continue;
        }
        if (line[0] == '#' || !m) continue;
        if (sscanf(line, "%d %d %23s %d %d %d", &s, &a, hp, &next, &reward, &term) != 6) { CHECK(0, "bad line"); break; }
        expect_total++;
        if (pos < m->n_tr) {
            const dl_transition *t = &m->tr[pos];
            int k = s * 4 + a;
            if (!(pos >= m->first[k] && pos < m->first[k + 1]) || dbits(t->prob) != strtoull(hp, NULL, 16) ||
                t->next != next || t->reward != reward || t->terminal != term) {
                if (bad++ == 0) printf("    first difference: map %d, s %d a %d, transition %d\n", maps, s, a, pos);
            }
        }
        pos++, total++;
    }
    fclose(f);
    CHECK(maps == 4 && total == expect_total && total > 1000, "%d maps, %d transitions", maps, total);
    CHECK(bad == 0, "%d transitions differ from Gymnasium's", bad);
    CHECK(dl_mdp_frozenlake(5, 1) == NULL && strstr(dl_error(), "4 or 8"), "bad map name");
    {
        const char *rows[2] = {"SX", "FG"};
        CHECK(dl_mdp_frozenlake_map(rows, 2, 1) == NULL, "bad letter");
    }
}

/* Sutton & Barto, Example 4.1 / Figure 4.1: v of the equiprobable random policy, gamma 1. */
static void test_gridworld_random_policy(void) {
    static const double want[16] = {0, -14, -20, -22, -14, -18, -20, -20, -20, -20, -18, -14, -22, -20, -14, 0};
    dl_mdp *m = dl_mdp_gridworld();
    double pi[64], V[16] = {0};
    int i, sweeps;
    if (!m) { CHECK(0, "%s", dl_error()); return; }
    for (i = 0; i < 64; i++) pi[i] = 0.25;
    sweeps = dl_policy_evaluation(m, pi, 1.0, 1e-10, 0, V);
    CHECK(sweeps > 0, "%s", dl_error());
    for (i = 0; i < 16; i++) {
        CHECK(fabs(V[i] - want[i]) < 1e-3, "V[%d] = %.6f, want %g", i, V[i], want[i]);
        CHECK(floor(V[i] + 0.5) == want[i], "V[%d] rounds to %g", i, floor(V[i] + 0.5));
    }
    printf("    Example 4.1, random policy (%d sweeps):\n", sweeps);
    for (i = 0; i < 4; i++) printf("      %6.1f %6.1f %6.1f %6.1f\n", V[4 * i], V[4 * i + 1], V[4 * i + 2], V[4 * i + 3]);
    /* An improper policy (always left) with gamma 1 does not converge: an error, not a hang. */
    {
        double left[64] = {0}, W[16] = {0};
        for (i = 0; i < 16; i++) left[i * 4] = 1.0;
        CHECK(dl_policy_evaluation(m, left, 1.0, 1e-10, 1000, W) == -1 && strstr(dl_error(), "converge"), "%s", dl_error());
    }
    CHECK(dl_policy_evaluation(m, pi, 1.5, 1e-10, 0, V) == -1, "gamma > 1");
    CHECK(dl_policy_evaluation(NULL, pi, 1.0, 1e-10, 0, V) == -1, "NULL");
    dl_mdp_free(m);
}

/* v* of Example 4.1 is minus the distance to the nearest corner; value and policy iteration
   (from the greedy policy of v_random, which is proper) both find it. */
static void test_gridworld_optimal(void) {
    static const double want[16] = {0, -1, -2, -3, -1, -2, -3, -2, -2, -3, -2, -1, -3, -2, -1, 0};
    dl_mdp *m = dl_mdp_gridworld();
    double V[16] = {0}, W[16] = {0}, pi[64], Q[64];
    int pol[16], pol2[16], i, rounds;
    if (!m) { CHECK(0, "%s", dl_error()); return; }
    CHECK(dl_value_iteration(m, 1.0, 1e-12, 0, V, pol) > 0, "%s", dl_error());
    CHECK_ALL_NEAR(V, want, 16, 1e-12);
    for (i = 0; i < 64; i++) pi[i] = 0.25;
    dl_policy_evaluation(m, pi, 1.0, 1e-10, 0, W);
    CHECK(dl_q_from_v(m, W, 1.0, Q) == 0, "q_from_v");
    dl_greedy_policy(Q, 16, 4, pol2);
    rounds = dl_policy_iteration(m, 1.0, 1e-12, pol2, W);
    CHECK(rounds > 0, "%s", dl_error());
    CHECK_ALL_NEAR(W, want, 16, 1e-9);
    /* gamma 0.9: both methods agree */
    {
        double A[16] = {0}, B[16] = {0};
        int pa[16], pb[16] = {0};
        dl_value_iteration(m, 0.9, 1e-12, 0, A, pa);
        CHECK(dl_policy_iteration(m, 0.9, 1e-12, pb, B) > 0, "%s", dl_error());
        CHECK_ALL_NEAR(B, A, 16, 1e-9);
    }
    dl_mdp_free(m);
}

/* The optimal policy of slippery FrozenLake 4x4 (value iteration, gamma 0.99) succeeds about
   74% of the time within the 100-step limit; policy iteration finds the same values. */
static void test_frozenlake_planning(void) {
    dl_env *env = dl_env_frozenlake(4, 1);
    const dl_mdp *m = dl_env_mdp(env);
    double V[16] = {0}, W[16] = {0}, rate;
    int pol[16], pol2[16] = {0};
    if (!env || !m) { CHECK(0, "%s", dl_error()); dl_env_free(env); return; }
    CHECK(dl_value_iteration(m, 0.99, 1e-12, 0, V, pol) > 0, "%s", dl_error());
    CHECK(dl_policy_iteration(m, 0.99, 1e-12, pol2, W) > 0, "%s", dl_error());
    CHECK_ALL_NEAR(W, V, 16, 1e-8);
    rate = dl_run_policy(env, pol, 10000, 1);
    printf("    FrozenLake 4x4 slippery, value iteration's policy: success rate %.4f (V[0] = %.4f)\n", rate, V[0]);
    CHECK(rate >= 0.72 && rate <= 0.77, "success rate %.4f", rate);
    dl_env_free(env);
}

static double td_success(dl_td_method method, long steps, uint64_t seed) {
    dl_env *env = dl_env_frozenlake(4, 1);
    double Q[64] = {0}, rate;
    int pol[16];
    dl_td_opts o = dl_td_defaults(method);
    long episodes;
    if (!env) return -1;
    o.steps = steps, o.seed = seed, o.alpha = 0.1, o.alpha_end = 0.01;
    episodes = dl_td_control(env, Q, &o);
    if (episodes < 0) { printf("    %s\n", dl_error()); dl_env_free(env); return -1; }
    dl_greedy_policy(Q, 16, 4, pol);
    rate = dl_run_policy(env, pol, 10000, seed + 1000);
    dl_env_free(env);
    return rate;
}

/* The bar: Q-learning on slippery FrozenLake 4x4 reaches a greedy success rate >= 0.70
   (optimum ~0.74), over 10000 evaluation episodes, for 3 seeds; SARSA and expected SARSA too. */
static void test_frozenlake_td(void) {
    const char *names[3] = {"Q-learning", "SARSA", "expected SARSA"};
    int method, seed;
    for (method = 0; method < 3; method++)
        for (seed = 1; seed <= 3; seed++) {
            double rate = td_success((dl_td_method)method, 300000, (uint64_t)seed);
            printf("    %s, seed %d: greedy success rate %.4f\n", names[method], seed, rate);
            CHECK(rate >= 0.70, "%s seed %d: %.4f", names[method], seed, rate);
        }
}

static void test_td_errors_and_determinism(void) {
    dl_env *cp = dl_env_cartpole(), *fl = dl_env_frozenlake(4, 0);
    double Q[64] = {0}, Q2[64] = {0};
    dl_td_opts o = dl_td_defaults(DL_Q_LEARNING);
    o.steps = 5000;
    CHECK(dl_td_control(cp, Q, &o) == -1 && strstr(dl_error(), "discrete"), "cartpole is not tabular: %s", dl_error());
    o.alpha = 2;
    CHECK(dl_td_control(fl, Q, &o) == -1, "alpha 2");
    o.alpha = 0.1;
    CHECK(dl_td_control(fl, Q, &o) > 0, "%s", dl_error());
    CHECK(dl_td_control(fl, Q2, &o) > 0, "%s", dl_error());
    CHECK(memcmp(Q, Q2, sizeof Q) == 0, "same seed, same Q");
    CHECK(isnan(dl_run_policy(cp, (const int *)Q, 1, 0)), "run_policy on cartpole");
    dl_env_free(cp);
    dl_env_free(fl);
}

/* First-visit Monte Carlo control (epsilon-soft) on Example 4.1, gamma 1: the greedy policy
   of the learned Q is optimal in every state (its action has q* = v*). No leaks. */
static void test_gridworld_mc(void) {
    dl_env *env = dl_env_gridworld();
    const dl_mdp *m = dl_env_mdp(env);
    double Q[64] = {0}, V[16] = {0}, Qs[64];
    int pol[16], s, optimal = 0;
    long episodes;
    dl_td_opts o = dl_td_defaults(DL_Q_LEARNING);
    if (!env) { CHECK(0, "%s", dl_error()); return; }
    o.gamma = 1.0, o.steps = 200000, o.seed = 1;
    episodes = dl_mc_control(env, Q, &o);
    CHECK(episodes > 1000, "%ld episodes: %s", episodes, dl_error());
    dl_greedy_policy(Q, 16, 4, pol);
    dl_value_iteration(m, 1.0, 1e-12, 0, V, NULL);
    dl_q_from_v(m, V, 1.0, Qs);
    for (s = 1; s < 15; s++) optimal += Qs[s * 4 + pol[s]] == V[s];
    printf("    first-visit MC control: %ld episodes, greedy action optimal in %d of 14 states\n", episodes, optimal);
    CHECK(optimal == 14, "%d of 14", optimal);
    CHECK(dl_mc_control(env, NULL, &o) == -1, "NULL Q");
    dl_env_free(env);
    CHECK(test_live == 0, "%ld blocks leaked", test_live);
}

/* A two-state MDP built by hand, run as an environment. */
static void test_custom_mdp(void) {
    dl_mdp *m = dl_mdp_new(2, 2, 4);
    dl_env *env;
    float obs;
    double r, V[2] = {0, 0};
    int term, trunc, pol[2], n;
    if (!m) { CHECK(0, "%s", dl_error()); return; }
    CHECK(dl_mdp_add(m, 0, 0, 1.0, 0, 0.0, 0) == 0, "%s", dl_error());
    CHECK(dl_mdp_add(m, 0, 1, 1.0, 1, 1.0, 1) == 0, "%s", dl_error());
    CHECK(dl_mdp_add(m, 0, 0, 1.0, 0, 0.0, 0) == -1 && strstr(dl_error(), "order"), "out of order");
    CHECK(dl_mdp_add(m, 1, 0, 1.0, 1, 0.0, 1) == 0, "%s", dl_error());
    CHECK(dl_mdp_add(m, 1, 1, 1.0, 2, 0.0, 1) == -1, "next out of range");
    CHECK(dl_mdp_add(m, 1, 1, 1.0, 1, 0.0, 1) == 0, "%s", dl_error());
    CHECK(dl_mdp_add(m, 1, 1, 1.0, 1, 0.0, 1) == -1 && strstr(dl_error(), "reserved"), "full");
    CHECK(dl_mdp_transitions(m, 0, 1, &n) == &m->tr[1] && n == 1, "P[0][1]");
    m->isd[0] = 1.0;
    CHECK(dl_value_iteration(m, 0.9, 1e-12, 0, V, pol) > 0 && pol[0] == 1 && fabs(V[0] - 1.0) < 1e-12, "V[0] = %g", V[0]);
    env = dl_env_from_mdp(m, 3, "two");
    CHECK(env != NULL, "%s", dl_error());
    if (env) {
        dl_env_reset(env, 0, &obs);
        CHECK(obs == 0.0f, "start");
        dl_env_step(env, 0, &obs, &r, &term, &trunc);
        dl_env_step(env, 0, &obs, &r, &term, &trunc);
        dl_env_step(env, 0, &obs, &r, &term, &trunc);
        CHECK(trunc && !term && obs == 0.0f, "truncated after 3");
        dl_env_reset(env, -1, &obs);
        dl_env_step(env, 1, &obs, &r, &term, &trunc);
        CHECK(term && !trunc && r == 1.0 && obs == 1.0f, "terminated with reward 1");
        {
            double bad = 2.0;
            CHECK(dl_env_set_state(env, &bad, &obs) == -1, "state out of range");
        }
        CHECK(dl_run_policy(env, pol, 10, 0) == 1.0, "policy return");
    }
    dl_env_free(env);
    dl_mdp_free(m);
    CHECK(dl_mdp_new(0, 2, 1) == NULL, "no states");
}

/* The gridworld environment: starts anywhere but the corners; the random policy's mean
   return from the start distribution is the mean of v_random over the 14 states (-256/14). */
static void test_gridworld_env(void) {
    dl_env *env = dl_env_gridworld();
    float obs;
    double r, total = 0.0;
    int e, term, trunc, pol_ok = 1;
    const int episodes = 20000;
    dl_rng rng;
    if (!env) { CHECK(0, "%s", dl_error()); return; }
    dl_rng_seed(&rng, 5);
    for (e = 0; e < episodes; e++) {
        dl_env_reset(env, e == 0 ? 11 : -1, &obs);
        if (obs == 0.0f || obs == 15.0f) pol_ok = 0;
        term = trunc = 0;
        while (!term && !trunc) {
            dl_env_step(env, dl_rng_int(&rng, 4), &obs, &r, &term, &trunc);
            total += r;
        }
        if (!(obs == 0.0f || obs == 15.0f)) pol_ok = 0;
    }
    CHECK(pol_ok, "starts off the corners, ends in one");
    total /= episodes;
    printf("    gridworld, random policy: mean return %.3f (expected -256/14 = %.3f)\n", total, -256.0 / 14);
    CHECK(fabs(total + 256.0 / 14) < 0.3, "mean return %.3f", total);
    dl_env_free(env);
}

int main(void) {
    RUN(test_cartpole_reference);
    RUN(test_cartpole_gymnasium_parity);
    RUN(test_cartpole_reset_truncation);
    RUN(test_mountaincar_gymnasium_parity);
    RUN(test_mountaincar_env);
    RUN(test_env_no_alloc);
    RUN(test_frozenlake_tables);
    RUN(test_gridworld_random_policy);
    RUN(test_gridworld_optimal);
    RUN(test_frozenlake_planning);
    RUN(test_frozenlake_td);
    RUN(test_td_errors_and_determinism);
    RUN(test_gridworld_mc);
    RUN(test_custom_mdp);
    RUN(test_gridworld_env);
    dl_arena_free_default();
    return test_summary();
}
