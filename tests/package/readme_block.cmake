# Extract the first ```cpp fenced block of a Markdown file and check it against a source file.
#
#   cmake -DREADME=README.md [-DEXAMPLE=examples/quick_start.cpp] [-DOUT=block.cpp] -P readme_block.cmake
#
# README   the Markdown file (required).
# EXAMPLE  if given, the block must equal this file byte for byte; only one trailing newline
#          at the end of either is ignored.
# OUT      if given, the extracted block is written there (always, before the comparison).
# At least one of EXAMPLE and OUT is required.
#
# The block starts after the first line that is exactly ```cpp (an info string may follow after a
# space, e.g. ```cpp title="x"); it ends before the next line that is only ``` (trailing blanks
# allowed). The fences must start their lines (no indentation). Everything in between is kept as is:
# string(FIND)/string(SUBSTRING) work on bytes, so nothing is reinterpreted.
cmake_minimum_required(VERSION 3.25)

set(_tag "readme_block")
if(NOT DEFINED README OR README STREQUAL "")
  message(FATAL_ERROR "${_tag}: pass -DREADME=<markdown file>")
endif()
if((NOT DEFINED EXAMPLE OR EXAMPLE STREQUAL "") AND (NOT DEFINED OUT OR OUT STREQUAL ""))
  message(FATAL_ERROR "${_tag}: pass -DEXAMPLE=<file to compare with> and/or -DOUT=<file to write>")
endif()
if(NOT EXISTS "${README}")
  message(FATAL_ERROR "${_tag}: ${README} does not exist; its first ```cpp block must be the quick start program")
endif()

file(READ "${README}" _md)
string(LENGTH "${_md}" _md_len)

# --- find the opening fence: "```cpp" at the start of a line, then end of line or a blank ------------
set(_search_from 0)
set(_body_begin -1)
while(_search_from LESS _md_len)
  string(SUBSTRING "${_md}" ${_search_from} -1 _rest)
  string(FIND "${_rest}" "```cpp" _hit)
  if(_hit EQUAL -1)
    break()
  endif()
  math(EXPR _at "${_search_from} + ${_hit}")
  math(EXPR _next "${_at} + 6")
  set(_line_start FALSE)
  if(_at EQUAL 0)
    set(_line_start TRUE)
  else()
    math(EXPR _prev "${_at} - 1")
    string(SUBSTRING "${_md}" ${_prev} 1 _c)
    if(_c STREQUAL "\n")
      set(_line_start TRUE)
    endif()
  endif()
  if(_line_start)
    # The rest of the fence line must be empty or start with a blank (```cppx is another language).
    string(SUBSTRING "${_md}" ${_next} -1 _after)
    string(FIND "${_after}" "\n" _eol)
    if(_eol EQUAL -1)
      break()  # a fence on the last line opens nothing
    endif()
    string(SUBSTRING "${_after}" 0 ${_eol} _info)
    if(_info MATCHES "^([ \t].*)?\r?$")
      math(EXPR _body_begin "${_next} + ${_eol} + 1")
      math(EXPR _fence_line_no 0)
      string(SUBSTRING "${_md}" 0 ${_at} _before)
      string(REGEX MATCHALL "\n" _nls "${_before}")
      list(LENGTH _nls _fence_line_no)
      math(EXPR _fence_line_no "${_fence_line_no} + 1")
      break()
    endif()
  endif()
  set(_search_from ${_next})
endwhile()
if(_body_begin EQUAL -1)
  message(FATAL_ERROR "${_tag}: no ```cpp fenced block in ${README} "
    "(the first one must be a line that is exactly ```cpp, at the start of the line)")
endif()

# --- find the closing fence: a line that is only ``` (blanks allowed after it) -----------------------
string(SUBSTRING "${_md}" ${_body_begin} -1 _tail)
set(_block "")
set(_closed FALSE)
if(_tail MATCHES "^```[ \t]*\r?(\n|$)")
  set(_closed TRUE)  # an empty block
else()
  set(_scan 0)
  string(LENGTH "${_tail}" _tail_len)
  while(_scan LESS _tail_len)
    string(SUBSTRING "${_tail}" ${_scan} -1 _r)
    string(FIND "${_r}" "\n```" _hit)
    if(_hit EQUAL -1)
      break()
    endif()
    math(EXPR _nl "${_scan} + ${_hit}")
    math(EXPR _fence "${_nl} + 1")
    string(SUBSTRING "${_tail}" ${_fence} -1 _fence_rest)
    if(_fence_rest MATCHES "^```[ \t]*\r?(\n|$)")
      math(EXPR _block_len "${_nl} + 1")  # keep the last line's newline
      string(SUBSTRING "${_tail}" 0 ${_block_len} _block)
      set(_closed TRUE)
      break()
    endif()
    math(EXPR _scan "${_nl} + 1")
  endwhile()
