# resblocks_check_simd(<who>): a configure-time message when the C++ flags in force enable neither
# AVX2 nor AVX-512 (Eigen then vectorises with SSE2 only, several times slower than the benchmarks).
# Never changes a flag. Installed beside resblocksConfig.cmake; one cached try-compile per flag set.
include_guard(GLOBAL)
include(CheckCXXSourceCompiles)
include(CMakePushCheckState)

function(resblocks_check_simd who)
  if(NOT CMAKE_CXX_COMPILER_LOADED OR RESBLOCKS_NO_SIMD_MESSAGE)
    return()
  endif()
  if(CMAKE_SYSTEM_PROCESSOR AND NOT CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|x64|i[3-6]86|x86)$")
    return()  # the check is about x86's AVX2 / AVX-512
  endif()
  string(TOUPPER "${CMAKE_BUILD_TYPE}" _config)
  set(_flags "${CMAKE_CXX_FLAGS} ${CMAKE_CXX_FLAGS_${_config}}")
  set(_which "CMAKE_CXX_FLAGS")
  if(_config)
    string(APPEND _which ", CMAKE_CXX_FLAGS_${_config}")
  endif()
  string(MD5 _key "${CMAKE_CXX_COMPILER};${_flags}")
  string(SUBSTRING "${_key}" 0 12 _key)
  cmake_push_check_state(RESET)
  set(CMAKE_REQUIRED_FLAGS "${_flags}")
  set(CMAKE_REQUIRED_QUIET ON)
  check_cxx_source_compiles([=[
#if !defined(__AVX2__) && !defined(__AVX512F__)
#error neither AVX2 nor AVX-512
#endif
int main() { return 0; }
]=] RESBLOCKS_WIDE_SIMD_${_key})
  cmake_pop_check_state()
  if(NOT RESBLOCKS_WIDE_SIMD_${_key})
    message(NOTICE
      "${who}: the C++ flags (${_which}) enable neither AVX2 nor AVX-512, so "
      "Eigen's kernels use SSE2: about half the speed of an AVX-512 build (README, 'The speed a consumer gets'). "
      "For this machine's "
      "instruction sets link resblocks::native, or pass -march=<cpu> yourself "
      "(RESBLOCKS_NO_SIMD_MESSAGE=ON silences this).")
  endif()
endfunction()
