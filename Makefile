# dl - build, test, install, demo and benchmarks. Everything is written under build/.
#
#   make demo       train an MLP on Fashion-MNIST (examples/mnist_mlp.c; seconds on 2 cores):
#                   summary, 10 epochs, test accuracy, save + reload check, a few images as text
#   make test       every test program (-O2, then ASan+UBSan), the compile checks, the examples'
#                   short runs and the install check (tests/run.sh); T="test_core test_optim"
#                   runs only those (a name may also be test_compile, test_examples, test_install)
#   make bench      GEMM and convolution benchmarks against OpenBLAS
#   make bench-train  Fashion-MNIST MLP and CNN training, dl against PyTorch (bench/train.sh)
#   make bench-rl   environment steps/s and DQN act() latency, dl against Gymnasium, MinAtar and
#                   PyTorch (bench/rl.sh)
#   make bench-gan  one DCGAN training step (batch 256, Fashion-MNIST), dl against PyTorch
#                   (bench/gan.sh)
#   make examples   build every examples/*.c into build/
#   make cuda       the GPU build (needs nvcc and the CUDA toolkit, not a GPU): dl_cuda.cu with nvcc
#                   into build/dl_cuda.o, the implementation with DL_CUDA into build/dl_impl_cuda.o,
#                   and the examples that take --device cuda into build/cuda/ (README, "GPU")
#   make gpu-check  on a machine with an NVIDIA GPU: the GPU test suite against the real kernels,
#                   the MNIST examples trained on the GPU, the GPU benchmarks (tools/gpu_check.sh)
#   make install    the headers to $(PREFIX)/include, with a pkg-config file (lib/pkgconfig/dl.pc)
#                   and a CMake package (lib/cmake/dl: find_package(dl) gives the target dl::dl);
#                   PREFIX (default /usr/local), DESTDIR (staging root), INCLUDEDIR, LIBDIR
#   make uninstall  remove exactly what make install put there (same PREFIX/DESTDIR)
#   make fuzz       build every tests/fuzz_*.c with clang's libFuzzer (+ ASan, UBSan) and run each
#                   for FUZZ_TIME seconds (default 60); FUZZ="fuzz_model" runs only those
#   make clean
#
# demo, test, bench, bench-train, bench-rl and bench-gan first run tools/setup.sh, which installs
# what is missing with apt-get on Debian (compilers; OpenBLAS for bench; PyTorch, python3-torch,
# for bench-train, bench-rl and bench-gan, and Gymnasium + MinAtar from PyPI into a virtual
# environment in build/pyenv for bench-rl), so on a fresh machine these commands are all the
# set-up. What cannot be installed is said, and the benchmark then prints NA for that reference.
# For the demo and bench-gan it also installs the full Fashion-MNIST (dataset-fashion-mnist, into
# /usr/share/datasets/fashion-mnist) where it can; without it the demo trains on the 3000/1000
# subset in data/fashion-mnist and says so.
#
# The examples are built the two-file way: the implementation of every header is compiled once
# (build/dl_impl.o, from tests/dl_impl.c) and each example is compiled with
# -DDL_IMPLEMENTATION_ELSEWHERE, which makes the headers ignore the example's own
# "#define DL_IMPLEMENTATION", and linked with it. Each example still builds alone as well
# (cc -I. examples/x.c -lm -lpthread). One that configures the library itself (its own DL_MALLOC,
# as game_loop.c) is always built alone (the rule: tests/own_impl.sh).
#
# Fuzzing: build/fuzz/NAME is tests/NAME.c built with $(FUZZ_CC) (default clang); it runs on the
# corpus build/fuzz/NAME.corpus (kept between runs: what libFuzzer finds is added there), seeded
# from tests/fuzz_corpus/NAME/ (valid inputs, checked in) when that directory exists, and from
# tests/fuzz_corpus/NAME.sh (a script that writes seeds into the directory given as its argument)
# when that exists; a harness with neither starts from nothing, with a warning. A new harness
# tests/fuzz_x.c needs only its seeds there. Crashes are written as build/fuzz/NAME-crash-*;
# FUZZ_FLAGS adds libFuzzer options (e.g. FUZZ_FLAGS=-max_len=65536). Stops at the first harness
# that finds something.
#
# Variables: CC (default cc), CFLAGS, ARGS (for the demo, e.g. ARGS="--epochs 5 --threads 1"),
# T (for make test), and for tests/run.sh: JOBS (programs at a time), ASAN=0 (skip the sanitizer
# pass).

