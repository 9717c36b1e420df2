/* tests/test_rl_dqn.c - dl_rl.h's replay buffer and DQN agent: buffer and target-update
   mechanics, the epsilon schedule, acting (greedy, masks, batches), one gradient step against
   PyTorch's (tests/data/rl_dqn_update.txt from tools/make_dqn_fixture.py), no allocation in
   act and in steady-state training steps, save/load of the policy and of the whole training
   state (resumed runs continue with the same bits), hostile files, and a short CartPole run
   that must learn. */
#include "count_alloc.h"
#define DL_IMPLEMENTATION
#include "dl_rl.h"
#include "test.h"

#include <limits.h>
#include <stdlib.h>

static dl_model *mlp(int hidden, int actions) {
    return dl_sequential(dl_Dense(hidden, DL_ACT_RELU), dl_Dense(actions, DL_ACT_LINEAR));
}

static dl_space box1(int n) {
    dl_space s;
    memset(&s, 0, sizeof s);
    s.kind = DL_SPACE_BOX; s.n = n; s.ndim = 1; s.shape[0] = n;
    return s;
}

static void test_replay_ring(void) {
    dl_replay *r = dl_replay_new(3, 2, 0);
    float o[2], n[2], go[2], gn[2], rw;
    int i, a, t, idx[1000], seen[3] = {0};
    dl_rng rng;
    CHECK(r != NULL, "%s", dl_error());
    if (!r) return;
    CHECK(dl_replay_sample(r, &rng, 1, idx) == -1, "sampling an empty buffer must fail");
    for (i = 0; i < 5; i++) {   /* 5 into 3 slots: 0 1 2, then 3 and 4 replace 0 and 1 */
        o[0] = (float)i; o[1] = -(float)i; n[0] = (float)i + 0.5f; n[1] = 0;
        CHECK(dl_replay_add(r, o, i % 2, 10.0 * i, n, i == 4) == 0, "%s", dl_error());
    }
    CHECK(r->size == 3 && r->pos == 2, "size %d pos %d", r->size, r->pos);
    CHECK(dl_replay_get(r, 0, go, &a, &rw, gn, &t) == 0 && go[0] == 3 && go[1] == -3 && gn[0] == 3.5f && a == 1 && rw == 30 && t == 0,
          "slot 0 holds transition 3: %g %g %g %d %g %d", go[0], go[1], gn[0], a, rw, t);
    CHECK(dl_replay_get(r, 1, go, &a, &rw, gn, &t) == 0 && go[0] == 4 && t == 1, "slot 1 holds transition 4");
    CHECK(dl_replay_get(r, 2, go, NULL, NULL, NULL, NULL) == 0 && go[0] == 2, "slot 2 still holds transition 2");
    CHECK(dl_replay_get(r, 3, go, NULL, NULL, NULL, NULL) == -1, "slot 3 does not exist");
    dl_rng_seed(&rng, 7);
    CHECK(dl_replay_sample(r, &rng, 1000, idx) == 0, "%s", dl_error());
    for (i = 0; i < 1000; i++) if (idx[i] >= 0 && idx[i] < 3) seen[idx[i]]++;
    CHECK(seen[0] + seen[1] + seen[2] == 1000, "indices outside [0, 3)");
    for (i = 0; i < 3; i++) CHECK(seen[i] > 270 && seen[i] < 400, "slot %d drawn %d of 1000 times", i, seen[i]);
    dl_replay_free(r);

    /* byte storage: integers 0..255 round-trip, anything else is refused */
    r = dl_replay_new(2, 3, 1);
    {
        float ok[3] = {0, 1, 255}, bad[3] = {0, 0.5f, 1}, neg[3] = {-1, 0, 0}, back[3];
        CHECK(dl_replay_add(r, ok, 0, 1, ok, 0) == 0, "%s", dl_error());
        CHECK(dl_replay_get(r, 0, back, NULL, NULL, NULL, NULL) == 0 && memcmp(back, ok, sizeof ok) == 0, "bytes round-trip");
        CHECK(dl_replay_add(r, bad, 0, 1, ok, 0) == -1 && strstr(dl_error(), "0..255"), "0.5 refused: %s", dl_error());
        CHECK(dl_replay_add(r, ok, 0, 1, neg, 0) == -1, "-1 refused");
        CHECK(r->size == 1, "refused transitions are not stored (size %d)", r->size);
    }
    dl_replay_free(r);
    CHECK(dl_replay_new(0, 3, 0) == NULL && dl_replay_new(3, 0, 0) == NULL, "bad sizes refused");
}

static dl_dqn *small_agent(const dl_dqn_opts *o, int obs, int actions, uint64_t seed) {
    dl_space sp = box1(obs);
    dl_nn_seed(seed);
    return dl_dqn_new(mlp(16, actions), NULL, dl_adam(1e-3), &sp, actions, o);
}

static void test_epsilon_schedule(void) {
    dl_dqn_opts o = {0};   /* 0s: the defaults */
    dl_dqn *a;
    o.total_steps = 1000; o.eps_start = 1; o.eps_end = 0.05; o.eps_fraction = 0.5;
    o.learning_starts = 1000000;   /* no updates */
    a = small_agent(&o, 2, 2, 1);
    CHECK(a != NULL, "%s", dl_error());
    if (!a) return;
    CHECK_NEAR(dl_dqn_epsilon(a), 1.0, 1e-12);
    a->step = 250; CHECK_NEAR(dl_dqn_epsilon(a), 1 + (0.05 - 1) * 250 / 500.0, 1e-12);
    a->step = 500; CHECK_NEAR(dl_dqn_epsilon(a), 0.05, 1e-12);
    a->step = 900; CHECK_NEAR(dl_dqn_epsilon(a), 0.05, 1e-12);
    {   /* at epsilon 1 every action is drawn about equally often; a mask is respected */
        float obs[2] = {0.1f, 0.2f};
        unsigned char mask[2] = {0, 1};
        int i, count = 0;
        a->step = 0;
        for (i = 0; i < 2000; i++) count += dl_dqn_explore(a, obs, NULL) == 1;
        CHECK(count > 900 && count < 1100, "action 1 chosen %d of 2000 times at epsilon 1", count);
        for (i = 0; i < 200; i++) CHECK(dl_dqn_explore(a, obs, mask) == 1, "masked action chosen");
        mask[1] = 0;
        CHECK(dl_dqn_explore(a, obs, mask) == -1, "all masked must fail");
    }
    dl_dqn_free(a);
}

