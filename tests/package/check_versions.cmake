# The version is written in four places; they must agree:
#   CMakeLists.txt project(... VERSION x.y.z), packaging/vcpkg/ports/resblocks/vcpkg.json "version",
#   packaging/conan/conanfile.py version = "x.y.z", include/resblocks/core/build_info.hpp RESBLOCKS_VERSION_*.
#   cmake -DSOURCE_DIR=<resblocks source tree> -P tests/package/check_versions.cmake
cmake_minimum_required(VERSION 3.25)
if(NOT DEFINED SOURCE_DIR)
  message(FATAL_ERROR "check_versions.cmake: pass -DSOURCE_DIR=...")
endif()

function(_grab file regex out)
  file(READ "${SOURCE_DIR}/${file}" _text)
  if(NOT _text MATCHES "${regex}")
    message(FATAL_ERROR "versions: no match for /${regex}/ in ${file}")
  endif()
  set(${out} "${CMAKE_MATCH_1}" PARENT_SCOPE)
endfunction()

_grab(CMakeLists.txt "project\\(resblocks[ \t\r\n]+VERSION[ \t\r\n]+([0-9]+\\.[0-9]+\\.[0-9]+)" _cmake)
file(READ "${SOURCE_DIR}/packaging/vcpkg/ports/resblocks/vcpkg.json" _json)
string(JSON _vcpkg GET "${_json}" version)
_grab(packaging/conan/conanfile.py "\n[ \t]+version[ \t]*=[ \t]*\"([^\"]+)\"" _conan)
_grab(include/resblocks/core/build_info.hpp "#define RESBLOCKS_VERSION_STRING \"([^\"]+)\"" _header)
set(_parts "")
foreach(_p MAJOR MINOR PATCH)
  _grab(include/resblocks/core/build_info.hpp "#define RESBLOCKS_VERSION_${_p} ([0-9]+)" _n)
  list(APPEND _parts ${_n})
endforeach()
list(JOIN _parts "." _header_parts)

set(_bad "")
foreach(_pair "vcpkg.json=${_vcpkg}" "conanfile.py=${_conan}" "build_info.hpp RESBLOCKS_VERSION_STRING=${_header}"
              "build_info.hpp RESBLOCKS_VERSION_MAJOR/MINOR/PATCH=${_header_parts}")
  string(REGEX REPLACE "^.*=" "" _v "${_pair}")
  if(NOT _v STREQUAL _cmake)
    list(APPEND _bad "${_pair}")
  endif()
endforeach()
if(_bad)
  list(JOIN _bad "\n  " _bad)
  message(FATAL_ERROR "versions disagree with CMakeLists.txt's project() version ${_cmake}:\n  ${_bad}")
endif()
message(STATUS "versions agree: ${_cmake} (CMakeLists.txt, vcpkg.json, conanfile.py, build_info.hpp)")
