# Eigen 3.4 or 5.x, as the imported target Eigen3::Eigen. Used by resblocks' CMakeLists.txt and by
# the installed resblocksConfig.cmake (installed beside it).
#
# One find_package() with a version cannot accept both: Eigen3ConfigVersion.cmake (SameMajorVersion)
# rejects any range whose ends differ in major version (3.4...5 fails on 3.4 and on 5), and Eigen
# 5's rejects a 3.x request. So ask for 3.4, then for 5. Eigen 3.3 and a future 6 are refused.
macro(resblocks_find_eigen3)
  if(NOT TARGET Eigen3::Eigen)
    find_package(Eigen3 3.4 QUIET NO_MODULE)
    if(NOT Eigen3_FOUND)
      find_package(Eigen3 5 QUIET NO_MODULE)
    endif()
  else()
    set(Eigen3_FOUND TRUE)  # supplied by the parent project (e.g. its own FetchContent of Eigen)
  endif()
endmacro()
