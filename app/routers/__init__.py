"""One router per resource: jobs, results, health, metrics."""
