"""Session drivers: netmiko (threads), scrapli v2 and runner's own asyncssh driver (asyncio),
behind one async interface (base), found by name in the driver registry, opened and closed
by sessions. The package itself imports nothing: the inventory reads base and registry
without asyncio (`runner validate -i`)."""
