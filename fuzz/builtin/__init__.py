"""Built-in targets. Importing this package registers them."""

from kfuzz.builtin import dsv4, faults, ops, real  # noqa: F401
