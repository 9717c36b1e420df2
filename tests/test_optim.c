/* dl_optim.h: every optimizer against PyTorch 1.13 on a tiny problem, schedules, clipping,
   bit-identical save/resume, errors, and no allocation in a step.

   The reference numbers come from torch.optim (foreach=False) on two parameters,
   w = [0.5, -1, 1.5, 2] and b = [0.1], with the gradient set by hand before every step to
   g = p*p - t (t_w = [0.3, -0.2, 1, 0.5], t_b = [-0.7]), computed in float32 on both sides;
   each row holds w and b after steps 1, 2, 3. Generated with torch 1.13 by:
       w.grad = w.detach()*w.detach() - tw; b.grad = ...; opt.step(); print('%.9g' % ...) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "count_alloc.h"
#define DL_IMPLEMENTATION
#include "../dl_tensor.h"
#include "../dl_optim.h"
#include "test.h"

static const float W0[4] = {0.5f, -1.0f, 1.5f, 2.0f}, B0[1] = {0.1f};
static const float TW[4] = {0.3f, -0.2f, 1.0f, 0.5f}, TB[1] = {-0.7f};

typedef struct ref_row { const char *name; float want[15]; } ref_row;
static const ref_row REF[] = {
    {"sgd", {0.504999995f, -1.12f, 1.375f, 1.64999998f, 0.0290000029f, 0.509497523f, -1.26543999f, 1.28593755f, 1.42774999f, -0.0410840996f, 0.513538778f, -1.44557381f, 1.22057402f, 1.27390301f, -0.111252889f}},
    {"sgd_momentum", {0.504999995f, -1.12f, 1.375f, 1.64999998f, 0.0290000029f, 0.513997495f, -1.37344003f, 1.17343748f, 1.11275005f, -0.10498409f, 0.525675893f, -1.8101697f, 0.95433569f, 0.555403829f, -0.296671927f}},
    {"sgd_nesterov", {0.509500027f, -1.22800004f, 1.26250005f, 1.33500004f, -0.0348999985f, 0.521227896f, -1.64971709f, 1.04840779f, 0.807877243f, -0.225641415f, 0.533527195f, -2.43064141f, 0.890336215f, 0.419860542f, -0.476872742f}},
    {"sgd_momentum_wd", {0.504499972f, -1.11899996f, 1.37349999f, 1.648f, 0.0289000031f, 0.512593448f, -1.37019706f, 1.16962624f, 1.10796165f, -0.105202414f, 0.523089767f, -1.80264831f, 0.948167682f, 0.548061252f, -0.29689613f}},
    {"sgd_wd", {0.5f, -1.11000001f, 1.36000001f, 1.63f, 0.0280000027f, 0.5f, -1.24211001f, 1.26144004f, 1.39801002f, -0.0423583947f, 0.5f, -1.40397263f, 1.18970251f, 1.23858666f, -0.112114228f}},
    {"rmsprop", {0.599999785f, -1.10000002f, 1.39999998f, 1.89999998f, 7.4505806e-09f, 0.523019969f, -1.17631435f, 1.33889782f, 1.83339047f, -0.0703860968f, 0.555300593f, -1.24158287f, 1.29367435f, 1.78094769f, -0.128408909f}},
    {"rmsprop_centered", {0.600503564f, -1.1005038f, 1.3994962f, 1.8994962f, -0.000503771007f, 0.523202717f, -1.17760921f, 1.33784437f, 1.83223927f, -0.0716008171f, 0.55510819f, -1.2439121f, 1.29206848f, 1.7790519f, -0.130514503f}},
    {"rmsprop_momentum", {0.531622767f, -1.03162277f, 1.46837723f, 1.96837723f, 0.0683772266f, 0.558311999f, -1.0709337f, 1.43049073f, 1.9300251f, 0.029706249f, 0.564149261f, -1.11085069f, 1.3940196f, 1.89240444f, -0.00872984622f}},
    {"rmsprop_centered_momentum", {0.600483596f, -1.10050297f, 1.39949703f, 1.89949656f, -0.000502363255f, 0.61364007f, -1.26806056f, 1.24739289f, 1.74178672f, -0.162050828f, 0.555214226f, -1.48999882f, 1.07650959f, 1.55123973f, -0.367510915f}},
    {"adagrad", {0.600000024f, -1.10000002f, 1.39999998f, 1.89999998f, -7.4505806e-09f, 0.523177922f, -1.17615402f, 1.33909023f, 1.8335768f, -0.0702074245f, 0.555074394f, -1.24114621f, 1.29413724f, 1.78142226f, -0.127937615f}},
    {"adagrad_init", {0.515617311f, -1.09669864f, 1.40305424f, 1.90040576f, 0.0086510852f, 0.526220322f, -1.17159629f, 1.34299374f, 1.83411527f, -0.0582749024f, 0.533374071f, -1.23590136f, 1.29839182f, 1.78202927f, -0.114075854f}},
    {"adam", {0.50999999f, -1.00999999f, 1.49000001f, 1.99000001f, 0.0900000036f, 0.519879282f, -1.02000403f, 1.48000705f, 1.98000312f, 0.0800007135f, 0.529497623f, -1.03001463f, 1.47002602f, 1.97001159f, 0.0700024962f}},
    {"adam_betas", {0.599997997f, -1.0999999f, 1.4000001f, 1.89999998f, 1.2665987e-07f, 0.57989037f, -1.20052838f, 1.30223238f, 1.80079877f, -0.0999219865f, 0.53676784f, -1.3019079f, 1.2087878f, 1.70298874f, -0.199927181f}},
    {"adamw", {0.509500027f, -1.00900006f, 1.4885f, 1.98800004f, 0.0899000019f, 0.518879712f, -1.01799464f, 1.47701979f, 1.97601593f, 0.0798108205f, 0.5280146f, -1.02698636f, 1.46556497f, 1.96405017f, 0.0697328076f}},
    {"adamw_default_wd", {0.5995f, -1.09899998f, 1.39849997f, 1.898f, -0.000100001693f, 0.5850963f, -1.19799912f, 1.29866862f, 1.79659629f, -0.100060418f, 0.544545114f, -1.29708183f, 1.2020756f, 1.69616723f, -0.199959934f}},
};

static dl_optim *make(const char *name) {
    if (!strcmp(name, "sgd")) return dl_sgd(0.1);
    if (!strcmp(name, "sgd_momentum")) return dl_optim_new(DL_OPTIM_SGD, &(dl_optim_opts){.lr = 0.1, .momentum = 0.9});
    if (!strcmp(name, "sgd_nesterov")) return dl_optim_new(DL_OPTIM_SGD, &(dl_optim_opts){.lr = 0.1, .momentum = 0.9, .nesterov = 1});
    if (!strcmp(name, "sgd_momentum_wd")) return dl_optim_new(DL_OPTIM_SGD, &(dl_optim_opts){.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01});
    if (!strcmp(name, "sgd_wd")) return dl_optim_new(DL_OPTIM_SGD, &(dl_optim_opts){.lr = 0.1, .weight_decay = 0.1});
    if (!strcmp(name, "rmsprop")) return dl_rmsprop(0.01);
    if (!strcmp(name, "rmsprop_centered")) return dl_optim_new(DL_OPTIM_RMSPROP, &(dl_optim_opts){.lr = 0.01, .centered = 1});
    if (!strcmp(name, "rmsprop_momentum")) return dl_optim_new(DL_OPTIM_RMSPROP, &(dl_optim_opts){.lr = 0.01, .alpha = 0.9, .momentum = 0.5});
    if (!strcmp(name, "rmsprop_centered_momentum")) return dl_optim_new(DL_OPTIM_RMSPROP, &(dl_optim_opts){.lr = 0.01, .eps = 1e-6, .momentum = 0.9, .centered = 1});
    if (!strcmp(name, "adagrad")) return dl_adagrad(0.1);
    if (!strcmp(name, "adagrad_init")) return dl_optim_new(DL_OPTIM_ADAGRAD, &(dl_optim_opts){.lr = 0.1, .initial_accumulator = 0.1, .eps = 1e-6});
    if (!strcmp(name, "adam")) return dl_adam(0.01);
    if (!strcmp(name, "adam_betas")) return dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = 0.1, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6});
    if (!strcmp(name, "adamw")) return dl_optim_new(DL_OPTIM_ADAMW, &(dl_optim_opts){.lr = 0.01, .weight_decay = 0.1});
    if (!strcmp(name, "adamw_default_wd")) return dl_adamw(0.1);
    return NULL;
}

/* The tiny problem: two persistent parameters with gradient buffers. */
typedef struct problem { dl_tensor *w, *b; } problem;
static problem problem_new(void) {
    problem p;
    p.w = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(4), W0);
    p.b = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(1), B0);
    dl_set_requires_grad(p.w, 1);
    dl_set_requires_grad(p.b, 1);
    dl_grad_buf(p.w);
    dl_grad_buf(p.b);
    return p;
}
static void problem_grad(problem *p) {   /* g = p*p - t */
    int i;
    for (i = 0; i < 4; i++) p->w->grad[i] = dl_f32(p->w)[i] * dl_f32(p->w)[i] - TW[i];
    p->b->grad[0] = dl_f32(p->b)[0] * dl_f32(p->b)[0] - TB[0];
}
static void problem_free(problem *p) { dl_tensor_free(p->w); dl_tensor_free(p->b); }

