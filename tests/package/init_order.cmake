# Compiles tests/package/init_order.cpp with two compilers, runs both, and requires the same
# "initialized" checksum (the weights after initialize() do not depend on the compiler's argument
# evaluation order). Prints both "constructed" checksums, which may differ.
#   cmake -DCXX1=g++ -DCXX2=clang++ -DSOURCE_DIR=<repo> -DEIGEN_INCLUDE=<dir> -DWORK_DIR=<dir> -P init_order.cmake
file(MAKE_DIRECTORY "${WORK_DIR}")
set(_outputs "")
foreach(i 1 2)
  set(_exe "${WORK_DIR}/init_order_${i}")
  execute_process(COMMAND "${CXX${i}}" -std=c++20 -O1 -I${SOURCE_DIR}/include -isystem ${EIGEN_INCLUDE}
                          ${SOURCE_DIR}/tests/package/init_order.cpp -o ${_exe}
                  RESULT_VARIABLE _rc ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "init_order: ${CXX${i}} failed:\n${_err}")
  endif()
  execute_process(COMMAND ${_exe} RESULT_VARIABLE _rc OUTPUT_VARIABLE _out)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "init_order: the ${CXX${i}} build exited with ${_rc}:\n${_out}")
  endif()
  string(REGEX MATCH "initialized ([0-9a-f]+)" _m "${_out}")
  set(_init${i} "${CMAKE_MATCH_1}")
  string(REGEX MATCH "constructed ([0-9a-f]+)" _m "${_out}")
  message(STATUS "init_order: ${CXX${i}}: constructed ${CMAKE_MATCH_1}, initialized ${_init${i}}")
endforeach()
if(_init1 STREQUAL "" OR NOT _init1 STREQUAL _init2)
  message(FATAL_ERROR "init_order: the weights after initialize() differ between ${CXX1} (${_init1}) and ${CXX2} (${_init2})")
endif()
