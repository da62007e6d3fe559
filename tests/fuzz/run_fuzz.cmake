# Builds one libFuzzer harness of this folder with Clang (ASan + UBSan) and runs it for a bounded time
# from the committed seeds: the fuzz tests of a build whose own compiler is GCC (CTest fuzz:<parser>;
# a Clang build makes them targets of its own, see CMakeLists.txt here).
#   cmake -DCLANG=<clang++> -DPARSER=safetensors|idx -DSOURCE_DIR=<repo> -DEIGEN_INCLUDE=<dir>
#         -DWORK_DIR=<dir> -DSECONDS=<n> -P run_fuzz.cmake
# New inputs go to WORK_DIR/found, never to the source tree. Fails on a crash, a sanitizer report,
# a leak, a timeout of one input (10 s) or more than 2 GB of memory, and prints the reproducer's path.
foreach(var CLANG PARSER SOURCE_DIR EIGEN_INCLUDE WORK_DIR SECONDS)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_fuzz: -D${var}=... is required")
  endif()
endforeach()
set(_exe "${WORK_DIR}/fuzz_${PARSER}")
set(_found "${WORK_DIR}/found")
file(MAKE_DIRECTORY "${_found}")
set(_libs "")
if(PARSER STREQUAL "idx")
  set(_libs -lz)
endif()
execute_process(
  COMMAND "${CLANG}" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
          -Wall -Wextra -Wpedantic -Werror -I${SOURCE_DIR}/include -isystem ${EIGEN_INCLUDE}
          ${SOURCE_DIR}/tests/fuzz/fuzz_${PARSER}.cpp ${_libs} -o ${_exe}
  RESULT_VARIABLE _rc ERROR_VARIABLE _err)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "run_fuzz: ${CLANG} could not build fuzz_${PARSER}:\n${_err}")
endif()
execute_process(
  COMMAND ${_exe} -max_total_time=${SECONDS} -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
          -artifact_prefix=${WORK_DIR}/ ${_found} ${SOURCE_DIR}/tests/fuzz/corpus/${PARSER}
  RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _log)
string(REGEX MATCH "stat::number_of_executed_units: *[0-9]+" _runs "${_log}")
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "run_fuzz: fuzz_${PARSER} failed (exit ${_rc}); the input is under ${WORK_DIR}/:\n${_log}")
endif()
message(STATUS "run_fuzz: fuzz_${PARSER}, ${SECONDS} s: ${_runs}, no crash, sanitizer report, leak or hang")