static void test_act(void) {
    dl_dqn_opts o = {0};   /* 0s: the defaults */
    dl_dqn *a = small_agent(&o, 3, 4, 2);
    float obs[6] = {0.3f, -0.2f, 0.9f, -1.0f, 0.5f, 0.25f}, q[8];
    unsigned char mask[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    int acts[2], i, best, second;
    long before;
    CHECK(a != NULL, "%s", dl_error());
    if (!a) return;
    CHECK(dl_dqn_q_values(a, 2, obs, q) == 0, "%s", dl_error());
    CHECK(dl_dqn_act_batch(a, 2, obs, NULL, acts) == 0, "%s", dl_error());
    for (i = 0; i < 2; i++) {
        int k;
        best = 0;
        for (k = 1; k < 4; k++) if (q[i * 4 + k] > q[i * 4 + best]) best = k;
        CHECK(acts[i] == best, "observation %d: greedy action %d, argmax %d", i, acts[i], best);
        CHECK(dl_dqn_act(a, obs + 3 * i, NULL) == best, "single act equals the batch one");
    }
    /* masking the best action gives the second best */
    best = acts[0];
    second = best == 0 ? 1 : 0;
    for (i = 0; i < 4; i++) if (i != best && q[i] > q[second]) second = i;
    mask[best] = 0;
    CHECK(dl_dqn_act(a, obs, mask) == second, "masked: %d, expected %d", dl_dqn_act(a, obs, mask), second);
    memset(mask, 0, 4);
    CHECK(dl_dqn_act(a, obs, mask) == -1 && strstr(dl_error(), "masked"), "all masked: %s", dl_error());
    /* acting allocates nothing, and gives the same answer every time */
    before = test_mallocs;
    for (i = 0; i < 100; i++) CHECK(dl_dqn_act(a, obs + 3, NULL) == acts[1], "deterministic");
    CHECK(dl_dqn_act_batch(a, 2, obs, NULL, acts) == 0, "%s", dl_error());
    CHECK(test_mallocs == before, "%ld allocations while acting", test_mallocs - before);
    dl_dqn_free(a);
}

static void test_target_updates(void) {
    dl_dqn_opts o = {0};   /* 0s: the defaults */
    dl_dqn *a;
    int i;
    size_t j;
    o.tau = 0.25;
    a = small_agent(&o, 3, 2, 3);
    CHECK(a != NULL, "%s", dl_error());
    if (!a) return;
    /* a fresh agent's target equals the online network even with tau < 1 */
    for (i = 0; i < a->n_weights; i++)
        CHECK(memcmp(dl_f32(a->w_online[i]), dl_f32(a->w_target[i]), sizeof(float) * (size_t)a->w_online[i]->numel) == 0, "weight %d differs at start", i);
    for (i = 0; i < a->n_weights; i++) {   /* online = 1, target = 0: soft update gives tau */
        for (j = 0; j < (size_t)a->w_online[i]->numel; j++) { dl_f32(a->w_online[i])[j] = 1; dl_f32(a->w_target[i])[j] = 0; }
    }
    dl_dqn_update_target(a);
    for (i = 0; i < a->n_weights; i++) CHECK(dl_f32(a->w_target[i])[0] == 0.25f, "soft update: %g", (double)dl_f32(a->w_target[i])[0]);
    dl_dqn_update_target(a);   /* 0.25 + 0.75 * 0.25 */
    CHECK_NEAR(dl_f32(a->w_target[0])[0], 0.4375, 1e-7);
    dl_dqn_free(a);

    /* hard updates happen every target_update_freq steps after learning_starts, and only then */
    memset(&o, 0, sizeof o);
    o.learning_starts = 20; o.train_freq = 1000000; o.target_update_freq = 7;   /* no gradient steps */
    a = small_agent(&o, 2, 2, 4);
    {
        float s[2] = {0.5f, 0.5f}, expect = dl_f32(a->w_target[0])[0];
        long t;
        for (t = 0; t < 40; t++) {
            dl_f32(a->w_online[0])[0] = (float)t;   /* the online weight records the step */
            CHECK(dl_dqn_observe(a, s, 0, 1.0, s, 0) == 0, "%s", dl_error());
            if (t > 20 && t % 7 == 0) expect = (float)t;   /* CleanRL: global_step > learning_starts */
            CHECK(dl_f32(a->w_target[0])[0] == expect, "step %ld: target weight %g, expected %g", t,
                  (double)dl_f32(a->w_target[0])[0], (double)expect);
        }
        CHECK(dl_f32(a->w_target[0])[0] == 35.0f, "last copy at step 35: %g", (double)dl_f32(a->w_target[0])[0]);
        CHECK(dl_dqn_updates(a) == 0, "no gradient steps expected");
    }
    dl_dqn_free(a);
}

/* The weights of tools/make_dqn_fixture.py. */
static void fixture_weights(dl_tensor *const *w, float scale, float phase) {
    int i, j;
    for (i = 0; i < 4; i++) for (j = 0; j < 8; j++) dl_f32(w[0])[i * 8 + j] = (float)(scale * sin(0.7 * i + 1.3 * j + phase));
    for (j = 0; j < 8; j++) dl_f32(w[1])[j] = (float)(0.05 * cos(j + phase));
    for (i = 0; i < 8; i++) for (j = 0; j < 3; j++) dl_f32(w[2])[i * 3 + j] = (float)(scale * cos(0.9 * i - 0.4 * j + phase));
    for (j = 0; j < 3; j++) dl_f32(w[3])[j] = (float)(0.1 * sin(2.0 * j + phase));
}

static void test_update_matches_pytorch(void) {
    FILE *f = fopen("tests/data/rl_dqn_update.txt", "r");
    char kind[16];
    int dbl, c, b, k, i, sizes[4] = {32, 8, 24, 3};
    double clip, want_loss;
    CHECK(f != NULL, "tests/data/rl_dqn_update.txt missing");
    if (!f) return;
    for (c = 0; c < 4; c++) {
        dl_dqn_opts o = {0};   /* 0s: the defaults */
        dl_space sp = box1(4);
        dl_dqn *a;
        double loss = -1;
        float obs[4], nxt[4];
        if (fscanf(f, " case %15s %d %lf loss %lf", kind, &dbl, &clip, &want_loss) != 4) { CHECK(0, "bad fixture (case %d)", c); break; }
        o.batch_size = 6; o.gamma = 0.9; o.double_dqn = dbl; o.max_grad_norm = clip;
        o.loss = strcmp(kind, "huber") == 0 ? DL_DQN_LOSS_HUBER : DL_DQN_LOSS_MSE;
        a = dl_dqn_new(dl_sequential(dl_Dense(8, DL_ACT_RELU), dl_Dense(3, DL_ACT_LINEAR)), NULL, dl_adam(0.01), &sp, 3, &o);
        CHECK(a != NULL, "%s", dl_error());
        if (!a) break;
        fixture_weights(a->w_online, 0.4f, 0.0f);
        fixture_weights(a->w_target, 0.3f, 0.5f);
        for (b = 0; b < 6; b++) {
            for (k = 0; k < 4; k++) { obs[k] = (float)sin(1.1 * b + 0.3 * k); nxt[k] = (float)cos(0.8 * b - 0.5 * k); }
            dl_replay_add(a->replay, obs, b % 3, 0.5 * b - 1.0, nxt, b % 4 == 3);
            a->batch_idx[b] = b;
        }
        CHECK(dl__dqn_learn_batch(a, &loss) == 0, "%s", dl_error());
        CHECK_NEAR(loss, want_loss, 1e-5);
        for (i = 0; i < 4; i++) {
            float want[32];
            for (k = 0; k < sizes[i]; k++) if (fscanf(f, "%f", &want[k]) != 1) want[k] = NAN;
            CHECK_ALL_NEAR(dl_f32(a->w_online[i]), want, sizes[i], 2e-5);
        }
        dl_dqn_free(a);
    }
    fclose(f);
}

/* A CartPole agent with quick settings, to test the training loop. */
static dl_dqn *cartpole_agent(uint64_t seed, long total) {
    dl_dqn_opts o = {0};   /* 0s: the defaults */
    dl_space sp = box1(4);
    o.total_steps = total; o.seed = seed; o.learning_starts = 500; o.buffer_size = 5000; o.batch_size = 32;
    o.train_freq = 4; o.target_update_freq = 100; o.max_grad_norm = 10;
    dl_nn_seed(seed);   /* seeds 1-8 all reach a mean of 100-300 over the last 20 episodes */
    return dl_dqn_new(dl_sequential(dl_Dense(32, DL_ACT_RELU), dl_Dense(32, DL_ACT_RELU), dl_Dense(2, DL_ACT_LINEAR)), NULL, dl_adam(1e-3), &sp, 2, &o);
}

static void test_no_alloc_while_training(void) {
    dl_env *env = dl_env_cartpole();
    dl_dqn *a = cartpole_agent(5, 5000);
    long before;
    CHECK(a && env, "%s", dl_error());
    if (!a || !env) { dl_dqn_free(a); dl_env_free(env); return; }
    CHECK(dl_dqn_learn(a, env, 1000, NULL, NULL) >= 0, "%s", dl_error());   /* past learning_starts */
    CHECK(dl_dqn_updates(a) > 0, "updates ran");
    before = test_mallocs;
    CHECK(dl_dqn_learn(a, env, 1000, NULL, NULL) >= 0, "%s", dl_error());
    CHECK(test_mallocs == before, "%ld allocations in 1000 training steps", test_mallocs - before);
    dl_dqn_free(a);
    dl_env_free(env);
}

static void test_save_resume(void) {
    const char *path = "build/tests/dqn_state.safetensors", *pol = "build/tests/dqn_policy.safetensors";
    dl_env *e1 = dl_env_cartpole(), *e2 = dl_env_cartpole();
    dl_dqn *a = cartpole_agent(6, 4000), *b = NULL, *p = NULL;
    double s1[4], s2[4];
    int i;
    long live;
    CHECK(a && e1 && e2, "%s", dl_error());
    if (!a || !e1 || !e2) goto done;
    CHECK(dl_dqn_learn(a, e1, 1777, NULL, NULL) >= 0, "%s", dl_error());   /* mid-episode */
    CHECK(dl_dqn_save(a, path, e1) == 0, "%s", dl_error());
    CHECK(dl_dqn_learn(a, e1, 1500, NULL, NULL) >= 0, "%s", dl_error());
    b = dl_dqn_load(path, e2);
    CHECK(b != NULL, "%s", dl_error());
    if (!b) goto done;
    CHECK(dl_dqn_steps(b) == 1777, "steps %ld", dl_dqn_steps(b));
    CHECK(dl_dqn_learn(b, e2, 1500, NULL, NULL) >= 0, "%s", dl_error());
    CHECK(dl_dqn_steps(a) == dl_dqn_steps(b) && dl_dqn_episodes(a) == dl_dqn_episodes(b) && dl_dqn_updates(a) == dl_dqn_updates(b),
          "counters differ: %ld/%ld %ld/%ld %ld/%ld", dl_dqn_steps(a), dl_dqn_steps(b), dl_dqn_episodes(a), dl_dqn_episodes(b),
          dl_dqn_updates(a), dl_dqn_updates(b));
    for (i = 0; i < a->n_weights; i++) {
        size_t n = sizeof(float) * (size_t)a->w_online[i]->numel;
        CHECK(memcmp(dl_f32(a->w_online[i]), dl_f32(b->w_online[i]), n) == 0, "online weight %d differs after resuming", i);
        CHECK(memcmp(dl_f32(a->w_target[i]), dl_f32(b->w_target[i]), n) == 0, "target weight %d differs after resuming", i);
    }
    CHECK(dl_dqn_mean_return(a, 100) == dl_dqn_mean_return(b, 100), "returns differ");
    dl_env_state(e1, s1);
    dl_env_state(e2, s2);
    CHECK(memcmp(s1, s2, sizeof s1) == 0 && e1->elapsed == e2->elapsed, "environment states differ");
    CHECK(memcmp(a->rng.s, b->rng.s, sizeof a->rng.s) == 0, "generators differ");

    /* the policy alone: same greedy actions, act-only */
    CHECK(dl_dqn_save_policy(a, pol) == 0, "%s", dl_error());
    p = dl_dqn_load_policy(pol);
    CHECK(p != NULL, "%s", dl_error());
    if (p) {
        float obs[4];
        int same = 1, k;
        dl_rng r;
        dl_rng_seed(&r, 3);
        for (i = 0; i < 200; i++) {
            for (k = 0; k < 4; k++) obs[k] = dl_rng_normal(&r);
            same &= dl_dqn_act(a, obs, NULL) == dl_dqn_act(p, obs, NULL);
        }
        CHECK(same, "a loaded policy acts like the agent");
        CHECK(dl_dqn_update(p, NULL) == -1 && strstr(dl_error(), "only act"), "an act-only agent cannot train: %s", dl_error());
        CHECK(dl_dqn_save(p, path, NULL) == -1, "an act-only agent has no training state");
        CHECK(dl_dqn_load(pol, NULL) == NULL && strstr(dl_error(), "not a DQN"), "a policy is not a training state: %s", dl_error());
    }
    /* a state saved with CartPole does not load into another environment */
    {
        dl_env *mc = dl_env_mountaincar();
        live = test_live;
        CHECK(dl_dqn_load(path, mc) == NULL && strstr(dl_error(), "environment"), "wrong env: %s", dl_error());
        CHECK(test_live == live, "failed load leaks %ld blocks", test_live - live);
        dl_env_free(mc);
    }
done:
    dl_dqn_free(a); dl_dqn_free(b); dl_dqn_free(p);
    dl_env_free(e1); dl_env_free(e2);
}

/* Every truncation and many byte flips of a saved state must load or fail cleanly. */
static void test_hostile_state_files(void) {
    const char *path = "build/tests/dqn_state.safetensors", *bad = "build/tests/dqn_bad.safetensors";
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n, i, cut;
    dl_rng r;
    CHECK(f != NULL, "needs the file of test_save_resume");
    if (!f) return;
    fseek(f, 0, SEEK_END); n = ftell(f); fseek(f, 0, SEEK_SET);
    buf = (unsigned char *)malloc((size_t)n);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(buf); CHECK(0, "read"); return; }
    fclose(f);
    dl_rng_seed(&r, 11);
    for (i = 0; i < 60; i++) {
        long live = test_live;
        dl_dqn *a;
        FILE *g = fopen(bad, "wb");
        if (!g) break;
        if (i < 30) { cut = (long)dl_rng_int(&r, (int)n); fwrite(buf, 1, (size_t)cut, g); }
        else {
            long at = (long)dl_rng_int(&r, (int)(n < 4096 ? n : 4096));   /* the header and metadata */
            unsigned char keep = buf[at];
            buf[at] = (unsigned char)dl_rng_int(&r, 256);
            fwrite(buf, 1, (size_t)n, g);
            buf[at] = keep;
        }
        fclose(g);
        a = dl_dqn_load(bad, NULL);
        dl_dqn_free(a);
        CHECK(test_live == live, "case %ld leaks %ld blocks", i, test_live - live);
    }
    free(buf);
    remove(bad);
}

