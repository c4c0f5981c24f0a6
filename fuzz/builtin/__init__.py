"""Built-in targets. Importing this package registers them."""

from fuzz.builtin import ops  # noqa: F401
