"""Agents for the end-to-end tests; ``adk api_server tests/agents`` serves them."""
