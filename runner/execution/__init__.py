"""How a job's devices are worked on, by any engine.

    executor.py   the Executor protocol, Work (what it is given), the engine registry
    engines.py    this machine's engines (runner.job.run adds the dispatcher's)
    rollout.py    batches and the stop rule, cancel, on_stop rollback; run_devices
    tally.py      the run's records: first record wins, one per device, records of
                  devices that never ran (the same for every engine)
    device.py     one device: lease, session, steps, record (secrets masked)
    retries.py    opening a session with the job's retry policy
    leases.py     device leases and the run ledger in Redis (with a broker), local locks
    local.py      engine `local`: one asyncio loop in this process
    processes.py  engine `processes`: one local engine per core
    control/      run control, shared by every engine and by runner.dispatch: heartbeats,
                  cancel, process liveness, every Redis key name, the worker payload codec
    runner/dispatch/dispatcher.py   engine `celery`: shards on `runner worker` machines

Nothing is imported here: the store reads run control (liveness) without loading the
engines, the inventory or the job spec.
"""
