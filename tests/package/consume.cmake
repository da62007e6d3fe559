# Use resblocks as a client would and build + run the README's first ```cpp block with it.
#
#   cmake -DMODE=find_package|pkg_config|add_subdirectory|fetchcontent|vcpkg_port -DSOURCE_DIR=<resblocks source tree>
#         -DWORK_DIR=<scratch dir, emptied first> [-DCXX=<C++ compiler>] [-DGENERATOR=<CMake generator>]
#         [-DREADME=<markdown file, default SOURCE_DIR/README.md>] -P tests/package/consume.cmake
#
# find_package      install resblocks to WORK_DIR/prefix, then a CMake project does
#                   find_package(resblocks 0.1 CONFIG REQUIRED) with CMAKE_PREFIX_PATH=WORK_DIR/prefix.
# pkg_config        same install, then  CXX $(pkg-config --cflags resblocks) main.cpp $(pkg-config --libs resblocks)
#                   (resblocks.pc in <prefix>/lib/pkgconfig); then the prefix is moved elsewhere and
#                   pkg-config's flags must follow it (${pcfiledir}).
# add_subdirectory  a CMake project does add_subdirectory(SOURCE_DIR resblocks_build); resblocks must
#                   then build no tests, benchmarks or examples of its own.
# fetchcontent      the source tree (git's tracked files, as they are on disk) is committed to a scratch
#                   git repository and tagged; a CMake project gets it with FetchContent_Declare(GIT_REPOSITORY
#                   file://..., GIT_TAG v<version>) + FetchContent_MakeAvailable: offline, as a user would.
# vcpkg_port        packaging/vcpkg/ports/resblocks/portfile.cmake runs in this script against stand-ins of
#                   vcpkg's helpers (vcpkg_stub.cmake: the real configure + install, vcpkg's checks of the
#                   tree), features openmp and io; then a project made of the port's `usage` lines is built
#                   against the packaged tree.
# Every mode runs the program and requires exit status 0, "final mse" and the "SIMD:" build line in its output.
cmake_minimum_required(VERSION 3.25)

foreach(_v MODE SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${_v} OR "${${_v}}" STREQUAL "")
    message(FATAL_ERROR "consume.cmake: pass -D${_v}=...")
  endif()
endforeach()
if(NOT MODE MATCHES "^(find_package|pkg_config|add_subdirectory|fetchcontent|vcpkg_port)$")
  message(FATAL_ERROR "consume.cmake: MODE must be find_package, pkg_config, add_subdirectory, fetchcontent or vcpkg_port, not '${MODE}'")
endif()
get_filename_component(SOURCE_DIR "${SOURCE_DIR}" ABSOLUTE)
get_filename_component(WORK_DIR "${WORK_DIR}" ABSOLUTE)
if(NOT DEFINED README OR README STREQUAL "")
  set(README "${SOURCE_DIR}/README.md")
endif()
set(_here "${CMAKE_CURRENT_LIST_DIR}")
set(_tag "package:${MODE}")

# Generator and compiler arguments shared by every CMake configure below.
set(_gen_args "")
if(DEFINED GENERATOR AND NOT GENERATOR STREQUAL "")
  list(APPEND _gen_args -G "${GENERATOR}")
endif()
if(DEFINED CXX AND NOT CXX STREQUAL "")
  list(APPEND _gen_args "-DCMAKE_CXX_COMPILER=${CXX}")
endif()
# The consumer (and the compiled kernels installed for it) is compiled at -O1: enough to be realistic,
# cheap to build.
set(_consumer_opt -O1)

# --- helpers ------------------------------------------------------------------------------------