static int run_steps(dl_optim *opt, problem *p, int steps, float *trace) {
    int s;
    for (s = 0; s < steps; s++) {
        problem_grad(p);
        if (dl_optim_step(opt) != 0) return -1;
        if (trace) {
            memcpy(trace + 5 * s, dl_f32(p->w), 4 * sizeof(float));
            trace[5 * s + 4] = dl_f32(p->b)[0];
        }
    }
    return 0;
}

static void test_against_pytorch(void) {
    size_t r;
    int exact = 0, total = 0;
    for (r = 0; r < sizeof REF / sizeof REF[0]; r++) {
        problem p = problem_new();
        dl_tensor *params[2];
        dl_optim *opt = make(REF[r].name);
        float got[15];
        int i;
        params[0] = p.w; params[1] = p.b;
        CHECK(opt != NULL, "%s: %s", REF[r].name, dl_error());
        if (!opt) { problem_free(&p); continue; }
        CHECK(dl_optim_add_params(opt, 2, params) == 0, "%s", dl_error());
        CHECK(run_steps(opt, &p, 3, got) == 0, "%s", dl_error());
        for (i = 0; i < 15; i++) {
            if (!(fabs((double)got[i] - REF[r].want[i]) <= 1e-6 * (1.0 + fabs(REF[r].want[i]))))
                CHECK(0, "%s: value %d (step %d) = %.9g, torch %.9g", REF[r].name, i, i / 5 + 1, got[i], REF[r].want[i]);
            exact += got[i] == REF[r].want[i];
            if (getenv("DL_TEST_VERBOSE") && got[i] != REF[r].want[i]) printf("    info: %s[%d] %.9g vs torch %.9g\n", REF[r].name, i, got[i], REF[r].want[i]);
            total++;
        }
        CHECK(dl_optim_steps(opt) == 3, "steps");
        dl_optim_free(opt);
        problem_free(&p);
    }
    printf("    info: %d of %d values bit-identical to PyTorch\n", exact, total);
#ifndef DL_OPTIM_NO_FMA
    CHECK(exact == total, "fused multiply-adds should reproduce PyTorch's bits (DL_TEST_VERBOSE=1 lists them)");
#endif
}

