"""Build of the one C extension and of boxd-shim; everything else is in pyproject.toml."""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

WARNINGS = ["-Wall", "-Wextra", "-Werror"]


class build_ext_and_shim(build_ext):
    """Also builds ``boxd-shim`` (sandbox_native/shim.c), the static program that keeps a
    container while no daemon runs, into the boxd package (``boxd/boxd-shim``)."""

    def run(self) -> None:
        super().run()
        objects = self.compiler.compile(
            ["sandbox_native/shim.c"],
            output_dir=self.build_temp,
            extra_postargs=[*WARNINGS, "-std=gnu11", "-Os"],
        )
        target = os.path.join(self.build_lib, "boxd")
        os.makedirs(target, exist_ok=True)
        self.compiler.link_executable(
            objects, "boxd-shim", output_dir=target, extra_postargs=["-static", "-s"]
        )


setup(
    ext_modules=[
        Extension(
            "sandbox_native",
            sources=["sandbox_native/sandbox_native.c"],
            extra_compile_args=[*WARNINGS, "-std=gnu11", "-O2"],
            py_limited_api=True,
            define_macros=[("Py_LIMITED_API", "0x030B0000")],
        )
    ],
    cmdclass={"build_ext": build_ext_and_shim},
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
