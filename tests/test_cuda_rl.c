/* tests/test_cuda_rl.c - dl_rl.h's DQN agents on the GPU (dl_dqn_move, dl_cuda.cu), against
   the same agent on the CPU.

   Built like tests/test_cuda_train.c: by tests/run.sh with dl_cuda.cu's CPU emulation compiled
   in (DL_CUDA_EMULATE), and with DL_TEST_CUDA_LINKED against dl_cuda.cu built by nvcc on a
   machine with a GPU (without one, every test is skipped with the reason). On CartPole-v1:
     - a CPU agent and its GPU copy (same seed, same weights) trained side by side: the same
       actions at every step, the same counters and returns, Q values, target weights and
       optimizer state within 1e-4 (DQN with MSE, hard target copies and gradient clipping
       through dl_dqn_learn; Double DQN with Huber, soft target updates and two gradient steps
       per update through dl_dqn_explore + dl_dqn_observe; on Breakout, byte observations of
       shape [4, 10, 10] and a conv network), the losses of dl_dqn_update and the hard and soft
       dl_dqn_update_target;
     - dl_dqn_move back and forth keeps every weight's bits and the tensors' addresses, and the
       replay buffer on the host; a Q network given to dl_dqn_new on the GPU gets its target
       there too;
     - a GPU agent's dl_dqn_save_policy and dl_dqn_save files equal the bytes the same agent
       writes on the CPU; dl_dqn_load gives a CPU agent that moves and goes on training;
     - the agent's device arena does not grow after the first updates and actions;
     - errors: an unknown device (nothing moves), a NULL agent, an environment of another
       observation size, every action masked, a bad batch: the CPU agent's messages. */
#define DL_CUDA
#define DL_IMPLEMENTATION
#include "dl_rl.h"
#include "cuda_test.h"   /* dl_cuda.cu (emulated unless DL_TEST_CUDA_LINKED), REQUIRE_GPU, rand_t, parity */

/* Observations to probe Q values with: CartPole states around the upright pole. */
#define NPROBE 16
static float probe[NPROBE * 4];
static void make_probe(void) {
    dl_rng r;
    int i;
    dl_rng_seed(&r, 99);
    for (i = 0; i < NPROBE * 4; i++) probe[i] = (dl_rng_uniform(&r) - 0.5f) * (i % 4 == 3 ? 1.5f : 0.4f);
}

/* variant 0: DQN, MSE, hard target copies, clipping; 1: Double DQN, Huber, soft targets. */
static dl_dqn *make_agent(const dl_env *env, int variant) {
    dl_dqn_opts o;
    dl_model *q;
    memset(&o, 0, sizeof o);
    o.total_steps = 4000;
    o.buffer_size = 600;
    o.batch_size = 32;
    o.learning_starts = 60;
    o.train_freq = 2;
    o.target_update_freq = 30;
    o.eps_fraction = 0.1;
    o.seed = 7;
    if (variant == 0) {
        o.max_grad_norm = 0.5;
    } else {
        o.double_dqn = 1;
        o.loss = DL_DQN_LOSS_HUBER;
        o.tau = 0.1;
        o.target_update_freq = 5;
        o.gradient_steps = 2;
    }
    dl_nn_seed(3);
    q = dl_sequential(dl_Dense(32, DL_ACT_RELU), dl_Dense(16, DL_ACT_RELU), dl_Dense(env->action_space.n, DL_ACT_LINEAR));
    return dl_dqn_new(q, NULL, dl_adam(2e-3), &env->observation_space, env->action_space.n, &o);
}

/* Weights, target weights, optimizer state (within tol), Q values of the probes (tol) and
   greedy actions (equal) of a GPU agent and its CPU twin. */