static void test_clip_in_optimizer(void) {
    static const float want[15] = {0.500629783f, -1.01511419f, 1.48425603f, 1.97000003f, 0.0910574272f, 0.501836181f, -1.04465759f, 1.45450139f, 1.91299999f, 0.0738332048f, 0.503579855f, -1.08888793f, 1.41248167f, 1.83169997f, 0.0486938208f};
    problem p = problem_new();
    dl_tensor *params[2];
    dl_optim *opt = dl_optim_new(DL_OPTIM_SGD, &(dl_optim_opts){.lr = 0.1, .momentum = 0.9});
    float got[15];
    params[0] = p.w; params[1] = p.b;
    CHECK(dl_optim_add_params(opt, 2, params) == 0, "%s", dl_error());
    CHECK(dl_optim_set_clip(opt, 0.5, 0.3) == 0, "%s", dl_error());
    run_steps(opt, &p, 3, got);
    CHECK_ALL_NEAR(got, want, 15, 1e-6);
    dl_optim_free(opt);
    problem_free(&p);
}

static void test_clipping(void) {
    static const float g1[5] = {0.182236999f, -0.364473999f, 0.546710968f, 0.728947997f, -0.0607456639f}, g2[5] = {1.5f, -3.0f, 4.5f, 6.0f, -0.5f}, gv[5] = {1.0f, -1.0f, 1.0f, 1.0f, -0.5f};
    problem p = problem_new();
    dl_tensor *params[3];
    dl_tensor *nograd = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(2));  /* grad NULL: skipped */
    float got[5], total;
    int i, pass;
    params[0] = p.w; params[1] = p.b; params[2] = nograd;
    for (pass = 0; pass < 3; pass++) {
        for (i = 0; i < 4; i++) p.w->grad[i] = W0[i] * 3;
        p.b->grad[0] = B0[0] * -5;
        if (pass == 2) {
            dl_clip_grad_value(3, params, 1.0);
        } else {
            total = dl_clip_grad_norm(3, params, pass == 0 ? 1.0 : 100.0);
            CHECK_NEAR(total, 8.23103905, 1e-6);
        }
        memcpy(got, p.w->grad, 4 * sizeof(float));
        got[4] = p.b->grad[0];
        CHECK_ALL_NEAR(got, pass == 0 ? g1 : pass == 1 ? g2 : gv, 5, 1e-6);
    }
    CHECK(dl_clip_grad_norm(1, params, -1.0) < 0 && strstr(dl_error(), "dl_clip_grad_norm"), "negative max_norm");
    dl_tensor_free(nograd);
    problem_free(&p);
}

static const double SCHED[][10] = {
    /* StepLR(3, 0.5) */ {0.10000000000000001, 0.10000000000000001, 0.10000000000000001, 0.050000000000000003, 0.050000000000000003, 0.050000000000000003, 0.025000000000000001, 0.025000000000000001, 0.025000000000000001, 0.012500000000000001},
    /* ExponentialLR(0.9) */ {0.10000000000000001, 0.090000000000000011, 0.081000000000000016, 0.07290000000000002, 0.065610000000000016, 0.059049000000000018, 0.05314410000000002, 0.047829690000000022, 0.043046721000000024, 0.03874204890000002},
    /* CosineAnnealingLR(8, 0.001) */ {0.10000000000000001, 0.096232036859308701, 0.085501785668734107, 0.069442829902071956, 0.050500000000000003, 0.031557170097928057, 0.0154982143312659, 0.0047679631406913059, 0.001, 0.0047679631406913068},
    /* LinearLR(0.1, 1, 4) */ {0.010000000000000002, 0.032500000000000008, 0.055000000000000014, 0.077500000000000027, 0.10000000000000003, 0.10000000000000003, 0.10000000000000003, 0.10000000000000003, 0.10000000000000003, 0.10000000000000003},
    /* SequentialLR(LinearLR(0.25,1,3), Cosine(5, 0.01), [3]) */ {0.025000000000000001, 0.050000000000000003, 0.075000000000000011, 0.10000000000000001, 0.091405764746872634, 0.068905764746872628, 0.041094235253127359, 0.018594235253127367, 0.01, 0.018594235253127367},
};

static void test_schedules(void) {
    dl_lr_schedule s;
    long t;
    for (t = 0; t < 10; t++) {
        CHECK_NEAR(dl_lr_step(0.1, 3, 0.5, t), SCHED[0][t], 1e-12);
        CHECK_NEAR(dl_lr_exponential(0.1, 0.9, t), SCHED[1][t], 1e-12);
        CHECK_NEAR(dl_lr_cosine(0.1, 8, 0.001, t), SCHED[2][t], 1e-12);
        CHECK_NEAR(dl_lr_linear(0.1, 0.1, 1.0, 4, t), SCHED[3][t], 1e-12);
    }
    memset(&s, 0, sizeof s);
    s.kind = DL_LR_COSINE; s.base_lr = 0.1; s.t_max = 5; s.min_lr = 0.01; s.warmup = 3; s.warmup_start = 0.25;
    for (t = 0; t < 10; t++) CHECK_NEAR(dl_lr_at(&s, t), SCHED[4][t], 1e-12);
    memset(&s, 0, sizeof s);
    s.base_lr = 0.5;
    CHECK(dl_lr_at(&s, 123) == 0.5, "zero-init schedule is constant");
    s.kind = DL_LR_STEP; s.step_size = 2; s.gamma = 0.1;
    CHECK_NEAR(dl_lr_at(&s, 5), 0.5 * 0.01, 1e-15);
}

/* A parameter without a gradient is skipped and keeps its own step count (Adam's bias
   correction then starts at 1 when it first gets a gradient, as in PyTorch). */
static void test_null_grad_skipped(void) {
    dl_tensor *a = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(1), B0), *c = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(1), B0);
    dl_tensor *ps[2];
    dl_optim *opt = dl_adam(0.1);
    dl_set_requires_grad(a, 1); dl_set_requires_grad(c, 1);
    ps[0] = a; ps[1] = c;
    CHECK(dl_optim_add_params(opt, 2, ps) == 0, "%s", dl_error());
    dl_grad_buf(a)[0] = 1.0f;
    dl_optim_step(opt);
    dl_optim_step(opt);
    CHECK(dl_f32(c)[0] == B0[0], "no grad: unchanged");
    dl_grad_buf(c)[0] = 1.0f;  /* first step of c: Adam's first step moves by lr*sign(g) */
    dl_optim_step(opt);
    CHECK_NEAR(dl_f32(c)[0], B0[0] - 0.1f, 1e-6);
    dl_optim_free(opt);
    dl_tensor_free(a); dl_tensor_free(c);
}

