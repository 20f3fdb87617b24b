"""`python -m nas.search`: the entry point and the method-independent runner."""
