"""Build the one C extension (trailhouse.ingest._fastjson); everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "trailhouse.ingest._fastjson",
            ["include/trailhouse/ingest/_fastjson.c"],
            extra_compile_args=["-O3", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
            # a missing compiler leaves the pure-Python path, which does the same more slowly
            optional=True,
        )
    ]
)