static void check_same_agents(const char *what, dl_dqn *gpu, dl_dqn *cpu, double tol) {
    char w[128], n1[64], n2[64];
    float qg[NPROBE * 2], qc[NPROBE * 2];
    int ag[NPROBE], ac[NPROBE], i;
    dl_tensor *s1, *s2;
    snprintf(w, sizeof w, "%s: online", what);
    check_same_weights(w, dl_dqn_model(gpu), dl_dqn_model(cpu), tol);
    snprintf(w, sizeof w, "%s: target", what);
    check_same_weights(w, dl_dqn_target_model(gpu), dl_dqn_target_model(cpu), tol);
    for (i = 0; (s2 = dl_optim_state_tensor(cpu->opt, i, n2, sizeof n2)) != NULL; i++) {
        s1 = dl_optim_state_tensor(gpu->opt, i, n1, sizeof n1);
        CHECK(s1 && strcmp(n1, n2) == 0 && s1->device == GPU, "%s: optimizer state %s on the GPU", what, n2);
        snprintf(w, sizeof w, "%s: optimizer %s", what, n2);
        if (s1) check_same(w, s1, s2, tol);
    }
    CHECK(i > 0 && dl_optim_steps(gpu->opt) == dl_optim_steps(cpu->opt), "%s: optimizer steps %ld vs %ld", what,
          dl_optim_steps(gpu->opt), dl_optim_steps(cpu->opt));
    CHECK(dl_dqn_q_values(gpu, NPROBE, probe, qg) == 0 && dl_dqn_q_values(cpu, NPROBE, probe, qc) == 0, "%s: q_values: %s", what, dl_error());
    for (i = 0; i < NPROBE * 2; i++)
        if (!(fabs((double)qg[i] - qc[i]) <= tol * (1.0 + fabs((double)qc[i])))) {
            CHECK(0, "%s: Q value %d: GPU %.9g, CPU %.9g", what, i, qg[i], qc[i]);
            break;
        }
    CHECK(dl_dqn_act_batch(gpu, NPROBE, probe, NULL, ag) == 0 && dl_dqn_act_batch(cpu, NPROBE, probe, NULL, ac) == 0, "%s: act_batch: %s",
          what, dl_error());
    CHECK(memcmp(ag, ac, sizeof ag) == 0, "%s: greedy actions differ", what);
    for (i = 0; i < 4; i++) CHECK(dl_dqn_act(gpu, probe + 4 * i, NULL) == ac[i], "%s: dl_dqn_act of probe %d", what, i);
}

/* A CPU agent and a GPU copy trained with dl_dqn_learn on two envs (DQN, MSE, clipping). */
static void test_learn_parity(void) {
    dl_env *e1, *e2;
    dl_dqn *cpu, *gpu;
    double l1 = 0, l2 = 0;
    REQUIRE_GPU();
    e1 = dl_env_cartpole(), e2 = dl_env_cartpole();
    cpu = make_agent(e1, 0), gpu = make_agent(e2, 0);
    CHECK(cpu && gpu, "agents: %s", dl_error());
    if (!cpu || !gpu) goto done;
    CHECK(dl_dqn_move(gpu, GPU) == 0, "move: %s", dl_error());
    CHECK(dl_dqn_model(gpu)->device == GPU && dl_dqn_target_model(gpu)->device == GPU && gpu->opt->device == GPU,
          "networks and optimizer on the GPU");
    check_same_agents("fresh", gpu, cpu, 0);   /* moved, not computed: the same bits */
    CHECK(dl_dqn_learn(cpu, e1, 700, NULL, NULL) >= 0, "CPU learn: %s", dl_error());
    CHECK(dl_dqn_learn(gpu, e2, 700, NULL, NULL) >= 0, "GPU learn: %s", dl_error());
    CHECK(dl_dqn_steps(gpu) == 700 && dl_dqn_updates(gpu) == dl_dqn_updates(cpu) && dl_dqn_updates(gpu) > 250,
          "counters: %ld updates vs %ld", dl_dqn_updates(gpu), dl_dqn_updates(cpu));
    CHECK(dl_dqn_episodes(gpu) == dl_dqn_episodes(cpu) && dl_dqn_episodes(gpu) > 5 &&
          dl_dqn_mean_return(gpu, 100) == dl_dqn_mean_return(cpu, 100),
          "same episodes (the same actions all along): %ld vs %ld", dl_dqn_episodes(gpu), dl_dqn_episodes(cpu));
    CHECK(memcmp(gpu->replay->obs, cpu->replay->obs, sizeof(float) * 4 * (size_t)cpu->replay->size) == 0, "same replay buffers");
    check_same_agents("after dl_dqn_learn", gpu, cpu, 1e-4);
    /* one more update each: the same batch (same generator), the same loss */
    CHECK(dl_dqn_update(cpu, &l1) == 0 && dl_dqn_update(gpu, &l2) == 0, "update: %s", dl_error());
    CHECK(l1 > 0 && fabs(l1 - l2) <= 1e-4 * (1 + l1), "losses: GPU %.9g, CPU %.9g", l2, l1);
    /* hard target update: the target equals the online network, bit for bit */
    dl_dqn_update_target(gpu);
    dl_dqn_update_target(cpu);
    check_same_weights("hard update: target = online", dl_dqn_target_model(gpu), dl_dqn_target_model(cpu), 1e-4);
    {
        dl_tensor *a[8], *b[8];
        int n = dl_model_weights(dl_dqn_model(gpu), 0, a, 8), i;
        dl_model_weights(dl_dqn_target_model(gpu), 0, b, 8);
        for (i = 0; i < n; i++) check_same("hard update copies", b[i], a[i], 0);
    }
    CHECK(dl_dqn_model(gpu)->device == GPU && gpu->replay->obs != NULL, "still on the GPU, the replay on the host");
done:
    dl_dqn_free(cpu);
    dl_dqn_free(gpu);
    dl_env_free(e1);
    dl_env_free(e2);
}

