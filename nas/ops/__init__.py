"""Building blocks of the five papers' networks."""
