"""The ``attnbench`` command line: ``sweep`` (the default), ``list``, ``check``, ``report``, ``compare``.

May import every other subpackage; nothing imports it (``harness.__main__`` aside).
"""

__all__: list[str] = []