# _run(COMMAND <argv...> [WORKING_DIRECTORY d] [TIMEOUT s] [OUTPUT_VARIABLE v] [ECHO_OUTPUT])
# Prints the command, runs it, and stops the script with its output if it fails.
function(_run)
  cmake_parse_arguments(PARSE_ARGV 0 R "ECHO_OUTPUT" "WORKING_DIRECTORY;TIMEOUT;OUTPUT_VARIABLE" "COMMAND")
  set(_shown "")
  foreach(_a IN LISTS R_COMMAND)
    if(_a MATCHES "[ \t\"'$&|<>()*?]" OR _a STREQUAL "")
      string(REPLACE "'" "'\\''" _a "${_a}")
      set(_a "'${_a}'")
    endif()
    string(APPEND _shown " ${_a}")
  endforeach()
  string(STRIP "${_shown}" _shown)
  if(NOT R_WORKING_DIRECTORY)
    set(R_WORKING_DIRECTORY "${WORK_DIR}")
  endif()
  if(NOT R_TIMEOUT)
    set(R_TIMEOUT 300)
  endif()
  message(STATUS "[${_tag}] (cd ${R_WORKING_DIRECTORY} && ${_shown})")
  execute_process(COMMAND ${R_COMMAND}
    WORKING_DIRECTORY "${R_WORKING_DIRECTORY}"
    TIMEOUT ${R_TIMEOUT}
    RESULT_VARIABLE _rc
    OUTPUT_VARIABLE _out
    ERROR_VARIABLE _out)   # the same variable for both: merged in the order produced
  if(NOT _rc STREQUAL "0")
    string(REGEX REPLACE "\n$" "" _out "${_out}")
    string(REPLACE "\n" "\n    " _out "    ${_out}")
    message(FATAL_ERROR "[${_tag}] FAILED (${_rc}): ${_shown}\n  output:\n${_out}\n")
  endif()
  if(R_ECHO_OUTPUT)
    string(REGEX REPLACE "\n$" "" _echo "${_out}")
    string(REPLACE "\n" "\n    " _echo "    ${_echo}")
    message(STATUS "[${_tag}] output:\n${_echo}")
  endif()
  if(R_OUTPUT_VARIABLE)
    set(${R_OUTPUT_VARIABLE} "${_out}" PARENT_SCOPE)
  endif()
endfunction()

function(_fail)
  string(JOIN "" _msg ${ARGN})
  message(FATAL_ERROR "[${_tag}] FAILED: ${_msg}")
endfunction()

# Runs the built program: exit status 0, its build line ("resblocks <version>, Eigen ..., SIMD: ...")
# and "final mse" in its output.
function(_run_program exe)
  if(NOT EXISTS "${exe}")
    _fail("the program ${exe} was not built")
  endif()
  _run(COMMAND "${exe}" TIMEOUT 120 OUTPUT_VARIABLE _out ECHO_OUTPUT)
  if(NOT _out MATCHES "resblocks [0-9.]+, Eigen [0-9][^,]*, SIMD: [A-Za-z]")
    _fail("${exe} did not print its build line (resblocks::build_info()); output:\n${_out}")
  endif()
  if(NOT _out MATCHES "final mse")
    _fail("${exe} exited 0 but did not print \"final mse\"; output:\n${_out}")
  endif()
  message(STATUS "[${_tag}] ${exe} ran: exit 0, printed its SIMD instruction sets and \"final mse\"")
  set(_program_output "${_out}" PARENT_SCOPE)
endfunction()

# Configures, builds and installs resblocks (library only) into <prefix>; extra arguments go to the
# configure step.
function(_install_resblocks prefix)
  set(_b "${WORK_DIR}/resblocks-build")
  _run(COMMAND "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${_b}" ${_gen_args}
    -DCMAKE_BUILD_TYPE=Release
    "-DCMAKE_CXX_FLAGS_RELEASE=${_consumer_opt} -DNDEBUG"   # the compiled kernels: what is tested is the packaging
    "-DCMAKE_INSTALL_PREFIX=${prefix}"
    -DRESBLOCKS_BUILD_TESTS=OFF -DRESBLOCKS_BUILD_BENCH=OFF -DRESBLOCKS_BUILD_EXAMPLES=OFF
    -DRESBLOCKS_INSTALL=ON
    -DCMAKE_INSTALL_LIBDIR=lib   # the layout vcpkg and Conan use; GNUInstallDirs could pick lib64 or a multiarch dir
    ${ARGN})
  _run(COMMAND "${CMAKE_COMMAND}" --build "${_b}" --config Release --parallel 2)
  _run(COMMAND "${CMAKE_COMMAND}" --install "${_b}" --config Release)
  foreach(_f include/resblocks/resblocks.hpp
             include/resblocks/core/build_info.hpp
             include/resblocks/io/idx_file.hpp
             share/cmake/resblocks/resblocksConfig.cmake
             share/cmake/resblocks/resblocksConfigVersion.cmake
             share/cmake/resblocks/resblocksTargets.cmake
             share/cmake/resblocks/resblocksFindEigen3.cmake
             lib/pkgconfig/resblocks.pc)
    if(NOT EXISTS "${prefix}/${_f}")
      _fail("the install did not create ${prefix}/${_f}")
    endif()
  endforeach()
  # A relocatable package names no absolute path of the machine that built it.
  file(GLOB_RECURSE _meta "${prefix}/share/*" "${prefix}/lib/*")
  foreach(_f IN LISTS _meta)
    file(READ "${_f}" _text)
    foreach(_p "${prefix}" "${SOURCE_DIR}" "${_b}")
      string(FIND "${_text}" "${_p}" _hit)
      if(NOT _hit EQUAL -1)
        _fail("${_f} contains the absolute path ${_p}: the installed package would not be relocatable")
      endif()
    endforeach()
  endforeach()