endif()
if(NOT _closed)
  message(FATAL_ERROR "${_tag}: the ```cpp block opened at ${README}:${_fence_line_no} is never closed by a ``` line")
endif()

if(DEFINED OUT AND NOT OUT STREQUAL "")
  file(WRITE "${OUT}" "${_block}")
endif()

if(NOT DEFINED EXAMPLE OR EXAMPLE STREQUAL "")
  string(LENGTH "${_block}" _n)
  message(STATUS "${_tag}: wrote the ```cpp block at ${README}:${_fence_line_no} (${_n} bytes) to ${OUT}")
  return()
endif()

if(NOT EXISTS "${EXAMPLE}")
  message(FATAL_ERROR "${_tag}: ${EXAMPLE} does not exist")
endif()
file(READ "${EXAMPLE}" _example)

# Normalise a single trailing newline on each side, nothing else.
set(_a "${_block}")
set(_b "${_example}")
foreach(_v _a _b)
  string(LENGTH "${${_v}}" _l)
  if(_l GREATER 0)
    math(EXPR _last "${_l} - 1")
    string(SUBSTRING "${${_v}}" ${_last} 1 _c)
    if(_c STREQUAL "\n")
      string(SUBSTRING "${${_v}}" 0 ${_last} ${_v})
    endif()
  endif()
endforeach()

if(_a STREQUAL _b)
  string(LENGTH "${_example}" _n)
  message(STATUS "${_tag}: the ```cpp block at ${README}:${_fence_line_no} equals ${EXAMPLE} (${_n} bytes)")
  return()
endif()

# --- mismatch: locate the first differing line and, if diff(1) is around, show a unified diff ---------
set(_line 1)
set(_pa "${_a}\n")
set(_pb "${_b}\n")
while(TRUE)
  string(FIND "${_pa}" "\n" _ea)
  string(FIND "${_pb}" "\n" _eb)
  if(_ea EQUAL -1 OR _eb EQUAL -1)
    set(_la "<end of block>")
    set(_lb "<end of file>")
    if(NOT _ea EQUAL -1)
      string(SUBSTRING "${_pa}" 0 ${_ea} _la)
    endif()
    if(NOT _eb EQUAL -1)
      string(SUBSTRING "${_pb}" 0 ${_eb} _lb)
    endif()
    break()
  endif()
  string(SUBSTRING "${_pa}" 0 ${_ea} _la)
  string(SUBSTRING "${_pb}" 0 ${_eb} _lb)
  if(NOT _la STREQUAL _lb)
    break()
  endif()
  math(EXPR _ea "${_ea} + 1")
  math(EXPR _eb "${_eb} + 1")
  string(SUBSTRING "${_pa}" ${_ea} -1 _pa)
  string(SUBSTRING "${_pb}" ${_eb} -1 _pb)
  math(EXPR _line "${_line} + 1")
endwhile()
math(EXPR _readme_line "${_fence_line_no} + ${_line}")
if(_la MATCHES "\r$" OR _lb MATCHES "\r$")
  set(_crlf_hint "\n  (one side has CRLF line endings)")
else()
  set(_crlf_hint "")
endif()

if(DEFINED OUT AND NOT OUT STREQUAL "")
  set(_extracted "${OUT}")
else()
  set(_extracted "${CMAKE_CURRENT_BINARY_DIR}/readme_block.extracted.cpp")
  file(WRITE "${_extracted}" "${_block}")
endif()
set(_diff_text "")
find_program(_diff diff)
if(_diff)
  execute_process(COMMAND "${_diff}" -u "${EXAMPLE}" "${_extracted}"
    OUTPUT_VARIABLE _diff_text ERROR_VARIABLE _diff_text)
  # Indented lines are printed verbatim by message(); unindented ones would be re-wrapped.
  string(REGEX REPLACE "\n$" "" _diff_text "${_diff_text}")
  string(REPLACE "\n" "\n    " _diff_text "\ndiff -u example extracted:\n${_diff_text}")
endif()
message(FATAL_ERROR
  "${_tag}: the first ```cpp block of ${README} (fence at line ${_fence_line_no}) differs from ${EXAMPLE}.\n"
  "  first difference at line ${_line} of the example (README line ${_readme_line}):\n"
  "    example: [${_lb}]\n"
  "    README : [${_la}]${_crlf_hint}\n"
  "  the extracted block is in ${_extracted}; compare with\n"
  "    diff -u ${EXAMPLE} ${_extracted}\n"
  "  fix: paste ${EXAMPLE} verbatim into the README's first ```cpp block (or change the example).${_diff_text}")
