"""Client folders: every package here not starting with `_` declares one client (`client = ClientSpec(...)`)."""
