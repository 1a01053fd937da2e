"""Run control: what keeps a run governed whichever engine works its devices, used alike by
runner.execution, runner.dispatch and (through small protocols, never importing it) the
results store.

    keys.py       every Redis name: device leases, the run ledger, a run's cancel, closed
                  and dispatcher keys, shard holders, worker presence; their lifetimes
    liveness.py   is a process still there (pid + start time in /proc): a run's owner,
                  reap (runs whose process died finished as interrupted), the lifeline
                  that ends engine processes with the run's process
    heartbeat.py  signs of life: a run's in the store (with its cancel requests), a
                  worker's and a dispatcher's in Redis
    cancel.py     cancel timings (CANCEL_GRACE_S, ...) and when a shard stops or never starts
    payload.py    the worker payload codec: a shard to JSON for the broker and back
    ticker.py     the one periodic loop all of these run on

Nothing is imported here, so reading one part loads no other.
"""
