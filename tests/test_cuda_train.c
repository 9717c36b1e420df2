/* tests/test_cuda_train.c - dl_optim.h's updates and dl_nn.h's models on the GPU (dl_cuda.cu),
   against the same optimizer or model on the CPU.

   Built like tests/test_cuda.c: by tests/run.sh with dl_cuda.cu's CPU emulation compiled in
   (DL_CUDA_EMULATE), and with DL_TEST_CUDA_LINKED against dl_cuda.cu built by nvcc on a machine
   with a GPU (without one, every test is skipped with the reason). Dense models only (Flatten,
   Dense, ReLU, softmax cross-entropy), whose ops are on the GPU:
     - every optimizer kind (and clipping): a CPU model and a GPU copy trained step by step end
       with the same weights and optimizer state (1e-4 relative), also when the model moves
       after its optimizer state exists;
     - dl_fit / dl_evaluate / dl_predict on a GPU model match the CPU run; the device arena does
       not grow after the first steps; terminate_on_nan stops at the same batch;
     - saving a GPU model writes the CPU model's bytes; loading into GPU models; dl_model_move
       back and forth keeps the weights exactly and the tensors' addresses;
     - errors: an unbuilt model, a batch on the wrong device, an optimizer left behind, mixed
       devices, an unknown device (the message through dl_tensor_move). */
#define DL_CUDA
#define DL_IMPLEMENTATION
#include "dl_nn.h"
#include "cuda_test.h"   /* dl_cuda.cu (emulated unless DL_TEST_CUDA_LINKED), REQUIRE_GPU, rand_t, parity */

#define F 6   /* features */
#define C 3   /* classes */

/* A synthetic data set: x uniform in [-1, 1], labels from a fixed linear rule (learnable). */
static void make_data(dl_dataset *ds, int n) {
    int i, j;
    float *x;
    int32_t *y;
    memset(ds, 0, sizeof *ds);
    ds->x = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(n, F));
    ds->y = dl_tensor_new(DL_DTYPE_I32, 1, DL_SHAPE(n));
    ds->n = n;
    ds->num_classes = C;
    dl_fill_uniform(ds->x, -1.0f, 1.0f, &rng);
    x = dl_f32(ds->x);
    y = dl_i32(ds->y);
    for (i = 0; i < n; i++) {
        float s = 0;
        for (j = 0; j < F; j++) s += x[i * F + j] * (float)(j % 3 - 1);
        y[i] = s < -0.3f ? 0 : s < 0.3f ? 1 : 2;
    }
}
static void free_data(dl_dataset *ds) {
    dl_tensor_free(ds->x);
    dl_tensor_free(ds->y);
}

/* Flatten, Dense(12, relu), Dense(C): compiled with opt, built for [F]. */
static dl_model *make_model(dl_optim *opt) {
    dl_model *m = dl_sequential(dl_Flatten(), dl_Dense(12, DL_ACT_RELU), dl_Dense(C, DL_ACT_LINEAR));
    if (!m) return NULL;
    if (dl_compile(m, opt, DL_LOSS_SPARSE_CATEGORICAL_CE, DL_METRIC_ACCURACY) != 0 || dl_model_build(m, 1, DL_SHAPE(F)) != 0) {
        dl_model_free(m);
        return NULL;
    }
    return m;
}

/* dst's weights = src's (any devices). */
static void copy_weights(dl_model *dst, dl_model *src) {
    dl_tensor *a[16], *b[16];
    int n = dl_model_weights(src, 0, a, 16), i;
    CHECK(dl_model_weights(dst, 0, b, 16) == n, "same number of weights");
    for (i = 0; i < n; i++) CHECK(dl_copy(b[i], a[i]) == 0, "copy weight %d: %s", i, dl_error());
}

/* Same state tensors (names, values), metadata (steps, per-parameter steps, lr) and counters. */
static void check_same_state(const char *what, dl_optim *gpu, dl_optim *cpu, double tol) {
    char k1[48], v1[48], k2[48], v2[48], n1[64], n2[64];
    int i;
    dl_tensor *a, *b;
    CHECK(dl_optim_steps(gpu) == dl_optim_steps(cpu), "%s: steps %ld vs %ld", what, dl_optim_steps(gpu), dl_optim_steps(cpu));
    for (i = 0; dl_optim_state_meta(cpu, i, k1, sizeof k1, v1, sizeof v1) == 0; i++) {
        CHECK(dl_optim_state_meta(gpu, i, k2, sizeof k2, v2, sizeof v2) == 0 && strcmp(k1, k2) == 0 && strcmp(v1, v2) == 0,
              "%s: metadata %s = %s vs %s", what, k1, v1, v2);
    }
    for (i = 0; (b = dl_optim_state_tensor(cpu, i, n1, sizeof n1)) != NULL; i++) {
        char w[128];
        a = dl_optim_state_tensor(gpu, i, n2, sizeof n2);
        CHECK(a && strcmp(n1, n2) == 0 && a->device == GPU, "%s: state tensor %s on the GPU", what, n1);
        snprintf(w, sizeof w, "%s: %s", what, n1);
        if (a) check_same(w, a, b, tol);
    }
    CHECK(dl_optim_state_tensor(gpu, i, n2, sizeof n2) == NULL, "%s: the GPU optimizer has more state", what);
}

