/* dl_rl.h: CartPole-v1 and MountainCar-v0 against Gymnasium to the last bit, FrozenLake-v1's
   tables against Gymnasium's, Breakout against MinAtar step by step and its rules by hand,
   Example 4.1's values, policy and value iteration, Q-learning / SARSA / expected SARSA on
   slippery FrozenLake, the environment interface's rules and errors, rendering, vectorized
   environments with autoreset, and no allocation in reset, step or render.

   tests/data/rl_cartpole.txt, rl_mountaincar.txt and rl_frozenlake.txt come from Gymnasium
   1.4.0, rl_breakout.txt from MinAtar 1.0.15, through tools/make_rl_fixtures.py (their format
   is described there). The PNG check needs Debian's libstb-dev (<stb/stb_image_write.h>); it is
   skipped without it. */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "count_alloc.h"

#if defined(__has_include)
#if __has_include(<stb/stb_image_write.h>)
#define TEST_HAVE_STB 1
#endif
#endif
#ifdef TEST_HAVE_STB   /* before dl_rl.h, so that it defines dl_env_save_png */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#endif
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#endif

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
        dl_env_state(env, got);
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
        dl_env_state(env, got);
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
    rounds = dl_policy_iteration(m, 1.0, 1e-12, W, pol2);
    CHECK(rounds > 0, "%s", dl_error());
    CHECK_ALL_NEAR(W, want, 16, 1e-9);
    /* gamma 0.9: both methods agree */
    {
        double A[16] = {0}, B[16] = {0};
        int pa[16], pb[16] = {0};
        dl_value_iteration(m, 0.9, 1e-12, 0, A, pa);
        CHECK(dl_policy_iteration(m, 0.9, 1e-12, B, pb) > 0, "%s", dl_error());
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
    CHECK(dl_policy_iteration(m, 0.99, 1e-12, W, pol2) > 0, "%s", dl_error());
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
    dl_td_opts o = {0};   /* 0s: the defaults */
    long episodes;
    if (!env) return -1;
    o.method = method, o.steps = steps, o.seed = seed, o.alpha = 0.1, o.alpha_end = 0.01;
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
    dl_td_opts o = {0};   /* 0s: the defaults (Q-learning) */
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

/* The step count of an env without a time limit saturates at INT_MAX instead of overflowing
   (UBSan's report before); stepping goes on. */
static void test_elapsed_saturates(void) {
    dl_env *env = dl_env_gridworld();
    double r;
    int term = 0, trunc = 0, i;
    if (!env) { CHECK(0, "%s", dl_error()); return; }
    CHECK(dl_env_reset(env, 1, NULL) == 0, "%s", dl_error());
    env->elapsed = INT_MAX - 1;
    for (i = 0; i < 3 && !term; i++) {
        double state = 5;
        dl_env_set_state(env, &state, NULL);   /* away from the corners: the episode goes on */
        CHECK(dl_env_step(env, 2, NULL, &r, &term, &trunc) == 0 && !trunc, "%s", dl_error());
    }
    CHECK(env->elapsed == INT_MAX, "elapsed %d", env->elapsed);
    dl_env_free(env);
}

/* Options: a zero struct, a NULL pointer and the documented defaults written out give the same
   run (before, a zero struct meant gamma 0, alpha 0, epsilon 0); DL_ZERO asks for a real 0
   (gamma 0: state 0 of FrozenLake, two steps from any reward, keeps Q = 0); other negative
   values are errors, not zeros. */
static void test_td_default_options(void) {
    dl_env *fl = dl_env_frozenlake(4, 1);
    double Qz[64] = {0}, Qn[64] = {0}, Qd[64] = {0}, Qg[64] = {0};
    dl_td_opts z, d;
    long ez, en, ed;
    int i, zero_row = 1, nonzero = 0;
    memset(&z, 0, sizeof z);
    memset(&d, 0, sizeof d);
    d.method = DL_TD_Q_LEARNING, d.steps = 200000, d.alpha = 0.1, d.alpha_end = 0.01, d.gamma = 0.99;
    d.eps_start = 1, d.eps_end = 0.05, d.eps_fraction = 0.5, d.seed = 0;
    ez = dl_td_control(fl, Qz, &z);
    en = dl_td_control(fl, Qn, NULL);
    ed = dl_td_control(fl, Qd, &d);
    CHECK(ez > 0 && ez == en && ez == ed, "episodes %ld %ld %ld: %s", ez, en, ed, dl_error());
    CHECK(memcmp(Qz, Qd, sizeof Qz) == 0 && memcmp(Qn, Qd, sizeof Qn) == 0, "zero struct, NULL and the defaults differ");
    for (i = 0; i < 4; i++) nonzero += Qd[i] > 0;
    CHECK(nonzero > 0, "with gamma 0.99 the start state has value");
    z.gamma = DL_ZERO; z.steps = 20000;
    CHECK(dl_td_control(fl, Qg, &z) > 0, "%s", dl_error());
    for (i = 0; i < 4; i++) zero_row &= Qg[i] == 0.0;
    CHECK(zero_row, "gamma DL_ZERO is a real 0: Q(0, .) = %g %g %g %g", Qg[0], Qg[1], Qg[2], Qg[3]);
    z.gamma = -0.5;
    CHECK(dl_td_control(fl, Qg, &z) == -1 && strstr(dl_error(), "gamma"), "gamma -0.5 is an error: %s", dl_error());
    z.gamma = 0; z.eps_end = DL_ZERO; z.alpha_end = DL_ZERO;
    CHECK(dl_mc_control(fl, Qg, &z) > 0 && dl_mc_control(fl, Qg, NULL) > 0, "%s", dl_error());
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
    dl_td_opts o = {0};   /* 0s: the defaults (Q-learning) */
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

/* ---- Breakout (MinAtar) ---------------------------------------------------------------------- */

/* Every step recorded from MinAtar's breakout.Env (sticky actions off): set_state + step give
   the same next state, reward and termination. The fixture covers brick hits, paddle bounces,
   misses and refills of the wall (counted here). */
static void test_breakout_minatar_parity(void) {
    FILE *f = fopen("tests/data/rl_breakout.txt", "r");
    char line[256];
    int n = 0, bad = 0, first_bad = -1, n_refill = 0, n_bounce = 0, n_term = 0, n_reward = 0, bad_obs = 0;
    dl_env *env = dl_env_breakout(0.0);
    CHECK(f != NULL, "cannot open tests/data/rl_breakout.txt (run from the repository root)");
    if (!f || !env) { if (f) fclose(f); dl_env_free(env); return; }
    while (fgets(line, sizeof line, f)) {
        int b[7], a[7], action, reward, term, got_term = -1, i, fail = 0;
        unsigned bb, ab;
        double s[9], got[9], r = -1;
        float obs[400];
        if (line[0] == '#') continue;
        if (sscanf(line, "%d %d %d %d %d %d %d %x %d %d %d %d %d %d %d %d %d %d %x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5],
                   &b[6], &bb, &action, &reward, &term, &a[0], &a[1], &a[2], &a[3], &a[4], &a[5], &a[6], &ab) != 19) {
            CHECK(0, "bad fixture line %d", n);
            break;
        }
        for (i = 0; i < 7; i++) s[i] = b[i];
        s[7] = bb, s[8] = 0;
        dl_env_set_state(env, s, NULL);
        if (dl_env_step(env, action, obs, &r, &got_term, NULL) != 0) { CHECK(0, "%s", dl_error()); break; }
        dl_env_state(env, got);
        for (i = 0; i < 7; i++) fail |= got[i] != a[i];
        fail |= got[7] != ab || got[8] != action || r != reward || got_term != term;
        /* the observation shows the state after the step */
        bad_obs += obs[90 + a[5]] != 1 || obs[100 + a[1] * 10 + a[0]] != 1 || obs[200 + a[4] * 10 + a[3]] != 1 ||
                   obs[300 + 15] != (float)((ab >> 5) & 1);
        if (fail && bad++ == 0) first_bad = n;
        n_refill += bb == 0 && ab == 0x3FFFFFFFu;
        n_bounce += b[1] == 8 && (b[2] == 2 || b[2] == 3) && !term && a[1] == 8;
        n_term += term, n_reward += reward;
        n++;
    }
    fclose(f);
    printf("    breakout parity: %d steps (%d bricks hit, %d paddle bounces, %d refills, %d terminated), %d differ\n", n,
           n_reward, n_bounce, n_refill, n_term, bad);
    CHECK(n == 5520 && n_refill >= 2 && n_bounce > 100 && n_term > 100 && n_reward > 300, "fixture coverage");
    CHECK(bad == 0, "first mismatch at step %d", first_bad);
    CHECK(bad_obs == 0, "%d observations differ from the state", bad_obs);
    dl_env_free(env);
}

/* set the state (x, y, dir, trail x, trail y, paddle, strike, bricks), step with action a */
static double bo_step(dl_env *env, const double *s, int a, double *out, int *term) {
    double st[9], r = -1;
    int i;
    for (i = 0; i < 8; i++) st[i] = s[i];
    st[8] = 0;
    dl_env_set_state(env, st, NULL);
    *term = -1;
    if (dl_env_step(env, a, NULL, &r, term, NULL) != 0) printf("    %s\n", dl_error());
    dl_env_state(env, out);
    return r;
}
#define BO_ALL 1073741823.0   /* 0x3FFFFFFF: all 30 bricks */
#define BO_BIT(y, x) (1u << (((y) - 1) * 10 + (x)))

static void test_breakout_rules(void) {
    dl_env *env = dl_env_breakout(0.0);
    double o[9], r;
    int t;
    if (!env) { CHECK(0, "%s", dl_error()); return; }
    CHECK(strcmp(env->ops->name, "MinAtar/Breakout") == 0 && dl_env_obs_size(env) == 400, "name, obs size");
    CHECK(env->observation_space.kind == DL_SPACE_BOX && env->observation_space.ndim == 3 &&
          env->observation_space.shape[0] == 4 && env->observation_space.shape[1] == 10 && env->observation_space.shape[2] == 10,
          "obs space [4, 10, 10]");
    CHECK(env->observation_space.low[399] == 0.0f && env->observation_space.high[0] == 1.0f && env->observation_space.high[399] == 1.0f,
          "bounds 0..1");
    CHECK(env->action_space.n == 3 && env->max_episode_steps == 0 && env->ops->state_dim == 9, "3 actions, no time limit");
    {   /* right wall: up-right at x 9 turns up-left */
        const double s[8] = {9, 5, 1, 8, 6, 0, 0, BO_ALL};
        r = bo_step(env, s, 0, o, &t);
        CHECK(o[0] == 9 && o[1] == 4 && o[2] == 0 && o[3] == 9 && o[4] == 5 && r == 0 && !t, "right wall: %g %g %g", o[0], o[1], o[2]);
    }
    {   /* left wall: down-left at x 0 turns down-right */
        const double s[8] = {0, 6, 3, 1, 5, 8, 0, BO_ALL};
        bo_step(env, s, 0, o, &t);
        CHECK(o[0] == 0 && o[1] == 7 && o[2] == 2, "left wall: %g %g %g", o[0], o[1], o[2]);
    }
    {   /* top wall, then the top left corner (both mirrors) */
        const double s[8] = {4, 0, 0, 5, 1, 0, 0, 0}, c[8] = {0, 0, 0, 1, 1, 0, 0, 0};
        bo_step(env, s, 0, o, &t);
        CHECK(o[0] == 3 && o[1] == 0 && o[2] == 3, "top wall: %g %g %g", o[0], o[1], o[2]);
        bo_step(env, c, 0, o, &t);
        CHECK(o[0] == 0 && o[1] == 0 && o[2] == 2, "corner: %g %g %g", o[0], o[1], o[2]);
    }
    {   /* a brick: +1, removed, the ball stays on its row and turns down; strike set */
        const double s[8] = {5, 4, 1, 4, 5, 0, 0, BO_ALL};
        r = bo_step(env, s, 0, o, &t);
        CHECK(r == 1 && o[0] == 6 && o[1] == 4 && o[2] == 2 && o[6] == 1 && o[7] == BO_ALL - BO_BIT(3, 6) && !t,
              "brick hit: r %g ball %g %g dir %g strike %g", r, o[0], o[1], o[2], o[6]);
        dl_env_step(env, 0, NULL, &r, &t, NULL);
        dl_env_state(env, o);
        CHECK(r == 0 && o[0] == 7 && o[1] == 5 && o[6] == 0, "the next step clears the strike flag");
    }
    {   /* inside the wall: a hit from below turns the ball down into another brick, which the
           strike flag lets it pass without a reward; the step after clears the flag */
        const double s[8] = {5, 2, 1, 4, 3, 0, 0, BO_ALL - BO_BIT(2, 5)};
        r = bo_step(env, s, 0, o, &t);
        CHECK(r == 1 && o[0] == 6 && o[1] == 2 && o[2] == 2 && o[6] == 1 && o[7] == BO_ALL - BO_BIT(2, 5) - BO_BIT(1, 6),
              "first brick: r %g ball %g %g", r, o[0], o[1]);
        dl_env_step(env, 0, NULL, &r, &t, NULL);
        dl_env_state(env, o);
        CHECK(r == 0 && o[0] == 7 && o[1] == 3 && o[2] == 2 && o[6] == 1 && o[7] == BO_ALL - BO_BIT(2, 5) - BO_BIT(1, 6),
              "second brick passed: r %g ball %g %g strike %g", r, o[0], o[1], o[6]);
        dl_env_step(env, 0, NULL, &r, &t, NULL);
        dl_env_state(env, o);
        CHECK(r == 0 && o[0] == 8 && o[1] == 4 && o[6] == 0, "strike cleared");
    }
    {   /* paddle under the ball: straight back up (y mirrored); on its edge: reversed */
        const double s[8] = {4, 8, 2, 3, 7, 4, 0, BO_ALL}, e[8] = {3, 8, 2, 2, 7, 4, 0, BO_ALL};
        r = bo_step(env, s, 0, o, &t);
        CHECK(o[0] == 5 && o[1] == 8 && o[2] == 1 && r == 0 && !t, "straight bounce: %g %g %g", o[0], o[1], o[2]);
        bo_step(env, e, 0, o, &t);
        CHECK(o[0] == 4 && o[1] == 8 && o[2] == 0 && !t, "angled bounce: %g %g %g", o[0], o[1], o[2]);
        bo_step(env, s, 2, o, &t);   /* the paddle moves first: now it is at the ball's next column */
        CHECK(o[5] == 5 && o[0] == 5 && o[1] == 8 && o[2] == 0 && !t, "moved paddle: %g %g %g", o[0], o[1], o[2]);
    }
    {   /* a miss ends the episode; then stepping fails */
        const double s[8] = {1, 8, 2, 0, 7, 7, 0, BO_ALL};
        r = bo_step(env, s, 1, o, &t);
        CHECK(t == 1 && r == 0 && o[0] == 2 && o[1] == 9 && o[5] == 6, "miss: term %d ball %g %g", t, o[0], o[1]);
        CHECK(dl_env_step(env, 0, NULL, &r, &t, NULL) == -1, "stepping after the end");
    }
    {   /* no bricks left: the wall is refilled when the ball reaches the paddle row */
        const double s[8] = {4, 8, 2, 3, 7, 4, 0, 0}, above[8] = {4, 7, 2, 3, 6, 4, 0, 0};
        bo_step(env, above, 0, o, &t);
        CHECK(o[7] == 0, "no refill above the paddle row");
        bo_step(env, s, 0, o, &t);
        CHECK(o[7] == BO_ALL && !t, "refilled: %g", o[7]);
    }
    dl_env_free(env);
    CHECK(dl_env_breakout(1.5) == NULL, "sticky probability above 1");
}

/* reset: the two MinAtar starts, each about half the time; the full wall, paddle at 4, trail on
   the ball, no strike, previous action 0. Random play's mean return (MinAtar's random agent,
   sticky 0.1: about 0.38 over 3000 episodes in Python). Nothing allocates. */
static void test_breakout_reset_and_random_play(void) {
    dl_env *env = dl_env_breakout(-1);
    double s[9], r, total = 0;
    float obs[400];
    int left = 0, right = 0, other = 0, e, term, i, ones;
    long before, steps = 0;
    dl_rng rng;
    if (!env) { CHECK(0, "%s", dl_error()); return; }
    before = test_mallocs;
    dl_rng_seed(&rng, 3);
    for (e = 0; e < 5000; e++) {
        dl_env_reset(env, e == 0 ? 1 : -1, obs);
        dl_env_state(env, s);
        if (s[0] == 0 && s[2] == 2) left++;
        else if (s[0] == 9 && s[2] == 3) right++;
        else other++;
        if (!(s[1] == 3 && s[3] == s[0] && s[4] == 3 && s[5] == 4 && s[6] == 0 && s[7] == BO_ALL && s[8] == 0)) other++;
        for (ones = 0, i = 0; i < 400; i++) ones += obs[i] == 1.0f;
        if (ones != 33 || obs[100 + 30 + (int)s[0]] != 1 || obs[200 + 30 + (int)s[0]] != 1 || obs[94] != 1) other++;
        term = 0;
        while (!term) {
            dl_env_step(env, dl_rng_int(&rng, 3), obs, &r, &term, NULL);
            total += r, steps++;
        }
    }
    CHECK(test_mallocs == before, "%ld allocations in reset/step", test_mallocs - before);
    printf("    breakout reset: %d starts at x 0, %d at x 9; random play (sticky 0.1): mean return %.3f, %.1f steps\n", left,
           right, total / 5000, steps / 5000.0);
    CHECK(other == 0 && left > 2300 && right > 2300, "starts: %d left %d right %d bad", left, right, other);
    CHECK(total / 5000 > 0.25 && total / 5000 < 0.55, "random play mean return %.3f", total / 5000);
    dl_env_free(env);
}

/* Sticky actions: the previous action is repeated with the given probability, from the env's
   generator (same seed, same game); with probability 0 never. */
static void test_breakout_sticky(void) {
    dl_env *a = dl_env_breakout(0.1), *b = dl_env_breakout(0.1), *z = dl_env_breakout(0.0);
    double sa[9], sb[9], r;
    int t, ta, tz, same = 1, repeats = 0, zero_repeats = 0, n = 20000, i, act;
    if (!a || !b || !z) { CHECK(0, "%s", dl_error()); dl_env_free(a), dl_env_free(b), dl_env_free(z); return; }
    dl_env_reset(a, 5, NULL), dl_env_reset(b, 5, NULL), dl_env_reset(z, 5, NULL);
    for (i = 0; i < n; i++) {
        dl_env_state(a, sa);
        act = ((int)sa[8] + 1 + i % 2) % 3;   /* always differs from the previous action */
        dl_env_step(a, act, NULL, &r, &ta, NULL);
        dl_env_step(b, act, NULL, &r, &t, NULL);
        dl_env_state(a, sa), dl_env_state(b, sb);
        same &= memcmp(sa, sb, sizeof sa) == 0;
        repeats += sa[8] != act;
        if (ta) {
            dl_env_reset(a, -1, NULL), dl_env_reset(b, -1, NULL);
            dl_env_state(a, sa);
            same &= sa[8] == 0;   /* the previous action is 0 after reset */
        }
        dl_env_state(z, sb);
        act = ((int)sb[8] + 1 + i % 2) % 3;
        dl_env_step(z, act, NULL, &r, &tz, NULL);
        dl_env_state(z, sb);
        zero_repeats += sb[8] != act;
        if (tz) dl_env_reset(z, -1, NULL);
    }
    printf("    sticky 0.1: %d of %d actions repeated the previous one (%.4f)\n", repeats, n, (double)repeats / n);
    CHECK(same, "two envs with the same seed and actions differ");
    CHECK(fabs((double)repeats / n - 0.1) < 0.01, "repeat frequency %.4f", (double)repeats / n);
    CHECK(zero_repeats == 0, "sticky 0 repeated %d actions", zero_repeats);
    dl_env_free(a), dl_env_free(b), dl_env_free(z);
}

/* ---- Rendering ------------------------------------------------------------------------------- */

static int px(const unsigned char *rgb, int w, int x, int y, int r, int g, int b) {
    const unsigned char *p = rgb + ((size_t)y * w + x) * 3;
    return p[0] == r && p[1] == g && p[2] == b;
}

static void null_reset(dl_env *env) { env->state[0] = 0; }
static void null_step(dl_env *env, int a, double *r, int *t) { (void)env, (void)a, *r = 0, *t = 1; }
static void null_observe(const dl_env *env, float *obs) { obs[0] = (float)env->state[0]; }

static void test_render(void) {
    static unsigned char img[600 * 600 * 3], img2[600 * 400 * 3];   /* up to 512 x 512 (FrozenLake 8x8) */
    dl_env *bo = dl_env_breakout(0), *cp = dl_env_cartpole(), *mc = dl_env_mountaincar();
    dl_env *fl = dl_env_frozenlake(4, 1), *f8 = dl_env_frozenlake(8, 0), *gw = dl_env_gridworld();
    int w, h, i;
    long before;
    if (!bo || !cp || !mc || !fl || !f8 || !gw) { CHECK(0, "%s", dl_error()); goto done; }
    before = test_mallocs;
    {   /* Breakout: 160 x 160, a cell per 16 x 16 block */
        const double s[9] = {5, 6, 2, 4, 5, 4, 0, BO_ALL, 0};
        CHECK(dl_env_render_size(bo, &w, &h) == 0 && w == 160 && h == 160, "breakout size %d x %d", w, h);
        dl_env_set_state(bo, s, NULL);
        dl_env_step(bo, 0, NULL, NULL, NULL, NULL);   /* ball at x 6, y 7, trail at x 5, y 6 */
        CHECK(dl_env_render(bo, img) == 0, "%s", dl_error());
        CHECK(px(img, 160, 6 * 16 + 8, 7 * 16 + 8, 84, 121, 47), "ball cell");
        CHECK(px(img, 160, 5 * 16 + 3, 6 * 16 + 12, 208, 126, 147), "trail cell");
        CHECK(px(img, 160, 5 * 16 + 8, 1 * 16 + 8, 193, 202, 243) && px(img, 160, 9 * 16 + 15, 3 * 16 + 15, 193, 202, 243), "brick cells");
        CHECK(px(img, 160, 4 * 16 + 8, 9 * 16 + 8, 22, 61, 78), "paddle cell");
        CHECK(px(img, 160, 2 * 16 + 8, 6 * 16 + 8, 0, 0, 0) && px(img, 160, 0, 0, 0, 0, 0), "background");
    }
    {   /* CartPole: white, track at row 299, the cart's lower half black around column 300 + 125 x */
        double s[4] = {0, 0, 0, 0};
        CHECK(dl_env_render_size(cp, &w, &h) == 0 && w == 600 && h == 400, "cartpole size %d x %d", w, h);
        dl_env_set_state(cp, s, NULL);
        dl_env_render(cp, img);
        CHECK(px(img, 600, 300, 305, 0, 0, 0) && px(img, 600, 280, 310, 0, 0, 0), "cart");
        CHECK(px(img, 600, 5, 5, 255, 255, 255) && px(img, 600, 300, 100, 255, 255, 255), "background");
        CHECK(px(img, 600, 10, 299, 0, 0, 0) && px(img, 600, 590, 299, 0, 0, 0), "track");
        CHECK(px(img, 600, 300, 220, 202, 152, 101), "upright pole");
        CHECK(px(img, 600, 300, 292, 129, 132, 203), "axle");
        s[0] = 1.0, s[2] = 0.2;
        dl_env_set_state(cp, s, NULL);
        dl_env_render(cp, img2);
        CHECK(px(img2, 600, 280, 310, 255, 255, 255) && px(img2, 600, 425, 305, 0, 0, 0), "the cart moved with x");
        CHECK(px(img2, 600, 425, 220, 255, 255, 255) && px(img2, 600, 425 + (int)(80 * sin(0.2)), 292 - (int)(80 * cos(0.2)), 202, 152, 101),
              "the pole leans right with theta");
    }
    {   /* MountainCar: the flag's yellow, the car's black body on the hill */
        const double scale = 600 / 1.8, x = -0.5, a = cos(3 * x);
        const double cx = (x + 1.2) * scale - 10 * sin(a), cy = 10 + (sin(3 * x) * 0.45 + 0.55) * scale + 10 * cos(a);
        const double fy = (sin(1.5) * 0.45 + 0.55) * scale + 45;
        double s[2] = {-0.5, 0};
        CHECK(dl_env_render_size(mc, &w, &h) == 0 && w == 600 && h == 400, "mountaincar size");
        dl_env_set_state(mc, s, NULL);
        dl_env_render(mc, img);
        CHECK(px(img, 600, (int)cx, 400 - (int)cy, 0, 0, 0), "car body");
        CHECK(px(img, 600, (int)((0.5 + 1.2) * scale) + 6, 400 - (int)fy, 204, 204, 0), "flag");
        CHECK(px(img, 600, 5, 5, 255, 255, 255), "background");
    }
    {   /* FrozenLake 4x4: the agent on S, a hole at state 5, the goal at 15; 8x8 is 512 wide */
        CHECK(dl_env_render_size(fl, &w, &h) == 0 && w == 256 && h == 256, "frozenlake size %d", w);
        dl_env_reset(fl, 0, NULL);
        dl_env_render(fl, img);
        CHECK(px(img, 256, 32, 32, 220, 40, 40), "agent on the start");
        CHECK(px(img, 256, 5, 5, 150, 200, 120), "start tile");
        CHECK(px(img, 256, 64 + 5, 5, 204, 230, 247), "frozen tile");
        CHECK(px(img, 256, 96, 96, 25, 45, 100), "hole");
        CHECK(px(img, 256, 224, 224, 245, 200, 40), "goal");
        CHECK(px(img, 256, 64, 30, 70, 70, 70), "border");
        CHECK(dl_env_render_size(f8, &w, &h) == 0 && w == 512 && h == 512, "8x8 size %d", w);
        dl_env_render(f8, img);
        CHECK(px(img, 512, 3 * 64 + 20, 2 * 64 + 20, 25, 45, 100) && px(img, 512, 7 * 64 + 20, 7 * 64 + 20, 245, 200, 40), "8x8 hole, goal");
    }
    {   /* the gridworld: grey terminal corners, the agent on its state */
        double s = 6;
        dl_env_set_state(gw, &s, NULL);
        dl_env_render(gw, img);
        CHECK(px(img, 256, 10, 10, 150, 150, 150) && px(img, 256, 250, 250, 150, 150, 150), "corners");
        CHECK(px(img, 256, 2 * 64 + 32, 64 + 32, 220, 40, 40) && px(img, 256, 64 + 10, 10, 245, 245, 245), "agent, cell");
    }
    for (i = 0; i < 100; i++) dl_env_render(bo, img), dl_env_render(cp, img), dl_env_render(fl, img);
    CHECK(test_mallocs == before, "%ld allocations while rendering", test_mallocs - before);
    {   /* an env without a renderer, and bad arguments */
        dl_env_ops ops;
        dl_space sp;
        dl_env *plain;
        memset(&ops, 0, sizeof ops), memset(&sp, 0, sizeof sp);
        ops.name = "plain", ops.state_dim = 1, ops.reset = null_reset, ops.step = null_step, ops.observe = null_observe;
        sp.kind = DL_SPACE_DISCRETE, sp.n = 2;
        plain = dl_env_new(&ops, &sp, &sp, 0, NULL);
        CHECK(plain != NULL, "%s", dl_error());
        CHECK(dl_env_render_size(plain, &w, &h) == -1 && w == 0 && strstr(dl_error(), "renderer"), "no renderer: %s", dl_error());
        CHECK(dl_env_render(plain, img) == -1 && strstr(dl_error(), "renderer"), "no renderer: %s", dl_error());
        dl_env_free(plain);
        CHECK(dl_env_render(bo, NULL) == -1 && dl_env_render(NULL, img) == -1, "NULL arguments");
    }
done:
    dl_env_free(bo), dl_env_free(cp), dl_env_free(mc), dl_env_free(fl), dl_env_free(f8), dl_env_free(gw);
}

/* dl_ppm_save's header and size; dl_env_save_png (with stb_image_write.h) writes a PNG whose
   IHDR says 160 x 160. */
static void test_render_files(void) {
    static unsigned char img[160 * 160 * 3];
    char head[16];
    unsigned char png[24];
    dl_env *env = dl_env_breakout(0);
    FILE *f;
    long size;
    if (!env) { CHECK(0, "%s", dl_error()); return; }
    dl_env_reset(env, 1, NULL);
    dl_env_render(env, img);
    CHECK(dl_ppm_save("/tmp/dl_test_rl_breakout.ppm", img, 160, 160) == 0, "%s", dl_error());
    f = fopen("/tmp/dl_test_rl_breakout.ppm", "rb");
    CHECK(f != NULL, "reading the PPM back");
    if (f) {
        size_t got = fread(head, 1, 15, f);
        head[got] = 0;
        fseek(f, 0, SEEK_END);
        size = ftell(f);
        fclose(f);
        CHECK(strcmp(head, "P6\n160 160\n255\n") == 0 && size == 15 + 160 * 160 * 3, "PPM header / size %ld", size);
    }
    CHECK(dl_ppm_save("/nonexistent-dir/x.ppm", img, 160, 160) == -1, "unwritable path");
    remove("/tmp/dl_test_rl_breakout.ppm");
#ifdef TEST_HAVE_STB
    CHECK(dl_env_save_png(env, "/tmp/dl_test_rl_breakout.png") == 0, "%s", dl_error());
    f = fopen("/tmp/dl_test_rl_breakout.png", "rb");
    CHECK(f != NULL && fread(png, 1, 24, f) == 24, "reading the PNG back");
    if (f) fclose(f);
    CHECK(memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0 && memcmp(png + 12, "IHDR", 4) == 0, "PNG signature");
    CHECK(png[16] == 0 && png[17] == 0 && png[18] == 0 && png[19] == 160 && png[23] == 160, "PNG size");
    remove("/tmp/dl_test_rl_breakout.png");
    dl_env_free(env);
#else
    (void)png;
    dl_env_free(env);
    SKIP("stb_image_write.h not found (apt-get install libstb-dev): PNG not checked");
#endif
}

/* ---- Vectorized environments ----------------------------------------------------------------- */

/* 4 CartPoles in a vec env against 4 driven by hand with the same seeds (seed + i) and actions
   and Gymnasium's NEXT_STEP autoreset: equal observations, rewards and flags, every step. */
static void test_vec_env(void) {
    enum { N = 4 };
    dl_env *mine[N], *ref[N];
    dl_vec_env *v;
    float obs[N * 4], robs[N * 4];
    double rew[N];
    int term[N], trunc[N], actions[N], ended[N] = {0}, i, t, bad = 0, resets = 0, checked_reset = 0;
    long before;
    dl_rng rng;
    for (i = 0; i < N; i++) mine[i] = dl_env_cartpole(), ref[i] = dl_env_cartpole();
    v = dl_vec_env_new(N, mine);
    CHECK(v != NULL && v->n == N && v->obs_size == 4, "%s", dl_error());
    if (!v) { for (i = 0; i < N; i++) dl_env_free(mine[i]), dl_env_free(ref[i]); return; }
    before = test_mallocs;
    CHECK(dl_vec_env_reset(v, 100, obs) == 0, "%s", dl_error());
    for (i = 0; i < N; i++) {
        dl_env_reset(ref[i], 100 + i, robs + 4 * i);
        bad += memcmp(obs + 4 * i, robs + 4 * i, sizeof(float) * 4) != 0;
    }
    CHECK(bad == 0, "reset with seeds seed + i");
    dl_rng_seed(&rng, 9);
    for (t = 0; t < 400; t++) {
        for (i = 0; i < N; i++) actions[i] = dl_rng_int(&rng, 2);
        CHECK(dl_vec_env_step(v, actions, obs, rew, term, trunc) == 0, "%s", dl_error());
        for (i = 0; i < N; i++) {
            double r = 0;
            int te = 0, tr = 0;
            if (ended[i]) {   /* the step after the end: a reset, reward 0, no flags */
                dl_env_reset(ref[i], -1, robs + 4 * i);
                resets++;
                if (!(rew[i] == 0 && !term[i] && !trunc[i])) bad++;
                checked_reset = 1;
            } else {
                dl_env_step(ref[i], actions[i], robs + 4 * i, &r, &te, &tr);
            }
            ended[i] = te || tr;
            if (memcmp(obs + 4 * i, robs + 4 * i, sizeof(float) * 4) != 0 || rew[i] != r || term[i] != te || trunc[i] != tr) bad++;
        }
    }
    CHECK(test_mallocs == before, "%ld allocations in vec reset/step", test_mallocs - before);
    printf("    vec env: 4 CartPoles, 400 steps, %d autoresets\n", resets);
    CHECK(bad == 0 && checked_reset && resets > 10, "%d mismatches, %d resets", bad, resets);
    actions[1] = 5;
    CHECK(dl_vec_env_step(v, actions, obs, rew, term, trunc) == -1 && strstr(dl_error(), "action"), "bad action: %s", dl_error());
    dl_vec_env_free(v);
    for (i = 0; i < N; i++) dl_env_free(ref[i]);
    {   /* different spaces: refused, the envs stay the caller's */
        dl_env *mixed[2];
        mixed[0] = dl_env_cartpole(), mixed[1] = dl_env_mountaincar();
        CHECK(dl_vec_env_new(2, mixed) == NULL && strstr(dl_error(), "differ"), "mixed spaces: %s", dl_error());
        CHECK(dl_vec_env_new(0, mixed) == NULL, "no envs");
        dl_env_free(mixed[0]), dl_env_free(mixed[1]);
    }
    {   /* Breakout's [4, 10, 10] observations; stepping before reset fails */
        dl_env *b[2];
        float bobs[800];
        int acts[2] = {0, 2};
        b[0] = dl_env_breakout(0), b[1] = dl_env_breakout(0);
        v = dl_vec_env_new(2, b);
        CHECK(v != NULL && v->obs_size == 400, "%s", dl_error());
        CHECK(dl_vec_env_step(v, acts, bobs, NULL, NULL, NULL) == -1 && strstr(dl_error(), "reset"), "%s", dl_error());
        CHECK(dl_vec_env_reset(v, -1, bobs) == 0 && dl_vec_env_step(v, acts, bobs, NULL, NULL, NULL) == 0, "%s", dl_error());
        CHECK(bobs[94] == 1 && bobs[400 + 95] == 1, "paddles");
        dl_vec_env_free(v);
    }
    CHECK(test_live == 0, "%ld blocks leaked", test_live);
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
    RUN(test_td_default_options);
    RUN(test_elapsed_saturates);
    RUN(test_gridworld_mc);
    RUN(test_custom_mdp);
    RUN(test_gridworld_env);
    RUN(test_breakout_minatar_parity);
    RUN(test_breakout_rules);
    RUN(test_breakout_reset_and_random_play);
    RUN(test_breakout_sticky);
    RUN(test_render);
    RUN(test_render_files);
    RUN(test_vec_env);
    dl_arena_free_default();
    return test_summary();
}
