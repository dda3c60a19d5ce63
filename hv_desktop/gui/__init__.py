"""Everything Qt lives here; the core never imports it."""