typedef struct opt_case {
    const char *name;
    dl_optim_kind kind;
    dl_optim_opts o;
    double max_norm, clip_value;
    int move_late;   /* 1: train 2 steps on the CPU, then move the model (its optimizer state moves too) */
} opt_case;

static opt_case cases[16];

/* Every kind and option of dl_optim.h; returns the count. */
static int make_cases(void) {
    int n = 0;
    memset(cases, 0, sizeof cases);
    cases[n].name = "sgd"; cases[n].kind = DL_OPTIM_SGD; cases[n].o.lr = 0.1; n++;
    cases[n].name = "sgd momentum wd"; cases[n].kind = DL_OPTIM_SGD; cases[n].o.lr = 0.05; cases[n].o.momentum = 0.9;
    cases[n].o.weight_decay = 1e-2; cases[n].move_late = 1; n++;
    cases[n].name = "sgd nesterov"; cases[n].kind = DL_OPTIM_SGD; cases[n].o.lr = 0.05; cases[n].o.momentum = 0.8;
    cases[n].o.nesterov = 1; n++;
    cases[n].name = "rmsprop"; cases[n].kind = DL_OPTIM_RMSPROP; cases[n].o.lr = 1e-2; n++;
    cases[n].name = "rmsprop centered momentum"; cases[n].kind = DL_OPTIM_RMSPROP; cases[n].o.lr = 1e-2;
    cases[n].o.centered = 1; cases[n].o.momentum = 0.5; cases[n].o.alpha = 0.9; cases[n].move_late = 1; n++;
    cases[n].name = "rmsprop momentum"; cases[n].kind = DL_OPTIM_RMSPROP; cases[n].o.lr = 1e-2; cases[n].o.momentum = 0.7; n++;
    cases[n].name = "adagrad"; cases[n].kind = DL_OPTIM_ADAGRAD; cases[n].o.lr = 0.05; cases[n].o.initial_accumulator = 0.1;
    cases[n].move_late = 1; n++;
    cases[n].name = "adam"; cases[n].kind = DL_OPTIM_ADAM; cases[n].o.lr = 1e-2; n++;
    cases[n].name = "adam late"; cases[n].kind = DL_OPTIM_ADAM; cases[n].o.lr = 1e-2; cases[n].o.eps = 1e-7; cases[n].move_late = 1; n++;
    cases[n].name = "adamw"; cases[n].kind = DL_OPTIM_ADAMW; cases[n].o.lr = 1e-2; cases[n].o.weight_decay = 0.1; n++;
    cases[n].name = "adam clip norm"; cases[n].kind = DL_OPTIM_ADAM; cases[n].o.lr = 1e-2; cases[n].max_norm = 0.05; n++;
    cases[n].name = "sgd clip value"; cases[n].kind = DL_OPTIM_SGD; cases[n].o.lr = 0.1; cases[n].o.momentum = 0.9;
    cases[n].clip_value = 0.01; cases[n].max_norm = 0.5; n++;
    cases[n].name = "adam big eps"; cases[n].kind = DL_OPTIM_ADAM; cases[n].o.lr = 1e-2; cases[n].o.eps = 0.05;
    cases[n].o.beta1 = 0.5; cases[n].o.beta2 = 0.75; n++;
    cases[n].name = "adagrad big eps"; cases[n].kind = DL_OPTIM_ADAGRAD; cases[n].o.lr = 0.1; cases[n].o.eps = 0.05; n++;
    cases[n].name = "rmsprop centered"; cases[n].kind = DL_OPTIM_RMSPROP; cases[n].o.lr = 1e-2; cases[n].o.centered = 1;
    cases[n].o.eps = 1e-3; n++;
    return n;
}

/* Each kind's update alone: a parameter on each device with the same gradients, stepped
   directly. The kernels give the CPU loops' bits (clipping by norm: within 1e-6, since its
   double sum runs in another order). */
