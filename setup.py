"""The one part of dereg built from C: format 7's row cut (`_dereg_cut`, plugins/dereg/backup/_cut.c;
docs/backup-format.md, "The cut in C"). Everything else is in pyproject.toml. A top-level module, not
one inside the `dereg` package, so that the image (which mounts plugins/ and never installs dereg)
can build it into a folder of its own (Dockerfile)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "_dereg_cut",
            ["plugins/dereg/backup/_cut.c"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
        )
    ]
)
