/* libFuzzer harness for dl_rl.h's DQN training-state loader (dl_dqn_load; built only on
   request). The input is a whole state file; it is read from memory through the loader's
   internal entry dl__dqn_load_st, once without an environment and once with each of a
   CartPole and a FrozenLake env, which a failing load must leave bit for bit as they were.

     clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz_dqn.c -o build/fuzz_dqn -lm -lpthread
     rm -rf build/fuzz_dqn_corpus && cp -r tests/fuzz_corpus/fuzz_dqn build/fuzz_dqn_corpus
     ./build/fuzz_dqn -max_total_time=600 -max_len=16384 build/fuzz_dqn_corpus

   The seed corpus (tests/fuzz_corpus/fuzz_dqn: small valid states, with and without a full
   replay ring, float and byte observations, CartPole and FrozenLake) is made by this file
   built without libFuzzer:

     cc -DFUZZ_DQN_MAKE_CORPUS -I. tests/fuzz_dqn.c -o build/make_dqn_corpus -lm -lpthread
     ./build/make_dqn_corpus tests/fuzz_corpus/fuzz_dqn

   Any crash, sanitizer report, leak, failure without a message, env changed by a failing
   load, or single allocation above 8x the input + 2 MiB (the agent's 1 MiB arena is fixed)
   is a bug. */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_alloc.h" /* an allocation over fuzz_limit aborts */
#define DL_IMPLEMENTATION
#include "../dl_rl.h"

#ifndef FUZZ_DQN_MAKE_CORPUS
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static dl_env *envs[3];
    static int ready;
    dl_safetensors *st;
    int i;
    if (!ready) {
        fuzz_limit = (size_t)-1;
        dl_set_num_threads(1);
        envs[1] = dl_env_cartpole();
        envs[2] = dl_env_frozenlake(4, 1);
        if (!envs[1] || !envs[2]) abort();
        ready = 1;
    }
    fuzz_limit = 8 * size + (2u << 20);
    dl_clear_error();
    st = dl_safetensors_parse(data, size);
    if (!st) { if (!dl_error()[0]) abort(); dl_clear_error(); return 0; }
    for (i = 0; i < 3; i++) {
        dl_env before;
        dl_dqn *a;
        if (envs[i]) {   /* a running episode in a state of its own, to see any write */
            double r;
            dl_env_reset(envs[i], 7 + i, NULL);
            dl_env_step(envs[i], 1, NULL, &r, NULL, NULL);
            before = *envs[i];
        }
        dl_clear_error();
        a = dl__dqn_load_st(st, envs[i], "input");
        if (!a) {
            if (!dl_error()[0]) abort();                                          /* every failure has a message */
            if (envs[i] && memcmp(&before, envs[i], sizeof before) != 0) abort();  /* and changes nothing */
        } else {
            int act = dl_dqn_act(a, a->obs, NULL);   /* a loaded agent acts */
            if (act < -1 || act >= a->n_actions) abort();
            (void)dl_dqn_mean_return(a, 100);
            (void)dl_dqn_epsilon(a);
            dl_dqn_free(a);
        }
    }
    dl_safetensors_free(st);
    dl_clear_error();
    return 0;
}
#else
/* The seed corpus: a few small training states, written into the folder argv[1]. */
static int make_state(const char *dir, const char *name, dl_env *env, int obs_u8, int buffer, long steps) {
    char path[1024];
    dl_dqn_opts o;
    dl_dqn *a;
    dl_space sp;
    int n_obs = dl_env_obs_size(env), rc;
    memset(&o, 0, sizeof o);
    o.total_steps = 1000, o.buffer_size = buffer, o.obs_u8 = obs_u8, o.batch_size = 4;
    o.learning_starts = 4, o.train_freq = 2, o.target_update_freq = 3, o.seed = 5;
    memset(&sp, 0, sizeof sp);
    sp.kind = DL_SPACE_BOX, sp.n = n_obs, sp.ndim = 1, sp.shape[0] = n_obs;
    dl_nn_seed(1);
    a = dl_dqn_new(dl_sequential(dl_Dense(4, DL_ACT_RELU), dl_Dense(env->action_space.n, DL_ACT_LINEAR)), NULL,
                   dl_adam(1e-3), &sp, env->action_space.n, &o);
    if (!a || (steps > 0 && dl_dqn_learn(a, env, steps, NULL, NULL) < 0)) { fprintf(stderr, "%s: %s\n", name, dl_error()); dl_dqn_free(a); return -1; }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    rc = dl_dqn_save(a, path, env);
    if (rc != 0) fprintf(stderr, "%s: %s\n", path, dl_error());
    dl_dqn_free(a);
    return rc;
}

int main(int argc, char **argv) {
    dl_env *cp, *fl;
    int rc = 0;
    fuzz_limit = (size_t)-1;
    cp = dl_env_cartpole(), fl = dl_env_frozenlake(4, 1);
    if (argc != 2 || !cp || !fl) { fprintf(stderr, "usage: %s DIR\n", argv[0]); return 2; }
    dl_set_num_threads(1);
    rc |= make_state(argv[1], "cartpole_empty.safetensors", cp, 0, 8, 0);
    rc |= make_state(argv[1], "cartpole_ring.safetensors", cp, 0, 8, 13);
    rc |= make_state(argv[1], "frozenlake_u8.safetensors", fl, 1, 16, 10);
    dl_env_free(cp);
    dl_env_free(fl);
    return rc ? 1 : 0;
}
#endif
