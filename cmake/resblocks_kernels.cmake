# resblocks::kernels: the compiled-kernels mode (include/resblocks/core/compiled_kernels.hpp). A static
# library with the float and double instances of the heavy kernels (Linear, Conv2d, BatchNorm2d,
# LayerNorm, the GEMM driver, the direct and im2col convolution kernels); a program that links it
# compiles only its own code (RESBLOCKS_COMPILED_KERNELS declares the instances extern). Header-only
# (resblocks::resblocks) stays the default; both give the same bits.
#
# The library and its users must be compiled for the same instruction sets (checked at link time):
# RESBLOCKS_KERNELS_NATIVE=ON builds it with -march=native and passes that flag on (resblocks::native).
# Included from the top-level CMakeLists.txt after the resblocks and resblocks_native targets.
option(RESBLOCKS_BUILD_KERNELS "Build resblocks::kernels, the float/double kernels compiled once" ON)
option(RESBLOCKS_KERNELS_NATIVE "Compile resblocks::kernels (and its users) for this machine (-march=native)" OFF)

set(RESBLOCKS_KERNEL_SOURCES
  "${CMAKE_CURRENT_LIST_DIR}/../src/gemm.cpp"
  "${CMAKE_CURRENT_LIST_DIR}/../src/conv2d_float.cpp"
  "${CMAKE_CURRENT_LIST_DIR}/../src/conv2d_double.cpp"
  "${CMAKE_CURRENT_LIST_DIR}/../src/layers.cpp")

# A kernels library named `target`, linking `resblocks` and whatever else is given (PUBLIC).
function(resblocks_add_kernels target)
  add_library(${target} STATIC ${RESBLOCKS_KERNEL_SOURCES})
  target_link_libraries(${target} PUBLIC resblocks ${ARGN})
  # PUBLIC: the library's own translation units compile only what each instantiates explicitly.
  target_compile_definitions(${target} PUBLIC RESBLOCKS_COMPILED_KERNELS)
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  if(PROJECT_IS_TOP_LEVEL)
    resblocks_strict_warnings(${target})
  else()
    set_target_properties(${target} PROPERTIES EXCLUDE_FROM_ALL ON)  # built only when a target links it
  endif()
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13 AND "resblocks_native" IN_LIST ARGN)
    target_compile_options(${target} PRIVATE -Wno-uninitialized -Wno-maybe-uninitialized)  # see resblocks_native()
  endif()
endfunction()

if(RESBLOCKS_BUILD_KERNELS)
  if(RESBLOCKS_KERNELS_NATIVE)
    resblocks_add_kernels(resblocks_kernels resblocks_native)
  else()
    resblocks_add_kernels(resblocks_kernels)
  endif()
  add_library(resblocks::kernels ALIAS resblocks_kernels)
  set_target_properties(resblocks_kernels PROPERTIES EXPORT_NAME kernels OUTPUT_NAME resblocks_kernels)
  # The project's own -march=native examples link a native twin (not installed).
  if(PROJECT_IS_TOP_LEVEL AND NOT RESBLOCKS_KERNELS_NATIVE AND RESBLOCKS_BUILD_EXAMPLES)
    resblocks_add_kernels(resblocks_kernels_native resblocks_native)
    set_target_properties(resblocks_kernels_native PROPERTIES EXCLUDE_FROM_ALL ON)  # built when linked
  endif()
endif()

# The project's own portable targets (tests) use the compiled kernels when they are built.
function(resblocks_use_kernels target)
  if(TARGET resblocks_kernels AND NOT RESBLOCKS_KERNELS_NATIVE)
    target_link_libraries(${target} PRIVATE resblocks_kernels)
  endif()
endfunction()

# The project's own -march=native targets (examples): resblocks_native(), and the native kernels.
function(resblocks_native_kernels target)
  resblocks_native(${target})
  if(TARGET resblocks_kernels_native)
    target_link_libraries(${target} PRIVATE resblocks_kernels_native)
  elseif(TARGET resblocks_kernels AND RESBLOCKS_KERNELS_NATIVE)
    target_link_libraries(${target} PRIVATE resblocks_kernels)
  endif()
endfunction()
