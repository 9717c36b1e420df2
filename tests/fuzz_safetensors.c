/* libFuzzer harness for the safetensors reader (built only on request):

     clang -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz_safetensors.c -o build/fuzz_safetensors -lm -lpthread
     mkdir -p build/fuzz_corpus && cp tests/data/[a-z]*.safetensors build/fuzz_corpus
     ./build/fuzz_safetensors -max_total_time=60 -max_len=4096 build/fuzz_corpus

   Any crash, sanitizer report, leak, or allocation above 8x the input (+1 KiB) is a bug. */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_alloc.h" /* an allocation over 8 bytes per input byte + 1 KiB aborts */
#define DL_IMPLEMENTATION
#include "../dl_tensor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dl_safetensors *st;
    int i;
    fuzz_limit = 8 * size + 1024;
    st = dl_safetensors_parse(data, size);
    if (!st && dl_error()[0] == 0) abort(); /* every failure has a message */
    for (i = 0; i < dl_safetensors_num_tensors(st); i++) { /* touch everything a caller could */
        const dl_tensor *t = dl_safetensors_get(st, dl_safetensors_name(st, i));
        size_t k, bytes = t->numel * dl_dtype_size(t->dtype);
        volatile unsigned char sink = 0;
        for (k = 0; k < bytes; k++) sink ^= ((const unsigned char *)t->data)[k];
        (void)sink;
    }
    for (i = 0; i < dl_safetensors_num_meta(st); i++) (void)strlen(dl_safetensors_meta(st, dl_safetensors_meta_key(st, i)));
    dl_safetensors_free(st);
    dl_clear_error();
    return 0;
}
