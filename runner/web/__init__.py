"""`runner web`: the dashboard, the REST API under /api/ and Prometheus metrics, on the same
results and schedule stores as `runner run` and `runner serve`.

    commands   `runner web` and `runner token create|list|revoke`
    config     what the server was started with (WebConfig)
    app        the FastAPI application factory: stores, middleware, error mapping
    tokens     API tokens: shown once, stored as a hash, each with a role
    auth       who is asking: a bearer token or a signed session; roles; CSRF
    launcher   runs started from the web, in background threads, cancellable
    api        /api/ routes (JSON equal to the CLI's --json documents)
    pages      the server-rendered pages and their form actions
    schedules  scheduled jobs, next fire times and occurrence timelines
    backups    per device history of the backup git repositories, and diffs
    labs       labs up on this machine, with addresses for the topology drawing
    svg        a lab's topology drawn as SVG, server-side
    metrics    the Prometheus collector (/metrics, and `runner serve --metrics-port`)
"""
