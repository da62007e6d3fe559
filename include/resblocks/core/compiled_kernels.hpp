#pragma once
/// \file
/// \brief The compiled-kernels mode: heavy float/double kernels compiled once, in a library.
///
/// By default resblocks is header-only: every translation unit compiles the kernels it uses. With
/// CMake's `resblocks::kernels` target (the library `resblocks_kernels`), `RESBLOCKS_COMPILED_KERNELS`
/// is defined and the headers declare the float and double instances of the heavy kernels
/// (Linear, Conv2d, BatchNorm2d, LayerNorm with dynamic sizes, the GEMM driver, the direct and im2col
/// convolution kernels) `extern template`: a program compiles only its own code and links the
/// kernels, which cuts the compile time of a training program by more than half (see the README's
/// build-cost table). The results are the same bits in both modes.
///
/// The library and its users must be compiled for the same instruction sets (Eigen's alignment and
/// kernel choice depend on them): each user translation unit references a symbol named after its
/// instruction sets, so a mismatch fails at link time (`resblocks_kernels_built_for_avx512f` …
/// undefined) instead of misbehaving at run time. Link `resblocks::native` to both, or to neither.

/// Expands to `extern template <declaration>;` in the compiled-kernels mode, to nothing otherwise.
#if defined(RESBLOCKS_COMPILED_KERNELS)
#define RESBLOCKS_EXTERN_KERNEL(...) extern template __VA_ARGS__;
#else
#define RESBLOCKS_EXTERN_KERNEL(...)
#endif

/// The instruction-set tag of this translation unit (the widest SIMD level Eigen uses).
#if defined(__AVX512F__)
#define RESBLOCKS_KERNELS_ISA_TAG resblocks_kernels_built_for_avx512f
#elif defined(__AVX2__) && defined(__FMA__)
#define RESBLOCKS_KERNELS_ISA_TAG resblocks_kernels_built_for_avx2_fma
#elif defined(__AVX__)
#define RESBLOCKS_KERNELS_ISA_TAG resblocks_kernels_built_for_avx
#else
#define RESBLOCKS_KERNELS_ISA_TAG resblocks_kernels_built_for_baseline
#endif

extern "C" {
/// Defined by the kernels library for the instruction sets it was compiled for.
extern const int RESBLOCKS_KERNELS_ISA_TAG;
}

#if defined(RESBLOCKS_COMPILED_KERNELS)
namespace resblocks::detail {
/// Makes every user translation unit reference the library's instruction-set tag (see above).
[[gnu::used]] static const int* const kernels_isa_check = &RESBLOCKS_KERNELS_ISA_TAG;
}  // namespace resblocks::detail
#endif
