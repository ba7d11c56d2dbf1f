"""Running graphs: input validation, the reference interpreter, compiled modules."""
