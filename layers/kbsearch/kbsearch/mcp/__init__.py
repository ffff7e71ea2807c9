"""The MCP protocol core, shared by the HTTP route (``POST /mcp``) and the stdio server (``kbsearch mcp``).

``protocol`` holds JSON-RPC 2.0, both protocol eras and the tools. Importing this package imports nothing else: the
Lambda's health path never pays for it.
"""