static void test_updates_exact(void) {
    int c, n = make_cases(), step, i;
    REQUIRE_GPU();
    for (c = 0; c < n; c++) {
        dl_tensor *p[2], *q[2];
        dl_optim *oc = dl_optim_new(cases[c].kind, &cases[c].o), *og = dl_optim_new(cases[c].kind, &cases[c].o);
        /* RMSprop's momentum line, b*mu + g/d, is one FMA on the CPU where the compiler contracts
           by default (clang; gcc -std=c99 does not): the last bit may differ there */
        int contracted = cases[c].kind == DL_OPTIM_RMSPROP && cases[c].o.momentum > 0;
        double tol = contracted ? 1e-5 : cases[c].max_norm > 0 ? 1e-6 : 0;
        char what[96];
        p[0] = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(70, 150));
        p[1] = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(5));
        for (i = 0; i < 2; i++) {
            dl_fill_uniform(p[i], -1.0f, 1.0f, &rng);
            dl_set_requires_grad(p[i], 1);
            q[i] = dl_tensor_clone_to(p[i], GPU);
            dl_set_requires_grad(q[i], 1);
        }
        CHECK(oc && og && dl_optim_add_params(oc, 2, p) == 0 && dl_optim_add_params(og, 2, q) == 0, "%s: add: %s", cases[c].name, dl_error());
        if (cases[c].max_norm > 0 || cases[c].clip_value > 0) {
            dl_optim_set_clip(oc, cases[c].max_norm, cases[c].clip_value);
            dl_optim_set_clip(og, cases[c].max_norm, cases[c].clip_value);
        }
        for (step = 0; step < 5; step++) {
            if (step == 3) {
                dl_optim_set_lr(oc, 0.3 * dl_optim_lr(oc));
                dl_optim_set_lr(og, 0.3 * dl_optim_lr(og));
            }
            for (i = 0; i < 2; i++) {   /* gradients: random, scaled up at step 2 (clipping acts) */
                dl_tensor *g = dl_tensor_new(DL_DTYPE_F32, p[i]->ndim, p[i]->shape);
                float *gp = dl_grad_buf(p[i]), *gq = dl_grad_buf(q[i]);
                dl_fill_uniform(g, step == 2 ? -40.0f : -1.0f, step == 2 ? 40.0f : 1.0f, &rng);
                if (i == 1 && step == 1) {   /* no gradient: the parameter is skipped, its step count stays */
                    DL_FREE(p[i]->grad);
                    p[i]->grad = NULL;
                    dl__cuda_free(q[i]->grad);
                    q[i]->grad = NULL;
                    dl_tensor_free(g);
                    continue;
                }
                memcpy(gp, dl_f32(g), p[i]->numel * 4);
                CHECK(dl__cuda_memcpy(gq, dl_f32(g), p[i]->numel * 4, DL__H2D) == 0, "set grad");
                dl_tensor_free(g);
            }
            CHECK(dl_optim_step(oc) == 0 && dl_optim_step(og) == 0, "%s: step %d: %s", cases[c].name, step, dl_error());
        }
        for (i = 0; i < 2; i++) {
            snprintf(what, sizeof what, "%s: parameter %d", cases[c].name, i);
            check_same(what, q[i], p[i], tol);
            snprintf(what, sizeof what, "%s: gradient %d (clipped in place)", cases[c].name, i);
            {
                dl_tensor gp = *p[i], gq = *q[i];
                gp.data = p[i]->grad; gp.grad = NULL; gp.node = NULL; gp.flags = 0; gp.requires_grad = 0;
                gq.data = q[i]->grad; gq.grad = NULL; gq.node = NULL; gq.flags = 0; gq.requires_grad = 0;
                check_same(what, &gq, &gp, tol);
            }
        }
        check_same_state(cases[c].name, og, oc, tol);
        dl_optim_free(oc);
        dl_optim_free(og);
        for (i = 0; i < 2; i++) { dl_tensor_free(p[i]); dl_tensor_free(q[i]); }
    }
    dl_arena_reset(dl_arena_current());
}

