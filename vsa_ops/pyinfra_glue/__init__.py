"""The one place that touches pyinfra's and gevent's internals: the in-process deploy runner, the
connections outside a deploy, loading inventory files with pyinfra's CLI code, gevent's patching
and pyinfra's operation order. pyproject.toml pins pyinfra and gevent to the minor versions this
glue is tested with, and tests/test_pyinfra_glue.py fails when a replacement no longer takes effect.
"""
