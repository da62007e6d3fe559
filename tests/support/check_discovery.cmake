# A CTest of its own per test executable: lists its test cases the way catch_discover_tests does and
# fails when that crashed or found none. (Catch2 2.x exits with the number of tests it lists, so
# catch_discover_tests takes a crash at start-up, e.g. a sanitizer aborting, for "N tests" and
# silently registers none.)  cmake -DEXE=<test executable> -P check_discovery.cmake
execute_process(COMMAND "${EXE}" --list-test-names-only
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
# Count the lines (not a CMake list: a ';' in a test name would split it).
string(REGEX REPLACE "[^\n]" "" newlines "${out}")
string(LENGTH "${newlines}" count)
# Catch2 v2 exits with the count (modulo 256: an exit status is a byte), v3 with 0; anything else
# is a crash or an error.
math(EXPR count_byte "${count} % 256")
if(count EQUAL 0 OR NOT (rc STREQUAL "0" OR rc STREQUAL "${count}" OR rc STREQUAL "${count_byte}"))
  message(FATAL_ERROR "test discovery of ${EXE} failed: exit status '${rc}', ${count} test names listed\n${err}")
endif()
message(STATUS "${EXE}: ${count} test cases")
