"""Health judgement: time windows, user checks and the monitor that weighs them."""
