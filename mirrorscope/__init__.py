"""mirrorscope: an out-of-band API security sensor."""

__version__ = "0.1.0"