/* Double DQN, Huber, soft targets, two gradient steps per update, through explore + observe
   with the same transitions; then a soft dl_dqn_update_target by hand. */
static void test_observe_parity(void) {
    dl_env *env;
    dl_dqn *cpu, *gpu;
    float obs[4], next[4];
    int step, mismatches = 0, term, trunc;
    double r;
    REQUIRE_GPU();
    env = dl_env_cartpole();
    cpu = make_agent(env, 1), gpu = make_agent(env, 1);
    CHECK(cpu && gpu, "agents: %s", dl_error());
    if (!cpu || !gpu) goto done;
    CHECK(dl_dqn_move(gpu, GPU) == 0, "move: %s", dl_error());
    dl_env_reset(env, 5, obs);
    for (step = 0; step < 500; step++) {
        int ac = dl_dqn_explore(cpu, obs, NULL), ag = dl_dqn_explore(gpu, obs, NULL);
        mismatches += ac != ag;
        if (dl_env_step(env, ac, next, &r, &term, &trunc) != 0) break;
        if (dl_dqn_observe(cpu, obs, ac, r, next, term) != 0 || dl_dqn_observe(gpu, obs, ac, r, next, term) != 0) {
            CHECK(0, "observe at step %d: %s", step, dl_error());
            break;
        }
        if (term || trunc) dl_env_reset(env, -1, obs);
        else memcpy(obs, next, sizeof obs);
    }
    CHECK(step == 500 && mismatches == 0, "%d steps, %d different actions", step, mismatches);
    CHECK(dl_dqn_updates(gpu) == dl_dqn_updates(cpu) && dl_dqn_updates(gpu) > 400, "updates %ld vs %ld", dl_dqn_updates(gpu), dl_dqn_updates(cpu));
    check_same_agents("double DQN, huber, soft", gpu, cpu, 1e-4);
    dl_dqn_update_target(gpu);
    dl_dqn_update_target(cpu);
    check_same_weights("soft update", dl_dqn_target_model(gpu), dl_dqn_target_model(cpu), 1e-4);
    {   /* an action mask: the best allowed action */
        unsigned char mask[2] = {0, 1};
        CHECK(dl_dqn_act(gpu, probe, mask) == 1 && dl_dqn_act(cpu, probe, mask) == 1, "masked act");
    }
done:
    dl_dqn_free(cpu);
    dl_dqn_free(gpu);
    dl_env_free(env);
}

