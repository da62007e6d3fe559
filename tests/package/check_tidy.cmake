# clang-tidy (the checks of .clang-tidy) over resblocks' headers, through the translation units that
# include them: the examples, whose compile commands are in the build tree's compile_commands.json.
# Run by CTest tidy:clang_tidy:
#   cmake -DCLANG_TIDY=<clang-tidy> -DBUILD_DIR=<build tree> -DSOURCE_DIR=<repo> -DFILES="a.cpp;b.cpp" -P check_tidy.cmake
# Any finding in include/resblocks/ fails (WarningsAsErrors); fix it, or if it is a false positive,
# NOLINT(<check>) on the line with the reason beside it.
foreach(var CLANG_TIDY BUILD_DIR SOURCE_DIR FILES)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "check_tidy: -D${var}=... is required")
  endif()
endforeach()
if(NOT EXISTS "${BUILD_DIR}/compile_commands.json")
  message(FATAL_ERROR "check_tidy: no ${BUILD_DIR}/compile_commands.json (configure with CMAKE_EXPORT_COMPILE_COMMANDS=ON)")
endif()
set(_files "")
foreach(f IN LISTS FILES)
  list(APPEND _files "${SOURCE_DIR}/${f}")
endforeach()
# -Wno-unknown-warning-option: the compile commands are GCC's, with options Clang does not know.
# -Wno-unused-command-line-argument: the test preset compiles the examples with GCC-only options
# (--param=ggc-min-heapsize=...), which Clang's driver would report, an error under -Werror.
execute_process(COMMAND "${CLANG_TIDY}" -p "${BUILD_DIR}" --quiet "--config-file=${SOURCE_DIR}/.clang-tidy"
                        --extra-arg=-Wno-unknown-warning-option
                        --extra-arg=-Wno-unused-command-line-argument ${_files}
                WORKING_DIRECTORY "${SOURCE_DIR}" RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "check_tidy: clang-tidy found problems (exit ${_rc}):\n${_out}\n${_err}")
endif()
list(LENGTH _files _count)
message(STATUS "check_tidy: ${_count} translation units, no finding in include/resblocks/")
