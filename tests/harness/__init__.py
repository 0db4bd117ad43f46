"""Real processes for the tests, the reliability suite and the benchmark.

- `servers`: redis-server and a private PostgreSQL cluster, spawned from the binaries;
- `processes`: a child process with its log, `gateway serve`, `gateway worker`;
- `redis_link`: what a Redis server runs (MONITOR), and a link to it a test can hold;
- `procfs`: the processes of a session and their memory, from /proc;
- `waiting`: waiting on an event, running a coroutine from sync code.
"""
