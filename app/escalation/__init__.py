"""Escalation: deadlines that pass without acknowledgement, mitigation or an update notify
more people, each step exactly once per incident however many replicas run the scheduler."""
