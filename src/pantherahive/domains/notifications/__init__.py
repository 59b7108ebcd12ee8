"""Notifications: in-app documents, preferences, email/SMS deliveries, real-time streams and
signed webhooks. Imported by nobody; it reads identity only through ``identity.api``."""