/* Train 5 steps, save, train 5 more (A); restore the save into a fresh optimizer over a copy
   of the step-5 weights and train 5 (B): A and B must be the same bits. Both file and memory. */
static void test_save_resume(void) {
    static const char *const kinds[] = {"sgd_nesterov", "sgd_momentum_wd", "rmsprop_centered_momentum",
                                        "rmsprop_momentum", "adagrad_init", "adam", "adamw"};
    const char *path = "build/test_optim_state.safetensors";
    size_t k;
    for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        int mode;
        for (mode = 0; mode < 2; mode++) {
            problem p = problem_new(), q;
            dl_tensor *params[2], *qparams[2];
            dl_optim *opt = make(kinds[k]), *opt2 = make(kinds[k]);
            float a[5], b[5];
            void *bytes = NULL;
            size_t size = 0;
            params[0] = p.w; params[1] = p.b;
            dl_optim_add_params(opt, 2, params);
            dl_optim_set_lr(opt, dl_optim_lr(opt) * 0.5);   /* lr is part of the state */
            run_steps(opt, &p, 5, NULL);
            if (mode == 0) {
                CHECK(dl_optim_save(opt, path) == 0, "%s: %s", kinds[k], dl_error());
            } else {
                size = dl_optim_serialize(opt, NULL, 0);
                CHECK(size > 0, "%s", dl_error());
                bytes = malloc(size);
                CHECK(dl_optim_serialize(opt, bytes, size) == size, "%s", dl_error());
            }
            q = problem_new();
            memcpy(dl_f32(q.w), dl_f32(p.w), 4 * sizeof(float));
            memcpy(dl_f32(q.b), dl_f32(p.b), sizeof(float));
            run_steps(opt, &p, 5, NULL);
            memcpy(a, dl_f32(p.w), 4 * sizeof(float)); a[4] = dl_f32(p.b)[0];

            qparams[0] = q.w; qparams[1] = q.b;
            dl_optim_add_params(opt2, 2, qparams);
            if (mode == 0) CHECK(dl_optim_load(opt2, path) == 0, "%s: %s", kinds[k], dl_error());
            else CHECK(dl_optim_parse(opt2, bytes, size) == 0, "%s: %s", kinds[k], dl_error());
            CHECK(dl_optim_steps(opt2) == 5, "steps restored: %ld", dl_optim_steps(opt2));
            CHECK(dl_optim_lr(opt2) == dl_optim_lr(opt), "lr restored");
            run_steps(opt2, &q, 5, NULL);
            memcpy(b, dl_f32(q.w), 4 * sizeof(float)); b[4] = dl_f32(q.b)[0];
            CHECK(memcmp(a, b, sizeof a) == 0, "%s (%s): resumed training differs", kinds[k], mode ? "memory" : "file");
            CHECK(dl_optim_steps(opt2) == 10, "steps");
            free(bytes);
            dl_optim_free(opt); dl_optim_free(opt2);
            problem_free(&p); problem_free(&q);
        }
    }
    remove(path);
}

static void test_load_errors(void) {
    problem p = problem_new();
    dl_tensor *params[2], *other = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(3));
    dl_optim *adam = dl_adam(0.01), *o;
    unsigned char *bytes;
    size_t size;
    float before[4];
    params[0] = p.w; params[1] = p.b;
    dl_optim_add_params(adam, 2, params);
    run_steps(adam, &p, 2, NULL);
    size = dl_optim_serialize(adam, NULL, 0);
    bytes = (unsigned char *)malloc(size);
    dl_optim_serialize(adam, bytes, size);

    o = dl_adamw(0.01);            /* other kind */
    dl_optim_add_params(o, 2, params);
    CHECK(dl_optim_parse(o, bytes, size) != 0 && strstr(dl_error(), "kind"), "kind mismatch: %s", dl_error());
    dl_optim_free(o);
    o = dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = 0.01, .beta2 = 0.99});                    /* other beta2 */
    dl_optim_add_params(o, 2, params);
    CHECK(dl_optim_parse(o, bytes, size) != 0 && strstr(dl_error(), "beta2"), "beta2 mismatch: %s", dl_error());
    dl_optim_free(o);
    o = dl_adam(0.01);                   /* one parameter only */
    dl_optim_add_params(o, 1, params);
    CHECK(dl_optim_parse(o, bytes, size) != 0 && strstr(dl_error(), "parameters"), "count mismatch: %s", dl_error());
    dl_optim_free(o);
    o = dl_adam(0.01);                   /* other shape */
    dl_set_requires_grad(other, 1);
    params[1] = other;
    dl_optim_add_params(o, 2, params);
    CHECK(dl_optim_parse(o, bytes, size) != 0 && strstr(dl_error(), "[3]"), "shape mismatch: %s", dl_error());
    CHECK(dl_optim_steps(o) == 0, "unchanged after a failed load");
    dl_optim_free(o);
    params[1] = p.b;
    o = dl_adam(0.01);
    dl_optim_add_params(o, 2, params);
    CHECK(dl_optim_parse(o, bytes, size - 3) != 0, "truncated");
    bytes[10] ^= 0x5a;
    CHECK(dl_optim_parse(o, bytes, size) != 0, "corrupt header");
    CHECK(dl_optim_load(o, "build/no/such/file.safetensors") != 0, "missing file");
    CHECK(dl_optim_steps(o) == 0, "unchanged");
    {   /* a safetensors file that is not an optimizer's */
        dl_tensor *ts[1];
        const char *names[1] = {"x"};
        unsigned char buf[256];
        size_t n;
        ts[0] = p.w;
        n = dl_safetensors_serialize(1, names, ts, 0, NULL, NULL, buf, sizeof buf);
        CHECK(n > 0 && dl_optim_parse(o, buf, n) != 0 && strstr(dl_error(), "dl_optim"), "%s", dl_error());
    }
    memcpy(before, dl_f32(p.w), sizeof before);
    CHECK(memcmp(before, dl_f32(p.w), sizeof before) == 0, "weights untouched");
    dl_optim_free(o);
    dl_optim_free(adam);
    free(bytes);
    dl_tensor_free(other);
    problem_free(&p);
}