/* MinAtar Breakout: observations [4, 10, 10] stored as bytes (obs_u8), a conv network. */
static void test_breakout_parity(void) {
    dl_env *e1, *e2;
    dl_dqn *a[2];
    float obs[400], qg[3], qc[3];
    int i, k;
    REQUIRE_GPU();
    e1 = dl_env_breakout(0.1), e2 = dl_env_breakout(0.1);
    for (k = 0; k < 2; k++) {
        dl_dqn_opts o;
        dl_model *q;
        memset(&o, 0, sizeof o);
        o.total_steps = 1000, o.buffer_size = 300, o.batch_size = 16, o.learning_starts = 40, o.train_freq = 2;
        o.target_update_freq = 50, o.obs_u8 = 1, o.seed = 3, o.double_dqn = 1;
        dl_nn_seed(4);
        q = dl_sequential(dl_Conv2D(4, 3, 1, DL_PADDING_VALID, DL_ACT_RELU), dl_Flatten(), dl_Dense(16, DL_ACT_RELU),
                          dl_Dense(3, DL_ACT_LINEAR));
        a[k] = dl_dqn_new(q, NULL, dl_adam(1e-3), &e1->observation_space, 3, &o);
    }
    CHECK(a[0] && a[1] && dl_dqn_move(a[1], GPU) == 0, "agents: %s", dl_error());
    if (!a[0] || !a[1]) goto done;
    CHECK(dl_dqn_learn(a[0], e1, 250, NULL, NULL) >= 0 && dl_dqn_learn(a[1], e2, 250, NULL, NULL) >= 0, "learn: %s", dl_error());
    CHECK(dl_dqn_updates(a[1]) == dl_dqn_updates(a[0]) && dl_dqn_updates(a[0]) > 100 && dl_dqn_episodes(a[1]) == dl_dqn_episodes(a[0]),
          "counters: %ld / %ld updates", dl_dqn_updates(a[1]), dl_dqn_updates(a[0]));
    check_same_weights("breakout: online", dl_dqn_model(a[1]), dl_dqn_model(a[0]), 1e-4);
    check_same_weights("breakout: target", dl_dqn_target_model(a[1]), dl_dqn_target_model(a[0]), 1e-4);
    dl_env_reset(e1, 1, obs);
    CHECK(dl_dqn_q_values(a[1], 1, obs, qg) == 0 && dl_dqn_q_values(a[0], 1, obs, qc) == 0, "q_values: %s", dl_error());
    for (i = 0; i < 3; i++) CHECK(fabs((double)qg[i] - qc[i]) <= 1e-4 * (1 + fabs((double)qc[i])), "Q %d: %g vs %g", i, qg[i], qc[i]);
done:
    dl_dqn_free(a[0]);
    dl_dqn_free(a[1]);
    dl_env_free(e1);
    dl_env_free(e2);
}

/* dl_dqn_move back and forth: the same bits, the same tensor addresses; a GPU Q network given
   to dl_dqn_new. */
