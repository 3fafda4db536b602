"""MCP: long-term memory as an MCP server (stdio and, through the gateway, streamable HTTP) and the MCP
client side the gateway uses to offer configured tool servers to models."""
