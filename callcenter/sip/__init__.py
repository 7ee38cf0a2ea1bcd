"""Our SIP user agent (placeholder docstring)."""
