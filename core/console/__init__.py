"""The web console under /console: accounts, sessions, server-rendered pages and live updates."""