/* Three steps on w = [1, -2, 3] with the gradient of sum(w^2 * c): the final w, to compare runs. */
static void three_steps(dl_optim *o, float out[3]) {
    static const float w0[3] = {1.0f, -2.0f, 3.0f};
    dl_tensor *w = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(3), w0);
    int s, i;
    out[0] = out[1] = out[2] = NAN;
    if (!o || !w) { dl_optim_free(o); dl_tensor_free(w); return; }
    dl_set_requires_grad(w, 1);
    if (dl_optim_add_params(o, 1, &w) == 0) {
        for (s = 0; s < 3; s++) {
            float *g = dl_grad_buf(w);
            for (i = 0; g && i < 3; i++) g[i] = 2.0f * dl_f32(w)[i] * (float)(i + 1);
            dl_optim_step(o);
        }
        memcpy(out, dl_f32(w), sizeof(float) * 3);
    }
    dl_optim_free(o);
    dl_tensor_free(w);
}

/* dl_optim_opts: zero fields are PyTorch's defaults, DL_ZERO an exact 0, unused fields refused. */
static void test_options_defaults(void) {
    static const double lr0[5] = {1e-2, 1e-2, 1e-2, 1e-3, 1e-3};
    dl_optim_opts full[5];
    float a[3], b[3];
    int k;
    memset(full, 0, sizeof full);
    full[0].lr = 1e-2;
    full[1].lr = 1e-2, full[1].alpha = 0.99, full[1].eps = 1e-8;
    full[2].lr = 1e-2, full[2].eps = 1e-10;
    full[3].lr = 1e-3, full[3].beta1 = 0.9, full[3].beta2 = 0.999, full[3].eps = 1e-8;
    full[4] = full[3], full[4].weight_decay = 1e-2;
    for (k = 0; k < 5; k++) {
        dl_optim *o = dl_optim_new((dl_optim_kind)k, NULL);
        CHECK(o && dl_optim_lr(o) == lr0[k] && dl_optim_type(o) == (dl_optim_kind)k, "kind %d: default lr", k);
        three_steps(o, a);
        three_steps(dl_optim_new((dl_optim_kind)k, &full[k]), b);
        CHECK(memcmp(a, b, sizeof a) == 0 && a[0] == a[0], "kind %d: NULL opts = the documented defaults", k);
    }
    /* The shortcuts are dl_optim_new with the learning rate alone. */
    three_steps(dl_adam(0.05), a);
    three_steps(dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = 0.05, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8}), b);
    CHECK(memcmp(a, b, sizeof a) == 0, "dl_adam(lr)");
    /* DL_ZERO: an exact zero where the default is not 0 (and a changed result). */
    three_steps(dl_optim_new(DL_OPTIM_RMSPROP, &(dl_optim_opts){.lr = 0.1, .alpha = DL_ZERO}), a);
    three_steps(dl_optim_new(DL_OPTIM_RMSPROP, &(dl_optim_opts){.lr = 0.1, .alpha = 0.99}), b);
    CHECK(a[0] == a[0] && memcmp(a, b, sizeof a) != 0, "alpha DL_ZERO differs from the default");
    three_steps(dl_optim_new(DL_OPTIM_RMSPROP, &(dl_optim_opts){.lr = 0.1, .alpha = 1e-300}), b);
    CHECK(memcmp(a, b, sizeof a) == 0, "alpha DL_ZERO acts as 0");
    three_steps(dl_optim_new(DL_OPTIM_SGD, &(dl_optim_opts){.lr = DL_ZERO}), a);
    CHECK(a[0] == 1.0f && a[1] == -2.0f && a[2] == 3.0f, "lr DL_ZERO changes nothing");
    CHECK(dl_sgd(0) == NULL && strstr(dl_error(), "learning rate"), "dl_sgd(0): %s", dl_error());
    /* A field the kind does not read is a mistake, named. */
    CHECK(dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.momentum = 0.9}) == NULL && strstr(dl_error(), "momentum"),
          "Adam has no momentum: %s", dl_error());
    CHECK(dl_optim_new(DL_OPTIM_SGD, &(dl_optim_opts){.eps = 1e-8}) == NULL && strstr(dl_error(), "eps"), "SGD has no eps");
    CHECK(dl_optim_new((dl_optim_kind)7, NULL) == NULL && strstr(dl_error(), "kind"), "unknown kind");
    /* Non-finite values never pass: as an option, a shortcut, or later through set_lr. */
    CHECK(dl_adam((double)INFINITY) == NULL && strstr(dl_error(), "learning rate"), "inf lr");
    CHECK(dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.eps = (double)INFINITY}) == NULL, "inf eps");
    CHECK(dl_optim_new(DL_OPTIM_SGD, &(dl_optim_opts){.max_norm = (double)NAN}) == NULL, "NaN max_norm");
    {
        dl_optim *o = dl_adam(1e-3);
        CHECK(dl_optim_set_lr(o, (double)INFINITY) == -1 && dl_optim_lr(o) == 1e-3, "set_lr(inf) refused");
        CHECK(dl_optim_set_lr(o, -1) == -1 && dl_optim_set_lr(o, (double)NAN) == -1 && dl_optim_lr(o) == 1e-3, "set_lr(-1, NaN) refused");
        CHECK(dl_optim_set_lr(o, 0.5) == 0 && dl_optim_lr(o) == 0.5, "set_lr(0.5)");
        dl_optim_free(o);
    }
}

