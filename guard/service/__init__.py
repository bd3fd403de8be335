"""The process shell: the daemon, its start-up and health, systemd's notify socket, the state
lock, the operations endpoint (metrics, /healthz), alerts, and the demo. Everything here does
I/O; the pipeline steps it drives live in the packages named for them."""
