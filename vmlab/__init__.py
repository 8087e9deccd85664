"""vmlab: a Jupyter teaching lab for FreeBSD vm_map and x86-64 paging."""

__version__ = "0.1.0"
