"""Schedule: when sweeps fire (pure triggers) and the APScheduler that fires them."""
