/* tests/dl_impl.c - the implementation of every dl header, in one object, compiled once per
   build configuration and linked into programs compiled with -DDL_IMPLEMENTATION_ELSEWHERE (their
   own "#define DL_IMPLEMENTATION" is then ignored): the tests (tests/run.sh, once for -O2 and
   once for ASan+UBSan) and the examples (the Makefile's build/dl_impl.o). This is the two-file
   pattern of the headers' documentation; the programs still build alone too.

   -DDL_TEST_COUNT_ALLOC (tests/run.sh) routes the allocations through tests/count_alloc.h,
   whose counters then live here for the tests to read. stb_image.h and stb_image_write.h, when
   installed (Debian: libstb-dev), come first, so that dl_image_folder_load and dl_env_save_png
   exist for the programs that include stb themselves; they are compiled in as private (static)
   copies, so that those programs keep their own STB_*_IMPLEMENTATION without a clash. */
#ifdef DL_TEST_COUNT_ALLOC
#define DL_TEST_COUNT_ALLOC_HERE
#include "count_alloc.h"
#endif

#if defined(__has_include)
#if __has_include(<stb/stb_image.h>) && __has_include(<stb/stb_image_write.h>)
#define DL_IMPL_HAVE_STB 1
#endif
#endif
#ifdef DL_IMPL_HAVE_STB
#if defined(__GNUC__)   /* stb's headers are not written for -Wextra */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#endif
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
/* stb_image.h declares stbi_set_unpremultiply_on_load_thread but never defines it; as a static
   declaration that is -Wunused-function, reported at the end of the file, after the pop. */
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
#endif

#define DL_IMPLEMENTATION
#include "../dl_tensor.h"
#include "../dl_optim.h"
#include "../dl_nn.h"
#include "../dl_gan.h"
#include "../dl_rl.h"
