"""Users, sessions, API tokens and what each organisation role may do."""
