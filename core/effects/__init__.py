"""Effects: what a turn decided that changes the world, stored with it and carried out once after it commits."""
