"""Agents for the end-to-end tests; ``adk api_server tests/e2e/agents`` serves them."""