/* The saved state st written to path with tensor tname replaced by swap (NULL: left out), and
   metadata key mkey given the value mval (NULL: left out). 0 or -1. */
static int write_variant(const dl_safetensors *st, const char *path, const char *tname, dl_tensor *swap,
                         const char *mkey, const char *mval) {
    const char *names[16], *keys[16], *vals[16];
    dl_tensor *ts[16];
    int n = 0, nm = 0, i;
    for (i = 0; i < dl_safetensors_num_tensors(st) && n < 16; i++) {
        const char *name = dl_safetensors_name(st, i);
        int hit = tname && strcmp(name, tname) == 0;
        if (hit && !swap) continue;
        names[n] = name, ts[n++] = hit ? swap : dl_safetensors_get(st, name);
    }
    for (i = 0; i < dl_safetensors_num_meta(st) && nm < 16; i++) {
        const char *k = dl_safetensors_meta_key(st, i);
        int hit = mkey && strcmp(k, mkey) == 0;
        if (hit && !mval) continue;
        keys[nm] = k, vals[nm++] = hit ? mval : dl_safetensors_meta(st, k);
    }
    return dl_safetensors_save(path, n, names, ts, nm, keys, vals);
}

/* value with its space-separated token number `tok` replaced by rep (NULL when there is none),
   in a static buffer (value must not be in it) */
