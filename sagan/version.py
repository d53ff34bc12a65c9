"""The package's version, in a module of its own: what writes it into a file can import it without importing
`sagan` itself, whose lazy `sagan.train` and `sagan.evaluate` lead back to those very modules."""

__version__ = "0.1.0"