endfunction()

# Configures and builds tests/package/consumer; the program ends up in <build>/bin/app.
function(_build_consumer build)
  _run(COMMAND "${CMAKE_COMMAND}" -S "${_here}/consumer" -B "${build}" ${_gen_args}
    -DCMAKE_BUILD_TYPE=Release
    "-DCMAKE_CXX_FLAGS_RELEASE=${_consumer_opt} -DNDEBUG"
    "-DRESBLOCKS_CONSUMER_SOURCE=${WORK_DIR}/readme_main.cpp"
    ${ARGN}
    OUTPUT_VARIABLE _configure_output)
  set(_consumer_configure_output "${_configure_output}" PARENT_SCOPE)
  _run(COMMAND "${CMAKE_COMMAND}" --build "${build}" --config Release --parallel 2)
endfunction()

# Value of a cache entry of a build tree ("" if absent).
function(_cache_value build name out)
  set(_v "")
  if(EXISTS "${build}/CMakeCache.txt")
    file(STRINGS "${build}/CMakeCache.txt" _l REGEX "^${name}:[A-Z]+=")
    if(_l)
      string(REGEX REPLACE "^${name}:[A-Z]+=" "" _v "${_l}")
    endif()
  endif()
  set(${out} "${_v}" PARENT_SCOPE)
endfunction()

# The -I directories of a compiler command line, resolved (symlinks, "..").
function(_include_dirs flags out)
  set(_dirs "")
  foreach(_f IN LISTS flags)
    if(_f MATCHES "^-I(.+)$")
      get_filename_component(_d "${CMAKE_MATCH_1}" REALPATH)
      list(APPEND _dirs "${_d}")
    endif()
  endforeach()
  set(${out} "${_dirs}" PARENT_SCOPE)
endfunction()

# --- start from an empty scratch directory; extract the README program ---------------------------
string(TIMESTAMP _t0 "%s")
message(STATUS "[${_tag}] source ${SOURCE_DIR}, work dir ${WORK_DIR}")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
_run(COMMAND "${CMAKE_COMMAND}" "-DREADME=${README}" "-DOUT=${WORK_DIR}/readme_main.cpp"
  -P "${_here}/readme_block.cmake")

set(_prefix "${WORK_DIR}/prefix")