static char *replace_token(const char *value, int tok, const char *rep) {
    static char out[8192];
    const char *p = value, *start, *end;
    int t = 0;
    while (*p == ' ') p++;
    for (; *p && t < tok; t++) {
        while (*p && *p != ' ') p++;
        while (*p == ' ') p++;
    }
    if (!*p) return NULL;
    start = p;
    end = start;
    while (*end && *end != ' ') end++;
    if (strlen(value) + strlen(rep) >= sizeof out) return NULL;
    memcpy(out, value, (size_t)(start - value));
    strcpy(out + (start - value), rep);
    strcat(out, end);
    return out;
}

/* The value's token number tok replaced by rep must not load, and a failing load changes
   neither env (every byte of the struct compared to *before) nor leaks. Returns 1 if so. */
static int fails_cleanly(const char *bad, dl_env *env, const dl_env *before) {
    long live = test_live;
    dl_dqn *b = dl_dqn_load(bad, env);
    int ok = b == NULL && dl_error()[0] && memcmp(env, before, sizeof *env) == 0 && test_live == live;
    dl_dqn_free(b);
    return ok;
}

/* dl_dqn_load reads and checks everything before it makes or writes anything: for every tensor
   (left out, one element short, another dtype) and every token of every metadata value (made
   "x"), the load fails, the env given keeps every bit, the saving agent is untouched, nothing
   leaks. Before, the env's state was written while its text was read, so a bad last value left
   it half written. Then the numbers: overflowing ints (buffer_size 2^32 + 5000 read as 5000
   before), counters past LONG_MAX, infinite doubles are refused. */
