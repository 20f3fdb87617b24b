"""AtomNAS: atoms and their FLOPs-weighted penalty (atoms), the over-complete network that
shrinks physically (prunable, shrink); `search.AtomNAS` is the method."""
