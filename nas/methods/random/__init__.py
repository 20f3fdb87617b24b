"""The random-search baseline: draws from another method's space, trained and ranked
(`search.RandomSearch` is the method)."""
