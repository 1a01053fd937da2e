"""What the tests share: paths, a free port, simulated fleets, job files and `runner run`,
the lab, servers (PostgreSQL, Redis, receivers), `runner web`, and the command tree with
what one `runner` process imports. Test modules and conftest files import from here, never
from one another."""
