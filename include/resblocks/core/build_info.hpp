#pragma once
/// \file
/// \brief What the calling translation unit was compiled with: resblocks' and Eigen's versions, the SIMD
/// instruction sets Eigen's kernels use, and OpenMP. A program prints `build_info()` to show whether
/// it got the vectorised kernels the benchmarks measure (AVX2 / AVX-512) or a portable SSE2 build.

#include "resblocks/core/threading.hpp"

#include <Eigen/Core>

#include <string>

/// resblocks' version; equals CMake's project() version, vcpkg.json's and conanfile.py's
/// (the CTest `package:versions_agree` checks it).
#define RESBLOCKS_VERSION_MAJOR 0
#define RESBLOCKS_VERSION_MINOR 1
#define RESBLOCKS_VERSION_PATCH 0
#define RESBLOCKS_VERSION_STRING "0.1.0"

namespace resblocks {

/// The SIMD instruction sets Eigen vectorises with in this translation unit, widest first, e.g.
/// "AVX512F AVX2 FMA AVX SSE4.2 SSE2", or "none". Decided by the compiler flags (-march, /arch).
/// \returns the names, each followed by a space ("none " without vectorisation)
[[nodiscard]] inline const char* simd_instruction_sets() noexcept {
  return ""
#if defined(EIGEN_VECTORIZE_AVX512)
         "AVX512F "
#endif
#if defined(EIGEN_VECTORIZE_AVX2)
         "AVX2 "
#endif
#if defined(EIGEN_VECTORIZE_FMA)
         "FMA "
#endif
#if defined(EIGEN_VECTORIZE_AVX)
         "AVX "
#endif
#if defined(EIGEN_VECTORIZE_SSE4_2)
         "SSE4.2 "
#endif
#if defined(EIGEN_VECTORIZE_SSE2)
         "SSE2 "
#endif
#if defined(EIGEN_VECTORIZE_SVE)
         "SVE "
#endif
#if defined(EIGEN_VECTORIZE_NEON)
         "NEON "
#endif
#if defined(EIGEN_VECTORIZE_VSX)
         "VSX "
#elif defined(EIGEN_VECTORIZE_ALTIVEC)
         "AltiVec "
#endif
#if !defined(EIGEN_VECTORIZE)
         "none "
#endif
      ;
}

/// True when Eigen uses AVX2 or AVX-512 here: the build the README's performance figures measure.
inline constexpr bool wide_simd =
#if defined(EIGEN_VECTORIZE_AVX2) || defined(EIGEN_VECTORIZE_AVX512)
    true;
#else
    false;
#endif

/// One line for a program's log, e.g. "resblocks 0.1.0, Eigen 3.4.0, SIMD: AVX512F AVX2 FMA AVX SSE4.2
/// SSE2, OpenMP: 2 threads". On x86-64 without AVX2 it adds how to get the vectorised kernels.
/// \returns the line, without a trailing newline
[[nodiscard]] inline std::string build_info() {
  std::string s = "resblocks " RESBLOCKS_VERSION_STRING ", Eigen ";
#if defined(EIGEN_VERSION_STRING)  // Eigen 5 (semantic versions: EIGEN_WORLD_VERSION stays 3)
  s += EIGEN_VERSION_STRING;
#else
  s += std::to_string(EIGEN_WORLD_VERSION) + '.' + std::to_string(EIGEN_MAJOR_VERSION) + '.' +
       std::to_string(EIGEN_MINOR_VERSION);
#endif
  std::string simd = simd_instruction_sets();
  if (!simd.empty() && simd.back() == ' ') simd.pop_back();
  s += ", SIMD: " + simd;
#if defined(_OPENMP)
  s += ", OpenMP: " + std::to_string(num_threads()) + " threads";
#else
  s += ", OpenMP: off (1 thread)";
#endif
#if defined(__x86_64__) || defined(_M_X64)
  if (!wide_simd)
    s += " (no AVX2/AVX-512: link resblocks::native or compile with -march=native for the vectorised kernels)";
#endif
  return s;
}

}  // namespace resblocks