static void test_errors(void) {
    dl_tensor *t = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(2, 3)), *i32 = dl_tensor_new(DL_DTYPE_I32, 1, DL_SHAPE(2));
    dl_tensor *ps[2];
    dl_optim *o;
    dl_clear_error();
    CHECK(dl_sgd(-0.1) == NULL && strstr(dl_error(), "learning rate"), "negative lr: %s", dl_error());
    CHECK(dl_optim_new(DL_OPTIM_SGD, &(dl_optim_opts){.lr = 0.1, .nesterov = 1}) == NULL && strstr(dl_error(), "Nesterov"), "nesterov without momentum");
    CHECK(dl_optim_new(DL_OPTIM_SGD, &(dl_optim_opts){.lr = 0.1, .momentum = -0.5}) == NULL, "negative momentum");
    CHECK(dl_optim_new(DL_OPTIM_SGD, &(dl_optim_opts){.lr = 0.1, .weight_decay = -1}) == NULL, "negative weight decay");
    CHECK(dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = 0.1, .beta1 = 1.0}) == NULL && strstr(dl_error(), "beta1"), "beta1 = 1: %s", dl_error());
    CHECK(dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = 0.1, .beta2 = -0.1}) == NULL && strstr(dl_error(), "beta2"), "beta2 < 0");
    CHECK(dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = 0.1, .eps = -1e-8}) == NULL && strstr(dl_error(), "eps"), "eps < 0");
    CHECK(dl_optim_new(DL_OPTIM_ADAMW, &(dl_optim_opts){.lr = 0.1, .weight_decay = -0.1}) == NULL, "negative wd");
    CHECK(dl_optim_new(DL_OPTIM_RMSPROP, &(dl_optim_opts){.lr = 0.1, .alpha = 1.5}) == NULL && strstr(dl_error(), "alpha"), "alpha > 1");
    CHECK(dl_optim_new(DL_OPTIM_ADAGRAD, &(dl_optim_opts){.lr = 0.1, .initial_accumulator = -1}) == NULL, "negative initial accumulator");
    CHECK(dl_adam((double)NAN) == NULL, "NaN lr");

    o = dl_adam(1e-3);
    ps[0] = t; ps[1] = NULL;
    CHECK(dl_optim_add_params(o, 1, ps) != 0 && strstr(dl_error(), "require"), "no requires_grad: %s", dl_error());
    dl_set_requires_grad(t, 1);
    CHECK(dl_optim_add_params(o, 2, ps) != 0 && strstr(dl_error(), "NULL"), "NULL parameter");
    ps[1] = i32;
    CHECK(dl_optim_add_params(o, 2, ps) != 0 && strstr(dl_error(), "f32"), "i32 parameter");
    ps[1] = dl_transpose(t, 0, 1);
    ps[1]->requires_grad = 1;
    CHECK(dl_optim_add_params(o, 2, ps) != 0 && strstr(dl_error(), "contiguous"), "strided view");
    ps[1] = t;
    CHECK(dl_optim_add_params(o, 2, ps) != 0 && strstr(dl_error(), "twice"), "duplicate");
    CHECK(dl_optim_num_params(o) == 0, "nothing added on failure");
    CHECK(dl_optim_add_params(o, 1, ps) == 0, "%s", dl_error());
    CHECK(dl_optim_add_params(o, 1, ps) != 0 && strstr(dl_error(), "already"), "added twice");
    CHECK(dl_optim_set_clip(o, -1, 0) != 0, "negative clip");
    CHECK(dl_optim_step(NULL) != 0, "NULL optimizer");
    CHECK(dl_optim_step(o) == 0, "a step with no gradients at all is fine");
    dl_optim_set_lr(o, -1);
    CHECK(dl_optim_lr(o) == 1e-3, "negative lr ignored");
    CHECK(strcmp(dl_optim_kind_name(dl_optim_type(o)), "adam") == 0, "kind name");
    dl_optim_free(o);
    dl_optim_free(NULL);
    dl_tensor_free(t);
    dl_tensor_free(i32);
}

/* A training step in steady state allocates nothing: backward (after the first, which makes
   the gradient buffers), clipping, a schedule and the optimizer step. */
static void test_step_does_not_allocate(void) {
    static const char *const kinds[] = {"sgd_nesterov", "rmsprop_centered_momentum", "adagrad", "adam", "adamw"};
    size_t k;
    for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        problem p = problem_new();
        dl_tensor *params[2];
        dl_optim *opt = make(kinds[k]);
        long before;
        int s;
        params[0] = p.w; params[1] = p.b;
        dl_optim_add_params(opt, 2, params);
        dl_optim_set_clip(opt, 1.0, 0.5);
        before = test_mallocs;
        for (s = 0; s < 20; s++) {
            dl_optim_zero_grad(opt);
            problem_grad(&p);
            dl_clip_grad_norm(2, params, 10.0);
            dl_optim_set_lr(opt, dl_lr_cosine(0.01, 20, 0, s));
            dl_optim_step(opt);
        }
        CHECK(test_mallocs == before, "%s: %ld allocations in 20 steps", kinds[k], test_mallocs - before);
        dl_optim_free(opt);
        problem_free(&p);
    }
}

