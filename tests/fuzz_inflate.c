/* tests/fuzz_inflate.c - libFuzzer harness for dl_nn.h's inflate, gunzip and IDX/CSV parsers.
   Not part of tests/run.sh (it needs clang's libFuzzer). Build and run on request:
     clang -std=c99 -g -O1 -fsanitize=fuzzer,address,undefined -I. tests/fuzz_inflate.c -o build/fuzz_inflate -lm -lpthread
     mkdir -p build/fuzz_inflate_corpus && for f in tests/data/nn_*.gz; do
         { printf '\001'; cat $f; } > build/fuzz_inflate_corpus/$(basename $f); done
     build/fuzz_inflate build/fuzz_inflate_corpus -max_total_time=60 -max_len=4096
   The first input byte picks the target: raw inflate into a 64 KiB buffer, gunzip, IDX, CSV. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Any crash, sanitizer report, leak, or allocation beyond what the input justifies (gzip:
   deflate's 1032:1 bound; IDX/CSV: 8 bytes per input byte, plus 4 KiB) is a bug. */
#include "fuzz_alloc.h"

#define DL_IMPLEMENTATION
#include "../dl_tensor.h"
#include "../dl_optim.h"
#include "../dl_nn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static unsigned char out[1 << 16];
    size_t got, used;
    if (size == 0) return 0;
    fuzz_limit = ((data[0] & 3) == 1 ? 1032 : 8) * size + 4096;
    switch (data[0] & 3) {
    case 0:
        if (dl_inflate(data + 1, size - 1, out, sizeof out, &got, &used) == 0 && (got > sizeof out || used > size - 1)) abort();
        break;
    case 1: {
        void *p = dl_gunzip(data + 1, size - 1, 1 << 20, &got);
        free(p);
        break;
    }
    case 2: { /* images and labels from one buffer, split at the second byte */
        size_t cut = size > 2 ? data[1] % (size - 1) : 0;
        dl_dataset_free(dl_idx_parse(data + 2, cut > 1 ? cut - 1 : 0, data + 1 + cut, size - 1 - cut));
        break;
    }
    default: {
        dl_csv_opts o = {0, 0, 0, 0, 0};
        o.header = data[0] >> 7;
        o.label_col = (data[0] >> 4 & 1) ? -1 : 0;
        dl_dataset_free(dl_csv_parse((const char *)data + 1, size - 1, &o));
        break;
    }
    }
    return 0;
}
