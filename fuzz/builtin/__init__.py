"""Built-in targets. Importing this package registers them."""

from fuzz.builtin import dsv4, faults, ops, real  # noqa: F401