static void test_optimizers(void) {
    dl_dataset ds;
    int c, n = make_cases(), step;
    REQUIRE_GPU();
    make_data(&ds, 24);
    for (c = 0; c < n; c++) {
        dl_model *cpu = make_model(dl_optim_new(cases[c].kind, &cases[c].o));
        dl_model *gpu = make_model(dl_optim_new(cases[c].kind, &cases[c].o));
        dl_tensor *x0 = dl_slice(ds.x, 0, 0, 12, 1), *y0 = dl_slice(ds.y, 0, 0, 12, 1);
        CHECK(cpu && gpu, "%s: models: %s", cases[c].name, dl_error());
        if (!cpu || !gpu) { dl_model_free(cpu); dl_model_free(gpu); continue; }
        copy_weights(gpu, cpu);
        if (cases[c].max_norm > 0 || cases[c].clip_value > 0) {
            CHECK(dl_optim_set_clip(dl_model_optimizer(cpu), cases[c].max_norm, cases[c].clip_value) == 0 &&
                  dl_optim_set_clip(dl_model_optimizer(gpu), cases[c].max_norm, cases[c].clip_value) == 0, "set_clip");
        }
        if (!cases[c].move_late) CHECK(dl_model_move(gpu, GPU) == 0, "%s: move: %s", cases[c].name, dl_error());
        for (step = 0; step < 6; step++) {
            int dev;
            if (step == 2 && cases[c].move_late) CHECK(dl_model_move(gpu, GPU) == 0, "%s: late move: %s", cases[c].name, dl_error());
            if (step == 4) {   /* a schedule's change of rate acts the same */
                dl_optim_set_lr(dl_model_optimizer(cpu), 0.5 * dl_optim_lr(dl_model_optimizer(cpu)));
                dl_optim_set_lr(dl_model_optimizer(gpu), 0.5 * dl_optim_lr(dl_model_optimizer(gpu)));
            }
            for (dev = 0; dev < 2; dev++) {
                double loss;
                dl_arena_reset(dl_arena_current());
                /* alternate two batches (12 samples each) */
                x0 = dl_slice(ds.x, 0, (step % 2) * 12, (step % 2) * 12 + 12, 1);
                y0 = dl_slice(ds.y, 0, (step % 2) * 12, (step % 2) * 12 + 12, 1);
                loss = dl_train_on_batch(dev ? gpu : cpu, x0, y0);
                CHECK(loss == loss, "%s: step %d on %s: %s", cases[c].name, step, dev ? "GPU" : "CPU", dl_error());
            }
        }
        {
            char what[64];
            snprintf(what, sizeof what, "%s", cases[c].name);
            check_same_weights(what, gpu, cpu, 1e-4);
            check_same_state(what, dl_model_optimizer(gpu), dl_model_optimizer(cpu), 1e-4);
        }
        /* the lr rule applies to GPU optimizers too */
        CHECK(dl_optim_set_lr(dl_model_optimizer(gpu), NAN) != 0 && dl_optim_lr(dl_model_optimizer(gpu)) == dl_optim_lr(dl_model_optimizer(cpu)),
              "%s: a NaN rate is refused", cases[c].name);
        dl_arena_reset(dl_arena_current());
        dl_model_free(cpu);
        dl_model_free(gpu);
    }
    free_data(&ds);
}

