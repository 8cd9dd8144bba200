"""ipcmon: see Linux inter-process communication (shared memory, queues, pipes, signals) live."""

__version__ = "0.1.0"
