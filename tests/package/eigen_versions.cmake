# resblocks' Eigen lookup (CMakeLists.txt and the installed resblocksConfig.cmake) takes Eigen 3.4 and
# 5.x and refuses 3.3, whatever their version files accept. Only Debian's Eigen 3.4 exists here, so
# stand-in Eigen3 packages announce 5.0.0 and 3.3.9 (version files written by CMake's own
# write_basic_package_version_file, SameMajorVersion, as Eigen's are) around the real headers, and the
# system's Eigen3 package is hidden. Configure only: nothing is compiled.
#   cmake -DSOURCE_DIR=<resblocks source tree> -DWORK_DIR=<scratch dir> -DEIGEN_INCLUDE=<Eigen's headers>
#         -DEIGEN_DIR=<the real Eigen3Config.cmake's directory, hidden> [-DCXX=...] [-DGENERATOR=...]
#         -P tests/package/eigen_versions.cmake
cmake_minimum_required(VERSION 3.25)
foreach(_v SOURCE_DIR WORK_DIR EIGEN_INCLUDE EIGEN_DIR)
  if(NOT DEFINED ${_v})
    message(FATAL_ERROR "eigen_versions.cmake: pass -D${_v}=...")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")
include(CMakePackageConfigHelpers)

set(_eigen_include "${EIGEN_INCLUDE}")
set(_args "")
if(DEFINED GENERATOR AND NOT GENERATOR STREQUAL "")
  list(APPEND _args -G "${GENERATOR}")
endif()
if(DEFINED CXX AND NOT CXX STREQUAL "")
  list(APPEND _args "-DCMAKE_CXX_COMPILER=${CXX}")
endif()
list(APPEND _args "-DCMAKE_IGNORE_PATH=${EIGEN_DIR}" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
     -DRESBLOCKS_BUILD_TESTS=OFF -DRESBLOCKS_BUILD_BENCH=OFF -DRESBLOCKS_BUILD_EXAMPLES=OFF)

function(_fake_eigen version out_prefix)
  set(_p "${WORK_DIR}/eigen-${version}")
  set(_d "${_p}/share/eigen3/cmake")
  file(WRITE "${_d}/Eigen3Config.cmake"
    "if(NOT TARGET Eigen3::Eigen)\n"
    "  add_library(Eigen3::Eigen INTERFACE IMPORTED)\n"
    "  set_target_properties(Eigen3::Eigen PROPERTIES INTERFACE_INCLUDE_DIRECTORIES \"${_eigen_include}\")\n"
    "endif()\n")
  write_basic_package_version_file("${_d}/Eigen3ConfigVersion.cmake" VERSION ${version}
    COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
  set(${out_prefix} "${_p}" PARENT_SCOPE)
endfunction()

function(_configure tag expect_ok expect_regex)
  execute_process(COMMAND "${CMAKE_COMMAND}" ${ARGN} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
  set(_ok FALSE)
  if(_rc EQUAL 0)
    set(_ok TRUE)
  endif()
  if(_ok STREQUAL expect_ok AND _out MATCHES "${expect_regex}")
    message(STATUS "eigen_versions: ${tag}: ok (exit ${_rc}, output matches '${expect_regex}')")
  else()
    message(FATAL_ERROR "eigen_versions: ${tag}: exit ${_rc} (expected success: ${expect_ok}), "
                        "output should match '${expect_regex}':\n${_out}")
  endif()
endfunction()

# Eigen 5.0.0: found by the second lookup, in the project and through the installed package.
_fake_eigen(5.0.0 _eigen5)
_configure("resblocks with Eigen 5.0.0" TRUE "resblocks: Eigen 5[.]0[.]0 from"
  -S "${SOURCE_DIR}" -B "${WORK_DIR}/build-eigen5" ${_args} "-DCMAKE_PREFIX_PATH=${_eigen5}"
  "-DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix" -DRESBLOCKS_INSTALL=ON -DRESBLOCKS_USE_OPENMP=OFF
  -DCMAKE_DISABLE_FIND_PACKAGE_ZLIB=ON)
execute_process(COMMAND "${CMAKE_COMMAND}" --install "${WORK_DIR}/build-eigen5" RESULT_VARIABLE _rc OUTPUT_QUIET)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "eigen_versions: installing the Eigen 5 build failed")
endif()
file(WRITE "${WORK_DIR}/consumer/CMakeLists.txt"
  "cmake_minimum_required(VERSION 3.25)\nproject(c LANGUAGES CXX)\n"
  "find_package(resblocks CONFIG REQUIRED)\n"
  "get_target_property(_v Eigen3::Eigen INTERFACE_INCLUDE_DIRECTORIES)\n"
  "message(STATUS \"consumer: resblocks \${resblocks_VERSION} with Eigen \${Eigen3_VERSION}\")\n")
# (Two prefixes: through the environment, where the separator is ':' rather than a list's ';'.)
_configure("find_package(resblocks) with Eigen 5.0.0" TRUE "consumer: resblocks [0-9.]+ with Eigen 5[.]0[.]0"
  -E env "CMAKE_PREFIX_PATH=${WORK_DIR}/prefix:${_eigen5}"
  "${CMAKE_COMMAND}" -S "${WORK_DIR}/consumer" -B "${WORK_DIR}/consumer-eigen5" ${_args})

# Eigen 3.3.9: refused, with a message that says what is needed.
_fake_eigen(3.3.9 _eigen33)
_configure("resblocks with Eigen 3.3.9" FALSE "needs Eigen 3[.]4 or 5[.]x"
  -S "${SOURCE_DIR}" -B "${WORK_DIR}/build-eigen33" ${_args} "-DCMAKE_PREFIX_PATH=${_eigen33}")
_configure("find_package(resblocks) with Eigen 3.3.9" FALSE "needs Eigen 3[.]4 or 5[.]x"
  -E env "CMAKE_PREFIX_PATH=${WORK_DIR}/prefix:${_eigen33}"
  "${CMAKE_COMMAND}" -S "${WORK_DIR}/consumer" -B "${WORK_DIR}/consumer-eigen33" ${_args})
message(STATUS "eigen_versions: Eigen 5.0.0 accepted, Eigen 3.3.9 refused (project and installed package)")