static void test_move_round_trip(void) {
    dl_env *env;
    dl_dqn *a;
    dl_tensor *w[16], *t[16];
    float *before[32];
    int n, i;
    REQUIRE_GPU();
    env = dl_env_cartpole();
    a = make_agent(env, 0);
    CHECK(a != NULL, "agent: %s", dl_error());
    if (!a) goto done;
    CHECK(dl_dqn_move(a, GPU) == 0 && dl_dqn_learn(a, env, 200, NULL, NULL) >= 0, "train on the GPU: %s", dl_error());
    n = dl_model_weights(dl_dqn_model(a), 0, w, 16);
    dl_model_weights(dl_dqn_target_model(a), 0, t, 16);
    for (i = 0; i < 2 * n; i++) {
        dl_tensor *x = i < n ? w[i] : t[i - n];
        before[i] = (float *)malloc(x->numel * 4);
        dl_tensor_read(x, before[i]);
    }
    CHECK(dl_dqn_move(a, DL_DEVICE_CPU) == 0 && dl_dqn_model(a)->device == DL_DEVICE_CPU &&
          dl_dqn_target_model(a)->device == DL_DEVICE_CPU && a->opt->device == DL_DEVICE_CPU, "back to the CPU: %s", dl_error());
    CHECK(dl_dqn_move(a, GPU) == 0 && dl_dqn_move(a, GPU) == 0 && dl_dqn_move(a, DL_DEVICE_CPU) == 0, "again: %s", dl_error());
    for (i = 0; i < 2 * n; i++) {
        dl_tensor *x = i < n ? w[i] : t[i - n];
        CHECK(x == (i < n ? a->w_online[i] : a->w_target[i - n]) && x->device == DL_DEVICE_CPU, "tensor %d keeps its address", i);
        CHECK(memcmp(dl_f32(x), before[i], x->numel * 4) == 0, "tensor %d keeps its bits", i);
        free(before[i]);
    }
    CHECK(dl_dqn_learn(a, env, 100, NULL, NULL) >= 0, "goes on training on the CPU: %s", dl_error());
    dl_dqn_free(a);
    {   /* a Q network on the GPU already: the target is made there too */
        dl_model *q = dl_sequential(dl_Dense(8, DL_ACT_RELU), dl_Dense(2, DL_ACT_LINEAR));
        CHECK(dl_model_build(q, 1, DL_SHAPE(4)) == 0 && dl_model_move(q, GPU) == 0, "q on the GPU: %s", dl_error());
        a = dl_dqn_new(q, NULL, dl_adam(1e-3), &env->observation_space, 2, NULL);
        CHECK(a && dl_dqn_target_model(a)->device == GPU && dl_dqn_act(a, probe, NULL) >= 0, "agent from a GPU network: %s", dl_error());
    }
done:
    dl_dqn_free(a);
    dl_env_free(env);
}

static unsigned char *read_file(const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (unsigned char *)malloc((size_t)*size + 1);
    if (buf && fread(buf, 1, (size_t)*size, f) != (size_t)*size) { free(buf); buf = NULL; }
    fclose(f);
    return buf;
}

static int same_files(const char *p1, const char *p2) {
    long n1 = -1, n2 = -2;
    unsigned char *a = read_file(p1, &n1), *b = read_file(p2, &n2);
    int same = a && b && n1 == n2 && memcmp(a, b, (size_t)n1) == 0;
    free(a);
    free(b);
    return same;
}