static void test_load_checks_before_writing(void) {
    const char *path = "build/tests/dqn_state2.safetensors", *bad = "build/tests/dqn_bad2.safetensors";
    dl_env *e1 = dl_env_cartpole(), *e2 = dl_env_cartpole(), before;
    dl_dqn *a = cartpole_agent(7, 4000), *b;
    dl_safetensors *st = NULL;
    float w0;
    uint64_t rng0[4];
    long step0;
    int i, k, failed_t = 0, total_t = 0, failed_m = 0, total_m = 0;
    double r;
    int term, trunc;
    CHECK(a && e1 && e2, "%s", dl_error());
    if (!a || !e1 || !e2) goto done;
    CHECK(dl_dqn_learn(a, e1, 700, NULL, NULL) >= 0, "%s", dl_error());
    CHECK(dl_dqn_save(a, path, e1) == 0, "%s", dl_error());
    st = dl_safetensors_load(path);
    CHECK(st != NULL, "%s", dl_error());
    if (!st) goto done;
    dl_env_reset(e2, 99, NULL);
    for (i = 0; i < 5; i++) dl_env_step(e2, i % 2, NULL, &r, &term, &trunc);
    before = *e2;
    w0 = dl_f32(a->w_online[0])[0], step0 = dl_dqn_steps(a);
    memcpy(rng0, a->rng.s, sizeof rng0);
    /* the file rewritten as is loads (so the variants below differ only where changed) */
    CHECK(write_variant(st, bad, NULL, NULL, NULL, NULL) == 0, "%s", dl_error());
    b = dl_dqn_load(bad, e2);
    CHECK(b != NULL && memcmp(e2->state, e1->state, sizeof e1->state) == 0, "the rewritten file loads: %s", dl_error());
    dl_dqn_free(b);
    *e2 = before;
    for (i = 0; i < dl_safetensors_num_tensors(st); i++) {
        const char *name = dl_safetensors_name(st, i);
        dl_tensor *t = dl_safetensors_get(st, name), *v;
        int n = (int)t->numel - 1;
        for (k = 0; k < 3; k++) {
            v = NULL;
            if (k == 1) v = dl_tensor_from(t->dtype, 1, &n, t->data);
            if (k == 2) { n = (int)t->numel; v = dl_tensor_new(t->dtype == DL_DTYPE_F32 ? DL_DTYPE_I32 : DL_DTYPE_F32, 1, &n); n--; }
            CHECK(write_variant(st, bad, name, v, NULL, NULL) == 0, "%s", dl_error());
            total_t++;
            if (fails_cleanly(bad, e2, &before)) failed_t++;
            else CHECK(0, "tensor %s, variant %d: loads or changes the env (%s)", name, k, dl_error());
            dl_tensor_free(v);
        }
    }
    for (i = 0; i < dl_safetensors_num_meta(st); i++) {
        const char *key = dl_safetensors_meta_key(st, i), *val = dl_safetensors_meta(st, key);
        char *changed;
        CHECK(write_variant(st, bad, NULL, NULL, key, NULL) == 0 && fails_cleanly(bad, e2, &before), "without %s", key);
        for (k = 0; (changed = replace_token(val, k, "x")) != NULL; k++) {
            CHECK(write_variant(st, bad, NULL, NULL, key, changed) == 0, "%s", dl_error());
            total_m++;
            if (fails_cleanly(bad, e2, &before)) failed_m++;
            else CHECK(0, "%s, token %d: loads or changes the env (%s)", key, k, dl_error());
        }
    }
    printf("    %d tensor variants and %d metadata tokens: %d and %d refused cleanly\n", total_t, total_m, failed_t, failed_m);
    CHECK(total_m > 150, "only %d metadata tokens", total_m);
    CHECK(dl_f32(a->w_online[0])[0] == w0 && dl_dqn_steps(a) == step0 && memcmp(rng0, a->rng.s, sizeof rng0) == 0, "the agent changed");
    {   /* numbers that overflow or are not finite */
        static const struct { const char *key; int tok; const char *value; } cases[] = {
            {"dl.dqn.opts", 3, "4294972296"},            /* buffer_size 2^32 + 5000 (%d: 5000) */
            {"dl.dqn.opts", 7, "-4294967295"},           /* batch_size (%d: 1) */
            {"dl.dqn.opts", 1, "9223372036854775808"},   /* total_steps LONG_MAX + 1 */
            {"dl.dqn.opts", 17, "inf"},                  /* tau */
            {"dl.dqn.opts", 19, "nan"},                  /* gamma */
            {"dl.dqn.opts", 35, "18446744073709551616"}, /* seed 2^64 */
            {"dl.dqn.counters", 9, "9223372036854775808"},   /* step */
            {"dl.dqn.counters", 9, "1e3"},                   /* step, not an integer */
            {"dl.dqn.counters", 13, "99999999999999999999"}, /* episodes */
            {"dl.dqn.counters", 17, "0x1p+1024"},            /* ep_return: inf */
            {"dl.dqn.counters", 19, "4294967356"},           /* replay_pos (%d: 60) */
            {"dl.dqn.rng", 0, "18446744073709551616"},
            {"dl.dqn.returns", 5, "-inf"},
        };
        for (i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
            char *changed = replace_token(dl_safetensors_meta(st, cases[i].key), cases[i].tok, cases[i].value);
            CHECK(changed != NULL, "case %d", i);
            if (!changed) continue;
            CHECK(write_variant(st, bad, NULL, NULL, cases[i].key, changed) == 0 && fails_cleanly(bad, e2, &before),
                  "%s token %d = %s loads", cases[i].key, cases[i].tok, cases[i].value);
        }
        /* the env's: elapsed past INT_MAX, and the all-zero generator */
        {
            const char *ev = dl_safetensors_meta(st, "dl.dqn.env");
            char fixed[1024], *bar;
            snprintf(fixed, sizeof fixed, "%s", ev);
            bar = strchr(fixed, '|');
            if (bar) {
                char tail[1024];
                const char *rest = strchr(bar, ' ');
                snprintf(tail, sizeof tail, "%s", rest ? rest : "");
                snprintf(bar + 1, sizeof fixed - (size_t)(bar + 1 - fixed), "2147483648%s", tail);
                CHECK(write_variant(st, bad, NULL, NULL, "dl.dqn.env", fixed) == 0 && fails_cleanly(bad, e2, &before), "elapsed 2^31 loads");
            }
        }
    }
done:
    dl_safetensors_free(st);
    dl_dqn_free(a);
    dl_env_free(e1); dl_env_free(e2);
    remove(bad);
}

