"""mirrorscope.capture stage."""
