"""LLM call accounting: token counts, cost from a price table, API quota windows."""
