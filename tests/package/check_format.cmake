# The tree is formatted as .clang-format says: clang-format --dry-run --Werror over every C++ file
# of include/, src/, tests/, examples/ and bench/. Run by CTest format:clang_format:
#   cmake -DCLANG_FORMAT=<clang-format> -DSOURCE_DIR=<repo> -P check_format.cmake
# Fix a failure with: clang-format -i <the files it names>
foreach(var CLANG_FORMAT SOURCE_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_format: -D${var}=... is required")
  endif()
endforeach()
set(_files "")
foreach(dir include src tests examples bench)
  file(GLOB_RECURSE _found "${SOURCE_DIR}/${dir}/*.hpp" "${SOURCE_DIR}/${dir}/*.cpp" "${SOURCE_DIR}/${dir}/*.h")
  list(APPEND _files ${_found})
endforeach()
list(LENGTH _files _count)
if(_count EQUAL 0)
  message(FATAL_ERROR "check_format: no C++ files under ${SOURCE_DIR}")
endif()
execute_process(COMMAND "${CLANG_FORMAT}" --dry-run --Werror --style=file ${_files}
                WORKING_DIRECTORY "${SOURCE_DIR}" RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
if(NOT _rc EQUAL 0)
  string(REGEX MATCHALL "[^\n]*: error: code should be clang-formatted[^\n]*" _where "${_err}")
  list(TRANSFORM _where REPLACE ":[0-9]+:[0-9]+: error: code should be clang-formatted.*" "")
  list(REMOVE_DUPLICATES _where)
  string(REPLACE ";" "\n  " _list "${_where}")
  message(FATAL_ERROR "check_format: not formatted as .clang-format says (fix: clang-format -i FILE):\n  ${_list}\n${_err}")
endif()
message(STATUS "check_format: ${_count} files formatted as .clang-format says")
