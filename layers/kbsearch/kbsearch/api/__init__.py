"""The HTTP edge of the search function: what every route does with a request before a service sees it."""