/* dl_clip_grad_norm and dl_clip_grad_value on GPU tensors: the CPU's totals and gradients. */
static void test_clip_functions(void) {
    dl_tensor *p[3], *q[3];
    int i, round;
    REQUIRE_GPU();
    p[0] = dl_tensor_new(DL_DTYPE_F32, 2, DL_SHAPE(70, 150));   /* > DL__CHUNK elements: several chunks */
    p[1] = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(7));
    p[2] = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(5));           /* no gradient: skipped */
    for (round = 0; round < 2; round++) {
        for (i = 0; i < 3; i++) {
            dl_fill_uniform(p[i], -1.0f, 1.0f, &rng);
            dl_set_requires_grad(p[i], 1);
            dl_zero_grad(p[i]);
            if (i < 2) {
                dl_arena_reset(dl_arena_current());
                dl_backward(dl_sum_all(dl_mul(p[i], dl_mul_scalar(p[i], 0.5f))));   /* grad = p (p used twice: a sum) */
            }
            q[i] = dl_tensor_clone_to(p[i], GPU);
            dl_set_requires_grad(q[i], 1);
            if (p[i]->grad) {
                dl_tensor g = *p[i];
                g.data = p[i]->grad;
                g.grad = NULL;
                g.requires_grad = 0;
                g.node = NULL;
                g.flags = 0;
                dl_grad_buf(q[i]);
                {
                    dl_tensor gq = *q[i];
                    gq.data = q[i]->grad;
                    gq.grad = NULL;
                    gq.requires_grad = 0;
                    gq.node = NULL;
                    gq.flags = 0;
                    CHECK(dl_copy(&gq, &g) == 0, "copy grad: %s", dl_error());
                }
            }
        }
        if (round == 0) {
            float t1 = dl_clip_grad_norm(3, p, 1.0), t2 = dl_clip_grad_norm(3, q, 1.0);
            CHECK(t1 > 1.0f && fabs((double)t1 - t2) <= 1e-6 * t1, "clip_grad_norm totals: CPU %.9g, GPU %.9g", t1, t2);
        } else {
            p[0]->grad[3] = NAN;
            dl_clip_grad_value(3, p, 0.25);
            {   /* the same NaN on the GPU side */
                float nan = NAN;
                dl__cuda_memcpy(q[0]->grad + 3, &nan, 4, DL__H2D);
            }
            dl_clip_grad_value(3, q, 0.25);
        }
        for (i = 0; i < 2; i++) {
            float *h = (float *)malloc(p[i]->numel * 4);
            size_t k;
            int bad = 0;
            dl__cuda_memcpy(h, q[i]->grad, p[i]->numel * 4, DL__D2H);
            for (k = 0; k < p[i]->numel && !bad; k++)
                if (!(h[k] == p[i]->grad[k] || (h[k] != h[k] && p[i]->grad[k] != p[i]->grad[k]) ||
                      fabs((double)h[k] - p[i]->grad[k]) <= 1e-6 * fabs((double)p[i]->grad[k])))
                    bad = 1;
            CHECK(!bad, "round %d: clipped gradient %d differs at %zu", round, i, k - 1);
            free(h);
        }
        CHECK(q[2]->grad == NULL, "a tensor without gradient stays without");
        for (i = 0; i < 3; i++) dl_tensor_free(q[i]);
    }
    /* mixed devices: refused */
    q[0] = dl_tensor_clone_to(p[0], GPU);
    dl_set_requires_grad(q[0], 1);
    dl_grad_buf(q[0]);
    {
        dl_tensor *mix[2] = {p[0], q[0]};
        dl_clear_error();
        CHECK(dl_clip_grad_norm(2, mix, 1.0) == -1.0f && strstr(dl_error(), "dl_clip_grad_norm") != NULL, "mixed: %s", dl_error());
    }
    dl_tensor_free(q[0]);
    for (i = 0; i < 3; i++) dl_tensor_free(p[i]);
    dl_arena_reset(dl_arena_current());
}

static void quiet(void *user, int level, const char *text) { (void)user; (void)level; (void)text; }

/* dl_fit with validation, dl_evaluate, dl_predict: the GPU model gives the CPU's numbers; the
   device arena reaches its size in the first epoch. */
static void test_fit(void) {
    dl_dataset ds;
    dl_model *cpu, *gpu;
    dl_fit_opts fo;
    const dl_history *hc, *hg;
    dl_arena *ar, *prev;
    size_t b1, b2;
    int e, j;
    REQUIRE_GPU();
    make_data(&ds, 100);
    cpu = make_model(dl_adam(1e-2));
    gpu = make_model(dl_adam(1e-2));
    if (!cpu || !gpu) { CHECK(0, "models: %s", dl_error()); return; }
    copy_weights(gpu, cpu);
    CHECK(dl_model_move(gpu, GPU) == 0, "move: %s", dl_error());
    ar = dl_arena_new((size_t)1 << 16);
    prev = dl_arena_use(ar);
    memset(&fo, 0, sizeof fo);
    fo.epochs = 1;
    fo.batch_size = 16;
    fo.validation_split = 0.2f;
    fo.verbose = -1;
    fo.seed = 3;
    hc = dl_fit(cpu, &ds, &fo);
    CHECK(dl_arena_device_bytes(ar) == 0, "the CPU fit used no device memory");
    hg = dl_fit(gpu, &ds, &fo);
    b1 = dl_arena_device_bytes(ar);
    CHECK(hc && hg, "fit: %s", dl_error());
    fo.epochs = 3;
    fo.initial_epoch = 1;
    hc = dl_fit(cpu, &ds, &fo);
    hg = dl_fit(gpu, &ds, &fo);
    b2 = dl_arena_device_bytes(ar);
    CHECK(b1 > 0 && b1 == b2, "the device arena grew after the first epoch: %zu -> %zu", b1, b2);
    CHECK(hc && hg && hc->epochs == 2 && hg->epochs == 2 && hc->n == hg->n && hc->n == 4, "histories: %s", dl_error());
    for (e = 0; hc && hg && e < hc->epochs; e++)
        for (j = 0; j < hc->n; j++)
            CHECK_NEAR(hg->values[e * hg->n + j], hc->values[e * hc->n + j], 1e-4);
    check_same_weights("after fit", gpu, cpu, 1e-4);
    check_same_state("after fit", dl_model_optimizer(gpu), dl_model_optimizer(cpu), 1e-4);
    {
        dl_logs lc, lg;
        dl_tensor *pc, *pg;
        CHECK(dl_evaluate(cpu, &ds, 32, &lc) == 0 && dl_evaluate(gpu, &ds, 32, &lg) == 0, "evaluate: %s", dl_error());
        CHECK_NEAR(dl_logs_get(&lg, "loss"), dl_logs_get(&lc, "loss"), 1e-4);
        CHECK_NEAR(dl_logs_get(&lg, "accuracy"), dl_logs_get(&lc, "accuracy"), 1e-9);
        pc = dl_predict(cpu, ds.x, 32);
        pg = dl_predict(gpu, ds.x, 32);
        CHECK(pc && pg && pg->device == DL_DEVICE_CPU && dl_same_shape(pc, pg), "predict: %s", dl_error());
        if (pc && pg) CHECK_ALL_NEAR(dl_f32(pg), dl_f32(pc), pc->numel, 1e-4);
        dl_tensor_free(pc);
        dl_tensor_free(pg);
    }
    CHECK(dl_arena_device_bytes(ar) == b2, "evaluate and predict fit in the same device memory");
    dl_arena_use(prev);
    dl_arena_free(ar);
    dl_model_free(cpu);
    dl_model_free(gpu);
    free_data(&ds);
}

