# Install rules: headers (the targets' FILE_SET HEADERS), the CMake package (resblocksConfig.cmake +
# version + targets resblocks::resblocks, resblocks::io, resblocks::native), and a relocatable resblocks.pc.
include(CMakePackageConfigHelpers)

set(RESBLOCKS_CMAKE_DIR "${CMAKE_INSTALL_DATADIR}/cmake/resblocks"
    CACHE STRING "Where resblocksConfig.cmake is installed, relative to the prefix (the vcpkg port: share/resblocks)")

# Each installable target: a later optional part adds its target here (and a find_dependency to the config).
set(_resblocks_targets resblocks resblocks_native)
if(TARGET resblocks_kernels)  # resblocks::kernels, see resblocks_kernels.cmake
  list(APPEND _resblocks_targets resblocks_kernels)
endif()
if(TARGET resblocks_mpi)  # resblocks::mpi, see resblocks_mpi.cmake
  list(APPEND _resblocks_targets resblocks_mpi)
else()
  install(FILES ${RESBLOCKS_MPI_HEADERS} DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/resblocks/distributed")
endif()
if(TARGET resblocks_io)
  list(APPEND _resblocks_targets resblocks_io)
else()
  # Without zlib there is no resblocks::io, but its headers ship all the same (a user may link zlib by hand).
  install(FILES ${RESBLOCKS_IO_HEADERS} DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/resblocks/io")
endif()
install(TARGETS ${_resblocks_targets} EXPORT resblocksTargets
        FILE_SET HEADERS DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(EXPORT resblocksTargets NAMESPACE resblocks:: DESTINATION "${RESBLOCKS_CMAKE_DIR}")

configure_package_config_file(cmake/resblocksConfig.cmake.in
  "${CMAKE_CURRENT_BINARY_DIR}/resblocksConfig.cmake"
  INSTALL_DESTINATION "${RESBLOCKS_CMAKE_DIR}")
write_basic_package_version_file("${CMAKE_CURRENT_BINARY_DIR}/resblocksConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/resblocksConfig.cmake"
              "${CMAKE_CURRENT_BINARY_DIR}/resblocksConfigVersion.cmake"
              cmake/resblocksFindEigen3.cmake
              cmake/resblocksSimdCheck.cmake
        DESTINATION "${RESBLOCKS_CMAKE_DIR}")

# pkg-config. resblocks.pc goes to <libdir>/pkgconfig, not share/pkgconfig: it is not architecture-
# independent (Cflags/Libs carry the configuring compiler's OpenMP flag, e.g. "Libs: -fopenmp"), and
# vcpkg's post-build check rejects a share/pkgconfig file with a Libs line. pkg-config searches both.
# Paths are relative to ${pcfiledir}, so the installed tree can be moved. (An absolute
# CMAKE_INSTALL_LIBDIR or CMAKE_INSTALL_INCLUDEDIR cannot move with the prefix: used as is.)
set(RESBLOCKS_PKGCONFIG_DIR "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(RESBLOCKS_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _resblocks_pc_up "/${RESBLOCKS_PKGCONFIG_DIR}" "/")
  string(REGEX REPLACE "/+$" "" _resblocks_pc_up "${_resblocks_pc_up}")  # "../..", not "../../"
  set(RESBLOCKS_PC_PREFIX "\${pcfiledir}/${_resblocks_pc_up}")
endif()
if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
  set(RESBLOCKS_PC_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
else()
  set(RESBLOCKS_PC_INCLUDEDIR "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
endif()
if(RESBLOCKS_USE_OPENMP)
  set(RESBLOCKS_PC_CFLAGS_EXTRA " ${OpenMP_CXX_FLAGS}")
  set(RESBLOCKS_PC_LIBS "Libs: ${OpenMP_CXX_FLAGS}")
else()
  set(RESBLOCKS_PC_CFLAGS_EXTRA "")
  set(RESBLOCKS_PC_LIBS "")
endif()
configure_file(cmake/resblocks.pc.in "${CMAKE_CURRENT_BINARY_DIR}/resblocks.pc" @ONLY)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/resblocks.pc" DESTINATION "${RESBLOCKS_PKGCONFIG_DIR}")
