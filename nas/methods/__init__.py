"""Search methods, one module each; each holds a supernet and the method's own rules."""
