# Runs COMMAND (a ;-list: mpirun -np N mpi_fault) and passes only if it exits non-zero within LIMIT
# seconds and its output carries EXPECT (the failing rank's message).
string(REPLACE "|" ";" command "${COMMAND}")
string(TIMESTAMP t0 "%s")
execute_process(COMMAND ${command} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT ${LIMIT})
string(TIMESTAMP t1 "%s")
math(EXPR seconds "${t1} - ${t0}")
message("exit: ${rc} after ${seconds} s\n--- stdout\n${out}\n--- stderr\n${err}")
if(rc EQUAL 0 OR rc MATCHES "timeout")
  message(FATAL_ERROR "expected a non-zero exit within ${LIMIT} s, got '${rc}'")
endif()
if(NOT "${out}${err}" MATCHES "${EXPECT}")
  message(FATAL_ERROR "the output lacks '${EXPECT}'")
endif()
