# Install rules: headers, CMake package (resblocksConfig.cmake + version), and a relocatable resblocks.pc.
include(CMakePackageConfigHelpers)

set(RESBLOCKS_CMAKE_DIR "${CMAKE_INSTALL_DATADIR}/cmake/resblocks"
    CACHE STRING "Where resblocksConfig.cmake is installed, relative to the prefix")

install(DIRECTORY include/resblocks DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS resblocks EXPORT resblocksTargets)
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
file(RELATIVE_PATH RESBLOCKS_PC_TO_PREFIX "/${CMAKE_INSTALL_DATADIR}/pkgconfig" "/")
if(RESBLOCKS_USE_OPENMP)
  set(RESBLOCKS_PC_CFLAGS_EXTRA " ${OpenMP_CXX_FLAGS}")
  set(RESBLOCKS_PC_LIBS "Libs: ${OpenMP_CXX_FLAGS}")
else()
  set(RESBLOCKS_PC_CFLAGS_EXTRA "")
  set(RESBLOCKS_PC_LIBS "")
endif()
configure_file(cmake/resblocks.pc.in "${CMAKE_CURRENT_BINARY_DIR}/resblocks.pc" @ONLY)
install(FILES "${CMAKE_CURRENT_BINARY_DIR}/resblocks.pc" DESTINATION "${CMAKE_INSTALL_DATADIR}/pkgconfig")
