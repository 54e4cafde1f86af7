"""Built-in implementations. Every module here registers what it defines when imported (drop-in registration)."""
