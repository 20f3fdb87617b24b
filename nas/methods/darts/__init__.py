"""DARTS with the sandglass operator: the relaxed cell network (cells), first- and
second-order architecture gradients (grad), figures (plots); `search.Darts` is the method."""
