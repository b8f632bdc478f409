"""Build of the C extension and of boxd-init; everything else is declared in pyproject.toml.

``boxd-init`` (``sandbox_native/init.c``, the PID 1 of ``--init``) is a static program,
so that it runs in any root filesystem; it is built next to the extension and installed
beside it (boxd finds it there: ``boxd._plan.init_program``).
"""

import os
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

INIT_SOURCE = "sandbox_native/init.c"
INIT_NAME = "boxd-init"
CFLAGS = ["-Wall", "-Wextra", "-Werror", "-std=gnu11", "-O2"]


class BuildWithInit(build_ext):
    def run(self) -> None:
        super().run()
        target = os.path.join(os.path.dirname(self.get_ext_fullpath("sandbox_native")), INIT_NAME)
        compiler = os.environ.get("CC", "cc").split()
        subprocess.run([*compiler, *CFLAGS, "-static", "-s", "-o", target, INIT_SOURCE], check=True)

    def get_outputs(self) -> list[str]:
        directory = os.path.dirname(self.get_ext_fullpath("sandbox_native"))
        return [*super().get_outputs(), os.path.join(directory, INIT_NAME)]


setup(
    ext_modules=[
        Extension(
            "sandbox_native",
            sources=["sandbox_native/sandbox_native.c"],
            extra_compile_args=CFLAGS,
            py_limited_api=True,
            define_macros=[("Py_LIMITED_API", "0x030B0000")],
        )
    ],
    cmdclass={"build_ext": BuildWithInit},
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
