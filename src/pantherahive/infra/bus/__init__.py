"""The event bus, arranged by job; docs/events.md has the map of its modules."""
