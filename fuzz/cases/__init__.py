"""Cases: the strategies that draw them (plain JSON-able dicts), the pins that hold fields of
them, and `materialise`, which builds a case's tensors from its seed."""