/* terminate_on_nan: a sample with a NaN stops both at the same batch, with the same weights. */
static void test_fit_nan(void) {
    dl_dataset ds;
    dl_model *cpu, *gpu;
    dl_fit_opts fo;
    const dl_history *hc, *hg;
    dl_log_fn prev_fn = NULL;
    REQUIRE_GPU();
    (void)prev_fn;
    make_data(&ds, 40);
    dl_f32(ds.x)[21 * F + 2] = NAN;   /* in batch 2 of 8 samples */
    cpu = make_model(dl_sgd(0.1));
    gpu = make_model(dl_sgd(0.1));
    if (!cpu || !gpu) { CHECK(0, "models: %s", dl_error()); return; }
    copy_weights(gpu, cpu);
    CHECK(dl_model_move(gpu, GPU) == 0, "move: %s", dl_error());
    memset(&fo, 0, sizeof fo);
    fo.batch_size = 8;
    fo.no_shuffle = 1;
    fo.verbose = -1;
    fo.terminate_on_nan = 1;
    dl_set_log(quiet, NULL);
    hc = dl_fit(cpu, &ds, &fo);
    hg = dl_fit(gpu, &ds, &fo);
    dl_set_log(NULL, NULL);
    CHECK(hc && hg && hc->nan_batch == 2 && hg->nan_batch == 2 && hg->nan_epoch == 0, "stopped at batch %d / %d",
          hc ? hc->nan_batch : -9, hg ? hg->nan_batch : -9);
    check_same_weights("terminate_on_nan", gpu, cpu, 1e-5);
    dl_model_free(cpu);
    dl_model_free(gpu);
    free_data(&ds);
    dl_arena_reset(dl_arena_current());
}

