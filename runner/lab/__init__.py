"""The lab: containerlab topology files deployed as real FRR routers, with or without Docker."""