CC      ?= cc
CFLAGS  ?= -std=c99 -O2 -Wall -Wextra -Wpedantic
LDLIBS   = -lm -lpthread
HEADERS  = $(wildcard dl_*.h)
EXAMPLES = $(patsubst examples/%.c,build/%,$(wildcard examples/*.c))
# Examples that need their own copy of the implementation, and those linked with build/dl_impl.o.
EXAMPLES_OWN    = $(patsubst examples/%.c,build/%,$(shell bash tests/own_impl.sh examples/*.c))
EXAMPLES_SHARED = $(filter-out $(EXAMPLES_OWN),$(EXAMPLES))

PREFIX     ?= /usr/local
INCLUDEDIR ?= $(PREFIX)/include
LIBDIR     ?= $(PREFIX)/lib
DESTDIR    ?=
INSTALL_ENV = PREFIX="$(PREFIX)" INCLUDEDIR="$(INCLUDEDIR)" LIBDIR="$(LIBDIR)" DESTDIR="$(DESTDIR)"

FUZZ_CC    ?= clang
FUZZ_TIME  ?= 60
FUZZ_FLAGS ?=
FUZZ       ?= $(patsubst tests/%.c,%,$(wildcard tests/fuzz_*.c))

# OpenBLAS' cblas.h: Debian's multiarch directory is searched by default; else look for it.
BLAS_INC = $(if $(wildcard /usr/include/cblas.h /usr/include/*-linux-gnu/cblas.h),,\
             $(addprefix -I,$(firstword $(dir $(wildcard /usr/include/openblas/cblas.h \
             /usr/include/*-linux-gnu/openblas-pthread/cblas.h)))))
BENCH_ENV = env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE
BENCHES   = $(patsubst bench/%.c,build/bench_%,$(wildcard bench/gemm.c bench/conv.c))

.PHONY: all demo test bench bench-train bench-rl bench-gan examples setup install uninstall fuzz clean cuda gpu-check
all: examples

setup:
	@bash tools/setup.sh

# mnist_mlp picks the data itself: the full set when installed, else the subset (with a note).
demo:
	@bash tools/setup.sh --demo
	@$(MAKE) --no-print-directory build/mnist_mlp
	./build/mnist_mlp $(ARGS)

test: setup
	bash tests/run.sh $(T)

examples: $(EXAMPLES)

# The implementation of every header, compiled once for the examples. It has PNG and image
# loading only when stb is installed, so it depends on a stamp named after that: installing
# libstb-dev after a build rebuilds it (else the examples that save PNGs do not link).
STB_STAMP := build/.stb-$(if $(wildcard /usr/include/stb/stb_image.h /usr/local/include/stb/stb_image.h),yes,no)
$(STB_STAMP): | build
	rm -f build/.stb-*; touch $@

build/dl_impl.o: tests/dl_impl.c $(HEADERS) $(STB_STAMP) | build
	$(CC) $(CFLAGS) -I. -c tests/dl_impl.c -o $@

$(EXAMPLES_SHARED): build/%: examples/%.c build/dl_impl.o $(HEADERS) | build
	$(CC) $(CFLAGS) -I. -DDL_IMPLEMENTATION_ELSEWHERE $< build/dl_impl.o -o $@ $(LDLIBS)

$(EXAMPLES_OWN): build/%: examples/%.c $(HEADERS) | build
	$(CC) $(CFLAGS) -I. $< -o $@ $(LDLIBS)

bench:
	@bash tools/setup.sh --bench
	@$(MAKE) --no-print-directory $(BENCHES)
	@for b in $(BENCHES); do echo "== $$b"; $(BENCH_ENV) ./$$b || exit 1; done

bench-train:
	@bash tools/setup.sh --torch
	bash bench/train.sh $(ARGS)

bench-rl:
	@bash tools/setup.sh --torch --gym
	bash bench/rl.sh $(ARGS)

bench-gan:
	@bash tools/setup.sh --torch --demo
	bash bench/gan.sh $(ARGS)

build/bench_gemm: bench/gemm.c $(HEADERS) | build
	$(CC) -O2 $(BLAS_INC) -I. bench/gemm.c -o $@ -lopenblas -lpthread -lm

build/bench_conv: bench/conv.c $(HEADERS) | build
	$(CC) -O2 -I. bench/conv.c -o $@ -lm -lpthread

# The GPU build. CUDA_ARCH: the GPUs to compile for (default: A100 and H100/H200 machine code,
# plus PTX that newer GPUs compile at load time).
NVCC       ?= $(or $(shell command -v nvcc 2>/dev/null),/usr/local/cuda/bin/nvcc)
CUDA_HOME  ?= $(patsubst %/bin/nvcc,%,$(NVCC))
CUDA_ARCH  ?= -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
CUDA_LDLIBS = -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublas -lstdc++
CUDA_EXAMPLES = $(addprefix build/cuda/,$(shell grep -l -- '--device' examples/*.c 2>/dev/null | xargs -r -n1 basename | sed 's/\.c$$//'))

cuda: build/dl_cuda.o build/dl_impl_cuda.o $(CUDA_EXAMPLES)

build/dl_cuda.o: dl_cuda.cu dl_tensor.h | build
	$(NVCC) -O2 $(CUDA_ARCH) -Xcompiler -Wall,-Wextra -I. -c dl_cuda.cu -o $@

build/dl_impl_cuda.o: tests/dl_impl.c $(HEADERS) $(STB_STAMP) | build
	$(CC) $(CFLAGS) -DDL_CUDA -I. -c tests/dl_impl.c -o $@

build/cuda/%: examples/%.c build/dl_impl_cuda.o build/dl_cuda.o $(HEADERS) | build/cuda
	$(CC) $(CFLAGS) -DDL_CUDA -DDL_IMPLEMENTATION_ELSEWHERE -I. $< build/dl_impl_cuda.o build/dl_cuda.o -o $@ $(CUDA_LDLIBS) $(LDLIBS)

gpu-check:
	bash tools/gpu_check.sh

install:
	@$(INSTALL_ENV) bash tools/install.sh install

uninstall:
	@$(INSTALL_ENV) bash tools/install.sh uninstall

# Every harness is built first (a build error stops before any time is spent fuzzing).
fuzz: $(addprefix build/fuzz/,$(FUZZ))
	@for f in $(FUZZ); do \
	    corpus=build/fuzz/$$f.corpus seeds=; mkdir -p $$corpus; \
	    if [ -d tests/fuzz_corpus/$$f ]; then seeds=tests/fuzz_corpus/$$f; fi; \
	    if [ -f tests/fuzz_corpus/$$f.sh ]; then \
	        rm -rf build/fuzz/$$f.seeds; mkdir -p build/fuzz/$$f.seeds; \
	        bash tests/fuzz_corpus/$$f.sh build/fuzz/$$f.seeds || exit 1; \
	        seeds="$$seeds build/fuzz/$$f.seeds"; \
	    fi; \
	    [ -n "$$seeds" ] || echo "fuzz: warning: no seeds for $$f (tests/fuzz_corpus/$$f/ or $$f.sh)"; \
	    echo "== $$f: $(FUZZ_TIME) s on $$corpus $$seeds"; \
	    ./build/fuzz/$$f -max_total_time=$(FUZZ_TIME) -artifact_prefix=build/fuzz/$$f- \
	        $(FUZZ_FLAGS) $$corpus $$seeds || { echo "fuzz: $$f found a problem (build/fuzz/$$f-*)"; exit 1; }; \
	done

build/fuzz/%: tests/%.c $(HEADERS) tests/fuzz_alloc.h | build/fuzz
	$(FUZZ_CC) -std=c99 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	    -I. $< -o $@ -lm -lpthread

build build/fuzz build/cuda:
	mkdir -p $@

clean:
	rm -rf build
