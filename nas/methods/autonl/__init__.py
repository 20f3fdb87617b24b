"""AutoNL: the Single-Path superkernel network with LightNL candidates (superkernel), its
latency objective (latency); `search.AutoNL` is the method."""
