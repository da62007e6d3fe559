# Warnings are errors in resblocks' own targets (tests, benchmarks, examples), never in users'.
function(resblocks_strict_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 /WX)
  else()
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
  endif()
endfunction()

# Builds a target for this CPU (-march=native). GCC 12 then warns falsely inside its own
# avx512fintrin.h (`__m512 __Y = __Y;`, GCC PR 105593) where Eigen's packet transposes are
# inlined: those two warnings are off for such targets; nothing in our code triggers them.
function(resblocks_native target)
  target_compile_options(${target} PRIVATE -march=native)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(${target} PRIVATE -Wno-uninitialized -Wno-maybe-uninitialized)
  endif()
endfunction()