/* Save a GPU model: the CPU model's bytes. Load: on the CPU, moved, or into GPU weights. */
static void test_save_load(void) {
    dl_dataset ds;
    dl_model *cpu, *gpu, *back, *w;
    unsigned char *a = NULL, *b = NULL, *c = NULL;
    size_t na, nb, nc;
    int step;
    const char *path = "build/tests/test_cuda_train.weights.safetensors";
    FILE *f;
    REQUIRE_GPU();
    make_data(&ds, 24);
    cpu = make_model(dl_rmsprop(1e-2));
    for (step = 0; step < 3; step++) {
        dl_arena_reset(dl_arena_current());
        dl_train_on_batch(cpu, ds.x, ds.y);
    }
    na = dl_model_serialize(cpu, 1, NULL, 0);
    a = (unsigned char *)malloc(na);
    CHECK(na && dl_model_serialize(cpu, 1, a, na) == na, "serialize: %s", dl_error());
    gpu = dl_model_parse(a, na);   /* the CPU model's copy, moved with its optimizer state */
    CHECK(gpu && dl_model_move(gpu, GPU) == 0, "parse and move: %s", dl_error());
    if (!gpu) { free(a); dl_model_free(cpu); free_data(&ds); return; }
    nb = dl_model_serialize(gpu, 1, NULL, 0);
    b = (unsigned char *)malloc(nb ? nb : 1);
    CHECK(nb == na && dl_model_serialize(gpu, 1, b, nb) == nb && memcmp(a, b, na) == 0, "a GPU model's file is the CPU model's");
    back = dl_model_parse(b, nb);
    CHECK(back != NULL, "parse the GPU model's file: %s", dl_error());
    if (back) {
        nc = dl_model_serialize(back, 1, NULL, 0);
        c = (unsigned char *)malloc(nc ? nc : 1);
        CHECK(nc == na && dl_model_serialize(back, 1, c, nc) == nc && memcmp(a, c, na) == 0, "loaded back: the same bytes");
    }
    /* training resumes on the GPU as on the CPU */
    for (step = 0; step < 3; step++) {
        dl_arena_reset(dl_arena_current());
        double lc = dl_train_on_batch(cpu, ds.x, ds.y), lg = dl_train_on_batch(gpu, ds.x, ds.y);
        CHECK_NEAR(lg, lc, 1e-4);
    }
    check_same_weights("resumed", gpu, cpu, 1e-4);
    check_same_state("resumed", dl_model_optimizer(gpu), dl_model_optimizer(cpu), 1e-4);
    /* weights from a file into a GPU model (load_weights copies across devices) */
    f = fopen(path, "wb");
    if (!f) path = "test_cuda_train.weights.safetensors";
    else fclose(f);
    w = make_model(dl_rmsprop(1e-2));
    CHECK(w && dl_model_move(w, GPU) == 0, "move: %s", dl_error());
    CHECK(dl_model_save_weights(cpu, path) == 0 && dl_model_load_weights(w, path) == 0, "weights file: %s", dl_error());
    check_same_weights("load_weights", w, cpu, 0);
    /* optimizer state parsed into a GPU optimizer */
    {
        size_t n = dl_optim_serialize(dl_model_optimizer(cpu), NULL, 0);
        unsigned char *s = (unsigned char *)malloc(n ? n : 1);
        dl_arena_reset(dl_arena_current());
        dl_train_on_batch(w, ds.x, ds.y);   /* binds w's optimizer: state on the GPU */
        CHECK(n && dl_optim_serialize(dl_model_optimizer(cpu), s, n) == n && dl_optim_parse(dl_model_optimizer(w), s, n) == 0,
              "optimizer state into a GPU optimizer: %s", dl_error());
        check_same_state("parsed state", dl_model_optimizer(w), dl_model_optimizer(cpu), 0);
        free(s);
    }
    remove(path);
    free(a);
    free(b);
    free(c);
    dl_model_free(cpu);
    dl_model_free(gpu);
    dl_model_free(back);
    dl_model_free(w);
    free_data(&ds);
    dl_arena_reset(dl_arena_current());
}

/* CPU -> GPU -> CPU: the same bits, the same tensors (addresses), the optimizer state along. */
static void test_move_round_trip(void) {
    dl_dataset ds;
    dl_model *m;
    dl_tensor *before[16], *after[16], *copies[16];
    int n, i;
    char name[64];
    REQUIRE_GPU();
    make_data(&ds, 16);
    m = make_model(dl_adam(1e-2));
    if (!m) { CHECK(0, "model: %s", dl_error()); return; }
    dl_train_on_batch(m, ds.x, ds.y);   /* state exists on the CPU */
    n = dl_model_weights(m, 0, before, 16);
    for (i = 0; i < n; i++) copies[i] = dl_tensor_clone(before[i]);
    CHECK(dl_model_move(m, GPU) == 0, "to the GPU: %s", dl_error());
    CHECK(dl_optim_state_tensor(dl_model_optimizer(m), 0, name, sizeof name)->device == GPU, "the optimizer state moved");
    CHECK(dl_model_weights(m, 0, after, 16) == n, "count");
    for (i = 0; i < n; i++) CHECK(after[i] == before[i] && after[i]->device == GPU, "weight %d keeps its address", i);
    CHECK(dl_model_move(m, GPU) == 0, "moving again is nothing: %s", dl_error());
    CHECK(dl_model_move(m, DL_DEVICE_CPU) == 0, "back: %s", dl_error());
    CHECK(dl_optim_state_tensor(dl_model_optimizer(m), 0, name, sizeof name)->device == DL_DEVICE_CPU, "the state came back");
    for (i = 0; i < n; i++) {
        CHECK(before[i]->device == DL_DEVICE_CPU, "weight %d on the CPU", i);
        check_same("round trip", before[i], copies[i], 0);
        dl_tensor_free(copies[i]);
    }
    dl_arena_reset(dl_arena_current());
    {
        double l1 = dl_train_on_batch(m, ds.x, ds.y), l2 = dl_train_on_batch(m, ds.x, ds.y);
        CHECK(l1 == l1 && l2 == l2, "trains on the CPU again: %s", dl_error());
    }
    CHECK(dl_model_optimizer(m) && dl_optim_steps(dl_model_optimizer(m)) == 3, "steps %ld", dl_optim_steps(dl_model_optimizer(m)));
    dl_model_free(m);
    free_data(&ds);
    dl_arena_reset(dl_arena_current());
}

