"""What every service shares: settings, policy, the Kafka boundary, the web endpoints."""