/* End to end with autograd: y = 2x + 1 with Adam and a warm-up + cosine schedule. */
static void test_fit_line(void) {
    float xs[4] = {0, 1, 2, 3}, ys[4] = {1, 3, 5, 7};
    dl_tensor *x = dl_tensor_from(DL_DTYPE_F32, 2, DL_SHAPE(4, 1), xs), *y = dl_tensor_from(DL_DTYPE_F32, 2, DL_SHAPE(4, 1), ys);
    dl_tensor *w = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(1, 1)), *b = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(1));
    dl_tensor *params[2];
    dl_optim *opt = dl_adam(0.1);
    dl_lr_schedule sched;
    long before = 0;
    int step;
    memset(&sched, 0, sizeof sched);
    sched.kind = DL_LR_COSINE; sched.base_lr = 0.1; sched.t_max = 800; sched.min_lr = 0.001;
    sched.warmup = 20; sched.warmup_start = 0.1;
    dl_set_requires_grad(w, 1); dl_set_requires_grad(b, 1);
    params[0] = w; params[1] = b;
    CHECK(dl_optim_add_params(opt, 2, params) == 0, "%s", dl_error());
    for (step = 0; step < 820; step++) {
        if (step == 10) before = test_mallocs;
        dl_arena_reset(dl_arena_current());
        dl_optim_zero_grad(opt);
        CHECK(dl_backward(dl_mse(dl_linear(x, w, b), y)) == 0, "%s", dl_error());
        dl_optim_set_lr(opt, dl_lr_at(&sched, step));
        dl_optim_step(opt);
    }
    CHECK(test_mallocs == before, "steady-state training steps allocated %ld times", test_mallocs - before);
    CHECK_NEAR(dl_f32(w)[0], 2.0, 1e-3);
    CHECK_NEAR(dl_f32(b)[0], 1.0, 1e-3);
    dl_optim_free(opt);
    dl_tensor_free(x); dl_tensor_free(y); dl_tensor_free(w); dl_tensor_free(b);
}


/* The vectorized Adam/AdamW loops (16 and 8 lanes) against the formula in plain C, on a
   parameter long enough to use them (1037 = 64*16 + 13: both the lanes and the scalar tail). */
static void test_adam_simd_bits(void) {
    enum { N = 1037 };
    static float w0[N], ref[N], m[N], v[N], g[N];
    int kind, step, i, bad = 0;
    for (i = 0; i < N; i++) w0[i] = (float)sin(0.37 * i) * 2.0f;
    for (kind = 0; kind < 2; kind++) {
        double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = kind ? 0.05 : 0.0;
        dl_optim *o = kind ? dl_optim_new(DL_OPTIM_ADAMW, &(dl_optim_opts){.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps, .weight_decay = wd}) : dl_optim_new(DL_OPTIM_ADAM, &(dl_optim_opts){.lr = lr, .beta1 = b1, .beta2 = b2, .eps = eps});
        dl_tensor *w = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(N), w0);
        dl_set_requires_grad(w, 1);
        dl_optim_add_params(o, 1, &w);
        for (i = 0; i < N; i++) { ref[i] = w0[i]; m[i] = v[i] = 0; }
        for (step = 1; step <= 3; step++) {
            float *p = dl_f32(w), *gr;
            double bc1 = 1.0 - pow(b1, step), bc2 = 1.0 - pow(b2, step);
            dl_optim_zero_grad(o);
            gr = w->grad ? w->grad : dl_grad_buf(w);
            for (i = 0; i < N; i++) gr[i] = g[i] = p[i] * p[i] - 0.5f;
            dl_optim_step(o);
            for (i = 0; i < N; i++) {   /* torch's single-tensor Adam, as dl__adam_scalar */
                if (kind) ref[i] = ref[i] * (float)(1.0 - lr * wd);
                m[i] = fmaf((float)(1.0 - b1), g[i], m[i] * (float)b1);
                v[i] = fmaf((float)(1.0 - b2) * g[i], g[i], v[i] * (float)b2);
                ref[i] = ref[i] + (float)-(lr / bc1) * m[i] / (sqrtf(v[i]) / (float)sqrt(bc2) + (float)eps);
            }
            for (i = 0; i < N; i++) bad += memcmp(&ref[i], &dl_f32(w)[i], sizeof(float)) != 0;
        }
        CHECK(bad == 0, "%s: %d elements differ from the scalar formula", kind ? "adamw" : "adam", bad);
        dl_optim_free(o);
        dl_tensor_free(w);
    }
}

/* The vectorized RMSprop loops (plain and centered; momentum stays scalar) against the formula
   in plain C, with the lanes and the scalar tail both used. */
static void test_rmsprop_simd_bits(void) {
    enum { N = 1037 };
    static float w0[N], ref[N], s2[N], ga[N], g[N];
    int centered, step, i, bad = 0;
    for (i = 0; i < N; i++) w0[i] = (float)cos(0.29 * i) * 1.5f;
    for (centered = 0; centered < 2; centered++) {
        double lr = 0.01, alpha = 0.95, eps = 0.01;
        dl_optim *o = dl_optim_new(DL_OPTIM_RMSPROP, &(dl_optim_opts){.lr = lr, .alpha = alpha, .eps = eps, .centered = centered});
        dl_tensor *w = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(N), w0);
        dl_set_requires_grad(w, 1);
        dl_optim_add_params(o, 1, &w);
        for (i = 0; i < N; i++) { ref[i] = w0[i]; s2[i] = ga[i] = 0; }
        for (step = 1; step <= 3; step++) {
            float *p = dl_f32(w), *gr;
            dl_optim_zero_grad(o);
            gr = w->grad ? w->grad : dl_grad_buf(w);
            for (i = 0; i < N; i++) gr[i] = g[i] = p[i] * p[i] - 0.5f;
            dl_optim_step(o);
            for (i = 0; i < N; i++) {   /* torch's single-tensor RMSprop */
                float d;
                s2[i] = fmaf((float)(1.0 - alpha) * g[i], g[i], s2[i] * (float)alpha);
                if (centered) {
                    ga[i] = fmaf((float)(1.0 - alpha), g[i], ga[i] * (float)alpha);
                    d = sqrtf(fmaf(-ga[i], ga[i], s2[i]));
                } else {
                    d = sqrtf(s2[i]);
                }
                ref[i] = ref[i] + (float)-lr * g[i] / (d + (float)eps);
            }
            for (i = 0; i < N; i++) bad += memcmp(&ref[i], &dl_f32(w)[i], sizeof(float)) != 0;
        }
        CHECK(bad == 0, "%s: %d elements differ from the scalar formula", centered ? "centered" : "plain", bad);
        dl_optim_free(o);
        dl_tensor_free(w);
    }
}