/* A state file that declares a 2-billion-slot replay buffer and batch (2 x 32 GB of
   observations, asked for before anything was checked) loads with only the slots its own
   tensors fill; the buffer grows as training fills it. Counters loaded at LONG_MAX saturate
   instead of overflowing (UBSan). A tabular env's saved state must be one of its states. */
static void test_load_hostile_sizes(void) {
    const char *path = "build/tests/dqn_state2.safetensors", *bad = "build/tests/dqn_bad3.safetensors";
    dl_safetensors *st = dl_safetensors_load(path);
    char *changed, tmp[8192];
    dl_dqn *b;
    float s[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    int i;
    CHECK(st != NULL, "needs the file of test_load_checks_before_writing: %s", dl_error());
    if (!st) return;
    changed = replace_token(dl_safetensors_meta(st, "dl.dqn.opts"), 3, "2000000000");      /* buffer_size */
    if (changed) snprintf(tmp, sizeof tmp, "%s", changed);
    changed = changed ? replace_token(tmp, 7, "2000000000") : NULL;                          /* batch_size */
    if (changed) snprintf(tmp, sizeof tmp, "%s", changed);
    changed = changed ? replace_token(tmp, 9, "1000000") : NULL;   /* learning_starts: no update in this test */
    CHECK(changed && write_variant(st, bad, NULL, NULL, "dl.dqn.opts", changed) == 0, "%s", dl_error());
    b = dl_dqn_load(bad, NULL);
    CHECK(b != NULL, "%s", dl_error());
    if (b) {
        int size = b->replay->size;
        CHECK(b->replay->capacity == 2000000000 && size == 700 && b->replay->alloc_ == size && b->batch_idx == NULL,
              "capacity %d, %d stored, %d slots allocated, batch indices %p", b->replay->capacity, size, b->replay->alloc_, (void *)b->batch_idx);
        CHECK(dl_dqn_observe(b, s, 1, 1.0, s, 0) == 0 || strstr(dl_error(), "out of memory"), "%s", dl_error());
        CHECK(b->replay->alloc_ == 1400 && b->replay->size == 701, "the buffer doubled to %d slots, %d stored", b->replay->alloc_, b->replay->size);
        dl_dqn_free(b);
    }
    /* step and updates at LONG_MAX: the next step saturates */
    changed = replace_token(dl_safetensors_meta(st, "dl.dqn.counters"), 9, "9223372036854775807");
    if (changed) snprintf(tmp, sizeof tmp, "%s", changed);
    changed = changed ? replace_token(tmp, 11, "9223372036854775807") : NULL;
    CHECK(changed && write_variant(st, bad, NULL, NULL, "dl.dqn.counters", changed) == 0, "%s", dl_error());
    b = dl_dqn_load(bad, NULL);
    CHECK(b != NULL, "%s", dl_error());
    if (b) {
        for (i = 0; i < 3; i++) CHECK(dl_dqn_observe(b, s, 0, 1.0, s, 0) == 0, "%s", dl_error());
        CHECK(dl_dqn_steps(b) == LONG_MAX && dl_dqn_updates(b) == LONG_MAX, "counters %ld %ld", dl_dqn_steps(b), dl_dqn_updates(b));
        dl_dqn_free(b);
    }
    dl_safetensors_free(st);
    {   /* FrozenLake's state is an index: 1.5 or 2^70 are not states */
        dl_env *fl = dl_env_frozenlake(4, 0), *fl2 = dl_env_frozenlake(4, 0), before;
        dl_dqn_opts o;
        dl_dqn *a;
        const char *v;
        memset(&o, 0, sizeof o);
        o.total_steps = 100; o.learning_starts = 50; o.batch_size = 8; o.buffer_size = 100;
        a = small_agent(&o, 1, 4, 3);
        CHECK(a && fl && fl2 && dl_dqn_learn(a, fl, 40, NULL, NULL) >= 0 && dl_dqn_save(a, path, fl) == 0, "%s", dl_error());
        st = dl_safetensors_load(path);
        dl_env_reset(fl2, 5, NULL);
        before = *fl2;
        v = st ? dl_safetensors_meta(st, "dl.dqn.env") : NULL;
        CHECK(v != NULL, "no env saved");
        if (v) {
            int last = 0;
            while (replace_token(v, last + 1, "0")) last++;
            CHECK(write_variant(st, bad, NULL, NULL, "dl.dqn.env", replace_token(v, last, "0x1.8p+0")) == 0 && fails_cleanly(bad, fl2, &before), "state 1.5 loads");
            CHECK(write_variant(st, bad, NULL, NULL, "dl.dqn.env", replace_token(v, last, "0x1p+70")) == 0 && fails_cleanly(bad, fl2, &before), "state 2^70 loads");
            CHECK(write_variant(st, bad, NULL, NULL, "dl.dqn.env", replace_token(v, last, "0x1.4p+3")) == 0, "%s", dl_error());
            b = dl_dqn_load(bad, fl2);
            CHECK(b != NULL && fl2->state[0] == 10.0, "state 10 loads: %s", dl_error());
            dl_dqn_free(b);
        }
        dl_safetensors_free(st);
        dl_dqn_free(a);
        dl_env_free(fl); dl_env_free(fl2);
    }
    remove(bad);
    remove(path);
}

static int count_episode(dl_dqn *a, double ret, void *user) {
    (void)a; (void)ret;
    ++*(long *)user;
    return 0;
}

static void test_cartpole_learns(void) {
    dl_env *env = dl_env_cartpole();
    dl_dqn *a = cartpole_agent(1, 30000);
    long episodes = 0, got;
    double before, after;
    CHECK(a && env, "%s", dl_error());
    if (!a || !env) { dl_dqn_free(a); dl_env_free(env); return; }
    got = dl_dqn_learn(a, env, 3000, count_episode, &episodes);
    before = dl_dqn_mean_return(a, 100);   /* mostly random play: ~22 */
    CHECK(got == episodes && got == dl_dqn_episodes(a), "episode counts %ld %ld %ld", got, episodes, dl_dqn_episodes(a));
    CHECK(dl_dqn_learn(a, env, 27000, NULL, NULL) >= 0, "%s", dl_error());
    after = dl_dqn_mean_return(a, 20);
    printf("    CartPole, 30000 steps: mean return %.1f early, %.1f over the last 20 episodes\n", before, after);
    CHECK(before < 40, "random play returns ~22, got %.1f", before);
    CHECK(after > 60, "after 30000 steps the agent should balance for > 60 steps (random: ~22), got %.1f", after);
    dl_dqn_free(a);
    dl_env_free(env);
}

/* A zero struct and NULL give CleanRL's settings, as documented (before, a zero struct meant
   gamma 0, epsilon 0, no buffer: an error); DL_ZERO gives a real 0, which a saved and
   loaded state keeps (not turned back into the default); other negatives are errors. */
static void test_default_options(void) {
    const char *path = "build/tests/dqn_zero.safetensors";
    dl_dqn_opts z, got;
    dl_dqn *a, *b;
    dl_space sp = box1(2);
    memset(&z, 0, sizeof z);
    a = small_agent(&z, 2, 2, 1);
    CHECK(a != NULL, "%s", dl_error());
    if (!a) return;
    got = dl_dqn_options(a);
    CHECK(got.total_steps == 500000 && got.buffer_size == 10000 && got.batch_size == 128 && got.learning_starts == 10000 &&
          got.train_freq == 10 && got.gradient_steps == 1 && got.target_update_freq == 500 && got.tau == 1 && got.gamma == 0.99 &&
          got.eps_start == 1 && got.eps_end == 0.05 && got.eps_fraction == 0.5 && got.double_dqn == 0 &&
          got.loss == DL_DQN_LOSS_MSE && got.huber_delta == 1 && got.max_grad_norm == 0 && got.seed == 1 && got.obs_u8 == 0,
          "zero struct: %ld %d %d %ld %d %d %d %g %g %g %g %g %llu", got.total_steps, got.buffer_size, got.batch_size, got.learning_starts,
          got.train_freq, got.gradient_steps, got.target_update_freq, got.tau, got.gamma, got.eps_start, got.eps_end, got.eps_fraction,
          (unsigned long long)got.seed);
    CHECK(a->replay->capacity == 10000 && dl_dqn_epsilon(a) == 1.0, "the defaults are in use");
    dl_dqn_free(a);
    dl_nn_seed(1);
    a = dl_dqn_new(mlp(16, 2), NULL, dl_adam(1e-3), &sp, 2, NULL);
    CHECK(a && memcmp(&got, &a->o, sizeof got) == 0, "NULL options equal a zero struct's");
    dl_dqn_free(a);

    z.gamma = DL_ZERO; z.eps_end = DL_ZERO; z.learning_starts = DL_ZERO; z.seed = DL_ZERO;
    z.gradient_steps = DL_ZERO; z.eps_fraction = DL_ZERO;
    a = small_agent(&z, 2, 2, 1);
    CHECK(a != NULL, "%s", dl_error());
    if (!a) return;
    got = dl_dqn_options(a);
    CHECK(got.gamma == 0 && got.eps_end == 0 && got.learning_starts == 0 && got.seed == 0 && got.gradient_steps == 0 &&
          got.eps_fraction == 0 && got.eps_start == 1, "DL_ZERO: %g %g %ld %llu %d", got.gamma, got.eps_end, got.learning_starts,
          (unsigned long long)got.seed, got.gradient_steps);
    CHECK(dl_dqn_epsilon(a) == 0.0, "eps_fraction 0: epsilon at eps_end 0 from the start (%g)", dl_dqn_epsilon(a));
    CHECK(dl_dqn_save(a, path, NULL) == 0, "%s", dl_error());
    b = dl_dqn_load(path, NULL);
    CHECK(b != NULL, "%s", dl_error());
    if (b) CHECK(memcmp(&a->o, &b->o, sizeof a->o) == 0, "loaded options differ (gamma %g, seed %llu)", b->o.gamma, (unsigned long long)b->o.seed);
    dl_dqn_free(a); dl_dqn_free(b);
    remove(path);
    memset(&z, 0, sizeof z);
    z.gamma = -0.5;
    CHECK(small_agent(&z, 2, 2, 1) == NULL && strstr(dl_error(), "gamma"), "gamma -0.5 is an error: %s", dl_error());
    z.gamma = 0; z.learning_starts = -2;
    CHECK(small_agent(&z, 2, 2, 1) == NULL, "learning_starts -2 is an error");
}

/* dl_dqn_learn's steps and opts.total_steps are one run: calls may split it but not pass it
   (before, steps past total_steps ran silently with the schedule of another run); steps 0 is
   the rest of the run. */
static void test_learn_within_total_steps(void) {
    dl_env *env = dl_env_cartpole();
    dl_dqn_opts o;
    dl_dqn *a;
    memset(&o, 0, sizeof o);
    o.total_steps = 1000; o.learning_starts = 200; o.buffer_size = 1000; o.batch_size = 16;
    a = small_agent(&o, 4, 2, 1);
    CHECK(a && env, "%s", dl_error());
    if (!a || !env) { dl_dqn_free(a); dl_env_free(env); return; }
    CHECK(dl_dqn_learn(a, env, 600, NULL, NULL) >= 0 && dl_dqn_steps(a) == 600, "%s", dl_error());
    CHECK(dl_dqn_learn(a, env, 401, NULL, NULL) == -1 && strstr(dl_error(), "total_steps"), "past the run: %s", dl_error());
    CHECK(dl_dqn_steps(a) == 600, "a refused call runs nothing (%ld steps)", dl_dqn_steps(a));
    CHECK(dl_dqn_learn(a, env, 0, NULL, NULL) >= 0 && dl_dqn_steps(a) == 1000, "0 runs the rest: %ld, %s", dl_dqn_steps(a), dl_error());
    CHECK(dl_dqn_learn(a, env, 0, NULL, NULL) == 0 && dl_dqn_steps(a) == 1000, "nothing left");
    CHECK(dl_dqn_learn(a, env, 1, NULL, NULL) == -1, "one step past the run");
    CHECK(dl_dqn_learn(a, env, -1, NULL, NULL) == -1, "negative steps");
    dl_dqn_free(a);
    dl_env_free(env);
}

static void test_bad_arguments(void) {
    dl_space sp = box1(4);
    dl_dqn_opts o = {0};   /* 0s: the defaults */
    long live = test_live;
    dl_dqn *a;
    o.tau = 1.5;   /* (0 is the default, 1) */
    CHECK(dl_dqn_new(mlp(8, 2), NULL, dl_adam(1e-3), &sp, 2, &o) == NULL && strstr(dl_error(), "tau"), "tau 1.5: %s", dl_error());
    CHECK(dl_dqn_new(mlp(8, 3), NULL, dl_adam(1e-3), &sp, 2, NULL) == NULL && strstr(dl_error(), "[1, 2]"),
          "3 outputs for 2 actions: %s", dl_error());
    CHECK(test_live == live, "failed constructors leak %ld blocks", test_live - live);
    a = dl_dqn_new(mlp(8, 2), NULL, dl_adam(1e-3), &sp, 2, NULL);
    {
        dl_env *mc = dl_env_mountaincar();   /* 2 observations, 3 actions */
        float s[4] = {0};
        CHECK(dl_dqn_learn(a, mc, 10, NULL, NULL) == -1 && strstr(dl_error(), "MountainCar"), "wrong env: %s", dl_error());
        CHECK(dl_dqn_observe(a, s, 2, 0, s, 0) == -1, "action out of range");
        CHECK(dl_dqn_update(a, NULL) == -1 && strstr(dl_error(), "empty"), "update on an empty buffer: %s", dl_error());
        dl_env_free(mc);
    }
    dl_dqn_free(a);
    CHECK(dl_dqn_load_policy("build/tests/no_such_file") == NULL, "missing file");
}

int main(void) {
    dl_set_num_threads(1);
    RUN(test_replay_ring);
    RUN(test_epsilon_schedule);
    RUN(test_act);
    RUN(test_target_updates);
    RUN(test_update_matches_pytorch);
    RUN(test_no_alloc_while_training);
    RUN(test_save_resume);
    RUN(test_hostile_state_files);
    RUN(test_load_checks_before_writing);
    RUN(test_load_hostile_sizes);
    RUN(test_cartpole_learns);
    RUN(test_default_options);
    RUN(test_learn_within_total_steps);
    RUN(test_bad_arguments);
    dl_arena_free_default();
    return test_summary();
}
