"""Web service for investigators: feed intake, live hits, search, watchlists, login and audit."""
