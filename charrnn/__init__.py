"""charrnn: a character-level recurrent text generator."""

__version__ = "0.1.0"
