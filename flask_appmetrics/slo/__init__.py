"""Service level objectives: declared next to the views, judged in process, alerted on
by Prometheus (objectives, request windows, burn rates, generated rules)."""
