"""Built-in targets. Importing this package registers them."""

from fuzz.builtin import dsv4, ops, real  # noqa: F401
