"""Builds the ckptbridge wheel: the pure-Python package python/ckptbridge plus libckptbridge.so.

The build step runs CMake (RelWithDebInfo, the optimisation the project builds and tests with
everywhere; the debug info is stripped; no tests or benchmarks) into build/python-wheel for the
target ckptbridge_c only, and copies the library, stripped (strip --strip-unneeded), into the
package inside the wheel, where ckptbridge/_lib.py looks first. The package loads it with
ctypes, so the wheel does not depend on the Python version, only on the platform:
py3-none-<platform>. pyproject.toml holds the metadata; the README's "Python" section the
install command. Environment: CMAKE_BUILD_PARALLEL_LEVEL (jobs, default all cores),
CKB_WHEEL_BUILD_DIR (default build/python-wheel), CKB_PREBUILT_LIBRARY (use this
libckptbridge.so instead of building one)."""
import os
import re
import shutil
import subprocess

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py
from wheel.bdist_wheel import bdist_wheel

ROOT = os.path.dirname(os.path.abspath(__file__))
CMAKE_BUILD = os.environ.get("CKB_WHEEL_BUILD_DIR") or os.path.join(ROOT, "build", "python-wheel")
LIBRARY = "libckptbridge.so"


def version():
    """The library's version (ckb_version() in capi/errors.cpp): one number for both."""
    with open(os.path.join(ROOT, "capi", "errors.cpp"), encoding="utf-8") as f:
        m = re.search(r'ckb_version\(void\)\s*\{\s*return\s*"([^"]+)"', f.read())
    if not m:
        raise RuntimeError("capi/errors.cpp: ckb_version() not found")
    return m.group(1)


def build_library():
    """Configures and builds target ckptbridge_c; returns the path of libckptbridge.so.
    CKB_PREBUILT_LIBRARY names one already built from this tree (tools/setup.sh: the build/ it
    just made), so the engine is not compiled twice."""
    prebuilt = os.environ.get("CKB_PREBUILT_LIBRARY")
    if prebuilt:
        if not os.path.exists(prebuilt):
            raise RuntimeError(f"CKB_PREBUILT_LIBRARY={prebuilt} does not exist")
        return prebuilt
    cmake = shutil.which("cmake")
    if not cmake:
        raise RuntimeError("cmake is needed to build libckptbridge.so (tools/setup.sh installs it)")
    configure = [cmake, "-S", ROOT, "-B", CMAKE_BUILD, "-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DCKB_BUILD_TESTS=OFF",
                 "-DCKB_BUILD_BENCH=OFF"]
    if shutil.which("ninja") and not os.path.exists(os.path.join(CMAKE_BUILD, "Makefile")):
        configure += ["-G", "Ninja"]
    subprocess.check_call(configure)
    jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(os.cpu_count() or 1)
    subprocess.check_call([cmake, "--build", CMAKE_BUILD, "--target", "ckptbridge_c", "-j", jobs])
    return os.path.join(CMAKE_BUILD, LIBRARY)


class BuildPyWithLibrary(build_py):
    """build_py, then the native library beside the package's modules (stripped)."""

    def run(self):
        super().run()
        if self.dry_run:
            return
        dest = os.path.join(self.build_lib, "ckptbridge", LIBRARY)
        self.mkpath(os.path.dirname(dest))
        shutil.copyfile(build_library(), dest)
        subprocess.check_call(["strip", "--strip-unneeded", dest])

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, "ckptbridge", LIBRARY)]


class NativeDistribution(Distribution):
    """Carries a native library: installed into platlib, wheel root not pure."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    """A platform wheel (it carries a native library) for any Python 3: py3-none-<platform>."""

    def finalize_options(self):
        super().finalize_options()
        self.root_is_pure = False

    def get_tag(self):
        _, _, platform = super().get_tag()
        return "py3", "none", platform


setup(
    version=version(),
    packages=["ckptbridge"],
    package_dir={"": "python"},
    distclass=NativeDistribution,
    cmdclass={"build_py": BuildPyWithLibrary, "bdist_wheel": PlatformWheel},
    # setuptools' own build tree also under build/python-wheel, not beside CMake's build/ files
    options={"build": {"build_base": os.path.join(CMAKE_BUILD, "setuptools")}},
    zip_safe=False,
)
