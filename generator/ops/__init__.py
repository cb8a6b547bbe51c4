"""What a team needs to operate a generated service: SLOs, alert rules and their
tests, and the runbook the alerts point to, all computed from the resolved blueprint."""
