"""mirrorscope.analysis stage."""
