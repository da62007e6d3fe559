# Every documented public function documents its parameters and its return value: runs Doxygen with
# docs/Doxyfile-coverage.in (configured into the build tree) and fails on any warning about a missing,
# partial or wrong \param list or \returns. Members without documentation are allowed (the Layer
# concept documents the contract members once): the plain "Member ... is not documented" warnings pass.
# Run by CTest docs:param_coverage:
#   cmake -DDOXYGEN=<doxygen> -DDOXYFILE=<build>/Doxyfile-coverage -DOUTPUT_DIR=<its OUTPUT_DIRECTORY>
#         -P check_doc_coverage.cmake
foreach(var DOXYGEN DOXYFILE OUTPUT_DIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_doc_coverage: -D${var}=... is required")
  endif()
endforeach()

# A fresh output directory (Doxygen creates one level only), so that the man pages checked below are
# this run's.
file(REMOVE_RECURSE "${OUTPUT_DIR}")
file(MAKE_DIRECTORY "${OUTPUT_DIR}")
execute_process(COMMAND "${DOXYGEN}" "${DOXYFILE}" WORKING_DIRECTORY "${OUTPUT_DIR}" RESULT_VARIABLE _rc
                OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "check_doc_coverage: doxygen ${DOXYFILE} failed (exit ${_rc}):\n${_out}${_err}")
endif()
# Doxygen parses the member documentation (and checks \param names) only while it writes an output.
file(GLOB _pages "${OUTPUT_DIR}/man/man3/*")
if(NOT _pages)
  message(FATAL_ERROR "check_doc_coverage: doxygen wrote no man pages into ${OUTPUT_DIR}/man/man3: "
                      "is GENERATE_MAN = YES in ${DOXYFILE}?\n${_out}${_err}")
endif()

# One warning per match, with the "  parameter 'x'" lines that follow a partial list (';' would split
# CMake's lists).
string(REPLACE ";" "," _log "${_out}${_err}")
set(_rule "parameters of member|return type of member|are not \\(all\\) documented|[Tt]he following parameters? of")
string(APPEND _rule "|is not documented as parameter|[Aa]rgument [^\n]* not found|documented return type")
string(REGEX MATCHALL "[^\n]*(${_rule})[^\n]*(\n  [^\n]*)*" _found "${_log}")
list(LENGTH _found _count)
if(_count GREATER 0)
  string(REPLACE ";" "\n" _list "${_found}")
  message(FATAL_ERROR "check_doc_coverage: ${_count} warnings: documented functions that miss a \\param or "
                      "\\returns, or name a parameter they do not have (document every parameter and the return "
                      "value, or leave the member without a doc comment; a warning at <name>:1 is on a one-line "
                      "comment: search the headers for the member):\n${_list}")
endif()
string(REGEX MATCHALL "is not documented\\." _undocumented "${_log}")
list(LENGTH _undocumented _undocumented_count)
message(STATUS "check_doc_coverage: every documented function documents its parameters and return value "
               "(${_undocumented_count} undocumented members and classes, which are allowed)")
