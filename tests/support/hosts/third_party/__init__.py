"""Third-party Flask apps run with their own test suites, flask-appmetrics added."""
