"""The web console: server-rendered pages for privacy staff and operators, served by the API."""
