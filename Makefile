# dl - build, test, demo and benchmarks. Everything is written under build/.
#
#   make demo       train an MLP on Fashion-MNIST (examples/mnist_mlp.c; seconds on 2 cores):
#                   summary, 10 epochs, test accuracy, save + reload check, a few images as text
#   make test       every test program (-O2, then ASan+UBSan) and the compile checks
#   make bench      GEMM and convolution benchmarks against OpenBLAS
#   make bench-train  Fashion-MNIST MLP and CNN training, dl against PyTorch (bench/train.sh)
#   make bench-rl   environment steps/s and DQN act() latency, dl against Gymnasium, MinAtar and
#                   PyTorch (bench/rl.sh)
#   make examples   build every examples/*.c into build/
#   make clean
#
# demo, test and bench first run tools/setup.sh, which installs missing compilers (and OpenBLAS
# for bench) with apt-get on Debian, so on a fresh machine these commands are all the set-up.
# For the demo it also installs the full Fashion-MNIST (dataset-fashion-mnist, into
# /usr/share/datasets/fashion-mnist) where it can; without it the demo trains on the 3000/1000
# subset in data/fashion-mnist and says so.
# Variables: CC (default cc), CFLAGS, ARGS (for the demo, e.g. ARGS="--epochs 5 --threads 1"),
# and for tests/run.sh: JOBS (programs at a time), ASAN=0 (skip the sanitizer pass).

CC      ?= cc
CFLAGS  ?= -std=c99 -O2 -Wall -Wextra -Wpedantic
LDLIBS   = -lm -lpthread
HEADERS  = $(wildcard dl_*.h)
EXAMPLES = $(patsubst examples/%.c,build/%,$(wildcard examples/*.c))

# OpenBLAS' cblas.h: Debian's multiarch directory is searched by default; else look for it.
BLAS_INC = $(if $(wildcard /usr/include/cblas.h /usr/include/*-linux-gnu/cblas.h),,\
             $(addprefix -I,$(firstword $(dir $(wildcard /usr/include/openblas/cblas.h \
             /usr/include/*-linux-gnu/openblas-pthread/cblas.h)))))
BENCH_ENV = env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE
BENCHES   = $(patsubst bench/%.c,build/bench_%,$(wildcard bench/gemm.c bench/conv.c))

.PHONY: all demo test bench bench-train bench-rl examples setup clean
all: examples

setup:
	@bash tools/setup.sh

# mnist_mlp picks the data itself: the full set when installed, else the subset (with a note).
demo:
	@bash tools/setup.sh --demo
	@$(MAKE) --no-print-directory build/mnist_mlp
	./build/mnist_mlp $(ARGS)

test: setup
	bash tests/run.sh

examples: $(EXAMPLES)

build/%: examples/%.c $(HEADERS) | build
	$(CC) $(CFLAGS) -I. $< -o $@ $(LDLIBS)

bench:
	@bash tools/setup.sh --bench
	@$(MAKE) --no-print-directory $(BENCHES)
	@for b in $(BENCHES); do echo "== $$b"; $(BENCH_ENV) ./$$b || exit 1; done

bench-train:
	@bash tools/setup.sh
	bash bench/train.sh $(ARGS)

bench-rl:
	@bash tools/setup.sh
	bash bench/rl.sh $(ARGS)

build/bench_gemm: bench/gemm.c $(HEADERS) | build
	$(CC) -O2 $(BLAS_INC) -I. bench/gemm.c -o $@ -lopenblas -lpthread -lm

build/bench_conv: bench/conv.c $(HEADERS) | build
	$(CC) -O2 -I. bench/conv.c -o $@ -lm -lpthread

build:
	mkdir -p build

clean:
	rm -rf build
