# resblocks::mpi = resblocks + MPI, for the data-parallel headers in include/resblocks/distributed/.
# Optional, like resblocks::io with zlib: the target exists only when find_package(MPI COMPONENTS CXX)
# finds an implementation (Debian: libopenmpi-dev or libmpich-dev); the core never needs MPI.
# Included from the top-level CMakeLists.txt after the resblocks target; sets RESBLOCKS_HAVE_MPI.
find_package(MPI COMPONENTS CXX)
if(MPI_CXX_FOUND)
  add_library(resblocks_mpi INTERFACE)
  add_library(resblocks::mpi ALIAS resblocks_mpi)
  set_target_properties(resblocks_mpi PROPERTIES EXPORT_NAME mpi)
  target_sources(resblocks_mpi INTERFACE
    FILE_SET HEADERS BASE_DIRS "${PROJECT_SOURCE_DIR}/include" FILES ${RESBLOCKS_MPI_HEADERS})
  target_link_libraries(resblocks_mpi INTERFACE resblocks MPI::MPI_CXX)
  # resblocks calls MPI's C API only: leave out the deprecated C++ bindings (they warn under -Wextra).
  target_compile_definitions(resblocks_mpi INTERFACE OMPI_SKIP_MPICXX=1 MPICH_SKIP_MPICXX=1)
  set(RESBLOCKS_HAVE_MPI ON)
else()
  message(STATUS "resblocks: MPI not found, resblocks::mpi (data-parallel training) is not available")
  set(RESBLOCKS_HAVE_MPI OFF)
endif()

# How the MPI tests and examples start ranks: `${RESBLOCKS_MPIEXEC} -np N program ...`.
# --oversubscribe: more ranks than cores is fine for tests (Open MPI only; MPICH does not need it).
function(resblocks_mpi_command out_var ranks)
  set(command ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${ranks} ${MPIEXEC_PREFLAGS})
  execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE _version ERROR_QUIET)
  if(_version MATCHES "Open MPI|OpenRTE")
    list(INSERT command 1 --oversubscribe)
  endif()
  set(${out_var} ${command} PARENT_SCOPE)
endfunction()
