"""Conan 2 recipe for resblocks (header-only), packaged through the project's own CMake install.

    conan create packaging/conan                      # from a checkout: exports the tree two levels up
    conan create packaging/conan -o "resblocks/*:with_zlib=False"

The CMake targets a consumer sees are the ones the project exports (resblocks::resblocks,
resblocks::io, resblocks::native), so a consumer's CMakeLists.txt is the same whichever way it got
resblocks.
"""
import os

from conan import ConanFile
from conan.errors import ConanInvalidConfiguration
from conan.tools.build import check_min_cppstd
from conan.tools.cmake import CMake, CMakeDeps, CMakeToolchain, cmake_layout
from conan.tools.files import copy, rmdir

required_conan_version = ">=2.0"


class ResblocksConan(ConanFile):
    name = "resblocks"
    version = "0.1.0"  # = CMake project() version (CTest package:versions_agree)
    description = "Header-only C++20 residual networks on Eigen, with hand-written backward passes"
    license = "MIT"
    homepage = "https://github.com/resblocks/resblocks"
    url = "https://github.com/resblocks/resblocks"
    topics = ("deep-learning", "resnet", "neural-network", "eigen", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    options = {"with_openmp": [True, False], "with_zlib": [True, False]}
    default_options = {"with_openmp": True, "with_zlib": True}
    no_copy_source = True

    # The sources the CMake install needs, from the checkout this recipe sits in (packaging/conan/).
    _source_items = ("CMakeLists.txt", "LICENSE", "cmake/*", "include/*")

    def export_sources(self):
        root = os.path.join(self.recipe_folder, "..", "..")
        for pattern in self._source_items:
            copy(self, pattern, src=root, dst=self.export_sources_folder)

    def layout(self):
        cmake_layout(self, src_folder=".")

    def requirements(self):
        # Eigen 3.4 and 5.x are both supported (resblocks' CMake looks for either); 3.3 and 6 are not.
        self.requires("eigen/[>=3.4.0 <6]")
        if self.options.with_zlib:
            self.requires("zlib/[>=1.2.11 <2]")

    def package_id(self):
        self.info.clear()  # header-only: one package for every configuration and option

    def validate(self):
        try:
            check_min_cppstd(self, 20)
        except ConanInvalidConfiguration as error:
            raise ConanInvalidConfiguration(
                f"resblocks needs C++20 ({error}); use -s compiler.cppstd=20 (or gnu20)") from error

    def generate(self):
        tc = CMakeToolchain(self)
        tc.cache_variables["RESBLOCKS_BUILD_TESTS"] = False
        tc.cache_variables["RESBLOCKS_BUILD_BENCH"] = False
        tc.cache_variables["RESBLOCKS_BUILD_EXAMPLES"] = False
        # A header-library package: the optional compiled-kernels library is left out.
        tc.cache_variables["RESBLOCKS_BUILD_KERNELS"] = False
        tc.cache_variables["RESBLOCKS_INSTALL"] = True
        tc.cache_variables["RESBLOCKS_NO_SIMD_MESSAGE"] = True
        tc.cache_variables["RESBLOCKS_USE_OPENMP"] = bool(self.options.with_openmp)
        if self.options.with_zlib:
            tc.cache_variables["CMAKE_REQUIRE_FIND_PACKAGE_ZLIB"] = True
        else:
            tc.cache_variables["CMAKE_DISABLE_FIND_PACKAGE_ZLIB"] = True
        tc.generate()
        CMakeDeps(self).generate()

    def build(self):
        cmake = CMake(self)
        cmake.configure()

    def package(self):
        copy(self, "LICENSE", src=self.source_folder, dst=os.path.join(self.package_folder, "licenses"))
        cmake = CMake(self)
        cmake.install()
        # Conan's CMakeDeps / PkgConfigDeps write the consumer-side files from package_info().
        rmdir(self, os.path.join(self.package_folder, "share"))
        rmdir(self, os.path.join(self.package_folder, "lib"))

    def package_info(self):
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        self.cpp_info.set_property("cmake_file_name", "resblocks")
        # The aggregate target must not be named like a component's target (resblocks::resblocks).
        self.cpp_info.set_property("cmake_target_name", "resblocks::resblocks_all")

        core = self.cpp_info.components["core"]
        core.set_property("cmake_target_name", "resblocks::resblocks")
        core.set_property("pkg_config_name", "resblocks")
        core.bindirs = []
        core.libdirs = []
        core.requires = ["eigen::eigen"]
        if self.options.with_openmp:
            flags = self._openmp_flags()
            core.cxxflags = flags
            core.exelinkflags = flags
            core.sharedlinkflags = flags

        native = self.cpp_info.components["native"]
        native.set_property("cmake_target_name", "resblocks::native")
        native.bindirs = []
        native.libdirs = []
        native.requires = ["core"]
        if str(self.settings.compiler) in ("gcc", "clang", "apple-clang", "intel-cc"):
            native.cxxflags = ["-march=native"]

        if self.options.with_zlib:
            io = self.cpp_info.components["io"]
            io.set_property("cmake_target_name", "resblocks::io")
            io.bindirs = []
            io.libdirs = []
            io.requires = ["core", "zlib::zlib"]

    def _openmp_flags(self):
        compiler = str(self.settings.compiler)
        if compiler == "msvc":
            return ["/openmp"]
        if compiler in ("gcc", "clang", "intel-cc"):
            return ["-fopenmp"]
        return []  # apple-clang: needs libomp (e.g. -o with_openmp=False, or a profile that adds it)
