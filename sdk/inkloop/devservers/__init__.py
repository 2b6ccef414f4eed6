"""Local services for tests and first-time users (Label Studio), started on 127.0.0.1, stopped by PID."""