static void test_errors(void) {
    dl_dataset ds;
    dl_model *m, *u;
    REQUIRE_GPU();
    make_data(&ds, 8);
    /* an unbuilt model */
    u = dl_sequential(dl_Flatten(), dl_Dense(4, DL_ACT_LINEAR));
    dl_clear_error();
    CHECK(dl_model_move(u, GPU) != 0 && strstr(dl_error(), "dl_model_move") && strstr(dl_error(), "not built"), "unbuilt: %s", dl_error());
    CHECK(dl_model_move(NULL, GPU) != 0 && strstr(dl_error(), "NULL"), "NULL: %s", dl_error());
    dl_model_free(u);
    m = make_model(dl_sgd(0.1));
    if (!m) { CHECK(0, "model: %s", dl_error()); free_data(&ds); return; }
    /* an unknown device: the message comes through dl_tensor_move, nothing moved */
    dl_clear_error();
    CHECK(dl_model_move(m, (dl_device)7) != 0 && strstr(dl_error(), "dl_model_move: dl_tensor_move") && strstr(dl_error(), "unknown device"),
          "unknown device: %s", dl_error());
    {
        dl_tensor *w[8];
        int n = dl_model_weights(m, 0, w, 8), i;
        for (i = 0; i < n; i++) CHECK(w[i]->device == DL_DEVICE_CPU, "weight %d stayed", i);
    }
    /* a host batch given to a GPU model's ops */
    CHECK(dl_model_move(m, GPU) == 0, "move: %s", dl_error());
    dl_clear_error();
    CHECK(dl_model_call(m, ds.x, 0) == NULL && strstr(dl_error(), "never copy") != NULL, "host batch: %s", dl_error());
    dl_arena_reset(dl_arena_current());
    /* ... but train_on_batch copies it */
    {
        double l1 = dl_train_on_batch(m, ds.x, ds.y), l2 = dl_train_on_batch(m, ds.x, ds.y);
        CHECK(l1 == l1 && l2 == l2, "train_on_batch copies host batches: %s", dl_error());
    }
    CHECK(dl_optim_steps(dl_model_optimizer(m)) == 2, "two steps: %s", dl_error());
    /* parameters moved without their optimizer */
    {
        dl_tensor *w[8];
        int n = dl_model_weights(m, 1, w, 8);
        dl_optim *o = dl_optim_new(DL_OPTIM_ADAM, NULL), *o2 = dl_optim_new(DL_OPTIM_SGD, NULL);
        dl_tensor *host = dl_tensor_new(DL_DTYPE_F32, 1, DL_SHAPE(3));
        dl_tensor *mix[2];
        dl_set_requires_grad(host, 1);
        CHECK(dl_optim_add_params(o, n, w) == 0, "add GPU params: %s", dl_error());
        CHECK(dl_optim_state_tensor(o, 0, (char[64]){0}, 64)->device == GPU, "state made on the GPU");
        dl_tensor_move(w[0], DL_DEVICE_CPU);
        dl_clear_error();
        CHECK(dl_optim_step(o) != 0 && strstr(dl_error(), "dl_optim_move") != NULL, "left behind: %s", dl_error());
        dl_tensor_move(w[0], GPU);
        CHECK(dl_optim_move(o, DL_DEVICE_CPU) == 0 && dl_optim_step(o) != 0, "state on the CPU, parameters on the GPU: refused");
        CHECK(dl_optim_move(o, GPU) == 0 && dl_optim_step(o) == 0, "together again: %s", dl_error());
        mix[0] = w[0];
        mix[1] = host;
        dl_clear_error();
        CHECK(dl_optim_add_params(o2, 2, mix) != 0 && strstr(dl_error(), "one optimizer per device"), "mixed: %s", dl_error());
        CHECK(dl_optim_num_params(o2) == 0, "nothing added");
        dl_optim_free(o);
        dl_optim_free(o2);
        dl_tensor_free(host);
    }
    dl_model_free(m);
    free_data(&ds);
    dl_arena_reset(dl_arena_current());
}

int main(void) {
    dl_rng_seed(&rng, 11);
    dl_nn_seed(5);
    RUN(test_updates_exact);
    RUN(test_optimizers);
    RUN(test_clip_functions);
    RUN(test_fit);
    RUN(test_fit_nan);
    RUN(test_save_load);
    RUN(test_move_round_trip);
    RUN(test_errors);
    dl_arena_free_default();
    return test_summary();
}
