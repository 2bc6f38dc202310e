"""Health and quota windows shared through Redis by every worker and host."""