/* A GPU agent's files are the CPU agent's bytes; loading gives a CPU agent that moves. */
static void test_save_load(void) {
    const char *pg = "build/test_cuda_rl_gpu.safetensors", *pc = "build/test_cuda_rl_cpu.safetensors";
    const char *sg = "build/test_cuda_rl_state_gpu.safetensors", *sc = "build/test_cuda_rl_state_cpu.safetensors";
    dl_env *env, *env2;
    dl_dqn *a, *fresh, *b = NULL, *p = NULL;
    float q1[NPROBE * 2], q2[NPROBE * 2];
    REQUIRE_GPU();
    env = dl_env_cartpole(), env2 = dl_env_cartpole();
    a = make_agent(env, 1), fresh = make_agent(env, 1);
    CHECK(a && fresh, "agents: %s", dl_error());
    if (!a || !fresh) goto done;
    /* untrained: the GPU copy writes the CPU twin's file */
    CHECK(dl_dqn_move(a, GPU) == 0 && dl_dqn_save_policy(a, pg) == 0 && dl_dqn_save_policy(fresh, pc) == 0, "save: %s", dl_error());
    CHECK(same_files(pg, pc), "fresh policy files equal");
    /* trained on the GPU: its files equal the ones it writes after moving to the CPU */
    CHECK(dl_dqn_learn(a, env, 300, NULL, NULL) >= 0, "learn: %s", dl_error());
    CHECK(dl_dqn_save_policy(a, pg) == 0 && dl_dqn_save(a, sg, env) == 0, "save on the GPU: %s", dl_error());
    CHECK(dl_dqn_q_values(a, NPROBE, probe, q1) == 0, "q_values: %s", dl_error());
    CHECK(dl_dqn_move(a, DL_DEVICE_CPU) == 0 && dl_dqn_save_policy(a, pc) == 0 && dl_dqn_save(a, sc, env) == 0, "save on the CPU: %s", dl_error());
    CHECK(same_files(pg, pc), "policy files equal");
    CHECK(same_files(sg, sc), "training-state files equal (optimizer state included)");
    /* loading: CPU agents, the same Q values; the training state moves and goes on */
    CHECK((p = dl_dqn_load_policy(pg)) != NULL && dl_dqn_model(p)->device == DL_DEVICE_CPU, "load_policy: %s", dl_error());
    CHECK(p && dl_dqn_q_values(p, NPROBE, probe, q2) == 0 && memcmp(q1, q2, sizeof q1) == 0, "loaded policy: the same Q values");
    CHECK((b = dl_dqn_load(sg, env2)) != NULL && dl_dqn_model(b)->device == DL_DEVICE_CPU, "load: %s", dl_error());
    if (b) {
        CHECK(dl_dqn_move(b, GPU) == 0 && dl_dqn_move(a, GPU) == 0, "move the loaded agent: %s", dl_error());
        CHECK(dl_dqn_learn(b, env2, 200, NULL, NULL) >= 0 && dl_dqn_learn(a, env, 200, NULL, NULL) >= 0, "resume: %s", dl_error());
        CHECK(dl_dqn_episodes(a) == dl_dqn_episodes(b) && dl_dqn_updates(a) == dl_dqn_updates(b), "resumed run: the same counters");
        CHECK(dl_dqn_q_values(a, NPROBE, probe, q1) == 0 && dl_dqn_q_values(b, NPROBE, probe, q2) == 0 && memcmp(q1, q2, sizeof q1) == 0,
              "resumed run: the same Q values");
    }
done:
    remove(pg); remove(pc); remove(sg); remove(sc);
    dl_dqn_free(a);
    dl_dqn_free(b);
    dl_dqn_free(p);
    dl_dqn_free(fresh);
    dl_env_free(env);
    dl_env_free(env2);
}

/* The agent's device arena: held after the first updates and actions, never grown after. */
static void test_arena(void) {
    dl_env *env;
    dl_dqn *a;
    size_t b1, b2;
    float q[NPROBE * 2];
    int acts[NPROBE], i;
    REQUIRE_GPU();
    env = dl_env_cartpole();
    a = make_agent(env, 1);
    CHECK(a && dl_dqn_move(a, GPU) == 0, "agent: %s", dl_error());
    if (!a) goto done;
    CHECK(dl_dqn_learn(a, env, 150, NULL, NULL) >= 0, "learn: %s", dl_error());
    CHECK(dl_dqn_q_values(a, NPROBE, probe, q) == 0 && dl_dqn_act_batch(a, NPROBE, probe, NULL, acts) == 0, "act: %s", dl_error());
    dl_dqn_update_target(a);
    b1 = dl_arena_device_bytes(a->arena);
    CHECK(b1 > 0, "the agent's arena holds the device memory");
    CHECK(dl_dqn_learn(a, env, 400, NULL, NULL) >= 0, "learn: %s", dl_error());
    for (i = 0; i < 50; i++) {
        CHECK(dl_dqn_q_values(a, 1 + i % NPROBE, probe, q) == 0 && dl_dqn_act(a, probe, NULL) >= 0 && dl_dqn_update(a, NULL) == 0,
              "round %d: %s", i, dl_error());
        dl_dqn_update_target(a);
    }
    b2 = dl_arena_device_bytes(a->arena);
    CHECK(b2 == b1, "device arena grew: %zu -> %zu bytes", b1, b2);
done:
    dl_dqn_free(a);
    dl_env_free(env);
}

