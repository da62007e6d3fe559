# vcpkg port of resblocks (header-only). Two sources:
#  - a release tag from GitHub (the default; a release updates REF through the version in vcpkg.json
#    and SHA512, see packaging/vcpkg/README.md);
#  - a local checkout, for testing the port offline: the environment variable RESBLOCKS_SOURCE_DIR
#    names it, passed through by vcpkg when listed in VCPKG_KEEP_ENV_VARS.
set(VCPKG_BUILD_TYPE release)  # header-only: one configuration

if(DEFINED ENV{RESBLOCKS_SOURCE_DIR} AND NOT "$ENV{RESBLOCKS_SOURCE_DIR}" STREQUAL "")
  file(REAL_PATH "$ENV{RESBLOCKS_SOURCE_DIR}" SOURCE_PATH)
  if(NOT EXISTS "${SOURCE_PATH}/include/resblocks/resblocks.hpp")
    message(FATAL_ERROR "RESBLOCKS_SOURCE_DIR=$ENV{RESBLOCKS_SOURCE_DIR} is not a resblocks source tree")
  endif()
  message(STATUS "resblocks: building the local checkout ${SOURCE_PATH}")
else()
  vcpkg_from_github(
    OUT_SOURCE_PATH SOURCE_PATH
    REPO resblocks/resblocks
    REF "v${VERSION}"
    SHA512 0
    HEAD_REF main
  )
endif()

vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
  FEATURES
    openmp RESBLOCKS_USE_OPENMP
    io     CMAKE_REQUIRE_FIND_PACKAGE_ZLIB
  INVERTED_FEATURES
    io     CMAKE_DISABLE_FIND_PACKAGE_ZLIB
)

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    ${FEATURE_OPTIONS}
    -DRESBLOCKS_BUILD_TESTS=OFF
    -DRESBLOCKS_BUILD_BENCH=OFF
    -DRESBLOCKS_BUILD_EXAMPLES=OFF
    -DRESBLOCKS_BUILD_KERNELS=OFF  # header-only package (the compiled-kernels library is a source-build option)
    -DRESBLOCKS_INSTALL=ON
    -DRESBLOCKS_CMAKE_DIR=share/${PORT}
    -DRESBLOCKS_NO_SIMD_MESSAGE=ON
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup()  # the package config is already in share/resblocks
vcpkg_fixup_pkgconfig()     # lib/pkgconfig/resblocks.pc

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
