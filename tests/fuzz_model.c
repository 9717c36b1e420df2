/* libFuzzer harness for the model-file loader, dl_model_parse (what dl_model_load runs on a
   file's bytes), built only on request:

     clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz_model.c -o build/fuzz_model -lm -lpthread
     mkdir -p build/fuzz_model_corpus && cp tests/fuzz_corpus/fuzz_model/[a-z]*.safetensors build/fuzz_model_corpus
     ./build/fuzz_model -max_total_time=600 -max_len=8192 build/fuzz_model_corpus

   The seeds in tests/fuzz_corpus/fuzz_model/ (a small Sequential MLP compiled with its Adam
   state, a functional graph with a skip connection, a conv net, an LSTM) are made by
   tools/make_fuzz_corpus.c:

     cc -std=c99 -I. tools/make_fuzz_corpus.c -o build/make_fuzz_corpus -lm -lpthread
     ./build/make_fuzz_corpus tests/fuzz_corpus/fuzz_model

   Any crash, sanitizer report, leak, allocation above 8x the input + 1 MiB (activations are
   capped at 4096 values per sample here), symbol left registered after a load, or failure
   without a message is a bug. A model that loads must run on a batch of two and save and load
   again. */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_alloc.h"
#define DL_MODEL_LOAD_MAX_VALUES 4096L
#ifndef DL_NO_THREADS
#define DL_NO_THREADS
#endif
#define DL_IMPLEMENTATION
#include "../dl_nn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dl_model *m;
    fuzz_limit = 8 * size + ((size_t)1 << 20);
    dl_clear_error();
    m = dl_model_parse(data, size);
    if (!m && dl_error()[0] == 0) abort();   /* every failure has a message */
    if (dl__free_syms) abort();              /* a load leaves nothing for dl_sym_free_unused */
    if (m && m->n_inputs <= 1 && m->kind != DL__CUSTOM) {   /* a loaded model runs, and saves and loads again */
        int shape[DL_MAX_DIMS], i;
        dl_tensor *x, *y;
        dl_model *again;
        size_t n;
        void *buf;
        shape[0] = 2;
        for (i = 0; i < m->in_ndim; i++) shape[1 + i] = m->in_shape[i];
        x = dl_tmp(m->in_dtype, 1 + m->in_ndim, shape);
        y = x ? dl_model_call(m, x, 0) : NULL;
        (void)y;
        dl_arena_reset(dl_arena_current());
        n = dl_model_serialize(m, 1, NULL, 0);
        if (!n) abort();
        fuzz_limit += 2 * n;
        buf = malloc(n);
        if (dl_model_serialize(m, 1, buf, n) != n) abort();
        again = dl_model_parse(buf, n);
        if (!again) { fprintf(stderr, "a loaded model does not load again: %s\n", dl_error()); abort(); }
        dl_model_free(again);
        free(buf);
    }
    dl_model_free(m);
    dl_arena_free_default();
    dl_clear_error();
    return 0;
}
