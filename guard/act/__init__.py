"""Act: plan cancels into rate-limited batches (pure) and send them."""
