"""A plugin package whose plugin module is broken."""
