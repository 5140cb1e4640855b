"""The people of a client: erasing one person's data."""
