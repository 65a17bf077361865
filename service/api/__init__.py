"""The HTTP API: routers, dependencies and schemas."""
