"""Checks packaging/conan/conanfile.py without Conan: compiles both recipes (byte code written to a
scratch directory, never beside the sources), then loads the recipe against a minimal stand-in of the
Conan 2 API and checks what it declares: header-library, cleared package_id, the Eigen range, the
options, validate() refusing C++17, and package_info() naming the project's own CMake targets.

    python3 tests/package/check_conanfile.py <resblocks source tree> <scratch dir>
"""
import importlib.util
import os
import py_compile
import sys
import types

source_dir, scratch = sys.argv[1], sys.argv[2]
os.makedirs(scratch, exist_ok=True)
recipe = os.path.join(source_dir, "packaging", "conan", "conanfile.py")
test_recipe = os.path.join(source_dir, "packaging", "conan", "test_package", "conanfile.py")
for i, path in enumerate((recipe, test_recipe)):
    py_compile.compile(path, cfile=os.path.join(scratch, f"recipe{i}.pyc"), doraise=True)
    print(f"check_conanfile: {path} compiles")

failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what)
    if not condition:
        failures.append(what)


# --- a minimal stand-in for the parts of the Conan 2 API the recipe imports -----------------------
class ConanInvalidConfiguration(Exception):
    pass


class Settings(dict):
    def get_safe(self, name):
        return self.get(name)

    def __getattr__(self, name):
        return self.get(name)


class Options(dict):
    def __getattr__(self, name):
        return self[name]


class Component:
    def __init__(self):
        self.properties, self.requires = {}, []
        self.cxxflags, self.exelinkflags, self.sharedlinkflags = [], [], []
        self.bindirs, self.libdirs = ["bin"], ["lib"]

    def set_property(self, key, value):
        self.properties[key] = value


class CppInfo(Component):
    def __init__(self):
        super().__init__()
        self.components = {}

    def __getattr__(self, name):
        raise AttributeError(name)


class _Components(dict):
    def __missing__(self, key):
        self[key] = Component()
        return self[key]


def check_min_cppstd(conanfile, version):
    order = ["98", "11", "14", "17", "20", "23", "26"]
    cppstd = str(conanfile.settings.get_safe("compiler.cppstd") or "").replace("gnu", "")
    if cppstd and order.index(cppstd) < order.index(str(version)):
        raise ConanInvalidConfiguration(f"Current cppstd ({cppstd}) is lower than the required ({version})")


class ConanFile:
    pass


def _unused(*args, **kwargs):
    raise AssertionError("not called by this check")


modules = {
    "conan": {"ConanFile": ConanFile},
    "conan.errors": {"ConanInvalidConfiguration": ConanInvalidConfiguration},
    "conan.tools": {},
    "conan.tools.build": {"check_min_cppstd": check_min_cppstd, "can_run": _unused},
    "conan.tools.cmake": {"CMake": _unused, "CMakeDeps": _unused, "CMakeToolchain": _unused, "cmake_layout": _unused},
    "conan.tools.files": {"copy": _unused, "rmdir": _unused},
}
for name, attrs in modules.items():
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module

spec = importlib.util.spec_from_file_location("resblocks_conanfile", recipe)
conanfile_module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conanfile_module)
Recipe = conanfile_module.ResblocksConan

check(Recipe.name == "resblocks", "name is resblocks")
check(Recipe.package_type == "header-library", 'package_type = "header-library"')
check(set(Recipe.options) == {"with_openmp", "with_zlib"}, "options with_openmp and with_zlib")


def make(cppstd="20", with_zlib=True, compiler="gcc"):
    r = Recipe()
    r.settings = Settings({"compiler": compiler, "compiler.cppstd": cppstd, "os": "Linux"})
    r.options = Options({"with_openmp": True, "with_zlib": with_zlib})
    r.requirements_seen = []
    r.requires = r.requirements_seen.append
    r.cpp_info = CppInfo()
    r.cpp_info.components = _Components()
    r.info = types.SimpleNamespace(cleared=False)
    r.info.clear = lambda: setattr(r.info, "cleared", True)
    return r


r = make()
r.requirements()
check(r.requirements_seen[0] == "eigen/[>=3.4.0 <6]", "requires eigen/[>=3.4.0 <6] (Eigen 3.4 and 5.x)")
check(any(req.startswith("zlib/") for req in r.requirements_seen), "with_zlib=True requires zlib")
r = make(with_zlib=False)
r.requirements()
check(not any(req.startswith("zlib/") for req in r.requirements_seen), "with_zlib=False does not require zlib")
r = make()
r.package_id()
check(r.info.cleared, "package_id() clears the info (one package for every configuration)")

for cppstd, ok in (("17", False), ("gnu17", False), ("20", True), ("gnu20", True), ("23", True)):
    try:
        make(cppstd=cppstd).validate()
        refused = None
    except ConanInvalidConfiguration as error:
        refused = str(error)
    check((refused is None) == ok, f"validate() with compiler.cppstd={cppstd}: {'accepted' if ok else 'refused'}")
    if refused:
        check("C++20" in refused, f"  ... with a message naming C++20: {refused}")

r = make()
r.package_info()
targets = {name: c.properties.get("cmake_target_name") for name, c in r.cpp_info.components.items()}
check(targets.get("core") == "resblocks::resblocks", "component core is resblocks::resblocks")
check(targets.get("io") == "resblocks::io", "component io is resblocks::io")
check(targets.get("native") == "resblocks::native", "component native is resblocks::native")
aggregate = r.cpp_info.properties.get("cmake_target_name")
check(aggregate not in targets.values(), f"the aggregate target ({aggregate}) differs from every component's")
check(r.cpp_info.properties.get("cmake_file_name") == "resblocks", "find_package(resblocks)")
check("-fopenmp" in r.cpp_info.components["core"].cxxflags, "with_openmp: -fopenmp on gcc")
check("-march=native" in r.cpp_info.components["native"].cxxflags, "native adds -march=native")
check("-march=native" not in r.cpp_info.components["core"].cxxflags, "core never adds -march=native")
check("eigen::eigen" in r.cpp_info.components["core"].requires, "core requires eigen::eigen")
check("zlib::zlib" in r.cpp_info.components["io"].requires, "io requires zlib::zlib")
r = make(with_zlib=False)
r.package_info()
check("io" not in r.cpp_info.components, "with_zlib=False: no io component")

if failures:
    print(f"check_conanfile: {len(failures)} check(s) failed")
    sys.exit(1)
print("check_conanfile: all checks passed")
