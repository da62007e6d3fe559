# Install rules: headers, CMake package (resblocksConfig.cmake + version), and a relocatable resblocks.pc.
include(CMakePackageConfigHelpers)

set(RESBLOCKS_CMAKE_DIR "${CMAKE_INSTALL_DATADIR}/cmake/resblocks"
    CACHE STRING "Where resblocksConfig.cmake is installed, relative to the prefix")

install(DIRECTORY include/resblocks DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS resblocks EXPORT resblocksTargets)
if(TARGET resblocks_io)
  install(TARGETS resblocks_io EXPORT resblocksTargets)
endif()
if(TARGET resblocks_mpi)  # resblocks::mpi, see resblocks_mpi.cmake
  install(TARGETS resblocks_mpi EXPORT resblocksTargets)
endif()
install(EXPORT resblocksTargets NAMESPACE resblocks:: DESTINATION ${RESBLOCKS_CMAKE_DIR})

configure_package_config_file(cmake/resblocksConfig.cmake.in
  "${CMAKE_CURRENT_BINARY_DIR}/resblocksConfig.cmake"
  INSTALL_DESTINATION ${RESBLOCKS_CMAKE_DIR})
write_basic_package_version_file("${CMAKE_CURRENT_BINARY_DIR}/resblocksConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/resblocksConfig.cmake"
              "${CMAKE_CURRENT_BINARY_DIR}/resblocksConfigVersion.cmake"
        DESTINATION ${RESBLOCKS_CMAKE_DIR})

# pkg-config: paths relative to ${pcfiledir}, so the installed tree can be moved.
# (An absolute CMAKE_INSTALL_DATADIR or CMAKE_INSTALL_INCLUDEDIR cannot move with the prefix: use it as is.)
if(IS_ABSOLUTE "${CMAKE_INSTALL_DATADIR}")
  set(RESBLOCKS_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _resblocks_pc_up "/${CMAKE_INSTALL_DATADIR}/pkgconfig" "/")
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
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/resblocks.pc" DESTINATION "${CMAKE_INSTALL_DATADIR}/pkgconfig")
