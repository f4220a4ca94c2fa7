"""livefin: nightly financing limits for live-commerce merchants."""

__version__ = "0.1.0"
