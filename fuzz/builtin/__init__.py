"""Built-in targets. Importing this package registers them."""

from fuzz.builtin import dsv4, ops  # noqa: F401