int main(void) {
    RUN(test_adam_simd_bits);
    RUN(test_rmsprop_simd_bits);
    RUN(test_against_pytorch);
    RUN(test_clip_in_optimizer);
    RUN(test_clipping);
    RUN(test_schedules);
    RUN(test_null_grad_skipped);
    RUN(test_save_resume);
    RUN(test_load_errors);
    RUN(test_options_defaults);
    RUN(test_errors);
    RUN(test_step_does_not_allocate);
    RUN(test_fit_line);
    (void)count_realloc; /* counted too, should the library ever realloc */
    dl_arena_free_default();
    return test_summary();
}

/* The reference numbers above were printed by this script (/usr/bin/python3, torch 1.13;
   comment markers inside it are written "/ *" and "* /"):

import torch
def fl(v):
    s='%.9g'%v
    return s+('f' if ('.' in s or 'e' in s) else '.0f')
torch.set_default_dtype(torch.float32)
W0=[0.5,-1.0,1.5,2.0]; B0=[0.1]; TW=[0.3,-0.2,1.0,0.5]; TB=[-0.7]
def run(name, make):
    w=torch.tensor(W0,requires_grad=True); b=torch.tensor(B0,requires_grad=True)
    tw=torch.tensor(TW); tb=torch.tensor(TB)
    opt=make([w,b]); out=[]
    for s in range(3):
        w.grad=w.detach()*w.detach()-tw; b.grad=b.detach()*b.detach()-tb
        opt.step()
        out += w.detach().tolist()+b.detach().tolist()
    print('    {"%s", {%s}},'%(name, ', '.join(fl(v) for v in out)))
O=torch.optim
run("sgd", lambda p:O.SGD(p,lr=0.1))
run("sgd_momentum", lambda p:O.SGD(p,lr=0.1,momentum=0.9))
run("sgd_nesterov", lambda p:O.SGD(p,lr=0.1,momentum=0.9,nesterov=True))
run("sgd_momentum_wd", lambda p:O.SGD(p,lr=0.1,momentum=0.9,weight_decay=0.01))
run("sgd_wd", lambda p:O.SGD(p,lr=0.1,weight_decay=0.1))
run("rmsprop", lambda p:O.RMSprop(p,lr=0.01))
run("rmsprop_centered", lambda p:O.RMSprop(p,lr=0.01,centered=True))
run("rmsprop_momentum", lambda p:O.RMSprop(p,lr=0.01,alpha=0.9,momentum=0.5))
run("rmsprop_centered_momentum", lambda p:O.RMSprop(p,lr=0.01,momentum=0.9,centered=True,eps=1e-6))
run("adagrad", lambda p:O.Adagrad(p,lr=0.1))
run("adagrad_init", lambda p:O.Adagrad(p,lr=0.1,initial_accumulator_value=0.1,eps=1e-6))
run("adam", lambda p:O.Adam(p,lr=0.01))
run("adam_betas", lambda p:O.Adam(p,lr=0.1,betas=(0.8,0.99),eps=1e-6))
run("adamw", lambda p:O.AdamW(p,lr=0.01,weight_decay=0.1))
run("adamw_default_wd", lambda p:O.AdamW(p,lr=0.1))
# schedules
def sched(name, mk, n):
    p=torch.zeros(1,requires_grad=True); o=O.SGD([p],lr=0.1); s=mk(o); v=[o.param_groups[0]['lr']]
    for i in range(n-1):
        o.step(); s.step(); v.append(o.param_groups[0]['lr'])
    print('    / * %s * / {%s},'%(name, ', '.join('%.17g'%x for x in v)))
S=O.lr_scheduler
sched("StepLR(3, 0.5)", lambda o:S.StepLR(o,3,0.5), 10)
sched("ExponentialLR(0.9)", lambda o:S.ExponentialLR(o,0.9), 10)
sched("CosineAnnealingLR(8, 0.001)", lambda o:S.CosineAnnealingLR(o,8,0.001), 10)
sched("LinearLR(0.1, 1, 4)", lambda o:S.LinearLR(o,0.1,1.0,4), 10)
sched("SequentialLR(LinearLR(0.25,1,3), Cosine(5, 0.01), [3])", lambda o:S.SequentialLR(o,[S.LinearLR(o,0.25,1.0,3),S.CosineAnnealingLR(o,5,0.01)],[3]), 10)
# clipping
for mn in [1.0, 100.0]:
    w=torch.tensor(W0,requires_grad=True); b=torch.tensor(B0,requires_grad=True)
    w.grad=torch.tensor(W0)*3; b.grad=torch.tensor(B0)*-5
    tot=torch.nn.utils.clip_grad_norm_([w,b],mn)
    print('clip_norm max %g total %.9g grads %s'%(mn, tot.item(), ', '.join(fl(x) for x in w.grad.tolist()+b.grad.tolist())))
w=torch.tensor(W0,requires_grad=True); b=torch.tensor(B0,requires_grad=True)
w.grad=torch.tensor(W0)*3; b.grad=torch.tensor(B0)*-5
torch.nn.utils.clip_grad_value_([w,b],1.0)
print('clip_value', ', '.join(fl(x) for x in w.grad.tolist()+b.grad.tolist()))
# optimizer-level clipping: adam with clip_grad_norm_ 0.5 before each step
w=torch.tensor(W0,requires_grad=True); b=torch.tensor(B0,requires_grad=True)
tw=torch.tensor(TW); tb=torch.tensor(TB); opt=O.SGD([w,b],lr=0.1,momentum=0.9); out=[]
for s in range(3):
    w.grad=w.detach()*w.detach()-tw; b.grad=b.detach()*b.detach()-tb
    torch.nn.utils.clip_grad_norm_([w,b],0.5); torch.nn.utils.clip_grad_value_([w,b],0.3)
    opt.step(); out += w.detach().tolist()+b.detach().tolist()
print('    {"sgd_momentum_clip", {%s}},'%(', '.join(fl(v) for v in out)))
*/
