"""What stakeholders see: components and their status, public incidents and their updates."""
