"""Session events, delivered: webhooks signed per the Standard Webhooks specification."""
