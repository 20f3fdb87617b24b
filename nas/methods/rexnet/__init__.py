"""ReXNet's channel search: the piecewise-linear channel space (space), the report and Fig. 2
(report); `search.ReXNetSearch` is the method."""
