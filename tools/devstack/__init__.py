"""`complaints up`: the whole stack on one machine (up), its supervisor, the embedded broker and
Redis (infra), and the demo traffic (demo)."""