if(MODE STREQUAL "find_package")
  _install_resblocks("${_prefix}")
  set(_cb "${WORK_DIR}/consumer-build")
  _build_consumer("${_cb}"
    -DRESBLOCKS_CONSUMER_MODE=find_package
    "-DCMAKE_PREFIX_PATH=${_prefix}"
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  # The package found must be the one just installed, not some other copy on the machine.
  _cache_value("${_cb}" resblocks_DIR _found)
  get_filename_component(_found "${_found}" REALPATH)
  get_filename_component(_expected "${_prefix}/share/cmake/resblocks" REALPATH)
  if(NOT _found STREQUAL _expected)
    _fail("find_package used resblocks_DIR=${_found}, expected ${_expected}")
  endif()
  _run_program("${_cb}/bin/app")
  # The same program in the compiled-kernels mode: resblocks::kernels from the installed package.
  if(NOT EXISTS "${_cb}/bin/app_kernels")
    _fail("the installed package has no resblocks::kernels (the consumer built no app_kernels)")
  endif()
  _run_program("${_cb}/bin/app_kernels")

elseif(MODE STREQUAL "pkg_config")
  find_program(_pkg_config NAMES pkg-config pkgconf)
  if(NOT _pkg_config)
    _fail("pkg-config not found (Debian: apt-get install pkg-config)")
  endif()
  set(_cxx "${CXX}")
  if(_cxx STREQUAL "")
    find_program(_cxx NAMES c++ g++ clang++)
    if(NOT _cxx)
      _fail("no C++ compiler: pass -DCXX=...")
    endif()
  endif()
  _install_resblocks("${_prefix}" -DRESBLOCKS_BUILD_KERNELS=OFF)  # pkg-config gives the header-only flags

  # Asks pkg-config (looking only at <prefix>/lib/pkgconfig besides the system dirs) for the flags and
  # checks that the include directory is <prefix>/include; with <exe>, compiles the program into it.
  function(_pkg_config_build prefix exe)
    set(ENV{PKG_CONFIG_PATH} "${prefix}/lib/pkgconfig")
    message(STATUS "[${_tag}] export PKG_CONFIG_PATH=$ENV{PKG_CONFIG_PATH}")
    _run(COMMAND "${_pkg_config}" --print-errors --exists "resblocks >= 0.1")
    _run(COMMAND "${_pkg_config}" --cflags resblocks OUTPUT_VARIABLE _cflags)
    _run(COMMAND "${_pkg_config}" --libs resblocks OUTPUT_VARIABLE _libs)
    string(STRIP "${_cflags}" _cflags)
    string(STRIP "${_libs}" _libs)
    message(STATUS "[${_tag}] pkg-config --cflags: ${_cflags}")
    message(STATUS "[${_tag}] pkg-config --libs:   ${_libs}")
    separate_arguments(_cflags UNIX_COMMAND "${_cflags}")
    separate_arguments(_libs UNIX_COMMAND "${_libs}")
    _include_dirs("${_cflags}" _dirs)
    get_filename_component(_want "${prefix}/include" REALPATH)
    if(NOT _want IN_LIST _dirs)
      _fail("pkg-config --cflags resblocks has no -I for ${_want} (its -I dirs: ${_dirs})")
    endif()
    if(NOT EXISTS "${_want}/resblocks/resblocks.hpp")
      _fail("${_want}/resblocks/resblocks.hpp does not exist")
    endif()
    if(exe STREQUAL "")
      return()
    endif()
    get_filename_component(_exe_dir "${exe}" DIRECTORY)
    file(MAKE_DIRECTORY "${_exe_dir}")
    _run(COMMAND "${_cxx}" ${_consumer_opt} ${_cflags} "${WORK_DIR}/readme_main.cpp" -o "${exe}" ${_libs})
  endfunction()

  _pkg_config_build("${_prefix}" "${WORK_DIR}/pkg-config-build/app")
  _run_program("${WORK_DIR}/pkg-config-build/app")

  # Move the installed tree: resblocks.pc locates itself through ${pcfiledir}, so its -I must follow
  # (checked on the flags; compiling once more would prove nothing new).
  set(_moved "${WORK_DIR}/relocated/elsewhere/resblocks-0.1")
  file(MAKE_DIRECTORY "${WORK_DIR}/relocated/elsewhere")
  message(STATUS "[${_tag}] mv ${_prefix} ${_moved}")
  file(RENAME "${_prefix}" "${_moved}")
  if(EXISTS "${_prefix}")
    _fail("${_prefix} still exists after the move")
  endif()
  _pkg_config_build("${_moved}" "")

elseif(MODE STREQUAL "add_subdirectory")
  set(_cb "${WORK_DIR}/consumer-build")
  # The consumer's CMakeLists fails the configure if resblocks' tests, benchmarks, examples or
  # install rules are switched on, or if it defines any target besides resblocks.
  _build_consumer("${_cb}"
    -DRESBLOCKS_CONSUMER_MODE=add_subdirectory
    "-DRESBLOCKS_SOURCE_DIR=${SOURCE_DIR}")
  # And nothing of resblocks' own was generated or built.
  foreach(_d tests bench examples)
    if(EXISTS "${_cb}/resblocks_build/${_d}")
      _fail("${_cb}/resblocks_build/${_d} exists: resblocks configured its ${_d} inside a parent project")
    endif()
  endforeach()
  foreach(_opt RESBLOCKS_BUILD_TESTS RESBLOCKS_BUILD_BENCH RESBLOCKS_BUILD_EXAMPLES RESBLOCKS_INSTALL)
    _cache_value("${_cb}" ${_opt} _val)
    if(_val)
      _fail("${_opt}=${_val} in the parent's cache (must default to OFF for a subproject)")
    endif()
  endforeach()
  file(GLOB_RECURSE _built LIST_DIRECTORIES false "${_cb}/*")
  foreach(_f IN LISTS _built)
    get_filename_component(_n "${_f}" NAME_WE)
    if(_n MATCHES "^(quick_start|custom_layer|resblocks_bench|.*_tests|libresblocks_catch_main)$"
       AND NOT _f MATCHES "/CMakeFiles/")
      _fail("${_f} was built: resblocks built its own targets inside a parent project")
    endif()
  endforeach()
  message(STATUS "[${_tag}] resblocks as a subproject: no tests, benchmarks or examples configured or built")
  _run_program("${_cb}/bin/app")

elseif(MODE STREQUAL "fetchcontent")
  find_program(_git git)
  if(NOT _git)
    _fail("git not found (Debian: apt-get install git)")
  endif()
  # A repository holding the source tree as it is on disk (tracked files, uncommitted edits included).
  execute_process(COMMAND "${_git}" -C "${SOURCE_DIR}" ls-files RESULT_VARIABLE _rc OUTPUT_VARIABLE _files
                  ERROR_QUIET)
  if(_rc EQUAL 0)
    string(REGEX REPLACE "\n$" "" _files "${_files}")
    string(REPLACE "\n" ";" _files "${_files}")
  else()  # not a git checkout (e.g. a release tarball): what the library's build and install need
    file(GLOB_RECURSE _files RELATIVE "${SOURCE_DIR}" "${SOURCE_DIR}/include/*" "${SOURCE_DIR}/cmake/*")
    list(APPEND _files CMakeLists.txt LICENSE)
  endif()
  set(_repo "${WORK_DIR}/resblocks.git-src")
  set(_n 0)
  foreach(_f IN LISTS _files)
    if(NOT _f STREQUAL "" AND EXISTS "${SOURCE_DIR}/${_f}" AND NOT IS_DIRECTORY "${SOURCE_DIR}/${_f}")
      get_filename_component(_d "${_repo}/${_f}" DIRECTORY)
      file(COPY "${SOURCE_DIR}/${_f}" DESTINATION "${_d}")
      math(EXPR _n "${_n} + 1")
    endif()
  endforeach()
  message(STATUS "[${_tag}] copied ${_n} tracked files into ${_repo}")
  file(READ "${SOURCE_DIR}/CMakeLists.txt" _top)
  string(REGEX MATCH "VERSION[ \t]+([0-9]+\\.[0-9]+\\.[0-9]+)" _m "${_top}")
  set(_git_tag "v${CMAKE_MATCH_1}")
  set(_git_id -c user.name=resblocks-test -c user.email=test@invalid -c init.defaultBranch=main -c commit.gpgsign=false)
  _run(COMMAND "${_git}" init -q "${_repo}")
  _run(COMMAND "${_git}" ${_git_id} -C "${_repo}" add -A)
  _run(COMMAND "${_git}" ${_git_id} -C "${_repo}" commit -q -m "resblocks for the FetchContent test")
  _run(COMMAND "${_git}" ${_git_id} -C "${_repo}" tag "${_git_tag}")
  set(_cb "${WORK_DIR}/consumer-build")
  _build_consumer("${_cb}"
    -DRESBLOCKS_CONSUMER_MODE=fetchcontent
    "-DRESBLOCKS_GIT_URL=file://${_repo}"
    "-DRESBLOCKS_GIT_TAG=${_git_tag}")
  if(NOT EXISTS "${_cb}/_deps/resblocks-src/include/resblocks/resblocks.hpp")
    _fail("FetchContent did not check resblocks out into ${_cb}/_deps/resblocks-src")
  endif()
  # The consumer's flags (-O1, no -march) give Eigen SSE2 only: resblocks' configure says so, once.
  if(NOT _consumer_configure_output MATCHES "enable neither AVX2 nor AVX-512")
    _fail("configuring a parent project without AVX2/AVX-512 flags printed no note about it:\n${_consumer_configure_output}")
  endif()
  _run_program("${_cb}/bin/app")

elseif(MODE STREQUAL "vcpkg_port")
  # The portfile, run as vcpkg runs it (script mode), against stand-ins of vcpkg's helpers.
  set(PORT resblocks)
  set(_port_dir "${SOURCE_DIR}/packaging/vcpkg/ports/resblocks")
  file(READ "${_port_dir}/vcpkg.json" _manifest)
  string(JSON VERSION GET "${_manifest}" version)
  set(CURRENT_PACKAGES_DIR "${WORK_DIR}/packages/resblocks_x64-linux")
  set(CURRENT_BUILDTREES_DIR "${WORK_DIR}/buildtrees/resblocks")
  set(FEATURES core openmp io)
  set(VCPKG_STUB_SOURCE_DIR "${SOURCE_DIR}")
  set(VCPKG_STUB_GEN_ARGS ${_gen_args})
  unset(ENV{RESBLOCKS_SOURCE_DIR})   # the release path: vcpkg_from_github (stand-in) hands over SOURCE_DIR
  include("${_here}/vcpkg_stub.cmake")
  include("${_port_dir}/portfile.cmake")
  vcpkg_stub_check_tree()

  # A project made of the usage file's code lines (its indented lines), the program as `main`.
  file(STRINGS "${CURRENT_PACKAGES_DIR}/share/resblocks/usage" _usage)
  set(_cmake_lines "")
  foreach(_l IN LISTS _usage)
    if(_l MATCHES "^    ([^ ].*)$")
      string(APPEND _cmake_lines "${CMAKE_MATCH_1}\n")
    endif()
  endforeach()
  if(NOT _cmake_lines MATCHES "find_package\\(resblocks")
    _fail("the usage file has no find_package(resblocks ...) line")
  endif()
  set(_up "${WORK_DIR}/usage-consumer")
  file(WRITE "${_up}/CMakeLists.txt"
    "cmake_minimum_required(VERSION 3.25)\nproject(usage_consumer LANGUAGES CXX)\n"
    "add_executable(main \"${WORK_DIR}/readme_main.cpp\")\n"
    "set_target_properties(main PROPERTIES RUNTIME_OUTPUT_DIRECTORY \"\${CMAKE_BINARY_DIR}/bin$<0:>\")\n"
    "${_cmake_lines}")
  message(STATUS "[${_tag}] the usage lines, as the consumer's CMakeLists.txt:\n${_cmake_lines}")
  _run(COMMAND "${CMAKE_COMMAND}" -S "${_up}" -B "${_up}/build" ${_gen_args}
    -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CXX_FLAGS_RELEASE=${_consumer_opt} -DNDEBUG"
    "-DCMAKE_PREFIX_PATH=${CURRENT_PACKAGES_DIR}" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)
  _cache_value("${_up}/build" resblocks_DIR _found)
  get_filename_component(_found "${_found}" REALPATH)
  get_filename_component(_expected "${CURRENT_PACKAGES_DIR}/share/resblocks" REALPATH)
  if(NOT _found STREQUAL _expected)
    _fail("find_package used resblocks_DIR=${_found}, expected ${_expected}")
  endif()
  _run(COMMAND "${CMAKE_COMMAND}" --build "${_up}/build" --config Release)
  _run_program("${_up}/build/bin/main")
endif()

string(TIMESTAMP _t1 "%s")
math(EXPR _dt "${_t1} - ${_t0}")
message(STATUS "[${_tag}] PASSED in ${_dt} s")
