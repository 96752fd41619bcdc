"""mirrorscope.store stage."""
