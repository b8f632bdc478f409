"""Build of the one C extension; everything else is declared in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "sandbox_native",
            sources=["sandbox_native/sandbox_native.c"],
            extra_compile_args=["-Wall", "-Wextra", "-Werror", "-std=gnu11", "-O2"],
            py_limited_api=True,
            define_macros=[("Py_LIMITED_API", "0x030B0000")],
        )
    ],
    options={"bdist_wheel": {"py_limited_api": "cp311"}},
)
