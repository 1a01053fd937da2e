"""What the tests share: paths, a free port, simulated fleets, job files and `runner run`,
the lab, servers (PostgreSQL, Redis, receivers) and `runner web`. Test modules and
conftest files import from here, never from one another."""
