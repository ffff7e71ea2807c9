"""One home for Qdrant (issue 14): the embedded store lives in :mod:`kbsearch.qdrant.embedded`."""
