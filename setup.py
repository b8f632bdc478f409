"""Build of the C extension, boxd-init and boxd-shim; everything else is in pyproject.toml.

``boxd-init`` (``sandbox_native/init.c``, the PID 1 of ``--init``) and ``boxd-shim``
(``sandbox_native/shim.c``, the keeper of a container while no daemon runs: live restore)
are static programs, so that they run anywhere and cost a few pages; they are built next to
the extension and installed beside it (boxd finds them there: ``boxd._plan.init_program``,
``boxd._shim.program``).
"""

import os
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

PROGRAMS = {"boxd-init": "sandbox_native/init.c", "boxd-shim": "sandbox_native/shim.c"}
CFLAGS = ["-Wall", "-Wextra", "-Werror", "-std=gnu11", "-O2"]


class BuildWithPrograms(build_ext):
    def run(self) -> None:
        super().run()
        directory = os.path.dirname(self.get_ext_fullpath("sandbox_native"))
        compiler = os.environ.get("CC", "cc").split()
        for name, source in PROGRAMS.items():
            target = os.path.join(directory, name)
            subprocess.run([*compiler, *CFLAGS, "-static", "-s", "-o", target, source], check=True)

    def get_outputs(self) -> list[str]:
        directory = os.path.dirname(self.get_ext_fullpath("sandbox_native"))
        return [*super().get_outputs(), *(os.path.join(directory, n) for n in PROGRAMS)]


setup(
    ext_modules=[
        Extension(
            "sandbox_native",
            # The Python glue, and the child side (between clone and exec) that does not
            # include Python.h; spawn.h is the boundary between them.  gather.c: the read
            # loop of a terminal's output (boxd/_ptyout.py); tree.c: the trash's deletion
            # (boxd/_store.py).
            sources=[
                "sandbox_native/sandbox_native.c",
                "sandbox_native/child.c",
                "sandbox_native/gather.c",
                "sandbox_native/tree.c",
            ],
            depends=["sandbox_native/spawn.h", "sandbox_native/gather.h", "sandbox_native/tree.h"],
            extra_compile_args=CFLAGS,
            # Bound at load: a child that shares our memory must never run the lazy
            # binder (it writes the calling thread's TLS).
            extra_link_args=["-Wl,-z,now"],
            py_limited_api=True,
            define_macros=[("Py_LIMITED_API", "0x030B0000")],
        )
    ],
    cmdclass={"build_ext": BuildWithPrograms},
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
