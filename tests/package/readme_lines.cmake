# Checks that a README section's first ```cpp block is made of lines of a source file, and that the
# README contains given phrases.
#
#   cmake -DREADME=README.md -DSECTION="## From and to PyTorch" -DEXAMPLE=examples/torch_roundtrip.cpp
#         [-DPHRASES="phrase one|phrase two"] -P readme_lines.cmake
#
# Every non-blank line of the block, leading and trailing blanks removed, must be a line of EXAMPLE
# (also stripped): the README shows code that compiles and runs. PHRASES, separated by '|', must each
# occur in the README verbatim.
cmake_minimum_required(VERSION 3.20)
set(_tag "readme_lines")
foreach(_v README SECTION EXAMPLE)
  if(NOT DEFINED ${_v} OR "${${_v}}" STREQUAL "")
    message(FATAL_ERROR "${_tag}: pass -D${_v}=...")
  endif()
endforeach()
file(READ "${README}" _md)
file(READ "${EXAMPLE}" _src)

# CMake lists split on ';' and treat brackets specially: mask them before splitting into lines.
function(_lines text out)
  string(REPLACE ";" "<semicolon>" text "${text}")
  string(REPLACE "[" "<lbracket>" text "${text}")
  string(REPLACE "]" "<rbracket>" text "${text}")
  string(REPLACE "\n" ";" text "${text}")
  set(_result "")
  foreach(_l IN LISTS text)
    string(STRIP "${_l}" _l)
    list(APPEND _result "${_l}")
  endforeach()
  set(${out} "${_result}" PARENT_SCOPE)
endfunction()

string(FIND "${_md}" "\n${SECTION}\n" _at)
if(_at EQUAL -1)
  message(FATAL_ERROR "${_tag}: ${README} has no section \"${SECTION}\"")
endif()
string(SUBSTRING "${_md}" ${_at} -1 _md_section)
string(FIND "${_md_section}" "\n```cpp\n" _open)
if(_open EQUAL -1)
  message(FATAL_ERROR "${_tag}: no ```cpp block after \"${SECTION}\" in ${README}")
endif()
math(EXPR _open "${_open} + 8")
string(SUBSTRING "${_md_section}" ${_open} -1 _block)
string(FIND "${_block}" "\n```" _close)
if(_close EQUAL -1)
  message(FATAL_ERROR "${_tag}: the ```cpp block after \"${SECTION}\" is never closed")
endif()
string(SUBSTRING "${_block}" 0 ${_close} _block)

_lines("${_block}" _block_lines)
_lines("${_src}" _src_lines)
set(_count 0)
foreach(_l IN LISTS _block_lines)
  if(_l STREQUAL "")
    continue()
  endif()
  list(FIND _src_lines "${_l}" _hit)
  if(_hit EQUAL -1)
    string(REPLACE "<semicolon>" ";" _l "${_l}")
    string(REPLACE "<lbracket>" "[" _l "${_l}")
    string(REPLACE "<rbracket>" "]" _l "${_l}")
    message(FATAL_ERROR "${_tag}: the line\n    ${_l}\n  of the ```cpp block in ${README}'s \"${SECTION}\" is not "
                        "a line of ${EXAMPLE}: keep the two in step")
  endif()
  math(EXPR _count "${_count} + 1")
endforeach()

if(DEFINED PHRASES AND NOT PHRASES STREQUAL "")
  string(REPLACE "|" ";" _phrases "${PHRASES}")
  foreach(_p IN LISTS _phrases)
    string(FIND "${_md}" "${_p}" _hit)
    if(_hit EQUAL -1)
      message(FATAL_ERROR "${_tag}: ${README} does not say \"${_p}\"")
    endif()
  endforeach()
endif()
message(STATUS "${_tag}: the ${_count} lines of the ```cpp block in \"${SECTION}\" are lines of ${EXAMPLE}")
