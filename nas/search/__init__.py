"""Architecture search algorithms (MoGA weighted NSGA-II)."""
