# Warnings are errors in resblocks' own targets (tests, benchmarks, examples), never in users'.
function(resblocks_strict_warnings target)
  if(MSVC)
    target_compile_options(${target} PRIVATE /W4 /WX)
  else()
    target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Werror)
  endif()
endfunction()

# Whether a header's includes reach Eigen (<Eigen/...> directly, or through other headers under
# <include_dir>), remembered per header in a global property.
function(_resblocks_reaches_eigen header include_dir out)
  get_property(_known GLOBAL PROPERTY "_resblocks_eigen:${header}" SET)
  if(_known)
    get_property(_r GLOBAL PROPERTY "_resblocks_eigen:${header}")
    set(${out} ${_r} PARENT_SCOPE)
    return()
  endif()
  set_property(GLOBAL PROPERTY "_resblocks_eigen:${header}" OFF)  # an include cycle ends here
  set(_r OFF)
  file(STRINGS "${header}" _includes REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]")
  foreach(_line IN LISTS _includes)
    string(REGEX REPLACE "^[^<\"]*[<\"]([^>\"]+)[>\"].*" "\\1" _inc "${_line}")
    if(_inc MATCHES "^Eigen/")
      set(_r ON)
    elseif(EXISTS "${include_dir}/${_inc}")
      _resblocks_reaches_eigen("${include_dir}/${_inc}" "${include_dir}" _sub)
      if(_sub)
        set(_r ON)
      endif()
    endif()
    if(_r)
      break()
    endif()
  endforeach()
  set_property(GLOBAL PROPERTY "_resblocks_eigen:${header}" ${_r})
  set(${out} ${_r} PARENT_SCOPE)
endfunction()

# Every header of the INTERFACE library <target>'s HEADERS file set (base directory <include_dir>)
# compiles on its own, warning-free: one generated TU per header (`#include <resblocks/...>` and nothing
# else) in the object library <target>_header_check, built by the custom target resblocks_verify_headers.
# This is CMake's VERIFY_INTERFACE_HEADER_SETS, plus one saving: a header whose includes reach Eigen
# anyway gets <Eigen/Core> from a precompiled header (the declarations it sees either way, parsed once
# instead of once per header: about 0.9 of each TU's 1.3-1.7 CPU-s); the few others compile without it,
# so a missing standard include is still caught there.
function(resblocks_verify_headers target include_dir)
  get_target_property(_headers ${target} HEADER_SET)
  set(_verify ${target}_header_check)
  set(_with_eigen "")
  set(_plain "")
  foreach(_h IN LISTS _headers)
    file(RELATIVE_PATH _rel "${include_dir}" "${_h}")
    set(_tu "${CMAKE_CURRENT_BINARY_DIR}/${_verify}/${_rel}.cpp")
    file(CONFIGURE OUTPUT "${_tu}" CONTENT "#include <${_rel}>\n")
    _resblocks_reaches_eigen("${_h}" "${include_dir}" _eigen)
    if(_eigen)
      list(APPEND _with_eigen "${_tu}")
    else()
      list(APPEND _plain "${_tu}")
    endif()
  endforeach()
  add_library(${_verify} OBJECT ${_with_eigen} ${_plain})
  target_link_libraries(${_verify} PRIVATE ${target})
  set_target_properties(${_verify} PROPERTIES UNITY_BUILD OFF)
  if(MSVC)
    target_compile_options(${_verify} PRIVATE /W4 /WX)
  else()
    target_compile_options(${_verify} PRIVATE -Wall -Wextra -Wpedantic -Werror -O0)
  endif()
  list(LENGTH _with_eigen _n)
  if(_n GREATER 4)  # below that the precompiled header costs more than it saves
    target_precompile_headers(${_verify} PRIVATE <Eigen/Core>)
    set_source_files_properties(${_plain} TARGET_DIRECTORY ${_verify} PROPERTIES SKIP_PRECOMPILE_HEADERS ON)
  endif()
  if(NOT TARGET resblocks_verify_headers)
    add_custom_target(resblocks_verify_headers ALL)
  endif()
  add_dependencies(resblocks_verify_headers ${_verify})
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
