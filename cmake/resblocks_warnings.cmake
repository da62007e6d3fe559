# Warnings are errors in resblocks' own targets (tests, benchmarks, examples), never in users'.
function(resblocks_strict_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 /WX)
  else()
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
  endif()
endfunction()

# VERIFY_INTERFACE_HEADER_SETS on the INTERFACE library <target>: CMake generates the target
# <target>_verify_interface_header_sets (one TU per header, built by all_verify_interface_header_sets).
# The strict warnings reach that generated target, and only it, through a genex on its name; they are
# build-tree only ($<BUILD_INTERFACE>), so neither a parent project nor the installed package sees them.
function(resblocks_verify_headers target)
  set_target_properties(${target} PROPERTIES VERIFY_INTERFACE_HEADER_SETS ON)
  if(MSVC)
    set(_flags /W4 /WX)
  else()
    set(_flags -Wall -Wextra -Wpedantic -Werror -O0)
  endif()
  target_compile_options(${target} INTERFACE
    "$<BUILD_INTERFACE:$<$<STREQUAL:$<TARGET_PROPERTY:NAME>,${target}_verify_interface_header_sets>:${_flags}>>")
endfunction()

# Builds a target for this CPU: links resblocks::native (-march=native). GCC 12 then warns falsely
# inside its own avx512fintrin.h (`__m512 __Y = __Y;`, GCC PR 105593) where Eigen's packet transposes
# are inlined: those two warnings are off for such targets; nothing in our code triggers them.
function(resblocks_native target)
  target_link_libraries(${target} PRIVATE resblocks::native)

  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    target_compile_options(${target} PRIVATE -Wno-uninitialized -Wno-maybe-uninitialized)
  endif()
endfunction()