/* The CPU agent's messages, nothing moved. */
static void test_errors(void) {
    dl_env *env, *mc;
    dl_dqn *cpu, *gpu;
    char m1[512], m2[512];
    unsigned char none[2] = {0, 0};
    int acts[2];
    REQUIRE_GPU();
    env = dl_env_cartpole(), mc = dl_env_mountaincar();
    cpu = make_agent(env, 0), gpu = make_agent(env, 0);
    CHECK(cpu && gpu && dl_dqn_move(gpu, GPU) == 0, "agents: %s", dl_error());
    if (!cpu || !gpu) goto done;
    /* an unknown device */
    CHECK(dl_dqn_move(cpu, (dl_device)7) != 0, "device 7 refused");
    snprintf(m1, sizeof m1, "%s", dl_error());
    CHECK(dl_dqn_move(gpu, (dl_device)7) != 0, "device 7 refused on the GPU");
    snprintf(m2, sizeof m2, "%s", dl_error());
    CHECK(strcmp(m1, m2) == 0 && strncmp(m1, "dl_dqn_move: ", 13) == 0 && strstr(m1, "unknown device 7"), "messages: '%s' / '%s'", m1, m2);
    CHECK(dl_dqn_model(cpu)->device == DL_DEVICE_CPU && dl_dqn_target_model(cpu)->device == DL_DEVICE_CPU && cpu->opt->device == DL_DEVICE_CPU &&
          dl_dqn_model(gpu)->device == GPU && dl_dqn_target_model(gpu)->device == GPU && gpu->opt->device == GPU, "nothing moved");
    CHECK(dl_dqn_act(gpu, probe, NULL) >= 0, "still acts: %s", dl_error());
    CHECK(dl_dqn_move(NULL, GPU) != 0 && strcmp(dl_error(), "dl_dqn_move: NULL agent") == 0, "NULL agent: %s", dl_error());
    /* an environment with another observation size */
    CHECK(dl_dqn_learn(cpu, mc, 10, NULL, NULL) < 0, "mountaincar refused");
    snprintf(m1, sizeof m1, "%s", dl_error());
    CHECK(dl_dqn_learn(gpu, mc, 10, NULL, NULL) < 0, "mountaincar refused on the GPU");
    CHECK(strcmp(m1, dl_error()) == 0 && strstr(m1, "observation values"), "messages: '%s' / '%s'", m1, dl_error());
    /* every action masked; bad batches */
    CHECK(dl_dqn_act(cpu, probe, none) < 0, "masked");
    snprintf(m1, sizeof m1, "%s", dl_error());
    CHECK(dl_dqn_act(gpu, probe, none) < 0 && strcmp(m1, dl_error()) == 0, "masked on the GPU: '%s' / '%s'", m1, dl_error());
    CHECK(dl_dqn_act_batch(cpu, 0, probe, NULL, acts) < 0, "n = 0");
    snprintf(m1, sizeof m1, "%s", dl_error());
    CHECK(dl_dqn_act_batch(gpu, 0, probe, NULL, acts) < 0 && strcmp(m1, dl_error()) == 0, "n = 0 on the GPU: '%s' / '%s'", m1, dl_error());
    CHECK(dl_dqn_q_values(gpu, 2, NULL, NULL) < 0 && strcmp(dl_error(), "dl_dqn_q_values: bad argument") == 0, "NULL: %s", dl_error());
    /* an empty replay buffer */
    CHECK(dl_dqn_update(cpu, NULL) < 0, "empty buffer");
    snprintf(m1, sizeof m1, "%s", dl_error());
    CHECK(dl_dqn_update(gpu, NULL) < 0 && strcmp(m1, dl_error()) == 0, "empty buffer on the GPU: '%s' / '%s'", m1, dl_error());
done:
    dl_dqn_free(cpu);
    dl_dqn_free(gpu);
    dl_env_free(env);
    dl_env_free(mc);
}

int main(void) {
    make_probe();
    RUN(test_learn_parity);
    RUN(test_observe_parity);
    RUN(test_breakout_parity);
    RUN(test_move_round_trip);
    RUN(test_save_load);
    RUN(test_arena);
    RUN(test_errors);
    dl_arena_free_default();
    return test_summary();
}
