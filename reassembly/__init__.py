"""mirrorscope.reassembly stage."""
