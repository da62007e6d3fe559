import os
import tempfile

from conan import ConanFile
from conan.tools.build import can_run
from conan.tools.cmake import CMake, cmake_layout


class TestPackageConan(ConanFile):
    settings = "os", "arch", "compiler", "build_type"
    generators = "CMakeDeps", "CMakeToolchain", "VirtualRunEnv"
    test_type = "explicit"

    def requirements(self):
        self.requires(self.tested_reference_str)

    def layout(self):
        # Never build inside the source tree (Conan's default is test_package/build/): a temporary
        # folder unless the conf tools.cmake.cmake_layout:test_folder names one.
        folder = self.conf.get("tools.cmake.cmake_layout:test_folder")
        if not folder or folder == "$TMP":
            folder = tempfile.mkdtemp(prefix="resblocks-test_package-")
        cmake_layout(self, build_folder=folder)

    def build(self):
        cmake = CMake(self)
        cmake.configure(variables={
            "RESBLOCKS_TEST_IO": bool(self.dependencies["resblocks"].options.with_zlib)})
        cmake.build()

    def test(self):
        if can_run(self):
            cmd = os.path.join(self.cpp.build.bindir, "test_package")
            self.run(cmd, env="conanrun")
